"""Encoder interface, embedding cache and cached encoder (fakes for logic, real e5 for the rest)."""
from __future__ import annotations

import hashlib
import sqlite3
import threading
from pathlib import Path

import numpy as np
import pytest

from indexer.retrieval import embedding as emb
from indexer.retrieval.embedding import (
    CachedEncoder,
    EmbeddingCache,
    Encoder,
    SentenceTransformerEncoder,
    load_encoder,
    text_key,
)
from models.embedding_model import DEFAULT_MODEL_NAME

DIM = 8


def _fake_vec(prefix: str, text: str) -> np.ndarray:
    seed = int.from_bytes(hashlib.sha256((prefix + text).encode()).digest()[:4], "little")
    v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    return v / np.linalg.norm(v)


class FakeEncoder(Encoder):
    """Deterministic vectors from the text; counts what it was asked to embed."""

    name, dim = "fake@1", DIM

    def __init__(self):
        self.calls: list[tuple[str, list[str]]] = []

    def encode_queries(self, texts):
        self.calls.append(("query", list(texts)))
        return np.stack([_fake_vec("q:", t) for t in texts]) if texts else self._empty()

    def encode_passages(self, texts, batch_size=None, progress=None):
        self.calls.append(("passage", list(texts)))
        batch_size = batch_size or 32
        for done in range(0, len(texts), batch_size):
            if progress:
                progress(min(done + batch_size, len(texts)), len(texts))
        return np.stack([_fake_vec("p:", t) for t in texts]) if texts else self._empty()


class FakeST:
    """Stands in for a SentenceTransformer: records batches, prompt per text."""

    prompts = {"query": "query: ", "passage": "passage: "}

    def __init__(self):
        self.batches: list[list[str]] = []

    def encode(self, texts, prompt_name=None, prompt=None, **_kw):
        self.batches.append(list(texts))
        pre = prompt if prompt is not None else self.prompts.get(prompt_name, "")
        return np.stack([_fake_vec(pre, t) for t in texts])

    # The one-text path (SentenceTransformerEncoder._encode_one) calls these two.
    def preprocess(self, texts, prompt=None):
        self.batches.append(list(texts))
        return {"vectors": np.stack([_fake_vec(prompt or "", t) for t in texts])}

    def __call__(self, features):
        import torch

        return {"sentence_embedding": torch.from_numpy(features["vectors"])}


def _fake_st_encoder(model=None) -> SentenceTransformerEncoder:
    enc = SentenceTransformerEncoder.__new__(SentenceTransformerEncoder)
    enc.model, enc.name, enc.dim = model or FakeST(), "fake-st", DIM
    enc.query_prompt_name, enc.passage_prompt_name = "query", "passage"
    return enc


# ------------------------------------------------------------------ unit tests (fakes)

def test_length_sorted_batches_keep_input_order():
    enc = _fake_st_encoder()
    texts = ["短", "一个中等长度的句子", "x", "这是整个列表里最长的一个句子，用来检查排序", "四个字儿", ""]
    seen = []
    out = enc.encode_passages(texts, batch_size=2, progress=lambda d, t: seen.append((d, t)))
    assert out.shape == (6, DIM) and out.dtype == np.float32
    for row, t in zip(out, texts):
        np.testing.assert_array_equal(row, _fake_vec("passage: ", t))
    lengths = [len(t) for b in enc.model.batches for t in b]
    assert lengths == sorted(lengths, reverse=True)  # batched longest first
    assert seen == [(2, 6), (4, 6), (6, 6)]
    assert enc.encode_queries([]).shape == (0, DIM)


def test_model_without_prompts_gets_none():
    model = FakeST()
    model.prompts = {}
    enc = _fake_st_encoder(model)
    enc.query_prompt_name = enc.passage_prompt_name = None
    np.testing.assert_allclose(enc.encode_queries(["abc"])[0], _fake_vec("", "abc"), atol=1e-6)
    np.testing.assert_array_equal(enc.encode_queries(["abc", "d"])[0], _fake_vec("", "abc"))


def test_cache_roundtrip_persistence_and_wal(tmp_path):
    path = tmp_path / "emb.sqlite"
    cache = EmbeddingCache(path)
    k1, k2 = text_key("m", "query", "你好"), text_key("m", "passage", "你好")
    assert k1 != k2  # the role is part of the key
    v = np.array([0.1, -0.2, 1e-8, 3.0], dtype=np.float32)
    cache.put_many([(k1, v)])
    got = cache.get_many([k1, k2, text_key("other", "query", "你好")])
    assert list(got) == [k1]
    assert got[k1].dtype == np.float32 and got[k1].tobytes() == v.tobytes()
    cache.close()
    cache = EmbeddingCache(path)
    assert len(cache) == 1 and cache.get_many([k1])[k1].tobytes() == v.tobytes()
    assert sqlite3.connect(path).execute("PRAGMA journal_mode").fetchone()[0] == "wal"
    cache.close()


def test_cache_from_many_threads(tmp_path):
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    errors = []

    def work(i):
        try:
            items = [(text_key("m", "passage", f"{i}-{j}"), _fake_vec("", f"{i}-{j}")) for j in range(50)]
            for k in range(0, 50, 10):
                cache.put_many(items[k:k + 10])
                got = cache.get_many([key for key, _ in items[:k + 10]])
                assert len(got) == k + 10
        except Exception as exc:  # noqa: BLE001 - collected and asserted below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(i,)) for i in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == [] and len(cache) == 300
    cache.close()


def test_cached_encoder_never_embeds_twice(tmp_path):
    inner = FakeEncoder()
    enc = CachedEncoder(inner, EmbeddingCache(tmp_path / "emb.sqlite"))
    texts = ["需求一", "能力二", "需求一", "三"]
    first = enc.encode_passages(texts, batch_size=2)
    assert inner.calls == [("passage", ["需求一", "能力二", "三"])]  # duplicate embedded once
    assert enc.stats() == {"hits": 0, "misses": 3}
    progress = []
    second = enc.encode_passages(texts + ["新"], progress=lambda d, t: progress.append((d, t)))
    assert inner.calls[-1] == ("passage", ["新"])
    assert progress[0] == (4, 5) and progress[-1] == (5, 5)
    np.testing.assert_array_equal(second[:4], first)
    assert enc.stats() == {"hits": 4, "misses": 4}
    # Same text as a query is a different vector, so it is a miss.
    q = enc.encode_queries(["需求一"])
    assert inner.calls[-1] == ("query", ["需求一"])
    assert not np.allclose(q[0], first[0])
    n_calls = len(inner.calls)
    enc.encode_queries(["需求一"])
    enc.encode_passages(texts)
    assert len(inner.calls) == n_calls


def test_load_encoder_dispatch(tmp_path, monkeypatch):
    built = tmp_path / "models" / "multilingual-e5-small"
    monkeypatch.setattr(emb, "ensure_default_model", lambda cache_dir: built)
    monkeypatch.setattr(emb, "SentenceTransformerEncoder", lambda p, name=None: ("st", p))
    assert load_encoder(None, tmp_path) == ("st", built)
    assert load_encoder("", tmp_path) == ("st", built)
    assert load_encoder(DEFAULT_MODEL_NAME, tmp_path) == ("st", built)
    assert load_encoder("BAAI/bge-small-zh-v1.5", tmp_path) == ("st", "BAAI/bge-small-zh-v1.5")


# ------------------------------------------------------------------ real model

@pytest.fixture(scope="module")
def encoder(e5_model_dir: Path) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(e5_model_dir)


TEXTS = ["武汉需要智慧水务平台", "提供工业视觉检测", "桥梁健康监测，包括应变、挠度和振动数据的长期采集与分析",
         "AI", "养老院跌倒检测设备"]


@pytest.mark.slow
def test_real_shapes_normalization_and_identity(encoder):
    assert encoder.dim == 384
    assert encoder.name.startswith(DEFAULT_MODEL_NAME + "@")
    assert (encoder.query_prompt_name, encoder.passage_prompt_name) == ("query", "passage")
    for out in (encoder.encode_queries(TEXTS), encoder.encode_passages(TEXTS, batch_size=2)):
        assert out.shape == (len(TEXTS), 384) and out.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(out, axis=1), 1.0, atol=1e-5)
    assert encoder.encode_passages([]).shape == (0, 384)


@pytest.mark.slow
def test_real_query_and_passage_prompts_differ(encoder):
    q, p = encoder.encode_queries(TEXTS), encoder.encode_passages(TEXTS)
    cos = np.sum(q * p, axis=1)
    assert (cos < 0.995).all(), cos
    direct = encoder.model.encode(["query: " + t for t in TEXTS], normalize_embeddings=True, prompt="")
    np.testing.assert_allclose(q, direct, atol=1e-5)


@pytest.mark.slow
def test_real_single_query_path_equals_the_batch_path(encoder):
    """One query skips encode()'s set-up; its vector is the one a batch gives (long texts cut
    at the model's maximum length alike)."""
    texts = [*TEXTS, "", "山洪" * 600]
    batch = encoder.encode_queries(texts)
    alone = np.vstack([encoder.encode_queries([t]) for t in texts])
    assert alone.dtype == np.float32 and alone.shape == batch.shape
    np.testing.assert_allclose(alone, batch, atol=2e-6)


@pytest.mark.slow
def test_real_order_preserved_across_batches(encoder):
    batched = encoder.encode_passages(TEXTS, batch_size=2)
    for row, t in zip(batched, TEXTS):
        alone = encoder.encode_passages([t])[0]
        assert float(row @ alone) > 0.9999, t


@pytest.mark.slow
def test_real_cached_encoder_returns_identical_vectors(encoder, tmp_path):
    path = tmp_path / "emb.sqlite"
    cached = CachedEncoder(encoder, EmbeddingCache(path))
    first = cached.encode_passages(TEXTS)
    assert cached.stats() == {"hits": 0, "misses": len(TEXTS)}
    again = CachedEncoder(encoder, EmbeddingCache(path))  # a new process would see this
    second = again.encode_passages(TEXTS)
    assert again.stats() == {"hits": len(TEXTS), "misses": 0}
    assert second.tobytes() == first.tobytes()
