"""Late chunking, measured before it is built: passage vectors pooled from the whole text's one pass.

    nice .venv/bin/python -m benchmarks.late_chunking --csl /work/shared/benchmarks/csl/ts_dev.tsv --csl-limit 500

A build encodes a long record's whole text and each titled passage again (indexer/retrieval/record_vectors.py),
2.7-2.8 encoder inputs per record: what keeps a reindex below one plain encode per record (docs/benchmarks.md,
"Encoder"). Late chunking runs the whole text once and mean-pools the token vectors that fall inside each
passage's characters, so a record costs one pass (passages past the 512-token window are still encoded on
their own). This script swaps that into the real build (torch encoder, the same model) and reports nDCG@10 of
the dense signal and the shipped ranking against today's plan, paired, on the realistic corpus stored without
domains (both directions) and CSL dev; `+title` also pools the title's tokens into every passage, as today's
titled passages carry the title. Nothing in the service uses it.
"""
from __future__ import annotations

import os
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.encoder import csl_arguments, paired_text, table

import numpy as np

from indexer.retrieval.record_vectors import unit_mean

VARIANTS = ("today", "late", "late+title")


class LateChunker:
    """Token vectors of each whole text (passage role), kept per text, and passage vectors pooled from them."""

    def __init__(self, model: Any, prompt: str):
        self.model, self.prompt = model, prompt
        self.tokens: dict[str, tuple[np.ndarray, list[tuple[int, int]]]] = {}
        self.passes = self.fallbacks = 0

    def prepare(self, texts: list[str]) -> None:
        todo = [t for t in dict.fromkeys(texts) if t not in self.tokens]
        if not todo:
            return
        vecs = self.model.encode([self.prompt + t for t in todo], output_value="token_embeddings", batch_size=16,
                                 convert_to_numpy=False)
        enc = self.model.tokenizer([self.prompt + t for t in todo], return_offsets_mapping=True, truncation=True,
                                   max_length=self.model.max_seq_length)
        for text, v, offsets in zip(todo, vecs, enc["offset_mapping"]):
            self.tokens[text] = (v.float().numpy(), [tuple(o) for o in offsets])
        self.passes += len(todo)

    def pooled(self, text: str, spans: list[tuple[int, int]]) -> np.ndarray | None:
        """Mean of the tokens inside any of `spans` (character offsets in text), or None if none is."""
        vectors, offsets = self.tokens[text]
        shift = len(self.prompt)
        rows = [i for i, (a, b) in enumerate(offsets[:len(vectors)]) if b > a and any(
            a - shift >= s and b - shift <= e for s, e in spans)]
        return unit_mean(vectors[rows]) if rows else None


def _without_space(text: str) -> tuple[str, list[int]]:
    """`text` without whitespace, and each kept character's index in `text`."""
    where = [i for i, ch in enumerate(text) if not ch.isspace()]
    return "".join(text[i] for i in where), where


def late_encode_records(chunker: LateChunker, with_title: bool):  # noqa: ANN201
    """An encode_records replacement (same signature and result) that chunks late."""
    from indexer.retrieval import record_vectors as rv
    from indexer.retrieval.documents import passage_texts_for_embedding

    def encode(docs: list[Any], encoder: Any, plan: Any = rv.DEFAULT_PLAN, progress: Any = None) -> Any:
        dim = encoder.dim
        chunker.prepare([d.full_text for d in docs])
        doc_vectors = np.zeros((len(docs), dim), np.float32)
        pieces, offsets, fallback = [], [0], 0
        for i, d in enumerate(docs):
            vectors, _ = chunker.tokens[d.full_text]
            doc_vectors[i] = unit_mean(vectors)
            if len(d.passages) <= 1:
                rows = [doc_vectors[i]]
            else:
                # Passages are the body's sentences re-joined (whitespace changed), so they are found in
                # the text with whitespace ignored and mapped back to its characters.
                compact, where = _without_space(d.full_text)
                rows, search_from = [], len(_without_space(d.title)[0]) + 1  # the body follows "title。"
                title_span = [(0, len(d.title))] if with_title else []
                for p, titled in zip(d.passages, passage_texts_for_embedding(d)):
                    needle = _without_space(p)[0]
                    start = compact.find(needle, search_from) if needle else -1
                    v = None
                    if start >= 0:
                        span = (where[start], where[start + len(needle) - 1] + 1)
                        v = chunker.pooled(d.full_text, title_span + [span])
                        search_from = start + 1  # passages overlap by a sentence, in order
                    if v is None:  # outside the window (or not found): encoded on its own
                        v = encoder.encode_passages([titled])[0]
                        fallback += 1
                    rows.append(v)
            pieces.append(np.vstack(rows))
            offsets.append(offsets[-1] + len(rows))
        query_rows = rv._query_role_rows(docs, plan)
        query_vectors = None
        if query_rows:
            query_vectors = doc_vectors.copy()
            query_vectors[query_rows] = encoder.encode_queries([docs[i].full_text for i in query_rows])
        chunker.fallbacks += fallback
        return rv.RecordVectors(doc_vectors, query_vectors, np.vstack(pieces) if pieces else np.zeros((0, dim)),
                                np.array(offsets, dtype=np.int64), len(docs) + fallback + len(query_rows))

    return encode


def measure(csl: Path, csl_limit: int | None) -> list[dict[str, Any]]:
    from benchmarks.encoder import labelled_collections, paired_scores
    from indexer.ranking.hybrid import RankingModel
    from indexer.retrieval import builder

    os.environ["SCENEMATCH_ENCODER_BACKEND"] = "torch"  # the token vectors come from the torch model
    model = RankingModel.load()
    rows: list[dict[str, Any]] = []
    base: dict[tuple[str, str], dict[str, float]] = {}
    original = builder.encode_records
    with tempfile.TemporaryDirectory(prefix="bench-late-") as tmp:
        engines, collections = labelled_collections(csl, csl_limit, Path(tmp))
        inner = engines["realistic"].encoder.inner
        chunker = LateChunker(inner.model, inner.model.prompts.get("passage", ""))
        for variant in VARIANTS:
            builder.encode_records = original if variant == "today" else late_encode_records(
                chunker, variant == "late+title")
            texts: dict[str, float] = {}
            for source, engine in engines.items():
                t0 = time.perf_counter()
                builder.build_full_version(engine.data_dir, engine.sessions, engine.encoder, engine.tokenizer,
                                           engine.domain_codes)
                engine.open(build_if_missing=False)
                timings = engine.snapshot.manifest["timings"]
                n = sum(engine.snapshot.counts().values())
                texts[source] = sum(v for k, v in timings.items() if k.endswith("texts_encoded")) / max(1, n)
                print(f"{variant} {source}: built in {time.perf_counter() - t0:.0f} s", flush=True)
            rows += [{**r, "texts_per_record": texts[r["source"]]}
                     for r in paired_scores(engines, collections, model, base, {"variant": variant})]
        builder.encode_records = original
        print(f"late passes {chunker.passes}, passages encoded on their own {chunker.fallbacks}", flush=True)
        for engine in engines.values():
            engine.close()
    return rows


def render(rows: list[dict[str, Any]], command: str) -> str:
    header = ["variant", "collection", "system", "texts per record", "nDCG@10", "vs today (95% paired interval)"]
    body = [[r["variant"], r["collection"], r["system"], f"{r['texts_per_record']:.2f}", f"{r['ndcg']:.4f}",
             paired_text(r["diff"])] for r in rows]
    return "\n".join([f"Command: `{command}` (measured {time.strftime('%Y-%m-%d')}, torch encoder).", "",
                      *table(header, body)]) + "\n"


def main() -> None:
    args = csl_arguments(__doc__.split("\n")[0])
    rows = measure(args.csl, args.csl_limit)
    print(render(rows, f"nice .venv/bin/python -m benchmarks.late_chunking --csl {args.csl} "
                       f"--csl-limit {args.csl_limit}"))


if __name__ == "__main__":
    main()
