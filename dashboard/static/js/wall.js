import { connect, Tile } from "./common.js";

const socket = connect();
const tiles = new Map();
const container = document.getElementById("tiles");

socket.on("connect", () => socket.emit("watch", { camera: "wall" }));
socket.on("cameras", (cameras) => {
  const names = new Set(cameras.map((c) => c.camera));
  for (const camera of cameras) {
    if (!tiles.has(camera.camera)) {
      const element = document.createElement("div");
      element.className = "tile";
      element.dataset.camera = camera.camera;
      container.appendChild(element);
      tiles.set(camera.camera, new Tile(element, camera.camera));
      socket.emit("watch", { camera: camera.camera });
    }
    tiles.get(camera.camera).fps = camera.fps;
  }
  for (const [name, tile] of tiles) {
    if (!names.has(name)) { tile.element.remove(); tiles.delete(name); }
  }
  document.getElementById("empty").hidden = tiles.size > 0;
});
socket.on("frame", (msg) => tiles.get(msg.camera)?.setFrame(msg.jpeg, msg.seq));
socket.on("tracks", (msg) => {
  const tile = tiles.get(msg.camera);
  if (tile) tile.setTracks({ ...msg, fps: tile.fps });
});
