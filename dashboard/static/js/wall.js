import { connect, Tile } from "./common.js";

// Each tile: the processed rate against the camera's ("5 of 15 fps") and a warning when frames are skipped;
// grey with "No frames since 14:02:11." when its camera went quiet (a camera FERVI runs keeps its tile, with
// its ingest's reason, until it is removed), and every tile grey while the page has lost its server.
const socket = connect();
const tiles = new Map();
const container = document.getElementById("tiles");

socket.on("connect", () => {
  socket.emit("watch", { camera: "wall" });
  for (const tile of tiles.values()) tile.serverBack();
});
socket.on("disconnect", () => {
  const at = Date.now() / 1000;
  for (const tile of tiles.values()) tile.serverLost(at);
});
setInterval(() => { if (socket.connected) for (const tile of tiles.values()) tile.checkStale(); }, 1000);
socket.on("cameras", (cameras) => {
  const names = new Set(cameras.map((c) => c.camera));
  for (const camera of cameras) {
    if (!tiles.has(camera.camera)) {
      const element = document.createElement("div");
      element.className = "tile";
      element.dataset.camera = camera.camera;
      container.appendChild(element);
      tiles.set(camera.camera, new Tile(element, camera.title || camera.camera));
      socket.emit("watch", { camera: camera.camera });
    }
    tiles.get(camera.camera).setRates(camera);
    tiles.get(camera.camera).setTitle(camera.title || camera.camera);  // a browser camera renamed by its user
  }
  for (const [name, tile] of tiles) {
    if (!names.has(name)) { tile.element.remove(); tiles.delete(name); }
  }
  document.getElementById("empty").hidden = tiles.size > 0;
});
socket.on("frame", (msg) => tiles.get(msg.camera)?.setFrame(msg.jpeg, msg.seq));
socket.on("tracks", (msg) => {
  const tile = tiles.get(msg.camera);
  if (tile) tile.setTracks(msg);
});
