"""Unit tests for indexer.retrieval.text: taxonomy seed, tokenizer, sentences and passages."""

from __future__ import annotations

import json
import shutil
from concurrent.futures import ThreadPoolExecutor

import pytest

from indexer.retrieval.text import SEED_DIR, ChineseTokenizer, expand_synonyms, load_taxonomy, normalize

CATEGORIES = {
    "new_frontiers": "新领域新赛道",
    "industrial_upgrading": "产业转型升级",
    "sector_applications": "行业领域深度应用",
    "social_governance": "创新社会治理",
    "livelihood": "民生",
}
DOMAINS = {
    "new_frontiers": ["digital_economy", "artificial_intelligence", "unmanned_systems", "biomedicine", "clean_energy"],
    "industrial_upgrading": ["manufacturing", "transportation", "smart_logistics", "modern_agriculture"],
    "sector_applications": ["emergency_management", "work_safety", "smart_water", "forestry"],
    "social_governance": ["government_services", "smart_city", "rural_development"],
    "livelihood": ["healthcare", "elderly_disability_childcare", "culture_tourism", "cross_sector_consumption"],
}


@pytest.fixture(scope="module")
def tok() -> ChineseTokenizer:
    return ChineseTokenizer()


@pytest.fixture(scope="module")
def taxonomy() -> dict:
    return load_taxonomy()


# -- taxonomy seed -------------------------------------------------------------


def test_taxonomy_shape(taxonomy):
    assert taxonomy["version"] == 1
    assert taxonomy["source"] == "鄂政办发〔2025〕43号"
    assert {c["code"]: c["name"] for c in taxonomy["categories"]} == CATEGORIES
    assert sorted(c["order"] for c in taxonomy["categories"]) == [1, 2, 3, 4, 5]
    domains = taxonomy["domains"]
    assert len(domains) == 20
    assert len({d["code"] for d in domains}) == 20
    assert len({d["name"] for d in domains}) == 20
    assert sorted(d["order"] for d in domains) == list(range(1, 21))
    by_cat: dict[str, list[str]] = {}
    for d in sorted(domains, key=lambda d: d["order"]):
        by_cat.setdefault(d["category"], []).append(d["code"])
    assert by_cat == DOMAINS


def test_taxonomy_content(taxonomy, tok):
    all_terms = set()
    for d in taxonomy["domains"]:
        assert d["description"].strip(), d["code"]
        terms = d["key_terms"]
        assert 15 <= len(terms) <= 30, d["code"]
        assert len(set(terms)) == len(terms), d["code"]
        all_terms.update(terms)
        for head, variants in d["synonyms"].items():
            assert head and variants and all(v.strip() for v in variants), (d["code"], head)
    # Seed lists must not swallow the vocabulary they are meant to protect.
    for t in all_terms:
        assert normalize(t) not in tok.stopwords, t
        assert not tok.is_generic(t), t


def test_seed_word_lists(tok):
    assert 600 <= len(tok.stopwords) <= 1100
    assert 80 <= len(tok.generic_terms) <= 150
    for w in ["的", "了", "和", "我们", "，", "。"]:
        assert normalize(w) in tok.stopwords
    for w in ["系统", "平台", "提升", "智能化", "赋能", "一体化", "解决方案", "场景", "需求"]:
        assert tok.is_generic(w), w
    assert not tok.is_generic("无人机")


# -- tokens --------------------------------------------------------------------


def test_key_terms_and_synonyms_stay_whole(taxonomy, tok):
    broken = []
    for d in taxonomy["domains"]:
        terms = list(d["key_terms"])
        for head, variants in d["synonyms"].items():
            terms += [head, *variants]
        broken += [t for t in terms if normalize(t) not in tok.tokens(t)]
    assert broken == []


def test_key_terms_whole_in_context(tok):
    toks = tok.tokens("建设数字孪生流域，实现山洪预警与水网调度；部署人形机器人和低空经济应用。")
    for t in ["数字孪生流域", "山洪预警", "水网调度", "人形机器人", "低空经济"]:
        assert t in toks, t
    # Search mode also yields the parts of long compounds, including inner taxonomy terms.
    assert "流域" in toks and "数字孪生" in toks


def test_tokens_filtering_and_normalisation(tok):
    toks = tok.tokens("我们的ＡＩ制药平台，在2025年处理了 3.5 万条数据！A 级")
    assert "ai制药" in toks  # NFKC full-width → half-width, lowercased
    for gone in ["我们", "的", "，", "！", "2025", "3.5", "a"]:
        assert gone not in toks, gone
    assert all(t == t.lower() and t.strip() == t and t for t in toks)
    assert "平台" in toks  # generic words stay in BM25 tokens; IDF discounts them


def test_tokens_empty(tok):
    assert tok.tokens("") == []
    assert tok.tokens("，。！？ 的 了") == []


def test_single_char_option(tok):
    drop = ChineseTokenizer(keep_single_chars=False)
    text = "光照与温度影响鱼和虾的生长"
    assert tok.keep_single_chars  # the default, chosen on the CSL benchmark
    assert {"鱼", "虾"} <= set(tok.tokens(text))
    assert not any(len(t) == 1 for t in drop.tokens(text))


def test_precise_mode_has_no_fragments():
    precise = ChineseTokenizer(mode="precise")
    assert precise.tokens("数字孪生流域") == ["数字孪生流域"]


def test_expand_synonyms(tok):
    assert "无人机" in expand_synonyms(["uav", "巡检"])
    assert "大模型" in tok.expand(tok.tokens("基于LLM的问答"))
    # A variant shared by two heads maps to both.
    assert {"碳中和", "碳达峰"} <= set(tok.expand(["双碳"]))
    assert tok.expand(["无人机"]) == ["无人机"]


def test_thread_safe(tok):
    texts = [f"第{i}个场景：智慧水利防洪调度与无人机巡检，提升林业监测巡护水平。" for i in range(200)]
    serial = [tok.tokens(t) for t in texts]
    with ThreadPoolExecutor(max_workers=8) as pool:
        assert list(pool.map(tok.tokens, texts)) == serial


def test_seed_dir_override(tmp_path):
    for name in ["taxonomy.json", "stopwords.txt", "generic_terms.txt"]:
        shutil.copy(SEED_DIR / name, tmp_path / name)
    tax = json.loads((tmp_path / "taxonomy.json").read_text(encoding="utf-8"))
    tax["domains"][0]["key_terms"].append("量子随机数云服务")
    (tmp_path / "taxonomy.json").write_text(json.dumps(tax, ensure_ascii=False), encoding="utf-8")
    custom = ChineseTokenizer(seed_dir=tmp_path)
    assert "量子随机数云服务" in custom.tokens("提供量子随机数云服务")


# -- key terms -----------------------------------------------------------------


def test_key_terms(tok):
    text = "本系统平台基于无人机巡检和山洪预警，提升水库大坝安全监测能力；无人机自动巡航。"
    kt = tok.key_terms(text, top_k=5)
    assert 0 < len(kt) <= 5
    words = [w for w, _ in kt]
    assert words[0] == "无人机"  # repeated domain term
    assert kt[0][1] == pytest.approx(1.0)
    assert all(a[1] >= b[1] for a, b in zip(kt, kt[1:]))
    assert not any(w in tok.stopwords or len(w) == 1 for w in words)
    full = dict(tok.key_terms(text, top_k=50))
    assert full["系统"] < full["山洪预警"] and full["平台"] < full["山洪预警"]


def test_key_terms_with_corpus_idf(tok):
    kt = dict(tok.key_terms("无人机用于巡检。无人机", idf={"无人机": 0.1, "巡检": 5.0}))
    assert kt["巡检"] == pytest.approx(1.0) and kt["无人机"] < 1.0


# -- sentences and passages ----------------------------------------------------


def test_sentences_split(tok):
    text = "第一句话说明背景情况。第二句话提出问题吗？第三句话非常重要！第四句分号结尾；第五行没有标点\n第六行也是一句完整的话"
    assert tok.sentences(text, min_chars=1) == [
        "第一句话说明背景情况。",
        "第二句话提出问题吗？",
        "第三句话非常重要！",
        "第四句分号结尾；",
        "第五行没有标点",
        "第六行也是一句完整的话",
    ]


def test_sentences_numbered_items_and_merging(tok):
    text = "主要工作包括：1.建设数据中台并接入业务系统；2.开发AI质检系统，精度达99.5%。一是加强在线监测，二是完善预警处置。"
    s = tok.sentences(text, min_chars=1)
    assert "1.建设数据中台并接入业务系统；" in s
    assert "2.开发AI质检系统，精度达99.5%。" in s  # decimal point is not a boundary
    assert "二是完善预警处置。" in s
    # Short pieces (bare headings) merge into the following sentence.
    merged = tok.sentences("（一）\n智慧水利领域。推动天空地水工一体化监测感知场景开放。")
    assert merged == ["（一）智慧水利领域。推动天空地水工一体化监测感知场景开放。"]
    assert tok.sentences("正文第一句足够长，不需要合并。附注。") == ["正文第一句足够长，不需要合并。附注。"]


def test_sentences_ascii_period_as_chinese_full_stop(tok):
    text = "目的 观察补肾活血汤的临床疗效.方法 将120例患者随机分为两组,疗程8周.结果 差异有统计学意义(P<0.05)."
    s = tok.sentences(text)
    assert len(s) == 3 and s[1].startswith("方法") and "0.05" in s[2]


def _is_join_of_sentences(passage: str, sents: list[str]) -> bool:
    """True if passage is consecutive whole sentences (joined directly or by one space)."""
    for i in range(len(sents)):
        rest = passage
        j = i
        while j < len(sents) and rest.startswith(sents[j]):
            rest = rest[len(sents[j]):].lstrip(" ")
            j += 1
            if not rest:
                return True
    return False


@pytest.mark.parametrize("max_chars", [50, 80, 220])
def test_passages_respect_length_and_boundaries(tok, max_chars):
    text = (
        "智慧水利领域。推动天空地水工一体化监测感知、水网工程建设管理、江河湖库巡查等应用场景开放。"
        "提升流域智能防洪、水网智能调度能力。林业领域。加强低空、遥感等技术融合应用，发展林草湿荒调查监测。"
        "提升国家公园、自然保护区等监测巡护水平！政务服务领域？聚焦智能预约、智能身份认证。\n"
    ) * 3
    sents = tok.sentences(text)
    assert max(map(len, sents)) <= max_chars  # so every passage must be whole sentences
    ps = tok.passages(text, max_chars=max_chars, overlap_sentences=1)
    assert ps and all(len(p) <= max_chars for p in ps)
    assert all(_is_join_of_sentences(p, sents) for p in ps)
    covered = "".join(ps)
    assert all(s in covered for s in sents)


def test_passages_overlap(tok):
    text = "".join(f"第{i}号句子描述一个独立的应用场景需求。" for i in range(12))
    ps = tok.passages(text, max_chars=60, overlap_sentences=1)
    sents = tok.sentences(text)
    for a, b in zip(ps, ps[1:]):
        last = [s for s in sents if a.endswith(s)][0]
        assert b.startswith(last)
    no_overlap = tok.passages(text, max_chars=60, overlap_sentences=0)
    assert "".join(no_overlap) == text


def test_passages_split_long_sentence(tok):
    long = "，".join(["水网工程建设管理与江河湖库巡查"] * 40) + "。"
    ps = tok.passages(long, max_chars=100)
    assert len(ps) > 1 and all(len(p) <= 100 for p in ps)
    assert "".join(ps) == long  # no overlap possible, nothing lost
    hard = "无" * 250
    assert [len(p) for p in tok.passages(hard, max_chars=100)] == [100, 100, 50]


def test_passages_empty(tok):
    assert tok.passages("") == []
    assert tok.sentences("") == []
