"""The default detector finds real faces from close-ups to small faces in HD frames, and rarely a false one;
`fervi evaluate --images` runs the whole chain on labelled photos; odd images give a result, not a crash."""

from __future__ import annotations

import io
import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner
from fervi.bench.distance_scenes import FACE_FREE_PHOTOS, background, match, paste, photo_faces
from fervi.bench.talking_faces import read_video
from PIL import Image

from fervi.app.cli import main
from fervi.demo import face_photos
from fervi.emotions import EMOTIONS
from fervi.vision.detector import load_detector
from fervi.vision.images import ImageError, decode_image, read_image_file
from fervi.vision.multiscale import pyramid_scales


@pytest.fixture(scope="module")
def detector():
    return load_detector("multiscale")


def test_pyramid_reaches_from_the_smallest_face_to_a_close_up():
    scales = pyramid_scales(1920, 1080, 48)
    assert scales[0] == pytest.approx(40 / 48)  # a 48 px face is 40 px at the finest level
    assert 1920 * scales[-1] <= 192  # at the last, a face filling the frame fits the model's input
    assert pyramid_scales(48, 48, 48)[-1] == pytest.approx(128 / 48)  # a tiny close-up is enlarged


@pytest.mark.parametrize("size", [(640, 480), (1280, 720), (1920, 1080)])
@pytest.mark.parametrize("width", [48, 96, 256])
def test_real_faces_are_found_at_every_width(detector, size, width):
    rng = np.random.default_rng(width)
    for face, name in zip(photo_faces(), ("coffee.png", "rocket.jpg"), strict=True):
        scene = paste(face, background(name, size), width, rng, occluded=False)
        boxes, _ = detector.detect(scene.frame)
        hit, false_faces = match(boxes, scene.box)
        assert hit >= 0, (face.source, size, width, boxes)
        assert false_faces == 0


def test_close_ups_filling_the_image_are_found(detector):
    """The full-range model missed most faces that fill the picture."""
    for face in photo_faces():
        for side in (48, 147, 400):
            image = cv2.resize(face.image, (side, side), interpolation=cv2.INTER_AREA)
            boxes, _ = detector.detect(image)
            assert len(boxes) == 1, (face.source, side)
            assert boxes[0, 2] > 0.6 * side


def test_a_hand_over_the_mouth_still_leaves_a_face(detector):
    rng = np.random.default_rng(3)
    found = 0
    for face in photo_faces():
        for width in (128, 256):
            scene = paste(face, background("horse.png", (1280, 720)), width, rng, occluded=True)
            found += match(detector.detect(scene.frame)[0], scene.box)[0] >= 0
    assert found >= 3


def test_few_false_faces_on_face_free_photos(detector):
    """At most 1 false face per 10 face-free photos (the issue's bound), here on 20 photos at 1280x720."""
    false_faces = sum(len(detector.detect(background(name, (1280, 720)))[0]) for name in FACE_FREE_PHOTOS)
    assert false_faces <= 2


def test_facemesh_agrees_on_hard_real_faces_and_not_on_textures(detector, fer_csv, ckplus_dir):
    """FaceMesh's face-presence score, the third opinion on a fairly sure second look: high on real faces
    (the wheel photos, FER-2013 faces the other checks missed: a crying child, a mime, a drawing), low on
    the textures of face-free photos that the second look is fairly sure of."""
    from fervi.bench.face_distances import real_faces

    from fervi.vision.multiscale import FAIR, MESH_CONTEXT, MESH_FACE, context_crop

    bench_faces = real_faces(fer_csv.parent.parent, 60, np.random.default_rng(7))  # the distance bench's faces
    faces = [face.image for face in photo_faces()] + [bench_faces[i].image for i in (35, 49, 56)]
    for image in faces:
        frame = cv2.copyMakeBorder(cv2.resize(image, (160, 160)), 120, 120, 120, 120, cv2.BORDER_REPLICATE)
        boxes, scores = detector.second_look.detect(frame)  # FaceMesh looks where the second look found the face
        found = boxes[int(np.argmax(scores))]
        assert detector.mesh.score(context_crop(frame, found, MESH_CONTEXT)[0]) >= MESH_FACE
    textures = 0
    for name in FACE_FREE_PHOTOS:
        frame = background(name, (1280, 720))
        for box in detector.candidates(frame)[0]:
            crop, origin = context_crop(frame, box, 2.0)
            boxes, scores = detector.second_look.detect(crop)
            for found, score in zip(boxes, scores, strict=True):
                if score >= FAIR:
                    textures += 1
                    assert detector.mesh.score(context_crop(frame, found + origin, MESH_CONTEXT)[0]) < MESH_FACE, name
    assert textures >= 5  # the textures were there to refuse


def test_faces_cut_by_the_border_and_odd_frames_do_not_crash(detector):
    photo = face_photos()[0]
    cut = photo[60:220, 230:512]  # the right half of the astronaut's face is outside
    boxes, _ = detector.detect(cut)
    assert np.all(boxes[:, 0] >= 0) and np.all(boxes[:, 0] + boxes[:, 2] <= cut.shape[1] + 1e-3)
    assert len(detector.detect(cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))[0]) == 1
    for shape in ((1, 1, 3), (3, 2000, 3), (2000, 5, 3)):
        boxes, scores = detector.detect(np.zeros(shape, np.uint8))
        assert len(boxes) == len(scores) == 0


def _encoded(image_bgr: np.ndarray, fmt: str, **options) -> bytes:
    out = io.BytesIO()
    Image.fromarray(np.ascontiguousarray(image_bgr[:, :, ::-1])).save(out, fmt, **options)
    return out.getvalue()


def test_a_phone_portrait_is_upright_before_detection(detector):
    """EXIF orientation 6: the pixels are stored turned on their side; decoding turns them back."""
    photo = face_photos()[0]
    exif = Image.Exif()
    exif[0x0112] = 6
    stored = np.ascontiguousarray(np.rot90(photo, 1))
    decoded = decode_image(_encoded(stored, "JPEG", exif=exif.tobytes(), quality=95), 10**8)
    assert decoded.shape == photo.shape
    assert np.abs(decoded.astype(int) - photo.astype(int)).mean() < 6
    assert len(detector.detect(decoded)[0]) == 1


def test_grayscale_rgba_and_16_bit_images_decode_to_colour():
    photo = face_photos()[1]
    for data in (
        cv2.imencode(".png", cv2.cvtColor(photo, cv2.COLOR_BGR2GRAY))[1].tobytes(),
        cv2.imencode(".png", cv2.cvtColor(photo, cv2.COLOR_BGR2BGRA))[1].tobytes(),
        cv2.imencode(".png", photo.astype(np.uint16) * 257)[1].tobytes(),
    ):
        image = decode_image(data, 10**8)
        assert image.dtype == np.uint8 and image.shape == photo.shape


def test_image_files_are_read_only_when_regular_and_small(tmp_path):
    with pytest.raises(ImageError, match="not a regular file"):
        read_image_file("/dev/zero", 1024)
    with pytest.raises(ImageError, match="not a regular file"):
        read_image_file(tmp_path, 1024)
    big = tmp_path / "big.jpg"
    big.write_bytes(b"\xff" * 2048)
    with pytest.raises(ImageError, match="FERVI_MAX_IMAGE_BYTES"):
        read_image_file(big, 1024)
    with pytest.raises(ImageError, match="no such file"):
        read_image_file(tmp_path / "missing.jpg", 1024)


def test_predict_refuses_a_device_file_with_one_line():
    result = CliRunner().invoke(main, ["predict", "/dev/zero"])
    assert result.exit_code == 1
    assert "not a regular file" in result.output and "Traceback" not in result.output


@pytest.fixture
def labelled_photos(tmp_path):
    """Folders per emotion: the two wheel faces in street-size frames, a face-free photo, a corrupt file."""
    root = tmp_path / "photos"
    rng = np.random.default_rng(5)
    astronaut, hopper = photo_faces()
    for folder, face, width, name in (
        ("happy", astronaut, 200, "coffee.png"),
        ("neutral", hopper, 90, "horse.png"),
        ("happy", astronaut, 400, "rocket.jpg"),
    ):
        scene = paste(face, background(name, (1280, 720)), width, rng, occluded=False)
        (root / folder).mkdir(parents=True, exist_ok=True)
        cv2.imwrite(str(root / folder / f"{name}-{width}.jpg"), scene.frame)
    cv2.imwrite(str(root / "neutral" / "no-face.jpg"), background("brick.png", (640, 480)))
    (root / "sad").mkdir()
    (root / "sad" / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a jpeg")
    return root


def test_evaluate_images_runs_the_whole_chain(labelled_photos, tmp_path):
    png = tmp_path / "confusion.png"
    result = CliRunner().invoke(
        main, ["evaluate", "--images", str(labelled_photos), "--json", "--confusion-png", str(png)]
    )
    assert result.exit_code == 0, result.output
    report = json.loads(result.output.strip().splitlines()[-1])
    assert report["images"] == 5 and report["evaluated"] == 4
    assert [u["path"].endswith("broken.jpg") for u in report["unreadable"]] == [True]
    assert report["faces_found"] == 3  # the brick wall has no face: a miss, counted as wrong
    assert report["accuracy"] <= 0.75
    assert sum(b["faces"] for b in report["by_face_width"]) == 3
    assert {"happy", "neutral"} <= {k for k, v in report["per_class_recall"].items() if v is not None}
    assert png.stat().st_size > 1000


def test_evaluate_images_from_a_csv_and_clear_errors(labelled_photos, tmp_path):
    listing = tmp_path / "labels.csv"
    listing.write_text("path,label\nphotos/happy/coffee.png-200.jpg,happy\nphotos/neutral/horse.png-90.jpg,6\n")
    result = CliRunner().invoke(
        main, ["evaluate", "--images", str(listing), "--json", "--confusion-png", str(tmp_path / "c.png")]
    )
    assert result.exit_code == 0, result.output
    assert json.loads(result.output.strip().splitlines()[-1])["faces_found"] == 2
    listing.write_text("photos/happy/coffee.png-200.jpg,joyful\n")
    result = CliRunner().invoke(main, ["evaluate", "--images", str(listing)])
    assert result.exit_code == 1 and "unknown emotion 'joyful'" in result.output
    result = CliRunner().invoke(main, ["evaluate"])
    assert result.exit_code == 2 and "exactly one of --data" in result.output


def _small_face_walk(frames: int, side: int = 56, step: int = 8):
    """A real face `side` px wide walking across a 1280x720 photo, `step` px a frame: (frame, truth box)."""
    backdrop, face = background("coffee.png", (1280, 720)), photo_faces()[1]
    patch = cv2.resize(face.image, (side, side), interpolation=cv2.INTER_AREA)
    for i in range(frames):
        frame, x = backdrop.copy(), 100 + i * step
        frame[300 : 300 + side, x : x + side] = patch
        yield frame, (x, 300, side, side)


@pytest.mark.parametrize("step", [1, 6])
def test_one_face_on_camera_is_one_box_at_any_processed_rate(shared_videos, step):
    """Before: a full scan of a close-up sometimes found two fragments of the one face (an eye and temple,
    eyes to chin) that overlap less than NMS merges: 2 of 67 frames of neutral_to_angry_1 at every frame,
    3 of 12 at every 6th (a worker that falls behind scans each frame in full), and a new user's charts
    counted a phantom second face: 5-19% more face-seconds than seconds on camera."""
    detector = load_detector("multiscale")
    for video in sorted(shared_videos.glob("*.avi")):
        capture = cv2.VideoCapture(str(video))
        counts, index = [], 0
        while True:
            ok, frame = capture.read()
            if not ok:
                break
            if index % step == 0:
                counts.append(len(detector.detect(frame, video.name, index, index / 15)[0]))
            index += 1
        capture.release()
        assert counts and set(counts) == {1}, (video.name, counts)


def test_a_camera_s_small_face_is_followed_between_full_scans():
    detector = load_detector("multiscale", full_scan_every=5)
    found = 0
    for frame, truth in _small_face_walk(30):
        boxes, _ = detector.detect(frame, "door")
        hit, false_faces = match(boxes, truth)
        found += hit >= 0
        assert false_faces == 0
    assert found == 30
    assert detector._streams["door"].since_full_scan == 29 % 5  # full scans on frames 0, 5, 10, ...


def test_a_face_entering_small_is_found_at_the_next_full_scan():
    detector = load_detector("multiscale", full_scan_every=5)
    empty = background("coffee.png", (1280, 720))
    for _ in range(4):  # frames 0-3, frame 0 a full scan
        assert len(detector.detect(empty, "hall")[0]) == 0
    walk = _small_face_walk(5)
    frame, truth = next(walk)
    assert match(detector.detect(frame, "hall")[0], truth)[0] < 0  # frame 4: between full scans, not looked for
    frame, truth = next(walk)
    assert match(detector.detect(frame, "hall")[0], truth)[0] >= 0  # frame 5: full scan
    # a new frame size (the camera changed resolution) is scanned in full at once
    resized = cv2.resize(frame, (960, 540))
    assert match(detector.detect(resized, "hall")[0], tuple(v * 0.75 for v in truth))[0] >= 0


def test_full_scans_follow_the_camera_s_clock_whatever_its_frame_rate():
    """With capture times, a camera is scanned in full every `full_scan_s` of its own time (a face entering
    is found within it), at the latest every `full_scan_every` frames; a clock running backwards means a
    full scan at once."""
    empty = background("coffee.png", (1280, 720))
    for fps, expected in (
        (30.0, [0, 9, 18, 27]),
        (15.0, [0, 5, 10, 15, 20, 25]),
        (5.0, list(range(0, 30, 2))),
        (1000.0, [0, 10, 20]),
    ):
        detector = load_detector("multiscale", full_scan_every=10, full_scan_s=0.3)
        full = []
        for i in range(30):
            detector.detect(empty, "cam", i, 100.0 + i / fps)
            if detector._streams["cam"].since_full_scan == 0:
                full.append(i)
        assert full == expected, fps
    detector = load_detector("multiscale", full_scan_every=10, full_scan_s=0.3)
    detector.detect(empty, "cam", 1, 100.0)
    detector.detect(empty, "cam", 2, 100.1)
    assert detector._streams["cam"].since_full_scan == 1
    frame, truth = next(_small_face_walk(1))
    assert match(detector.detect(frame, "cam", 3, 99.0)[0], truth)[0] >= 0  # time ran backwards: a full scan


def test_streams_are_separate_and_bounded():
    detector = load_detector("multiscale", full_scan_every=5)
    detector.max_streams = 3
    frame, _ = next(_small_face_walk(1))
    for camera in ("a", "b", "c", "d"):
        detector.detect(frame, camera)
    assert list(detector._streams) == ["b", "c", "d"]


def test_a_frame_long_after_the_last_one_a_worker_saw_is_scanned_in_full():
    """Workers share a camera's frames in batches: a worker's last frame of a camera may be many frames old,
    its faces out of the second look's reach, so such a frame gets a full scan."""
    detector = load_detector("multiscale", full_scan_every=5)
    empty = background("coffee.png", (1280, 720))
    detector.detect(empty, "gate", 1)
    walk = _small_face_walk(3)
    frame, truth = next(walk)
    assert match(detector.detect(frame, "gate", 2)[0], truth)[0] < 0  # the next frame: followed, nothing to follow
    frame, truth = next(walk)
    assert match(detector.detect(frame, "gate", 12)[0], truth)[0] >= 0  # 10 frames on: a full scan
    frame, truth = next(walk)
    assert match(detector.detect(frame, "gate", 7)[0], truth)[0] >= 0  # an older frame: a full scan


def _iou(a, b) -> float:
    ix = max(0.0, min(a[0] + a[2], b[0] + b[2]) - max(a[0], b[0]))
    iy = max(0.0, min(a[1] + a[3], b[1] + b[3]) - max(a[1], b[1]))
    return float(ix * iy / (a[2] * a[3] + b[2] * b[3] - ix * iy))


def test_a_real_close_up_is_framed_as_the_full_range_model_frames_it_also_between_full_scans(shared_videos):
    """The crop margin is tuned for the full-range model's box. Before, faces were framed by the short-range
    box scaled by a ratio fitted on FER-2013 faces pasted into photos; on real faces (hair, neck, background)
    that box is smaller and lower than the full-range one, the crop cut off forehead and chin, and the angry
    end of neutral_to_angry_2 read neutral. Followed frames (between full scans) framed faces differently
    again: IoU 0.52-0.57 with the full-range box on neutral_to_angry_1's."""
    full = load_detector("blazeface_full")  # finds these close-ups in the whole frame
    for video in sorted(shared_videos.glob("*.avi")):
        detector = load_detector("multiscale", full_scan_every=5)
        capture = cv2.VideoCapture(str(video))
        overlaps = []
        for index in range(10):  # full scans at 0 and 5, followed frames between
            ok, frame = capture.read()
            assert ok
            reference, _ = full.detect(frame)
            boxes, _ = detector.detect(frame, video.name, index, index / 30)
            assert len(boxes) == len(reference) == 1
            overlaps.append(_iou(boxes[0], reference[0]))
        capture.release()
        assert min(overlaps) > 0.85, (video.name, overlaps)


def test_the_shared_videos_end_angry_through_the_workers_chain(shared_videos):
    """The last second of both neutral-to-angry videos, detected, framed and classified as a worker does
    (the shipped model): angry leads, whether each frame is scanned in full (a worker that falls behind, the
    offline bench) or followed between full scans. With the earlier framing neutral_to_angry_2's full scans
    read neutral 0.45 to angry 0.40."""
    from fervi.settings import Settings
    from fervi.vision.pipeline import FacePipeline

    pipeline = FacePipeline.from_settings(Settings(model_dir=""))
    for video in sorted(shared_videos.glob("*.avi")):
        frames, fps = read_video(video)
        streams = [(video.name, index, index / fps) for index in range(len(frames))]  # full scans every 0.3 s
        for how, faces in (
            ("full scans", pipeline.analyze(frames)),
            ("followed", pipeline.analyze(frames, streams=streams)),
        ):
            mean = np.stack([f.probs[f.largest()] for f in faces[-30:]]).mean(axis=0)
            assert EMOTIONS[int(np.argmax(mean))] == "angry", (
                video.name,
                how,
                dict(zip(EMOTIONS, mean.round(2), strict=True)),
            )
