"""Figures of docs/scaling.md: Milvus against FAISS, replica follow-up delay, Ray's overhead.

    nice .venv/bin/python -m benchmarks.scaling --part vectors --size 100000
    nice .venv/bin/python -m benchmarks.scaling --part demo
    nice .venv/bin/python -m benchmarks.scaling --part replicas --rounds 5
    nice .venv/bin/python -m benchmarks.scaling --part ray --records 120

Each part prints a Markdown table (pasted into docs/scaling.md). The host has 2 cores shared
with other work: latencies are CPU time on a busy machine, read them as orders of magnitude.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
ADMIN, CLIENT = "bench-admin", "bench-client"


def unit(n: int, dim: int, seed: int) -> np.ndarray:
    """Clustered unit vectors (like text embeddings, unlike uniform noise)."""
    rng = np.random.default_rng(seed)
    centers = rng.standard_normal((max(1, n // 200), dim)).astype(np.float32)
    x = centers[rng.integers(0, len(centers), n)] + 0.6 * rng.standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def timed_search(index, queries: np.ndarray, k: int = 10, mask: np.ndarray | None = None):
    ids, times = [], []
    for q in queries:
        t0 = time.perf_counter()
        ids.append(index.search(q[None, :], k, allowed_rows=mask)[1][0])
        times.append(time.perf_counter() - t0)
    return np.array(ids), np.array(times) * 1000


def recall(got: np.ndarray, truth: np.ndarray) -> float:
    return float(np.mean([len(set(g[g >= 0]) & set(t[t >= 0])) / max(1, len(t[t >= 0])) for g, t in zip(got, truth)]))


def compare(vectors: np.ndarray, queries: np.ndarray, label: str, work: Path) -> list[str]:
    from indexer.retrieval import milvus
    from indexer.retrieval.dense import FlatIndex, create_dense_index

    milvus.configure(str(work / "milvus.db"), prefix="bench")
    ids = np.arange(len(vectors), dtype=np.int64)
    exact = FlatIndex(vectors.shape[1])
    exact.build(vectors, ids)
    rows = []
    mask = np.random.default_rng(9).random(len(vectors)) < 0.1  # a filter passing 10%
    truth, _ = timed_search(exact, queries)
    truth_f, _ = timed_search(exact, queries, mask=mask)
    for kind in ("auto", "milvus"):
        index = create_dense_index(len(vectors), vectors.shape[1], kind=kind)
        t0 = time.perf_counter()
        index.build(vectors, ids)
        build_s = time.perf_counter() - t0
        got, ms = timed_search(index, queries)
        got_f, ms_f = timed_search(index, queries, mask=mask)
        name = f"{index.params()['type']}" + (f" {index.config.get('index_type')}" if kind == "milvus" else "")
        rows.append(f"| {label} | {name} | {build_s:.1f} | {np.median(ms):.2f} / {np.percentile(ms, 95):.2f} | "
                    f"{recall(got, truth):.3f} | {np.median(ms_f):.2f} | {recall(got_f, truth_f):.3f} |")
    return rows


HEADER = ["| vectors | backend | build s | query ms p50 / p95 | recall@10 | 10%-filter ms p50 | filtered recall@10 |",
          "|---|---|---|---|---|---|---|"]


def part_vectors(size: int, queries: int) -> None:
    with tempfile.TemporaryDirectory() as work:
        data = unit(size + queries, 384, 1)
        print("\n".join(HEADER + compare(data[:size], data[size:], f"{size:,} synthetic (384-d)", Path(work))))


def part_demo() -> None:
    """The demo capabilities' real vectors, queried by every demo need's own query vector."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.settings import Settings

    with tempfile.TemporaryDirectory() as work:
        settings = Settings(data_dir=Path(work) / "data", admin_token=ADMIN, load_demo=True)
        with TestClient(create_app(settings)) as client:
            while client.get("/readyz").status_code != 200:
                time.sleep(1)
            snap = client.app.state.scenematch.extras["engine"].snapshot
            caps, needs = snap.base["capability"], snap.base["need"]
            rows = compare(caps.doc_vectors, needs.query_vectors, f"demo: {len(caps)} capabilities, "
                           f"{len(needs)} needs", Path(work))
    print("\n".join(HEADER + rows))


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def part_replicas(rounds: int) -> None:
    """Two `scenematch serve` on one throw-away PostgreSQL: write on A -> found by search on B,
    and a full reindex on A -> served by B (from the job's end)."""
    import httpx

    work = Path(tempfile.mkdtemp(prefix="scenematch-bench-pg-"))
    url = subprocess.run([str(ROOT / "scripts/postgres.sh"), "start", str(work)], check=True,
                         capture_output=True, text=True).stdout.strip()
    env = {**os.environ, "SCENEMATCH_DATABASE_URL": url, "SCENEMATCH_DATA_DIR": str(work / "data"),
           "SCENEMATCH_ADMIN_TOKEN": ADMIN, "SCENEMATCH_CLIENT_TOKENS": CLIENT, "SCENEMATCH_LOG_LEVEL": "WARNING"}
    admin, writer = {"Authorization": f"Bearer {ADMIN}"}, {"Authorization": f"Bearer {CLIENT}"}
    procs, clients = [], []
    try:
        for _ in range(2):
            port = free_port()
            procs.append(subprocess.Popen([sys.executable, "-m", "service.cli", "serve", "--host", "127.0.0.1",
                                           "--port", str(port)], cwd=ROOT, env=env, stdout=subprocess.DEVNULL,
                                          stderr=subprocess.DEVNULL))
            client = httpx.Client(base_url=f"http://127.0.0.1:{port}", timeout=120)
            clients.append(client)
            while True:
                try:
                    if client.get("/readyz").status_code == 200:
                        break
                except httpx.TransportError:
                    pass
                time.sleep(0.5)
        a, b = clients
        write_s = []
        for i in range(rounds):
            title = f"多源融合山洪预警平台 基准{i} {os.urandom(4).hex()}"
            body = {"title": title, "description": "雨量、雷达与水位多源融合, 分钟级预警。", "organization": "基准",
                    "org_type": "enterprise", "domains": ["smart_water"], "visibility": "public"}
            t0 = time.perf_counter()
            assert a.put(f"/v1/capabilities/B-{i}", json=body, headers=writer).status_code == 201
            while f"B-{i}" not in [m["id"] for m in b.post("/v1/search", json={
                    "query": title, "target": "capabilities", "limit": 5}).json()["items"]]:
                time.sleep(0.05)
            write_s.append(time.perf_counter() - t0)
        job = a.post("/v1/admin/reindex", json={"mode": "full"}, headers=admin).json()
        while (status := a.get(job["status_url"], headers=admin).json())["status"] in ("queued", "running"):
            time.sleep(0.1)
        ended = time.perf_counter()
        version = status["result"]["version"]
        while b.get("/v1/admin/index", headers=admin).json()["version"] != version:
            time.sleep(0.05)
        follow_s = time.perf_counter() - ended
        print("| replicas (PostgreSQL, refresh interval 1 s) | figure |\n|---|---|")
        print(f"| write on A → found by search on B, {rounds} writes | median {np.median(write_s):.2f} s, "
              f"max {max(write_s):.2f} s |")
        print(f"| full reindex on A ({status['duration_s']:.0f} s) → B serves the new version | "
              f"{follow_s:.2f} s after the job ended |")
    finally:
        for p in procs:
            p.terminate()
            p.wait(timeout=60)
        subprocess.run([str(ROOT / "scripts/postgres.sh"), "stop", str(work)], capture_output=True)
        shutil.rmtree(work, ignore_errors=True)


def part_ray(records: int) -> None:
    """`scenematch reindex --full --no-cache`, in-process and through a local Ray, same records."""
    from fastapi.testclient import TestClient

    from service.app import create_app
    from service.demo import DEMO_DIR, read_jsonl
    from service.settings import Settings

    with tempfile.TemporaryDirectory() as work:
        data = Path(work) / "data"
        caps = list(read_jsonl(DEMO_DIR / "capabilities"))[:records]
        with TestClient(create_app(Settings(data_dir=data, client_tokens=CLIENT, load_demo=False,
                                            build_index_on_start=False))) as api:
            api.post("/v1/capabilities/bulk", json={"items": caps}, headers={"Authorization": f"Bearer {CLIENT}"})
        env = {**os.environ, "SCENEMATCH_DATA_DIR": str(data), "SCENEMATCH_LOAD_DEMO": "false"}
        out = {}
        for engine in ("local", "ray"):
            t0 = time.perf_counter()
            subprocess.run([sys.executable, "-m", "service.cli", "reindex", "--full", "--engine", engine,
                            "--no-cache"], cwd=ROOT, env=env, check=True, capture_output=True)
            out[engine] = time.perf_counter() - t0
    print("| full build, no cache | wall s (command start to end) |\n|---|---|")
    for engine, seconds in out.items():
        print(f"| {records} capabilities, {'in-process' if engine == 'local' else 'local Ray, 1 actor'} | {seconds:.1f} |")
    print(json.dumps(out))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--part", choices=("vectors", "demo", "replicas", "ray"), required=True)
    parser.add_argument("--size", type=int, default=100_000)
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--records", type=int, default=120)
    args = parser.parse_args()
    if args.part == "vectors":
        part_vectors(args.size, args.queries)
    elif args.part == "demo":
        part_demo()
    elif args.part == "replicas":
        part_replicas(args.rounds)
    else:
        part_ray(args.records)


if __name__ == "__main__":
    main()
