"""A throw-away `scenematch serve` on loopback for the benchmarks that measure the service over HTTP."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]


def spawn_service(workdir: Path, env: dict[str, str], timeout_s: float = 1800) -> tuple[subprocess.Popen[bytes], str]:
    """Start the service on a fresh data dir under `workdir` with `env` added; return it once /readyz is 200.

    Its log goes to workdir/serve.log. The caller stops the process."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    full_env = {**os.environ, "SCENEMATCH_DATA_DIR": str(workdir / "data"), "SCENEMATCH_LOG_LEVEL": "WARNING", **env}
    script = Path(sys.executable).with_name("scenematch")
    command = [str(script)] if script.exists() else [sys.executable, "-c", "from service.cli import app; app()"]
    log = (workdir / "serve.log").open("wb")
    proc = subprocess.Popen([*command, "serve", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=full_env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + timeout_s
    while True:
        if proc.poll() is not None:
            raise SystemExit(f"scenematch serve exited ({proc.returncode}); see {workdir / 'serve.log'}")
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        if time.monotonic() > deadline:
            proc.kill()
            raise SystemExit(f"service not ready after {timeout_s:.0f} s")
        time.sleep(0.5)
