"""Encoder adaptation: model versions, the guard, and real adaptation runs through the admin API. The
integration tests share one service (SQLite, two demo domains, real e5 model) and run in file order:
adapt → refused candidate → crash → restart → rollback."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fastapi.testclient import TestClient

from indexer.adaptation import data as adapt_data, evaluate as adapt_eval, weights as adapt_ranking
from indexer.ranking.hybrid import FEATURES, SIGNALS, RankingModel
from indexer.retrieval.embedding import Encoder, backend_suffix
from indexer.retrieval.versions import active_version as active_index
from indexer.retrieval.versions import index_root
from indexer.retrieval.versions import read_manifest as read_index_manifest
from models import model_versions as mv
from models import repository
from models.database import make_engine, make_session_factory, migrate, session_scope
from service.app import create_app
from service.demo import demo_records
from tests.conftest import ADMIN_H, make_settings, wait_ready

DOMAINS = {"smart_water", "forestry"}
TINY = {"max_pairs": 48, "batch_size": 16, "seed": 7, "tolerance": 0.02, "record_pairs": "passages", "use_demo_labels": True}


# ---- model versions on disk (no model needed) ------------------------------------------
def fake_version(root: Path, name: str) -> None:
    tmp = mv.temp_folder(root, name)
    (tmp / "model.safetensors").write_bytes(b"weights")
    mv.commit_version(root, name, {"base_model": "base@x"})


def test_versions_activate_prune_and_previous(tmp_path: Path) -> None:
    root = tmp_path / "models"
    assert mv.active_version(root) is None and mv.previous_version(root) is None
    for name in ("m1", "m2", "m3"):
        fake_version(root, name)
        mv.activate(root, name)
    assert mv.active_version(root) == "m3"
    assert mv.complete_versions(root) == ["m2", "m3"]  # the last two are kept
    assert mv.previous_version(root) == "m2"
    assert json.loads((root / "m3" / mv.MANIFEST).read_text())["version"] == "m3"
    mv.activate(root, None)
    assert (root / mv.ACTIVE).read_text() == mv.BASE and mv.active_version(root) is None


def test_cleanup_removes_unfinished_folders_only(tmp_path: Path) -> None:
    root = tmp_path / "models"
    fake_version(root, "m1")
    mv.temp_folder(root, "m2")  # a training that died
    (root / f"{mv.WORK_PREFIX}m2").mkdir()
    (root / "m3").mkdir()  # no manifest: never completed
    assert sorted(mv.cleanup(root)) == sorted([f"{mv.TMP_PREFIX}m2", f"{mv.WORK_PREFIX}m2", "m3"])
    assert mv.complete_versions(root) == ["m1"]


def test_second_adapter_on_the_same_data_dir_is_refused(tmp_path: Path) -> None:
    root = tmp_path / "models"
    with pytest.raises(mv.ModelBusy):
        mv.with_lock(root, lambda: mv.with_lock(root, lambda: None))


class HashEncoder(Encoder):
    """Deterministic unit vectors from the text and the encoder's name (a fake model)."""

    dim = 16

    def __init__(self, name: str):
        self.name = name

    def _vectors(self, role: str, texts: list[str]) -> np.ndarray:
        if not texts:
            return self._empty()
        rows = []
        for t in texts:
            seed = int.from_bytes(hashlib.sha256(f"{self.name}|{role}|{t}".encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.stack(rows)

    def encode_queries(self, texts: list[str]) -> np.ndarray:
        return self._vectors("q", texts)

    def encode_passages(self, texts: list[str], batch_size: int | None = None, progress: Any = None) -> np.ndarray:
        return self._vectors("p", texts)


def test_switch_encoder_swaps_index_and_encoder_together_or_not_at_all(tmp_path: Path) -> None:
    from indexer.retrieval.engine import SearchEngine
    from indexer.retrieval.text import get_tokenizer
    from models.taxonomy import default_taxonomy

    db = make_engine(f"sqlite:///{tmp_path / 's.db'}")
    migrate(db)
    sessions = make_session_factory(db)
    with session_scope(sessions) as session:
        repository.upsert(session, "need", "n1", {"title": "河湖水质监测", "description": "在线监测。"})
        repository.upsert(session, "capability", "c1", {"title": "水质传感器", "description": "多参数。"})
    old, new = HashEncoder("old@1"), HashEncoder("new@1")
    engine = SearchEngine(tmp_path, sessions, old, get_tokenizer(), list(default_taxonomy().domains))
    engine.open()
    first = engine.snapshot
    root = index_root(tmp_path)
    seen: list[Any] = []
    assert engine.switch_encoder(new, accept=lambda snap: seen.append(snap) or False) is None
    assert seen[0].model == "new@1" and seen[0].encoder is new  # judged on the candidate's own index
    assert engine.snapshot is first and engine.encoder is old
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == [first.version]
    with pytest.raises(RuntimeError):
        engine.switch_encoder(new, before_swap=lambda: (_ for _ in ()).throw(RuntimeError("disk full")))
    assert engine.snapshot is first and active_index(root) == first.version
    version = engine.switch_encoder(new, accept=lambda snap: True)
    assert engine.encoder is new and engine.snapshot.encoder is new and engine.snapshot.version == version
    assert active_index(root) == version and read_index_manifest(root / version)["model"] == "new@1"
    engine.close()


# ---- metrics and the guard ----------------------------------------------------------------
def test_ranking_metrics_graded() -> None:
    scores = np.array([[0.9, 0.8, 0.1], [0.1, 0.2, 0.9]])
    qrels = [{1: 2, 0: 0}, {2: 1}]
    m = adapt_eval.ranking_metrics(scores, qrels)
    assert m["mrr@10"] == pytest.approx((1 / 2 + 1) / 2)
    assert m["ndcg@10"] == pytest.approx((1 / np.log2(3) + 1.0) / 2)


def test_guard_refuses_a_loss_and_needs_labelled_matching_data() -> None:
    def sets(pairs: float, labels: float, n_labels: int = 10) -> dict[str, dict[str, Any]]:
        return {"pairs": {"queries": 30, "ndcg@10": pairs},
                "labels": {"queries": n_labels, "ndcg@10": labels}}

    assert adapt_eval.guard(sets(0.9, 0.8), sets(0.9, 0.7), 0.005)["accepted"]
    refused = adapt_eval.guard(sets(0.9, 0.69), sets(0.9, 0.7), 0.005)
    assert not refused["accepted"] and "labels" in refused["reason"]
    # Too few labelled queries, and no general probe: the pairs set alone may not let a model through.
    unjudged = adapt_eval.guard(sets(0.95, 0.1, n_labels=2), sets(0.9, 0.7, n_labels=2), 0.005)
    assert not unjudged["accepted"] and "nothing to judge" in unjudged["reason"]
    assert not adapt_eval.guard({}, {}, 0.005)["accepted"]


# ---- training pairs ---------------------------------------------------------------------
def test_sample_pairs_keeps_labels_and_covers_records_first() -> None:
    labelled = [{"anchor": f"n{i}", "positive": "c"} for i in range(3)]
    per_record = [[{"anchor": f"r{i}", "positive": f"p{i}-{j}"} for j in range(3)] for i in range(10)]
    pairs = adapt_data.sample_pairs(labelled, per_record, 13, seed=1)
    assert len(pairs) == 13
    assert sum(p["anchor"].startswith("n") for p in pairs) == 3
    assert len({p["anchor"] for p in pairs if p["anchor"].startswith("r")}) == 10  # one per record first
    assert pairs == adapt_data.sample_pairs(labelled, per_record, 13, seed=1)


def test_held_out_needs_are_never_trained_on(database_url: str) -> None:
    from indexer.retrieval.text import get_tokenizer

    db = make_engine(database_url)
    migrate(db)
    sessions = make_session_factory(db)
    load_subset(sessions)
    config = adapt_data.AdaptConfig(max_pairs=10_000, record_pairs="passages", use_demo_labels=True)
    data = adapt_data.collect(sessions, get_tokenizer(), config)
    by_name = {s.name: s for s in data.eval_sets}
    assert len(by_name["labels"]) >= 5 and len(by_name["pairs"]) >= 5
    held_texts = set(by_name["labels"].queries) | set(by_name["pairs"].queries)
    trained = {p["anchor"] for p in data.pairs}
    assert not held_texts & trained
    held_titles = {q.split("。")[0] for q in by_name["labels"].queries}
    assert not held_titles & trained
    assert any("negative" in p for p in data.pairs)  # grade-0 demo labels become hard negatives
    assert data.counts["label_pairs"] > 0
    no_labels = adapt_data.collect(sessions, get_tokenizer(), adapt_data.AdaptConfig(
        max_pairs=10_000, use_demo_labels=False, record_pairs="passages"))
    assert no_labels.counts["label_pairs"] == 0 and len(no_labels.eval_sets) == len(data.eval_sets)
    labelled_only = adapt_data.collect(sessions, get_tokenizer(), replace(config, record_pairs="none"))
    assert labelled_only.pairs and all(p["anchor"] not in held_texts for p in labelled_only.pairs)
    assert len(labelled_only.pairs) == labelled_only.counts["label_pairs"]
    db.dispose()


def test_feedback_becomes_pairs_and_a_held_out_set(database_url: str) -> None:
    from indexer.retrieval.text import get_tokenizer
    from models.db import Feedback

    db = make_engine(database_url)
    migrate(db)
    sessions = make_session_factory(db)
    load_subset(sessions)
    with session_scope(sessions) as session:
        need_ids = sorted(r.id for r in repository.iter_all(session, "need"))
        cap_ids = sorted(r.id for r in repository.iter_all(session, "capability"))
        for i, need_id in enumerate(need_ids):
            # An earlier "irrelevant" is overridden by the later "deal" on the same pair.
            session.add(Feedback(need_id=need_id, capability_id=cap_ids[i], label="irrelevant"))
            session.add(Feedback(need_id=need_id, capability_id=cap_ids[i], label="deal"))
            session.add(Feedback(need_id=need_id, capability_id=cap_ids[i + 1], label="irrelevant"))
    config = adapt_data.AdaptConfig(use_demo_labels=False, record_pairs="none")
    data = adapt_data.collect(sessions, get_tokenizer(), config)
    feedback_set = next(s for s in data.eval_sets if s.name == "feedback")
    held = set(feedback_set.query_ids)
    assert len(held) >= 5 and data.held_out["feedback_queries"] == len(held)
    assert all(max(rel.values()) == adapt_data.FEEDBACK_GRADES["deal"] for rel in feedback_set.qrels)
    assert data.counts["feedback_labels"] == 2 * len(need_ids)
    # One positive per training need (not held out, neither side a held-out record)...
    pairs_set = next(s for s in data.eval_sets if s.name == "pairs")
    held_records = {i.split(":", 1)[1] for i in pairs_set.query_ids}
    trainable = [n for i, n in enumerate(need_ids)
                 if n not in held and n not in held_records and cap_ids[i] not in held_records]
    assert len(data.pairs) == len(trainable) > 0
    with_negative = [n for i, n in enumerate(need_ids) if n in trainable and cap_ids[i + 1] not in held_records]
    # ...with its "irrelevant" as hard negative where that one is not held out either
    assert sum("negative" in p for p in data.pairs) == len(with_negative) > 0
    assert not {p["anchor"] for p in data.pairs} & set(feedback_set.queries)
    no_feedback = adapt_data.collect(sessions, get_tokenizer(), adapt_data.AdaptConfig(
        use_demo_labels=False, use_feedback=False, record_pairs="none"))
    assert no_feedback.pairs == [] and any(s.name == "feedback" for s in no_feedback.eval_sets)
    db.dispose()


# ---- real adaptation through the API ------------------------------------------------------
def load_subset(sessions: Any, rename: bool = False) -> None:
    """The classic demo's records of DOMAINS; `rename`: under ids no seed label knows, without domains."""
    needs, caps = demo_records()
    with session_scope(sessions) as session:
        for kind, rows in (("need", needs), ("capability", caps)):
            for row in rows:
                domains = [row["domain"]] if kind == "need" else row["domains"]
                if DOMAINS & set(domains):
                    data = dict(row)
                    record_id = data.pop("id")
                    if rename:
                        record_id = f"X{record_id}"
                        data.pop("domain", None), data.pop("domains", None)
                    repository.upsert(session, kind, record_id, data)


def wait_job(client: TestClient, job_id: str, timeout: float = 1800.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        job = client.get(f"/v1/admin/jobs/{job_id}", headers=ADMIN_H).json()
        if job["status"] in ("succeeded", "failed"):
            return job
        time.sleep(0.3)
    raise TimeoutError(job_id)


def run_adapt(client: TestClient, body: dict[str, Any]) -> dict[str, Any]:
    response = client.post("/v1/admin/adapt", json=body, headers=ADMIN_H)
    assert response.status_code == 202, response.text
    assert response.headers["Location"] == f"/v1/admin/jobs/{response.json()['job_id']}"
    return wait_job(client, response.json()["job_id"])


def engine_of(client: TestClient) -> Any:
    return client.app.state.scenematch.extras["engine"]


def data_dir_of(client: TestClient) -> Path:
    return client.app.state.scenematch.settings.data_dir


def assert_consistent(client: TestClient) -> dict[str, Any]:
    """The served index, its manifest on disk, the engine's encoder and ACTIVE_MODEL agree."""
    engine = engine_of(client)
    root = index_root(data_dir_of(client))
    manifest = read_index_manifest(root / active_index(root))
    status = client.get("/v1/admin/models", headers=ADMIN_H).json()
    assert manifest["model"] == engine.snapshot.model == engine.encoder.name == status["serving_model"]
    assert engine.snapshot.encoder is engine.encoder
    if status["active_version"]:
        active = next(v for v in status["items"] if v["active"])
        assert active["model"] == manifest["model"]
    else:
        # the base model's identity, as the serving backend names its vectors
        assert manifest["model"] == status["base_model"] + backend_suffix(engine.encoder)
    return status


def subset_settings(root: Path, rename: bool = False) -> Any:
    """Settings of a service on SQLite whose database holds the two demo domains (DOMAINS)."""
    settings = make_settings(root, None, build_index_on_start=True, refresh_interval_s=0.2)
    settings.ensure_dirs()
    db = make_engine(settings.resolved_database_url)
    migrate(db)
    load_subset(make_session_factory(db), rename)
    db.dispose()
    return settings


@pytest.fixture(scope="module")
def adapted(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, dict[str, Any]]]:
    """A service on two demo domains after one successful (tiny) adaptation."""
    with TestClient(create_app(subset_settings(tmp_path_factory.mktemp("adapt")))) as client:
        wait_ready(client)
        base_index = engine_of(client).snapshot.version
        job = run_adapt(client, TINY)
        assert job["status"] == "succeeded", job["error"]
        assert engine_of(client).snapshot.version != base_index
        yield client, job["result"]


@pytest.mark.slow
def test_adaptation_activates_a_version_and_the_index_uses_it(adapted: tuple[TestClient, dict]) -> None:
    client, result = adapted
    assert result["activated"], result["decision"]
    assert result["training"]["steps"] >= 2 and result["pairs"]["sampled"] == TINY["max_pairs"]
    # Judged twice: dense retrieval, then the shipped ranking of the candidate's own index.
    assert result["decision"]["stage"] == "served"
    assert {c["set"] for c in result["decision"]["checks"]} >= {"pairs", "labels", "labels_served"}
    assert set(result["metrics"]["candidate"]) == set(result["metrics"]["active"])
    status = assert_consistent(client)
    assert status["active_version"] == result["version"] and status["rollback_to"] == "base"
    manifest = mv.read_manifest(mv.models_root(data_dir_of(client)) / result["version"])
    for key in ("base_model", "data", "pairs", "hyper_parameters", "metrics", "training", "decision"):
        assert manifest[key], key
    assert manifest["hyper_parameters"]["learning_rate"] == 2e-5
    # The weights weigh per-query z-scores and carry over: the shipped ones serve the adapted encoder.
    assert manifest["ranking"] is None and result["ranking"] is None
    assert manifest["hyper_parameters"]["record_pairs"] == "passages"
    assert {"pairs", "general"} <= {c["set"] for c in result["decision"]["checks"] if c["judged"]}
    need_id = client.get("/v1/needs", params={"limit": 1}).json()["items"][0]["id"]
    matches = client.get(f"/v1/needs/{need_id}/matches")
    assert matches.status_code == 200 and matches.json()["items"]


@pytest.mark.slow
def test_a_worse_candidate_is_refused(adapted: tuple[TestClient, dict]) -> None:
    client, first = adapted
    before = engine_of(client).snapshot.version
    # A learning rate 500x too high wrecks the encoder within a few steps.
    job = run_adapt(client, {**TINY, "learning_rate": 1e-2, "tolerance": 0.0})
    assert job["status"] == "succeeded", job["error"]
    result = job["result"]
    assert not result["activated"] and result["version"] is None
    assert not result["decision"]["accepted"] and "loses" in result["decision"]["reason"]
    assert result["decision"]["stage"] == "dense"  # refused before any index was built
    assert any(c["judged"] and not c["passed"] for c in result["decision"]["checks"])
    assert engine_of(client).snapshot.version == before
    root = mv.models_root(data_dir_of(client))
    assert mv.active_version(root) == first["version"] and mv.complete_versions(root) == [first["version"]]
    assert_consistent(client)


@pytest.mark.slow
def test_a_crash_mid_training_leaves_the_active_model_untouched(adapted: tuple[TestClient, dict]) -> None:
    client, first = adapted
    before = engine_of(client).snapshot.version
    root = mv.models_root(data_dir_of(client))
    response = client.post("/v1/admin/adapt", json={**TINY, "max_pairs": 320}, headers=ADMIN_H)
    job_id = response.json()["job_id"]
    deadline = time.monotonic() + 900
    while True:  # kill the trainer once it has finished a step: truly mid-training
        job = client.get(f"/v1/admin/jobs/{job_id}", headers=ADMIN_H).json()
        message = (job.get("result") or {}).get("message", "")
        if "training step" in message:
            break
        assert job["status"] == "running" or job["status"] == "queued", job
        assert time.monotonic() < deadline
        time.sleep(0.2)
    pid = int(next(root.glob(f"{mv.WORK_PREFIX}*/child.pid")).read_text())
    os.kill(pid, signal.SIGKILL)
    job = wait_job(client, job_id)
    assert job["status"] == "failed" and "killed by signal 9" in job["error"]
    assert mv.active_version(root) == first["version"] and mv.complete_versions(root) == [first["version"]]
    assert not [p for p in root.iterdir() if p.name.startswith((mv.TMP_PREFIX, mv.WORK_PREFIX))]
    assert engine_of(client).snapshot.version == before
    assert client.get("/readyz").status_code == 200
    assert_consistent(client)


@pytest.mark.slow
def test_a_restart_serves_the_active_model_without_rebuilding(adapted: tuple[TestClient, dict]) -> None:
    client, first = adapted
    settings = client.app.state.scenematch.settings
    index_before = engine_of(client).snapshot.version
    with TestClient(create_app(settings.model_copy(update={"refresh_interval_s": 60.0}))) as second:
        wait_ready(second)
        engine = engine_of(second)
        assert engine.snapshot.version == index_before
        assert engine.encoder.name == first["model"] == engine.snapshot.model


@pytest.mark.slow
def test_a_version_serves_with_the_weights_it_was_judged_with(adapted: tuple[TestClient, dict]) -> None:
    client, first = adapted
    root = mv.models_root(data_dir_of(client))
    shipped = RankingModel.load()
    need_id = client.get("/v1/needs", params={"limit": 1}).json()["items"][0]["id"]

    def served_weights() -> tuple[float, dict[str, float]]:
        explanation = client.get(f"/v1/needs/{need_id}/matches").json()["items"][0]["explanation"]
        # The scored signals; the case evidence is shown beside them with weight 0 (not in these weights).
        return explanation["bias"], {k: v["weight"] for k, v in explanation["signals"].items() if k in SIGNALS}

    assert served_weights() == (shipped.bias, shipped.weights)
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(adapt_ranking, "MIN_QUERIES", 1)  # fit on this subset's few training needs
        job = run_adapt(client, {**TINY, "tolerance": 0.2, "general_tolerance": 0.2, "refit_ranking": True})
    result = job["result"]
    assert job["status"] == "succeeded" and result["activated"], job
    stored = mv.read_manifest(root / result["version"])["ranking"]
    assert result["ranking"] == stored  # reported with the job's result
    assert stored["info"]["queries"] >= 1 and stored["info"]["model"] == result["model"]
    assert stored["info"]["features"] == FEATURES
    assert (stored["bias"], stored["weights"]) != (shipped.bias, shipped.weights)
    # The guard judged the candidate's fused ranking with those weights, not the shipped ones.
    engine = engine_of(client)
    data = adapt_data.collect(engine.sessions, engine.tokenizer, adapt_data.AdaptConfig())
    labels = next(s for s in data.eval_sets if s.name == "labels")
    judged = result["metrics"]["candidate"]["labels_served"]["ndcg@10"]
    own = RankingModel.from_dict(stored)
    assert adapt_eval.served_metrics(engine.snapshot, labels, own)["ndcg@10"] == judged
    assert adapt_eval.served_metrics(engine.snapshot, labels, shipped)["ndcg@10"] != judged
    assert served_weights() == (stored["bias"], stored["weights"])
    index = client.get("/v1/admin/index", headers=ADMIN_H).json()["ranking"]
    untagged = stored["untagged"]  # fitted beside them, for pairs without client-given domains
    assert untagged["weights"]["domain"] == 0.0
    assert index == {"weights": stored["weights"], "bias": stored["bias"], "source": "model_version",
                     "untagged": {"weights": untagged["weights"], "bias": untagged["bias"]}}
    # Rolling back restores the previous version together with its weights.
    response = client.post("/v1/admin/model/rollback", headers=ADMIN_H)
    job = wait_job(client, response.json()["job_id"])
    assert job["status"] == "succeeded" and job["result"]["active_version"] == first["version"], job
    assert served_weights() == (shipped.bias, shipped.weights)
    assert_consistent(client)


@pytest.mark.slow
def test_rollback_returns_to_the_base_model_and_reindexes(adapted: tuple[TestClient, dict]) -> None:
    client, first = adapted
    assert client.post("/v1/admin/model/rollback").status_code == 401
    response = client.post("/v1/admin/model/rollback", headers=ADMIN_H)
    assert response.status_code == 202, response.text
    job = wait_job(client, response.json()["job_id"])
    assert job["status"] == "succeeded", job["error"]
    assert job["result"]["rolled_back"] == first["version"] and job["result"]["active_version"] is None
    status = assert_consistent(client)
    assert status["active_version"] is None and status["items"] == []
    again = client.post("/v1/admin/model/rollback", headers=ADMIN_H)
    assert again.status_code == 409 and again.json()["error"]["code"] == "nothing_to_roll_back"
