"""Run every benchmark in turn and print their figures (`make bench`)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
SCRIPTS = [
    "bench_browser.py",
    "bench_sessions.py",
    "bench_starts.py",
    "bench_fleet.py",
    "bench_realtime.py",
    "bench_observation.py",
    "bench_soak.py",
    "bench_video.py",
]


def main() -> int:
    failed = 0
    for script in SCRIPTS:
        print(f"== {script}", flush=True)
        failed += subprocess.run([sys.executable, str(HERE / script)], cwd=HERE.parent).returncode != 0
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
