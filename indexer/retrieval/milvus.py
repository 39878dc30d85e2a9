"""Dense vectors in Milvus, behind the same `DenseIndex` interface as FAISS.

One client code for every deployment: a file path is milvus-lite (embedded, one process), an
`http(s)://host:19530` URI a standalone server or a cluster (several replicas share it).
Each index version's segment gets a collection of its own, written once when the version is
built and dropped when the version is gone; the alias `<prefix>_<kind>` is pointed at the
collection of the version being served, so other readers of the Milvus deployment see the
active version switch at once, like the ACTIVE pointer on disk. The engine itself searches
the collection of the snapshot it took, so a request in flight finishes on its version.

Filters arrive as the segment's row mask (visibility, domain, region, status: already
decided) and are pushed down as a Milvus boolean expression over the primary key, the row,
listing whichever side is shorter (`row in [...]` or `row not in [...]`). Strong consistency:
a search after a build sees every vector of it.
"""
from __future__ import annotations

import json
import logging
import threading
import uuid
from pathlib import Path

import numpy as np
from pymilvus import DataType, MilvusClient

from indexer.retrieval.dense import KINDS, DenseIndex, _as_batch, _as_ids, _as_matrix

log = logging.getLogger("scenematch.milvus")
INSERT_BATCH = 5_000
#: FLAT is exact (what FAISS serves below 50k); above it HNSW, Milvus's usual in-memory choice.
FLAT_MAX = 50_000
HNSW = {"M": 16, "efConstruction": 200}
HNSW_EF = 256

_settings = {"uri": "", "token": "", "prefix": "scenematch"}
_clients: dict[tuple[str, str], MilvusClient] = {}
_lock = threading.Lock()


def configure(uri: str, token: str | None = None, prefix: str = "scenematch") -> None:
    """Where the collections live (SCENEMATCH_MILVUS_URI / SCENEMATCH_MILVUS_TOKEN)."""
    _settings.update(uri=str(uri), token=token or "", prefix=prefix)


def deployment() -> str:
    uri = _settings["uri"]
    return "server" if uri.startswith(("http://", "https://", "tcp://", "grpc://")) else "lite"


def client() -> MilvusClient:
    key = (_settings["uri"], _settings["token"])
    if not key[0]:
        raise RuntimeError("Milvus is not configured (SCENEMATCH_MILVUS_URI)")
    with _lock:
        if key not in _clients:
            if deployment() == "lite":
                Path(key[0]).parent.mkdir(parents=True, exist_ok=True)
            _clients[key] = MilvusClient(uri=key[0], token=key[1])
        return _clients[key]


class MilvusIndex(DenseIndex):
    kind = "milvus"
    gathers_small_filters = False  # Milvus filters inside its own search

    def __init__(self, dim, collection: str | None = None, index_type: str | None = None, **kw):
        super().__init__(dim, collection=collection, index_type=index_type, **kw)

    @property
    def collection(self) -> str:
        return self.config["collection"]

    def build(self, vectors, ids) -> None:
        vectors, ids = _as_batch(vectors, ids, self.dim)
        name = f"{_settings['prefix']}_{uuid.uuid4().hex}"
        index_type = self.config["index_type"] or ("FLAT" if len(ids) < FLAT_MAX else "HNSW")
        c = client()
        schema = c.create_schema(auto_id=False, enable_dynamic_field=False)
        schema.add_field("row", DataType.INT64, is_primary=True)
        schema.add_field("vector", DataType.FLOAT_VECTOR, dim=self.dim)
        params = c.prepare_index_params()
        params.add_index(field_name="vector", index_type=index_type, metric_type="IP",
                         params=HNSW if index_type == "HNSW" else {})
        c.create_collection(name, schema=schema, index_params=params, consistency_level="Strong")
        self.config.update(collection=name, index_type=index_type)
        self._ids, self._n_dead, self._lookup_cache = np.empty(0, np.int64), 0, None
        self._insert(vectors, ids)
        self._ids = ids.copy()

    def _insert(self, vectors: np.ndarray, ids: np.ndarray, upsert: bool = False) -> None:
        c = client()
        write = c.upsert if upsert else c.insert
        for start in range(0, len(ids), INSERT_BATCH):
            write(self.collection, [{"row": int(i), "vector": v} for i, v in
                                    zip(ids[start:start + INSERT_BATCH], vectors[start:start + INSERT_BATCH])])
        c.flush(self.collection)  # searchable in full before the version is served

    def add(self, vectors, ids) -> None:
        vectors, ids = _as_batch(vectors, ids, self.dim)
        if not self.config.get("collection"):
            return self.build(vectors, ids)
        self._insert(vectors, ids, upsert=True)
        self._ids = np.concatenate([self._ids[~np.isin(self._ids, ids)], ids])
        self._lookup_cache = None

    def remove(self, ids) -> int:
        ids = _as_ids(ids)
        gone = self._ids[np.isin(self._ids, ids)]
        if len(gone):
            client().delete(self.collection, filter=f"row in {gone.tolist()}")
            self._ids = self._ids[~np.isin(self._ids, gone)]
            self._lookup_cache = None
        return len(gone)

    def compact(self) -> None:  # Milvus compacts its own segments
        pass

    def search(self, queries, k: int, allowed_ids=None, excluded_ids=None, allowed_rows=None):
        q = _as_matrix(queries, self.dim)
        scores = np.full((len(q), k), -np.inf, np.float32)
        out = np.full((len(q), k), -1, np.int64)
        if k <= 0 or len(q) == 0 or len(self) == 0:
            return scores, out
        allowed = np.ones(len(self._ids), bool)
        if allowed_rows is not None:
            allowed &= np.asarray(allowed_rows, dtype=bool)
        if allowed_ids is not None:
            allowed &= np.isin(self._ids, _as_ids(allowed_ids))
        if excluded_ids is not None:
            allowed &= ~np.isin(self._ids, _as_ids(excluded_ids))
        expr = row_expression(self._ids, allowed)
        if expr is None:
            return scores, out
        search_params = {"metric_type": "IP", "params": {"ef": max(HNSW_EF, k)}
                         if self.config["index_type"] == "HNSW" else {}}
        hits = client().search(self.collection, data=list(q), limit=k, filter=expr, output_fields=["row"],
                               search_params=search_params)
        for i, row_hits in enumerate(hits):
            for j, hit in enumerate(row_hits[:k]):
                scores[i, j], out[i, j] = hit["distance"], hit["row"]
        return scores, out

    def reconstruct(self, ids) -> np.ndarray:
        ids = _as_ids(ids)
        rows = client().query(self.collection, filter=f"row in {ids.tolist()}", output_fields=["row", "vector"])
        found = {int(r["row"]): np.asarray(r["vector"], np.float32) for r in rows}
        missing = [int(i) for i in ids if int(i) not in found]
        if missing:
            raise KeyError(f"unknown ids: {missing[:10]}")
        return np.vstack([found[int(i)] for i in ids]) if len(ids) else np.empty((0, self.dim), np.float32)

    def __contains__(self, id_) -> bool:
        return bool(np.isin(int(id_), self._ids))

    def __len__(self) -> int:
        return len(self._ids)

    def ids(self) -> np.ndarray:
        return self._ids.copy()

    def serve_as(self, name: str) -> None:
        alias = f"{_settings['prefix']}_{name}"
        c = client()
        if alias in c.list_aliases().get("aliases", []):
            c.alter_alias(self.collection, alias)
        else:
            c.create_alias(self.collection, alias)


def row_expression(ids: np.ndarray, allowed: np.ndarray) -> str | None:
    """A Milvus filter keeping the allowed rows: "" for all, None for none."""
    n_allowed = int(np.count_nonzero(allowed))
    if n_allowed == 0:
        return None
    if n_allowed == len(ids):
        return ""
    if n_allowed <= len(ids) - n_allowed:
        return f"row in {ids[allowed].tolist()}"
    return f"row not in {ids[~allowed].tolist()}"


def drop_unreferenced(root: Path) -> list[str]:
    """Drop this prefix's collections that no version folder under `root` names (pruned or
    crashed builds). Run only by the builder, so no build is creating one meanwhile."""
    referenced = set()
    for meta in root.glob("*/*/dense/dense.json"):
        referenced.add(json.loads(meta.read_text())["params"].get("collection"))
    c = client()
    aliased = {c.describe_alias(a)["collection_name"] for a in c.list_aliases().get("aliases", [])}
    dropped = []
    for name in c.list_collections():
        if name.startswith(f"{_settings['prefix']}_") and name not in referenced | aliased:
            c.drop_collection(name)
            dropped.append(name)
    return dropped


KINDS[MilvusIndex.kind] = MilvusIndex
