import { connect, params, Tile } from "./common.js";

connect();
const tile = new Tile(document.getElementById("tile"), "uploaded image");
const error = document.getElementById("error");

document.getElementById("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  error.textContent = "";
  const file = document.getElementById("file").files[0];
  if (!file) { error.textContent = "choose an image first"; return; }
  const body = new FormData();
  body.append("image", file);
  const response = await fetch(`/api/image${params.get("token") ? "?token=" + params.get("token") : ""}`, { method: "POST", body });
  const data = await response.json();
  if (!response.ok) { error.textContent = data.error || `failed (${response.status})`; return; }
  tile.image = await createImageBitmap(file);
  tile.setTracks({ faces: data.faces, w: data.width, h: data.height, latency_ms: 0, seq: 0 });
  tile.element.dataset.done = "1";
});
