"""Key terms stored at index time: compact storage, persistence, and explanations unchanged."""
from __future__ import annotations

import dataclasses

import numpy as np

from indexer.retrieval import keyterms
from indexer.retrieval.documents import key_text_of
from indexer.retrieval.keyterms import KeyTerms
from indexer.retrieval.segment import Segment
from models import repository


def test_build_of_concat_and_round_trip(tmp_path):
    rows = [[("堤防", 1.0), ("渗漏", 0.5)], [], [("渗漏", 1.0), ("光纤", 0.25), ("测温", 0.125)]]
    kt = KeyTerms.build(rows)
    assert len(kt) == 3 and sorted(kt.vocab) == sorted({"堤防", "渗漏", "光纤", "测温"})
    assert kt.of(0) == {"堤防": 1.0, "渗漏": 0.5} and kt.of(1) == {}
    assert list(kt.of(2, top_k=2)) == ["渗漏", "光纤"]  # best first, a prefix for the query side
    both = KeyTerms.concat([(kt, np.array([2, 0])), (KeyTerms.build([[("跌倒", 1.0)]]), np.array([0]))])
    assert [both.of(i) for i in range(3)] == [kt.of(2), kt.of(0), {"跌倒": 1.0}]
    assert KeyTerms.load(tmp_path) is None  # a version written before key terms were stored
    kt.save(tmp_path)
    again = KeyTerms.load(tmp_path)
    assert again is not None and [again.of(i) for i in range(3)] == [kt.of(i) for i in range(3)]


def served_segments(client) -> list[Segment]:
    snap = client.app.state.scenematch.extras["engine"].snapshot
    return [seg for kind in ("need", "capability") for seg, _ in snap.segments(kind)]


def test_served_index_stores_each_records_key_terms(demo_client):
    engine = demo_client.app.state.scenematch.extras["engine"]
    sessions = demo_client.app.state.scenematch.sessions
    for seg in served_segments(demo_client):
        if not len(seg):
            continue
        assert seg.key_terms is not None and len(seg.key_terms) == len(seg)
        sample = seg.ids[:: max(1, len(seg) // 15)]
        with sessions() as session:
            found = repository.get_many(session, seg.kind, sample)
        for rid in sample:
            expected = engine.tokenizer.key_terms(key_text_of(found[rid]), top_k=keyterms.TOP_K)
            stored = seg.key_terms.of(seg.row_of[rid])
            assert list(stored) == [t for t, _ in expected]
            assert np.allclose(list(stored.values()), [w for _, w in expected], atol=1e-6)


def test_explanations_from_stored_terms_equal_per_request_extraction(demo_client):
    needs = demo_client.get("/v1/needs", params={"limit": 8}).json()["items"]
    caps = demo_client.get("/v1/capabilities", params={"limit": 4}).json()["items"]
    urls = [f"/v1/needs/{n['id']}/matches" for n in needs] + [f"/v1/capabilities/{c['id']}/matches" for c in caps]
    stored = [demo_client.get(u, params={"limit": 10}).json()["items"] for u in urls]
    assert any(m["explanation"]["shared_terms"] for page in stored for m in page)
    segments = served_segments(demo_client)
    saved = [seg.key_terms for seg in segments]
    try:
        for seg in segments:  # as an index version written before key terms were stored
            object.__setattr__(seg, "key_terms", None)
        extracted = [demo_client.get(u, params={"limit": 10}).json()["items"] for u in urls]
    finally:
        for seg, kt in zip(segments, saved):
            seg.key_terms = kt
    for a_page, b_page in zip(stored, extracted):
        assert [m["id"] for m in a_page] == [m["id"] for m in b_page]
        for a, b in zip(a_page, b_page):
            assert a["explanation"]["shared_terms"] == b["explanation"]["shared_terms"]
            assert a["explanation"]["summary"] == b["explanation"]["summary"]


def test_merge_keeps_key_terms_aligned_with_rows():
    from indexer.retrieval.documents import IndexDoc

    def seg(ids: list[str], terms: list[list[tuple[str, float]]]) -> Segment:
        docs = [IndexDoc(id=i, kind="capability", title=i, body="", domains=[], region="", status="",
                         org_type="other", restricted=False, passages=[i]) for i in ids]
        vecs = np.eye(len(ids), 4, dtype=np.float32)
        return Segment.build("capability", docs, ["a"], doc_vectors=vecs, passage_vectors=vecs,
                             passage_offsets=np.arange(len(ids) + 1), tokens=[[i] for i in ids], key_terms=terms)

    base = seg(["x", "y", "z"], [[("甲", 1.0)], [("乙", 1.0)], [("丙", 1.0)]])
    delta = seg(["w"], [[("丁", 1.0), ("甲", 0.5)]])
    merged = Segment.merge(base, np.array([True, False, True]), delta)
    assert merged.ids == ["x", "z", "w"]
    assert [merged.key_terms_of(merged.row_of[i], 80) for i in merged.ids] == [
        {"甲": 1.0}, {"丙": 1.0}, {"丁": 1.0, "甲": 0.5}]
    assert dataclasses.replace(merged, key_terms=None).key_terms_of(0, 80) is None
