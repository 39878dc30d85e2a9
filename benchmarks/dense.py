"""Benchmark the dense index backends on embedding-shaped data (a script, not imported).

Real vectors: a few thousand Chinese texts (CSL titles, abstracts and abstract sentences)
encoded with the real multilingual-e5-small model, cached as .npy under /tmp. Large sets
are those real vectors plus small Gaussian perturbations drawn from the real vectors'
own covariance (so they stay on the data's "cone", not uniform on the sphere), then
renormalised. The perturbation scale is calibrated so the nearest-neighbour cosine of
a 1e5 synthetic set matches that of the real vectors. Queries are perturbations of
held-out real vectors whose bases are not in the corpus. Caveat: with ~2.8k bases a
1M set is ~360 near-copies per base, denser near-duplicate clusters than a real corpus;
that favours IVF (a cluster sits in one cell) over HNSW (a graph walk through it).

Candidates: every kind in indexer.retrieval.dense plus "hnsw" (HNSWCandidate below). For each:
build time, bytes/vector (saved size ~= memory for these index types), recall@10 vs
exact, single-query latency (wall and the calling thread's CPU time, which a busy
host distorts less), the same with a random 10% allowed-id filter, and optionally
(--crossover) the numpy-exact vs FAISS-selector filter paths at given allowed sizes.

Example (nice: the machine is shared; runs of ~10 min each):
  nice -n 10 .venv/bin/python -m benchmarks.dense \
      --texts /work/shared/benchmarks/csl/ts_dev.tsv --sizes 100000 --out /tmp/b.md
"""

from __future__ import annotations

import argparse
import gc
import re
import sys
import threading
import time
from pathlib import Path

import faiss
import numpy as np

from indexer.retrieval import dense
from indexer.retrieval.dense import DenseIndex, create_dense_index

DIM = 384
CACHE = Path("/tmp/scenematch-bench")


class HNSWCandidate(DenseIndex):
    """IndexHNSWFlat behind the DenseIndex interface: measured here, not shipped in
    indexer.retrieval.dense (it lost to IVF on recall at 1M, build time, and cannot delete)."""

    kind = "hnsw"

    def __init__(self, dim, m=32, ef_construction=80, ef_search=128, max_ef_search=2048, **kw):
        super().__init__(dim, m=m, ef_construction=ef_construction, ef_search=ef_search,
                         max_ef_search=max_ef_search, **kw)

    def _new_index(self, vectors):
        index = faiss.IndexHNSWFlat(self.dim, self.config["m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.config["ef_construction"]
        return index

    def _matrix(self):
        storage = faiss.downcast_index(self._index.storage)
        return faiss.rev_swig_ptr(storage.get_xb(), storage.ntotal * self.dim).reshape(-1, self.dim)

    def _search_faiss(self, q, k, sel, frac):
        # FAISS walks the graph as if unfiltered and keeps only passing nodes, so widen ef by 1/frac
        ef = min(max(self.config["ef_search"], k) / frac, max(self.config["max_ef_search"], k))
        return self._index.search(q, k, params=faiss.SearchParametersHNSW(efSearch=int(ef), sel=sel))


dense.KINDS.setdefault("hnsw", HNSWCandidate)


def log(*args):
    print(f"[{time.strftime('%H:%M:%S')}]", *args, file=sys.stderr, flush=True)


def normalise(x):
    x /= np.linalg.norm(x, axis=1, keepdims=True)
    return x


def read_texts(tsv: Path, limit: int) -> list[str]:
    """Titles, abstracts and abstract sentences: varied lengths, like needs/capabilities."""
    texts = []
    for line in tsv.read_text(encoding="utf-8").splitlines()[1:]:
        parts = line.split("\t")
        if len(parts) < 3:
            continue
        abstract, title = parts[1].strip(), parts[2].strip()
        texts += [title, abstract]
        texts += [s for s in re.split(r"[。；;!?！？]", abstract) if len(s.strip()) >= 12]
    uniq = list(dict.fromkeys(t.strip() for t in texts if t.strip()))
    rng = np.random.default_rng(0)
    return [uniq[i] for i in rng.permutation(len(uniq))[:limit]]


def real_vectors(args) -> np.ndarray:
    path = Path(args.base_npy) if args.base_npy else CACHE / f"csl_e5_{args.max_texts}.npy"
    if path.exists():
        return np.load(path)
    if not args.texts:
        sys.exit(f"no cached vectors at {path}: pass --texts TSV to encode them")
    from models.embedding_model import default_cache_dir, ensure_default_model
    from sentence_transformers import SentenceTransformer

    folder = ensure_default_model(default_cache_dir(), progress=True)
    texts = read_texts(Path(args.texts), args.max_texts)
    log(f"encoding {len(texts)} texts with {folder}")
    model = SentenceTransformer(str(folder), device="cpu")
    model.max_seq_length = 256  # abstracts fit; keeps CPU encoding to a few minutes
    vecs = model.encode(texts, batch_size=32, prompt="passage: ", normalize_embeddings=True,
                        convert_to_numpy=True, show_progress_bar=False).astype(np.float32)
    path.parent.mkdir(parents=True, exist_ok=True)
    np.save(path, vecs)
    return vecs


class Perturber:
    """x = normalise(base + sigma * noise), noise ~ N(0, cov(real)) scaled to E|noise|^2 = 1."""

    def __init__(self, real: np.ndarray):
        centred = real - real.mean(axis=0)
        _, s, vt = np.linalg.svd(centred, full_matrices=False)
        scale = s / np.sqrt(len(real))
        self.proj = (scale[:, None] * vt / np.sqrt((scale ** 2).sum())).astype(np.float32)

    def __call__(self, bases, sigma, rng, chunk=200_000):
        out = np.empty_like(bases)
        for i in range(0, len(bases), chunk):
            g = rng.standard_normal((min(chunk, len(bases) - i), self.proj.shape[0]), np.float32)
            out[i:i + len(g)] = bases[i:i + len(g)] + sigma * (g @ self.proj)
        return normalise(out)


def exact_topk(x, q, k, keep=None, chunk=250_000):
    """Exact top-k rows by inner product (optionally among rows where keep is true)."""
    best_s = np.full((len(q), k), -np.inf, np.float32)
    best_i = np.full((len(q), k), -1, np.int64)
    for start in range(0, len(x), chunk):
        sims = q @ x[start:start + chunk].T
        if keep is not None:
            sims[:, ~keep[start:start + chunk]] = -np.inf
        s = np.concatenate([best_s, sims], axis=1)
        i = np.concatenate([best_i, np.arange(start, start + sims.shape[1])[None].repeat(len(q), 0)], axis=1)
        top = np.argpartition(-s, k - 1, axis=1)[:, :k]
        best_s, best_i = np.take_along_axis(s, top, 1), np.take_along_axis(i, top, 1)
    order = np.argsort(-best_s, axis=1)
    return np.take_along_axis(best_s, order, 1), np.take_along_axis(best_i, order, 1)


def nn_cos(x, probes, exclude_self=False):
    s = exact_topk(x, probes, 2)[0]
    return s[:, 1] if exclude_self else s[:, 0]


def pct(v):
    return "/".join(f"{np.percentile(v, p):.3f}" for p in (10, 50, 90))


def calibrate(perturb, bases, target_median, rng):
    """Bisect sigma so the median NN cosine of a 1e5 synthetic set matches real data."""
    lo, hi = 0.0, 1.0
    for _ in range(10):
        sigma = (lo + hi) / 2
        x = perturb(bases[rng.integers(0, len(bases), 100_000)], sigma, np.random.default_rng(1))
        med = np.median(nn_cos(x, x[:300], exclude_self=True))
        lo, hi = (sigma, hi) if med > target_median else (lo, sigma)
    return (lo + hi) / 2


def recall(got, ref):
    return float(np.mean([len(set(a[a >= 0]) & set(b[b >= 0])) / max((b >= 0).sum(), 1)
                          for a, b in zip(got, ref)]))


def latencies(index, q, k, **filt):
    """Wall p50/p95 ms of one query per call, and the calling thread's CPU p50 ms: with
    one omp thread all work is on this thread, so CPU time is robust to a busy host."""
    wall, cpu = [], []
    for row in q:
        t, c = time.perf_counter(), time.thread_time()
        index.search(row[None], k, **filt)
        wall.append(time.perf_counter() - t)
        cpu.append(time.thread_time() - c)
    wall, cpu = np.array(wall) * 1000, np.array(cpu) * 1000
    return np.percentile(wall, 50), np.percentile(wall, 95), np.percentile(cpu, 50)


def qps_two_threads(index, q, k):
    """Throughput of two Python threads issuing single queries (the service's shape)."""
    def run(part):
        for row in part:
            index.search(row[None], k)
    threads = [threading.Thread(target=run, args=(q[i::2],)) for i in range(2)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return len(q) / (time.perf_counter() - t)


def dir_bytes(path: Path):
    return sum(f.stat().st_size for f in path.iterdir())


def parse_configs(spec: str):
    """'flat;ivf:nprobe=32;hnsw:m=32' -> [(label, kind, params)]."""
    out = []
    for item in filter(None, spec.split(";")):
        kind, _, rest = item.partition(":")
        params = {}
        for kv in filter(None, rest.split(",")):
            key, value = kv.split("=")
            params[key] = int(value) if value.lstrip("-").isdigit() else value
        out.append((item, kind, params))
    return out


def bench_config(label, kind, params, x, ids, q, truth, ftruth, allowed, sweep, k, crossover):
    rows, cross = [], []
    t = time.perf_counter()
    index = create_dense_index(len(x), DIM, kind=kind, **params)
    index.build(x, ids)  # FAISS uses both cores here (the calling thread's default)
    build_s = time.perf_counter() - t
    path = CACHE / "index-tmp"
    index.save(path)  # in-memory size of these index types ~= their serialised size
    size = dir_bytes(path) / len(x)
    for f in path.iterdir():
        f.unlink()
    log(f"{label}: built in {build_s:.1f}s, {size:.0f} B/vector")
    key = {"hnsw": "ef_search", "ivf": "nprobe"}.get(kind)
    default = index.config.get(key)
    for value in (sweep.get(kind) if key else None) or [default]:
        if key:
            index.config[key] = value
        r = recall(index.search(q, k)[1], truth)
        p50, p95, cpu = latencies(index, q, k)
        qps = qps_two_threads(index, q, k)
        index.search_threads = 2
        p50_2 = latencies(index, q, k)[0]
        index.search_threads = 1
        fr = recall(index.search(q, k, allowed_ids=allowed)[1], ftruth)
        f50, f95, fcpu = latencies(index, q, k, allowed_ids=allowed)
        shown = label + (f" {key}={value}" if key else "")
        rows.append(dict(cfg=shown, build=build_s, size=size, recall=r, p50=p50, p95=p95, cpu=cpu,
                         p50_2=p50_2, qps=qps, frecall=fr, f50=f50, f95=f95, fcpu=fcpu))
        log(rows[-1])
    if key:
        index.config[key] = default
    rng = np.random.default_rng(3)
    for count in crossover if kind != "flat" else []:
        keep = np.zeros(len(x), bool)
        keep[rng.choice(len(x), count, replace=False)] = True
        ref = exact_topk(x, q, k, keep=keep)[1]
        row = {"cfg": label, "count": count}
        for path_name, limit in (("numpy", 1 << 62), ("faiss", 0)):
            index.exact_filter_limit = limit
            lat = latencies(index, q, k, allowed_ids=ids[keep])
            row[path_name] = (recall(index.search(q, k, allowed_ids=ids[keep])[1], ref), lat[0], lat[2])
        cross.append(row)
        log(row)
    del index
    gc.collect()
    return rows, cross


def main(argv=None):
    ap = argparse.ArgumentParser(prog="python -m benchmarks.dense",
                                 description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--texts", help="CSL-style TSV (to title, abstract, title) to encode")
    ap.add_argument("--base-npy", help="use these real vectors instead of encoding texts")
    ap.add_argument("--max-texts", type=int, default=6000)
    ap.add_argument("--sizes", default="100000,1000000")
    ap.add_argument("--configs", default="flat;ivf;hnsw",
                    help="';'-separated kind[:key=value,...] to build at every size")
    ap.add_argument("--ef-search", default="32,64,128", help="HNSW efSearch values to sweep")
    ap.add_argument("--nprobe", default="16,32,64", help="IVF nprobe values to sweep")
    ap.add_argument("--queries", type=int, default=300)
    ap.add_argument("--k", type=int, default=10)
    ap.add_argument("--filter-fraction", type=float, default=0.10)
    ap.add_argument("--crossover", default="",
                    help="allowed-set sizes at which to compare the numpy and FAISS filter paths")
    ap.add_argument("--sigma", type=float, help="perturbation scale (default: calibrated)")
    ap.add_argument("--flat-p50", type=float, help="flat wall p50 ms from another run (speedup column)")
    ap.add_argument("--flat-cpu", type=float, help="flat CPU p50 ms from another run (speedup column)")
    ap.add_argument("--out", help="write the Markdown report here instead of stdout")
    args = ap.parse_args(argv)

    real = real_vectors(args)
    rng = np.random.default_rng(42)
    perm = rng.permutation(len(real))
    held, bases = real[perm[: args.queries]], real[perm[args.queries:]]
    perturb = Perturber(bases)
    real_nn = nn_cos(bases, bases, exclude_self=True)
    held_nn = nn_cos(bases, held)
    sigma = args.sigma if args.sigma is not None else calibrate(perturb, bases, np.median(real_nn), rng)
    log(f"{len(real)} real vectors, sigma={sigma:.4f}")
    sweep = {"hnsw": [int(v) for v in args.ef_search.split(",") if v],
             "ivf": [int(v) for v in args.nprobe.split(",") if v]}

    lines = ["# Dense index benchmark", "",
             f"- real vectors: {len(real)} CSL texts encoded with multilingual-e5-small "
             f"({len(bases)} bases, {len(held)} held out for queries)",
             f"- perturbation sigma = {sigma:.4f} (noise ~ N(0, cov(real)), |noise|~1, then renormalised)",
             f"- NN cosine p10/p50/p90, real bases among themselves: {pct(real_nn)}; "
             f"held-out real -> bases: {pct(held_nn)}",
             f"- random-pair cosine p50, real: {np.median(np.sum(bases[:2000] * bases[-2000:], 1)):.3f}",
             f"- k={args.k}, {args.queries} queries, filter = random {args.filter_fraction:.0%} "
             "of ids allowed; latency = one query per call, omp threads=1 unless noted",
             f"- faiss {faiss.__version__}, {faiss.omp_get_max_threads()} omp threads max", ""]
    table = ["| n | config | build s | bytes/vec | recall@10 | p50 ms | p95 ms | CPU p50 ms "
             "| p50 ms (2 omp) | QPS 2 threads | filt recall@10 | filt p50 ms | filt p95 ms "
             "| filt CPU p50 ms | speedup vs flat (wall / CPU p50) |", "|" + "---|" * 15]
    ctable = ["| n | config | allowed | numpy recall@10 | numpy p50 ms | numpy CPU p50 ms "
              "| faiss recall@10 | faiss p50 ms | faiss CPU p50 ms |", "|" + "---|" * 9]
    crossover = [int(c) for c in args.crossover.split(",") if c]
    for n in [int(s) for s in args.sizes.split(",") if s]:
        data_rng = np.random.default_rng(n)
        x = perturb(bases[data_rng.integers(0, len(bases), n)], sigma, data_rng)
        q = perturb(held.copy(), sigma, np.random.default_rng(7))
        ids = np.arange(n, dtype=np.int64)
        syn_nn = nn_cos(x, x[:300], exclude_self=True)
        q_nn = nn_cos(x, q)
        allowed_mask = data_rng.random(n) < args.filter_fraction
        truth = exact_topk(x, q, args.k)[1]
        ftruth = ids[exact_topk(x, q, args.k, keep=allowed_mask)[1]]
        lines.append(f"- n={n}: NN cosine p10/p50/p90 corpus->corpus {pct(syn_nn)}, "
                     f"query->corpus {pct(q_nn)}")
        flat_p50, flat_cpu = args.flat_p50, args.flat_cpu
        log(lines[-1])
        for label, kind, params in parse_configs(args.configs):
            rows, cross = bench_config(label, kind, params, x, ids, q, truth, ftruth,
                                       ids[allowed_mask], sweep, args.k, crossover)
            ctable += [f"| {n:,} | {c['cfg']} | {c['count']:,} | {c['numpy'][0]:.3f} | {c['numpy'][1]:.2f} "
                       f"| {c['numpy'][2]:.2f} | {c['faiss'][0]:.3f} | {c['faiss'][1]:.2f} "
                       f"| {c['faiss'][2]:.2f} |" for c in cross]
            for row in rows:
                if kind == "flat":
                    flat_p50, flat_cpu = row["p50"], row["cpu"]
                speed = (f"{flat_p50 / row['p50']:.0f}x / {flat_cpu / row['cpu']:.0f}x"
                         if flat_p50 and flat_cpu else "-")
                table.append(
                    f"| {n:,} | {row['cfg']} | {row['build']:.1f} | {row['size']:.0f} "
                    f"| {row['recall']:.3f} | {row['p50']:.2f} | {row['p95']:.2f} | {row['cpu']:.2f} "
                    f"| {row['p50_2']:.2f} | {row['qps']:.0f} | {row['frecall']:.3f} | {row['f50']:.2f} "
                    f"| {row['f95']:.2f} | {row['fcpu']:.2f} | {speed} |")
        del x
        gc.collect()
    report = "\n".join(lines + [""] + table + ([""] + ctable if crossover else [])) + "\n"
    if args.out:
        Path(args.out).write_text(report, encoding="utf-8")
    else:
        sys.stdout.write(report)


if __name__ == "__main__":
    main()
