"""Opening videos with OpenCV's FFmpeg backend, safely.

A local file is opened only as a real video container (`format_whitelist`): FFmpeg would otherwise read an
HLS playlist (`.m3u8`) that names any other file on the machine, or show a text file as frames (its `tty`
demuxer), so an uploaded or registered "video" could leak files it does not contain. Streams (RTSP, HTTP)
keep FFmpeg's own rules (a remote playlist cannot name local files). Both open with the FFmpeg backend
only, so OpenCV never falls back to its image-sequence reader (which logs the name it was given, a stream
URL's password included).
"""

from __future__ import annotations

import os

import cv2

# Demuxers of video files and of the still images OpenCV reads as one-frame videos; no playlists (hls, concat),
# no text (tty), no device or network formats.
FILE_FORMATS = (
    "mov,mp4,m4a,3gp,3g2,mj2",
    "matroska,webm",
    "avi",
    "mpegts",
    "mpeg",
    "flv",
    "asf",
    "ogg",
    "h264",
    "hevc",
    "mjpeg",
    "image2",
    "png_pipe",
    "jpeg_pipe",
    "bmp_pipe",
    "webp_pipe",
    "tiff_pipe",
    "gif",
)
OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"  # read by OpenCV at each open


def open_file(path: str) -> cv2.VideoCapture:
    """A local video file, as one of FILE_FORMATS only (a playlist or a text file does not open)."""
    os.environ[OPTIONS_ENV] = "format_whitelist;" + ",".join(FILE_FORMATS)
    try:
        return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    finally:
        os.environ.pop(OPTIONS_ENV, None)


def open_stream(url: str) -> cv2.VideoCapture:
    """An RTSP/HTTP(S)/RTMP stream through FFmpeg."""
    os.environ.pop(OPTIONS_ENV, None)
    return cv2.VideoCapture(url, cv2.CAP_FFMPEG)


def reopen_file(capture: cv2.VideoCapture, path: str) -> bool:
    """`capture.open` of a local file, with the same rules as `open_file`."""
    os.environ[OPTIONS_ENV] = "format_whitelist;" + ",".join(FILE_FORMATS)
    try:
        return capture.open(str(path), cv2.CAP_FFMPEG)
    finally:
        os.environ.pop(OPTIONS_ENV, None)
