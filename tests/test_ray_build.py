"""`scenematch reindex --full --engine ray --no-cache` on a local Ray (loopback only).

The version it writes must hold the in-process build's vectors and rank like it, and no Ray
process may outlive the command. Kept small: Ray's start-up and its actor's model load are
most of the time on 2 shared cores.
"""
from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import numpy as np
import pytest
from fastapi.testclient import TestClient

from indexer.retrieval import builder, versions
from service.app import create_app
from tests.conftest import ADMIN_H, CLIENT_H, make_settings, wait_ready
from tests.test_faults import CAPS, NEEDS, ROOT, scenematch_command

pytest.importorskip("ray")

NEED_SAMPLE = [n for n in NEEDS if n.get("visibility") != "restricted"][::25]
CAP_SAMPLE = CAPS[::25]


def ray_processes(marker: str) -> list[str]:
    """Command lines of live processes started for this Ray (its temp dir is in them)."""
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if marker in cmdline:
            found.append(cmdline[:200])
    return found


def _loopback(hex_address: str) -> bool:
    if len(hex_address) == 8:  # IPv4, little-endian: 127.x.x.x ends in 7F
        return hex_address.endswith("7F")
    return hex_address == "00000000000000000000000001000000" or (  # ::1, or ::ffff:127.x.x.x
        hex_address.startswith("0000000000000000FFFF0000") and hex_address.endswith("7F"))


def exposed_listeners(marker: str) -> list[str]:
    """Listening TCP sockets of this Ray's processes on anything but loopback."""
    listening = {}
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        for line in Path(table).read_text().splitlines()[1:]:
            fields = line.split()
            if fields[3] == "0A":  # LISTEN
                listening[fields[9]] = fields[1]
    exposed = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if marker not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace"):
                continue
            for fd in Path(f"/proc/{pid}/fd").iterdir():
                target = os.readlink(fd)
                inode = target[len("socket:["):-1] if target.startswith("socket:[") else None
                if inode in listening and not _loopback(listening[inode].split(":")[0]):
                    exposed.append(f"pid {pid} listens on {listening[inode]}")
        except OSError:
            continue
    return exposed


def matches(client: TestClient, need_id: str) -> list[str]:
    r = client.get(f"/v1/needs/{need_id}/matches", params={"limit": 10})
    assert r.status_code == 200, r.text
    return [m["id"] for m in r.json()["items"]]


def test_a_full_build_through_ray_holds_the_in_process_vectors_and_ranks_alike(tmp_path: Path) -> None:
    with TestClient(create_app(make_settings(tmp_path, None))) as api:
        for plural, items in (("needs", NEED_SAMPLE), ("capabilities", CAP_SAMPLE)):
            assert api.post(f"/v1/{plural}/bulk", json={"items": items}, headers=CLIENT_H).json()["failed"] == 0
    env = {**os.environ, "SCENEMATCH_DATA_DIR": str(tmp_path / "data"), "SCENEMATCH_LOAD_DEMO": "false",
           "SCENEMATCH_LOG_LEVEL": "WARNING"}
    env.pop("SCENEMATCH_DATABASE_URL", None)
    command = subprocess.Popen([*scenematch_command(), "reindex", "--full", "--engine", "ray", "--no-cache"],
                               cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    exposed: list[str] = []
    seen_ray = False
    while command.poll() is None:  # while it runs: Ray's processes listen on loopback only
        seen_ray = seen_ray or bool(ray_processes("/tmp/smray-"))
        exposed += exposed_listeners("/tmp/smray-")
        time.sleep(0.5)
    _, stderr = command.communicate(timeout=60)
    assert command.returncode == 0, stderr[-3000:]
    assert seen_ray and not exposed, exposed[:5]
    time.sleep(2)  # ray.shutdown() has returned; its children exit on their own signal
    assert not ray_processes("/tmp/smray-"), ray_processes("/tmp/smray-")
    root = versions.index_root(tmp_path / "data")
    by_ray = versions.active_version(root)
    assert by_ray is not None

    settings = make_settings(tmp_path, None, build_index_on_start=True)
    with TestClient(create_app(settings)) as client:
        wait_ready(client)
        assert client.get("/v1/admin/index", headers=ADMIN_H).json()["version"] == by_ray
        ranked_on_ray = {n["id"]: matches(client, n["id"]) for n in NEED_SAMPLE}
        job = client.post("/v1/admin/reindex", json={"mode": "full"}, headers=ADMIN_H).json()
        deadline = time.monotonic() + 900
        while (status := client.get(job["status_url"], headers=ADMIN_H).json())["status"] in ("queued", "running"):
            assert time.monotonic() < deadline
            time.sleep(0.5)
        assert status["status"] == "succeeded", status
        in_process = status["result"]["version"]
        ranked_here = {n["id"]: matches(client, n["id"]) for n in NEED_SAMPLE}
    # The default int8 encoder scales activations per batch, and Ray's actors batch texts otherwise
    # than one process does: vectors agree to cosine ~0.998 (docs/benchmarks.md "Encoder"), so near-ties
    # among the top 10 may swap; ranks must still be nearly the same.
    overlaps = [len(set(ranked_on_ray[n]) & set(ranked_here[n])) / max(1, len(ranked_here[n])) for n in ranked_here]
    assert np.mean(overlaps) >= 0.9, overlaps
    ray_segments, local_segments = builder.load_segments(root / by_ray), builder.load_segments(root / in_process)
    for kind, segment in local_segments.items():
        other = ray_segments[kind]
        order = [other.row_of[i] for i in segment.ids]
        assert sorted(segment.ids) == sorted(other.ids)
        for mine, theirs in ((segment.doc_vectors, other.doc_vectors[order]),
                             (segment.query_vectors, other.query_vectors[order])):
            assert mine.shape == theirs.shape
            if len(mine):  # the same model on the same backend
                assert float(np.sum(mine * theirs, axis=1).min()) > 0.995
