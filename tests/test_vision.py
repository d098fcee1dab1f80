"""Detectors, preprocessing and `fervi predict` on the real face photos that ship in wheels."""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from click.testing import CliRunner

from fervi.app.cli import main
from fervi.demo import face_photo_paths, render_frame
from fervi.vision.blazeface import BLAZEFACE_MODELS, blazeface_anchors
from fervi.vision.detector import load_detector
from fervi.vision.images import ImageError, decode_image
from fervi.vision.preprocess import face_crops

from .images import corrupt_jpeg, jpeg_claiming_size


def test_anchor_counts_match_the_models():
    assert len(blazeface_anchors(BLAZEFACE_MODELS["blazeface"])) == 896
    assert len(blazeface_anchors(BLAZEFACE_MODELS["blazeface_full"])) == 2304


@pytest.mark.parametrize("name", ["blazeface", "blazeface_full", "haar"])
def test_detectors_find_the_face_in_both_photos(name):
    detector = load_detector(name)
    for path in face_photo_paths():
        image = cv2.imread(str(path))
        boxes, scores = detector.detect(image)
        assert len(boxes) == 1, (name, path.name, boxes)
        x, y, w, h = boxes[0]
        assert 60 < w < 260 and 0 <= x and x + w <= image.shape[1]


def test_blazeface_finds_both_moving_faces_in_demo_frames():
    detector = load_detector("blazeface_full")
    for index in (0, 5, 9):
        boxes, _ = detector.detect(render_frame(index, 10))
        assert len(boxes) == 2


def test_face_crops_pad_at_the_frame_edge():
    frame = np.zeros((100, 100), np.uint8)
    frame[:50, :50] = 200
    crops = face_crops(frame, np.array([[-10, -10, 40, 40]], np.float32), margin=0.25)
    assert crops.shape == (1, 48, 48)
    assert crops[0, :10, :10].mean() == 200  # replicated border, not black


def test_decode_refuses_bombs_and_garbage():
    with pytest.raises(ImageError, match="too large"):
        decode_image(jpeg_claiming_size(20000, 20000), 4096 * 4096)
    with pytest.raises(ImageError, match="empty"):
        decode_image(b"", 100)
    with pytest.raises(ImageError):
        decode_image(b"hello, not an image", 100)
    with pytest.raises(ImageError):
        decode_image(corrupt_jpeg(), 4096 * 4096)


def test_predict_finds_and_labels_the_face_in_both_photos():
    paths = [str(p) for p in face_photo_paths()]
    result = CliRunner().invoke(main, ["predict", *paths, "--json"])
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.output.strip().splitlines() if line.startswith("{")]
    assert [line["image"] for line in lines] == paths
    for line in lines:
        assert len(line["faces"]) == 1
        face = line["faces"][0]
        assert set(face["probabilities"]) == {"angry", "disgust", "fear", "happy", "sad", "surprise", "neutral"}
        assert abs(sum(face["probabilities"].values()) - 1) < 1e-2
        assert face["label"] == max(face["probabilities"], key=face["probabilities"].get)
    # the astronaut smiles broadly: a trained model says so
    assert lines[0]["faces"][0]["label"] == "happy"


def test_predict_reports_unreadable_files(tmp_path):
    bad = tmp_path / "notes.jpg"
    bad.write_text("not an image")
    result = CliRunner().invoke(main, ["predict", str(bad), "--json"])
    assert result.exit_code == 1
    assert "not a readable image" in json.loads(result.output.strip().splitlines()[-1])["error"]


def test_any_batch_gives_the_same_probabilities_with_few_interpreters():
    """Batches are cut into powers of two: the answers do not depend on the cut, and a worker keeps at
    most one interpreter per power of two however its batches vary."""
    from fervi.settings import load_settings
    from fervi.vision.classifier import MODEL_TFLITE, TFLiteClassifier, batch_sizes

    assert batch_sizes(23, 32) == [16, 4, 2, 1] and batch_sizes(70, 32) == [32, 32, 4, 2] and batch_sizes(0, 32) == []
    faces = np.random.default_rng(1).integers(0, 256, (23, 48, 48), dtype=np.uint8)
    classifier = TFLiteClassifier(f"{load_settings().models}/{MODEL_TFLITE}", max_batch=32)
    together = classifier.predict(faces)
    one_by_one = np.concatenate([classifier.predict(faces[i : i + 1]) for i in range(len(faces))])
    assert np.allclose(together, one_by_one, atol=1e-5)
    for n in range(1, 33):
        classifier.predict(faces[: min(n, 23)].repeat(2, axis=0)[:n])
    assert set(classifier._interpreters) <= {1, 2, 4, 8, 16, 32}


def test_the_detector_costs_no_more_on_frames_past_1080p():
    """Before: one 4096x4096 frame took a worker from 69 MB to 2.47 GB (held for good), in 3 s."""
    import subprocess
    import sys

    from fervi.vision.multiscale import MAX_LEVEL_PIXELS, pyramid_scales

    assert pyramid_scales(1920, 1080, 48)[0] == pytest.approx(40 / 48)  # 1080p: as before
    finest = pyramid_scales(4096, 4096, 48)[0]
    assert 4096 * 4096 * finest**2 <= MAX_LEVEL_PIXELS
    code = (
        "import numpy as np\nfrom fervi.vision.multiscale import MultiScaleDetector\n"
        "d = MultiScaleDetector()\n"
        "for w, h in ((4096, 4096), (3000, 2000), (2500, 2400), (4000, 1000), (1920, 1080), (640, 480)):\n"
        "    d.detect(np.random.default_rng(0).integers(0, 255, (h, w, 3), dtype=np.uint8))\n"
        "print('shapes', len(d.short._by_shape))\n"
        "peak = next(l for l in open('/proc/self/status') if l.startswith('VmHWM'))\n"
        "print('peak_mb', int(peak.split()[1]) // 1024)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert int(out.split("peak_mb")[1]) < 1000, out  # 425 MB for the 4096x4096 frame alone
    assert int(out.split("shapes")[1].split()[0]) <= 12, out  # input sizes seen last, not every one
