import { cameraProblem, connect, EMOTIONS, params, startWebcam, stopWebcam, Tile } from "./common.js";

// The server runs each round from the tracker's results; this page asks for rounds and shows progress.
// A game is 5 scored rounds (the server counts them and keeps the best games); practice picks the emotion.
// The name is remembered in this browser. URL settings: ?name=YOU; ?camera=NAME (play on a live camera);
// ?target=, ?threshold=, ?hold=, ?round= choose the round yourself, which makes it practice.
const $ = (id) => document.getElementById(id);
const nameInput = $("name");
const modeSelect = $("mode-select");
nameInput.value = params.get("name") || localStorage.getItem("fervi.name") || "";
nameInput.addEventListener("change", () => localStorage.setItem("fervi.name", nameInput.value.trim()));
// an address setting the page does not know is said, not turned into a scored game
const badTarget = params.has("target") && !EMOTIONS.includes(params.get("target"));
if (params.has("target") && !badTarget) modeSelect.value = params.get("target");
if (params.has("camera")) {  // rounds on another camera are practice: say so in the menu
  modeSelect.options[0].textContent = `rounds on ${params.get("camera")} (practice, not scored)`;
}
const asked = () => {
  const request = { name: nameInput.value.trim() || "player" };
  for (const key of ["threshold", "hold", "round"]) if (params.has(key)) request[key] = params.get(key);
  if (modeSelect.value === "game") request.game = true; else request.target = modeSelect.value;
  return request;
};
const socket = connect();
const tile = new Tile(document.getElementById("tile"), params.get("camera") || "your camera");
let camera = params.get("camera");
let round = null;      // the server's view of the current round
let deadline = 0;      // local clock, from the server's time left
let next = null;

function empty(text) {
  const item = document.createElement("li");
  item.className = "hint"; item.textContent = text;
  return item;
}

function showLeaderboard(rows) {
  const list = $("leaderboard");
  if (!rows.length) { list.replaceChildren(empty("no points scored yet")); return; }
  list.replaceChildren(...rows.map((r) => {
    const item = document.createElement("li");
    item.textContent = `${r.name}: ${r.score}`;  // names are plain text
    return item;
  }));
}
const token = params.get("token") ? `?token=${encodeURIComponent(params.get("token"))}` : "";
function showGames(rows) {
  if (!rows.length) { $("games").replaceChildren(empty("no game played yet")); return; }
  $("games").replaceChildren(...rows.map((r) => {
    const item = document.createElement("li");
    item.textContent = `${r.name}: ${r.score} (${new Date(r.at * 1000).toLocaleDateString()})`;
    return item;
  }));
}
const refreshLeaderboard = () => {
  fetch(`/api/leaderboard${token}`).then((r) => r.json()).then(showLeaderboard).catch(() => {});
  fetch(`/api/games${token}`).then((r) => r.json()).then(showGames).catch(() => {});
};
let gameOver = false;

function showVerdicts(state) {
  const list = $("verdicts");
  list.replaceChildren(...(state.verdicts || []).map((v, i) => {
    const item = document.createElement("li");
    item.className = v.won ? "won" : "lost";
    item.textContent = `${v.target}: ${v.won ? `won, +${v.points}` : `missed (held ${v.held.toFixed(1)} s)`}`;
    item.dataset.round = i + 1;
    return item;
  }));
}

function showName(state) {  // the server keeps names plain text: say so when it changed the one typed
  const typed = asked().name.replace(/\s+/g, " ");
  $("name-note").textContent = state.name && state.name !== typed
    ? `shown as “${state.name}”: names keep letters, digits, spaces and - _ . ' (24 at most)` : "";
}

function show(state) {
  round = state;
  showName(state);
  $("target").textContent = state.target;
  $("target").classList.remove("target-none");
  $("mode").textContent = state.scored ? "scored round" : "practice (not scored)";
  $("meter-line").style.left = `${state.threshold * 100}%`;
  $("meter-bar").style.width = `${(state.best * 100).toFixed(1)}%`;
  $("held").textContent = state.held.toFixed(1);
  $("score").textContent = state.score; $("streak").textContent = state.streak; $("won").textContent = state.won;
  document.body.dataset.roundsWon = state.won;
  $("round-no").textContent = state.game_id ? `Round ${state.round_no} of ${state.game_rounds} · game score ${state.game_score}` : "";
  showVerdicts(state);
  if (state.state === "won") {
    $("verdict").textContent = `Round won: ${state.target}!` + (state.scored ? ` +${state.points}` : " (practice)");
    refreshLeaderboard();
  } else if (state.state === "lost") {
    $("verdict").textContent = state.best > 0 ? `Time is up: that was not ${state.target} enough.`
      : "Time is up: no face in view at the end. Face the camera, in good light.";
  }
  if (state.game_over) {  // the game's last round: a final score, and a way to play again
    gameOver = true;
    // no game runs: no Stop (and the player's own camera goes off until Play again)
    stopPlaying(`${$("verdict").textContent} Game over: ${state.game_score} point(s) in ${state.game_rounds} rounds.`);
    document.body.dataset.gameScore = state.game_score;
    $("start").hidden = true; $("again").hidden = false;
    // the boards with this game on them (the server recorded it before it said the game was over)
    refreshLeaderboard();
    setTimeout(refreshLeaderboard, 1000);
    return;
  }
  if (state.state !== "playing" && !next) next = setTimeout(() => { next = null; newRound(); }, 2000);
}

$("again").addEventListener("click", () => { gameOver = false; $("again").hidden = true; $("start").click(); });
modeSelect.addEventListener("change", () => { if (round && round.state !== "playing" && gameOver) $("again").hidden = false; });

let stopped = false;     // the player pressed Stop: no new round until Start
let stopCapture = null;  // stops the browser camera (its light goes off)

function newRound() {
  if (gameOver || stopped) return;
  socket.emit("challenge_start", { ...asked(), camera: params.get("camera") || undefined }, (ack) => {
    if (!ack || !ack.ok) {
      $("verdict").textContent = ack?.error || "no answer";
      if (ack?.error?.startsWith("there is no camera")) { $("start").hidden = false; $("stop").hidden = true; return; }
      setTimeout(newRound, 2000);
      return;
    }
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
// The player's own camera: the first round's clock starts once it shows a picture (its first analysed
// frame), not when the browser first hands a frame over.
let pictureShown = false;
let onPicture = null;
function whenPictureShown(then) {
  if (pictureShown) { then(); return; }
  $("verdict").textContent = "Waiting for the camera's first picture…";
  onPicture = () => { $("verdict").textContent = ""; then(); };
}
socket.on("tracks", (msg) => {
  if (msg.camera !== camera) return;
  tile.setTracks(msg);
  if (!pictureShown) {
    pictureShown = true;
    document.body.dataset.pictureShown = "1";
    const then = onPicture; onPicture = null;
    if (then) then();
  }
});
socket.on("frame", (msg) => { if (msg.camera === camera) tile.setFrame(msg.jpeg, msg.seq); });
socket.on("rates", (msg) => { if (msg.camera === camera) tile.setRates(msg); });  // the player's own camera
socket.on("disconnect", () => { round = null; });
refreshLeaderboard();

// No round is asked for until Start; the player's own camera goes off and the server forgets it now.
function stopPlaying(verdict = "Stopped. Press Start to play again.") {
  stopped = true;
  clearTimeout(next); next = null;
  if (stopCapture) {  // the player's own camera: off now, and the server forgets it now
    stopWebcam(socket, stopCapture); stopCapture = null;
    camera = params.get("camera");
    pictureShown = false; onPicture = null;  // a new browser camera next time: wait for its picture again
  }
  round = null;
  $("verdict").textContent = verdict;
  $("stop").hidden = true; $("start").hidden = false;
  document.body.dataset.stopped = "1";
}
$("stop").addEventListener("click", () => stopPlaying());

$("start").addEventListener("click", async () => {
  $("start").hidden = true;
  stopped = false;
  delete document.body.dataset.stopped;
  if (camera) {  // a camera of the server, already running (the server says so if it is not)
    $("stop").hidden = false;
    newRound();
    return;
  }
  const video = document.createElement("video");
  video.muted = true; video.playsInline = true;
  let started = false;
  try {
    stopCapture = await startWebcam(socket, video, (ack) => {
      if (ack && ack.camera) { camera = ack.camera; tile.element.dataset.camera = camera; }
      if (ack && ack.ok && !started) { started = true; whenPictureShown(newRound); }
    });
    $("stop").hidden = false;
  } catch (err) {
    $("verdict").textContent = cameraProblem(err);
    $("start").hidden = false;
  }
});
if (badTarget) {
  $("verdict").textContent = `"${params.get("target")}" is not an emotion FERVI knows (${EMOTIONS.join(", ")}): ` +
    "pick one in the Play menu.";
} else if (params.has("autostart")) $("start").click();
