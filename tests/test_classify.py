"""Domain classification: the combination logic (fakes), stored predictions (real databases)
and the service (real model): POST /v1/classify and records stored without a domain."""
from __future__ import annotations

import itertools
import time
from types import SimpleNamespace

import numpy as np
import pytest
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from indexer.ranking.hybrid import RankingModel
from indexer.retrieval import classify
from indexer.retrieval.classify import DomainClassifier, ExamplePart
from models import repository
from models.database import make_engine, make_session_factory, migrate, session_scope
from models.db import Change, Need
from models.taxonomy import DomainInfo, Taxonomy
from service.app import create_app
from tests.conftest import ADMIN_H, CLIENT_H, make_settings, wait_ready

# ---- fakes ---------------------------------------------------------------------------
# Three domains; a text's vector points at the axis of each keyword it contains.
AXES = {"森林": 0, "无人机": 1, "医院": 2}
_names = itertools.count()


class KeywordEncoder:
    def __init__(self) -> None:
        self.name, self.dim = f"keyword-encoder-{next(_names)}", 4  # fresh prototype cache per test

    def _encode(self, texts: list[str]) -> np.ndarray:
        out = np.full((len(texts), self.dim), 0.05, dtype=np.float32)
        for i, text in enumerate(texts):
            for word, axis in AXES.items():
                out[i, axis] += text.count(word)
        return out / np.linalg.norm(out, axis=1, keepdims=True)

    encode_queries = _encode

    def encode_passages(self, texts: list[str], batch_size: int | None = None, progress=None) -> np.ndarray:
        return self._encode(texts)


class SpaceTokenizer:
    def tokens(self, text: str) -> list[str]:
        return text.split()


def fake_taxonomy() -> Taxonomy:
    def domain(code: str, name: str, order: int, terms: tuple[str, ...]) -> DomainInfo:
        return DomainInfo(code=code, name=name, category="c", category_name="类", order=order,
                          description=f"{name}相关场景", key_terms=terms)

    return Taxonomy(categories={"c": "类"}, domains={
        "forestry": domain("forestry", "森林", 1, ("森林", "防火")),
        "drones": domain("drones", "无人机", 2, ("无人机", "巡检")),
        "health": domain("health", "医院", 3, ("医院", "巡检")),
    })


def classifier(examples=(), weights=None) -> DomainClassifier:
    return DomainClassifier(KeywordEncoder(), SpaceTokenizer(), fake_taxonomy(), examples, weights)


def vec(*axes: float) -> np.ndarray:
    v = np.asarray(axes, dtype=np.float32)
    return v / np.linalg.norm(v)


# ---- combination logic -----------------------------------------------------------------
def test_probabilities_sum_to_one_and_follow_the_evidence():
    clf = classifier()
    probs = clf.probabilities(np.stack([vec(1, 0, 0, .1), vec(0, 0, 1, .1)]), ["森林 防火", "医院"])
    assert probs.shape == (2, 3) and np.allclose(probs.sum(axis=1), 1.0)
    assert probs[0].argmax() == 0 and probs[1].argmax() == 2


def test_combine_without_weights_is_uniform_and_each_feature_counts():
    comps = {n: np.zeros((1, 3)) for n in classify.FEATURES}
    assert np.allclose(classify.combine(comps, {}), 1 / 3)
    comps["terms"] = np.array([[0.0, 2.0, 0.0]])
    assert classify.combine(comps, {"terms": 1.0})[0].argmax() == 1
    comps["knn"] = np.array([[1.0, 0.0, 0.0]])  # a unanimous neighbourhood outweighs two key terms
    assert classify.combine(comps, {"terms": 1.0, "knn": 1.0})[0].argmax() == 0


def test_knn_votes_only_from_labelled_rows_and_weighs_by_similarity():
    vectors = np.stack([vec(1, 1, 0, 0), vec(1, .9, 0, 0), vec(0, 1, 0, 0), vec(0, 0, 1, 0)])
    labels = np.array([[0, 0, 0], [0, 0, 1], [0, 1, 0], [1, 0, 0]], dtype=bool)  # row 0 unlabelled
    clf = classifier(ExamplePart(vectors, labels))
    assert clf.n_examples == 3
    votes = clf.knn_votes(vec(1, 1, 0, 0)[None])[0]
    assert votes.sum() == pytest.approx(1.0)
    assert votes[2] > votes[1] > votes[0]  # the nearest labelled row leads; row 0 casts nothing


def test_examples_split_over_parts_give_the_same_votes_as_one_part():
    rng = np.random.default_rng(1)
    vectors = rng.normal(size=(30, 4)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    labels = np.eye(3, dtype=bool)[rng.integers(0, 3, 30)]
    whole = classifier((vectors, labels))
    split = classifier([ExamplePart(vectors[:11], labels[:11]), ExamplePart(vectors[11:], labels[11:])])
    queries = vectors[:5] + 0.1
    assert np.allclose(whole.knn_votes(queries), split.knn_votes(queries))
    assert np.allclose(whole.centroid_similarity(queries), split.centroid_similarity(queries), atol=1e-6)


def test_without_examples_the_zero_shot_weights_decide():
    clf = classifier()
    assert clf.n_examples == 0 and clf.weights == classify.ZERO_SHOT_WEIGHTS
    top = clf.predict_text("无人机 巡检 无人机")
    assert top[0][0] == "drones" and len(top) == 3
    assert [s for _, s in top] == sorted((s for _, s in top), reverse=True)


def test_terms_shared_by_domains_are_split():
    table = classify.term_table(fake_taxonomy())
    scores = classify.term_scores([["巡检", "巡检", "森林"], []], table, 3)
    assert scores[0].tolist() == [1.0, 0.5, 0.5] and scores[1].tolist() == [0, 0, 0]


def test_examples_from_segment_hide_deleted_and_predicted_rows():
    seg = SimpleNamespace(doc_vectors=np.eye(4, dtype=np.float32)[:3],
                          domain_mask=np.eye(3, dtype=bool), row_of={"a": 0, "b": 1, "c": 2})
    part = classify.examples_from_segment(seg, hidden_rows=[0], predicted_ids={"c", "unknown"})
    assert part.labels.any(axis=1).tolist() == [False, True, False]
    assert seg.domain_mask[0, 0] and seg.domain_mask[2, 2]  # the segment itself is untouched


def test_chosen_domains_one_for_needs_more_for_capabilities():
    ranked = [("a", 0.5), ("b", 0.3), ("c", 0.1)]
    assert classify.chosen_domains("need", ranked, 0.2) == ["a"]
    assert classify.chosen_domains("capability", ranked, 0.2) == ["a", "b"]
    assert classify.chosen_domains("capability", ranked, 0.6) == ["a"]


def test_predict_missing_fills_only_documents_without_domains():
    docs = [SimpleNamespace(id="n1", domains=[], full_text="医院 巡检", content_hash="h1",
                            domain_predicted=False),
            SimpleNamespace(id="n2", domains=["forestry"], full_text="医院", content_hash="h2",
                            domain_predicted=False)]
    vectors = KeywordEncoder().encode_passages([d.full_text for d in docs])
    predictions = classify.predict_missing(classifier(), "need", docs, vectors)
    assert [p.record_id for p in predictions] == ["n1"]
    assert docs[0].domains == ["health"] and docs[0].domain_predicted
    assert docs[1].domains == ["forestry"] and not docs[1].domain_predicted
    assert predictions[0].content_hash == "h1" and len(predictions[0].ranked) == 3


# ---- stored predictions (real SQLite and PostgreSQL) ------------------------------------------
def test_stored_prediction_keeps_hash_logs_no_change_and_skips_changed_rows(database_url):
    engine = make_engine(database_url)
    migrate(engine)
    sessions = make_session_factory(engine)
    need = {"title": "森林防火监测", "description": "", "region": "武汉市"}
    with session_scope(sessions) as session:
        for rid in ("n1", "n2"):
            repository.upsert(session, "need", rid, need)
        repository.upsert(session, "capability", "c1", {"title": "无人机巡检"})
        hashes = {r.id: r.content_hash for r in session.scalars(select(Need))}
        cap_hash = repository.get(session, "capability", "c1").content_hash
        changes_before = session.scalar(select(func.count()).select_from(Change))
    ranked = [("forestry", 0.7), ("emergency_management", 0.2), ("smart_city", 0.05)]
    predictions = [classify.Prediction("need", "n1", hashes["n1"], ranked, ["forestry"]),
                   classify.Prediction("need", "n2", "stale-hash", ranked, ["forestry"]),
                   classify.Prediction("capability", "c1", cap_hash, ranked,
                                       ["forestry", "emergency_management"])]
    from models.taxonomy import default_taxonomy

    classify.store_predictions(sessions, predictions, default_taxonomy())
    with session_scope(sessions) as session:
        n1, n2 = repository.get(session, "need", "n1"), repository.get(session, "need", "n2")
        c1 = repository.get(session, "capability", "c1")
        assert (n1.domain, n1.domain_predicted, n1.content_hash) == ("forestry", True, hashes["n1"])
        assert n1.domain_scores[0] == {"code": "forestry", "name": "林业", "score": 0.7}
        assert len(n1.domain_scores) == 3
        assert (n2.domain, n2.domain_predicted) == (None, False)  # content changed since: left alone
        assert c1.domains == ["forestry", "emergency_management"] and c1.domain_predicted
        assert session.scalar(select(func.count()).select_from(Change)) == changes_before
        assert classify.predicted_ids(sessions) == {"need": {"n1"}, "capability": {"c1"}, "scenario": set()}
        # The same client data again is still "unchanged": the prediction survives.
        repository.upsert(session, "need", "n1", need)
        assert repository.get(session, "need", "n1").domain_predicted
    engine.dispose()


def test_full_build_and_refresh_classify_unlabelled_records(tmp_path):
    from indexer.retrieval.engine import SearchEngine
    from indexer.retrieval.text import get_tokenizer
    from models.taxonomy import default_taxonomy

    engine = make_engine(f"sqlite:///{tmp_path / 'db.sqlite'}")
    migrate(engine)
    sessions = make_session_factory(engine)
    with session_scope(sessions) as session:
        for i in range(3):
            repository.upsert(session, "need", f"f{i}", {"title": f"森林 巡护 {i}", "domain": "forestry"})
            repository.upsert(session, "capability", f"h{i}", {"title": f"医院 门诊 {i}",
                                                               "domains": ["healthcare"]})
        repository.upsert(session, "need", "open-1", {"title": "森林 防火 监测"})
    search = SearchEngine(tmp_path / "data", sessions, KeywordEncoder(), get_tokenizer(),
                          list(default_taxonomy().domains))
    search.open(build_if_missing=True)  # the full build classifies open-1
    snap = search.snapshot
    seg = snap.base["need"]
    assert seg.domains_of(seg.row_of["open-1"]) == ["forestry"]
    with session_scope(sessions) as session:
        repository.upsert(session, "capability", "open-2", {"title": "医院 智能 导诊"})
    search.refresh()  # the incremental path classifies open-2 against the served examples
    delta = search.snapshot.delta["capability"]
    assert delta.domains_of(delta.row_of["open-2"])[0] == "healthcare"
    with session_scope(sessions) as session:
        need, cap = repository.get(session, "need", "open-1"), repository.get(session, "capability", "open-2")
        assert need.domain == "forestry" and need.domain_predicted
        assert cap.domains[0] == "healthcare" and cap.domain_predicted
    assert search.refresh() == 0  # storing a prediction is not a change to index again
    # A full build predicts again (a model switch rebuilds in full): a stale prediction, as an
    # older model may have made it, is replaced; client-given domains are kept.
    with session_scope(sessions) as session:
        stale = repository.get(session, "need", "open-1")
        stale.domain, stale.domain_scores = "healthcare", [{"code": "healthcare", "name": "x", "score": 0.9}]
    search.rebuild()
    seg = search.snapshot.base["need"]
    assert seg.domains_of(seg.row_of["open-1"]) == ["forestry"]
    with session_scope(sessions) as session:
        need = repository.get(session, "need", "open-1")
        assert need.domain == "forestry" and need.domain_predicted and need.domain_scores[0]["code"] == "forestry"
        assert repository.get(session, "need", "f0").domain == "forestry"
        assert not repository.get(session, "need", "f0").domain_predicted
    search.close()
    engine.dispose()


# ---- the service (real model) ----------------------------------------------------------
FIRE_DRONE = "林区森林防火无人机巡检：利用无人机搭载红外热成像相机，对重点林区开展火情早期识别与火点定位，及时预警。"


def test_classify_returns_ranked_domains(demo_client):
    r = demo_client.post("/v1/classify", json={"text": FIRE_DRONE})
    assert r.status_code == 200, r.text
    body = r.json()
    codes = [item["code"] for item in body["items"]]
    assert len(codes) == 3 and body["model"]
    assert {"forestry", "unmanned_systems", "emergency_management"} & set(codes)
    scores = [item["score"] for item in body["items"]]
    assert scores == sorted(scores, reverse=True) and 0 < sum(scores) <= 1 + 1e-6
    assert all(item["name"] and item["category"] for item in body["items"])
    more = demo_client.post("/v1/classify", json={"text": FIRE_DRONE, "top_k": 20}).json()["items"]
    assert len(more) == 20 and sum(i["score"] for i in more) == pytest.approx(1.0, abs=1e-4)


def test_classified_text_is_not_stored_in_the_embedding_cache(demo_client):
    cache = demo_client.app.state.scenematch.extras["engine"].encoder.cache
    before = len(cache)
    text = "一段只用于分类的临时文本：城市内涝积水点实时监测与预警。"
    assert demo_client.post("/v1/classify", json={"text": text}).status_code == 200
    assert len(cache) == before


@pytest.mark.parametrize("body, field", [
    ({"text": ""}, "text"), ({"text": "   "}, "text"), ({"text": "长" * 10_001}, "text"),
    ({}, "text"), ({"text": "医院", "top_k": 0}, "top_k"), ({"text": "医院", "top_k": 21}, "top_k"),
    ({"text": "医院", "extra": 1}, "extra"),
])
def test_classify_bad_input_is_422_naming_the_field(demo_client, body, field):
    r = demo_client.post("/v1/classify", json=body)
    assert r.status_code == 422, r.text
    assert field in {d["field"] for d in r.json()["error"]["details"]}


def test_classify_is_503_before_the_index_is_loaded(tmp_path):
    with TestClient(create_app(make_settings(tmp_path))) as client:
        r = client.post("/v1/classify", json={"text": FIRE_DRONE})
        assert r.status_code == 503 and r.json()["error"]["code"] == "not_ready"


def _wait_predicted(client: TestClient, path: str, timeout: float = 120.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        body = client.get(path, headers=ADMIN_H).json()
        if body["domain_predicted"] or time.monotonic() > deadline:
            return body
        time.sleep(0.3)


def _wait_matches(client: TestClient, need_id: str, ready, timeout: float = 120.0) -> list[dict]:  # noqa: ANN001
    """The need's matches once `ready(explanation)` holds for the first one (the index caught up)."""
    deadline = time.monotonic() + timeout
    while True:
        items = client.get(f"/v1/needs/{need_id}/matches").json().get("items", [])
        if (items and ready(items[0]["explanation"])) or time.monotonic() > deadline:
            assert items and ready(items[0]["explanation"]), items[:1]
            return items
        time.sleep(0.3)


def test_records_without_domain_are_classified_and_a_given_domain_wins(tmp_path):
    settings = make_settings(tmp_path, None, load_demo=True, build_index_on_start=True,
                             refresh_interval_s=0.3)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        need = {"title": "重点林区森林火情监测预警", "description": FIRE_DRONE, "region": "恩施州"}
        assert client.put("/v1/needs/N-auto-1", json=need, headers=CLIENT_H).status_code == 201
        got = _wait_predicted(client, "/v1/needs/N-auto-1")
        assert got["domain_predicted"] is True
        predicted = got["predicted_domains"]
        assert len(predicted) == 3 and got["domain"] == predicted[0]["code"]
        assert {"forestry", "unmanned_systems", "emergency_management"} & {p["code"] for p in predicted}
        assert got["domain_name"] == predicted[0]["name"]
        listed = client.get("/v1/needs", params={"domain": got["domain"], "limit": 200}).json()
        assert "N-auto-1" in {item["id"] for item in listed["items"]}

        # Re-sending the same record is unchanged and keeps the prediction.
        again = client.put("/v1/needs/N-auto-1", json=need, headers=CLIENT_H)
        assert again.status_code == 200 and again.json()["domain_predicted"] is True

        cap = {"title": "林业无人机巡护与火点识别系统", "description": FIRE_DRONE, "organization": "某科技公司"}
        assert client.put("/v1/capabilities/C-auto-1", json=cap, headers=CLIENT_H).status_code == 201
        got_cap = _wait_predicted(client, "/v1/capabilities/C-auto-1")
        assert got_cap["domain_predicted"] and 1 <= len(got_cap["domains"]) <= 3
        assert got_cap["domains"][0] == got_cap["predicted_domains"][0]["code"]

        # Its matches show the domain as predicted and are scored without the domain signal.
        shipped = RankingModel.load()
        items = _wait_matches(client, "N-auto-1", lambda e: e["domain_match"]["query_domains_predicted"])
        for item in items:
            exp = item["explanation"]
            assert exp["domain_match"]["counted_in_score"] is False and exp["bias"] == shipped.untagged.bias
            assert exp["signals"]["domain"]["weight"] == 0.0
            if exp["domain_match"]["query_domains"]:
                assert "经系统预测" in exp["summary"]

        # A domain from the client replaces the prediction.
        given = client.put("/v1/needs/N-auto-1", json={**need, "domain": "smart_city"}, headers=CLIENT_H)
        assert given.status_code == 200
        body = client.get("/v1/needs/N-auto-1").json()
        assert body["domain"] == "smart_city" and body["domain_predicted"] is False
        assert body["predicted_domains"] is None
        items = _wait_matches(client, "N-auto-1", lambda e: not e["domain_match"]["query_domains_predicted"])
        for item in items:  # the capability stored without domains is still scored without them
            dom = item["explanation"]["domain_match"]
            assert dom["counted_in_score"] is (not dom["match_domains_predicted"])
            assert dom["match_domains_predicted"] is (item["id"] == "C-auto-1")
            assert item["explanation"]["bias"] == (shipped.bias if dom["counted_in_score"] else shipped.untagged.bias)
        assert "C-auto-1" in {i["id"] for i in items}


# ---- the seed records as reference examples ------------------------------------------------
def write_seed(folder, rows_by_kind) -> None:  # noqa: ANN001
    import json

    for sub, rows in rows_by_kind.items():
        (folder / sub).mkdir(parents=True, exist_ok=True)
        (folder / sub / "x.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows),
                                              encoding="utf-8")


def test_reference_examples_label_seed_records_and_leave_out_the_ones_being_classified(tmp_path):
    from indexer.retrieval.reference import EXAMPLE_CHARS, ReferenceExamples, reference_records

    write_seed(tmp_path / "seed", {
        "needs": [{"id": "n1", "title": "森林 防火", "description": "森林" * 200, "domain": "forestry"},
                  {"id": "n2", "title": "未标注", "description": "x"}],
        "capabilities": [{"id": "c1", "title": "医院 导诊", "description": "医院", "domains": ["health", "drones"]}]})
    records = reference_records([tmp_path / "seed"])
    assert [r.id for r in records] == ["n1", "c1"]  # a record without domains is no example
    assert len(records[0].text) == len("森林 防火。") + EXAMPLE_CHARS
    reference = ReferenceExamples([tmp_path / "seed"])
    encoder, codes = KeywordEncoder(), ["forestry", "drones", "health"]
    assert reference.labelled(encoder, codes, wait=False) is None  # embedding starts in the background
    deadline = time.monotonic() + 30
    while not reference.ready(encoder, codes):
        assert time.monotonic() < deadline
        time.sleep(0.01)
    vectors, labels = reference.labelled(encoder, codes)
    assert vectors.shape == (2, encoder.dim)
    assert labels.tolist() == [[True, False, False], [False, True, True]]
    _, without = reference.labelled(encoder, codes, exclude={"c1"})
    assert without.tolist() == [[True, False, False], [False, False, False]]
    assert labels[1].any()  # excluding copies: the cached labels are untouched


def test_classifying_uses_the_seed_examples_but_not_a_records_own(tmp_path, monkeypatch):
    from indexer.retrieval import reference

    write_seed(tmp_path / "seed", {"needs": [
        {"id": f"s{i}", "title": "无人机 森林", "description": "无人机 森林 巡护", "domain": "drones"} for i in range(5)]})
    monkeypatch.setattr(classify, "REFERENCE", reference.ReferenceExamples([tmp_path / "seed"]))
    encoder, taxonomy = KeywordEncoder(), fake_taxonomy()
    codes = list(taxonomy.domains)
    parts = classify.reference_part(encoder, codes)
    assert sum(p.count for p in parts) == 5
    text = "无人机 森林"  # as much one domain's word as the other's: the examples decide
    vector = encoder.encode_passages([text])
    with_examples = DomainClassifier(encoder, SpaceTokenizer(), taxonomy, parts)
    assert with_examples.predict_vectors(vector, [text])[0][0][0] == "drones"
    own = classify.reference_part(encoder, codes, exclude={f"s{i}" for i in range(5)})
    assert sum(p.count for p in own) == 0
