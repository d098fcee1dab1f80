import { cameraProblem, connect, startWebcam, stopWebcam, Tile } from "./common.js";

const socket = connect();
const tile = new Tile(document.getElementById("tile"), "your camera");
const video = document.createElement("video");
video.muted = true; video.playsInline = true;
const share = document.getElementById("share");
const title = document.getElementById("title");
const note = document.getElementById("note");
let camera = null;
let stopCapture = null;
const startButton = document.getElementById("start");
const stopButton = document.getElementById("stop");

// Private unless the box is ticked: the server shows only shared browser cameras on the live wall.
const sendShare = () => {
  if (!camera) return;
  socket.emit("share", { on: share.checked, title: title.value }, (ack) => {
    note.textContent = ack && ack.ok ? (ack.shared ? "Shown on the live wall." : "Only you see this camera.") : (ack?.error || "");
    document.body.dataset.shared = ack && ack.ok ? String(ack.shared) : "";
  });
};
// the name and the share box last as long as the tab (as its camera does): a reload keeps them
try {
  title.value = sessionStorage.getItem("fervi-camera-title") ?? title.value;
  share.checked = sessionStorage.getItem("fervi-camera-shared") === "1";
} catch (err) { /* storage blocked: the defaults */ }
const remember = () => {
  try {
    sessionStorage.setItem("fervi-camera-title", title.value);
    sessionStorage.setItem("fervi-camera-shared", share.checked ? "1" : "0");
  } catch (err) { /* storage blocked */ }
};
share.addEventListener("change", () => { remember(); sendShare(); });
title.addEventListener("change", () => { remember(); if (share.checked) sendShare(); });  // a new name shows on the wall

const start = () => startWebcam(socket, video, (ack) => {
  if (ack && ack.camera && ack.camera !== camera) {
    camera = ack.camera; tile.element.dataset.camera = camera;
    tile.seenAt = Date.now() / 1000;  // a new camera (or the same after a reconnect): quiet from now, not before
    if (share.checked) sendShare();
  }
  if (ack && ack.full) { note.textContent = ack.error; note.className = "error"; startButton.hidden = false; stopButton.hidden = true; }
}).then((stop) => {
  stopCapture = stop; startButton.hidden = true; stopButton.hidden = false;
  note.textContent = ""; note.className = "hint";
}).catch((err) => { note.textContent = cameraProblem(err); note.className = "error"; });

// Stop: the camera light goes off and the server forgets the camera now (not after the idle timeout).
stopButton.addEventListener("click", () => {
  stopWebcam(socket, stopCapture, () => {
    camera = null; delete tile.element.dataset.camera;
    tile.setOffline("");  // stopped on purpose: nothing to grey
    tile.clear("stopped");
    note.textContent = "Camera stopped. Start it again whenever you like."; note.className = "hint";
    document.body.dataset.stopped = "1";
  });
  stopCapture = null;
  stopButton.hidden = true; startButton.hidden = false;
});

// A reconnect sends to the same camera (this tab's camera key, `connect`), admitted again with its history.
// As on the wall, the tile greys and says why while the page has lost its server, or no tracked frame of
// the running camera came for a few seconds; its last figures would be stale.
socket.on("disconnect", () => { camera = null; tile.serverLost(); });
socket.on("connect", () => tile.serverBack());
setInterval(() => { if (socket.connected && camera) tile.checkStale(); }, 1000);
startButton.addEventListener("click", start);
socket.on("frame", (msg) => { if (msg.camera === camera) tile.setFrame(msg.jpeg, msg.seq); });
socket.on("tracks", (msg) => { if (msg.camera === camera) tile.setTracks(msg); });
// its processed rate against what it sends, and a warning when workers skip its frames (as on the wall)
socket.on("rates", (msg) => { if (msg.camera === camera) tile.setRates(msg); });
if (new URLSearchParams(location.search).has("autostart")) start();
