"""Benchmark of index building: pipeline vs raw encoder, incremental updates, index parts at scale.

Not imported by the package. Writes a Markdown section to stdout (and into
docs/benchmarks.md with --write). Example:

    .venv/bin/python -m benchmarks.build --sizes 1000,10000 --scale 100000,1000000 --write
"""
from __future__ import annotations

import argparse
import json
import random
import resource
import tempfile
import time
import tracemalloc
from pathlib import Path

import numpy as np

from indexer.retrieval.dense import create_dense_index
from indexer.retrieval.lexical import BM25Index

SECTION = "## Index build"


def synthetic_records(n: int, seed: int = 7) -> tuple[list[dict], list[dict]]:
    """Unique but realistic records: sentences of same-domain demo records recombined."""
    from indexer.retrieval.text import get_tokenizer
    from service.demo import demo_records

    rng = random.Random(seed)
    tok = get_tokenizer()
    needs, caps = demo_records()
    pools: dict[str, list[str]] = {}
    for rec in needs + caps:
        domain = rec.get("domain") or (rec.get("domains") or ["x"])[0]
        pools.setdefault(domain, []).extend(tok.sentences(rec["description"]))
    templates = needs + caps
    out_needs, out_caps = [], []
    for i in range(n):
        base = dict(rng.choice(templates))
        domain = base.get("domain") or (base.get("domains") or ["x"])[0]
        pool = pools.get(domain) or ["无描述。"]
        k = rng.randint(1, 6)
        base["description"] = "".join(rng.sample(pool, min(k, len(pool))))[:4900] + f"（编号{i}）"
        base["title"] = f"{base['title'][:180]}·{i}"
        base["id"] = f"B-{i}"
        (out_needs if "publisher" in base else out_caps).append(base)
    return out_needs, out_caps


def rss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def bench_pipeline(n: int, raw_sample: int) -> dict:
    """Full build of n records with a cold embedding cache, the raw encoder on the same texts,
    then an incremental update of 1% of the records."""
    from indexer.retrieval.documents import doc_from_row
    from indexer.retrieval.embedding import CachedEncoder, EmbeddingCache
    from indexer.retrieval.engine import SearchEngine
    from indexer.retrieval.record_vectors import encode_records
    from indexer.retrieval.text import get_tokenizer
    from models import repository
    from models.database import session_scope
    from service.app import init_state
    from service.search import shared_encoder
    from service.settings import Settings

    with tempfile.TemporaryDirectory(prefix="bench-build-") as tmp:
        settings = Settings(data_dir=Path(tmp) / "data", load_demo=False, build_index_on_start=False)
        state = init_state(settings)
        needs, caps = synthetic_records(n)
        with session_scope(state.sessions) as session:
            for kind, rows in (("need", needs), ("capability", caps)):
                for row in rows:
                    data = dict(row)
                    repository.upsert(session, kind, data.pop("id"), data)
        raw = shared_encoder(settings.embedding_model, str(settings.cache_dir), settings.encoder_backend)
        encoder = CachedEncoder(raw, EmbeddingCache(Path(tmp) / "cold-cache.sqlite"))
        tokenizer = get_tokenizer()
        engine = SearchEngine(settings.data_dir, state.sessions, encoder, tokenizer,
                              list(state.taxonomy.domains))
        # Raw encoder: exactly the calls embed_docs makes (indexer/retrieval/record_vectors.py)
        # for a sample of each kind, straight to the model (no cache),
        # timed just before and just after the build so a change of machine load shows up (and
        # mostly cancels) instead of distorting the ratio; scaled to all records per kind.
        with session_scope(state.sessions) as session:
            samples = {kind: [doc_from_row(kind, r, tokenizer) for r in
                              list(repository.iter_all(session, kind))[:raw_sample // 2]]
                       for kind in ("need", "capability")}
        counts = {"need": len(needs), "capability": len(caps)}

        def time_raw(sample: list) -> float:
            t0 = time.perf_counter()
            encode_records(sample, raw)
            return time.perf_counter() - t0

        raw_before = {kind: time_raw(sample) for kind, sample in samples.items()}
        t0 = time.perf_counter()
        engine.rebuild()
        full_s = time.perf_counter() - t0
        raw_after = {kind: time_raw(sample) for kind, sample in samples.items()}
        manifest = engine.snapshot.manifest
        raw_s = sum((raw_before[k] + raw_after[k]) / 2 * counts[k] / max(1, len(samples[k])) for k in samples)
        units_total = encoder.misses
        # Incremental: change 1% of the records, time until the served snapshot has them all.
        changed = max(1, n // 100)
        with session_scope(state.sessions) as session:
            for row in (needs + caps)[:changed]:
                data = dict(row)
                rid = data.pop("id")
                data["description"] = data["description"] + "（已更新）"
                repository.upsert(session, "need" if "publisher" in row else "capability", rid, data)
        t0 = time.perf_counter()
        applied = engine.refresh()
        incr_s = time.perf_counter() - t0
        t0 = time.perf_counter()
        engine.fold()
        fold_s = time.perf_counter() - t0
        engine.close()
        return {
            "records": n, "full_build_s": round(full_s, 1), "docs_per_s": round(n / full_s, 2),
            "texts_embedded": units_total, "raw_encoder_s_est": round(raw_s, 1),
            "pipeline_vs_raw": round(raw_s / full_s, 3),
            "raw_sample_records": {k: len(v) for k, v in samples.items()},
            "raw_sample_s_before_after": {k: [round(raw_before[k], 1), round(raw_after[k], 1)] for k in samples},
            "timings": manifest.get("timings"), "incremental_changed": changed,
            "incremental_refresh_s": round(incr_s, 2), "incremental_vs_full": round(incr_s / full_s, 4),
            "applied": applied, "fold_s": round(fold_s, 2),
        }


def bench_parts(n: int, dim: int = 384, seed: int = 3) -> dict:
    """Build time and memory of the FAISS and BM25 parts alone, on synthetic inputs."""
    from indexer.retrieval.text import get_tokenizer
    from service.demo import demo_records

    rng = np.random.default_rng(seed)
    centers = rng.normal(size=(2000, dim)).astype(np.float32)
    centers /= np.linalg.norm(centers, axis=1, keepdims=True)
    vectors = centers[rng.integers(0, len(centers), n)] + 0.35 * rng.normal(size=(n, dim)).astype(np.float32) / np.sqrt(dim)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    tok = get_tokenizer()
    needs, caps = demo_records()
    token_pool = [tok.tokens(r["title"] + r["description"]) for r in needs + caps]
    docs = [token_pool[i % len(token_pool)] for i in range(n)]
    tracemalloc.start()
    t0 = time.perf_counter()
    index = create_dense_index(n, dim)
    index.build(vectors, np.arange(n, dtype=np.int64))
    dense_s = time.perf_counter() - t0
    dense_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    tracemalloc.start()
    t0 = time.perf_counter()
    BM25Index.build(docs)
    lex_s = time.perf_counter() - t0
    lex_peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return {"records": n, "dense_kind": index.params().get("type"), "dense_build_s": round(dense_s, 2),
            "dense_peak_bytes_per_record": round(dense_peak / n), "lexical_build_s": round(lex_s, 2),
            "lexical_peak_bytes_per_record": round(lex_peak / n)}


def render(pipeline: list[dict], parts: list[dict], command: str) -> str:
    lines = [SECTION, "", f"Measured with `{command}` on this 2-core machine (other work may have shared it).", "",
             "### Full build and incremental update (cold embedding cache)", "",
             "| records | full build s | records/s | texts embedded | raw encoder s (same calls) | raw/pipeline | 1% update s | update/full | fold s |",
             "|---|---|---|---|---|---|---|---|---|"]
    for p in pipeline:
        lines.append(f"| {p['records']} | {p['full_build_s']} | {p['docs_per_s']} | {p['texts_embedded']} | "
                     f"{p['raw_encoder_s_est']} | {p['pipeline_vs_raw']} | {p['incremental_refresh_s']} | "
                     f"{p['incremental_vs_full']:.2%} | {p['fold_s']} |")
    lines += ["", "raw/pipeline ≥ 0.9 means tokenization, database reads and index writes add under 10% to the "
              "encoder's own time (raw encoder time: the same encoder calls for a sample of the records, timed before and after the build, scaled to all records of each kind).",
              "", "### FAISS and BM25 parts alone (synthetic clustered vectors, demo token lists)", "",
              "| records | dense index | dense build s | dense peak bytes/record | BM25 build s | BM25 peak bytes/record |",
              "|---|---|---|---|---|---|"]
    for p in parts:
        lines.append(f"| {p['records']} | {p['dense_kind']} | {p['dense_build_s']} | {p['dense_peak_bytes_per_record']} | "
                     f"{p['lexical_build_s']} | {p['lexical_peak_bytes_per_record']} |")
    return "\n".join(lines) + "\n"


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.build", description=__doc__)
    parser.add_argument("--sizes", default="1000", help="records for the pipeline benchmark")
    parser.add_argument("--scale", default="100000", help="records for the FAISS/BM25 parts")
    parser.add_argument("--raw-sample", type=int, default=300)
    parser.add_argument("--write", action="store_true", help="write into docs/benchmarks.md")
    parser.add_argument("--json-out", type=Path, help="also save the raw results as JSON here")
    args = parser.parse_args()
    pipeline = [bench_pipeline(int(n), args.raw_sample) for n in args.sizes.split(",") if n]
    parts = [bench_parts(int(n)) for n in args.scale.split(",") if n]
    command = (f"python -m benchmarks.build --sizes {args.sizes} --scale {args.scale} "
               f"--raw-sample {args.raw_sample}")
    text = render(pipeline, parts, command)
    print(text)
    results = {"command": command, "pipeline": pipeline, "parts": parts}
    print(json.dumps(results, ensure_ascii=False))
    if args.json_out:
        args.json_out.write_text(json.dumps(results, ensure_ascii=False, indent=1), encoding="utf-8")
    if args.write:
        from service.cli.evaluation import replace_section

        replace_section(Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md", SECTION, text)


if __name__ == "__main__":
    main()
