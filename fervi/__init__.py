"""FERVI. `fervi` itself is the kernel (settings, protocol, bus, vision runtime, process helpers); the stages
are its subpackages `fervi.ingest`, `fervi.workers`, `fervi.tracker`, `fervi.offline`, `fervi.dashboard`,
`fervi.training`, `fervi.models` and the harness `fervi.bench`, whose folders sit at the top of the
repository; `fervi.app` (CLI and supervisor) is the only code that starts stages. See docs/architecture.md.
"""

import os as _os
from pathlib import Path as _Path

__version__ = "0.1.0"

# OpenCV and the FFmpeg inside it print their own warnings to stderr ("[h264 @ 0x...] error while decoding"),
# outside FERVI's log lines; FERVI reports what fails to read itself. Read by OpenCV when it loads: set before
# any stage imports cv2 (a value the user set stays).
_os.environ.setdefault("OPENCV_LOG_LEVEL", "ERROR")
_os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

STAGES = ("ingest", "workers", "tracker", "offline", "dashboard", "training", "models", "bench")

# Installed, the stage folders are subfolders of this package (pyproject's package-dir). In a source
# checkout they sit next to it: look for fervi.<stage> in the checkout's root as well, so that running from
# the checkout imports the same names as an installed FERVI.
_root = _Path(__file__).resolve().parent.parent
if (
    not (_Path(__file__).parent / "ingest").is_dir()
    and (_root / "pyproject.toml").is_file()
    and all((_root / stage / "__init__.py").is_file() for stage in STAGES)
):
    __path__.append(str(_root))  # noqa: F821 - a package's __path__
