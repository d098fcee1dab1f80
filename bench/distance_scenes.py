"""Scenes for the face-distance bench: real faces pasted into real background photos at chosen widths.

Faces: CK+48 and FER-2013 PublicTest faces (labelled, 48x48, framed forehead to chin) and the two face
photos that ship in wheels (scikit-image's astronaut, matplotlib's Grace Hopper, unlabelled, high
resolution). Backgrounds: scikit-image's sample photos without people. A pasted face image is a square
of the requested width whose content is the face, so the ground-truth face box is the pasted square.
An optional hand-shaped occluder (a skin-toned palm and fingers) covers the mouth and chin.
"""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from fervi.demo import face_photo_paths, face_photos, package_dir
from fervi.tracking import iou_matrix

# scikit-image sample photos with no person in them (camera.png, astronaut.png have one).
FACE_FREE_PHOTOS = (
    "coffee.png",
    "chelsea.png",
    "rocket.jpg",
    "motorcycle_left.png",
    "horse.png",
    "gravel.png",
    "brick.png",
    "grass.png",
    "hubble_deep_field.jpg",
    "coins.png",
    "page.png",
    "text.png",
    "moon.png",
    "retina.jpg",
    "ihc.png",
    "clock_motion.png",
    "chessboard_RGB.png",
    "logo.png",
    "color.png",
    "cell.png",
)
FRAME_SIZES = ((640, 480), (1280, 720), (1920, 1080))
WIDTHS = (32, 48, 64, 96, 128, 192, 256, 384, 512)

# The wheel photos' faces, square, framed as FER-2013 frames a face (x, y, side) in the original photo.
PHOTO_FACES = {"astronaut.png": (167, 62, 120), "grace_hopper.jpg": (143, 104, 239)}


@dataclass
class Face:
    image: np.ndarray  # square BGR face image, the face filling it
    label: int | None  # FER label id, None when unknown
    source: str
    crowd: int | None = None  # the FER+ crowd's majority where people voted (FER-2013 faces), else None


@dataclass
class Scene:
    frame: np.ndarray
    box: tuple[int, int, int, int] | None  # ground-truth face square (x, y, w, h); None for face-free
    label: int | None
    width: int
    occluded: bool
    source: str


def skimage_photo(name: str) -> np.ndarray:
    image = cv2.imread(str(package_dir("skimage") / "data" / name), cv2.IMREAD_COLOR)
    if image is None:
        raise RuntimeError(f"cannot read scikit-image photo {name}")
    return image


def photo_faces() -> list[Face]:
    """The astronaut's and Grace Hopper's faces, cut square as FER-2013 frames a face."""
    out = []
    for path, image in zip(face_photo_paths(), face_photos(), strict=True):
        x, y, side = PHOTO_FACES[path.name]
        out.append(Face(image[y : y + side, x : x + side].copy(), None, path.name))
    return out


def gray_faces(images: np.ndarray, labels: np.ndarray, source: str, crowd=None) -> list[Face]:
    crowd = [None] * len(labels) if crowd is None else crowd
    return [
        Face(cv2.cvtColor(img, cv2.COLOR_GRAY2BGR), int(lab), source, None if c is None else int(c))
        for img, lab, c in zip(images, labels, crowd, strict=True)
    ]


def background(name: str, size: tuple[int, int]) -> np.ndarray:
    """A face-free photo covering a frame of `size` (width, height): scaled to cover, centre-cropped."""
    image = skimage_photo(name)
    width, height = size
    scale = max(width / image.shape[1], height / image.shape[0])
    image = cv2.resize(
        image, (round(image.shape[1] * scale) + 1, round(image.shape[0] * scale) + 1), interpolation=cv2.INTER_LINEAR
    )
    top, left = (image.shape[0] - height) // 2, (image.shape[1] - width) // 2
    return image[top : top + height, left : left + width].copy()


def hand_occluder(canvas: np.ndarray, x: int, y: int, side: int, rng: np.random.Generator) -> None:
    """Draw a skin-toned hand (palm and four fingers) over the mouth and chin of the face square."""
    tone = tuple(int(c) for c in rng.integers((90, 120, 170), (140, 170, 225)))  # BGR skin tones
    cx, cy = x + side // 2 + int(rng.integers(-side // 10, side // 10 + 1)), y + int(side * 0.78)
    cv2.ellipse(canvas, (cx, cy), (int(side * 0.24), int(side * 0.17)), 0, 0, 360, tone, -1)
    finger_w = max(2, side // 12)
    for i in range(4):
        fx = cx - int(side * 0.2) + i * int(side * 0.13)
        cv2.rectangle(canvas, (fx, cy - int(side * 0.26)), (fx + finger_w, cy), tone, -1)
    shade = tuple(max(0, c - 35) for c in tone)
    cv2.ellipse(canvas, (cx, cy), (int(side * 0.24), int(side * 0.17)), 0, 0, 360, shade, max(1, side // 80))


def paste(face: Face, backdrop: np.ndarray, width: int, rng: np.random.Generator, occluded: bool) -> Scene:
    """Paste `face` at `width` px (clipped to the frame's shorter side) at a random place in `backdrop`."""
    frame = backdrop.copy()
    height, frame_w = frame.shape[:2]
    side = min(width, height)
    interpolation = cv2.INTER_AREA if side < face.image.shape[0] else cv2.INTER_CUBIC
    patch = cv2.resize(face.image, (side, side), interpolation=interpolation)
    x = int(rng.integers(0, frame_w - side + 1))
    y = int(rng.integers(0, height - side + 1))
    frame[y : y + side, x : x + side] = patch
    if occluded:
        hand_occluder(frame, x, y, side, rng)
    return Scene(frame, (x, y, side, side), face.label, width, occluded, face.source)


def face_free_scenes(size: tuple[int, int]) -> list[Scene]:
    return [Scene(background(name, size), None, None, 0, False, name) for name in FACE_FREE_PHOTOS]


def _intersection(box: np.ndarray, truth: tuple[int, int, int, int]) -> np.ndarray:
    x, y, w, h = truth
    ix = np.clip(np.minimum(box[:, 0] + box[:, 2], x + w) - np.maximum(box[:, 0], x), 0, None)
    iy = np.clip(np.minimum(box[:, 1] + box[:, 3], y + h) - np.maximum(box[:, 1], y), 0, None)
    return ix * iy


# A pasted face image is the face's square, but in some FER-2013 images the face fills only part of it (a
# woman holding her head, face half the image's side): a box on that face has an IoU near 0.27 with the
# square. A box lying inside the square (MIN_INSIDE of its area) and at least MIN_SIDE of its side is on the
# face too: the square holds nothing else.
MIN_INSIDE = 0.8
MIN_SIDE = 0.4


def match(boxes: np.ndarray, truth: tuple[int, int, int, int] | None, min_iou: float = 0.3) -> tuple[int, int]:
    """(index of the detection that found the face or -1, number of false faces) for one scene: a detection
    finds the face when its IoU with the pasted square is at least `min_iou`, or when it lies inside the
    square and is not much smaller than it (see MIN_INSIDE)."""
    if len(boxes) == 0:
        return -1, 0
    if truth is None:
        return -1, len(boxes)
    boxes = np.asarray(boxes, np.float32)
    overlaps = iou_matrix(boxes, np.array([truth], np.float32))[:, 0]
    inside = _intersection(boxes, truth) / np.maximum(boxes[:, 2] * boxes[:, 3], 1e-9)
    on_face = (overlaps >= min_iou) | ((inside >= MIN_INSIDE) & (boxes[:, 2:].max(axis=1) >= MIN_SIDE * truth[2]))
    if not on_face.any():
        return -1, len(boxes)
    best = int(np.argmax(np.where(on_face, overlaps + inside, -1.0)))
    return best, int(np.sum(~on_face))
