import { COLORS, connect, EMOTIONS, params } from "./common.js";

// Charts of one camera over a chosen range, from the tracker's 1-second and 1-minute buckets; the live
// "newest face" chart follows the tracks stream. What the charts show can be downloaded as CSV or JSON.
const socket = connect();
const select = document.getElementById("camera");
const range = document.getElementById("range");
const notice = document.getElementById("notice");
let camera = params.get("camera");
let known = [];
let last = null;  // the newest /api/series answer: what the export buttons write
const timeline = { track: null, points: [], t0: 0 };  // the face the live chart follows
const NEWEST_TITLE = "Newest face: smoothed probabilities";
const recentFaces = new Map();  // track id -> { points, seenAt }: the faces of the newest tracks entries
const trackStarts = new Map();  // track id -> when it appeared (from the tracks of the newest chart query)
const withToken = (url) => url + (params.get("token") ? `${url.includes("?") ? "&" : "?"}token=${params.get("token")}` : "");
const minutesWanted = parseFloat(params.get("minutes") || "5");
range.value = [...range.options].map((o) => o.value).find((v) => Number(v) >= minutesWanted) || "5";
if (!["5", "60", "1440", "10080"].includes(String(minutesWanted))) {  // ?minutes=2: a range of its own
  range.insertAdjacentHTML("afterbegin", `<option value="${minutesWanted}">last ${minutesWanted} min</option>`);
  range.value = String(minutesWanted);
}

// time the camera was not watched (a restart, or workers that fell behind by more than the hold), told apart
// from time watched with no face in view (blank): hatched light grey on no fill, with a dashed edge, in the
// chart and its legend, so that it never reads as neutral's solid grey (on a phone's small chart too)
const NOT_OBSERVED = { label: "not observed", color: "#e2e6ea" };
function hatch(color) {
  const cell = document.createElement("canvas");
  cell.width = cell.height = 8;
  const ctx = cell.getContext("2d");
  ctx.strokeStyle = color; ctx.lineWidth = 1.5;
  ctx.beginPath();
  for (const [x0, y0, x1, y1] of [[0, 8, 8, 0], [-2, 2, 2, -2], [6, 10, 10, 6]]) { ctx.moveTo(x0, y0); ctx.lineTo(x1, y1); }
  ctx.stroke();
  return ctx.createPattern(cell, "repeat");
}
const area = new Chart(document.getElementById("area"), {
  type: "line",
  data: { labels: [], datasets: [...EMOTIONS.map((e) => ({ label: e, data: [], fill: true, backgroundColor: COLORS[e], borderColor: COLORS[e], pointRadius: 0, tension: 0.2 })),
    { label: NOT_OBSERVED.label, data: [], fill: true, backgroundColor: hatch(NOT_OBSERVED.color), borderColor: NOT_OBSERVED.color,
      borderDash: [5, 4], borderWidth: 1.5, pointRadius: 0, stepped: true }] },
  options: { animation: false, maintainAspectRatio: false, scales: { y: { stacked: true, title: { display: true, text: "share of face-time" }, min: 0, max: 1 }, x: { ticks: { maxTicksLimit: 8 } } } },
});
const donut = new Chart(document.getElementById("donut"), {
  type: "doughnut",
  data: { labels: EMOTIONS, datasets: [{ data: EMOTIONS.map(() => 0), backgroundColor: EMOTIONS.map((e) => COLORS[e]) }] },
  options: { animation: false, maintainAspectRatio: false, plugins: { legend: { display: false },
    tooltip: { callbacks: { label: (c) => `${c.label}: ${c.parsed.toFixed(1)} face-s` } } } },
});
// probabilities of one face over its seconds on camera (a linear axis: one label per tick, not per frame)
const faceChart = (canvas) => new Chart(canvas, {
  type: "line",
  data: { datasets: EMOTIONS.map((e) => ({ label: e, data: [], borderColor: COLORS[e], backgroundColor: COLORS[e], pointRadius: 0, fill: false })) },
  options: { animation: false, maintainAspectRatio: false, parsing: false, scales: {
    y: { min: 0, max: 1, title: { display: true, text: "smoothed probability" } },
    // min 0: a new face's one point would otherwise sit mid-axis, from "-1 s" to "1 s"
    x: { type: "linear", min: 0, title: { display: true, text: "seconds since the face appeared" },
      ticks: { maxTicksLimit: 8, precision: 0, callback: (v) => `${v} s` } } } },
});
const line = faceChart(document.getElementById("timeline"));
const trackChart = faceChart(document.getElementById("track-chart"));
const plot = (chart, points, t0) => {
  chart.data.datasets.forEach((d, k) => { d.data = points.map((x) => ({ x: x.t - t0, y: x.probs[k] })); });
  chart.update();
};

const minutes = () => Number(range.value);
const when = (t) => new Date(t * 1000);
// a range of a day or more spans two dates: its labels carry the date
const clock = (t) => (minutes() >= 1440 ? when(t).toLocaleString([], { month: "short", day: "numeric", hour: "2-digit", minute: "2-digit" })
  : when(t).toLocaleTimeString());
// a face on camera for 0.4 s reads "0.4 s", not "0 s"
const span = (s) => (s >= 3600 ? `${(s / 3600).toFixed(1)} h` : s >= 60 ? `${(s / 60).toFixed(1)} min` :
  `${s.toFixed(s >= 10 ? 0 : 1)} s`);

async function refresh() {
  if (!camera) return;
  const seconds = minutes() * 60;
  const resolution = seconds > 1800 ? "1m" : "1s";
  const response = await fetch(withToken(`/api/series/${encodeURIComponent(camera)}?seconds=${seconds}&resolution=${resolution}`));
  const data = await response.json();
  if (!response.ok) { notice.textContent = data.error || `cannot chart ${camera}`; return; }
  last = { camera, minutes: minutes(), resolution, ...data };
  const s = data.series;
  // the buckets grouped into about 60 points of a round length: shares of face-time within the time watched,
  // and the share of the time not watched
  const groups = groupBuckets(s.t, resolution === "1m" ? 60 : 1);
  area.canvas.dataset.pointSeconds = groups.seconds;
  const labels = [], shares = [...EMOTIONS, NOT_OBSERVED.label].map(() => []);
  // time with no record at all (before the camera existed, or while nothing sent it frames) is not observed
  // either; the newest seconds the tracker has not recorded yet are left blank, not called unobserved
  // a camera that ended was not watched after its last record either
  const recorded = s.t.map((_, i) => s.observed[i] + s.unobserved[i] > 0);
  const firstRecord = recorded.indexOf(true), lastRecord = recorded.lastIndexOf(true);
  const ended = known.some((c) => c.camera === camera && !c.live);
  for (const [i, end, start] of groups.parts) {
    const sum = (name) => s[name].slice(i, end).reduce((a, b) => a + b, 0);
    const sums = EMOTIONS.map((e) => sum(e));
    const total = sums.reduce((a, b) => a + b, 0);
    const observed = sum("observed"), unobserved = sum("unobserved");
    labels.push(clock(start));
    if (observed + unobserved === 0 && i > lastRecord && lastRecord >= 0 && !ended) {
      shares.forEach((share) => share.push(null));
      continue;
    }
    const watched = observed + unobserved ? observed / (observed + unobserved) : 0;
    sums.forEach((v, k) => shares[k].push(total ? (watched * v) / total : 0));
    shares[EMOTIONS.length].push(1 - watched);
  }
  area.data.labels = labels;
  area.data.datasets.forEach((d, k) => { d.data = shares[k]; });
  // how many of its first points are wholly not observed (for tests and the curious: the chart's data)
  area.canvas.dataset.unobservedHead = String(shares[EMOTIONS.length].findIndex((v) => v !== 1) === -1
    ? shares[EMOTIONS.length].length : shares[EMOTIONS.length].findIndex((v) => v !== 1));
  area.update();
  donut.data.datasets[0].data = EMOTIONS.map((e) => data.totals[e]);
  donut.update();
  const faceSeconds = EMOTIONS.reduce((a, e) => a + data.totals[e], 0);
  document.getElementById("totals").innerHTML = EMOTIONS.map((e) =>
    `<li><i style="background:${COLORS[e]}"></i>${e} ${faceSeconds ? Math.round((100 * data.totals[e]) / faceSeconds) : 0}%` +
    ` <span class="hint">${data.totals[e].toFixed(1)} s</span></li>`).join("");
  drawTracks(data.tracks, data.track_count ?? data.tracks.length);
  refreshPanel(data.tracks);
  for (const t of data.tracks) trackStarts.set(t.id, t.start);
  followNewest(Date.now() / 1000);  // a new face of the table, or the last face of a camera that ended
  const summary = document.getElementById("summary");
  const unobserved = s.unobserved.reduce((a, b) => a + b, 0);
  summary.textContent = `${faceSeconds.toFixed(1)} face-seconds in the last ${range.selectedOptions[0].text.replace("last ", "")} · ` +
    // "now": the faces the table marks "(now)", its open tracks (a face hidden for a moment is still one)
    `${data.track_count ?? data.tracks.length} face track(s) · ${ended ? 0 : data.tracks.filter((t) => t.open).length} face(s) now` +
    (unobserved >= 1 ? ` · not observed for ${span(unobserved)} (workers behind, or the camera restarted): not counted as "no face"` : "") +
    (firstRecord > 0 ? ` · no record before ${clock(s.t[firstRecord])}` : firstRecord < 0 ? " · no record in this range" : "") +
    (ended && lastRecord >= 0 && lastRecord < s.t.length - 1 ? ` · the camera ended at ${clock(s.t[lastRecord])}` : "");
  summary.dataset.faceSeconds = faceSeconds.toFixed(2);
  summary.dataset.unobservedSeconds = unobserved.toFixed(2);
  document.getElementById("range-note").textContent =
    faceSeconds || data.active ? "" : `No faces on ${camera} in this range; try a longer one.`;
}

// Point lengths, in buckets, that read as round times: 5 s, 1 min, 3 h...
const ROUND_STEPS = [1, 2, 3, 5, 10, 15, 20, 30, 60, 120, 180, 240, 360, 720, 1440, 2880];
const MOST_POINTS = 62;
// Buckets (their start times `t`, `bucketS` apart) grouped into at most MOST_POINTS points of the shortest
// round length that allows, each beginning at a multiple of it (12:00:05, 12:00:10...; the first and last may
// be partial): parts [first bucket, end bucket, point start time], and the points' length in seconds.
function groupBuckets(t, bucketS) {
  const step = ROUND_STEPS.find((k) => Math.ceil(t.length / k) + 1 <= MOST_POINTS) ?? Math.ceil(t.length / (MOST_POINTS - 1));
  const width = step * bucketS, parts = [];
  for (let i = 0; i < t.length;) {
    const start = Math.floor(t[i] / width) * width;
    let end = i + 1;
    while (end < t.length && t[end] < start + width) end += 1;
    parts.push([i, end, start]);
    i = end;
  }
  return { parts, seconds: width };
}

// The faces table keeps one row per face across refreshes, updated in place: a click is never lost to a
// table rebuilt under the pointer.
const trackRows = new Map();  // track id -> its row
function drawTracks(tracks, count) {
  const body = document.querySelector("#tracks tbody");
  const shown = tracks.slice(0, 20);
  document.getElementById("tracks-cut").textContent =
    count > shown.length ? ` The newest ${shown.length} of ${count} are listed.` : "";
  for (const [id, row] of trackRows) {
    if (!shown.some((t) => t.id === id)) { row.remove(); trackRows.delete(id); }
  }
  shown.forEach((t, i) => {
    let row = trackRows.get(t.id);
    if (!row) {
      row = document.createElement("tr");
      row.dataset.track = t.id;
      row.innerHTML = `<td><button type="button" class="link track-link" data-track="${t.id}">#${t.id}</button><span class="now"></span></td>` +
        `<td class="seen"></td><td class="for"></td><td><b></b></td><td><span class="stack"></span></td>`;
      row.querySelector("button").addEventListener("click", () => showTrack(t.id));
      trackRows.set(t.id, row);
    }
    const total = EMOTIONS.reduce((a, e) => a + t.seconds[e], 0) || 1;
    row.querySelector(".now").textContent = t.open ? " (now)" : "";
    row.querySelector(".seen").textContent = clock(t.start);
    row.querySelector(".for").textContent = span(t.end - t.start);
    row.querySelector("b").textContent = t.dominant;
    row.querySelector(".stack").innerHTML = EMOTIONS.map((e) =>
      `<i title="${e} ${t.seconds[e].toFixed(1)} s" style="width:${(100 * t.seconds[e]) / total}%;background:${COLORS[e]}"></i>`).join("");
    if (body.children[i] !== row) body.insertBefore(row, body.children[i] || null);  // moved only when its place changed
  });
}

// Label segments of a track, consecutive points of one label merged: each lasts until the next begins.
function segments(points) {
  const out = [];
  for (const p of points) {
    const last = out[out.length - 1];
    if (last && last.label === p.label) last.end = p.t;
    else { if (last) last.end = p.t; out.push({ label: p.label, start: p.t, end: p.t }); }
  }
  return out;
}

// The label history as a coloured strip, one block per segment, its width its share of the time; each
// block names its label and seconds ("neutral 0–4 s") on hover and to a screen reader.
function drawStrip(strip, parts, t0) {
  strip.replaceChildren();
  const first = parts.length ? parts[0].start : 0, last = parts.length ? parts[parts.length - 1].end : 0;
  const whole = Math.max(last - first, 1e-6);
  const words = [];
  for (const s of parts) {
    const text = `${s.label} ${Math.round(s.start - t0)}–${Math.max(Math.round(s.end - t0), Math.round(s.start - t0) + 1)} s`;
    const block = document.createElement("i");
    block.style.width = `${Math.max(0.5, (100 * (s.end - s.start)) / whole)}%`;
    block.style.background = COLORS[s.label];
    block.title = text;
    block.dataset.label = s.label;
    strip.appendChild(block);
    words.push(text);
  }
  strip.setAttribute("aria-label", words.join(", then "));
  return words;
}

function fillTrack(t, points, note) {
  document.getElementById("track-title").textContent =
    `Face #${t.id}: ${clock(t.start)}, ${span(t.end - t.start)}${t.open ? " (still on camera)" : ""}, mostly ${t.dominant}`;
  plot(trackChart, points, t.start);
  const parts = drawStrip(document.getElementById("track-segments"), segments(points), t.start);
  document.getElementById("track-panel").dataset.segments = parts.length;
  note.textContent = points.length ? `${points.length} point(s) from the tracks stream`
    : "Its frames are no longer in the tracks stream (it keeps the newest FERVI_RESULTS_MAXLEN entries): only the totals above remain.";
}

// `scroll`: bring the panel into view (a click); a refresh of the open panel leaves the page where it is
async function showTrack(id, scroll = true) {
  const panel = document.getElementById("track-panel");
  const response = await fetch(withToken(`/api/tracks/${encodeURIComponent(camera)}/${id}`));
  const data = await response.json().catch(() => ({}));
  if (!scroll && (panel.hidden || panel.dataset.track !== String(id))) return;  // closed or changed meanwhile
  panel.hidden = false;
  panel.dataset.track = id;
  panel.dataset.end = response.ok ? data.track.end : "";
  const note = document.getElementById("track-note");
  if (response.ok) fillTrack(data.track, data.points, note);
  else {  // what it says is about this face, not the one shown before
    document.getElementById("track-title").textContent = `Face #${id}`;
    plot(trackChart, [], 0);
    drawStrip(document.getElementById("track-segments"), [], 0);
    panel.dataset.segments = 0;
    note.textContent = data.error || `face #${id} could not be read (${response.status})`;
  }
  // the panel opens below the faces table, off screen on a phone: bring it into view, once it is filled
  if (scroll) panel.scrollIntoView({ block: "start" });
}

// The open panel follows its face while the face's record grows (its length, "still on camera", its points)
function refreshPanel(tracks) {
  const panel = document.getElementById("track-panel");
  if (panel.hidden) return;
  const t = tracks.find((x) => String(x.id) === panel.dataset.track);
  if (t && String(t.end) !== panel.dataset.end) showTrack(t.id, false);
}

function download(name, type, text) {
  const link = document.createElement("a");
  link.href = URL.createObjectURL(new Blob([text], { type }));
  link.download = name;
  link.click();
  setTimeout(() => URL.revokeObjectURL(link.href), 1000);
}

document.getElementById("export-json").addEventListener("click", () => {
  if (last) download(`fervi-${last.camera}-${last.minutes}min.json`, "application/json", JSON.stringify(last, null, 2));
});
document.getElementById("export-csv").addEventListener("click", () => {
  if (!last) return;
  const s = last.series;
  const rows = [["time_utc", "t", ...EMOTIONS.map((e) => `${e}_face_s`), "observed_s", "not_observed_s"].join(",")];
  s.t.forEach((t, i) => rows.push([when(t).toISOString(), t, ...EMOTIONS.map((e) => s[e][i]), s.observed[i], s.unobserved[i]].join(",")));
  download(`fervi-${last.camera}-${last.minutes}min.csv`, "text/csv", rows.join("\n") + "\n");
});

async function cameras() {
  known = (await (await fetch(withToken("/api/cameras/history"))).json())
    .sort((a, b) => b.live - a.live || b.last_frame_at - a.last_frame_at);
  const names = known.map((c) => c.camera);
  if (!camera && names.length) camera = names[0];
  if (camera && !names.includes(camera)) {
    notice.textContent = `There is no camera called "${camera}"` + (names.length ? `: pick one of the list.` : ".");
    camera = names[0] || null;
  }
  select.innerHTML = "";
  for (const c of known) {
    const option = new Option(`${c.title || c.camera}${c.live ? "" : " (ended)"}`, c.camera, false, c.camera === camera);
    select.appendChild(option);
  }
  if (!names.length) notice.textContent = "No camera has data yet: add one on the Cameras page, or open the browser camera.";
  if (camera) socket.emit("watch", { camera });
}

select.addEventListener("change", () => {
  socket.emit("watch", { camera: select.value, leave: [camera] });
  camera = select.value; notice.textContent = "";
  timeline.track = null; timeline.points = []; recentFaces.clear(); trackStarts.clear();  // the other camera's faces no longer show
  line.data.datasets.forEach((d) => { d.data = []; }); line.update();
  document.getElementById("track-panel").hidden = true;
  document.getElementById("newest-title").textContent = NEWEST_TITLE;
  refresh();
});
range.addEventListener("change", refresh);
// The live chart follows the newest face of the faces table: a confirmed track, never a passer-by's flash
// that the tracker did not count (those take track ids too, but have no record); its points come live from
// the tracks stream, its earlier ones from its record's timeline (`backfill`), so a camera that ended shows
// its last face as well.
const FACE_FORGOTTEN_S = 60;
function followNewest(ts) {
  let newest = null;
  for (const id of trackStarts.keys()) if (newest === null || id > newest) newest = id;
  for (const [id, face] of recentFaces) if (ts - face.seenAt > FACE_FORGOTTEN_S && id !== newest) recentFaces.delete(id);
  const title = document.getElementById("newest-title");
  if (newest === null) {
    title.textContent = `${NEWEST_TITLE}: no face yet`;
    timeline.track = null; timeline.points = [];
  } else {
    if (!recentFaces.has(newest)) recentFaces.set(newest, { points: [], seenAt: ts });
    if (timeline.track !== newest) {
      timeline.track = newest; timeline.t0 = trackStarts.get(newest);
      title.textContent = `Newest face #${newest}: smoothed probabilities`;
      backfill(camera, newest);
    }
    timeline.points = recentFaces.get(newest).points;
  }
  drawNewest();
}
function drawNewest() {
  const title = document.getElementById("newest-title");
  title.dataset.points = timeline.points.length;
  title.dataset.from = timeline.points.length ? timeline.points[0].t : "";
  plot(line, timeline.points, timeline.t0);
}
// A face followed from its start, not from when the page opened: its earlier points come from the tracks
// stream (`/api/tracks/<camera>/<id>`, once it is a confirmed track), before the points the page received.
async function backfill(cam, id) {
  const response = await fetch(withToken(`/api/tracks/${encodeURIComponent(cam)}/${id}`)).catch(() => null);
  const face = recentFaces.get(id);
  if (!response || !response.ok || !face || cam !== camera) return;
  const data = await response.json().catch(() => null);
  if (!data || !Array.isArray(data.points)) return;
  const first = face.points.length ? face.points[0].t : Infinity;
  const earlier = data.points.filter((p) => p.t < first).map((p) => ({ t: p.t, probs: p.probs }));
  face.points = earlier.concat(face.points);
  if (timeline.track === id) {  // its start (timeline.t0) is its record's, from the faces table
    timeline.points = face.points;
    drawNewest();
  }
}
// A face's points for the live chart: all of them, its older ones thinned to every other as they pile up
// (a face on camera for an hour keeps its whole history at a coarser step, its newest seconds in full).
const LIVE_POINTS = 600, LIVE_FULL = 200;
function thinned(points) {
  if (points.length <= LIVE_POINTS) return points;
  const old = points.slice(0, -LIVE_FULL).filter((_, i) => i % 2 === 0);
  return old.concat(points.slice(-LIVE_FULL));
}
socket.on("tracks", (msg) => {
  if (msg.camera !== camera) return;
  for (const face of msg.faces) {
    if (face.track === undefined) continue;
    const known = recentFaces.get(face.track) || { points: [], seenAt: msg.ts };
    known.points.push({ t: msg.ts, probs: face.smooth || face.probs });
    known.points = thinned(known.points);
    known.seenAt = msg.ts;
    recentFaces.set(face.track, known);
  }
  followNewest(msg.ts);
});
socket.on("connect", cameras);
setInterval(refresh, 2000);
setInterval(cameras, 10000);  // cameras that start or end while the page is open
cameras().then(refresh);
