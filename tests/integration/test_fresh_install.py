"""Issue 2: a newcomer's path, as real processes. A copy of the checkout, the README's
`make serve` (which builds its own fresh .venv), then the README's `mediagen generate ...
--watch --out DIR` against it; finally SIGTERM, which must drain and exit cleanly."""

from __future__ import annotations

import io
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

from PIL import Image

from tests.fixtures.processes import Proc, free_port, wait_for_grpc_health

ROOT = Path(__file__).resolve().parents[2]


def copy_checkout(dest: Path) -> None:
    """The files a clone would have (tracked and new, minus ignored ones like .venv)."""
    listed = subprocess.run(
        ["git", "ls-files", "-co", "--exclude-standard", "-z"],
        cwd=ROOT,
        check=True,
        capture_output=True,
    ).stdout.split(b"\0")
    for name in filter(None, listed):
        source = ROOT / name.decode()
        if source.is_file():
            target = dest / name.decode()
            target.parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, target)


def test_readme_quick_start_in_a_fresh_checkout(tmp_path: Path) -> None:
    checkout = tmp_path / "mediagen"
    copy_checkout(checkout)
    grpc_port, http_port = free_port(), free_port()
    env = {
        key: value
        for key, value in os.environ.items()
        if not key.startswith(("MEDIAGEN_", "REPLICATE_", "VIRTUAL_ENV"))
        and key not in {"DATABASE_URL", "REDIS_URL", "STORAGE_TYPE"}
    }
    # Only the ports differ from the README, so the test can run beside a developer's server.
    env |= {
        "MEDIAGEN_GRPC_PORT": str(grpc_port),
        "MEDIAGEN_HTTP_PORT": str(http_port),
        "MEDIAGEN_EMULATOR_LATENCY_S": "1.5",
        "PYTHON": shutil.which("python3") or sys.executable,
    }
    log = tmp_path / "serve.log"
    serve = subprocess.Popen(
        ["make", "serve", f"PYTHON={env['PYTHON']}"],
        cwd=checkout,
        env=env,
        stdout=log.open("wb"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    try:
        wait_for_grpc_health(f"127.0.0.1:{grpc_port}", Proc("serve", serve, log), timeout_s=400)
        deadline = time.monotonic() + 10  # health turns SERVING just before the banner prints
        while "HTTP listening" not in log.read_text() and time.monotonic() < deadline:
            time.sleep(0.1)
        printed = log.read_text()
        assert f"gRPC listening on 127.0.0.1:{grpc_port}" in printed
        assert f"HTTP listening on http://127.0.0.1:{http_port}" in printed

        out = tmp_path / "out"
        generate = subprocess.run(
            [".venv/bin/mediagen", "generate", "a red fox", "--watch", "--out", str(out)],
            cwd=checkout,
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert generate.returncode == 0, generate.stdout + generate.stderr
        (image_path,) = out.iterdir()
        image = Image.open(io.BytesIO(image_path.read_bytes()))
        assert image.format == "PNG" and image.size == (1024, 1024)
        assert str(image_path) in generate.stdout
    finally:
        # SIGTERM to the server itself (make's child), as a process manager would send it;
        # make then exits with the server's status.
        for child in children(serve.pid):
            os.kill(child, signal.SIGTERM)
        try:
            code = serve.wait(60)
        finally:
            if serve.poll() is None:
                os.killpg(serve.pid, signal.SIGKILL)
    assert "shutting down" in log.read_text()
    assert code == 0, log.read_text()


def children(pid: int) -> list[int]:
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid:
            found.append(int(stat.parent.name))
    return found
