import { COLORS, connect, EMOTIONS, params } from "./common.js";

const socket = connect();
const select = document.getElementById("camera");
const minutes = parseFloat(params.get("minutes") || "5");
let camera = params.get("camera");
const timeline = { track: null, points: [] };
const withToken = (url) => url + (params.get("token") ? `${url.includes("?") ? "&" : "?"}token=${params.get("token")}` : "");

const area = new Chart(document.getElementById("area"), {
  type: "line",
  data: { labels: [], datasets: EMOTIONS.map((e) => ({ label: e, data: [], fill: true, backgroundColor: COLORS[e], borderColor: COLORS[e], pointRadius: 0, tension: 0.2 })) },
  options: { animation: false, maintainAspectRatio: false, scales: { y: { stacked: true, title: { display: true, text: "share of face-time" }, max: 1 }, x: { ticks: { maxTicksLimit: 8 } } } },
});
const donut = new Chart(document.getElementById("donut"), {
  type: "doughnut",
  data: { labels: EMOTIONS, datasets: [{ data: EMOTIONS.map(() => 0), backgroundColor: EMOTIONS.map((e) => COLORS[e]) }] },
  options: { animation: false, maintainAspectRatio: false },
});
const line = new Chart(document.getElementById("timeline"), {
  type: "line",
  data: { labels: [], datasets: EMOTIONS.map((e) => ({ label: e, data: [], borderColor: COLORS[e], pointRadius: 0, fill: false })) },
  options: { animation: false, maintainAspectRatio: false, scales: { y: { min: 0, max: 1 }, x: { ticks: { maxTicksLimit: 8 } } } },
});

async function refresh() {
  if (!camera) return;
  const seconds = minutes * 60;
  const resolution = seconds > 1800 ? "1m" : "1s";
  const data = await (await fetch(withToken(`/api/series/${encodeURIComponent(camera)}?seconds=${seconds}&resolution=${resolution}`))).json();
  const s = data.series;
  // group 1-second buckets into at most 60 points, as shares of face-time
  const step = Math.max(1, Math.ceil(s.t.length / 60));
  const labels = [], shares = EMOTIONS.map(() => []);
  for (let i = 0; i < s.t.length; i += step) {
    const sums = EMOTIONS.map((e) => s[e].slice(i, i + step).reduce((a, b) => a + b, 0));
    const total = sums.reduce((a, b) => a + b, 0);
    labels.push(new Date(s.t[i] * 1000).toLocaleTimeString());
    sums.forEach((v, k) => shares[k].push(total ? v / total : 0));
  }
  area.data.labels = labels;
  area.data.datasets.forEach((d, k) => { d.data = shares[k]; });
  area.update();
  donut.data.datasets[0].data = EMOTIONS.map((e) => data.totals[e]);
  donut.update();
  const faceSeconds = EMOTIONS.reduce((a, e) => a + data.totals[e], 0);
  const summary = document.getElementById("summary");
  summary.textContent = `${faceSeconds.toFixed(1)} face-seconds in the last ${minutes} min · ${data.tracks.length} face track(s) · ${data.active} face(s) now`;
  summary.dataset.faceSeconds = faceSeconds.toFixed(2);
}

async function cameras() {
  const list = await (await fetch(withToken("/api/cameras"))).json();
  const names = list.map((c) => c.camera);
  if (!camera && names.length) camera = names[0];
  if (camera && !names.includes(camera)) names.unshift(camera);
  select.innerHTML = names.map((n) => `<option ${n === camera ? "selected" : ""}>${n}</option>`).join("");
  if (camera) socket.emit("watch", { camera });
}

select.addEventListener("change", () => { socket.emit("watch", { camera: select.value, leave: [camera] }); camera = select.value; timeline.points = []; refresh(); });
socket.on("tracks", (msg) => {
  if (msg.camera !== camera || !msg.faces.length) return;
  const face = msg.faces.reduce((a, b) => (b.track > a.track ? b : a));  // the newest face
  if (timeline.track !== face.track) { timeline.track = face.track; timeline.points = []; }
  timeline.points.push({ t: new Date(msg.ts * 1000).toLocaleTimeString(), p: face.smooth });
  timeline.points = timeline.points.slice(-120);
  line.data.labels = timeline.points.map((x) => x.t);
  line.data.datasets.forEach((d, k) => { d.data = timeline.points.map((x) => x.p[k]); });
  line.update();
});
socket.on("connect", cameras);
setInterval(refresh, 2000);
cameras().then(refresh);
