import { connect, startWebcam, Tile } from "./common.js";

const socket = connect();
const tile = new Tile(document.getElementById("tile"), "your camera");
const video = document.createElement("video");
video.muted = true; video.playsInline = true;
let camera = null;

const start = () => startWebcam(socket, video, (ack) => {
  if (ack && ack.camera && ack.camera !== camera) { camera = ack.camera; tile.element.dataset.camera = camera; }
}).then(() => { document.getElementById("start").hidden = true; })
  .catch((err) => { document.getElementById("status").textContent = `camera: ${err.message}`; });

document.getElementById("start").addEventListener("click", start);
socket.on("frame", (msg) => { if (msg.camera === camera) tile.setFrame(msg.jpeg); });
socket.on("tracks", (msg) => { if (msg.camera === camera) tile.setTracks(msg); });
if (new URLSearchParams(location.search).has("autostart")) start();
