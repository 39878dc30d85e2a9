"""Ranking internals that the matching tests only see through the API."""
from __future__ import annotations

import math
import shutil
import types
from pathlib import Path

import numpy as np

from indexer.adaptation import weights as adapt_ranking
from indexer.ranking.hybrid import FEATURES, SIGNALS, STANDARDIZED, RankingModel, RankingModels, best_passages, standardize
from indexer.ranking.matching import Matcher
from indexer.retrieval.segment import Filters
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


def test_signals_are_standardized_among_the_querys_candidates_and_raw_values_kept():
    rng = np.random.default_rng(1)
    features = {"dense": rng.normal(0.88, 0.02, 50), "passage": rng.normal(0.9, 0.02, 50),
                "lexical": rng.uniform(0, 1, 50), "domain": rng.integers(0, 2, 50).astype(float)}
    before = {k: v.copy() for k, v in features.items()}
    standardize(features)
    for name in STANDARDIZED:
        assert np.allclose(features[f"{name}_raw"], before[name])
        assert abs(features[name].mean()) < 1e-9 and abs(features[name].std() - 1.0) < 1e-9
        assert (np.argsort(features[name]) == np.argsort(before[name])).all()  # order kept
    assert np.array_equal(features["domain"], before["domain"]) and "domain_raw" not in features
    # An encoder whose cosines sit elsewhere (an adapted one) gives the same z-scores.
    moved = {**before, "dense": (before["dense"] - 0.88) * 5 + 0.35}
    standardize(moved)
    assert np.allclose(moved["dense"], features["dense"])
    # One candidate, or all alike: nothing stands out.
    flat = {"dense": np.full(3, 0.9), "passage": np.array([0.5]), "lexical": np.zeros(2)}
    standardize(flat)
    assert not flat["dense"].any() and not flat["passage"].any() and not flat["lexical"].any()


# ---- weights per encoder ----------------------------------------------------------------------
SHIPPED = RankingModel(weights=dict.fromkeys(SIGNALS, 1.0), bias=-1.0)


def version_with(root: Path, version: str, model: str, ranking: dict | None) -> None:
    mv.temp_folder(root, version)
    mv.commit_version(root, version, {"model": model, "ranking": ranking})


def test_a_model_version_ranks_with_its_own_weights_and_others_with_the_default(tmp_path: Path):
    root = tmp_path / "models"
    own = RankingModel(weights={s: float(i + 2) for i, s in enumerate(SIGNALS)}, bias=-7.0,
                       info={"fitted": True, "features": FEATURES})
    version_with(root, "m1", "e5+m1@abc", own.to_dict())
    version_with(root, "m2", "e5+m2@def", None)  # judged with the shipped weights
    # Weights fitted on raw cosines (before z-scores) must not multiply z-scores: the default serves.
    raw_era = RankingModel(weights=dict.fromkeys(SIGNALS, 30.0), bias=-60.0, info={"fitted": True})
    version_with(root, "m3", "e5+m3@ghi", raw_era.to_dict())
    models = RankingModels(SHIPPED, root)
    assert models.for_model("e5+m1@abc") == own and models.source("e5+m1@abc") == "model_version"
    assert models.for_model("e5+m2@def") is SHIPPED
    assert models.for_model("e5+m3@ghi") is SHIPPED and models.source("e5+m3@ghi") == "shipped"
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

    lexical_only = RankingModel(weights={**dict.fromkeys(SIGNALS, 0.0), "lexical": 10.0}, bias=-3.0,
                                info={"features": FEATURES})
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
    assert fitted.weights["passage"] > 0 and fitted.weights["lexical"] > 0 and fitted.weights["dense"] == 0.0
    assert fitted.info["features"] == FEATURES
    assert fitted.info["queries"] >= adapt_ranking.MIN_QUERIES and fitted.info["model"] == snapshot.model
    needs = sorted({n for n, _ in labels})[:adapt_ranking.MIN_QUERIES - 1]
    assert adapt_ranking.fit(snapshot, {k: g for k, g in labels.items() if k[0] in needs}) is None
    negatives_only = {k: 0 for k in labels}
    assert adapt_ranking.fit(snapshot, negatives_only) is None


# ---- pairs whose domain agreement is unknown ---------------------------------------------------
def test_a_need_with_predicted_domains_is_scored_by_the_untagged_model(demo_client):
    """Its domains are shown as predicted, never ranked on: the other signals' model scores it."""
    engine = demo_client.app.state.scenematch.extras["engine"]
    names = {c: d.name for c, d in demo_client.app.state.scenematch.taxonomy.domains.items()}
    shipped = RankingModel.load()
    assert shipped.untagged is not None and shipped.untagged.weights["domain"] == 0.0
    matcher = Matcher(engine, shipped, engine.tokenizer, names)
    seg, row = engine.snapshot.locate("need", "N-smart_water-001")
    tagged = matcher.match_record("need", "N-smart_water-001", filters=None, include_restricted=False,
                                  limit=10, offset=0)
    assert all(h.signals["domain_known"] == 1.0 for h in tagged.hits)
    seg.domain_predicted[row] = True  # as if the client had sent no domain and it was predicted
    try:
        page = matcher.match_record("need", "N-smart_water-001", filters=None, include_restricted=False,
                                    limit=10, offset=0)
        explained = [matcher.explain_hit(page, h, None, types.SimpleNamespace(title="t")) for h in page.hits]
    finally:
        seg.domain_predicted[row] = False
    untagged = shipped.untagged
    for hit, exp in zip(page.hits, explained):
        assert hit.signals["domain_known"] == 0.0
        logit = untagged.bias + sum(untagged.weights[s] * hit.signals[s] for s in SIGNALS)
        assert abs(hit.logit - logit) < 1e-9 and abs(hit.score - 1 / (1 + math.exp(-logit))) < 1e-9
        assert exp["bias"] == untagged.bias and exp["signals"]["dense"]["weight"] == untagged.weights["dense"]
        assert exp["signals"]["domain"]["contribution"] == 0.0 and "未由发布方标注" in exp["signals"]["domain"]["label"]
        assert abs(exp["bias"] + math.fsum(s["contribution"] for s in exp["signals"].values()) - exp["logit"]) < 1e-4
        dom = exp["domain_match"]
        assert dom["query_domains_predicted"] is True and dom["counted_in_score"] is False
        if dom["shared"]:
            assert "经系统预测同属" in exp["summary"]
    assert any(e["domain_match"]["shared"] for e in explained)
    # The untagged page is ranked by the untagged model's logits (checked per hit above), i.e. by the
    # other signals alone: its weights are fitted on their own, not the shipped ones minus the domain.
    assert [h.id for h in page.hits] == [h.id for h in sorted(page.hits, key=lambda h: (-h.logit, h.id))]


def test_free_text_without_a_domain_filter_is_scored_by_the_untagged_model(demo_client):
    engine = demo_client.app.state.scenematch.extras["engine"]
    names = {c: d.name for c, d in demo_client.app.state.scenematch.taxonomy.domains.items()}
    shipped = RankingModel.load()
    matcher = Matcher(engine, shipped, engine.tokenizer, names)
    free = matcher.search("城市内涝监测预警", "capability", filters=None, include_restricted=False, limit=10, offset=0)
    assert free.hits and all(h.signals["domain_known"] == 0.0 for h in free.hits)
    assert all(abs(h.logit - (shipped.untagged.bias + sum(shipped.untagged.weights[s] * h.signals[s]
                                                          for s in SIGNALS))) < 1e-9 for h in free.hits)
    water = Filters(domain=["smart_water"], region=[], org_type=[], status=[])
    chosen = matcher.search("城市内涝监测预警", "capability", filters=water, include_restricted=False,
                            limit=10, offset=0)
    # A domain the caller chose is a client-given domain: the full model, the domain counted.
    assert chosen.hits and all(h.signals["domain_known"] == 1.0 and h.signals["domain"] == 1.0 for h in chosen.hits)
    exp = matcher.explain_hit(chosen, chosen.hits[0], None, types.SimpleNamespace(title="t"))
    assert exp["bias"] == shipped.bias and exp["domain_match"]["counted_in_score"] is True


def test_a_model_round_trips_with_its_untagged_model():
    model = RankingModel(weights=dict.fromkeys(SIGNALS, 1.0), bias=-1.0,
                         untagged=RankingModel(weights={**dict.fromkeys(SIGNALS, 2.0), "domain": 0.0}, bias=-2.0))
    again = RankingModel.from_dict(model.to_dict())
    assert again == model and again.for_domain(False) == model.untagged and again.for_domain(True) is again
    plain = RankingModel(weights=dict.fromkeys(SIGNALS, 1.0), bias=-1.0)
    assert "untagged" not in plain.to_dict() and plain.for_domain(False) is plain
