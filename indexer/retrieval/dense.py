"""Dense vector indexes for scenematch: exact (Flat) and approximate (IVF) search.

Laid out like txtai's ``ann/`` package: one small class per FAISS backend behind the
``DenseIndex`` interface, chosen by ``create_dense_index``. Vectors are L2-normalised
384-d e5 embeddings, so inner product is cosine.

Every backend numbers its vectors by row (insertion order) inside FAISS and keeps the
external int64 record ids in its own id map (``ids.npy``, -1 marks a removed row). That
one convention lets every backend take filters as row bitmaps (cheap to build, O(1) to
test) and keep a row it cannot free at once as a tombstone. Figures quoted below come
from ``python -m benchmarks.dense`` on the 2-core host.
"""

from __future__ import annotations

import importlib
import json
import math
import threading
from pathlib import Path

import faiss
import numpy as np

#: An allowed set at most this large is scored exactly with numpy on its own vectors (IVF):
#: ~0.6 ms CPU per 1k allowed (a random-row gather; 1M: 6 ms at 10k, vs 2.4 ms for IVF's
#: filtered search at recall@10 0.994). Exact and bounded; above it FAISS wins clearly
#: (1M, 50k allowed: 33 ms vs 3.4 ms, recall@10 0.995).
EXACT_FILTER_LIMIT = 10_000

#: "auto" uses Flat below this many vectors: exact, no training, <= ~6 ms CPU per query
#: up to here; from here on IVF is >= 11x faster (CPU) at recall@10 >= 0.977.
FLAT_MAX = 50_000

_META, _INDEX, _IDS = "dense.json", "index.faiss", "ids.npy"


def _as_matrix(x, dim: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    x = x[None, :] if x.ndim == 1 else x
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {x.shape}")
    return x


def _as_ids(ids) -> np.ndarray:
    ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) and ids.min() < 0:
        raise ValueError("ids must be non-negative (-1 marks empty result slots)")
    return ids


def _as_batch(vectors, ids, dim):
    vectors, ids = _as_matrix(vectors, dim), _as_ids(ids)
    if len(vectors) != len(ids) or len(np.unique(ids)) != len(ids):
        raise ValueError("need one vector per id and no duplicate ids")
    return vectors, ids


class _Lookup:
    """id -> row map, rebuilt lazily after each mutation. Record ids are usually compact
    database keys: a direct table (if <= ~4x the rows) maps a 100k-id filter in <1 ms,
    against ~25 ms for searchsorted on the sorted array kept for sparse ids."""

    def __init__(self, ids: np.ndarray):
        self.alive = ids >= 0
        live = np.flatnonzero(self.alive)
        top = int(ids.max()) + 1 if len(live) else 1
        self.table = None
        if top <= 4 * len(ids) + 65_536:
            self.table = np.full(top, -1, np.int64)
            self.table[ids[live]] = live
        else:
            self.order = live[np.argsort(ids[live], kind="stable")]
            self.sorted = ids[self.order]

    def rows_of(self, ids: np.ndarray):
        if self.table is not None:
            rows = self.table[np.minimum(ids, len(self.table) - 1)]
            found = (rows >= 0) & (ids < len(self.table))
            return rows[found], found
        pos = np.minimum(np.searchsorted(self.sorted, ids), len(self.sorted) - 1)
        found = self.sorted[pos] == ids
        return self.order[pos[found]], found


class DenseIndex:
    """Base interface: external int64 ids, inner-product search, filters, persistence.

    Searches may run from several threads at once while nobody mutates the index;
    build/add/remove/compact must not overlap with searches (the service swaps whole
    index versions instead).
    """

    kind = "base"
    #: Whether allowed sets up to ``exact_filter_limit`` are scored on their own gathered
    #: vectors (an approximate index's way to stay exact under tight filters).
    gathers_small_filters = True

    def __init__(self, dim: int, exact_filter_limit: int = EXACT_FILTER_LIMIT,
                 compact_fraction: float = 0.25, search_threads: int = 1, **params):
        self.dim = int(dim)
        self.exact_filter_limit = int(exact_filter_limit)
        self.compact_fraction = float(compact_fraction)
        # OpenMP threads per search call. 1: one IVF/HNSW query gains nothing from a
        # second thread, and on a busy 2-core host a Flat query split over 2 threads
        # waits at the barrier (1M: 113 -> 608 ms). Request threads give concurrency.
        self.search_threads = int(search_threads)
        self.config = dict(params)
        self._index, self._ids, self._n_dead = None, np.empty(0, np.int64), 0
        self._lookup_cache, self._lock = None, threading.Lock()

    def _new_index(self, vectors: np.ndarray):
        raise NotImplementedError  # an empty FAISS index, trained on vectors if needed

    def _append(self, vectors: np.ndarray, start: int) -> None:
        self._index.add(vectors)  # FAISS numbers rows sequentially from ntotal == start

    def _delete_rows(self, rows: np.ndarray) -> None:
        self._ids[rows] = -1  # tombstone: masked at search time, dropped by compact()
        self._n_dead += len(rows)

    def _matrix(self) -> np.ndarray:
        raise NotImplementedError  # all stored rows, dead ones included, as (rows, dim)

    def _search_faiss(self, q: np.ndarray, k: int, sel, frac: float):
        """``frac``: share of live rows that ``sel`` lets through (ANN widens its search)."""
        return self._index.search(q, k, params=faiss.SearchParameters(sel=sel))

    def build(self, vectors, ids) -> None:
        """Replace the contents with ``vectors`` (n, dim) under external ``ids`` (n,)."""
        vectors, ids = _as_batch(vectors, ids, self.dim)
        self._ids, self._n_dead, self._lookup_cache = np.empty(0, np.int64), 0, None
        self._index = self._new_index(vectors) if len(ids) else None  # IVF cannot train on none
        if len(ids):
            self._append(vectors, 0)
        self._ids = ids.copy()

    def add(self, vectors, ids) -> None:
        """Add vectors; an id that is already present is replaced (upsert)."""
        vectors, ids = _as_batch(vectors, ids, self.dim)
        if self._index is None:
            return self.build(vectors, ids)
        if len(self):
            self.remove(ids)
        self._append(vectors, len(self._ids))
        self._ids = np.concatenate([self._ids, ids])
        self._lookup_cache = None

    def remove(self, ids) -> int:
        """Remove ids (unknown ids are ignored); returns how many were removed."""
        rows, _ = self._rows_of(_as_ids(ids))
        if len(rows):
            self._delete_rows(np.unique(rows))
            self._lookup_cache = None
            if self._n_dead > self.compact_fraction * max(len(self._ids), 1):
                self.compact()
        return len(rows)

    def compact(self) -> None:
        """Drop tombstoned rows by rebuilding from the live vectors."""
        if self._n_dead:
            alive = self._ids >= 0
            self._rebuild(self._matrix()[alive].copy(), self._ids[alive].copy())

    def _rebuild(self, vectors, ids) -> None:  # IVF overrides it to keep its trained cells
        self.build(vectors, ids)

    def search(self, queries, k: int, allowed_ids=None, excluded_ids=None, allowed_rows=None):
        """Top-k by inner product -> (scores (m,k) float32, ids (m,k) int64).

        Empty slots hold id -1 and score -inf. ``allowed_ids`` restricts results to
        those ids, ``excluded_ids`` removes ids (e.g. tombstones, already matched).
        ``allowed_rows``, instead of ``allowed_ids``: a boolean mask over the stored rows, for
        callers that numbered their vectors by row (a segment does) and have the mask at hand;
        it skips mapping ~n ids to rows (0.25 ms at 100k).
        """
        q = _as_matrix(queries, self.dim)
        # omp_set_num_threads is per calling thread in libgomp (FAISS's runtime), so
        # setting and restoring it here is safe with concurrent searches
        prev = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.search_threads)
        try:
            return self._search(q, int(k), allowed_ids, excluded_ids, allowed_rows)
        finally:
            faiss.omp_set_num_threads(prev)

    def _search(self, q, k, allowed_ids, excluded_ids, allowed_rows=None):
        scores, ids = np.full((len(q), k), -np.inf, np.float32), np.full((len(q), k), -1, np.int64)
        if k <= 0 or len(q) == 0 or len(self) == 0:
            return scores, ids
        excl = self._rows_of(_as_ids(excluded_ids))[0] if excluded_ids is not None else []
        mask = None
        if allowed_rows is not None:
            allowed_rows = np.asarray(allowed_rows, dtype=bool)
            if allowed_rows.shape != self._ids.shape:
                raise ValueError(f"allowed_rows has shape {allowed_rows.shape}, the index {len(self._ids)} rows")
            mask = allowed_rows & self._lookup().alive if self._n_dead else allowed_rows.copy()
        elif allowed_ids is not None:
            rows = self._rows_of(_as_ids(allowed_ids))[0]
            # small: sort/dedupe beats an O(n) mask
            if self.gathers_small_filters and len(rows) <= self.exact_filter_limit:
                rows = np.unique(rows)
                rows = rows[~np.isin(rows, excl)] if len(excl) else rows
                return self._search_rows(q, k, rows, scores, ids)
            mask = np.zeros(len(self._ids), bool)
            mask[rows] = True
        elif self._n_dead or len(excl):
            mask = self._lookup().alive.copy()
        bitmap, frac = None, 1.0
        if mask is not None:
            mask[excl] = False
            count = int(np.count_nonzero(mask))
            if self.gathers_small_filters and count <= self.exact_filter_limit:
                return self._search_rows(q, k, np.flatnonzero(mask), scores, ids)
            bitmap = np.packbits(mask, bitorder="little")  # FAISS IDSelectorBitmap layout
            frac = count / len(self)
        # the selector holds a raw pointer into `bitmap`, which stays referenced here
        sel = None if bitmap is None else faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        dist, rows = self._search_faiss(q, k, sel, frac)
        found = rows >= 0
        scores[found], ids[found] = dist[found], self._ids[rows[found]]
        return scores, ids

    def _search_rows(self, q, k, rows, scores, ids):
        """Exact scores against a (small) set of rows, straight from the stored vectors."""
        if len(rows) == 0:
            return scores, ids
        vecs = self._matrix()[rows]
        # einsum for a few queries: numpy's multithreaded BLAS GEMV is ~3x slower on a
        # busy 2-core host (its idle thread wakes on scheduler ticks)
        sims = np.einsum("md,nd->mn", q, vecs) if len(q) <= 8 else q @ vecs.T
        kk = min(k, len(rows))
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        top_s = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_s, axis=1, kind="stable")
        scores[:, :kk] = np.take_along_axis(top_s, order, axis=1)
        ids[:, :kk] = self._ids[rows[np.take_along_axis(top, order, axis=1)]]
        return scores, ids

    def reconstruct(self, ids) -> np.ndarray:
        """Stored vectors of ``ids`` (in that order); KeyError for unknown ids."""
        ids = _as_ids(ids)
        rows, found = self._rows_of(ids)
        if not found.all():
            raise KeyError(f"unknown ids: {ids[~found][:10].tolist()}")
        return self._matrix()[rows].copy()

    def __contains__(self, id_) -> bool:
        return bool(self._rows_of(_as_ids([id_]))[1][0])

    def __len__(self) -> int:
        return len(self._ids) - self._n_dead

    def ids(self) -> np.ndarray:  # live external ids, in row order
        return self._ids[self._ids >= 0].copy()

    def params(self) -> dict:
        """Type and parameters, for the version manifest."""
        return {"type": self.kind, "dim": self.dim, **self.config}

    def serve_as(self, name: str) -> None:
        """This index now serves the segment `name` of the active version (Milvus points an
        alias at it); in-process indexes have nobody to tell."""

    def _lookup(self) -> _Lookup:
        if self._lookup_cache is None:
            with self._lock:  # concurrent first searches after a mutation build it once
                if self._lookup_cache is None:
                    self._lookup_cache = _Lookup(self._ids)
        return self._lookup_cache

    def _rows_of(self, ids: np.ndarray):  # rows of the live ids, and which ids were found
        return self._lookup().rows_of(ids)

    def save(self, path_dir) -> None:
        """Write index.faiss, ids.npy (row -> id) and dense.json into ``path_dir``."""
        path = Path(path_dir)
        path.mkdir(parents=True, exist_ok=True)
        if self._index is not None:
            faiss.write_index(self._index, str(path / _INDEX))
        np.save(path / _IDS, self._ids)
        self._save_extra(path)
        meta = {"params": self.params(), "exact_filter_limit": self.exact_filter_limit,
                "compact_fraction": self.compact_fraction}
        (path / _META).write_text(json.dumps(meta, indent=2))

    @classmethod
    def load(cls, path_dir) -> "DenseIndex":
        """Load any backend saved by ``save`` (the class is read from dense.json)."""
        path = Path(path_dir)
        meta = json.loads((path / _META).read_text())
        params = dict(meta["params"])
        kind, dim = params.pop("type"), params.pop("dim")
        obj = index_class(kind)(dim, exact_filter_limit=meta["exact_filter_limit"],
                          compact_fraction=meta["compact_fraction"], **params)
        if (path / _INDEX).exists():
            obj._index = faiss.read_index(str(path / _INDEX))
        obj._ids = np.load(path / _IDS)
        obj._n_dead = int((obj._ids < 0).sum())
        obj._load_extra(path)
        return obj

    def _save_extra(self, path: Path) -> None:  # backends with more state extend these
        pass

    _load_extra = _save_extra


class FlatIndex(DenseIndex):
    """Exact search over all vectors (IndexFlatIP); "auto" below FLAT_MAX.

    Plain IndexFlatIP rather than IndexIDMap2: the id map lives beside it as for the
    other backends, so filters stay row bitmaps. Removal compacts rows at once.
    """

    kind = "flat"
    # Exact already: its bitmap search costs at most an unfiltered one, where copying the
    # allowed vectors out first cost 10x that (10k rows, 99% allowed: 0.36 vs 3.4 ms).
    gathers_small_filters = False

    def _new_index(self, vectors):
        return faiss.IndexFlatIP(self.dim)

    def _matrix(self):  # zero-copy view of FAISS's own storage, valid until it changes
        n = self._index.ntotal if self._index is not None else 0
        if n == 0:
            return np.empty((0, self.dim), np.float32)
        return faiss.rev_swig_ptr(self._index.get_xb(), n * self.dim).reshape(n, self.dim)

    def _delete_rows(self, rows):
        self._index.remove_ids(faiss.IDSelectorBatch(rows))  # keeps the order of the rest
        self._ids = np.delete(self._ids, rows)


class IVFIndex(DenseIndex):
    """Inverted lists over k-means cells (IndexIVFScalarQuantizer); "auto" above FLAT_MAX.

    Lists hold 8-bit codes; the top ``k * rerank`` hits are re-scored exactly from a
    plain float32 matrix kept beside (``vectors.npy``, also used by reconstruct and the
    small-filter path): 1.94 kB per vector against 3.1 kB for IVFFlat plus that matrix,
    with the same recall.
    nlist = 4*sqrt(n) cells fitted at ``build`` (on <= 40 vectors per cell, 10 k-means
    iterations: 3 min at 1M on 2 shared cores); later adds reuse them, so rebuild after
    the corpus has grown several-fold. nprobe=96 gave recall@10 0.977 / 0.979 / 0.995 at
    5e4 / 1e5 / 1e6 for 0.5 / 0.7 / 1.75 ms CPU (exact: 6.3 / 7.3 / 56 ms). Chosen over
    HNSW, which cannot delete, built 2x slower at 1M and, on near-duplicate clusters
    there, reached only recall@10 0.85 at efSearch=192 (M=16): a cell scan beats a walk.
    """

    kind = "ivf"

    def __init__(self, dim, nlist: int | None = None, nprobe: int = 96, rerank: int = 4,
                 train_per_list: int = 40, filter_exponent: float = 0.5, **kw):
        super().__init__(dim, nlist=nlist, nprobe=int(nprobe), rerank=int(rerank),
                         train_per_list=int(train_per_list), filter_exponent=float(filter_exponent), **kw)
        self._store, self._rows = np.empty((0, self.dim), np.float32), 0

    def _new_index(self, vectors):
        n = len(vectors)
        nlist = self.config["nlist"] or int(4 * math.sqrt(n))
        nlist = max(1, min(nlist, n // 39))  # FAISS wants >= 39 training points per cell
        self.config["nlist"] = nlist
        index = faiss.IndexIVFScalarQuantizer(faiss.IndexFlatIP(self.dim), self.dim, nlist,
                                              faiss.ScalarQuantizer.QT_8bit, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10  # cells only route queries; precise centroids buy little
        n_train = min(n, self.config["train_per_list"] * nlist)
        index.train(vectors[np.random.default_rng(0).choice(n, n_train, replace=False)] if n_train < n else vectors)
        self._store, self._rows = np.empty((0, self.dim), np.float32), 0
        return index

    def _append(self, vectors, start):
        self._index.add_with_ids(vectors, np.arange(start, start + len(vectors), dtype=np.int64))
        end = start + len(vectors)
        if end > len(self._store):  # amortised growth, like a list
            grown = np.empty((max(end, int(len(self._store) * 1.5)), self.dim), np.float32)
            grown[:start] = self._store[:start]
            self._store = grown
        self._store[start:end] = vectors
        self._rows = end

    def _delete_rows(self, rows):
        self._index.remove_ids(faiss.IDSelectorBatch(rows))  # probes skip them from now on
        super()._delete_rows(rows)

    def _rebuild(self, vectors, ids):
        self._index.reset()  # keep the trained cells
        self._store, self._rows = np.empty((0, self.dim), np.float32), 0
        self._ids, self._n_dead, self._lookup_cache = np.empty(0, np.int64), 0, None
        self._append(vectors, 0)
        self._ids = ids

    def _matrix(self):
        return self._store[: self._rows if self._index is not None else 0]

    def _search_faiss(self, q, k, sel, frac):
        # A filter passing frac of the rows puts the allowed top-k about as far out as the
        # unfiltered top-k/frac, a few cells further: widen nprobe by 1/frac**exponent
        # (0.5: recall@10 0.988 / 0.998 at 10% allowed, 1e5 / 1e6).
        nprobe = int(min(self.config["nprobe"] / frac ** self.config["filter_exponent"], self._index.nlist))
        kr = k * max(self.config["rerank"], 1)
        _, cand = self._index.search(q, kr, params=faiss.SearchParametersIVF(nprobe=nprobe, sel=sel))
        sims = np.einsum("mkd,md->mk", self._matrix()[np.maximum(cand, 0)], q)
        sims[cand < 0] = -np.inf
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, top, axis=1), np.take_along_axis(cand, top, axis=1)

    def _save_extra(self, path):
        np.save(path / "vectors.npy", self._matrix())

    def _load_extra(self, path):
        self._store = np.load(path / "vectors.npy")
        self._rows = len(self._store)


KINDS = {cls.kind: cls for cls in (FlatIndex, IVFIndex)}
#: Backends in a module of their own, imported when first used (pymilvus only if configured).
EXTERNAL = {"milvus": "indexer.retrieval.milvus"}


def index_class(kind: str) -> type[DenseIndex]:
    if kind not in KINDS and kind in EXTERNAL:
        importlib.import_module(EXTERNAL[kind])  # registers itself in KINDS
    if kind not in KINDS:
        raise ValueError(f"unknown dense index kind {kind!r}; expected one of {sorted([*KINDS, *EXTERNAL])}")
    return KINDS[kind]


def create_dense_index(n_expected: int, dim: int, kind: str = "auto", **params) -> DenseIndex:
    """Create an empty index suited to about ``n_expected`` vectors.

    "auto": FlatIndex below FLAT_MAX (50k) vectors, else IVFIndex (SQ8 lists + exact
    rerank of 4k candidates, nlist=4*sqrt(n), nprobe=96, nprobe widened by
    1/sqrt(allowed share) under filters; allowed sets <= EXACT_FILTER_LIMIT (10k) scored
    exactly with numpy). Flat filters with FAISS's row bitmap. Explicit kinds ("flat",
    "ivf") take ``params`` as constructor arguments. HNSW was measured and rejected: see benchmarks/dense.py.
    "milvus": a collection in Milvus (indexer/retrieval/milvus.py), for versions on disk.
    """
    if kind == "auto":
        kind = "flat" if n_expected < FLAT_MAX else "ivf"
    return index_class(kind)(dim, **params)
