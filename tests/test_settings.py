"""Settings from the environment: defaults, parsing, validation, and no password in `fervi config`."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from fervi.app.cli import main
from fervi.settings import load_settings


def test_defaults_and_overrides():
    settings = load_settings({})
    assert settings.embedded and settings.detector == "multiscale" and settings.detector_min_face == 48
    assert not settings.flip_average
    custom = load_settings(
        {
            "FERVI_REDIS_URL": "redis://h:6379/1",
            "FERVI_BATCH_FRAMES": "16",
            "FERVI_FLIP_AVERAGE": "1",
            "FERVI_FRAME_MAX_AGE": "0.5",
        }
    )
    assert not custom.embedded and custom.batch_frames == 16 and custom.flip_average
    assert custom.frame_max_age_s == 0.5


@pytest.mark.parametrize(
    "env, message",
    [
        ({"FERVI_BATCH_FRAMES": "many"}, "FERVI_BATCH_FRAMES='many' is not a valid int"),
        ({"FERVI_DETECTOR": "yolo"}, "FERVI_DETECTOR must be one of"),
        ({"FERVI_DEVICE": "tpu"}, "FERVI_DEVICE must be one of"),
        ({"FERVI_BATCH_FRAMES": "0"}, "FERVI_BATCH_FRAMES must be at least 1"),
        ({"FERVI_DETECTOR_MIN_FACE": "4"}, "FERVI_DETECTOR_MIN_FACE must be at least 8"),
        ({"FERVI_REDIS_URL": "localhost:6379"}, "FERVI_REDIS_URL must start with one of redis://"),
        ({"FERVI_RQ_REDIS_URL": "redis+cluster://h:7000"}, "RQ does not support Redis Cluster"),
    ],
)
def test_bad_values_are_named(env, message):
    with pytest.raises(ValueError, match=message):
        load_settings(env)


def test_config_masks_the_password(monkeypatch):
    monkeypatch.setenv("FERVI_REDIS_URL", "redis://user:hunter2@redis.example:6380/0")
    result = CliRunner().invoke(main, ["config", "--json"])
    assert result.exit_code == 0
    shown = json.loads(result.output)
    assert "hunter2" not in result.output
    assert shown["FERVI_REDIS_URL"] == "redis://user:***@redis.example:6380/0"


def test_a_bad_setting_is_one_line(monkeypatch):
    monkeypatch.setenv("FERVI_DETECTOR", "yolo")
    result = CliRunner().invoke(main, ["config"])
    assert result.exit_code == 1 and "FERVI_DETECTOR" in result.output
    assert result.output.strip().count("\n") == 0 and "Usage:" not in result.output
