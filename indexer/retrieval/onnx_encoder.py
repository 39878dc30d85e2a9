"""The sentence encoder on ONNX Runtime: the same model folder, exported by models/onnx_model.py.

Tokenizing (the folder's own tokenizer.json, the model's prompts) happens here; pooling and
normalisation are inside the graph. Batches are sorted by token count so each pads to similar
lengths. The vectors carry their own name (`<torch name>+onnx-<recipe>`), so the embedding
cache and index manifests never mix them with the torch encoder's.
"""
from __future__ import annotations

import json
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from indexer.retrieval.embedding import PASSAGE, QUERY, Encoder, Progress, folder_identity
from models.onnx_model import RECIPES, export_onnx, read_stamp

_PASSAGE_PROMPT_NAMES = (PASSAGE, "document", "corpus")
# Small batches run fastest here, even sorted by length: texts/s at batch 4 was 1.2-1.5x batch 32
# for fp32 and int8 on CSL and realistic texts (docs/benchmarks.md "Encoder"): the attention scores of a
# batch (batch x 12 heads x tokens^2 floats, 60 MB at 32 x 200 tokens) then stay in cache.
_BATCH = 4


def _prompts(folder: Path) -> dict[str, str]:
    try:
        config = json.loads((folder / "config_sentence_transformers.json").read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return {k: v for k, v in (config.get("prompts") or {}).items() if isinstance(v, str)}


def _max_length(folder: Path) -> int:
    try:
        return int(json.loads((folder / "sentence_bert_config.json").read_text(encoding="utf-8"))["max_seq_length"])
    except (OSError, ValueError, KeyError, TypeError):
        return 512


class OnnxEncoder(Encoder):
    """A sentence-transformers model folder (BERT-like, mean pooling) run by ONNX Runtime on CPU."""

    def __init__(self, folder: Path, quantization: str = "fp32", threads: int | None = None):
        import onnxruntime as ort
        from tokenizers import Tokenizer

        folder = Path(folder)
        graph = export_onnx(folder, quantization)  # built at set-up; found and checked here
        stamp = read_stamp(folder, quantization) or {}
        options = ort.SessionOptions()
        options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
        options.intra_op_num_threads = threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        # Busy-waiting workers take a core from whatever else runs (jieba, the web server, other
        # processes); torch is told the same through OMP_WAIT_POLICY=PASSIVE (docs/reliability.md).
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        self.session = ort.InferenceSession(str(graph), options, providers=["CPUExecutionProvider"])
        self.tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
        self.tokenizer.no_padding()
        self.tokenizer.enable_truncation(_max_length(folder))
        self.pad_id = self.tokenizer.token_to_id("<pad>") or 0
        prompts = _prompts(folder)
        self.query_prompt = prompts.get(QUERY, "")
        self.passage_prompt = next((prompts[p] for p in _PASSAGE_PROMPT_NAMES if prompts.get(p)), "")
        self.quantization = quantization
        self.graph_sha256 = stamp.get("graph_sha256", "")
        self.name = f"{folder_identity(folder)}+onnx-{RECIPES[quantization]}"
        self.dim = int(self.session.get_outputs()[0].shape[-1] or self._probe_dim())

    def _probe_dim(self) -> int:
        return int(self._run([self.tokenizer.encode("x").ids]).shape[1])

    def _run(self, ids: list[list[int]]) -> np.ndarray:
        width = max(len(row) for row in ids)
        input_ids = np.full((len(ids), width), self.pad_id, dtype=np.int64)
        mask = np.zeros((len(ids), width), dtype=np.int64)
        for r, row in enumerate(ids):
            input_ids[r, :len(row)] = row
            mask[r, :len(row)] = 1
        (out,) = self.session.run(None, {"input_ids": input_ids, "attention_mask": mask})
        return np.asarray(out, dtype=np.float32)

    def _encode(self, texts: Sequence[str], prompt: str, batch_size: int,
                progress: Progress | None) -> np.ndarray:
        n = len(texts)
        if n == 0:
            return self._empty()
        # rstrip: the transformers tokenizer sentence-transformers runs drops trailing whitespace
        # (the tokenizers library would keep a final "▁"), so both see the same tokens.
        ids = [e.ids for e in self.tokenizer.encode_batch([(prompt + t).rstrip() for t in texts])]
        # Longest first by token count: each batch pads to similar lengths.
        order = sorted(range(n), key=lambda i: len(ids[i]), reverse=True)
        out = np.empty((n, self.dim), dtype=np.float32)
        for start in range(0, n, batch_size):
            idx = order[start:start + batch_size]
            out[idx] = self._run([ids[i] for i in idx])
            if progress is not None:
                progress(min(start + batch_size, n), n)
        return out

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._encode(texts, self.query_prompt, _BATCH, None)

    def encode_passages(self, texts: list[str], batch_size: int | None = None,
                        progress: Progress | None = None) -> np.ndarray:
        return self._encode(texts, self.passage_prompt, batch_size or _BATCH, progress)


__all__ = ["OnnxEncoder"]
