"""Ranking internals that the matching tests only see through the API."""
from __future__ import annotations

import math
import shutil
import types
from pathlib import Path

import numpy as np

from indexer import adapt_ranking
from indexer.matching import Matcher
from indexer.ranking import SIGNALS, RankingModel, RankingModels, best_passages
from models import model_versions as mv
from service.demo import demo_labels


def test_best_passages_is_the_best_cosine_per_row_or_the_whole_text():
    rng = np.random.default_rng(0)
    lengths = rng.integers(0, 6, 50)
    offsets = np.concatenate([[0], np.cumsum(lengths)])
    passages = rng.normal(size=(offsets[-1], 8)).astype(np.float32)
    docs = rng.normal(size=(50, 8)).astype(np.float32)
    seg = types.SimpleNamespace(passage_offsets=offsets, passage_vectors=passages, doc_vectors=docs)
    vector = rng.normal(size=8).astype(np.float32)
    rows = np.array([3, 1, 7, 20, 49, 0, 3])
    assert {0, 1, 3, 5} <= set(lengths[rows].tolist())  # no passage, one, several
    got = best_passages(seg, rows, vector, docs[rows] @ vector)
    expected = [(passages[offsets[r]:offsets[r + 1]] @ vector).max() if lengths[r] else docs[r] @ vector
                for r in rows]
    assert np.allclose(got, expected, atol=1e-6)
    assert best_passages(seg, rows[:0], vector, docs[rows[:0]] @ vector).shape == (0,)


# ---- weights per encoder ----------------------------------------------------------------------
SHIPPED = RankingModel(weights=dict.fromkeys(SIGNALS, 1.0), bias=-1.0)


def version_with(root: Path, version: str, model: str, ranking: dict | None) -> None:
    mv.temp_folder(root, version)
    mv.commit_version(root, version, {"model": model, "ranking": ranking})


def test_a_model_version_ranks_with_its_own_weights_and_others_with_the_default(tmp_path: Path):
    root = tmp_path / "models"
    own = RankingModel(weights={s: float(i + 2) for i, s in enumerate(SIGNALS)}, bias=-7.0, info={"fitted": True})
    version_with(root, "m1", "e5+m1@abc", own.to_dict())
    version_with(root, "m2", "e5+m2@def", None)  # judged with the shipped weights
    models = RankingModels(SHIPPED, root)
    assert models.for_model("e5+m1@abc") == own
    assert models.for_model("e5+m2@def") is SHIPPED
    assert models.for_model("e5@base") is SHIPPED
    assert RankingModels(SHIPPED, tmp_path / "none").for_model("e5+m1@abc") is SHIPPED
    # Versions never change once committed: a name is read from disk once.
    shutil.rmtree(root)
    assert models.for_model("e5+m1@abc") == own


def test_matches_are_scored_and_explained_with_the_snapshot_models_weights(demo_client, tmp_path: Path):
    engine = demo_client.app.state.scenematch.extras["engine"]
    names = {c: d.name for c, d in demo_client.app.state.scenematch.taxonomy.domains.items()}
    shipped = RankingModel.load()
    matcher = Matcher(engine, shipped, engine.tokenizer, names)
    page = matcher.match_record("need", "N-smart_water-001", filters=None, include_restricted=False,
                                limit=5, offset=0)
    assert page.ranking is shipped  # the base model: the shipped weights

    lexical_only = RankingModel(weights={**dict.fromkeys(SIGNALS, 0.0), "lexical": 10.0}, bias=-3.0)
    version_with(tmp_path, "m1", engine.snapshot.model, lexical_only.to_dict())
    matcher.rankings = RankingModels(shipped, tmp_path)
    page = matcher.match_record("need", "N-smart_water-001", filters=None, include_restricted=False,
                                limit=5, offset=0)
    assert page.ranking == lexical_only
    lexical = [h.signals["lexical"] for h in page.hits]
    assert lexical == sorted(lexical, reverse=True)  # ranked by the version's weights alone
    for hit in page.hits:
        assert abs(hit.score - 1 / (1 + math.exp(3.0 - 10.0 * hit.signals["lexical"]))) < 1e-9
        explained = matcher.explain_hit(page, hit, None, types.SimpleNamespace(title="t"))
        assert explained["bias"] == -3.0 and explained["signals"]["lexical"]["weight"] == 10.0


def test_weights_are_fitted_on_the_given_labels_only_when_there_are_enough(demo_client):
    snapshot = demo_client.app.state.scenematch.extras["engine"].snapshot
    labels = {(r["need_id"], r["capability_id"]): int(r["grade"]) for r in demo_labels()}
    fitted = adapt_ranking.fit(snapshot, labels)
    assert fitted is not None and set(fitted.weights) == set(SIGNALS)
    assert fitted.weights["dense"] > 0 and fitted.weights["lexical"] > 0
    assert fitted.info["queries"] >= adapt_ranking.MIN_QUERIES and fitted.info["model"] == snapshot.model
    needs = sorted({n for n, _ in labels})[:adapt_ranking.MIN_QUERIES - 1]
    assert adapt_ranking.fit(snapshot, {k: g for k, g in labels.items() if k[0] in needs}) is None
    negatives_only = {k: 0 for k in labels}
    assert adapt_ranking.fit(snapshot, negatives_only) is None
