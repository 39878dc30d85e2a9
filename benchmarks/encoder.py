"""Encoder variants and the full reindex against a plain sentence-transformers encode.

    nice .venv/bin/python -m benchmarks.encoder --csl /work/shared/benchmarks/csl/ts_dev.tsv --write

1. Variants: the same CSL dev title + abstract texts (passage role, length-sorted, each encoder at
   its own batch: 32 for sentence-transformers, 4 for ONNX Runtime) through a plain fp32
   sentence-transformers `encode` (the yardstick), the service's torch encoder and the ONNX Runtime
   encoders (fp32, int8 dynamic per channel): texts/s, one query (a title in the
   query role, p50), cosine agreement of each text's vector with the plain one.
2. Reindex: per backend, 300 fresh records (CSL dev title + abstract as capabilities, records the
   variants did not use) stored in a fresh SQLite database and fully indexed with a cold embedding
   cache, against the plain encoder's texts/s on the same 300 texts timed just before and after.
   ≥ 1.0× means a whole record (passages, whole-text vector, tokens, index files) costs no more
   than one plain encode of its text.
3. Realistic build: per backend, the realistic corpus indexed from a cold cache, and the
   platform's 58k records (20,471 needs, 37,721 capabilities) estimated from it.
--write replaces the "## Encoder" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path
from typing import Any

# As `scenematch serve` sets it (docs/reliability.md), for torch here and in the yardstick alike:
# busy-waiting OpenMP threads make torch many times slower when other processes share the cores.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

SECTION = "## Encoder"
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"


def plain_model(folder: Path) -> Any:
    from sentence_transformers import SentenceTransformer

    return SentenceTransformer(str(folder), device="cpu")


def plain_encode(model: Any, texts: list[str]) -> np.ndarray:
    """What anyone would run: sentence-transformers' own encode (it sorts by length), fp32."""
    return model.encode(texts, batch_size=32, prompt="passage: ", normalize_embeddings=True,
                        convert_to_numpy=True, show_progress_bar=False)


def timed(fn: Any, *args: Any) -> tuple[Any, float]:
    t0 = time.perf_counter()
    out = fn(*args)
    return out, time.perf_counter() - t0


def query_ms(encode_one: Any, queries: list[str]) -> float:
    encode_one(queries[0])  # warm-up
    times = []
    for q in queries:
        t0 = time.perf_counter()
        encode_one(q)
        times.append((time.perf_counter() - t0) * 1000)
    return float(np.median(times))


def encoders(folder: Path, backends: list[str]) -> dict[str, Any]:
    from indexer.retrieval.embedding import SentenceTransformerEncoder, load_encoder

    out: dict[str, Any] = {}
    for backend in backends:
        out[backend] = SentenceTransformerEncoder(folder) if backend == "torch" else load_encoder(str(folder), folder.parent, backend)
    return out


def variants(folder: Path, texts: list[str], queries: list[str], backends: list[str]) -> list[dict[str, Any]]:
    model = plain_model(folder)
    plain_encode(model, texts[:8])  # warm-up
    reference, seconds = timed(plain_encode, model, texts)
    rows = [{"variant": "plain sentence-transformers fp32", "texts_per_s": len(texts) / seconds,
             "query_ms": query_ms(lambda q: model.encode([q], prompt="query: ", normalize_embeddings=True), queries),
             "cos_mean": 1.0, "cos_min": 1.0}]
    print(rows[-1], flush=True)
    for backend, enc in encoders(folder, backends).items():
        enc.encode_passages(texts[:8])
        vecs, seconds = timed(enc.encode_passages, texts)
        cos = np.sum(vecs * reference, axis=1)
        rows.append({"variant": f"{backend} ({enc.name.split('@')[-1]})", "texts_per_s": len(texts) / seconds,
                     "query_ms": query_ms(lambda q, e=enc: e.encode_queries([q]), queries),
                     "cos_mean": float(cos.mean()), "cos_min": float(cos.min())})
        print(rows[-1], flush=True)
    return rows


def warm_fixed_costs(tmp: Path, raw: Any, taxonomy: Any, codes: list[str]) -> float:
    """Embed what a running service has before any reindex, through a cache of its own so that the
    build's cache stays cold: the domain prototypes (about 240 short texts) and the classifier's
    reference examples (the 2,062 seed records). Both are a one-off cost per encoder, not per record.
    Returns their seconds."""
    from indexer.retrieval.classify import prototype_vectors
    from indexer.retrieval.embedding import CachedEncoder, EmbeddingCache
    from indexer.retrieval.reference import REFERENCE

    warm = CachedEncoder(raw, EmbeddingCache(tmp / "fixed-cache.sqlite"))
    t0 = time.perf_counter()
    prototype_vectors(warm, taxonomy)
    REFERENCE.labelled(warm, codes)
    return time.perf_counter() - t0


def cold_engine(tmp: Path, raw: Any, records: dict[str, list[dict[str, Any]]]) -> tuple[Any, float]:
    """A real engine over a fresh SQLite database holding `records` (kind -> rows), with an empty
    embedding cache of its own, so every record's text is encoded; and the seconds of the one-off
    embeddings a running service already holds (warm_fixed_costs)."""
    from indexer.retrieval.embedding import CachedEncoder, EmbeddingCache
    from indexer.retrieval.engine import SearchEngine
    from indexer.retrieval.text import get_tokenizer
    from models import repository
    from models.database import session_scope
    from service.app import init_state
    from service.settings import Settings

    state = init_state(Settings(data_dir=tmp / "data", load_demo=False, build_index_on_start=False))
    with session_scope(state.sessions) as session:
        for kind, rows in records.items():
            for row in rows:
                data = dict(row)
                repository.upsert(session, kind, data.pop("id"), data)
    codes = list(state.taxonomy.domains)
    fixed_s = warm_fixed_costs(tmp, raw, state.taxonomy, codes)
    encoder = CachedEncoder(raw, EmbeddingCache(tmp / "cold-cache.sqlite"))
    return SearchEngine(state.settings.data_dir, state.sessions, encoder, get_tokenizer(), codes), fixed_s


def reindex(folder: Path, pairs: list[tuple[str, str]], backends: list[str]) -> list[dict[str, Any]]:
    model = plain_model(folder)
    texts = [f"{t}。{a}" for t, a in pairs]
    plain_encode(model, texts[:8])
    records = {"capability": [{"id": f"c{i}", "title": t[:200], "description": a} for i, (t, a) in enumerate(pairs)]}
    rows = []
    for backend, raw in encoders(folder, backends).items():
        with tempfile.TemporaryDirectory(prefix="bench-encoder-") as tmp:
            engine, fixed_s = cold_engine(Path(tmp), raw, records)
            _, before = timed(plain_encode, model, texts)
            _, build_s = timed(engine.rebuild)
            _, after = timed(plain_encode, model, texts)
            timings = engine.snapshot.manifest["timings"]
            engine.close()
        plain_rate = len(texts) / ((before + after) / 2)
        rate = len(pairs) / build_s
        rows.append({"backend": backend, "records": len(pairs), "build_s": build_s, "records_per_s": rate,
                     "plain_texts_per_s": plain_rate, "ratio": rate / plain_rate,
                     "texts_per_record": timings.get("capability_texts_encoded", 0) / len(pairs),
                     "encode_s": timings.get("capability_encode_s", 0.0), "fixed_s": fixed_s})
        print(rows[-1], flush=True)
    return rows


PLATFORM = {"need": 20_471, "capability": 37_721}  # records the platform publishes (issue 17)


def realistic_build(folder: Path, backends: list[str], fixed: dict[str, float]) -> list[dict[str, Any]]:
    """Cold full build of the realistic corpus (needs, capabilities, scenarios) per backend, and
    the platform's 58k records estimated from its per-kind encoder time plus the rest per record,
    plus the one-off embeddings once (`fixed`: their seconds per backend where measured earlier)."""
    import resource

    from benchmarks.cases import SEED, read_jsonl
    from service.demo import demo_scenarios
    from service.schemas import CapabilityBulkItem, NeedBulkItem

    records = {"need": [NeedBulkItem.model_validate(r).model_dump() for r in read_jsonl(SEED / "realistic" / "needs")],
               "capability": [CapabilityBulkItem.model_validate(r).model_dump()
                              for r in read_jsonl(SEED / "realistic" / "capabilities")],
               "scenario": demo_scenarios()}
    rows = []
    for backend, raw in encoders(folder, backends).items():
        with tempfile.TemporaryDirectory(prefix="bench-encoder-") as tmp:
            engine, fixed_s = cold_engine(Path(tmp), raw, records)
            _, build_s = timed(engine.rebuild)
            timings = engine.snapshot.manifest["timings"]
            engine.close()
        n = sum(len(v) for v in records.values())
        encode_s = sum(v for k, v in timings.items() if k.endswith("_encode_s"))
        other_per_record = (build_s - encode_s) / n
        per = {k: timings[f"{k}_encode_s"] / len(records[k]) for k in PLATFORM}
        fixed_s = max(fixed_s, fixed.get(backend, 0.0))  # warmed already when the reindex ran first
        estimate_s = fixed_s + sum(PLATFORM[k] * (per[k] + other_per_record) for k in PLATFORM)
        rows.append({"backend": backend, "records": n, "build_s": build_s, "records_per_s": n / build_s,
                     "texts_per_record": sum(v for k, v in timings.items() if k.endswith("texts_encoded")) / n,
                     "need_s": per["need"], "capability_s": per["capability"], "estimate_min": estimate_s / 60,
                     "fixed_s": fixed_s,
                     "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024})
        print(rows[-1], flush=True)
    return rows


def labelled_collections(csl: Path, csl_limit: int | None, tmp: Path) -> tuple[dict[str, Any], list[tuple[str, str, Any]]]:
    """Real engines on the realistic corpus stored without domains and on CSL dev (built with the encoder
    the environment's settings name), and their labelled queries: [(name, engine key, queries)], both
    directions of the realistic corpus."""
    from indexer.ranking import evaluation as ev
    from service.cli.evaluation import engine_with, seed_corpus, seed_corpus_engine

    _, _, labels = seed_corpus("realistic")
    needs, caps, csl_queries = ev.csl_records(ev.read_csl(csl, csl_limit))
    engines = {"realistic": seed_corpus_engine("realistic", tmp / "r", as_clients_send=True),
               "csl": engine_with((needs, caps), tmp / "c")}
    return engines, [("realistic need → capability", "realistic", ev.demo_queries(labels)),
                     ("realistic capability → need", "realistic", ev.demo_queries(labels, reverse=True)),
                     (f"CSL {csl.name} title → abstract", "csl", csl_queries)]


def paired_scores(engines: dict[str, Any], collections: list[tuple[str, str, Any]], model: Any,
                  base: dict[tuple[str, str], dict[str, float]], label: dict[str, Any]) -> list[dict[str, Any]]:
    """nDCG@10 of the dense signal and the shipped ranking on each collection, each paired against the
    per-query scores in `base` (the first call's, which it fills). Rows carry `label` and the source."""
    from indexer.ranking import evaluation as ev

    rows = []
    for name, source, queries in collections:
        runs = ev.runs_for(engines[source].snapshot, queries, model, systems=("dense", "shipped"))
        for system in ("dense", "shipped"):
            scores = ev.per_query(queries, runs[system])
            reference = base.setdefault((name, system), scores)
            rows.append({**label, "source": source, "collection": name, "system": system,
                         "ndcg": float(np.mean(list(scores.values()))),
                         "diff": None if reference is scores else ev.paired_difference(scores, reference)})
            print(rows[-1], flush=True)
    return rows


def quality(backends: list[str], csl: Path, csl_limit: int | None) -> list[dict[str, Any]]:
    """nDCG@10 of the dense signal and of the shipped ranking per serving backend: the realistic corpus
    stored without domains (both directions) and CSL dev, each backend paired against the first."""
    from indexer.ranking.hybrid import RankingModel

    model = RankingModel.load()
    base: dict[tuple[str, str], dict[str, float]] = {}  # the first backend's per-query scores
    rows = []
    configured = os.environ.get("SCENEMATCH_ENCODER_BACKEND")
    try:
        for backend in backends:
            os.environ["SCENEMATCH_ENCODER_BACKEND"] = backend  # what open_engine's Settings read
            with tempfile.TemporaryDirectory(prefix="bench-encoder-quality-") as tmp:
                engines, collections = labelled_collections(csl, csl_limit, Path(tmp))
                rows += paired_scores(engines, collections, model, base, {"backend": backend})
                for engine in engines.values():
                    engine.close()
    finally:
        if configured is None:
            os.environ.pop("SCENEMATCH_ENCODER_BACKEND", None)
        else:
            os.environ["SCENEMATCH_ENCODER_BACKEND"] = configured
    return rows


def csl_arguments(description: str) -> argparse.Namespace:
    """The command line of the quality-only scripts: the CSL dev file and how many of its pairs to use."""
    parser = argparse.ArgumentParser(description=description)
    parser.add_argument("--csl", type=Path, required=True, help="CSL title→abstract file (dev split)")
    parser.add_argument("--csl-limit", type=int, default=500)
    return parser.parse_args()


def paired_text(diff: dict[str, float] | None) -> str:
    """A paired difference as "+0.0012 [-0.0010, +0.0034]" (mean and 95% interval); "" for the reference."""
    return "" if diff is None else f"{diff['mean']:+.4f} [{diff['low']:+.4f}, {diff['high']:+.4f}]"


def table(header: list[str], rows: list[list[str]]) -> list[str]:
    return ["| " + " | ".join(header) + " |", "|" + "---|" * len(header), *("| " + " | ".join(r) + " |" for r in rows)]


def render(var_rows: list[dict[str, Any]], re_rows: list[dict[str, Any]], real_rows: list[dict[str, Any]],
           q_rows: list[dict[str, Any]], n_texts: int, command: str) -> str:
    load = os.getloadavg()[0]
    lines = [SECTION, "", f"Command: `{command}` (measured {time.strftime('%Y-%m-%d')}, 2 cores shared with other "
             f"work, load average {load:.1f} at the end).", "",
             f"Variants: {n_texts} CSL dev title + abstract texts, passage role, sorted by length, each encoder at its own "
             "batch (the plain one and torch 32, ONNX Runtime 4); one query "
             "= p50 of 30 titles in the query role, one at a time; cosine = agreement of each vector with the plain one.",
             ""]
    lines += table(["encoder", "texts/s", "one query ms", "cosine mean", "cosine min"],
                   [[r["variant"], f"{r['texts_per_s']:.2f}", f"{r['query_ms']:.1f}", f"{r['cos_mean']:.5f}",
                     f"{r['cos_min']:.5f}"] for r in var_rows])
    if q_rows:
        first = q_rows[0]["backend"]
        lines += ["", "Ranking quality per serving backend (nDCG@10; the realistic corpus stored without domains; "
                  f"in brackets the paired difference to {first} with its 95% bootstrap interval over queries):", ""]
        lines += table(["backend", "collection", "system", "nDCG@10", f"vs {first}"],
                       [[r["backend"], r["collection"], r["system"], f"{r['ndcg']:.4f}",
                         paired_text(r["diff"])]
                        for r in q_rows])
    lines += ["", "Full reindex of fresh records (CSL dev title + abstract as capabilities, cold embedding cache) "
              "against the plain encoder's texts/s on the same texts, timed just before and after the build. "
              "What a running service embeds once per encoder before any reindex (the domain prototypes and the "
              "classifier's 2,062 reference examples) is embedded before the clock starts, through a cache of "
              "its own, and shown apart:", ""]
    lines += table(["backend", "records", "build s", "records/s", "plain texts/s", "ratio (goal ≥ 1.0)",
                    "texts encoded per record", "one-off s (not in build)"],
                   [[r["backend"], str(r["records"]), f"{r['build_s']:.1f}", f"{r['records_per_s']:.2f}",
                     f"{r['plain_texts_per_s']:.2f}", f"{r['ratio']:.2f}×", f"{r['texts_per_record']:.2f}",
                     f"{r['fixed_s']:.1f}"] for r in re_rows])
    if real_rows:
        lines += ["", "Cold full build of the realistic corpus (data/seed/realistic needs and capabilities, the demo "
                  "scenarios), and the platform's 20,471 needs + 37,721 capabilities estimated from it (each kind's "
                  "encoder seconds per record, plus the rest of the build per record, plus the one-off embeddings "
                  "once):", ""]
        lines += table(["backend", "records", "build s", "records/s", "texts encoded per record", "s per need",
                        "s per capability", "58k estimate", "process peak RSS"],
                       [[r["backend"], str(r["records"]), f"{r['build_s']:.1f}", f"{r['records_per_s']:.2f}",
                         f"{r['texts_per_record']:.2f}", f"{r['need_s']:.3f}", f"{r['capability_s']:.3f}",
                         f"{r['estimate_min']:.0f} min", f"{r['peak_rss_mb']:.0f} MB"] for r in real_rows])
    return "\n".join(lines) + "\n"


def main() -> None:
    from indexer.ranking.evaluation import read_csl
    from models.embedding_model import default_cache_dir, ensure_default_model

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--csl", type=Path, required=True, help="CSL title→abstract file (dev split)")
    parser.add_argument("--texts", type=int, default=192, help="Texts for the variants")
    parser.add_argument("--records", type=int, default=300, help="Fresh records for the reindex")
    parser.add_argument("--backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--reindex-backends", default="torch,onnx,onnx-int8")
    parser.add_argument("--realistic-backends", default="onnx,onnx-int8", help="Cold realistic-corpus builds (empty: none)")
    parser.add_argument("--quality-backends", default="onnx,onnx-int8",
                        help="nDCG@10 per serving backend, the first the reference (empty: none)")
    parser.add_argument("--csl-limit", type=int, help="Only the first N CSL dev pairs for the quality part")
    parser.add_argument("--write", action="store_true", help=f"Replace the section in {DOCS.name}")
    args = parser.parse_args()
    folder = ensure_default_model(default_cache_dir())
    pairs = read_csl(args.csl)
    texts = [f"{t}。{a}" for t, a in pairs[:args.texts]]
    queries = [t for t, _ in pairs[:30]]
    var_rows = variants(folder, texts, queries, [b for b in args.backends.split(",") if b])
    fresh = pairs[len(pairs) - args.records:]
    re_rows = reindex(folder, fresh, [b for b in args.reindex_backends.split(",") if b])
    real_rows = realistic_build(folder, [b for b in args.realistic_backends.split(",") if b],
                                {r["backend"]: r["fixed_s"] for r in re_rows})
    q_rows = quality([b for b in args.quality_backends.split(",") if b], args.csl, args.csl_limit)
    command = (f"nice .venv/bin/python -m benchmarks.encoder --csl {args.csl} --texts {args.texts} "
               f"--records {args.records} --backends {args.backends} --reindex-backends {args.reindex_backends} "
               f"--realistic-backends {args.realistic_backends} --quality-backends {args.quality_backends}"
               + (f" --csl-limit {args.csl_limit}" if args.csl_limit else "") + " --write")
    text = render(var_rows, re_rows, real_rows, q_rows, len(texts), command)
    print(text)
    if args.write:
        from service.cli.evaluation import replace_section

        replace_section(DOCS, SECTION, text)


if __name__ == "__main__":
    main()
