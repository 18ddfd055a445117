"""Processes the run ends are told apart from ones that end by themselves."""

from __future__ import annotations

import sys
from pathlib import Path

from mediagen.chaos.processes import ProcessGroup


def test_a_process_that_died_before_the_kill_is_still_a_finding(tmp_path: Path) -> None:
    group = ProcessGroup(tmp_path, {})
    crashed = group.start("worker0", [sys.executable, "-c", "raise SystemExit(3)"])
    crashed.popen.wait(30)
    crashed.kill()  # the run's next kill finds it gone already
    assert not crashed.ended_on_purpose
    killed = group.start("worker1", [sys.executable, "-c", "import time; time.sleep(60)"])
    killed.kill()
    assert killed.ended_on_purpose and killed.popen.returncode == -9
    stopped = group.start("api0", [sys.executable, "-c", "import time; time.sleep(60)"])
    stopped.pause()
    stopped.stop(timeout_s=10)  # SIGCONT first, so the SIGTERM is acted on
    assert stopped.ended_on_purpose and stopped.popen.returncode == -15
    group.stop_all()
