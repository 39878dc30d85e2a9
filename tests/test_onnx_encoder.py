"""The ONNX Runtime encoder: exported offline from the real e5 folder, the same vectors as torch,
its own cache identity, a stale graph never served, and torch when onnxruntime is missing."""
from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import numpy as np
import pytest

from indexer.retrieval import embedding as emb
from indexer.retrieval.embedding import (
    CachedEncoder,
    EmbeddingCache,
    SentenceTransformerEncoder,
    backend_of,
    backend_suffix,
    load_encoder,
    load_like,
)
from models.onnx_model import ONNX_DIR, export_onnx, graph_path, read_stamp
from service.metrics import TimedEncoder
from tests.test_embedding import TEXTS, FakeEncoder

pytestmark = pytest.mark.slow

LONG = "桥梁健康监测，包括应变、挠度和振动数据的长期采集与分析。" * 40  # cut at 512 tokens alike


@pytest.fixture(scope="module")
def onnx_encoder(e5_model_dir: Path):
    encoder = load_encoder(str(e5_model_dir), e5_model_dir.parent, "onnx")
    assert type(encoder).__name__ == "OnnxEncoder", "onnxruntime is a pinned dependency"
    return encoder


@pytest.fixture(scope="module")
def torch_encoder(e5_model_dir: Path) -> SentenceTransformerEncoder:
    return SentenceTransformerEncoder(e5_model_dir)


def test_graph_is_stamped_from_the_folder(e5_model_dir, onnx_encoder):
    stamp = read_stamp(e5_model_dir)
    assert stamp is not None and stamp["quantization"] == "fp32"
    assert graph_path(e5_model_dir).is_file() and onnx_encoder.graph_sha256 == stamp["graph_sha256"]
    assert export_onnx(e5_model_dir) == graph_path(e5_model_dir)  # found, not rebuilt
    assert json.loads((graph_path(e5_model_dir).parent / "fp32-scenematch-onnx.json").read_text())["built_at"] \
        == stamp["built_at"]


def test_same_vectors_as_torch_in_both_roles(onnx_encoder, torch_encoder):
    texts = [*TEXTS, LONG, "", "尾部空白 \n", " 前导空白"]
    for role in ("encode_passages", "encode_queries"):
        a = getattr(torch_encoder, role)(texts)
        b = getattr(onnx_encoder, role)(texts)
        assert b.shape == a.shape == (len(texts), 384) and b.dtype == np.float32
        np.testing.assert_allclose(np.linalg.norm(b, axis=1), 1.0, atol=1e-5)
        assert float(np.sum(a * b, axis=1).min()) > 0.9999, role
    one = onnx_encoder.encode_queries([TEXTS[2]])
    assert float(one[0] @ torch_encoder.encode_queries([TEXTS[2]])[0]) > 0.9999
    # the query prompt is applied: a query is not its passage
    assert float(one[0] @ onnx_encoder.encode_passages([TEXTS[2]])[0]) < 0.995


def test_order_kept_across_length_sorted_batches(onnx_encoder):
    texts = [LONG, *TEXTS, "AI"]
    batched = onnx_encoder.encode_passages(texts, batch_size=2)
    for row, t in zip(batched, texts):
        assert float(row @ onnx_encoder.encode_passages([t])[0]) > 0.9999, t


def test_backend_has_its_own_cache_identity(onnx_encoder, torch_encoder, tmp_path):
    assert onnx_encoder.name == torch_encoder.name + "+onnx-fp32" == torch_encoder.name + backend_suffix(onnx_encoder)
    assert backend_suffix(torch_encoder) == ""
    assert (backend_of(onnx_encoder), backend_of(CachedEncoder(torch_encoder, EmbeddingCache(tmp_path / "x")))) \
        == ("onnx", "torch")
    cache = EmbeddingCache(tmp_path / "emb.sqlite")
    other = FakeEncoder()
    CachedEncoder(other, cache).encode_passages(TEXTS)
    renamed = FakeEncoder()
    renamed.name = other.name + "+onnx-fp32"
    again = CachedEncoder(renamed, cache)
    again.encode_passages(TEXTS)
    assert again.stats() == {"hits": 0, "misses": len(TEXTS)}  # never another encoder's vectors


def _linked_copy(src: Path, dest: Path) -> Path:
    """A model folder of symlinks to `src`'s files (weights are not copied), onnx/ included."""
    for p in src.rglob("*"):
        if p.is_file() and not p.name.startswith("."):
            target = dest / p.relative_to(src)
            target.parent.mkdir(parents=True, exist_ok=True)
            target.symlink_to(p)
    return dest


def test_a_changed_folder_invalidates_the_graph(e5_model_dir, onnx_encoder, tmp_path):
    folder = _linked_copy(e5_model_dir, tmp_path / "model")
    assert read_stamp(folder) is not None  # same contents, same stamp
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").unlink()
    (folder / "config.json").write_text(json.dumps({**config, "layer_norm_eps": 1e-6}))
    assert read_stamp(folder) is None


def test_adapted_version_loads_on_the_serving_backend(e5_model_dir, onnx_encoder, torch_encoder, tmp_path):
    folder = _linked_copy(e5_model_dir, tmp_path / "version")
    # as the service holds it: the metrics' timing wrapper inside the cache layer
    cached_onnx = CachedEncoder(TimedEncoder(onnx_encoder, lambda *_: None), EmbeddingCache(tmp_path / "emb.sqlite"))
    like_onnx = load_like(cached_onnx, folder)
    assert backend_of(like_onnx) == "onnx" and like_onnx.name.endswith("+onnx-fp32")
    assert read_stamp(folder) is not None and (folder / ONNX_DIR).is_dir()
    assert isinstance(load_like(torch_encoder, folder), SentenceTransformerEncoder)


def test_torch_serves_when_onnxruntime_is_missing(e5_model_dir, monkeypatch, caplog):
    monkeypatch.setitem(sys.modules, "onnxruntime", None)  # import onnxruntime -> ImportError
    with caplog.at_level(logging.WARNING, logger="scenematch.embedding"):
        encoder = load_encoder(str(e5_model_dir), e5_model_dir.parent, "onnx")
    assert isinstance(encoder, SentenceTransformerEncoder) and "+onnx" not in encoder.name
    assert "using torch" in caplog.text


def test_torch_serves_a_hub_name_and_unknown_backends_fail(monkeypatch, tmp_path, caplog):
    monkeypatch.setattr(emb, "SentenceTransformerEncoder", lambda p, name=None: ("st", p))
    with caplog.at_level(logging.WARNING, logger="scenematch.embedding"):
        assert load_encoder("BAAI/bge-small-zh-v1.5", tmp_path, "onnx") == ("st", "BAAI/bge-small-zh-v1.5")
    assert "needs a local model folder" in caplog.text
    with pytest.raises(ValueError):
        load_encoder(None, tmp_path, "tensorrt")


def test_int8_graph_is_per_channel_and_close_to_fp32(e5_model_dir, onnx_encoder):
    int8 = load_encoder(str(e5_model_dir), e5_model_dir.parent, "onnx-int8")
    stamp = read_stamp(e5_model_dir, "int8")
    assert stamp is not None and stamp["recipe"] == "int8pc"
    assert int8.name == onnx_encoder.name.replace("+onnx-fp32", "+onnx-int8pc") == \
        onnx_encoder.name.removesuffix("+onnx-fp32") + backend_suffix(int8)
    texts = [*TEXTS, LONG]
    cos = np.sum(int8.encode_passages(texts) * onnx_encoder.encode_passages(texts), axis=1)
    # per-tensor scales gave 0.987 on CSL texts; per-channel 0.997 (docs/benchmarks.md "Encoder")
    assert float(cos.mean()) > 0.993 and float(cos.min()) > 0.985, cos


def test_an_int8_graph_of_an_older_recipe_is_rebuilt(e5_model_dir, onnx_encoder, tmp_path):
    export_onnx(e5_model_dir, "int8")
    folder = _linked_copy(e5_model_dir, tmp_path / "model")
    assert read_stamp(folder, "int8") is not None
    stamp_file = folder / ONNX_DIR / "int8-scenematch-onnx.json"
    old = {k: v for k, v in json.loads(stamp_file.read_text()).items() if k != "recipe"}  # before per-channel
    stamp_file.unlink()
    stamp_file.write_text(json.dumps(old))
    assert read_stamp(folder, "int8") is None
