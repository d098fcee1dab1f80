import { connect, EMOTIONS, params, startWebcam, Tile } from "./common.js";

// Round rules, all overridable in the URL so a round can be played (and tested) on purpose.
const rules = {
  target: params.get("target"),
  threshold: parseFloat(params.get("threshold") || "0.5"),
  hold: parseFloat(params.get("hold") || "1.0"),
  round: parseFloat(params.get("round") || "15"),
  name: params.get("name") || "player",
};
const socket = connect();
const tile = new Tile(document.getElementById("tile"), params.get("camera") || "your camera");
const $ = (id) => document.getElementById(id);
let camera = params.get("camera");
let state = null;
let score = 0, streak = 0, won = 0;

function newRound() {
  const target = rules.target || EMOTIONS[Math.floor(Math.random() * EMOTIONS.length)];
  state = { target, deadline: performance.now() + rules.round * 1000, held: 0, last: null, over: false };
  $("target").textContent = target;
  $("verdict").textContent = "";
  $("meter-line").style.left = `${rules.threshold * 100}%`;
}

function finish(success) {
  state.over = true;
  if (success) {
    streak += 1; won += 1;
    const points = streak;
    score += points;
    $("verdict").textContent = `Round won: ${state.target}! +${points}`;
    socket.emit("challenge_result", { name: rules.name, points });
  } else {
    streak = 0;
    $("verdict").textContent = `Time is up: that was not ${state.target} enough.`;
  }
  $("score").textContent = score; $("streak").textContent = streak; $("won").textContent = won;
  document.body.dataset.roundsWon = won;
  setTimeout(newRound, 2000);
}

function onTracks(msg) {
  tile.setTracks(msg);
  if (!state || state.over) return;
  const index = EMOTIONS.indexOf(state.target);
  const best = Math.max(0, ...msg.faces.map((f) => (f.smooth || f.probs)[index]));
  const now = performance.now();
  const dt = state.last === null ? 0 : Math.min(0.5, (now - state.last) / 1000);
  state.last = now;
  state.held = best >= rules.threshold ? state.held + dt : 0;
  $("meter-bar").style.width = `${(best * 100).toFixed(1)}%`;
  $("held").textContent = state.held.toFixed(1);
  if (state.held >= rules.hold) finish(true);
}

setInterval(() => {
  if (!state || state.over) return;
  const left = Math.max(0, (state.deadline - performance.now()) / 1000);
  $("countdown").textContent = left.toFixed(1);
  if (left <= 0) finish(false);
}, 100);

socket.on("tracks", (msg) => { if (msg.camera === camera) onTracks(msg); });
socket.on("frame", (msg) => { if (msg.camera === camera) tile.setFrame(msg.jpeg); });
socket.on("leaderboard", (rows) => {
  $("leaderboard").innerHTML = rows.map((r) => `<li>${r.name.replace(/[<>&]/g, "")}: ${r.score}</li>`).join("");
});
fetch(`/api/leaderboard${location.search}`).then((r) => r.json()).then((rows) => socket.listeners("leaderboard")[0](rows));

$("start").addEventListener("click", async () => {
  $("start").hidden = true;
  if (camera) {
    socket.emit("watch", { camera });
  } else {
    const video = document.createElement("video");
    video.muted = true; video.playsInline = true;
    await startWebcam(socket, video, (ack) => { if (ack && ack.camera) camera = ack.camera; });
  }
  newRound();
});
if (params.has("autostart")) $("start").click();
