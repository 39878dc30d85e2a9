"""Starting the search engine for the app, in the background so /healthz answers at once."""
from __future__ import annotations

import logging
import threading
from functools import lru_cache
from pathlib import Path

from indexer.adaptation.adapt import serving_model
from indexer.ranking.hybrid import RankingModel
from indexer.ranking.matching import Matcher
from indexer.retrieval.embedding import CachedEncoder, EmbeddingCache, Encoder, load_encoder
from indexer.retrieval.engine import SearchEngine
from indexer.retrieval.reference import REFERENCE
from indexer.retrieval.replicas import BuilderRole
from indexer.retrieval.text import get_tokenizer
from models.locks import ProcessLock, lock_dir
from service.auto_adapt import AutoAdapter, Policy
from service.reports.rows import KeyTermCache
from service.state import AppState

log = logging.getLogger("scenematch.search")


@lru_cache(maxsize=4)
def shared_encoder(model: str | None, cache_dir: str, backend: str = "torch") -> Encoder:
    """One loaded model per process and backend (loading takes seconds and up to ~1 GB)."""
    return load_encoder(model, Path(cache_dir), backend)


def embedding_cache_path(cache_dir: Path) -> Path:
    return cache_dir / "embeddings.sqlite"


def open_engine(state: AppState) -> SearchEngine:
    settings = state.settings
    settings.cache_dir.mkdir(parents=True, exist_ok=True)
    # An adapted model version, when one is active, replaces the configured base model.
    model = serving_model(settings.data_dir, settings.embedding_model, settings.cache_dir)
    encoder = CachedEncoder(shared_encoder(model, str(settings.cache_dir), settings.encoder_backend),
                            EmbeddingCache(embedding_cache_path(settings.cache_dir)))
    # One builder among all replicas of this database and data dir (indexer/retrieval/replicas.py).
    role = BuilderRole(ProcessLock(state.engine, lock_dir(settings.data_dir), "index-builder"))
    dense_kind = "auto"
    if settings.vector_backend == "milvus":
        from indexer.retrieval import milvus  # pymilvus is imported only when it is used

        milvus.configure(settings.resolved_milvus_uri, settings.milvus_token)
        dense_kind = "milvus"
    return SearchEngine(settings.data_dir, state.sessions, encoder, get_tokenizer(),
                        list(state.taxonomy.domains), builder_role=role, dense_kind=dense_kind)


def start_search(state: AppState, background: bool = True) -> threading.Thread | None:
    """Load or build the index, then mark the app ready and keep the index fresh."""

    def run() -> None:
        try:
            state.extras["not_ready_reason"] = "loading the embedding model and the index"
            engine = open_engine(state)
            for hook in state.extras.get("engine_hooks", ()):  # e.g. metrics timing the encoder
                hook(engine)
            state.extras["engine"] = engine
            engine.open(build_if_missing=True)
            names = {c: d.name for c, d in state.taxonomy.domains.items()}
            # Explaining a page extracts the query's key terms once per match (jieba: most of a
            # request's time); remembering them serves the other nine (docs/benchmarks.md).
            state.extras["matcher"] = Matcher(engine, RankingModel.load(), KeyTermCache(engine.tokenizer), names)
            state.extras["on_change"] = engine.notify
            engine.start_refresher(state.settings.refresh_interval_s)
            state.engine_ready = True
            # The classifier's seed examples, embedded while the service already answers.
            REFERENCE.warm(engine.encoder, list(state.taxonomy.domains))
            auto = state.extras["auto_adapter"] = AutoAdapter(state, Policy.from_settings(state.settings))
            auto.start()
            log.info("search ready: index %s", engine.snapshot.version if engine.snapshot else None)
        except Exception as exc:  # readiness stays 503 with the reason; the process lives on
            log.exception("search engine failed to start")
            state.extras["not_ready_reason"] = f"index failed to load: {type(exc).__name__}"

    if not background:
        run()
        return None
    thread = threading.Thread(target=run, name="search-start", daemon=True)
    thread.start()
    return thread


def stop_search(state: AppState) -> None:
    auto = state.extras.get("auto_adapter")
    if auto is not None:
        auto.stop()
    engine = state.extras.get("engine")
    if engine is not None:
        engine.close()
