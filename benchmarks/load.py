"""Load test of a running scenematch service on loopback (asyncio + httpx), bounded in count and time.

    nice .venv/bin/python -m benchmarks.load                       # spawn a throw-away demo service
    nice .venv/bin/python -m benchmarks.load --base-url http://127.0.0.1:8000 --admin-token T --client-token C

Modes (--mode, default all):
  levels   match-by-id, free-text search and bulk upsert at each concurrency (--levels 1,4,16,64):
           throughput, p50/p99 latency, errors
  reindex  match + search at --busy-concurrency while a full reindex job runs: must be zero errors
  bulk     match + search while bulk upserts are written: must be zero errors on both sides
Every cell stops after --requests answers or --seconds, whichever comes first. Prints Markdown.
"""
from __future__ import annotations

import argparse
import asyncio
import itertools
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from benchmarks.serving import spawn_service

SEARCHES = ["山洪灾害监测预警", "养老院老人跌倒检测", "县域医共体远程会诊", "工业园区危化品泄漏监测", "茶园病虫害绿色防控",
            "城市内涝积水感知", "低空无人机物流配送", "新能源汽车电池回收", "中小学课堂教学数字化", "文旅景区客流预测",
            "长江航道船舶智能调度", "光伏电站运维巡检", "食品冷链温度追溯", "社区网格化治理平台", "数控机床预测性维护"]


@dataclass
class Cell:
    """The answers of one operation at one concurrency."""

    name: str
    concurrency: int
    latencies: list[float] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    seconds: float = 0.0

    def add(self, ok: bool, latency: float, error: str = "") -> None:
        self.latencies.append(latency)
        if not ok:
            self.errors.append(error)

    def row(self) -> str:
        lat = sorted(self.latencies)
        if not lat:
            return f"| {self.name} | {self.concurrency} | 0 | – | – | – | {len(self.errors)} |"
        p50 = statistics.median(lat) * 1000
        p99 = lat[min(len(lat) - 1, int(0.99 * len(lat)))] * 1000
        ok = len(lat) - len(self.errors)
        return (f"| {self.name} | {self.concurrency} | {len(lat)} | {ok / self.seconds:.1f} | {p50:.0f} | {p99:.0f} "
                f"| {len(self.errors)} |")


class Target:
    def __init__(self, base: str, admin: str, client: str):
        self.base, self.admin_h = base, {"Authorization": f"Bearer {admin}"}
        self.client_h = {"Authorization": f"Bearer {client}"}
        self.need_ids: list[str] = []
        self.bulk_counter = itertools.count()

    async def prepare(self, http: httpx.AsyncClient) -> None:
        for offset in range(0, 400, 200):
            page = (await http.get("/v1/needs", params={"limit": 200, "offset": offset})).json()
            self.need_ids += [n["id"] for n in page["items"]]
        self.capabilities = (await http.get("/v1/capabilities", params={"limit": 200})).json()["items"]
        assert self.need_ids and self.capabilities, "the service has no records: load the demo corpus"

    def match(self, i: int) -> tuple[str, str, dict | None]:
        return "GET", f"/v1/needs/{self.need_ids[i % len(self.need_ids)]}/matches?limit=10", None

    def search(self, i: int) -> tuple[str, str, dict | None]:
        # A new text each time: free text is embedded on every search (no cache), as in real use.
        text = f"{SEARCHES[i % len(SEARCHES)]} {i}"
        return "POST", "/v1/search", {"query": text, "target": "capabilities", "limit": 10}

    def bulk(self, i: int, size: int = 50) -> tuple[str, str, dict | None]:
        # Demo texts under new ids: the embedding cache makes indexing them cheap, so this measures
        # the write path (validation, upsert, change log), not the model.
        n = next(self.bulk_counter)
        items = []
        for j in range(size):
            src = self.capabilities[(n * size + j) % len(self.capabilities)]
            keep = {k: src[k] for k in ("title", "description", "organization", "org_type", "domains", "region",
                                        "tags", "cases", "visibility") if src.get(k) is not None}
            items.append({**keep, "id": f"C-load-{n:05d}-{j:03d}"})
        return "POST", "/v1/capabilities/bulk", {"items": items}


async def one(http: httpx.AsyncClient, method: str, path: str, body: dict | None,
              headers: dict[str, str]) -> tuple[bool, float, str]:
    start = time.perf_counter()
    try:
        r = await http.request(method, path, json=body, headers=headers)
        ok = r.status_code < 300 and (method != "POST" or path != "/v1/capabilities/bulk" or r.json()["failed"] == 0)
        return ok, time.perf_counter() - start, "" if ok else f"{r.status_code} {r.text[:120]}"
    except Exception as exc:  # a dropped connection counts as a failed request
        return False, time.perf_counter() - start, f"{type(exc).__name__}: {exc}"


async def run_cell(http: httpx.AsyncClient, cell: Cell, make: Callable[[int], tuple[str, str, dict | None]],
                   headers: dict[str, str], requests: int, seconds: float,
                   stop: Callable[[], bool] = lambda: False) -> Cell:
    counter = itertools.count()
    deadline = time.monotonic() + seconds
    started = time.perf_counter()

    async def worker() -> None:
        while time.monotonic() < deadline and not stop():
            i = next(counter)
            if i >= requests:
                return
            ok, latency, error = await one(http, *make(i), headers)
            cell.add(ok, latency, error)

    await asyncio.gather(*(worker() for _ in range(cell.concurrency)))
    cell.seconds = time.perf_counter() - started
    return cell


async def levels(t: Target, http: httpx.AsyncClient, args: argparse.Namespace) -> list[Cell]:
    cells = []
    for op, name, make, headers in (("match", "match by id", t.match, {}), ("search", "free-text search", t.search, {}),
                                    ("bulk", f"bulk upsert ({args.bulk_size} items)",
                                     lambda i: t.bulk(i, args.bulk_size), t.client_h)):
        if op not in args.ops:
            continue
        for level in args.levels:
            cell = await run_cell(http, Cell(name, level), make, headers, max(args.requests, 2 * level),
                                  args.seconds)
            print(cell.row(), file=sys.stderr, flush=True)
            cells.append(cell)
    return cells


async def busy_readers(t: Target, http: httpx.AsyncClient, args: argparse.Namespace,
                       background: Awaitable[None], done: Callable[[], bool], label: str) -> list[Cell]:
    """Match and search at --busy-concurrency until `background` finishes (bounded by --busy-seconds)."""
    half = max(1, args.busy_concurrency // 2)
    match = run_cell(http, Cell(f"match by id {label}", half), t.match, {}, 10**9, args.busy_seconds, done)
    search = run_cell(http, Cell(f"free-text search {label}", half), t.search, {}, 10**9, args.busy_seconds, done)
    results = await asyncio.gather(match, search, background)
    return [c for c in results if isinstance(c, Cell)]


async def during_reindex(t: Target, http: httpx.AsyncClient, args: argparse.Namespace) -> tuple[list[Cell], str]:
    state = {"done": False, "job": {}}

    async def reindex() -> None:
        r = await http.post("/v1/admin/reindex", json={"mode": "full"}, headers=t.admin_h)
        assert r.status_code == 202, r.text
        url = r.json()["status_url"]
        deadline = time.monotonic() + args.busy_seconds
        while time.monotonic() < deadline:
            job = (await http.get(url, headers=t.admin_h)).json()
            if job["status"] in ("succeeded", "failed"):
                state["job"] = job
                break
            await asyncio.sleep(0.5)
        state["done"] = True

    cells = await busy_readers(t, http, args, reindex(), lambda: state["done"], "during full reindex")
    job = state["job"]
    note = (f"full reindex job {job.get('status', 'unfinished')} in {job.get('duration_s') or 0:.0f} s "
            f"(versions {job.get('result', {}).get('previous_version')} → {job.get('result', {}).get('version')})")
    return cells, note


async def during_bulk(t: Target, http: httpx.AsyncClient, args: argparse.Namespace) -> tuple[list[Cell], str]:
    state = {"done": False}
    writes = Cell(f"bulk upsert ({args.bulk_size} items) beside readers", 1)

    async def writer() -> None:
        await run_cell(http, writes, lambda i: t.bulk(i, args.bulk_size), t.client_h, args.bulk_requests,
                       args.busy_seconds)
        state["done"] = True

    cells = await busy_readers(t, http, args, writer(), lambda: state["done"], "during bulk upserts")
    return [*cells, writes], f"{len(writes.latencies)} bulk requests of {args.bulk_size} items"


def spawn(workdir: Path) -> tuple[subprocess.Popen[bytes], str, str, str]:
    admin, client = "load-admin", "load-client"
    proc, base = spawn_service(workdir, {"SCENEMATCH_ADMIN_TOKEN": admin, "SCENEMATCH_CLIENT_TOKENS": client,
                                         "SCENEMATCH_LOAD_DEMO": "true"})
    return proc, base, admin, client


async def main_async(args: argparse.Namespace, base: str, admin: str, client: str) -> None:
    limits = httpx.Limits(max_connections=max(args.levels + [args.busy_concurrency]) + 4)
    async with httpx.AsyncClient(base_url=base, timeout=args.timeout, limits=limits) as http:
        t = Target(base, admin, client)
        await t.prepare(http)
        print("| operation | concurrency | requests | ok/s | p50 ms | p99 ms | errors |")
        print("|---|---|---|---|---|---|---|")
        notes = []
        cells: list[Cell] = []
        if args.mode in ("levels", "all"):
            cells += await levels(t, http, args)
        if args.mode in ("reindex", "all"):
            more, note = await during_reindex(t, http, args)
            cells += more
            notes.append(note)
        if args.mode in ("bulk", "all"):
            more, note = await during_bulk(t, http, args)
            cells += more
            notes.append(note)
        for cell in cells:
            print(cell.row())
        for note in notes:
            print(f"\n- {note}")
        failures = [(c.name, c.concurrency, e) for c in cells for e in c.errors[:3]]
        if failures:
            print("\nFirst errors:\n" + "\n".join(f"- {n} @{k}: {e}" for n, k, e in failures[:10]))
        if args.json:
            Path(args.json).write_text(json.dumps([{
                "operation": c.name, "concurrency": c.concurrency, "requests": len(c.latencies),
                "errors": len(c.errors), "seconds": round(c.seconds, 2),
                "latencies_ms": [round(x * 1000, 2) for x in c.latencies]} for c in cells], ensure_ascii=False))


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.load",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--base-url", help="A running service (loopback); default: spawn a throw-away one")
    parser.add_argument("--admin-token", default=os.environ.get("SCENEMATCH_ADMIN_TOKEN", ""))
    parser.add_argument("--client-token", default=(os.environ.get("SCENEMATCH_CLIENT_TOKENS", "").split(",") or [""])[0])
    parser.add_argument("--mode", choices=("levels", "reindex", "bulk", "all"), default="all")
    parser.add_argument("--levels", default="1,4,16,64", type=lambda s: [int(x) for x in s.split(",")])
    parser.add_argument("--ops", default="match,search,bulk", type=lambda s: s.split(","),
                        help="operations of --mode levels")
    parser.add_argument("--requests", type=int, default=64, help="answers per cell (at least 2 × concurrency)")
    parser.add_argument("--seconds", type=float, default=60, help="time limit per cell")
    parser.add_argument("--bulk-size", type=int, default=50)
    parser.add_argument("--bulk-requests", type=int, default=20, help="bulk calls in --mode bulk")
    parser.add_argument("--busy-concurrency", type=int, default=16)
    parser.add_argument("--busy-seconds", type=float, default=600, help="time limit of the reindex/bulk modes")
    parser.add_argument("--timeout", type=float, default=120)
    parser.add_argument("--json", help="also write every latency to this file")
    args = parser.parse_args()
    base, admin, client, proc, workdir = args.base_url, args.admin_token, args.client_token, None, None
    if base:
        host = httpx.URL(base).host
        if not (host.startswith("127.") or host in ("localhost", "::1")):
            raise SystemExit("load is only ever sent to loopback addresses")
    else:
        workdir = Path(tempfile.mkdtemp(prefix="scenematch-load-"))
        print(f"starting a throw-away service in {workdir} (demo corpus)…", file=sys.stderr)
        proc, base, admin, client = spawn(workdir)
    try:
        asyncio.run(main_async(args, base, admin, client))
    finally:
        if proc is not None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
        if workdir is not None:
            shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    main()
