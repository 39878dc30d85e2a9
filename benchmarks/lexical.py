"""Measure tokenizer variants + BM25 on the CSL title→abstract dev split.

    python -m benchmarks.lexical /work/shared/benchmarks/csl/ts_dev.tsv

Each title is a query; its own abstract is the single relevant document among
the 1,000 abstracts. Reports nDCG@10, MRR@10, Recall@10/100 per variant, plus
tokenizer throughput and BM25 query latency for the default tokenizer.
Not imported by the package.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from pathlib import Path

import numpy as np

from indexer.retrieval.lexical import BM25Index
from indexer.retrieval.text import ChineseTokenizer

# The first entry is the default ChineseTokenizer and the baseline for paired counts.
VARIANTS = {
    "search +1char (default)": {},
    "search, no single chars": {"keep_single_chars": False},
    "precise +1char": {"mode": "precise"},
    "precise, no single chars": {"mode": "precise", "keep_single_chars": False},
    "search, no taxonomy dict": {"use_taxonomy": False},
    "search, no HMM": {"hmm": False},
    "search +synonyms": {"synonyms": True},
}


def load_csl(path: Path) -> tuple[list[str], list[str]]:
    titles, abstracts = [], []
    for line in path.read_text(encoding="utf-8").splitlines():
        parts = line.split("\t")
        if len(parts) == 3:
            abstracts.append(parts[1])
            titles.append(parts[2])
    return titles, abstracts


def ranks(index: BM25Index, queries: list[list[str]], unique_query: bool = False) -> np.ndarray:
    """Rank (1-based) of query i's relevant doc (row i) in the top 100; 0 if absent."""
    out = np.zeros(len(queries), dtype=np.int64)
    for i, q in enumerate(queries):
        if unique_query:
            q = list(dict.fromkeys(q))
        rows, _ = index.top_k(q, 100)
        hit = np.flatnonzero(rows == i)
        out[i] = int(hit[0]) + 1 if len(hit) else 0
    return out


def metrics(r: np.ndarray) -> dict[str, float]:
    in10 = (r > 0) & (r <= 10)
    return {
        "nDCG@10": float(np.sum(1.0 / np.log2(r[in10] + 1)) / len(r)),
        "MRR@10": float(np.sum(1.0 / r[in10]) / len(r)),
        "R@10": float(in10.mean()),
        "R@100": float((r > 0).mean()),
    }


def paired(r: np.ndarray, base: np.ndarray) -> str:
    """Queries whose relevant doc moved up / down versus the baseline variant."""
    def key(x):
        return np.where(x > 0, x, 10**6)
    return f"better {int(np.sum(key(r) < key(base)))} / worse {int(np.sum(key(r) > key(base)))}"


def fmt(m: dict[str, float]) -> str:
    return "  ".join(f"{k} {v:.4f}" for k, v in m.items())


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m benchmarks.lexical", description=__doc__.splitlines()[0])
    ap.add_argument("csl", type=Path, help="path to CSL ts_dev.tsv")
    ap.add_argument("--k1", type=float, default=1.2)
    ap.add_argument("--b", type=float, default=0.75)
    args = ap.parse_args(argv)
    titles, abstracts = load_csl(args.csl)
    print(f"CSL: {len(titles)} queries, {len(abstracts)} docs, k1={args.k1} b={args.b}")

    default_tok, base = None, None
    for name, kw in VARIANTS.items():
        tok = ChineseTokenizer(**kw)
        docs = [tok.tokens(a) for a in abstracts]
        queries = [tok.tokens(t) for t in titles]
        index = BM25Index.build(docs, k1=args.k1, b=args.b)
        r = ranks(index, queries)
        if base is None:
            default_tok, base = tok, r
        print(f"{name:26s} {fmt(metrics(r))}  {paired(r, base)}")
        if not kw:
            ru = ranks(index, queries, unique_query=True)
            print(f"{'  unique query terms':26s} {fmt(metrics(ru))}  {paired(ru, base)}")

    # Throughput: warm once, then time tokenising the whole corpus (abstracts + titles).
    tok = default_tok
    texts = abstracts + titles
    n_chars = sum(map(len, texts))
    tok.tokens(texts[0])
    t0 = time.perf_counter()
    for t in texts:
        tok.tokens(t)
    dt = time.perf_counter() - t0
    print(f"tokenizer throughput: {n_chars / dt:,.0f} chars/s ({n_chars:,} chars in {dt:.2f} s)")

    docs = [tok.tokens(a) for a in abstracts]
    queries = [tok.tokens(t) for t in titles]
    t0 = time.perf_counter()
    index = BM25Index.build(docs, k1=args.k1, b=args.b)
    print(f"BM25 build ({len(docs)} docs): {(time.perf_counter() - t0) * 1e3:.1f} ms")
    lat = []
    for q in queries:
        t0 = time.perf_counter()
        index.top_k(q, 10)
        lat.append(time.perf_counter() - t0)
    lat_ms = sorted(x * 1e3 for x in lat)
    print(
        f"BM25 top_k(10) latency at {len(docs)} docs: mean {statistics.mean(lat_ms):.3f} ms, "
        f"p50 {lat_ms[len(lat_ms) // 2]:.3f} ms, p95 {lat_ms[int(len(lat_ms) * 0.95)]:.3f} ms"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
