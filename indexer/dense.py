"""Dense vector indexes for scenematch: exact (Flat) and approximate (HNSW, IVF) search.

Laid out like txtai's ``ann/`` package: one small class per FAISS backend behind the
``DenseIndex`` interface, chosen by ``create_dense_index``. Vectors are L2-normalised
384-d e5 embeddings, so inner product is cosine.

Every backend numbers its vectors by row (insertion order) inside FAISS and keeps the
external int64 record ids in its own id map (``ids.npy``, -1 marks a removed row). That
one convention lets all backends express filters as row bitmaps (cheap to build, O(1) to
test) and lets HNSW, which cannot delete, keep removed rows as tombstones.
"""

from __future__ import annotations

import json
import math
import threading
from pathlib import Path

import faiss
import numpy as np

#: An allowed set at most this large is scored exactly with numpy on the allowed vectors:
#: at 1M vectors that is faster than a filtered FAISS search and, unlike graph search
#: under a very selective filter, never loses recall (see indexer/bench_dense.py).
EXACT_FILTER_LIMIT = 20_000

#: "auto" uses Flat below this many vectors: exact search is then still a few ms per
#: query and needs no tuning. Set from indexer/bench_dense.py figures.
FLAT_MAX = 50_000

_META = "dense.json"
_INDEX = "index.faiss"
_IDS = "ids.npy"


def _as_matrix(x, dim: int) -> np.ndarray:
    x = np.ascontiguousarray(x, dtype=np.float32)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2 or x.shape[1] != dim:
        raise ValueError(f"expected vectors of shape (n, {dim}), got {x.shape}")
    return x


def _as_ids(ids) -> np.ndarray:
    ids = np.ascontiguousarray(ids, dtype=np.int64).reshape(-1)
    if len(ids) and ids.min() < 0:
        raise ValueError("ids must be non-negative (-1 marks empty result slots)")
    return ids


class _State:
    """Lookup tables derived from the id map; rebuilt lazily after each mutation."""

    def __init__(self, ids: np.ndarray):
        alive = ids >= 0
        live_rows = np.flatnonzero(alive)
        self.order = live_rows[np.argsort(ids[live_rows], kind="stable")]
        self.sorted_ids = ids[self.order]
        self.alive_bitmap = np.packbits(alive, bitorder="little")  # FAISS IDSelectorBitmap layout


class DenseIndex:
    """Base interface: external int64 ids, inner-product search, filters, persistence.

    Searches may run from several threads at once while nobody mutates the index;
    build/add/remove/compact/load must not overlap with searches (the service swaps
    whole index versions instead).
    """

    kind = "base"

    def __init__(self, dim: int, exact_filter_limit: int = EXACT_FILTER_LIMIT,
                 compact_fraction: float = 0.25, search_threads: int = 1, **params):
        self.dim = int(dim)
        self.exact_filter_limit = int(exact_filter_limit)
        self.compact_fraction = float(compact_fraction)
        # OpenMP threads per search call. 1 by default: a single query gains nothing from
        # a second thread on HNSW/IVF, and on a busy 2-core host an exact (Flat) query
        # split over 2 threads waits at the barrier (9 ms -> 60 ms at 1e5 in our runs).
        # Concurrency comes from the service's request threads instead. Raise it for
        # large offline query batches.
        self.search_threads = int(search_threads)
        self.config = dict(params)
        self._index = None
        self._ids = np.empty(0, np.int64)
        self._n_dead = 0
        self._state = None
        self._lock = threading.Lock()

    # -- backend hooks ---------------------------------------------------------------
    def _new_index(self, vectors: np.ndarray):
        """Return an empty FAISS index (trained on ``vectors`` if the type needs it)."""
        raise NotImplementedError

    def _append(self, vectors: np.ndarray, start: int) -> None:
        self._index.add(vectors)  # FAISS numbers rows sequentially from ntotal == start

    def _delete_rows(self, rows: np.ndarray) -> None:
        self._ids[rows] = -1  # tombstone: excluded at search time, dropped by compact()
        self._n_dead += len(rows)

    def _matrix(self) -> np.ndarray:
        """All stored rows (dead ones included) as an (n_rows, dim) float32 array."""
        return _flat_view(self._index)

    def _search_params(self, k: int, sel):
        return faiss.SearchParameters(sel=sel)

    def _search_faiss(self, q: np.ndarray, k: int, sel):
        return self._index.search(q, k, params=self._search_params(k, sel))

    # -- mutation --------------------------------------------------------------------
    def build(self, vectors, ids) -> None:
        """Replace the contents with ``vectors`` (n, dim) under external ``ids`` (n,)."""
        vectors, ids = _as_matrix(vectors, self.dim), _as_ids(ids)
        if len(vectors) != len(ids):
            raise ValueError("vectors and ids differ in length")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("duplicate ids")
        self._ids, self._n_dead, self._state = np.empty(0, np.int64), 0, None
        self._index = self._new_index(vectors)
        if len(ids):
            self._append(vectors, 0)
        self._ids = ids.copy()

    def add(self, vectors, ids) -> None:
        """Add vectors; an id that is already present is replaced (upsert)."""
        vectors, ids = _as_matrix(vectors, self.dim), _as_ids(ids)
        if self._index is None:
            return self.build(vectors, ids)
        if len(vectors) != len(ids):
            raise ValueError("vectors and ids differ in length")
        if len(np.unique(ids)) != len(ids):
            raise ValueError("duplicate ids")
        if len(self):
            self.remove(ids)
        self._append(vectors, len(self._ids))
        self._ids = np.concatenate([self._ids, ids])
        self._state = None

    def remove(self, ids) -> int:
        """Remove ids (unknown ids are ignored); returns how many were removed."""
        rows, _ = self._rows_of(_as_ids(ids))
        if len(rows):
            self._delete_rows(np.unique(rows))
            self._state = None
            if self._n_dead > self.compact_fraction * max(len(self._ids), 1):
                self.compact()
        return len(rows)

    def compact(self) -> None:
        """Drop tombstoned rows by rebuilding from the live vectors."""
        if self._n_dead:
            alive = self._ids >= 0
            self._rebuild(self._matrix()[alive].copy(), self._ids[alive].copy())

    def _rebuild(self, vectors, ids) -> None:
        self.build(vectors, ids)

    # -- queries ---------------------------------------------------------------------
    def search(self, queries, k: int, allowed_ids=None, excluded_ids=None):
        """Top-k by inner product -> (scores (m,k) float32, ids (m,k) int64).

        Empty slots hold id -1 and score -inf. ``allowed_ids`` restricts results to
        those ids, ``excluded_ids`` removes ids (e.g. tombstones, already-matched).
        """
        q = _as_matrix(queries, self.dim)
        # omp_set_num_threads is per calling thread in libgomp (FAISS's runtime), so
        # setting and restoring it here is safe with concurrent searches
        prev = faiss.omp_get_max_threads()
        faiss.omp_set_num_threads(self.search_threads)
        try:
            return self._search(q, int(k), allowed_ids, excluded_ids)
        finally:
            faiss.omp_set_num_threads(prev)

    def _search(self, q, k, allowed_ids, excluded_ids):
        scores = np.full((len(q), k), -np.inf, np.float32)
        ids = np.full((len(q), k), -1, np.int64)
        if k <= 0 or len(q) == 0 or len(self) == 0:
            return scores, ids
        state = self._lookup()
        excl = self._rows_of(_as_ids(excluded_ids))[0] if excluded_ids is not None else None
        if allowed_ids is not None:
            rows = np.unique(self._rows_of(_as_ids(allowed_ids))[0])
            if excl is not None and len(excl):
                rows = rows[~np.isin(rows, excl)]
            if len(rows) <= self.exact_filter_limit:
                return self._search_rows(q, k, rows, scores, ids)
            bitmap = np.zeros(len(state.alive_bitmap), np.uint8)
            np.bitwise_or.at(bitmap, rows >> 3, (1 << (rows & 7)).astype(np.uint8))
        elif self._n_dead or (excl is not None and len(excl)):
            bitmap = state.alive_bitmap.copy()
            if excl is not None and len(excl):
                np.bitwise_and.at(bitmap, excl >> 3, ~(1 << (excl & 7)).astype(np.uint8))
        else:
            bitmap = None
        # the selector holds a raw pointer into `bitmap`, which stays referenced here
        sel = None if bitmap is None else faiss.IDSelectorBitmap(len(bitmap), faiss.swig_ptr(bitmap))
        dist, rows = self._search_faiss(q, k, sel)
        found = rows >= 0
        scores[found] = dist[found]
        ids[found] = self._ids[rows[found]]
        return scores, ids

    def _search_rows(self, q, k, rows, scores, ids):
        """Exact scores against a (small) set of rows, straight from the stored vectors."""
        if len(rows) == 0:
            return scores, ids
        vecs = self._matrix()[rows]
        # einsum for a few queries: numpy's multithreaded BLAS GEMV is 3x slower here
        # on a shared 2-core host (threads wake on scheduler ticks)
        sims = np.einsum("md,nd->mn", q, vecs) if len(q) <= 8 else q @ vecs.T
        kk = min(k, len(rows))
        top = np.argpartition(-sims, kk - 1, axis=1)[:, :kk]
        top_s = np.take_along_axis(sims, top, axis=1)
        order = np.argsort(-top_s, axis=1, kind="stable")
        top = np.take_along_axis(top, order, axis=1)
        scores[:, :kk] = np.take_along_axis(top_s, order, axis=1)
        ids[:, :kk] = self._ids[rows[top]]
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

    def ids(self) -> np.ndarray:
        """Live external ids in row order."""
        return self._ids[self._ids >= 0].copy()

    def params(self) -> dict:
        """Type and parameters, for the version manifest."""
        return {"type": self.kind, "dim": self.dim, **self.config}

    def _lookup(self) -> _State:
        state = self._state
        if state is None:
            with self._lock:  # concurrent first searches after a mutation build it once
                if self._state is None:
                    self._state = _State(self._ids)
                state = self._state
        return state

    def _rows_of(self, ids: np.ndarray):
        """Rows of the live ``ids`` and a mask saying which ids were found."""
        state = self._lookup()
        if len(state.sorted_ids) == 0 or len(ids) == 0:
            return np.empty(0, np.int64), np.zeros(len(ids), bool)
        pos = np.minimum(np.searchsorted(state.sorted_ids, ids), len(state.sorted_ids) - 1)
        found = state.sorted_ids[pos] == ids
        return state.order[pos[found]], found

    # -- persistence -----------------------------------------------------------------
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
        obj = KINDS[kind](dim, exact_filter_limit=meta["exact_filter_limit"],
                          compact_fraction=meta["compact_fraction"], **params)
        if (path / _INDEX).exists():
            obj._index = faiss.read_index(str(path / _INDEX))
        obj._ids = np.load(path / _IDS)
        obj._n_dead = int((obj._ids < 0).sum())
        obj._load_extra(path)
        return obj

    def _save_extra(self, path: Path) -> None:
        pass

    def _load_extra(self, path: Path) -> None:
        pass


def _flat_view(index) -> np.ndarray:
    """Zero-copy view of an IndexFlat's vectors (valid until the next add/remove)."""
    if index is None or index.ntotal == 0:
        return np.empty((0, index.d if index is not None else 0), np.float32)
    return faiss.rev_swig_ptr(index.get_xb(), index.ntotal * index.d).reshape(index.ntotal, index.d)


class FlatIndex(DenseIndex):
    """Exact search over all vectors (IndexFlatIP). Best below ~50k vectors.

    Uses plain IndexFlatIP rather than IndexIDMap2: the id map lives beside it, like for
    the other backends, so filters stay row bitmaps. Removal compacts rows eagerly.
    """

    kind = "flat"

    def _new_index(self, vectors):
        return faiss.IndexFlatIP(self.dim)

    def _delete_rows(self, rows):
        self._index.remove_ids(faiss.IDSelectorBatch(rows))  # keeps the order of the rest
        self._ids = np.delete(self._ids, rows)


class HNSWIndex(DenseIndex):
    """Graph search (IndexHNSWFlat, inner product). No training, cheap incremental adds.

    FAISS HNSW cannot delete, so removed rows are tombstones filtered at search time and
    dropped by an automatic rebuild once they exceed ``compact_fraction`` of the rows.
    """

    kind = "hnsw"

    def __init__(self, dim, m: int = 32, ef_construction: int = 80, ef_search: int = 64, **kw):
        super().__init__(dim, m=int(m), ef_construction=int(ef_construction),
                         ef_search=int(ef_search), **kw)

    def _new_index(self, vectors):
        index = faiss.IndexHNSWFlat(self.dim, self.config["m"], faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = self.config["ef_construction"]
        return index

    def _matrix(self):
        return _flat_view(faiss.downcast_index(self._index.storage))

    def _search_params(self, k, sel):
        # per-call parameters, never index.hnsw.efSearch: that would race between threads
        return faiss.SearchParametersHNSW(efSearch=max(self.config["ef_search"], k), sel=sel)


class IVFIndex(DenseIndex):
    """Inverted lists over k-means cells (IndexIVFFlat or IndexIVFScalarQuantizer).

    Needs training, so the cells are fitted at ``build`` on up to ``train_per_list *
    nlist`` vectors and later adds reuse them. Vectors are also kept as a plain float32
    matrix (``vectors.npy``) for reconstruct and the exact small-filter path; with
    ``sq8`` the lists hold 8-bit codes and the top ``k * rerank`` hits are re-scored
    exactly from that matrix.
    """

    kind = "ivf"

    def __init__(self, dim, nlist: int | None = None, nprobe: int = 32, sq8: bool = False,
                 rerank: int = 4, train_per_list: int = 40, **kw):
        super().__init__(dim, nlist=nlist, nprobe=int(nprobe), sq8=bool(sq8),
                         rerank=int(rerank), train_per_list=int(train_per_list), **kw)
        self._store = np.empty((0, self.dim), np.float32)
        self._rows = 0

    def _new_index(self, vectors):
        n = len(vectors)
        nlist = self.config["nlist"] or max(1, int(8 * math.sqrt(max(n, 1))))
        nlist = max(1, min(nlist, n // 39))  # FAISS wants >= 39 training points per cell
        self.config["nlist"] = nlist
        quantizer = faiss.IndexFlatIP(self.dim)
        if self.config["sq8"]:
            index = faiss.IndexIVFScalarQuantizer(quantizer, self.dim, nlist,
                                                  faiss.ScalarQuantizer.QT_8bit,
                                                  faiss.METRIC_INNER_PRODUCT)
        else:
            index = faiss.IndexIVFFlat(quantizer, self.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        index.cp.niter = 10  # centroids for routing need not be precise; halves training
        n_train = min(n, self.config["train_per_list"] * nlist)
        sample = vectors[np.random.default_rng(0).choice(n, n_train, replace=False)] if n_train < n else vectors
        index.train(sample)
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
        self._ids, self._n_dead, self._state = np.empty(0, np.int64), 0, None
        self._append(vectors, 0)
        self._ids = ids

    def _matrix(self):
        return self._store[: self._rows]

    def _search_params(self, k, sel):
        return faiss.SearchParametersIVF(nprobe=self.config["nprobe"], sel=sel)

    def _search_faiss(self, q, k, sel):
        if not self.config["sq8"]:
            return super()._search_faiss(q, k, sel)
        kr = k * max(self.config["rerank"], 1)
        _, cand = self._index.search(q, kr, params=self._search_params(kr, sel))
        vecs = self._matrix()[np.maximum(cand, 0)]
        sims = np.einsum("mkd,md->mk", vecs, q)
        sims[cand < 0] = -np.inf
        top = np.argsort(-sims, axis=1, kind="stable")[:, :k]
        return np.take_along_axis(sims, top, axis=1), np.take_along_axis(cand, top, axis=1)

    def _save_extra(self, path):
        np.save(path / "vectors.npy", self._matrix())

    def _load_extra(self, path):
        self._store = np.load(path / "vectors.npy")
        self._rows = len(self._store)


KINDS = {cls.kind: cls for cls in (FlatIndex, HNSWIndex, IVFIndex)}


def create_dense_index(n_expected: int, dim: int, kind: str = "auto", **params) -> DenseIndex:
    """Create an empty index suited to about ``n_expected`` vectors.

    "auto": Flat below FLAT_MAX vectors, HNSW above (parameters below). Explicit kinds
    ("flat", "hnsw", "ivf") take ``params`` as constructor arguments.
    """
    if kind == "auto":
        kind = "flat" if n_expected < FLAT_MAX else "hnsw"
    if kind not in KINDS:
        raise ValueError(f"unknown dense index kind {kind!r}; expected one of {sorted(KINDS)}")
    return KINDS[kind](dim, **params)
