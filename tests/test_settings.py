"""Settings read from SCENEMATCH_* variables, and the ones applied process-wide at start."""
from __future__ import annotations

import pytest
from pydantic import ValidationError

from indexer.embedding import QUERY_GATE, usable_cores
from service.app import init_state
from service.search import open_engine
from service.settings import Settings
from tests.conftest import make_settings


@pytest.mark.parametrize("value, limit", [("3", 3), ("0", 0), ("", None)])
def test_encoder_concurrency_from_the_environment(monkeypatch, value: str, limit: int | None):
    monkeypatch.setenv("SCENEMATCH_ENCODER_CONCURRENCY", value)
    if value == "":
        monkeypatch.delenv("SCENEMATCH_ENCODER_CONCURRENCY")
    assert Settings().encoder_concurrency == limit


def test_a_negative_encoder_concurrency_is_refused_by_name(monkeypatch):
    monkeypatch.setenv("SCENEMATCH_ENCODER_CONCURRENCY", "-1")
    with pytest.raises(ValidationError, match="encoder_concurrency"):
        Settings()


@pytest.mark.slow
@pytest.mark.parametrize("setting, limit", [(3, 3), (None, 2 * usable_cores())])
def test_opening_the_engine_sizes_the_query_gate(tmp_path, setting: int | None, limit: int):
    state = init_state(make_settings(tmp_path, encoder_concurrency=setting))
    try:
        QUERY_GATE.set_limit(1)
        open_engine(state)
        assert QUERY_GATE.limit == limit
    finally:
        QUERY_GATE.set_limit(None)
        state.engine.dispose()
