"""Batch embedding through Ray Data: the encoder for full builds beyond one machine.

`RayEncoder` is an `Encoder` like the in-process one, so the builder is unchanged: the texts
a build embeds become a Ray dataset, `map_batches` sends them through a pool of actors that
each hold one loaded copy of the same model, and the vectors come back in input order into
the version being built. Each actor embeds its batch with the in-process encoder itself, on
its backend, so the vectors are those of an in-process build up to batching: texts meet other
batch neighbours (fp32 agrees to float rounding; int8 scales activations per batch, cosine > 0.995).

Without an address, Ray starts locally bound to 127.0.0.1 (it listens on every interface by
default: see `loopback_only`) with its own temp dir, and is shut down when the encoder is closed. With one, it
joins that cluster: every node must have scenematch and the model at the same path.
On 2 cores Ray is slower than one process (docs/scaling.md); it is the path to many machines.
"""
from __future__ import annotations

import logging
import os
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

from indexer.retrieval.embedding import Encoder, Progress, backend_of, load_encoder

log = logging.getLogger("scenematch.ray")
PROJECT_ROOT = Path(__file__).resolve().parents[2]
#: Texts per actor call: large enough to amortise Ray's per-task cost, small enough to stream.
RAY_BATCH = 256


def loopback_only() -> None:
    """Keep a local Ray on 127.0.0.1. Ray 2.60 replaces a loopback `_node_ip_address` by the
    host's routable address and its servers then listen on every interface; its single-machine
    mode (the one it uses on macOS and Windows) takes 127.0.0.1 as the node address, and every
    server binds there. The variable reaches Ray's own processes; the constant is set too in
    case ray was imported before."""
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    from ray._private import ray_constants

    ray_constants.ENABLE_RAY_CLUSTER = False


class _EmbedActor:
    """One loaded model per actor (Ray constructs it once and feeds it batches), on the backend the
    build's own encoder runs on: its vectors carry that encoder's name."""

    def __init__(self, model: str | None, cache_dir: str, role: str, backend: str):
        self.encoder = load_encoder(model, Path(cache_dir), backend)
        self.role = role

    def __call__(self, batch: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
        texts = [str(t) for t in batch["text"]]
        vectors = (self.encoder.encode_queries(texts) if self.role == "query"
                   else self.encoder.encode_passages(texts))
        return {"i": batch["i"], "vector": vectors}


class RayEncoder(Encoder):
    def __init__(self, base: Encoder, model: str | None, cache_dir: Path, address: str | None = None,
                 actors: int = 1, num_cpus: int | None = None):
        if not address:
            loopback_only()
        import ray

        self.name, self.dim = base.name, base.dim  # the same model: its versions serve as in-process ones
        self.model, self.cache_dir, self.actors = model, str(cache_dir), actors
        self.backend = backend_of(base)  # torch, onnx or onnx-int8, as in process
        self._temp: tempfile.TemporaryDirectory[str] | None = None
        if address:
            ray.init(address=address, logging_level=logging.WARNING, log_to_driver=False)
        else:
            # Short path: Ray's socket names must stay under the 107-byte limit.
            self._temp = tempfile.TemporaryDirectory(prefix="smray-", dir="/tmp")
            ray.init(include_dashboard=False, _temp_dir=self._temp.name,
                     num_cpus=num_cpus or os.cpu_count() or 1, logging_level=logging.WARNING,
                     log_to_driver=False, configure_logging=False,
                     runtime_env={"env_vars": {"PYTHONPATH": str(PROJECT_ROOT)}})
        ray.data.DataContext.get_current().enable_progress_bars = False

    def _run(self, texts: list[str], role: str, progress: Progress | None) -> np.ndarray:
        import ray

        if not texts:
            return self._empty()
        dataset = ray.data.from_items([{"i": i, "text": t} for i, t in enumerate(texts)])
        embedded = dataset.map_batches(
            _EmbedActor, fn_constructor_kwargs={"model": self.model, "cache_dir": self.cache_dir, "role": role,
                                   "backend": self.backend},
            batch_size=RAY_BATCH, concurrency=self.actors, batch_format="numpy", num_cpus=1)
        out = np.empty((len(texts), self.dim), np.float32)
        done = 0
        for batch in embedded.iter_batches(batch_size=RAY_BATCH, batch_format="numpy"):
            out[batch["i"]] = np.stack(batch["vector"]).astype(np.float32)
            done += len(batch["i"])
            if progress is not None:
                progress(done, len(texts))
        return out

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._run(texts, "query", None)

    def encode_passages(self, texts: list[str], batch_size: int | None = None,
                        progress: Progress | None = None) -> np.ndarray:
        return self._run(texts, "passage", progress)

    def close(self) -> None:
        import ray

        ray.shutdown()
        if self._temp is not None:
            self._temp.cleanup()

    def __enter__(self) -> "RayEncoder":
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()
