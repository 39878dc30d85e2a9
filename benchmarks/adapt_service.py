"""Adaptation of a running deployment end to end, as an operator starts it: `POST /v1/admin/adapt {}`.

    nice .venv/bin/python -m benchmarks.adapt_service [--per-domain 0] [--write]

A throw-away `scenematch serve` on a fresh data dir loads the demo (the realistic corpus: with
--per-domain 0 all of it, 960 needs and capabilities plus 108 scenarios), builds its index, and then
the label-free adaptation job runs to its end: training on the records' own pairs, judging the
candidate on held-out sets, re-embedding every record and activating (or refusing). Prints the wall
time from the POST to the job's end, the job's own timings and its decision; --write replaces the
section in docs/quality.md. The goal (issue 16): a 1,000-record deployment in at most 15 minutes.
"""
from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx

from benchmarks.serving import spawn_service

SECTION = "## Adaptation of a running deployment"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "quality.md"
ADMIN = "bench-admin"


def adapt(base: str, timeout_s: float) -> tuple[dict[str, Any], float]:
    """POST /v1/admin/adapt {} and poll the job to its end; (the job, wall seconds)."""
    headers = {"Authorization": f"Bearer {ADMIN}"}
    t0 = time.monotonic()
    accepted = httpx.post(f"{base}/v1/admin/adapt", json={}, headers=headers, timeout=30)
    accepted.raise_for_status()
    job_id = accepted.json()["job_id"]
    while True:
        job = httpx.get(f"{base}/v1/admin/jobs/{job_id}", headers=headers, timeout=30).json()
        if job["status"] in ("succeeded", "failed"):
            return job, time.monotonic() - t0
        if time.monotonic() - t0 > timeout_s:
            raise SystemExit(f"adaptation job {job_id} not finished after {timeout_s:.0f} s")
        time.sleep(5)


def render(counts: dict[str, int], job: dict[str, Any], wall_s: float, command: str) -> str:
    result = job.get("result") or {}
    timings, training = result.get("timings", {}), result.get("training", {})
    decision = result.get("decision", {})
    checks = "; ".join(f"{c['set']} {c['active']:.4f} → {c['candidate']:.4f}" for c in decision.get("checks", []))
    records = sum(counts.values())
    lines = [SECTION, "",
             f"Command: `{command}` (measured {time.strftime('%Y-%m-%d')} on this 2-core machine, load average "
             f"{os.getloadavg()[0]:.1f} at the end).", "",
             "| records | job | wall s (POST to end) | training s | pairs | steps | evaluation s | reindex s "
             "| decision |",
             "|---|---|---|---|---|---|---|---|---|",
             f"| {records} ({', '.join(f'{v} {k}' for k, v in counts.items())}) | {job['status']} | {wall_s:.0f} "
             f"| {timings.get('train_process_s', 0):.0f} | {training.get('pairs_trained', 0)} "
             f"| {training.get('steps', 0)}/{training.get('max_steps', 0)} | {timings.get('evaluate_s', 0):.0f} "
             f"| {timings.get('reindex_s', 0):.0f} | {'activated' if result.get('activated') else 'refused'}: "
             f"{decision.get('reason', job.get('error') or '')} |", "",
             f"Held-out figures the guard judged on (nDCG@10, active → candidate): {checks or 'none'}.",
             f"Goal: a 1,000-record deployment adapted end to end within 15 min (900 s): "
             f"{'met' if job['status'] == 'succeeded' and wall_s <= 900 else 'not met'} here.", ""]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--per-domain", type=int, default=0,
                        help="Demo needs and capabilities per domain (SCENEMATCH_DEMO_PER_DOMAIN; 0: all)")
    parser.add_argument("--timeout", type=float, default=3600)
    parser.add_argument("--write", action="store_true", help=f"Replace '{SECTION}' in docs/{DOCS.name}")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="bench-adapt-service-") as tmp:
        proc, base = spawn_service(Path(tmp), {"SCENEMATCH_ADMIN_TOKEN": ADMIN, "SCENEMATCH_LOAD_DEMO": "true",
                                               "SCENEMATCH_DEMO_PER_DOMAIN": str(args.per_domain),
                                               "SCENEMATCH_AUTO_ADAPT": "false"})
        try:
            index = httpx.get(f"{base}/v1/admin/index", headers={"Authorization": f"Bearer {ADMIN}"}, timeout=30).json()
            job, wall_s = adapt(base, args.timeout)
        finally:
            proc.terminate()
            proc.wait(timeout=120)
    print(json.dumps({"wall_s": round(wall_s, 1), "job": job}, ensure_ascii=False, indent=1))
    command = f"nice .venv/bin/python -m benchmarks.adapt_service --per-domain {args.per_domain} --write"
    text = render(index.get("indexed_counts") or index.get("counts") or {}, job, wall_s, command)
    print(text)
    if args.write:
        from service.cli.evaluation import replace_section

        replace_section(DOCS, SECTION, text)


if __name__ == "__main__":
    main()
