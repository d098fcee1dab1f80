import { connect, params } from "./common.js";

connect();
const q = params.get("token") ? `?token=${params.get("token")}` : "";
const body = document.querySelector("#videos tbody");
const rows = new Map();

function row(id) {
  if (!rows.has(id)) {
    const tr = document.createElement("tr");
    tr.dataset.video = id;
    tr.innerHTML = `<td class="name"></td><td><progress max="1" value="0"></progress> <span class="pct"></span></td>
      <td class="state"></td><td class="files"></td><td><button class="cancel">cancel</button></td>`;
    tr.querySelector(".cancel").addEventListener("click", () => fetch(`/api/videos/${id}/cancel${q}`, { method: "POST" }));
    body.prepend(tr);
    rows.set(id, tr);
  }
  return rows.get(id);
}

async function refresh() {
  for (const video of await (await fetch(`/api/videos${q}`)).json()) {
    const tr = row(video.id);
    if (tr.dataset.state === "finished" || tr.dataset.state === "failed" || tr.dataset.state === "canceled") continue;
    const s = await (await fetch(`/api/videos/${video.id}${q}`)).json();
    tr.dataset.state = s.state;
    tr.querySelector(".name").textContent = s.name;
    tr.querySelector("progress").max = Math.max(1, s.total);
    tr.querySelector("progress").value = s.done;
    tr.querySelector(".pct").textContent = s.total ? `${Math.round((100 * s.done) / s.total)}%` : "";
    tr.querySelector(".state").textContent = s.state + (s.error ? `: ${s.error}` : "");
    tr.querySelector(".files").innerHTML = s.files.map((f) => `<a href="/videos/${video.id}/${f}${q}">${f}</a>`).join(" ");
    if (s.files.includes("annotated.mp4")) {
      tr.querySelector(".files").innerHTML += `<br><video controls muted preload="metadata" width="360"
        src="/videos/${video.id}/annotated.mp4${q ? `${q}&` : "?"}inline=1"></video>`;
    }
    if (s.files.includes("timeline.png")) tr.querySelector(".files").innerHTML += `<br><img src="/videos/${video.id}/timeline.png${q}" width="360">`;
    tr.querySelector(".cancel").hidden = s.state !== "queued" && s.state !== "running";
  }
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
  const data = await response.json();
  if (!response.ok) { error.textContent = data.error || `failed (${response.status})`; return; }
  refresh();
});
setInterval(refresh, 1000);
refresh();
