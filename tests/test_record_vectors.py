"""Which texts a build encodes per record (indexer/retrieval/record_vectors.py), with a counting
fake encoder; the real model's agreement with these vectors is in tests/test_onnx_encoder.py."""
from __future__ import annotations

import numpy as np
import pytest

from indexer.retrieval.documents import CAPABILITY, NEED, IndexDoc, passage_texts_for_embedding
from indexer.retrieval.record_vectors import EncodePlan, encode_records, unit_mean
from tests.test_embedding import FakeEncoder


def doc(kind: str, rid: str, title: str, body: str, passages: list[str]) -> IndexDoc:
    return IndexDoc(id=rid, kind=kind, title=title, body=body, domains=[], region="", status="",
                    org_type="", restricted=False, passages=passages)


SHORT = doc(NEED, "n1", "智慧水务", "管网漏损监测", ["管网漏损监测"])
LONG = doc(NEED, "n2", "森林防火", "新建高山监控点。烟火自动识别。", ["新建高山监控点。", "烟火自动识别。"])
CAP_SHORT = doc(CAPABILITY, "c1", "视觉检测", "工业缺陷检测", ["工业缺陷检测"])
CAP_LONG = doc(CAPABILITY, "c2", "桥梁监测", "应变采集。挠度分析。振动数据。", ["应变采集。", "挠度分析。", "振动数据。"])


def encoded(fake: FakeEncoder, role: str) -> list[str]:
    return [t for r, texts in fake.calls if r == role for t in texts]


def test_single_passage_text_is_encoded_once_and_serves_both():
    fake = FakeEncoder()
    out = encode_records([CAP_SHORT], fake, EncodePlan(whole_from_passages=True))
    assert encoded(fake, "passage") == [CAP_SHORT.full_text]
    assert out.texts_encoded == 1
    np.testing.assert_array_equal(out.doc_vectors[0], out.passage_vectors[0])
    assert out.passage_offsets.tolist() == [0, 1] and out.query_vectors is None


def test_long_text_whole_vector_is_the_normalised_passage_mean():
    fake = FakeEncoder()
    out = encode_records([CAP_LONG, CAP_SHORT], fake, EncodePlan(whole_from_passages=True))
    titled = passage_texts_for_embedding(CAP_LONG)
    assert CAP_LONG.full_text not in encoded(fake, "passage")
    assert sorted(encoded(fake, "passage")) == sorted([*titled, CAP_SHORT.full_text])
    assert len([c for c in fake.calls if c[0] == "passage"]) == 1  # one length-sorted call
    assert out.passage_offsets.tolist() == [0, 3, 4]
    np.testing.assert_allclose(out.doc_vectors[0], unit_mean(out.passage_vectors[0:3]), atol=1e-6)
    assert abs(float(np.linalg.norm(out.doc_vectors[0])) - 1.0) < 1e-5
    assert out.texts_encoded == 4


def test_long_text_whole_encoded_when_the_plan_says_so():
    fake = FakeEncoder()
    out = encode_records([CAP_LONG], fake, EncodePlan(whole_from_passages=False))
    assert CAP_LONG.full_text in encoded(fake, "passage")
    whole = fake.encode_passages([CAP_LONG.full_text])[0]
    np.testing.assert_allclose(out.doc_vectors[0], whole, atol=1e-6)
    assert out.texts_encoded == 4 and len(out.passage_vectors) == 3


@pytest.mark.parametrize(("role", "queried"), [("all", ["n1", "n2"]), ("single", ["n1"]), ("none", [])])
def test_need_query_role_per_plan(role, queried):
    fake = FakeEncoder()
    needs = [SHORT, LONG]
    out = encode_records(needs, fake, EncodePlan(whole_from_passages=True, need_query_role=role))
    by_id = {d.id: d for d in needs}
    assert encoded(fake, "query") == [by_id[i].full_text for i in queried]
    if not queried:
        assert out.query_vectors is None  # the segment searches with the whole-text vectors
        return
    for row, d in enumerate(needs):
        expected = fake.encode_queries([d.full_text])[0] if d.id in queried else out.doc_vectors[row]
        np.testing.assert_allclose(out.query_vectors[row], expected, atol=1e-6)


def test_capabilities_never_get_a_query_role():
    fake = FakeEncoder()
    out = encode_records([CAP_SHORT, CAP_LONG], fake, EncodePlan(need_query_role="all"))
    assert encoded(fake, "query") == [] and out.query_vectors is None


def test_empty_and_bad_plans():
    out = encode_records([], FakeEncoder())
    assert out.doc_vectors.shape == (0, 8) and out.passage_offsets.tolist() == [0] and out.texts_encoded == 0
    with pytest.raises(ValueError):
        EncodePlan(need_query_role="sometimes")


def test_progress_reaches_the_total():
    seen: list[tuple[int, int]] = []
    encode_records([SHORT, LONG], FakeEncoder(), EncodePlan(whole_from_passages=True, need_query_role="all"),
                   lambda d, t: seen.append((d, t)))
    assert seen[-1][0] == seen[-1][1] == 5  # 1 + 2 passages, 2 queries
    assert all(d <= t for d, t in seen)
