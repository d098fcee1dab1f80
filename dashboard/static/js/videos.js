import { COLORS, connect, EMOTIONS, params } from "./common.js";

connect();
const q = params.get("token") ? `?token=${params.get("token")}` : "";
const body = document.querySelector("#videos tbody");
const rows = new Map();
const ENDED = ["finished", "failed", "canceled"];

function row(id) {
  if (!rows.has(id)) {
    const tr = document.createElement("tr");
    tr.dataset.video = id;
    tr.innerHTML = `<td><span class="name"></span> <span class="size hint"></span><br><span class="when hint"></span></td>
      <td><progress max="1" value="0"></progress> <span class="pct"></span></td>
      <td class="state"></td><td><div class="summary"></div><div class="files"></div></td>
      <td><button class="cancel">cancel</button> <button class="retry">retry</button> <button class="delete">delete</button></td>`;
    tr.querySelector(".cancel").addEventListener("click", () => fetch(`/api/videos/${id}/cancel${q}`, { method: "POST" }).then(refresh));
    tr.querySelector(".retry").addEventListener("click", async () => {
      const response = await fetch(`/api/videos/${id}/retry${q}`, { method: "POST" });
      const data = await response.json().catch(() => ({}));
      if (!response.ok) document.getElementById("error").textContent = data.error || `retry failed (${response.status})`;
      tr.dataset.state = "";  // show it again from the next answer
      refresh();
    });
    tr.querySelector(".delete").addEventListener("click", async () => {
      if (!confirm("Delete this video and its outputs?")) return;
      const response = await fetch(`/api/videos/${id}${q}`, { method: "DELETE" });
      if (response.ok || response.status === 404) { tr.remove(); rows.delete(id); }
    });
    body.prepend(tr);
    rows.set(id, tr);
  }
  return rows.get(id);
}

const took = (s) => (s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${Math.round(s / 60)} min` : `${Math.max(1, Math.round(s))} s`);

function show(tr, s) {
  tr.dataset.state = s.state;
  tr.querySelector(".name").textContent = s.name;
  tr.querySelector(".size").textContent = s.size ? `(${s.size})` : "";
  const ended = s.ended_at || Date.now() / 1000;
  tr.querySelector(".when").textContent = `${new Date(s.created_at * 1000).toLocaleString()} · ` +
    `${s.ended_at ? "took" : "running for"} ${took(ended - s.created_at)}${s.retries ? ` · retried ${s.retries}x` : ""}`;
  const summary = tr.querySelector(".summary");
  summary.replaceChildren();
  if (s.summary) {  // a readable result: length, faces, the main emotions
    const shares = EMOTIONS.map((e) => [e, s.summary.emotion_share[e] || 0]).sort((a, b) => b[1] - a[1]).filter(([, v]) => v > 0);
    summary.innerHTML = `${took(s.summary.duration_s)} of video · ${s.summary.tracks} face(s) · ` +
      shares.slice(0, 3).map(([e, v]) => `<b style="color:${COLORS[e]}">${e}</b> ${Math.round(100 * v)}%`).join(", ");
    tr.dataset.tracks = s.summary.tracks;
  }
  tr.querySelector("progress").max = Math.max(1, s.total);
  tr.querySelector("progress").value = s.done;
  tr.querySelector(".pct").textContent = s.total ? `${Math.round((100 * s.done) / s.total)}%` : "";
  tr.querySelector(".state").textContent = s.state + (s.error && s.error !== s.state ? `: ${s.error}` : "");
  const files = tr.querySelector(".files");
  files.replaceChildren();
  for (const f of s.files) {
    const link = document.createElement("a");
    link.href = `/videos/${s.id}/${f}${q}`; link.textContent = f;
    files.append(link, " ");
  }
  if (s.files.includes("annotated.mp4")) {
    const video = document.createElement("video");
    Object.assign(video, { controls: true, muted: true, preload: "metadata", width: 360 });
    video.src = `/videos/${s.id}/annotated.mp4${q ? `${q}&` : "?"}inline=1`;
    files.append(document.createElement("br"), video);
  }
  if (s.files.includes("timeline.png")) {
    const image = document.createElement("img");
    image.src = `/videos/${s.id}/timeline.png${q}`; image.width = 360;
    files.append(document.createElement("br"), image);
  }
  tr.querySelector(".cancel").hidden = ENDED.includes(s.state);
  tr.querySelector(".retry").hidden = !["failed", "canceled"].includes(s.state);
}

// The queue in videos (a video is several jobs: segments, a merge, annotation parts), jobs in the tooltip.
const count = (n, one, many = `${one}s`) => `${n} ${n === 1 ? one : many}`;
async function refreshJobs(videos) {
  try {
    const jobs = await (await fetch(`/api/jobs${q}`)).json();
    const busy = jobs.workers.filter((w) => w.state === "busy").length;
    const by = (states) => videos.filter((v) => states.includes(v.state)).length;
    const el = document.getElementById("jobs");
    el.textContent = `${count(jobs.workers.length, "RQ worker")} (${busy} busy) · ` +
      `${count(by(["queued", "running"]), "video")} waiting or running · ${by(["failed"])} failed` +
      (by(["canceled"]) ? ` · ${by(["canceled"])} canceled` : "") +
      (jobs.workers.length ? "" : " · no worker: start one with fervi rq-worker (fervi up runs one)");
    el.title = `jobs (segments, merges, annotation parts): ${jobs.queued} waiting, ${jobs.failed} failed, ` +
      `${jobs.canceled || 0} canceled`;
    el.dataset.workers = jobs.workers.length;
  } catch { /* the next refresh tries again */ }
}

async function refresh() {
  let videos;
  try {
    videos = await (await fetch(`/api/videos${q}`)).json();
  } catch { return; }  // the next refresh tries again
  refreshJobs(videos);
  const seen = new Set();
  for (const video of videos) {
    seen.add(video.id);
    const tr = row(video.id);
    if (!(ENDED.includes(tr.dataset.state) && tr.dataset.state === video.state)) show(tr, video);
  }
  for (const [id, tr] of rows) if (!seen.has(id)) { tr.remove(); rows.delete(id); }  // deleted (here or by retention)
}

document.getElementById("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  const error = document.getElementById("error");
  error.textContent = "";
  const file = document.getElementById("file").files[0];
  if (!file) { error.textContent = "choose a video first"; return; }
  const { maxBytes, limit } = event.target.dataset;  // the server's limit, said as its refusal says it
  if (file.size > Number(maxBytes)) { error.textContent = `a video is at most ${limit}`; return; }
  const form = new FormData();
  form.append("video", file);
  // XMLHttpRequest, not fetch: it reports the upload's progress
  const sending = document.getElementById("sending");
  const sent = document.getElementById("sent");
  sending.hidden = false; sending.value = 0;
  const request = new XMLHttpRequest();
  request.open("POST", `/api/videos${q}`);
  request.upload.onprogress = (e) => {
    if (!e.lengthComputable) return;
    sending.value = e.loaded / e.total;
    sent.textContent = `uploading ${Math.round((100 * e.loaded) / e.total)}%`;
  };
  request.onload = () => {
    sending.hidden = true; sent.textContent = "";
    let data = {};
    try { data = JSON.parse(request.responseText); } catch { /* not JSON: the status says enough */ }
    if (request.status !== 200) { error.textContent = data.error || `failed (${request.status})`; return; }
    document.getElementById("file").value = "";
    refresh();
  };
  request.onerror = () => { sending.hidden = true; sent.textContent = ""; error.textContent = "the upload failed: is the dashboard running?"; };
  request.send(form);
});
setInterval(refresh, 1000);
refresh();
