"""An ONNX Runtime copy of a sentence-transformers model folder, built offline beside it.

The export reads the folder's own weights (the rebuilt e5 of models/embedding_model.py, or an
adapted model version), never a model hub. The graph takes ``input_ids`` and ``attention_mask``
and returns the mean-pooled, L2-normalised sentence vector, as the folder's Pooling and
Normalize modules compute it, so tokenizing is all that is left outside the graph.

It is stamped with what it was made from (a hash of the folder's configs and weights, the
export settings, the torch/onnx versions) and the sha256 of the graph file; a stamp that no
longer matches means a rebuild, so a changed model can never be served by a stale graph.
"""
from __future__ import annotations

import fcntl
import hashlib
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

from models.fsutil import fsync_path, replace_synced, write_synced

ONNX_DIR = "onnx"
STAMP_NAME = "scenematch-onnx.json"
# Bump when the export (graph inputs/outputs, pooling, opset) changes: older graphs are rebuilt.
EXPORT_VERSION = 1
OPSET = 17
QUANTIZATIONS = ("fp32", "int8")
# How each graph is made; part of its stamp and of the encoder's name, so vectors of an older recipe
# (int8 was per-tensor until 2026-12) are never served or reused from the embedding cache. Per-channel
# scales keep int8 vectors at cosine 0.997 to fp32 instead of 0.987 (docs/benchmarks.md "Encoder").
RECIPES = {"fp32": "fp32", "int8": "int8pc"}


class OnnxExportError(RuntimeError):
    """The ONNX graph could not be built (missing packages, export failure)."""


def _hash_file(h: "hashlib._Hash", path: Path) -> None:
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)


def source_hash(model_dir: Path) -> str:
    """sha256 over the folder's files the graph is made from (weights, configs, tokenizer).

    Hashing ~470 MB takes about a second, done once per process start, against a silently
    stale graph after a weights swap."""
    h = hashlib.sha256(f"export={EXPORT_VERSION}|opset={OPSET}".encode())
    for p in sorted(Path(model_dir).rglob("*")):
        rel = p.relative_to(model_dir).as_posix()
        if not p.is_file() or rel.startswith(ONNX_DIR + "/") or p.name.startswith("."):
            continue
        if p.suffix in (".json", ".safetensors", ".bin", ".txt", ".model"):
            h.update(rel.encode() + b"\0")
            _hash_file(h, p)
    return h.hexdigest()


def graph_path(model_dir: Path, quantization: str = "fp32") -> Path:
    return Path(model_dir) / ONNX_DIR / f"model-{quantization}.onnx"


def read_stamp(model_dir: Path, quantization: str = "fp32") -> dict | None:
    """The stamp of a complete graph for this folder's current contents, else None."""
    path = Path(model_dir) / ONNX_DIR / f"{quantization}-{STAMP_NAME}"
    try:
        stamp = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    graph = graph_path(model_dir, quantization)
    if not isinstance(stamp, dict) or not graph.is_file() or stamp.get("source") != source_hash(model_dir):
        return None
    if stamp.get("recipe", "fp32" if quantization == "fp32" else None) != RECIPES[quantization]:
        return None
    return stamp


def _export_fp32(model_dir: Path, dest: Path) -> None:
    import torch
    from transformers import AutoModel

    class Pooled(torch.nn.Module):
        """Transformer, mean pooling over real tokens, L2 normalisation (the folder's modules)."""

        def __init__(self, bert: torch.nn.Module):
            super().__init__()
            self.bert = bert

        def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
            tokens = self.bert(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
            mask = attention_mask.unsqueeze(-1).to(tokens.dtype)
            mean = (tokens * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
            return torch.nn.functional.normalize(mean, p=2, dim=1)

    # eager attention traces into plain MatMul/Softmax that every ONNX Runtime build runs.
    bert = AutoModel.from_pretrained(str(model_dir), attn_implementation="eager")
    model = Pooled(bert).eval()
    ids = torch.tensor([[0, 6, 7, 8, 2], [0, 9, 2, 1, 1]], dtype=torch.long)
    mask = (ids != 1).long()
    with torch.inference_mode():
        torch.onnx.export(
            model, (ids, mask), str(dest), input_names=["input_ids", "attention_mask"],
            output_names=["sentence_embedding"], opset_version=OPSET, dynamo=False,
            dynamic_axes={"input_ids": {0: "batch", 1: "tokens"}, "attention_mask": {0: "batch", 1: "tokens"},
                          "sentence_embedding": {0: "batch"}})


def _quantize_int8(fp32: Path, dest: Path) -> None:
    from onnxruntime.quantization import QuantType, quantize_dynamic

    # Per output channel: one scale per weight column instead of one per matrix. On this CPU (AVX2,
    # no VNNI) it is as fast, and reduce_range (7-bit weights) lost accuracy instead of gaining it.
    quantize_dynamic(str(fp32), str(dest), weight_type=QuantType.QInt8, per_channel=True)


def export_onnx(model_dir: Path, quantization: str = "fp32") -> Path:
    """Build (or reuse) the graph for `model_dir`; returns its path. Safe to call from several
    processes at once: the first builds under a lock, the others then find the stamp."""
    if quantization not in QUANTIZATIONS:
        raise OnnxExportError(f"unknown ONNX quantization {quantization!r}; one of {QUANTIZATIONS}")
    model_dir = Path(model_dir)
    if read_stamp(model_dir, quantization) is not None:
        return graph_path(model_dir, quantization)
    try:
        import onnx
        import onnxruntime
        import torch
    except ImportError as exc:
        raise OnnxExportError(f"the ONNX export needs onnx and onnxruntime: {exc}") from exc
    out_dir = model_dir / ONNX_DIR
    out_dir.mkdir(parents=True, exist_ok=True)
    with open(out_dir / f".{quantization}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if read_stamp(model_dir, quantization) is not None:
            return graph_path(model_dir, quantization)
        t0 = time.monotonic()
        tmp = Path(tempfile.mkdtemp(prefix=".export-", dir=out_dir))
        try:
            fp32 = tmp / "model-fp32.onnx"
            if quantization == "fp32":
                _export_fp32(model_dir, fp32)
                built = fp32
            else:
                # The int8 graph is quantized from the (current) fp32 one.
                shutil.copyfile(export_onnx(model_dir, "fp32"), fp32)
                built = tmp / f"model-{quantization}.onnx"
                _quantize_int8(fp32, built)
            onnx.checker.check_model(str(built))
            fsync_path(built)
            digest = hashlib.sha256()
            _hash_file(digest, built)
            stamp = {"export_version": EXPORT_VERSION, "quantization": quantization, "recipe": RECIPES[quantization],
                     "opset": OPSET,
                     "source": source_hash(model_dir), "graph_sha256": digest.hexdigest(),
                     "torch": torch.__version__, "onnx": onnx.__version__, "onnxruntime": onnxruntime.__version__,
                     "built_at": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
                     "build_seconds": round(time.monotonic() - t0, 2)}
            os.chmod(built, 0o644)
            replace_synced(built, graph_path(model_dir, quantization))
            # The stamp last: a graph without a matching stamp is never used.
            write_synced(out_dir / f"{quantization}-{STAMP_NAME}", (json.dumps(stamp, indent=2) + "\n").encode())
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
    return graph_path(model_dir, quantization)


__all__ = ["OnnxExportError", "QUANTIZATIONS", "RECIPES", "export_onnx", "graph_path", "read_stamp", "source_hash"]
