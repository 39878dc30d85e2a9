"""Encodes per record against ranking quality: which texts a build may stop encoding.

    nice .venv/bin/python -m benchmarks.encodes --csl /work/shared/benchmarks/csl/ts_dev.tsv --write

The realistic development corpus (data/seed/realistic, pooled labels, both directions) and CSL dev
(titles as needs, abstracts as capabilities) are stored in fresh SQLite databases and indexed by the
real engine once per encode plan (indexer/retrieval/record_vectors.py). Every plan reuses the
embedding cache, so only the first build encodes. nDCG@10 of the dense signal alone and of the
shipped ranking, with a paired bootstrap interval of each plan against today's plan (whole text
encoded, every need in the query role). --write replaces the "## Encodes per record" section of
docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from collections.abc import Iterator
from typing import Any

SECTION = "## Encodes per record"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def plans() -> dict[str, Any]:
    from indexer.retrieval.record_vectors import EncodePlan

    return {
        "today (whole encoded, all needs query role)": EncodePlan(False, "all"),
        "whole = passage mean, all needs query role": EncodePlan(True, "all"),
        "whole = passage mean, short needs query role": EncodePlan(True, "single"),
        "whole = passage mean, no query role": EncodePlan(True, "none"),
        "whole encoded, short needs query role": EncodePlan(False, "single"),
    }


def collections(csl: Path | None, csl_limit: int | None, tmp: Path) -> Iterator[tuple[str, Any, list]]:
    """(name, engine, [(direction, queries)]) for the realistic corpus and CSL dev, one at a time."""
    from benchmarks.cases import build, labels
    from indexer.ranking import evaluation as ev
    from service.cli.evaluation import engine_with

    rows, _ = labels()
    yield ("realistic corpus", build(tmp / "realistic"),
           [("need → capability", ev.demo_queries(rows)), ("capability → need", ev.demo_queries(rows, reverse=True))])
    if csl is not None:
        needs, caps, queries = ev.csl_records(ev.read_csl(csl, csl_limit))
        yield (f"CSL {csl.name}", engine_with((needs, caps), tmp / "csl"), [("title → abstract", queries)])


def measure(csl: Path | None, csl_limit: int | None, only: list[int] | None = None) -> list[dict[str, Any]]:
    from indexer.ranking import evaluation as ev
    from indexer.ranking.hybrid import RankingModel
    from indexer.retrieval import builder

    model = RankingModel.load()
    results = []
    with tempfile.TemporaryDirectory(prefix="scenematch-encodes-") as tmp:
        for name, engine, directions in collections(csl, csl_limit, Path(tmp)):
            baseline: dict[str, dict[str, dict[str, float]]] = {}
            records = sum(engine.snapshot.counts().values())
            chosen = [(label, plan) for i, (label, plan) in enumerate(plans().items()) if only is None or i in only]
            for label, plan in chosen:
                t0 = time.perf_counter()
                version, _ = builder.build_full_version(engine.data_dir, engine.sessions, engine.encoder,
                                                        engine.tokenizer, engine.domain_codes, plan=plan)
                seconds = time.perf_counter() - t0
                engine.open(build_if_missing=False)
                timings = engine.snapshot.manifest["timings"]
                texts = sum(v for k, v in timings.items() if k.endswith("texts_encoded"))
                row: dict[str, Any] = {"collection": f"{name}, {engine.encoder.name.split('@')[-1]}", "plan": label, "records": records,
                                       "texts_per_record": texts / max(1, records), "build_s": seconds}
                for direction, queries in directions:
                    runs = ev.runs_for(engine.snapshot, queries, model, systems=("dense", "shipped"))
                    scores = ev.score_runs(queries, runs)
                    for system in ("dense", "shipped"):
                        per = ev.per_query(queries, runs[system])
                        base = baseline.setdefault(direction, {}).setdefault(system, per)
                        diff = ev.paired_difference(per, base)
                        row[f"{direction} {system}"] = (scores[system]["ndcg@10"], diff)
                results.append(row)
                print(row, flush=True)
            engine.close()
    return results


def render(results: list[dict[str, Any]], command: str) -> str:
    lines = [SECTION, "", f"Command: `{command}` (measured {time.strftime('%Y-%m-%d')}).", "",
             "nDCG@10 per encode plan (indexer/retrieval/record_vectors.py); in brackets the paired "
             "difference to today's plan with its 95% bootstrap interval over queries. Texts encoded "
             "per record count every encoder input a build makes (cache hits included).", ""]
    by_collection: dict[str, list[dict[str, Any]]] = {}
    for row in results:
        by_collection.setdefault(row["collection"], []).append(row)
    for name, rows in by_collection.items():
        columns = [k for k in rows[0] if k not in ("collection", "plan", "records", "texts_per_record", "build_s")]
        lines += [f"### {name} ({rows[0]['records']} records)", "",
                  "| plan | texts/record | " + " | ".join(f"{c} nDCG@10" for c in columns) + " |",
                  "|---|---|" + "---|" * len(columns)]
        for row in rows:
            cells = []
            for c in columns:
                value, diff = row[c]
                cells.append(f"{value:.4f} ({_diff(diff)})")
            lines.append(f"| {row['plan']} | {row['texts_per_record']:.2f} | " + " | ".join(cells) + " |")
        lines.append("")
    return "\n".join(lines)


def _diff(diff: dict[str, float]) -> str:
    return f"{diff['mean']:+.4f}, {diff['low']:+.4f} to {diff['high']:+.4f}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csl", type=Path, help="CSL title→abstract file (dev split)")
    parser.add_argument("--csl-limit", type=int, help="Only the first N CSL pairs")
    parser.add_argument("--plans", help="Only these plans, by position in plans() (0 = today's first)")
    parser.add_argument("--write", action="store_true", help=f"Replace the section in {DOCS.name}")
    args = parser.parse_args()
    only = [int(i) for i in args.plans.split(",")] if args.plans else None
    results = measure(args.csl, args.csl_limit, only)
    command = "nice .venv/bin/python -m benchmarks.encodes" + (f" --csl {args.csl}" if args.csl else "") \
        + (f" --csl-limit {args.csl_limit}" if args.csl_limit else "") + (f" --plans {args.plans}" if args.plans else "") \
        + " --write"
    backend = os.environ.get("SCENEMATCH_ENCODER_BACKEND")
    command = f"SCENEMATCH_ENCODER_BACKEND={backend} {command}" if backend else command
    section = SECTION + (f" ({backend})" if backend else "")
    text = render(results, command).replace(SECTION, section, 1)
    print(text)
    if args.write:
        from service.cli.evaluation import replace_section

        replace_section(DOCS, section, text)


if __name__ == "__main__":
    main()
