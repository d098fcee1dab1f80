import { connect, params, Tile } from "./common.js";

connect();
const element = document.getElementById("tile");
const error = document.getElementById("error");
const note = document.getElementById("note");
let tile = new Tile(element, "uploaded image");

document.getElementById("upload").addEventListener("submit", async (event) => {
  event.preventDefault();
  // a new upload starts from a clean page: no earlier result under a new error
  error.textContent = ""; note.textContent = "";
  tile = new Tile(element, "uploaded image");
  element.dataset.done = "0"; element.dataset.labels = "";
  const file = document.getElementById("file").files[0];
  if (!file) { error.textContent = "choose an image first"; return; }
  const body = new FormData();
  body.append("image", file);
  const started = performance.now();
  const response = await fetch(`/api/image${params.get("token") ? "?token=" + params.get("token") : ""}`, { method: "POST", body });
  const data = await response.json().catch(() => ({}));
  if (!response.ok) { error.textContent = data.error || `failed (${response.status})`; return; }
  tile.image = await createImageBitmap(file);
  tile.setTracks({ faces: data.faces, w: data.width, h: data.height, latency_ms: performance.now() - started, seq: 0 });
  if (!data.faces.length) {
    note.textContent = "No face found. FERVI finds faces from about 48 px wide, turned up to about 45 degrees, " +
      "not mostly covered; try a larger or more frontal photo.";
  }
  element.dataset.done = "1";
});
