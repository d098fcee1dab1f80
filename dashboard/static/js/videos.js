import { connect, params } from "./common.js";

connect();
const q = params.get("token") ? `?token=${params.get("token")}` : "";
const body = document.querySelector("#videos tbody");
const rows = new Map();
const ENDED = ["finished", "failed", "canceled"];

function row(id) {
  if (!rows.has(id)) {
    const tr = document.createElement("tr");
    tr.dataset.video = id;
    tr.innerHTML = `<td class="name"></td><td><progress max="1" value="0"></progress> <span class="pct"></span></td>
      <td class="state"></td><td class="files"></td>
      <td><button class="cancel">cancel</button> <button class="delete">delete</button></td>`;
    tr.querySelector(".cancel").addEventListener("click", () => fetch(`/api/videos/${id}/cancel${q}`, { method: "POST" }).then(refresh));
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

function show(tr, s) {
  tr.dataset.state = s.state;
  tr.querySelector(".name").textContent = s.name;
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
}

async function refresh() {
  let videos;
  try {
    videos = await (await fetch(`/api/videos${q}`)).json();
  } catch { return; }  // the next refresh tries again
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
  const form = new FormData();
  form.append("video", file);
  const response = await fetch(`/api/videos${q}`, { method: "POST", body: form });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) { error.textContent = data.error || `failed (${response.status})`; return; }
  refresh();
});
setInterval(refresh, 1000);
refresh();
