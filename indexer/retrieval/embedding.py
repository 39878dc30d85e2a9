"""Sentence encoders for matching, plus a persistent embedding cache.

Every encoder returns float32, L2-normalised rows of shape ``(n, dim)``, so a dot
product is the cosine similarity. Queries and passages are encoded separately
because asymmetric models (e5 and friends) need a different prefix for each.
"""

from __future__ import annotations

import hashlib
import logging
import sqlite3
import threading
from abc import ABC, abstractmethod
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path

import numpy as np

from models.embedding_model import (
    DEFAULT_MODEL_NAME,
    MANIFEST_NAME,
    ensure_default_model,
    read_manifest,
)
from models.onnx_model import RECIPES

log = logging.getLogger("scenematch.embedding")
Progress = Callable[[int, int], None]
CacheKey = tuple[str, str]  # (encoder name, sha256 hex of role + text)

QUERY, PASSAGE = "query", "passage"
# Prompt names other sentence-transformers models use for the document side.
_PASSAGE_PROMPT_NAMES = ("passage", "document", "corpus")
_QUERY_BATCH = _PASSAGE_BATCH = 32


class Encoder(ABC):
    """Text -> unit vectors. ``name`` identifies the vectors (used in cache keys)."""

    name: str
    dim: int

    @abstractmethod
    def encode_queries(self, texts: list[str]) -> np.ndarray:
        """Embed search queries (needs, questions)."""

    @abstractmethod
    def encode_passages(self, texts: list[str], batch_size: int | None = None,
                        progress: Progress | None = None) -> np.ndarray:
        """Embed documents to be searched; ``progress(done, total)`` after each batch. Without a
        ``batch_size`` each encoder uses the one measured fastest for it."""

    def _empty(self) -> np.ndarray:
        return np.zeros((0, self.dim), dtype=np.float32)


def folder_identity(folder: Path) -> str:
    """Stable name for a model folder: its name plus a hash of its configs and weight sizes."""
    manifest = read_manifest(folder)
    if manifest is not None and manifest.get("fingerprint"):
        return f"{manifest.get('name', folder.name)}@{manifest['fingerprint']}"
    h = hashlib.sha256()
    for p in sorted(folder.rglob("*")):
        if not p.is_file() or p.name == MANIFEST_NAME:
            continue
        rel = p.relative_to(folder).as_posix()
        # Hashing hundreds of MB of weights at every start is too slow; configs plus
        # weight sizes catch any realistic swap of the model.
        if p.suffix == ".json" and p.stat().st_size < 1 << 20:
            h.update(rel.encode() + b"\0" + p.read_bytes())
        else:
            h.update(f"{rel}\0{p.stat().st_size}".encode())
    return f"{folder.name}@{h.hexdigest()[:16]}"


_folder_identity = folder_identity  # the name indexer/adaptation imports


class SentenceTransformerEncoder(Encoder):
    """Any sentence-transformers model, on CPU, with its own query/passage prompts if it has them."""

    def __init__(self, path_or_name: str | Path, name: str | None = None):
        from sentence_transformers import SentenceTransformer  # heavy import, only when used

        folder = Path(path_or_name).expanduser()
        is_dir = folder.is_dir()
        self.model = SentenceTransformer(str(folder) if is_dir else str(path_or_name), device="cpu")
        self.model.eval()  # inference only (_encode_one relies on it; training uses its own copy)
        if name is None:
            name = folder_identity(folder) if is_dir else str(path_or_name)
        self.name = name
        get_dim = (getattr(self.model, "get_embedding_dimension", None)
                   or self.model.get_sentence_embedding_dimension)
        self.dim = int(get_dim())
        prompts = getattr(self.model, "prompts", None) or {}
        self.query_prompt_name = QUERY if prompts.get(QUERY) else None
        self.passage_prompt_name = next((p for p in _PASSAGE_PROMPT_NAMES if prompts.get(p)), None)

    def _encode(self, texts: Sequence[str], prompt_name: str | None, batch_size: int,
                progress: Progress | None) -> np.ndarray:
        n = len(texts)
        if n == 0:
            return self._empty()
        # Longest first, so each batch pads to similar lengths (large CPU saving);
        # rows are put back in input order at the end.
        order = sorted(range(n), key=lambda i: len(texts[i]), reverse=True)
        out = np.empty((n, self.dim), dtype=np.float32)
        # No named prompt: pass an empty one so the model's default_prompt_name cannot apply.
        prompt_kw = {"prompt_name": prompt_name} if prompt_name else {"prompt": ""}
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            vecs = self.model.encode([texts[i] for i in idx], batch_size=batch_size,
                                     convert_to_numpy=True, normalize_embeddings=True,
                                     show_progress_bar=False, **prompt_kw)
            out[idx] = np.asarray(vecs, dtype=np.float32)
            if progress is not None:
                progress(min(start + batch_size, n), n)
        return out

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        if len(texts) == 1:  # a search's query
            return self._encode_one(texts[0], self.query_prompt_name)
        return self._encode(texts, self.query_prompt_name, _QUERY_BATCH, None)

    def _encode_one(self, text: str, prompt_name: str | None) -> np.ndarray:
        """One text through the model's own preprocessing and forward pass, as encode() runs
        each batch, without encode()'s per-call set-up (argument checks, eval() over every
        module, length sorting): 1.5-3 ms of a ~24 ms query here. The same vector (tests)."""
        import torch

        prompt = self.model.prompts[prompt_name] if prompt_name else ""
        with torch.inference_mode():
            features = self.model.preprocess([text], prompt=prompt)
            embedding = torch.nn.functional.normalize(self.model(features)["sentence_embedding"], p=2, dim=1)
        return embedding.numpy().astype(np.float32, copy=False)

    def encode_passages(self, texts: list[str], batch_size: int | None = None,
                        progress: Progress | None = None) -> np.ndarray:
        return self._encode(texts, self.passage_prompt_name, batch_size or _PASSAGE_BATCH, progress)


def text_key(encoder_name: str, role: str, text: str) -> CacheKey:
    """Cache key of one text: the role is hashed in, so a query never hits a passage vector."""
    digest = hashlib.sha256(f"{role}\0{text}".encode("utf-8")).hexdigest()
    return (encoder_name, digest)


class EmbeddingCache:
    """Vectors by (encoder name, text hash) in SQLite; one connection per thread."""

    _CHUNK = 500  # stays well under SQLite's bound-parameter limit

    def __init__(self, path: Path):
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._local = threading.local()
        self._lock = threading.Lock()
        self._conns: list[sqlite3.Connection] = []
        with self._conn() as conn:
            conn.execute(
                "CREATE TABLE IF NOT EXISTS embeddings ("
                " model TEXT NOT NULL, key TEXT NOT NULL, vec BLOB NOT NULL,"
                " PRIMARY KEY (model, key)) WITHOUT ROWID")

    def _conn(self) -> sqlite3.Connection:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            # Each thread uses only its own connection; check_same_thread=False merely
            # lets close() shut them all from whichever thread calls it.
            conn = sqlite3.connect(self.path, timeout=30.0, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            # NORMAL is durable enough for a cache and much faster than FULL under WAL.
            conn.execute("PRAGMA synchronous=NORMAL")
            self._local.conn = conn
            with self._lock:
                self._conns.append(conn)
        return conn

    def get_many(self, keys: Iterable[CacheKey]) -> dict[CacheKey, np.ndarray]:
        """Cached vectors for those keys that are present."""
        by_model: dict[str, list[str]] = {}
        for model, digest in set(keys):
            by_model.setdefault(model, []).append(digest)
        found: dict[CacheKey, np.ndarray] = {}
        conn = self._conn()
        for model, digests in by_model.items():
            for i in range(0, len(digests), self._CHUNK):
                part = digests[i:i + self._CHUNK]
                rows = conn.execute(
                    f"SELECT key, vec FROM embeddings WHERE model = ? AND key IN "
                    f"({','.join('?' * len(part))})", (model, *part))
                for digest, blob in rows:
                    found[(model, digest)] = np.frombuffer(blob, dtype="<f4").copy()
        return found

    def put_many(self, items: Iterable[tuple[CacheKey, np.ndarray]]) -> None:
        """Store (key, vector) pairs, replacing any existing ones."""
        rows = [(m, d, np.asarray(v, dtype="<f4").tobytes()) for (m, d), v in items]
        if rows:
            with self._conn() as conn:  # one transaction
                conn.executemany(
                    "INSERT OR REPLACE INTO embeddings (model, key, vec) VALUES (?, ?, ?)", rows)

    def __len__(self) -> int:
        return self._conn().execute("SELECT COUNT(*) FROM embeddings").fetchone()[0]

    def close(self) -> None:
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            conn.close()
        self._local = threading.local()


class CachedEncoder(Encoder):
    """An Encoder that never embeds the same (model, role, text) twice."""

    def __init__(self, inner: Encoder, cache: EmbeddingCache):
        self.inner, self.cache = inner, cache
        self.name, self.dim = inner.name, inner.dim
        self.hits = self.misses = 0
        self._lock = threading.Lock()

    def _encode(self, texts: list[str], role: str,
                compute: Callable[[list[str], Progress | None], np.ndarray],
                progress: Progress | None) -> np.ndarray:
        n = len(texts)
        if n == 0:
            return self._empty()
        keys = [text_key(self.name, role, t) for t in texts]
        # A vector of another width (a corrupted or foreign row) is recomputed.
        found = {k: v for k, v in self.cache.get_many(keys).items() if v.shape == (self.dim,)}
        missing: dict[CacheKey, str] = {}
        for k, t in zip(keys, texts):
            if k not in found:
                missing.setdefault(k, t)  # duplicates in one call are embedded once
        with self._lock:
            self.hits += n - sum(k not in found for k in keys)
            self.misses += len(missing)
        if missing:
            done0 = n - len(missing)
            inner_progress = None
            if progress is not None:
                progress(done0, n)
                inner_progress = lambda d, _t: progress(done0 + d, n)  # noqa: E731
            vecs = compute(list(missing.values()), inner_progress)
            new = dict(zip(missing, vecs))
            self.cache.put_many(new.items())
            found.update(new)
        elif progress is not None:
            progress(n, n)
        return np.stack([found[k] for k in keys]).astype(np.float32, copy=False)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, QUERY, lambda ts, _p: self.inner.encode_queries(ts), None)

    def encode_passages(self, texts: list[str], batch_size: int | None = None,
                        progress: Progress | None = None) -> np.ndarray:
        return self._encode(
            texts, PASSAGE, lambda ts, p: self.inner.encode_passages(ts, batch_size, p), progress)

    def stats(self) -> dict[str, int]:
        return {"hits": self.hits, "misses": self.misses}


BACKENDS = ("torch", "onnx", "onnx-int8")


def load_encoder(model: str | None, cache_dir: Path, backend: str = "torch") -> Encoder:
    """The default offline e5 model (building it on first use), a model folder, or a model name,
    run by torch (sentence-transformers) or ONNX Runtime (`backend`: onnx, onnx-int8).

    ONNX needs the model as a local folder and the onnxruntime package; without either the torch
    encoder serves, with a warning (its vectors have their own name, so nothing cached for the
    other backend is reused)."""
    if backend not in BACKENDS:
        raise ValueError(f"unknown encoder backend {backend!r}; one of {BACKENDS}")
    if not model or model == DEFAULT_MODEL_NAME:
        folder: Path | None = ensure_default_model(Path(cache_dir))
    else:
        folder = Path(model).expanduser() if Path(model).expanduser().is_dir() else None
    if backend != "torch":
        if folder is None:
            log.warning("encoder backend %s needs a local model folder, %s is not one: using torch", backend, model)
        else:
            try:
                return _onnx_encoder(folder, backend)
            except (ImportError, OSError, RuntimeError) as exc:
                log.warning("ONNX Runtime encoder unavailable (%s: %s): using torch", type(exc).__name__, exc)
    return SentenceTransformerEncoder(folder if folder is not None else str(model))


def quantization_of(backend: str) -> str | None:
    """The ONNX graph a backend runs ("fp32", "int8"), or None for torch."""
    return None if backend == "torch" else ("int8" if backend == "onnx-int8" else "fp32")


def _onnx_encoder(folder: Path, backend: str) -> Encoder:
    from indexer.retrieval.onnx_encoder import OnnxEncoder

    return OnnxEncoder(folder, quantization_of(backend))


def backend_of(encoder: Encoder) -> str:
    """The backend an encoder runs on, through any wrappers (cache, metrics timing) around it."""
    while getattr(encoder, "inner", None) is not None:
        encoder = encoder.inner
    quantization = getattr(encoder, "quantization", None)
    return "torch" if quantization is None else ("onnx" if quantization == "fp32" else f"onnx-{quantization}")


def backend_suffix(encoder: Encoder) -> str:
    """What the backend adds to a model's identity in the encoder's name ("" for torch)."""
    quantization = quantization_of(backend_of(encoder))
    return "" if quantization is None else f"+onnx-{RECIPES[quantization]}"


def load_like(encoder: Encoder, folder: Path) -> Encoder:
    """A model folder (an adapted version) on the same backend as `encoder`; an ONNX backend
    exports the folder's graph here, in the job that made it."""
    backend = backend_of(encoder)
    if backend == "torch":
        return SentenceTransformerEncoder(folder)
    return load_encoder(str(folder), Path(folder).parent, backend)


__all__ = [
    "CacheKey", "CachedEncoder", "EmbeddingCache", "Encoder", "PASSAGE", "QUERY",
    "BACKENDS", "SentenceTransformerEncoder", "backend_of", "backend_suffix", "folder_identity", "load_encoder", "load_like",
    "quantization_of",
    "text_key",
]
