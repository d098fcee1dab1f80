import { cameraProblem, connect, EMOTIONS, params, startWebcam, Tile } from "./common.js";

// The server runs each round from the tracker's results; this page asks for rounds and shows progress.
// URL settings: ?name=YOU; ?camera=NAME (play on a live camera); ?target=, ?threshold=, ?hold=, ?round=
// choose the round yourself, which makes it practice: only standard rounds on your own camera score.
const asked = { name: params.get("name") || "player" };
for (const key of ["target", "threshold", "hold", "round"]) if (params.has(key)) asked[key] = params.get(key);
const socket = connect();
const tile = new Tile(document.getElementById("tile"), params.get("camera") || "your camera");
const $ = (id) => document.getElementById(id);
let camera = params.get("camera");
let round = null;      // the server's view of the current round
let deadline = 0;      // local clock, from the server's time left
let next = null;

function showLeaderboard(rows) {
  const list = $("leaderboard");
  list.replaceChildren(...rows.map((r) => {
    const item = document.createElement("li");
    item.textContent = `${r.name}: ${r.score}`;  // names are plain text
    return item;
  }));
}
const refreshLeaderboard = () =>
  fetch(`/api/leaderboard${location.search}`).then((r) => r.json()).then(showLeaderboard).catch(() => {});

function show(state) {
  round = state;
  $("target").textContent = state.target;
  $("mode").textContent = state.scored ? "scored round" : "practice (not scored)";
  $("meter-line").style.left = `${state.threshold * 100}%`;
  $("meter-bar").style.width = `${(state.best * 100).toFixed(1)}%`;
  $("held").textContent = state.held.toFixed(1);
  $("score").textContent = state.score; $("streak").textContent = state.streak; $("won").textContent = state.won;
  document.body.dataset.roundsWon = state.won;
  if (state.state === "won") {
    $("verdict").textContent = `Round won: ${state.target}!` + (state.scored ? ` +${state.points}` : " (practice)");
    refreshLeaderboard();
  } else if (state.state === "lost") {
    $("verdict").textContent = `Time is up: that was not ${state.target} enough.`;
  }
  if (state.state !== "playing" && !next) next = setTimeout(() => { next = null; newRound(); }, 2000);
}

function newRound() {
  socket.emit("challenge_start", { ...asked, camera: params.get("camera") || undefined }, (ack) => {
    if (!ack || !ack.ok) { $("verdict").textContent = ack?.error || "no answer"; setTimeout(newRound, 2000); return; }
    $("verdict").textContent = "";
    deadline = performance.now() + ack.left_s * 1000;
    show(ack);
  });
}

setInterval(() => {
  if (!round || round.state !== "playing") return;
  $("countdown").textContent = Math.max(0, (deadline - performance.now()) / 1000).toFixed(1);
}, 100);

socket.on("challenge", (state) => { if (!round || state.id === round.id) show(state); });
socket.on("tracks", (msg) => { if (msg.camera === camera) tile.setTracks(msg); });
socket.on("frame", (msg) => { if (msg.camera === camera) tile.setFrame(msg.jpeg); });
socket.on("disconnect", () => { round = null; });
refreshLeaderboard();

$("start").addEventListener("click", async () => {
  $("start").hidden = true;
  if (camera) {
    newRound();
    return;
  }
  const video = document.createElement("video");
  video.muted = true; video.playsInline = true;
  let started = false;
  try {
    await startWebcam(socket, video, (ack) => {
      if (ack && ack.camera) camera = ack.camera;
      if (ack && ack.ok && !started) { started = true; newRound(); }
    });
  } catch (err) {
    $("verdict").textContent = cameraProblem(err);
    $("start").hidden = false;
  }
});
if (params.has("autostart")) $("start").click();
