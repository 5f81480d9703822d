"""The manager dies at an armed crash point, once, and nowhere else."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from manager.app.crash_points import ARM_FILE, CRASH_EXIT_STATUS, LIVE_BLACKOUT, LIVE_PRE_COPY

REACH = """
import sys
from pathlib import Path
from manager.app.crash_points import CrashPoints
points = CrashPoints(Path(sys.argv[1]))
for point in sys.argv[2:]:
    points.reach(point)
    print("passed", point, flush=True)
"""


def reach(state_dir: Path, *points: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", REACH, str(state_dir), *points],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=Path(__file__).resolve().parents[2],
    )


def test_an_armed_point_kills_the_process_once(tmp_path: Path) -> None:
    (tmp_path / ARM_FILE).write_text(LIVE_BLACKOUT + "\n")
    first = reach(tmp_path, LIVE_PRE_COPY, LIVE_BLACKOUT, LIVE_PRE_COPY)
    assert first.returncode == CRASH_EXIT_STATUS
    assert first.stdout.split("\n")[0] == f"passed {LIVE_PRE_COPY}"
    assert LIVE_BLACKOUT not in first.stdout
    assert not (tmp_path / ARM_FILE).exists()
    again = reach(tmp_path, LIVE_BLACKOUT)
    assert again.returncode == 0 and f"passed {LIVE_BLACKOUT}" in again.stdout
