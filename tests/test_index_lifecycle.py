"""Index versions: atomic writes, crash leftovers, live incremental updates, kill -9 mid-build."""
from __future__ import annotations

import gc
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from indexer.retrieval import versions
from service.app import create_app
from tests.conftest import CLIENT_H, make_settings, wait_ready

ROOT = Path(__file__).resolve().parents[1]

SEED = [
    ("need", "N-a", {"title": "长江干堤险情智能巡查", "description": "汛期需要对堤防管涌、渗漏进行全天候巡查和预警。",
                     "domain": "smart_water", "region": "荆州市"}),
    ("need", "N-b", {"title": "养老院老人跌倒监测", "description": "夜间老人离床、跌倒需及时发现并通知护理员。",
                     "domain": "elderly_disability_childcare", "region": "武汉市"}),
    ("capability", "C-a", {"title": "堤防渗漏分布式光纤监测", "description": "基于分布式光纤测温识别堤身渗漏与管涌隐患。",
                           "domains": ["smart_water"], "org_type": "institute"}),
    ("capability", "C-b", {"title": "毫米波雷达跌倒检测终端", "description": "非接触式感知人体姿态, 跌倒后10秒内报警。",
                           "domains": ["elderly_disability_childcare"]}),
]


def put(client: TestClient, kind: str, rid: str, body: dict) -> None:
    plural = "needs" if kind == "need" else "capabilities"
    r = client.put(f"/v1/{plural}/{rid}", json=body, headers=CLIENT_H)
    assert r.status_code in (200, 201), r.text


def search_ids(client: TestClient, text: str, target: str = "capabilities") -> list[str]:
    r = client.post("/v1/search", json={"query": text, "target": target, "limit": 20})
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["items"]]


def wait_for(predicate, timeout: float = 10.0) -> float:
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if predicate():
            return time.monotonic() - start
        time.sleep(0.2)
    raise AssertionError(f"condition not met within {timeout}s")


def test_write_version_failure_leaves_nothing(tmp_path):
    root = tmp_path / "index"

    def boom(folder: Path) -> dict:
        (folder / "half-written.bin").write_bytes(b"x" * 100)
        raise OSError("disk full")

    with pytest.raises(OSError):
        versions.write_version(root, "v1", boom)
    assert versions.complete_versions(root) == [] and list(root.iterdir()) == []


def test_activation_keeps_two_versions_and_cleanup_removes_leftovers(tmp_path):
    root = tmp_path / "index"
    for name in ("v1", "v2", "v3"):
        versions.write_version(root, name, lambda folder: {"n": 1})
        versions.activate(root, name)
    assert versions.active_version(root) == "v3"
    assert versions.complete_versions(root) == ["v2", "v3"]
    (root / ".tmp-v4").mkdir()  # what a crash mid-write leaves
    (root / "v5").mkdir()  # renamed without a manifest: impossible by construction, still cleaned
    assert sorted(versions.cleanup(root)) == [".tmp-v4", "v5"]
    (root / "ACTIVE").write_text("v404")  # dangling pointer: treated as no active version
    assert versions.active_version(root) is None


def test_upserts_and_deletes_are_searchable_within_seconds(tmp_path, database_url):
    settings = make_settings(tmp_path, database_url, build_index_on_start=True, refresh_interval_s=0.5)
    with TestClient(create_app(settings)) as client:
        for kind, rid, body in SEED:
            put(client, kind, rid, body)
        wait_ready(client, timeout=600)
        # The served base segment is left out of garbage collection (no full-collection pauses).
        base_tokens = client.app.state.scenematch.extras["engine"].snapshot.base["capability"].tokens
        assert not any(obj is base_tokens for obj in gc.get_objects())
        version = client.get("/v1/needs/N-a/matches").json()["index_version"]
        wait_for(lambda: search_ids(client, "光纤渗漏监测")[:1] == ["C-a"])
        put(client, "capability", "C-new", {"title": "林区无人机火情巡航", "description": "固定翼无人机搭载热成像巡航林区, 发现火点自动报警。",
                                             "domains": ["forestry"]})
        took = wait_for(lambda: "C-new" in search_ids(client, "无人机森林火情"))
        assert took < 10
        # An update replaces the old text everywhere; the old record version is not served.
        put(client, "capability", "C-new", {"title": "智慧茶园虫情测报灯", "description": "自动识别茶园害虫并计数。",
                                             "domains": ["modern_agriculture"]})
        wait_for(lambda: search_ids(client, "茶园害虫测报")[:1] == ["C-new"])
        matches = client.get("/v1/needs/N-a/matches", params={"limit": 10}).json()
        assert matches["index_version"] == version  # served from the same version plus the live delta
        assert client.delete("/v1/capabilities/C-a", headers=CLIENT_H).status_code == 204
        wait_for(lambda: "C-a" not in search_ids(client, "光纤渗漏监测"))
        # A new need is matchable by id as soon as it is indexed.
        put(client, "need", "N-c", {"title": "茶园病虫害绿色防控", "description": "需要害虫自动测报。",
                                    "domain": "modern_agriculture"})
        wait_for(lambda: client.get("/v1/needs/N-c/matches").status_code == 200)
        assert client.get("/v1/needs/N-c/matches").json()["items"][0]["id"] == "C-new"
    # A restart loads the active version and catches up with the change log.
    with TestClient(create_app(settings)) as client:
        wait_ready(client, timeout=600)
        assert "C-a" not in search_ids(client, "光纤渗漏监测")
        assert search_ids(client, "茶园害虫测报")[:1] == ["C-new"]


CHILD = textwrap.dedent("""
    import sys
    from service.app import init_state
    from service.search import open_engine
    from service.settings import Settings
    state = init_state(Settings(data_dir=sys.argv[1], load_demo=False))
    engine = open_engine(state)
    engine.open(build_if_missing=False)
    print("building", flush=True)
    while True:
        engine.rebuild()
        print("built", flush=True)
""")


@pytest.mark.parametrize("delay", [0.0, 0.4, 1.5])
def test_kill_9_during_rebuild_leaves_previous_version_serving(tmp_path, delay):
    settings = make_settings(tmp_path, None, build_index_on_start=True)
    with TestClient(create_app(settings)) as client:
        for kind, rid, body in SEED:
            put(client, kind, rid, body)
        wait_ready(client, timeout=600)
        client.post("/v1/search", json={"query": "x"})
    root = versions.index_root(settings.data_dir)
    # Rebuild once so the seed records are in the active version (the start-up build may predate them).
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    child = subprocess.Popen([sys.executable, "-c", CHILD, str(settings.data_dir)], cwd=ROOT, env=env,
                             stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout.readline().strip() == "building"
        time.sleep(delay)
        child.send_signal(signal.SIGKILL)
    finally:
        child.wait(timeout=30)
    active = versions.active_version(root)
    assert active is not None and versions.read_manifest(root / active)["counts"]["capabilities"] in (0, 2)
    with TestClient(create_app(settings)) as client:
        wait_ready(client, timeout=600)
        assert not [p for p in root.iterdir() if p.name.startswith(".tmp-")]
        assert len(versions.complete_versions(root)) <= versions.KEEP
        assert search_ids(client, "毫米波雷达跌倒")[:1] == ["C-b"]
