"""Benchmark of report generation: time per need and memory while 5,000 needs × 10 matches stream.

    nice .venv/bin/python -m benchmarks.reports --needs 5000 --per-need 10

Builds a throw-away data dir: the demo corpus plus synthetic needs that reuse the demo
texts under new ids (their embeddings come from the shared cache, so indexing is quick).
Runs: (1) the 374 distinct demo needs, every format — the realistic time per need;
(2) all synthetic needs, every format — memory must stay flat while rows stream;
(3) all synthetic needs as XLSX without the key-term cache — the worst case.
Duplicated texts make run (2) cheaper than real distinct needs, hence runs (1) and (3).
"""
from __future__ import annotations

import argparse
import json
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any

from models import repository
from models.database import session_scope
from service.app import init_state
from service.demo import demo_records
from service.reports import job as report_job_module
from service.reports.command import open_for_reports
from service.reports.job import ReportPlan, generate_report
from service.reports.schemas import FORMATS, ReportRequest
from service.reports.selection import by_ids
from service.settings import Settings


def rss_mb() -> float:
    with open("/proc/self/status", encoding="ascii") as fh:
        for line in fh:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return 0.0


def add_synthetic_needs(settings: Settings, count: int) -> list[str]:
    """Copies of the demo needs under new ids (public, open), written in batches."""
    needs, _ = demo_records()
    ids = []
    state = init_state(settings)  # creates the schema and loads the demo corpus
    with session_scope(state.sessions) as session:
        for i in range(count):
            source = dict(needs[i % len(needs)])
            need_id = f"B-{i:05d}"
            source.update(status="open", visibility="public")
            repository.upsert(session, "need", need_id, source)
            ids.append(need_id)
            if i % 500 == 499:
                session.flush()
                session.expunge_all()
    state.jobs.shutdown()
    state.engine.dispose()
    return ids


def run(ctx: Any, need_ids: list[str], fmt: str, per_need: int, out_dir: Path) -> dict[str, Any]:
    state = ctx.state
    with session_scope(state.sessions) as session:
        selection = by_ids(session, state.taxonomy, need_ids, include_restricted=False)
    request = ReportRequest(need_ids=need_ids, per_need=per_need, format=fmt)
    samples: dict[str, float] = {"start": rss_mb()}
    peak = [samples["start"]]

    def progress(fraction: float, _message: str) -> None:
        peak[0] = max(peak[0], rss_mb())
        for mark in (0.1, 0.5):
            if fraction >= mark * 0.99 and f"{mark:.0%}" not in samples:
                samples[f"{mark:.0%}"] = rss_mb()

    out = out_dir / f"report-{len(need_ids)}.{fmt}"
    result = generate_report(state.sessions, ctx.matcher, state.taxonomy, ReportPlan(request, selection),
                             out, progress)
    samples["end"] = rss_mb()
    return {"format": fmt, "needs": result["needs"], "rows": result["rows"], "seconds": result["seconds"],
            "ms_per_need": result["ms_per_need"], "size_mb": round(result["size_bytes"] / 2**20, 2),
            "rss_mb": {k: round(v) for k, v in samples.items()},
            "peak_rss_mb": round(max(peak[0], samples["end"]))}


SECTION = "## Match reports"
NOTES = """\
- Memory streams: the process's resident size is sampled every 10 needs (start, 10%, 50%, end of
  each run); about 1.1 GB of it is the embedding model. Rows are written as they are produced:
  XLSX through openpyxl's write-only sheets (one temporary file per sheet, inline strings), HTML
  tables into a side file joined after the summary, CSV and JSONL line by line.
- Explaining a match reads both records' key terms from the index (extracted once at index
  time, indexer/retrieval/keyterms.py), so reports no longer run jieba per match; the key-term cache
  (`KeyTermCache` in service/reports/rows.py) now only serves records indexed before key terms
  were stored, which is why the run without it costs about the same. Earlier figures (before
  stored key terms): 20.4 ms/need for XLSX on the synthetic batch, 56.6 ms without the cache.
- The synthetic batch repeats the demo texts under new ids; the distinct demo needs are the
  realistic figure.
"""


def render(results: dict[str, Any], command: str) -> str:
    """The "Match reports" section of docs/benchmarks.md."""
    import datetime as dt
    import os

    def cell(r: dict[str, Any] | None, with_total: bool) -> str:
        if r is None:
            return ""
        total = f" ({r['seconds']:.0f} s)" if with_total else ""
        return f"{r['ms_per_need']:.2f} ms/need{total}"

    def rss(r: dict[str, Any]) -> str:
        return "–".join(str(v) for v in dict.fromkeys(r["rss_mb"].values())) + " MB"

    runs = [("distinct demo needs (realistic)", results["distinct_demo_needs"], False),
            ("synthetic batch", results["synthetic"], True)]
    if "synthetic_uncached" in results:
        runs.append(("synthetic batch, key-term cache off", [results["synthetic_uncached"]], True))
    formats = [r["format"] for r in results["synthetic"]]
    lines = [SECTION, "", "Command (throw-away data dir: demo corpus plus synthetic needs that reuse the demo "
             "texts under new ids, every format):", "", f"    {command}", "",
             f"Measured {dt.date.today().isoformat()} on 2 shared cores (load average "
             f"{os.getloadavg()[0]:.1f} at the end), SQLite, the offline multilingual-e5-small index, "
             f"{results['per_need']} matches per need; time per need includes matching, explanations "
             "and writing.", "",
             "| run | needs × matches | " + " | ".join(formats) + " |", "|---|---|" + "---|" * len(formats)]
    for label, rows, with_total in runs:
        by_format = {r["format"]: r for r in rows}
        lines.append(f"| {label} | {rows[0]['needs']:,} × {results['per_need']} | "
                     + " | ".join(cell(by_format.get(f), with_total) for f in formats) + " |")
    lines += ["", f"File sizes for the synthetic batch ({results['synthetic'][0]['rows']:,} rows): "
              + ", ".join(f"{r['format'].upper()} {r['size_mb']:.1f} MB" for r in results["synthetic"])
              + ". Resident memory through each synthetic run: "
              + "; ".join(f"{r['format']} {rss(r)}" for r in results["synthetic"]) + ".", "", NOTES]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.reports", description=__doc__.split("\n")[0])
    parser.add_argument("--needs", type=int, default=5000)
    parser.add_argument("--per-need", type=int, default=10)
    parser.add_argument("--formats", default=",".join(FORMATS))
    parser.add_argument("--skip-uncached", action="store_true", help="Skip run (3)")
    parser.add_argument("--keep", action="store_true", help="Keep the data dir and the files")
    parser.add_argument("--write", action="store_true", help='Replace "## Match reports" in docs/benchmarks.md')
    args = parser.parse_args()
    formats = [f for f in args.formats.split(",") if f]
    root = Path(tempfile.mkdtemp(prefix="scenematch-bench-reports-"))
    settings = Settings(data_dir=root / "data", load_demo=True, build_index_on_start=False)
    out_dir = root / "out"
    out_dir.mkdir()
    results: dict[str, Any] = {"needs": args.needs, "per_need": args.per_need}
    try:
        t0 = time.perf_counter()
        synthetic = add_synthetic_needs(settings, args.needs)
        demo_ids = [n["id"] for n in demo_records()[0] if n["visibility"] == "public"]
        with open_for_reports(settings) as ctx:
            results["setup_s"] = round(time.perf_counter() - t0, 1)
            results["distinct_demo_needs"] = [run(ctx, demo_ids, f, args.per_need, out_dir) for f in formats]
            results["synthetic"] = [run(ctx, synthetic, f, args.per_need, out_dir) for f in formats]
            if not args.skip_uncached:
                remembered = report_job_module.report_matcher
                report_job_module.report_matcher = lambda matcher: matcher  # no key-term cache
                try:
                    results["synthetic_uncached"] = run(ctx, synthetic, "xlsx", args.per_need, out_dir)
                finally:
                    report_job_module.report_matcher = remembered
        print(json.dumps(results, ensure_ascii=False, indent=2))
        if args.write:
            import sys

            from service.cli.evaluation import replace_section

            command = "nice .venv/bin/python -m benchmarks.reports " + " ".join(sys.argv[1:])
            replace_section(Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md", SECTION,
                            render(results, command.strip()))
    finally:
        if not args.keep:
            shutil.rmtree(root, ignore_errors=True)
        else:
            print(f"kept {root}")


if __name__ == "__main__":
    main()
