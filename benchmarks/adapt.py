"""Measure encoder adaptation on a seed corpus: speed, and quality on held-out labels and CSL dev.

    python -m benchmarks.adapt --corpus realistic --variants lead,passages \
        --csl /work/shared/benchmarks/csl/ts_dev.tsv --json adapt.json --write-doc

Loads a seed corpus into a fresh SQLite database (the realistic one as clients send records: without
domains), indexes it with the base model, then for each variant runs a real adaptation with the
shipped settings except its own (forced to activate, so its effect can be measured even when the
guard would refuse it), measures, and rolls back to the base model:
  lead           — the records' own title → first 300 characters pairs (the shipped default; no labels)
  passages       — the records' own title → each passage pairs (the earlier recipe; no labels)
  lead+labels    — lead plus the training half of the corpus's labels (grade 2 positives,
                   grade 0 hard negatives)
  labels         — the training half of the labels only
Quality: dense and shipped (hybrid) ranking on the held-out half of the labelled needs
(need → capability and the reverse), on all labelled needs (only unbiased for `corpus`),
and dense title → abstract retrieval on CSL dev as a regression check.
Not imported by the package.
"""
from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from indexer.adaptation import adapt, data as adapt_data, evaluate as adapt_eval
from indexer.adaptation.adapt import AdaptConfig, BaseModel
from indexer.ranking.evaluation import demo_queries, paired_difference, per_query, read_csl, runs_for, score_runs
from indexer.ranking.hybrid import RankingModel, RankingModels
from indexer.retrieval.embedding import CachedEncoder, EmbeddingCache, SentenceTransformerEncoder, load_encoder
from indexer.retrieval.engine import SearchEngine
from indexer.retrieval.text import get_tokenizer
from models import model_versions as mv
from models import repository
from models.database import make_engine, make_session_factory, migrate, session_scope
from models.embedding_model import default_cache_dir
from models.taxonomy import SEED_DIR, default_taxonomy

DOC = Path(__file__).resolve().parents[1] / "docs" / "quality.md"
VARIANTS: dict[str, dict[str, Any]] = {
    "lead": {"record_pairs": "lead", "use_demo_labels": False},
    "passages": {"record_pairs": "passages", "use_demo_labels": False},
    "lead+labels": {"record_pairs": "lead", "use_demo_labels": True},
    "labels": {"record_pairs": "none", "use_demo_labels": True},
}
CORPORA = {"realistic": SEED_DIR / "realistic", "classic": SEED_DIR / "demo"}
SECTION = "## Encoder adaptation"


def load_corpus(sessions: Any, folder: Path, untagged: bool) -> int:
    n = 0
    with session_scope(sessions) as session:
        for kind, sub in (("need", "needs"), ("capability", "capabilities")):
            for path in sorted((folder / sub).glob("*.jsonl")):
                for line in path.read_text(encoding="utf-8").splitlines():
                    if line.strip():
                        row = json.loads(line)
                        if untagged:
                            row.pop("domain", None), row.pop("domains", None)
                        repository.upsert(session, kind, row.pop("id"), row)
                        n += 1
    return n


def measure(engine: SearchEngine, labels: list[dict[str, Any]], held: set[str],
            csl: adapt_eval.RetrievalSet | None) -> dict[str, Any]:
    snap = engine.snapshot
    assert snap is not None
    shipped = RankingModel.load()
    # What the version serves with: its own weights when the adaptation fitted them.
    own = RankingModels(shipped, mv.models_root(engine.data_dir)).for_model(snap.model)
    held_rows = [r for r in labels if r["need_id"] in held]
    out: dict[str, Any] = {"model": snap.model, "own_weights": own is not shipped}
    for name, rows, reverse in (("held_out", held_rows, False), ("held_out_reverse", held_rows, True),
                                ("all_labels", labels, False)):
        queries = demo_queries(rows, reverse=reverse)
        runs = runs_for(snap, queries, shipped, ("dense", "shipped"))
        runs["served"] = runs_for(snap, queries, own, ("shipped",))["shipped"]
        scores = score_runs(queries, runs)
        out[name] = {"queries": len(queries),
                     **{f"{system}_ndcg@10": round(m["ndcg@10"], 4) for system, m in scores.items()},
                     "per_query": {s: per_query(queries, runs[s]) for s in ("shipped", "served")}}
    if csl is not None:
        t0 = time.perf_counter()
        out["csl_dev"] = adapt_eval.evaluate(engine.encoder, csl)
        out["csl_dev"]["seconds"] = round(time.perf_counter() - t0, 1)
    return out


def extrapolate(result: dict[str, Any], records: int, target: int) -> dict[str, float]:
    """Seconds to adapt `target` records with the shipped bounds: embedding work scales with the
    records, record pairs too (labelled pairs do not), training is capped by max_pairs/max_seconds."""
    bounds = AdaptConfig()
    t, r = result["timings"], target / records
    pairs = result["pairs"]
    sampled = min(bounds.max_pairs, pairs["label_pairs"] + pairs["record_pairs"] * r)
    train = min(sampled / result["training"]["pairs_per_s"], bounds.max_seconds)
    parts = {"collect_s": t["collect_s"] * r, "train_s": train,
             "evaluate_s": t["evaluate_s"] * r, "reindex_s": t["reindex_s"] * r}
    return {**{k: round(v, 0) for k, v in {**parts, "total_s": sum(parts.values())}.items()},
            "pairs": round(sampled), "max_pairs": bounds.max_pairs, "max_seconds": bounds.max_seconds}


def _pair(m: dict[str, Any]) -> str:
    served = m.get("served_ndcg@10", m["shipped_ndcg@10"])
    return f"{m['dense_ndcg@10']:.4f} / {m['shipped_ndcg@10']:.4f} / {served:.4f}"


def _brief(state: dict[str, Any]) -> dict[str, Any]:
    return {k: ({kk: vv for kk, vv in v.items() if kk != "per_query"} if isinstance(v, dict) else v)
            for k, v in state.items()}


def _differences(states: dict[str, Any]) -> list[str]:
    """Paired over the held-out queries: each variant as served minus the base model, and its own
    weights minus the shipped ones on the same encoder."""
    base = states["base"]
    out = []
    for name, m in states.items():
        if name == "base" or "per_query" not in m["held_out"]:
            continue
        # (title, the variant's run, the state and run it is compared with)
        comparisons = [("as served minus base", "served", base, "served")]
        if m.get("own_weights"):
            comparisons.append(("own weights minus shipped weights", "served", m, "shipped"))
        for title, run, other, other_run in comparisons:
            cells = []
            for part, label in (("held_out", "need→capability"), ("held_out_reverse", "reverse")):
                d = paired_difference(m[part]["per_query"][run], other[part]["per_query"][other_run])
                cells.append(f"{label} {d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]")
            out.append(f"- {name}, {title}, held-out nDCG@10 (95% paired bootstrap interval): "
                       + "; ".join(cells))
    return out


def _guard_cell(guard: dict[str, Any]) -> str:
    deltas = ", ".join(f"{c['set']} {c['delta']:+.4f}" for c in guard["checks"] if c["judged"])
    return f"{'accept' if guard['accepted'] else 'refuse'} ({deltas})"


def label_free(metrics: dict[str, dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Only the probes a deployment without labels has: what its guard would see."""
    return {k: v for k, v in metrics.items() if k in adapt_eval.LABEL_FREE_SETS}


def markdown(report: dict[str, Any], command: str) -> str:
    lines = [SECTION, "",
             f"Measured {report['date']} on this 2-core machine (shared with other work, so timings are "
             f"noisy), {report.get('corpus', 'classic')} corpus of {report['records']} records: `{command}`.", "",
             "nDCG@10, dense only / all signals fused with the shipped weights / fused with the weights the "
             "version serves with (its own when the adaptation fitted them, else the shipped ones):", "",
             "| model | held-out need→capability | held-out reverse | all labelled needs | CSL dev (dense) |",
             "|---|---|---|---|---|"]
    for name, m in report["states"].items():
        csl = m.get("csl_dev", {}).get("ndcg@10")
        lines.append(f"| {name} | {_pair(m['held_out'])} | {_pair(m['held_out_reverse'])} | "
                     f"{_pair(m['all_labels'])} | {'—' if csl is None else f'{csl:.4f}'} |")
    held = report["states"]["base"]["held_out"]["queries"]
    lines += ["", f"Held out: {held} labelled needs, never trained on (graded gains, ranx). `all labelled "
              "needs` includes the needs whose labels the label variants trained on: unbiased only for "
              "`base` and the variants without labels.", ""]
    lines += _differences(report["states"])
    lines += ["",
              "| variant | pairs | steps | train s | pairs/s | peak MB | collect s | evaluate s | "
              "reindex s | total s | guard as shipped (nDCG@10 Δ) | guard without labels |",
              "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for name, run in report["runs"].items():
        t, tr = run["timings"], run["training"]
        lines.append(f"| {name} | {tr['pairs_trained']} | {tr['steps']} | {tr['seconds']:.0f} | "
                     f"{tr['pairs_per_s']:.2f} | {tr.get('peak_rss_mb', '—')} | {t['collect_s']} | "
                     f"{t['evaluate_s']} | {t['reindex_s']} | {run['seconds']:.0f} | "
                     f"{_guard_cell(run['guard'])} | {_guard_cell(run['guard_label_free']) if 'guard_label_free' in run else '—'} |")
    for name, run in report["runs"].items():
        e = run["extrapolated_10k"]
        lines.append(f"\n10k records ({name}; extrapolated from this run with the shipped bounds, not "
                     f"measured): {e['pairs']} pairs, training {e['train_s']:.0f} s (at most "
                     f"{e['max_seconds']:.0f} s), evaluation {e['evaluate_s']:.0f} s, reindex "
                     f"{e['reindex_s']:.0f} s: about {e['total_s'] / 60:.0f} min.")
    return "\n".join(lines) + "\n"


BEGIN, END = "<!-- bench_adapt: begin -->", "<!-- bench_adapt: end -->"


def write_doc(section: str) -> None:
    """Replace the measured part of the section (between its markers); prose around it stays."""
    body = section.split("\n", 2)[2]  # without the heading
    measured = f"{BEGIN}\n{body.strip()}\n{END}"
    text = DOC.read_text(encoding="utf-8") if DOC.exists() else "# Quality\n"
    if BEGIN in text and END in text:
        head, rest = text.split(BEGIN, 1)
        text = head + measured + rest.split(END, 1)[1]
    else:
        text = text.rstrip("\n") + f"\n\n{SECTION}\n\n{measured}\n"
    DOC.parent.mkdir(parents=True, exist_ok=True)
    DOC.write_text(text, encoding="utf-8")


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.adapt", description=__doc__.splitlines()[0])
    ap.add_argument("--csl", type=Path, help="CSL ts_dev.tsv (optional regression check)")
    ap.add_argument("--csl-limit", type=int, default=None)
    ap.add_argument("--corpus", choices=sorted(CORPORA), default="realistic")
    ap.add_argument("--variants", default="lead,passages", help=f"some of {', '.join(VARIANTS)}")
    ap.add_argument("--max-pairs", type=int, default=AdaptConfig().max_pairs)
    ap.add_argument("--max-seconds", type=float, default=AdaptConfig().max_seconds)
    ap.add_argument("--json", type=Path, help="also write the raw report here")
    ap.add_argument("--write-doc", action="store_true", help=f"replace '{SECTION}' in docs/quality.md")
    ap.add_argument("--from-json", type=Path, help="only render a report saved with --json")
    args = ap.parse_args(argv)
    command = "python -m benchmarks.adapt " + " ".join(argv if argv is not None else sys.argv[1:])
    if args.from_json:
        saved = json.loads(args.from_json.read_text(encoding="utf-8"))
        for run in saved["runs"].values():
            run["extrapolated_10k"] = extrapolate(run, saved["records"], 10_000)
        section = markdown(saved, saved.get("command", command))
        print(section)
        if args.write_doc:
            write_doc(section)
        return 0

    data_dir = Path(tempfile.mkdtemp(prefix="bench-adapt-"))
    db = make_engine(f"sqlite:///{data_dir / 'bench.db'}")
    migrate(db)
    sessions = make_session_factory(db)
    records = load_corpus(sessions, CORPORA[args.corpus], untagged=args.corpus == "realistic")
    cache_dir = default_cache_dir()
    base_inner = load_encoder(None, cache_dir)
    encoder = CachedEncoder(base_inner, EmbeddingCache(cache_dir / "embeddings.sqlite"))
    engine = SearchEngine(data_dir, sessions, encoder, get_tokenizer(), list(default_taxonomy().domains))
    t0 = time.perf_counter()
    engine.open(build_if_missing=True)
    print(f"base index: {records} records in {time.perf_counter() - t0:.0f} s", flush=True)
    base = BaseModel.resolve(None, cache_dir)
    labels = adapt_data.read_demo_labels((CORPORA[args.corpus] / "labels",))
    config0 = AdaptConfig()
    held = {r["need_id"] for r in labels if adapt_data.held_out(r["need_id"], config0.label_holdout_fraction)}
    csl = None
    if args.csl:
        pairs = read_csl(args.csl, args.csl_limit)
        csl = adapt_eval.RetrievalSet("csl", [t for t, _ in pairs], [a for _, a in pairs],
                                      [{i: 1} for i in range(len(pairs))])
    report: dict[str, Any] = {"date": dt.date.today().isoformat(), "records": records, "command": command,
                              "corpus": args.corpus,
                              "max_pairs": args.max_pairs, "states": {}, "runs": {}}
    report["states"]["base"] = measure(engine, labels, held, csl)
    print(json.dumps(_brief(report["states"]["base"]), ensure_ascii=False), flush=True)

    def load(path: str) -> Any:
        return base_inner if path == base.path else SentenceTransformerEncoder(path)

    for variant in [v for v in args.variants.split(",") if v]:
        # tolerance 1: always activate, so the effect is measured; the real guard is recomputed.
        config = AdaptConfig(max_pairs=args.max_pairs, max_seconds=args.max_seconds, tolerance=1.0,
                             general_tolerance=1.0, **VARIANTS[variant])
        result = adapt.adapt(engine, base, config,
                             progress=lambda f, m: print(f"  {variant} {f:6.1%} {m}", flush=True))
        shipped_config = AdaptConfig()
        tolerances = {"general": shipped_config.general_tolerance}
        result["guard"] = adapt_eval.guard(result["metrics"]["candidate"], result["metrics"]["active"],
                                           shipped_config.tolerance, tolerances)
        result["guard_label_free"] = adapt_eval.guard(label_free(result["metrics"]["candidate"]),
                                                      label_free(result["metrics"]["active"]),
                                                      shipped_config.tolerance, tolerances)
        result["extrapolated_10k"] = extrapolate(result, records, 10_000)
        report["runs"][variant] = result
        report["states"][variant] = measure(engine, labels, held, csl)
        print(json.dumps({k: result[k] for k in ("training", "timings", "seconds", "guard")},
                         ensure_ascii=False), flush=True)
        print(json.dumps(_brief(report["states"][variant]), ensure_ascii=False), flush=True)
        if args.json:
            args.json.write_text(json.dumps(report, ensure_ascii=False, indent=2, default=str),
                                 encoding="utf-8")
        adapt.rollback(engine, base, load)
    section = markdown(report, command)
    print(section)
    if args.write_doc:
        write_doc(section)
    engine.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
