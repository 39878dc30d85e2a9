"""Passage length against ranking quality and encoder work: how long a record's passages may be.

    nice .venv/bin/python -m benchmarks.passage_length --csl /work/shared/benchmarks/csl/ts_dev.tsv --csl-limit 500

A build encodes a long record's whole text and each of its titled passages (indexer/retrieval/documents.py,
PASSAGE_CHARS characters at most, one sentence of overlap); a text that fits one passage is encoded once. Longer
passages mean fewer encoder inputs and fewer tokens per record (fewer repeated titles and overlap sentences),
and a coarser passage signal. This rebuilds the realistic corpus (stored without domains, both directions) and
CSL dev with the real engine per passage length and reports nDCG@10 of the dense signal and the shipped ranking,
paired against the first length, with the encoder inputs and tokens each record costs. Nothing in the service
reads it; the length it ships is PASSAGE_CHARS.
"""
from __future__ import annotations

import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.encoder import csl_arguments, paired_text, table

LENGTHS = (160, 200, 240)


def tokens_per_record(engine: Any) -> float:
    """Tokens the encoder reads per record stored in `engine`, as the build's plan encodes them."""
    from indexer.retrieval.builder import load_docs
    from indexer.retrieval.documents import KINDS, NEED, passage_texts_for_embedding

    inner = engine.encoder
    while getattr(inner, "inner", None) is not None:
        inner = inner.inner
    tokenizer = getattr(inner, "tokenizer", None)  # the ONNX encoder's own (tokenizers library)
    if not hasattr(tokenizer, "encode_batch"):
        return float("nan")
    texts: list[str] = []
    docs = [d for kind in KINDS for d in load_docs(engine.sessions, kind, engine.tokenizer)]
    for d in docs:
        if len(d.passages) > 1:
            texts += [d.full_text, *passage_texts_for_embedding(d)]
        else:
            texts += [d.full_text] * (2 if d.kind == NEED else 1)  # short needs: the query role too
    return sum(len(e.ids) for e in tokenizer.encode_batch(texts)) / max(1, len(docs))


def measure(csl: Path, csl_limit: int | None) -> list[dict[str, Any]]:
    from benchmarks.encoder import labelled_collections, paired_scores
    from indexer.ranking.hybrid import RankingModel
    from indexer.retrieval import builder, documents

    model = RankingModel.load()
    rows: list[dict[str, Any]] = []
    base: dict[tuple[str, str], dict[str, float]] = {}
    shipped = documents.PASSAGE_CHARS
    try:
        with tempfile.TemporaryDirectory(prefix="bench-passages-") as tmp:
            engines, collections = labelled_collections(csl, csl_limit, Path(tmp))
            for length in LENGTHS:
                documents.PASSAGE_CHARS = length  # read by passages_of at every build
                cost: dict[str, tuple[float, float]] = {}
                for source, engine in engines.items():
                    builder.build_full_version(engine.data_dir, engine.sessions, engine.encoder, engine.tokenizer,
                                               engine.domain_codes)
                    engine.open(build_if_missing=False)
                    timings = engine.snapshot.manifest["timings"]
                    n = sum(engine.snapshot.counts().values())
                    texts = sum(v for k, v in timings.items() if k.endswith("texts_encoded")) / max(1, n)
                    cost[source] = (texts, tokens_per_record(engine))
                rows += [{**r, "texts_per_record": cost[r["source"]][0], "tokens_per_record": cost[r["source"]][1]}
                         for r in paired_scores(engines, collections, model, base, {"chars": length})]
            for engine in engines.values():
                engine.close()
    finally:
        documents.PASSAGE_CHARS = shipped
    return rows


def render(rows: list[dict[str, Any]], command: str, encoder: str) -> str:
    header = ["passage chars", "collection", "system", "texts per record", "tokens per record", "nDCG@10",
              f"vs {LENGTHS[0]} (95% paired interval)"]
    body = [[str(r["chars"]), r["collection"], r["system"], f"{r['texts_per_record']:.2f}",
             f"{r['tokens_per_record']:.0f}", f"{r['ndcg']:.4f}", paired_text(r["diff"])] for r in rows]
    return "\n".join([f"Command: `{command}` (measured {time.strftime('%Y-%m-%d')}, encoder {encoder}).", "",
                      *table(header, body)]) + "\n"


def main() -> None:
    from service.settings import Settings

    args = csl_arguments(__doc__.split("\n")[0])
    rows = measure(args.csl, args.csl_limit)
    print(render(rows, f"nice .venv/bin/python -m benchmarks.passage_length --csl {args.csl} "
                       f"--csl-limit {args.csl_limit}", Settings().encoder_backend))


if __name__ == "__main__":
    main()
