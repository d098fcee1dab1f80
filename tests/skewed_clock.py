"""Run a `fervi` command as on a host whose clock is off: `python -m tests.skewed_clock SECONDS ARGS...`
(SECONDS < 0: behind). Every `time.time()` of the process is shifted; Redis's clock is not."""

import sys
import time

if __name__ == "__main__":
    skew, real = float(sys.argv[1]), time.time
    time.time = lambda: real() + skew
    from fervi.app.cli import main

    main(sys.argv[2:])
