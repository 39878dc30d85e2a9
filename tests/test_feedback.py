"""Feedback on both databases: storing, validation, export (CSV/JSONL) and the precision report."""
from __future__ import annotations

import csv
import io
import json

import pytest
from typer.testing import CliRunner

from models.taxonomy import default_taxonomy
from service import feedback
from service.cli import app as cli_app
from tests.conftest import ADMIN_H, CLIENT_H

NEEDS = {
    "N-w1": {"title": "山洪灾害智能预警", "domain": "smart_water", "contact": "王工 0717-6123456"},
    "N-w2": {"title": "水库大坝安全监测", "domain": "smart_water"},
    "N-h1": {"title": "县域医院远程会诊", "domain": "healthcare"},
}
CAPS = {
    "C-1": {"title": "多源融合山洪预警平台", "organization": "武汉某水利科技公司"},
    "C-2": {"title": "北斗大坝形变监测", "organization": "长江某研究院", "org_type": "institute"},
    "C-3": {"title": "5G远程医疗平台", "organization": "某医疗科技公司"},
}


@pytest.fixture
def corpus(api):  # noqa: ANN001, ANN201
    for record_id, need in NEEDS.items():
        assert api.put(f"/v1/needs/{record_id}", json=need, headers=CLIENT_H).status_code == 201
    for record_id, cap in CAPS.items():
        assert api.put(f"/v1/capabilities/{record_id}", json=cap, headers=CLIENT_H).status_code == 201
    return api


def give(client, need_id: str, cap_id: str, label: str, **extra) -> dict:  # noqa: ANN001
    r = client.post("/v1/feedback", json={"need_id": need_id, "capability_id": cap_id, "label": label, **extra},
                    headers=CLIENT_H)
    assert r.status_code == 201, r.text
    return r.json()


def test_feedback_is_stored_with_version_and_rank(corpus):
    row = give(corpus, "N-w1", "C-1", "contacted", note="已电话联系, 下周现场考察", index_version="v1",
               rank_shown=2, direction="need_to_capability")
    assert row["id"] >= 1 and row["created_at"]
    assert {k: row[k] for k in ("need_id", "capability_id", "label", "rank_shown", "index_version", "direction")} \
        == {"need_id": "N-w1", "capability_id": "C-1", "label": "contacted", "rank_shown": 2,
            "index_version": "v1", "direction": "need_to_capability"}
    exported = corpus.get("/v1/admin/feedback/export", params={"format": "jsonl"}, headers=ADMIN_H)
    lines = [json.loads(line) for line in exported.text.splitlines()]
    assert len(lines) == 1 and lines[0]["note"] == "已电话联系, 下周现场考察" and lines[0]["need_title"] == "山洪灾害智能预警"


def test_feedback_needs_a_writer_token(corpus):
    body = {"need_id": "N-w1", "capability_id": "C-1", "label": "relevant"}
    assert corpus.post("/v1/feedback", json=body).status_code == 401
    assert corpus.post("/v1/feedback", json=body, headers={"Authorization": "Bearer nope"}).status_code == 403
    assert corpus.post("/v1/feedback", json=body, headers=ADMIN_H).status_code == 201


def test_unknown_ids_are_404_naming_which(corpus):
    r = corpus.post("/v1/feedback", json={"need_id": "N-none", "capability_id": "C-1", "label": "deal"},
                    headers=CLIENT_H)
    assert r.status_code == 404 and "need 'N-none'" in r.json()["error"]["message"]
    assert r.json()["error"]["details"] == [{"field": "need_id", "id": "N-none"}]
    r = corpus.post("/v1/feedback", json={"need_id": "N-none", "capability_id": "C-none", "label": "deal"},
                    headers=CLIENT_H)
    assert [d["field"] for d in r.json()["error"]["details"]] == ["need_id", "capability_id"]
    assert corpus.get("/v1/admin/feedback/export", params={"format": "jsonl"}, headers=ADMIN_H).content == b""


@pytest.mark.parametrize("patch, field", [
    ({"label": "maybe"}, "label"), ({"rank_shown": 0}, "rank_shown"), ({"need_id": "bad id!"}, "need_id"),
    ({"direction": "sideways"}, "direction"), ({"extra": 1}, "extra"), ({"note": "长" * 2001}, "note"),
])
def test_bad_feedback_is_a_422_naming_the_field(corpus, patch, field):
    body = {"need_id": "N-w1", "capability_id": "C-1", "label": "relevant", **patch}
    r = corpus.post("/v1/feedback", json=body, headers=CLIENT_H)
    assert r.status_code == 422 and [d["field"] for d in r.json()["error"]["details"]] == [field], r.text


def test_csv_export_has_bom_and_round_trips_chinese(corpus):
    give(corpus, "N-w1", "C-1", "relevant", rank_shown=1, note="方案对口, 含逗号,与\"引号\"")
    give(corpus, "N-h1", "C-3", "irrelevant", rank_shown=4)
    r = corpus.get("/v1/admin/feedback/export", params={"format": "csv"}, headers=ADMIN_H)
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    assert r.headers["content-disposition"].startswith("attachment; filename=\"feedback-")
    assert r.content.startswith(b"\xef\xbb\xbf")
    rows = list(csv.DictReader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [(x["need_id"], x["label"], x["rank_shown"]) for x in rows] == [("N-w1", "relevant", "1"),
                                                                           ("N-h1", "irrelevant", "4")]
    assert rows[0]["note"] == "方案对口, 含逗号,与\"引号\"" and rows[0]["capability_title"] == "多源融合山洪预警平台"
    assert rows[0]["need_domain"] == "smart_water" and rows[0]["created_at"].endswith("+00:00")
    assert corpus.get("/v1/admin/feedback/export", params={"format": "xml"}, headers=ADMIN_H).status_code == 422


def seed_judgments(client) -> None:  # noqa: ANN001
    give(client, "N-w1", "C-1", "contacted", rank_shown=1, index_version="v1")
    give(client, "N-w1", "C-1", "deal")  # same pair later: one judgment, rank kept from before
    give(client, "N-w1", "C-2", "irrelevant", rank_shown=2, index_version="v1")
    give(client, "N-w2", "C-2", "relevant", rank_shown=1, index_version="v2")
    give(client, "N-w2", "C-1", "relevant", rank_shown=5, index_version="v2")
    give(client, "N-w2", "C-1", "irrelevant", rank_shown=5, index_version="v2")  # changed their mind
    give(client, "N-h1", "C-3", "relevant", rank_shown=3, index_version="v2")
    give(client, "N-h1", "C-1", "irrelevant")  # no rank: counted in labels only


def test_report_gives_precision_at_ranks_shown_by_domain(corpus):
    seed_judgments(corpus)
    report = corpus.get("/v1/admin/feedback/report", params=[("k", 1), ("k", 3), ("k", 5)], headers=ADMIN_H).json()
    overall = report["overall"]
    assert report["feedback_rows"] == 8 and overall["judged"] == 6 and overall["with_rank"] == 5
    assert overall["labels"] == {"relevant": 2, "irrelevant": 3, "contacted": 0, "deal": 1}
    assert overall["precision"] == {"p@1": {"precision": 1.0, "n": 2}, "p@3": {"precision": 0.75, "n": 4},
                                    "p@5": {"precision": 0.6, "n": 5}}
    water = next(d for d in report["by_domain"] if d["domain"] == "smart_water")
    assert water["name"] == "智慧水利" and water["judged"] == 4
    assert water["precision"]["p@3"] == {"precision": 0.6667, "n": 3}
    health = next(d for d in report["by_domain"] if d["domain"] == "healthcare")
    assert health["precision"]["p@1"] == {"precision": None, "n": 0}
    assert health["precision"]["p@3"] == {"precision": 1.0, "n": 1}
    versions = {v["index_version"]: v for v in report["by_index_version"]}
    assert versions["v1"]["precision"]["p@1"] == {"precision": 1.0, "n": 1} and versions["unknown"]["judged"] == 1
    bad = corpus.get("/v1/admin/feedback/report", params={"k": 0}, headers=ADMIN_H)
    assert bad.status_code == 422 and bad.json()["error"]["details"][0]["field"] == "k"


def test_cli_feedback_report_reads_the_same_database(corpus, monkeypatch):
    seed_judgments(corpus)
    settings = corpus.app.state.scenematch.settings
    monkeypatch.setenv("SCENEMATCH_DATA_DIR", str(settings.data_dir))
    monkeypatch.setenv("SCENEMATCH_DATABASE_URL", settings.resolved_database_url)
    result = CliRunner().invoke(cli_app, ["feedback-report", "--k", "1,3", "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.output)
    assert report["overall"]["precision"]["p@3"] == {"precision": 0.75, "n": 4}
    table = CliRunner().invoke(cli_app, ["feedback-report"])
    assert table.exit_code == 0 and "智慧水利" in table.output and "P@10" in table.output
    assert CliRunner().invoke(cli_app, ["feedback-report", "--k", "0"]).exit_code != 0


def test_latest_judgment_wins_and_keeps_earlier_rank():
    rows = [{"id": 1, "need_id": "N", "capability_id": "C", "label": "relevant", "rank_shown": 3,
             "index_version": "v1", "need_domain": "smart_water"},
            {"id": 2, "need_id": "N", "capability_id": "C", "label": "irrelevant", "rank_shown": None,
             "index_version": None, "need_domain": "smart_water"}]
    [judgment] = feedback.latest_judgments(rows)
    assert judgment["label"] == "irrelevant" and judgment["rank_shown"] == 3 and judgment["index_version"] == "v1"
    report = feedback.precision_report(rows, default_taxonomy(), ks=(3,))
    assert report["overall"]["precision"]["p@3"] == {"precision": 0.0, "n": 1}
    empty = feedback.precision_report([], default_taxonomy())
    assert empty["overall"]["judged"] == 0 and empty["by_domain"] == []
