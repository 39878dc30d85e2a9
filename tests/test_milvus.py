"""The Milvus vector backend on milvus-lite: the DenseIndex contract, aliases, and the service.

The same client code runs against a Milvus server or cluster (SCENEMATCH_MILVUS_URI=http://…);
CI runs the embedded milvus-lite.
"""
from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from indexer.retrieval import milvus
from indexer.retrieval.dense import DenseIndex, FlatIndex, create_dense_index
from service.app import create_app
from service.demo import DEMO_DIR, read_jsonl
from tests.conftest import ADMIN_H, make_settings, wait_ready


@pytest.fixture
def lite(tmp_path: Path) -> Iterator[Path]:
    milvus.configure(str(tmp_path / "milvus.db"), prefix=f"t{tmp_path.name[-6:].replace('-', '')}")
    yield tmp_path


def unit(n: int, dim: int, seed: int) -> np.ndarray:
    x = np.random.default_rng(seed).standard_normal((n, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


def test_milvus_index_answers_like_exact_faiss_with_filters_and_persists(lite: Path) -> None:
    vectors, queries = unit(3000, 64, 1), unit(5, 64, 2)
    ids = np.arange(3000, dtype=np.int64)
    index, exact = create_dense_index(len(ids), 64, kind="milvus"), FlatIndex(64)
    index.build(vectors, ids)
    exact.build(vectors, ids)
    rng = np.random.default_rng(3)
    for share in (1.0, 0.7, 0.05):  # no filter; "row not in" a few; "row in" a few
        mask = rng.random(len(ids)) < share
        mask[0] = True
        got_s, got = index.search(queries, 10, allowed_rows=None if share == 1.0 else mask)
        want_s, want = exact.search(queries, 10, allowed_rows=None if share == 1.0 else mask)
        assert (got == want).all(), (share, got, want)
        assert np.allclose(got_s, want_s, atol=1e-4)
        assert mask[got[got >= 0]].all()
    none = np.zeros(len(ids), bool)
    assert (index.search(queries, 10, allowed_rows=none)[1] == -1).all()
    # Saved as a reference to its collection: loading it searches the same vectors.
    index.save(lite / "dense")
    loaded = DenseIndex.load(lite / "dense")
    assert loaded.kind == "milvus" and len(loaded) == 3000
    assert (loaded.search(queries, 10)[1] == exact.search(queries, 10)[1]).all()
    assert np.allclose(loaded.reconstruct([5, 7]), vectors[[5, 7]], atol=1e-6)
    # Upsert and delete, as the interface promises.
    loaded.add(-vectors[:1], [0])
    assert loaded.search(-vectors[:1], 1)[1][0, 0] == 0 and loaded.remove([0, 1]) == 2 and len(loaded) == 2998


def test_the_alias_follows_the_served_collection_and_unreferenced_ones_are_dropped(lite: Path) -> None:
    first, second = (create_dense_index(100, 16, kind="milvus") for _ in range(2))
    first.build(unit(100, 16, 4), np.arange(100))
    second.build(unit(100, 16, 5), np.arange(100))
    client = milvus.client()
    first.serve_as("capabilities")
    alias = f"{milvus._settings['prefix']}_capabilities"
    assert client.describe_alias(alias)["collection_name"] == first.collection
    second.serve_as("capabilities")
    assert client.describe_alias(alias)["collection_name"] == second.collection
    (lite / "index" / "v2" / "capabilities").mkdir(parents=True)
    second.save(lite / "index" / "v2" / "capabilities" / "dense")
    assert milvus.drop_unreferenced(lite / "index") == [first.collection]
    assert second.collection in client.list_collections()


def matches(client: TestClient, need_id: str) -> list[str]:
    r = client.get(f"/v1/needs/{need_id}/matches", params={"limit": 10})
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["items"]]


def test_the_service_on_milvus_lite_matches_like_the_faiss_service(tmp_path: Path, demo_client: TestClient) -> None:
    settings = make_settings(tmp_path, None, load_demo=True, build_index_on_start=True,
                             vector_backend="milvus", milvus_uri=str(tmp_path / "milvus.db"))
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        status = client.get("/v1/admin/index", headers=ADMIN_H).json()
        assert status["vector_backend"] == {"name": "milvus", "deployment": "lite"}
        assert status["index_types"]["dense"]["capabilities"]["type"] == "milvus"
        assert demo_client.get("/v1/admin/index", headers=ADMIN_H).json()["vector_backend"]["name"] == "faiss"
        needs = [n["id"] for n in read_jsonl(DEMO_DIR / "needs") if n.get("visibility") != "restricted"][:40]
        overlaps = [len(set(matches(client, n)) & set(matches(demo_client, n))) / 10 for n in needs]
    assert np.mean(overlaps) >= 0.9, overlaps
