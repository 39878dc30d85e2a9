"""Which signals the fusion weighs, and on what scale: out-of-fold fits on a seed corpus's labels.

    python -m benchmarks.fusion --corpus realistic --write

Builds a real index of the corpus (the realistic one as clients send records: without domains, so the
domain signal is unknown and the untagged model scores every pair), collects every labelled query's
candidates with their signals, both directions, and for each variant fits the logistic model on four
fifths of the queries and ranks the held-out fifth with it (5 folds by query, so no query is ranked by
weights fitted on it). Variants: signal subsets on per-query z-scores (what the service ships) and on
the raw values (cosines, BM25 share) as fitted before. nDCG@10 over each query's candidates with graded
gains (a relevant record outside the candidates counts as missed), and paired bootstrap intervals
against the shipped choice. Not imported by the package.
"""
from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from indexer.adaptation.evaluate import ranked_list_metrics
from indexer.ranking import evaluation as ev
from indexer.ranking.hybrid import SIGNALS

DOC = Path(__file__).resolve().parents[1] / "docs" / "quality.md"
SECTION = "## Fusion"
SHIPPED = ("z", ("passage", "lexical"))  # the untagged model's signals (domain unknown here)
VARIANTS: dict[str, tuple[str, tuple[str, ...]]] = {
    "z: passage + lexical (shipped)": SHIPPED,
    "z: dense + passage + lexical": ("z", ("dense", "passage", "lexical")),
    "z: dense + lexical": ("z", ("dense", "lexical")),
    "z: passage alone": ("z", ("passage",)),
    "z: lexical alone": ("z", ("lexical",)),
    "raw: dense + passage + lexical": ("raw", ("dense", "passage", "lexical")),
    "raw: passage + lexical": ("raw", ("passage", "lexical")),
}


def collect(corpus: str, tmp: Path) -> dict[str, Any]:
    """Per direction: the candidates' z and raw signals, grades, query ids and every query's known grades."""
    from service.cli.evaluation import seed_corpus, seed_corpus_engine

    _, _, labels = seed_corpus(corpus)
    engine = seed_corpus_engine(corpus, tmp / corpus, as_clients_send=corpus == "realistic")
    out = {}
    try:
        for name, reverse in (("need→capability", False), ("capability→need", True)):
            queries = ev.demo_queries(labels, reverse=reverse)
            z, y, groups = ev.training_rows(engine.snapshot, queries)
            raw, _, _ = ev.training_rows(engine.snapshot, queries, raw=True)
            out[name] = {"z": z, "raw": raw, "y": y, "groups": np.array(groups),
                         "grades": {q.qid: list(q.relevant.values()) for q in queries}}
    finally:
        engine.close()
    return out


def out_of_fold(data: dict[str, Any], scale: str, signals: tuple[str, ...], k: int = 5) -> dict[str, float]:
    """nDCG@10 of each query, its candidates ranked by a fit on the other folds' queries."""
    from sklearn.linear_model import LogisticRegression

    x = data[scale][:, [SIGNALS.index(s) for s in signals]]
    y, groups = data["y"], data["groups"]
    scores = np.zeros(len(y))
    for held in ev.folds(groups.tolist(), k):
        mask = np.isin(groups, list(held))
        clf = LogisticRegression(max_iter=2000).fit(x[~mask], (y[~mask] >= 1).astype(int),
                                                    sample_weight=ev.label_weight(y[~mask]))
        scores[mask] = clf.decision_function(x[mask])
    out = {}
    for qid in np.unique(groups):
        rows = np.flatnonzero(groups == qid)
        ranked = rows[np.argsort(-scores[rows], kind="stable")][:10]
        out[str(qid)] = ranked_list_metrics([int(g) for g in y[ranked]], data["grades"][str(qid)])[0]
    return out


def markdown(results: dict[str, dict[str, dict[str, float]]], corpus: str, command: str) -> str:
    lines = [SECTION, "", f"Measured {dt.date.today().isoformat()} with `{command}` ({corpus} corpus"
             + (", records sent without domains" if corpus == "realistic" else "") + "; 5 folds by query).", "",
             "| variant | " + " | ".join(f"{d} nDCG@10 | Δ vs shipped [95% interval]" for d in results) + " |",
             "|---" + "|---|---" * len(results) + "|"]
    shipped = next(name for name, v in VARIANTS.items() if v == SHIPPED)
    for name in VARIANTS:
        cells = []
        for per_variant in results.values():
            mean = float(np.mean(list(per_variant[name].values())))
            if name == shipped:
                cells += [f"{mean:.4f}", "–"]
            else:
                d = ev.paired_difference(per_variant[name], per_variant[shipped])
                cells += [f"{mean:.4f}", f"{d['mean']:+.4f} [{d['low']:+.4f}, {d['high']:+.4f}]"]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    queries = ", ".join(f"{d} {len(next(iter(r.values())))} queries" for d, r in results.items())
    lines += ["", f"Queries: {queries}."]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    from service.cli.evaluation import replace_section

    ap = argparse.ArgumentParser(prog="python -m benchmarks.fusion", description=__doc__.splitlines()[0])
    ap.add_argument("--corpus", choices=("realistic", "classic"), default="realistic")
    ap.add_argument("--write", action="store_true", help=f"replace '{SECTION}' in docs/quality.md")
    args = ap.parse_args(argv)
    command = "python -m benchmarks.fusion " + " ".join(argv if argv is not None else sys.argv[1:])
    with tempfile.TemporaryDirectory(prefix="bench-fusion-") as tmp:
        data = collect(args.corpus, Path(tmp))
    results = {direction: {name: out_of_fold(d, *variant) for name, variant in VARIANTS.items()}
               for direction, d in data.items()}
    text = markdown(results, args.corpus, command)
    print(text)
    if args.write:
        replace_section(DOC, SECTION, text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
