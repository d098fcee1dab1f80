// The Cameras page: the cameras FERVI runs, their ingest state, and a form to add more.
import { connect, overloadText, params, rateText } from "./common.js";

connect();
const token = params.get("token");
const api = (path) => path + (token ? `?token=${encodeURIComponent(token)}` : "");
const list = document.getElementById("cameras");
const error = document.getElementById("error");
const kind = document.getElementById("kind");
const source = document.getElementById("source");
let roots = [];

const HINTS = {
  stream: ["rtsp://user:password@host/stream", "An RTSP or HTTP(S) stream: it is live, and reconnects when it drops."],
  webcam: ["0", "The index of a camera attached to the server running FERVI (0 is the first)."],
  file: ["/path/to/video.mp4", () => `A video, image or folder on the server, by its absolute path, inside ${roots.join(", ") || "no folder (FERVI_CAMERA_FILE_ROOTS is empty)"}. It plays at its own frame rate (fps 0), like a camera; with loop on it starts again at its end.`],
};
function showKind() {
  const [placeholder, hint] = HINTS[kind.value];
  source.placeholder = placeholder;
  document.getElementById("kind-hint").textContent = typeof hint === "function" ? hint() : hint;
  document.getElementById("loop-label").hidden = kind.value !== "file";
}
kind.addEventListener("change", showKind);

// A video uploaded on the Videos page plays as a camera too: pick it instead of typing its path.
const uploads = document.getElementById("uploaded");
function showUploads(videos) {
  const chosen = uploads.value;
  uploads.replaceChildren(new Option(videos.length ? "or one of your uploaded videos…" : "no uploaded video yet", ""),
    ...videos.map((v) => new Option(v.name, v.path, false, v.path === chosen)));
  uploads.disabled = !videos.length;
}
uploads.addEventListener("change", () => {
  if (!uploads.value) return;
  kind.value = "file"; showKind();
  source.value = uploads.value;
});

function ago(seconds) {
  if (seconds < 60) return `${Math.round(seconds)} s`;
  if (seconds < 3600) return `${Math.round(seconds / 60)} min`;
  return `${Math.round(seconds / 3600)} h`;
}

const STATE_TEXT = {
  starting: "starting", live: "live", playing: "playing", reconnecting: "reconnecting", ended: "ended",
  error: "error", stopped: "stopped", stalled: "stalled", waiting: "waiting",
};

const RUNNING = new Set(["starting", "live", "playing", "reconnecting", "stalled"]);

function card(row) {
  const item = document.createElement("div");
  item.className = "camera-card";
  item.dataset.camera = row.camera;
  item.dataset.state = row.state;
  const updated = row.updated_at ? ` · updated ${ago(Math.max(0, Date.now() / 1000 - row.updated_at))} ago` : "";
  item.innerHTML = `<div class="camera-head"><b></b><span class="badge"></span></div>
    <div class="camera-source"><span class="kind"></span> <code></code></div>
    <div class="reason"></div><div class="hint counts"></div><p class="overload" role="status" hidden></p>
    <div class="actions"></div>`;
  item.querySelector("b").textContent = row.camera;
  const badge = item.querySelector(".badge");
  badge.textContent = STATE_TEXT[row.state] || row.state;
  badge.className = `badge state-${row.state}`;
  item.querySelector(".kind").textContent = row.kind || "";
  item.querySelector("code").textContent = row.source || "";
  item.querySelector(".reason").textContent = row.reason;
  // rates and an overload warning are the present's: a camera that ended, stopped or failed has none
  const running = RUNNING.has(row.state);
  const rate = running ? rateText(row) : "";
  item.querySelector(".counts").textContent = `${row.sent} frame(s) sent${updated}${rate ? ` · ${rate} processed` : ""}` +
    (row.managed ? (row.loop ? " · loops" : "") : " · run outside this page (fervi ingest): stop it where it runs");
  const warning = item.querySelector(".overload");
  warning.textContent = [running ? overloadText(row) : "", row.clock || ""].filter(Boolean).join(" ");
  warning.hidden = !warning.textContent;
  const actions = item.querySelector(".actions");
  const open = document.createElement("a");
  open.href = `/charts?camera=${encodeURIComponent(row.camera)}${token ? "&token=" + encodeURIComponent(token) : ""}`;
  open.textContent = "Charts";
  actions.appendChild(open);
  if (row.managed) {
    const remove = document.createElement("button");
    remove.textContent = "Remove";
    remove.className = "remove";
    remove.addEventListener("click", async () => {
      if (!confirm(`Stop and remove camera ${row.camera}? Its charts stay.`)) return;
      const reply = await fetch(api(`/api/sources/${encodeURIComponent(row.camera)}`), { method: "DELETE" });
      if (!reply.ok) error.textContent = (await reply.json()).error;
      refresh();
    });
    actions.appendChild(remove);
  }
  return item;
}

async function refresh() {
  let data;
  try {
    const reply = await fetch(api("/api/sources"));
    data = await reply.json();
  } catch (err) {
    document.getElementById("supervisor").textContent = `cannot reach the dashboard: ${err.message}`;
    return;
  }
  roots = data.file_roots;
  if (kind.value === "file") showKind();
  showUploads(data.uploads || []);
  document.getElementById("supervisor").textContent = data.supervised
    ? "The camera supervisor runs."
    : "No camera supervisor runs: cameras added here wait until `fervi up` or `fervi cameras supervise` starts.";
  list.replaceChildren(...data.cameras.map(card));
  if (!data.cameras.length) list.innerHTML = '<p id="empty" class="hint">No camera yet: add one above.</p>';
  list.dataset.count = data.cameras.length;
}

document.getElementById("add").addEventListener("submit", async (event) => {
  event.preventDefault();
  const form = event.target;
  const button = form.querySelector("button[type=submit]");
  if (form.dataset.busy) return;  // one camera at a time: a double click adds nothing twice
  form.dataset.busy = "1";
  button.disabled = true;
  error.textContent = "";
  try {
    const body = {
      camera: document.getElementById("camera").value.trim(), source: source.value.trim(),
      fps: Number(document.getElementById("fps").value || 0),
      loop: kind.value === "file" && document.getElementById("loop").checked, kind: kind.value,
    };
    const reply = await fetch(api("/api/sources"), {
      method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify(body),
    });
    const answer = await reply.json();
    if (!reply.ok) { error.textContent = answer.error; return; }
    const chosen = kind.value;  // the next camera is likely of the same kind
    form.reset();
    kind.value = chosen;
    showKind();
    refresh();
  } catch (err) {
    error.textContent = `the server did not answer (${err.message}): try again`;
  } finally {
    delete form.dataset.busy;  // tests and scripts wait for this: the answer is shown
    button.disabled = false;
  }
});

showKind();
refresh();
setInterval(refresh, 2000);
