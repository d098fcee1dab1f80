// Shared by every page: the Socket.IO connection, the emotion palette, and drawing a camera tile.
export const EMOTIONS = document.body.dataset.emotions.split(",");
export const COLORS = {
  angry: "#dc2828", disgust: "#3c8c28", fear: "#963c96", happy: "#f0c828",
  sad: "#2878c8", surprise: "#ff8c00", neutral: "#b4b4b4",
};
export const params = new URLSearchParams(location.search);
export const UNCERTAIN_NOTE = "uncertain: no emotion clearly ahead";
const cssVar = (name) => getComputedStyle(document.documentElement).getPropertyValue(name).trim();

// How a face's emotion reads on every page, on the canvas and in text: its label and probability or, where no
// emotion clearly leads (the kernel's `uncertain`), its two leading emotions in the uncertain style, never a label.
// Colours of the uncertain style live in fervi.css (--uncertain, --uncertain-bg); entries without the field
// (written before it) read as clear. `color`: box outline; `fill` and `ink`: the canvas label's box and text.
export function faceLabel(face) {
  if (face.uncertain === true) {
    const color = cssVar("--uncertain");
    return { text: [face.label, face.runner_up].filter(Boolean).join(" / "), uncertain: true, title: UNCERTAIN_NOTE,
      className: "face-label uncertain", color, fill: cssVar("--uncertain-bg"), ink: color };
  }
  const color = COLORS[face.label];
  return { text: `${face.label} ${(face.score * 100).toFixed(0)}%`, uncertain: false, title: "",
    className: "face-label", color, fill: color, ink: "#000" };
}

// The same as an element for text lists: the label, and for an uncertain face what its style means.
export function faceLabelElement(face) {
  const shown = faceLabel(face);
  const label = document.createElement("span");
  label.className = shown.className; label.textContent = shown.text;
  if (shown.title) label.title = shown.title;
  if (!shown.uncertain) return label;
  const note = document.createElement("span");
  note.className = "face-note"; note.textContent = shown.title;
  const both = document.createDocumentFragment();
  both.append(label, " ", note);
  return both;
}

// What a camera's processing rate says (the relay's and /api/sources' `fps`, `camera_fps`, `skipped_pct`):
// "5 of 15 fps", and where frames are skipped a plain warning with the remedy ("" when none are).
export const SKIPPED_WARN_PCT = 10;
export function rateText(rates) {
  if (!rates || !rates.camera_fps) return rates && rates.fps ? `${rates.fps} fps` : "";
  return rates.skipped_pct >= 1 ? `${rates.fps} of ${rates.camera_fps} fps` : `${rates.fps} fps`;
}
// `remedy`: what the user can do where the warning shows (a browser camera's page has no fps to lower).
export const CAMERA_REMEDY = "Add workers or lower this camera's fps.";
// A browser camera ("web-…") sends what its browser's camera gives: there is no fps setting to lower.
export const remedyFor = (camera) => (String(camera || "").startsWith("web-") ? "Add workers." : CAMERA_REMEDY);
export function overloadText(rates, remedy = remedyFor(rates && rates.camera)) {
  if (!rates || rates.skipped_pct < SKIPPED_WARN_PCT) return "";
  return `Workers can't keep up: ${rates.skipped_pct}% of frames skipped. ${remedy}`;
}
const clockOf = (t) => new Date(t * 1000).toLocaleTimeString();

// This tab's browser camera key: kept for the tab's life (sessionStorage), so a reload, a reconnect or a
// server restart sends to the same camera and its charts stay one; another tab has its own. A secret: the
// server names the camera from its hash.
function cameraKey() {
  try {
    let key = sessionStorage.getItem("fervi-camera-key");
    if (!key) {
      const bytes = crypto.getRandomValues(new Uint8Array(18));
      key = btoa(String.fromCharCode(...bytes)).replace(/\+/g, "-").replace(/\//g, "_");
      sessionStorage.setItem("fervi-camera-key", key);
    }
    return key;
  } catch (err) {
    return "";  // storage blocked: the camera is named from the connection
  }
}

export function connect() {
  const token = params.get("token") || "";
  // the token rides the handshake too (checked before a session exists), for browsers that keep no cookie
  const socket = io({ auth: { token, camera_key: cameraKey() }, query: token ? { token } : {}, transports: ["websocket", "polling"] });
  const status = document.getElementById("status");
  socket.on("connect", () => {
    status.textContent = "live"; status.className = "status ok";
    // how the events travel (websocket, or long-polling where a proxy blocks WebSocket)
    const engine = socket.io.engine;
    document.body.dataset.transport = engine.transport.name;
    engine.on("upgrade", (transport) => { document.body.dataset.transport = transport.name; });
  });
  socket.on("disconnect", () => { status.textContent = "reconnecting…"; status.className = "status bad"; });
  return socket;
}

// A tile's picture is stale once no tracked frame came for this long: it greys and says since when.
export const STALE_S = 5;

// Why a tile is grey: its camera sent nothing lately (with its ingest's own reason where it says one), or the
// page lost its server (when, and when the tile's last frame came).
export function quietText(lastFrameAt, rates) {
  const since = lastFrameAt ? clockOf(lastFrameAt) : "this page opened";
  const reason = rates && rates.reason ? ` ${rates.state ? rates.state + ": " : ""}${rates.reason}` : "";
  return `No frames since ${since}.${reason}`;
}
export function lostText(lostAt, lastFrameAt) {
  return `The dashboard lost its server at ${clockOf(lostAt)}: reconnecting…` +
    (lastFrameAt ? ` Last frame ${clockOf(lastFrameAt)}.` : "");
}

// A tile: the newest frame on a canvas, boxes and labels on top, per-face probability bars below.
export class Tile {
  constructor(element, title) {
    this.element = element;
    element.innerHTML = `<div class="tile-head"><b></b><span class="meta"></span></div>
      <p class="tile-warning" role="status" hidden></p>
      <canvas width="640" height="480"></canvas><div class="bars"></div>`;
    element.querySelector("b").textContent = title;
    this.canvas = element.querySelector("canvas");
    this.canvas.setAttribute("role", "img");
    this.meta = element.querySelector(".meta");
    this.bars = element.querySelector(".bars");
    this.warning = element.querySelector(".tile-warning");
    this.rates = null;  // the newest `cameras` (or `rates`) figures: processed and sent fps, skipped share
    this.seenAt = Date.now() / 1000;  // when its newest tracks came (this browser's clock)
    this.lastFrameAt = 0;  // that frame's capture time (the camera's clock)
    this.offline = "";  // why the tile is greyed ("" while live)
    this.lostAt = 0;  // when the page lost its server (0: it has it)
    this.remedy = "";  // what its overload warning tells the user to do ("": as fits its camera, `remedyFor`)
    this.image = null;
    this.imageSeq = null;  // the frame shown: boxes are drawn from that frame's tracks, not the newest ones
    this.tracks = null;
    this.barsOf = null;  // the tracks payload the bars below show: the same as the boxes'
    this.recent = new Map();  // seq -> tracks payload, the last few dozen
    // the canvas is drawn at the frame's size and shown smaller or larger: redraw when its shown size changes
    new ResizeObserver(() => this.draw()).observe(this.canvas);
  }
  setFrame(jpeg, seq = null) {
    const blob = new Blob([jpeg], { type: "image/jpeg" });
    createImageBitmap(blob).then((bitmap) => { this.image = bitmap; this.imageSeq = seq; this.draw(); });
  }
  // The tracks of the frame on screen (previews come a few a second, tracks with every frame): that frame's
  // own, else the newest before it, else the newest of all.
  shownTracks() {
    if (this.imageSeq === null || !this.recent.size) return this.tracks;
    if (this.recent.has(this.imageSeq)) return this.recent.get(this.imageSeq);
    let best = null;
    for (const [seq, payload] of this.recent) if (seq <= this.imageSeq && (!best || seq > best.seq)) best = payload;
    return best || this.tracks;
  }
  setTitle(title) {
    const name = this.element.querySelector(".tile-head b");
    if (name.textContent !== title) name.textContent = title;
  }
  setRates(rates) {
    this.rates = rates;
    if (rates && rates.last_frame_at > this.lastFrameAt) this.lastFrameAt = rates.last_frame_at;
    this.showWarning();
    this.showMeta();
  }
  // Greyed with a reason: "No frames since 14:02:11.", or the dashboard's own server lost ("" to clear).
  setOffline(reason) {
    if (reason === this.offline) return;
    this.offline = reason;
    this.element.classList.toggle("offline", Boolean(reason));
    this.showWarning();
    this.showMeta();
  }
  serverLost(at = Date.now() / 1000) {
    this.lostAt = at;
    this.setOffline(lostText(at, this.lastFrameAt));
  }
  serverBack() {
    if (!this.lostAt) return;
    this.lostAt = 0;
    this.setOffline("");
  }
  // Called every second: a tile whose camera sent nothing for STALE_S goes grey; so does one the server lists
  // as stalled (a registered camera quiet for long) before any of its frames came to this page.
  checkStale(now = Date.now() / 1000) {
    if (this.lostAt) return;  // a lost server says more
    const stalled = this.rates && this.rates.stalled && !this.tracks;
    this.setOffline(stalled || now - this.seenAt > STALE_S ? quietText(this.lastFrameAt, this.rates) : "");
  }
  showWarning() {
    const text = this.offline || overloadText(this.rates, this.remedy || remedyFor(this.element.dataset.camera || this.rates?.camera));
    this.warning.textContent = text;
    this.warning.hidden = !text;
    this.element.dataset.warning = text;
  }
  // The header: faces, rate and latency while live; a grey tile's figures would be stale, so it says offline.
  showMeta() {
    if (this.offline) { this.meta.textContent = "offline"; return; }
    if (!this.tracks) return;
    const rate = rateText(this.rates);
    this.meta.textContent = `${this.tracks.faces.length} face(s) · ${rate ? rate + " · " : ""}` +
      `latency ${Math.round(this.tracks.latency_ms)} ms`;
  }
  // No picture and no faces (a browser camera its user stopped); `note` in the header.
  clear(note = "") {
    this.image = null; this.imageSeq = null; this.tracks = null; this.recent.clear();
    this.rates = null; this.showWarning();  // a stopped camera is skipping nothing
    this.draw();
    this.meta.textContent = note;
  }
  setTracks(payload) {
    this.tracks = payload;
    this.seenAt = Date.now() / 1000;
    this.lastFrameAt = payload.ts || this.lastFrameAt;
    if (this.offline && !this.lostAt) this.setOffline("");
    this.recent.set(payload.seq, payload);
    if (this.recent.size > 64) this.recent.delete(this.recent.keys().next().value);
    this.showMeta();
    this.draw();
    this.element.dataset.labels = payload.faces.map((f) => f.label).join(",");
    this.element.dataset.seq = payload.seq;
  }
  draw() {
    const ctx = this.canvas.getContext("2d");
    const w = this.image ? this.image.width : (this.tracks ? this.tracks.w : 640);
    const h = this.image ? this.image.height : (this.tracks ? this.tracks.h : 480);
    if (this.canvas.width !== w || this.canvas.height !== h) { this.canvas.width = w; this.canvas.height = h; }
    ctx.fillStyle = "#20252b"; ctx.fillRect(0, 0, w, h);
    if (this.image) ctx.drawImage(this.image, 0, 0);
    const shown = this.shownTracks();
    // the list below is of the same frame as the boxes: one face reads the same on both
    if (shown !== this.barsOf) { this.barsOf = shown; this.drawBars(shown ? shown.faces : []); }
    if (!shown) { this.canvas.setAttribute("aria-label", "no face"); this.canvas.title = ""; return; }
    this.element.dataset.shownSeq = shown.seq;
    // canvas pixels per pixel on screen: labels are at least 13 px as the user sees them
    const scale = this.canvas.clientWidth ? w / this.canvas.clientWidth : 1;
    const px = Math.round(Math.max(13 * scale, w / 40));
    this.element.dataset.labelPx = (px / scale).toFixed(1);
    ctx.lineWidth = Math.max(2, 2 * scale);
    const said = [];
    for (const face of shown.faces) {
      const [x, y, bw, bh] = face.box;
      const label = faceLabel(face);
      // an uncertain face: a dashed outline, an italic grey label on a dark box (neutral's is solid light grey)
      ctx.setLineDash(label.uncertain ? [8 * Math.max(1, scale), 5 * Math.max(1, scale)] : []);
      ctx.strokeStyle = label.color; ctx.strokeRect(x, y, bw, bh);
      ctx.setLineDash([]);
      const text = `${face.track !== undefined ? "#" + face.track + " " : ""}${label.text}`;
      ctx.font = `${label.uncertain ? "italic " : ""}${px}px sans-serif`;
      // a label wider than the frame (a phone's narrow tile) is set smaller until it fits whole
      const fit = Math.min(1, (w - 8) / ctx.measureText(text).width);
      const size = Math.max(8, Math.floor(px * fit));
      if (size < px) ctx.font = `${label.uncertain ? "italic " : ""}${size}px sans-serif`;
      const tw = ctx.measureText(text).width + 8;
      const th = Math.round(size * 1.4);
      const lx = Math.max(0, Math.min(x, w - tw));  // a long label near the right edge stays on the frame
      ctx.fillStyle = label.fill; ctx.fillRect(lx, Math.max(0, y - th), tw, th);
      ctx.fillStyle = label.ink; ctx.fillText(text, lx + 4, Math.max(size, y - th * 0.28));
      said.push(label.uncertain ? `${text} (${label.title})` : text);
    }
    // what the canvas shows, for a screen reader and as the tooltip (a canvas has no text of its own)
    this.canvas.setAttribute("aria-label", said.join("; ") || "no face");
    this.canvas.title = said.join("\n");
  }
  drawBars(faces) {
    this.bars.innerHTML = "";
    for (const face of faces) {
      const probs = face.smooth || face.probs;
      const row = document.createElement("div");
      row.className = "face";
      row.innerHTML = `<div class="face-title">${face.track !== undefined ? "face #" + face.track : "face"}: </div>` +
        EMOTIONS.map((e, i) => `<div class="bar"><span>${e}</span><i style="width:${(probs[i] * 100).toFixed(1)}%;background:${COLORS[e]}"></i><em>${(probs[i] * 100).toFixed(0)}%</em></div>`).join("");
      row.querySelector(".face-title").append(faceLabelElement(face));
      this.bars.appendChild(row);
    }
  }
}

// What to tell a user whose camera could not start, and what to do about it.
export function cameraProblem(err) {
  const denied = err && (err.name === "NotAllowedError" || err.name === "SecurityError");
  const missing = err && (err.name === "NotFoundError" || err.name === "OverconstrainedError");
  const what = denied ? "Camera access was denied" : missing ? "No camera was found" : `The camera could not start (${err?.message || err})`;
  return `${what}. Allow or connect a camera and press Start again` +
    (location.pathname === "/challenge" ? ", or play on a live camera: add ?camera=demo to the address." : ".");
}

// The browser camera: capture with getUserMedia, send JPEG frames at a capped rate, call back with each ack.
// Stops sending when the server refuses the camera (too many browser cameras); resolves to a stop function.
// Each start of the camera is a run; its frames carry the run's number and Stop sends it (`stopWebcam`), so
// the server refuses a frame of a stopped run that arrives after the Stop (events may be handled out of
// order), and a stopped camera never comes back by itself.
let runs = 0;
export async function startWebcam(socket, video, onAck, fps = 6) {
  const stream = await navigator.mediaDevices.getUserMedia({ video: { width: 640, height: 480 }, audio: false });
  video.srcObject = stream;
  await video.play();
  const canvas = document.createElement("canvas");
  const run = ++runs;
  let timer = null, stopped = false;
  const stop = () => { stopped = true; clearInterval(timer); stream.getTracks().forEach((t) => t.stop()); };
  stop.run = run;
  const send = () => {
    if (!video.videoWidth || !socket.connected) return;
    canvas.width = video.videoWidth; canvas.height = video.videoHeight;
    canvas.getContext("2d").drawImage(video, 0, 0);
    canvas.toBlob((blob) => blob && !stopped && blob.arrayBuffer().then((buffer) =>
      socket.emit("webcam", { jpeg: buffer, w: canvas.width, h: canvas.height, run }, (ack) => {
        if (ack && ack.full) {
          stop();
          const status = document.getElementById("status");
          status.textContent = ack.error; status.className = "status bad";
        }
        onAck(ack);
      })), "image/jpeg", 0.8);
  };
  timer = setInterval(send, 1000 / fps);
  return stop;
}

// Stop the camera (`stop`, from startWebcam) and tell the server, which forgets the camera now.
export function stopWebcam(socket, stop, onAck = () => {}) {
  if (stop) stop();
  socket.emit("webcam_stop", { run: stop ? stop.run : runs }, onAck);
}
