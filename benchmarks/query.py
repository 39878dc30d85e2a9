"""Query latency through HTTP against the raw index search and one encoder call, same run.

    nice .venv/bin/python -m benchmarks.query --sizes 10000,100000 --write

For each size a throw-away data dir gets the 374 demo needs and N synthetic capabilities
(demo capabilities repeated under new ids and titles; their vectors are the demo embeddings
plus a little noise, written straight into an index version: embedding 100k texts would take
hours here). A real `scenematch serve` then serves that version on 127.0.0.1 and the script
alternates, query by query:
  - match-by-id over HTTP (GET /v1/needs/{id}/matches, no encoding) vs the raw index search of
    the same need in this process (filter mask + FAISS top-100 + BM25 top-50 over the same files),
  - free-text search over HTTP (POST /v1/search) vs one encoder call on the same text,
and breaks the in-process cost down (ranking, explanations, database, JSON) to show where time goes.
A size may name the capabilities' dense index kind ("100000:flat"; default: the one the
service picks for that size). --write replaces the "## Query latency" section of docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import http.client
import json
import os
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from types import SimpleNamespace
from typing import Any

# As `scenematch serve` does (service/cli/__init__.py), so the encoder call here is timed like the server's.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np  # noqa: E402

from benchmarks.query_report import SECTION, render  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
NOISE = 0.015  # per component: cosine ≈ 0.95 between a synthetic record and its demo source


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000 if ordered else float("nan")


def p50(values: list[float]) -> float:
    return statistics.median(values) * 1000 if values else float("nan")


# ---- building the corpus ----------------------------------------------------------------------
def unit(v: np.ndarray) -> np.ndarray:
    return (v / np.linalg.norm(v, axis=-1, keepdims=True)).astype(np.float32)


def build(data_dir: Path, n_caps: int, dense_kind: str = "auto", seed: int = 11) -> dict[str, Any]:
    """DB rows and an active index version for the demo needs plus n synthetic capabilities."""
    from sqlalchemy import insert

    from indexer.retrieval import builder, versions
    from indexer.retrieval.documents import doc_from_row
    from models import repository
    from models.database import session_scope
    from models.db import Capability
    from service.app import init_state
    from service.demo import demo_records
    from service.search import open_engine
    from service.settings import Settings

    started = time.perf_counter()
    settings = Settings(data_dir=data_dir, load_demo=False, build_index_on_start=False)
    state = init_state(settings)
    engine = open_engine(state)  # the encoder and tokenizer the service will use
    encoder, tokenizer, codes = engine.encoder, engine.tokenizer, engine.domain_codes
    needs, caps = demo_records()
    with session_scope(state.sessions) as session:
        for need in needs:
            data = dict(need)
            repository.upsert(session, "need", data.pop("id"), data)
        watermark = repository.last_change_seq(session)
    need_embedded = builder.embed_docs(builder.load_docs(state.sessions, "need", tokenizer), encoder, tokenizer)
    # The demo capabilities, embedded for real (the embedding cache has them), are the sources.
    sources = [doc_from_row("capability", SimpleNamespace(id=c["id"], **{k: c.get(k) for k in (
        "title", "description", "cases", "tags", "domains", "region", "org_type", "organization", "visibility")}),
        tokenizer)
        for c in caps]
    src = builder.embed_docs(sources, encoder, tokenizer)
    rng = np.random.default_rng(seed)
    rows, docs, doc_vecs, pass_vecs, offsets, tokens, key_terms = [], [], [], [], [0], [], []
    for i in range(n_caps):
        j = i % len(caps)
        rid, title = f"C-syn-{i:06d}", f"{caps[j]['title'][:180]}·{i}"
        row = {**{k: caps[j].get(k) for k in repository.CAPABILITY_FIELDS}, "title": title}
        rows.append({**row, "id": rid, "content_hash": repository.content_hash("capability", row),
                     "domain_predicted": False, "tags": row["tags"] or [], "domains": row["domains"] or []})
        source = sources[j]
        docs.append(type(source)(**{**source.__dict__, "id": rid, "title": title}))
        doc_vecs.append(src.doc_vectors[j])
        a, b = int(src.passage_offsets[j]), int(src.passage_offsets[j + 1])
        pass_vecs.append(src.passage_vectors[a:b])
        offsets.append(offsets[-1] + (b - a))
        tokens.append(src.tokens[j] + [f"编号{i}"])
        key_terms.append(src.key_terms[j])
    doc_vectors = unit(np.stack(doc_vecs) + rng.normal(0, NOISE, (n_caps, encoder.dim)))
    passages = np.vstack(pass_vecs)
    passage_vectors = unit(passages + rng.normal(0, NOISE, passages.shape))
    with session_scope(state.sessions) as session:
        for start in range(0, len(rows), 5000):
            session.execute(insert(Capability), rows[start:start + 5000])
    # Capabilities are never the query of a match by id: no query-role vectors.
    embedded = builder.EmbeddedDocs(docs=docs, doc_vectors=doc_vectors, query_vectors=None,
                                    passage_vectors=passage_vectors, passage_offsets=np.array(offsets, np.int64),
                                    tokens=tokens, key_terms=key_terms)
    segments = {"need": builder.segment_from("need", need_embedded, codes),
                "capability": builder.segment_from("capability", embedded, codes, dense_kind=dense_kind)}
    manifest = builder.make_manifest(segments, encoder, watermark, "full", time.perf_counter() - started, {},
                                     {"synthetic": f"{n_caps} capabilities from demo vectors + noise"})
    root = versions.index_root(data_dir)
    version = versions.new_version_name()
    versions.write_version(root, version, lambda folder: builder.save_segments(folder, segments, manifest))
    versions.activate(root, version)
    state.engine.dispose()
    return {"version": version, "build_s": time.perf_counter() - started,
            "dense": segments["capability"].dense.params(), "passages": len(passage_vectors)}


# ---- the served side --------------------------------------------------------------------------
def serve(data_dir: Path) -> tuple[subprocess.Popen[bytes], str]:
    import httpx

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    env = {**os.environ, "SCENEMATCH_DATA_DIR": str(data_dir), "SCENEMATCH_LOAD_DEMO": "false",
           "SCENEMATCH_LOG_LEVEL": "WARNING", "SCENEMATCH_ADMIN_TOKEN": "bench"}
    script = Path(sys.executable).with_name("scenematch")
    command = [str(script)] if script.exists() else [sys.executable, "-c", "from service.cli import app; app()"]
    log = (data_dir.parent / "serve.log").open("wb")
    proc = subprocess.Popen([*command, "serve", "--host", "127.0.0.1", "--port", str(port)], cwd=ROOT, env=env,
                            stdout=log, stderr=subprocess.STDOUT)
    base = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + 1800
    while time.monotonic() < deadline:
        assert proc.poll() is None, f"serve exited; see {data_dir.parent / 'serve.log'}"
        try:
            if httpx.get(f"{base}/readyz", timeout=5).status_code == 200:
                return proc, base
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    proc.kill()
    raise SystemExit("service not ready")


class Http:
    """A keep-alive HTTP/1.1 client with almost no work of its own (http.client): the figures
    are the server's. httpx, for comparison, adds about 0.7 ms per call on this machine."""

    def __init__(self, base: str):
        host, port = base.removeprefix("http://").split(":")
        self.conn = http.client.HTTPConnection(host, int(port), timeout=120)

    def call(self, method: str, path: str, body: dict[str, Any] | None = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body, ensure_ascii=False).encode("utf-8")
        headers = {} if data is None else {"Content-Type": "application/json"}
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()

    def close(self) -> None:
        self.conn.close()


class InProcess:
    """The same index files loaded here, to time the raw search and each step of a request."""

    def __init__(self, data_dir: Path):
        from indexer.ranking.hybrid import RankingModel
        from indexer.ranking.matching import Matcher
        from indexer.retrieval.engine import SearchEngine
        from service.app import init_state
        from service.search import open_engine
        from service.settings import Settings

        self.state = init_state(Settings(data_dir=data_dir, load_demo=False, build_index_on_start=False))
        probe = open_engine(self.state)
        self.engine = SearchEngine(data_dir, self.state.sessions, probe.encoder, probe.tokenizer,
                                   probe.domain_codes)
        assert self.engine.open(build_if_missing=False)
        from service.reports.rows import KeyTermCache

        names = {c: d.name for c, d in self.state.taxonomy.domains.items()}
        # Built as service/search.py builds the serving matcher.
        self.matcher = Matcher(self.engine, RankingModel.load(), KeyTermCache(self.engine.tokenizer), names)
        self.raw_encoder = getattr(self.engine.encoder, "inner", self.engine.encoder)
        # The yardstick of issue 17: a plain fp32 sentence-transformers encode of one query.
        from sentence_transformers import SentenceTransformer

        from models.embedding_model import ensure_default_model

        self.plain = SentenceTransformer(str(ensure_default_model(self.state.settings.cache_dir)), device="cpu")

    def plain_encode(self, text: str) -> float:
        t0 = time.perf_counter()
        self.plain.encode([text], prompt="query: ", normalize_embeddings=True, show_progress_bar=False)
        return time.perf_counter() - t0

    def raw_search(self, need_id: str) -> float:
        """What the index itself does for a match by id: filter mask, FAISS top-100, BM25 top-50."""
        from indexer.ranking.hybrid import DENSE_CANDIDATES, LEXICAL_CANDIDATES

        snap = self.engine.snapshot
        seg, row = snap.locate("need", need_id)
        vector, tokens = seg.query_vectors[row], seg.tokens[row]
        start = time.perf_counter()
        for target, tomb in snap.segments("capability"):
            if len(target) == 0:
                continue
            allowed = target.allowed(None, include_restricted=False, excluded_rows=tomb)
            rows = np.flatnonzero(allowed)
            target.dense.search(vector[None, :], min(DENSE_CANDIDATES, len(rows)),
                                allowed_rows=None if len(rows) == len(target) else allowed)
            target.lexical.top_k(tokens, LEXICAL_CANDIDATES, allowed=allowed)
        return time.perf_counter() - start

    def steps(self, page_fn: Callable[[], Any], query: tuple[str, str] | None) -> dict[str, float]:
        """Time each step of a request as the route runs it: rank, DB rows, explanations, JSON."""
        from models import repository
        from service.match_schemas import match_response_json
        from service.routes.records import record_out

        out = {}
        t0 = time.perf_counter()
        page = page_fn()
        out["rank"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        with self.state.sessions() as session:
            rows = repository.read_many(session, page.target_kind, [h.id for h in page.hits])
            query_row = (repository.get(session, *query)
                         if query and self.matcher.needs_query_text(page) else None)  # as the route
            out["db"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            explained = [self.matcher.explain_hit(page, h, query_row, rows[h.id]) for h in page.hits]
            out["explain"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            items = [{"rank": i + 1, "score": h.score, "id": h.id, "kind": page.target_kind,
                      "item": record_out(page.target_kind, rows[h.id], self.state.taxonomy, False),
                      "explanation": e} for i, (h, e) in enumerate(zip(page.hits, explained))]
            match_response_json({"items": items, "total": page.total, "limit": 10, "offset": 0,
                                 "index_version": page.snapshot.version, "model": page.snapshot.model,
                                 "took_ms": 0.0, "query": {}})
            out["json"] = time.perf_counter() - t0
        return out


def explain_ab(local: InProcess, ids: list[str]) -> dict[str, float]:
    """Explanation time per page: key terms stored in the index vs extracted per request
    (as for an index version written before they were stored), key-term cache cold."""
    from indexer.ranking.matching import Matcher
    from service.reports.rows import KeyTermCache

    m = local.matcher
    segments = [seg for kind in ("need", "capability") for seg, _ in local.engine.snapshot.segments(kind)]
    stored = [seg.key_terms for seg in segments]
    out = {}
    for label in ("stored", "extracted"):
        if label == "extracted":
            for seg in segments:
                seg.key_terms = None
        matcher = Matcher(m.engine, m.model, KeyTermCache(getattr(m.tokenizer, "_inner", m.tokenizer)), m.names)
        local.matcher = matcher
        out[label] = p50([local.steps(lambda n=n: matcher.match_record(
            "need", n, filters=None, include_restricted=False, limit=10, offset=0), ("need", n))["explain"]
            for n in ids])
    for seg, kt in zip(segments, stored):
        seg.key_terms = kt
    local.matcher = m
    return out


def measure(size: int, dense_kind: str, workdir: Path, rounds: int, searches: int) -> dict[str, Any]:
    from service.demo import demo_records

    data_dir = workdir / f"data-{size}-{dense_kind}"
    built = build(data_dir, size, dense_kind)
    print(f"[{size}] built {built['version']} in {built['build_s']:.0f} s; dense {built['dense']}", file=sys.stderr)
    proc, base = serve(data_dir)
    try:
        local = InProcess(data_dir)
        needs, _ = demo_records()
        ids = [n["id"] for n in needs if n.get("visibility") != "restricted" and n.get("status") in ("open", "matching")]
        texts = list(dict.fromkeys(n["title"] for n in needs))[:searches]
        http = Http(base)
        for warm in ids[:5]:  # first calls load caches on both sides
            http.call("GET", f"/v1/needs/{warm}/matches")
            local.raw_search(warm)
        http.call("POST", "/v1/search", {"query": "预热"})
        local.raw_encoder.encode_queries(["预热"])
        local.plain_encode("预热")
        res: dict[str, list[float]] = {k: [] for k in ("raw", "http_match", "server_match", "http_search",
                                                       "server_search", "encoder", "http_floor",
                                                       "plain_encoder")}
        load_before = os.getloadavg()[0]
        steps_match: list[dict[str, float]] = []
        steps_search: list[dict[str, float]] = []
        for _ in range(rounds):
            for need_id in ids:
                res["raw"].append(local.raw_search(need_id))
                t0 = time.perf_counter()
                http.call("GET", "/healthz")  # the floor: one HTTP round trip through the same stack
                res["http_floor"].append(time.perf_counter() - t0)
                t0 = time.perf_counter()
                status, body = http.call("GET", f"/v1/needs/{need_id}/matches?limit=10")
                res["http_match"].append(time.perf_counter() - t0)
                assert status == 200, body
                res["server_match"].append(json.loads(body)["took_ms"] / 1000)
        for need_id in ids[:60]:
            steps_match.append(local.steps(lambda n=need_id: local.matcher.match_record(
                "need", n, filters=None, include_restricted=False, limit=10, offset=0), ("need", need_id)))
        for i, text in enumerate(texts):
            t0 = time.perf_counter()
            local.raw_encoder.encode_queries([text])
            res["encoder"].append(time.perf_counter() - t0)
            res["plain_encoder"].append(local.plain_encode(text))
            t0 = time.perf_counter()
            status, body = http.call("POST", "/v1/search", {"query": text, "target": "capabilities", "limit": 10})
            res["http_search"].append(time.perf_counter() - t0)
            assert status == 200, body
            res["server_search"].append(json.loads(body)["took_ms"] / 1000)
            if i < 40:
                steps_search.append(local.steps(lambda t=text: local.matcher.search(
                    t, "capability", filters=None, include_restricted=False, limit=10, offset=0), None))
        http.close()
        ab = explain_ab(local, ids[60:210])
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=60)
        except subprocess.TimeoutExpired:
            proc.kill()
    breakdown = {kind: {k: p50([s[k] for s in steps]) for k in ("rank", "db", "explain", "json")}
                 for kind, steps in (("match", steps_match), ("search", steps_search))}
    return {"size": size, "built": built, "n_match": len(res["http_match"]), "n_search": len(res["http_search"]),
            "load": (load_before, os.getloadavg()[0]), "explain_ab": ab,
            **{f"{k}_p50": p50(v) for k, v in res.items()}, **{f"{k}_p95": pct(v, 0.95) for k, v in res.items()},
            "breakdown": breakdown}


def parse_sizes(text: str) -> list[tuple[int, str]]:
    out = []
    for item in text.split(","):
        size, _, kind = item.partition(":")
        out.append((int(size), kind or "auto"))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.query",
                                     description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="10000,100000", type=parse_sizes,
                        help="capability counts, each optionally with a dense index kind: 10000,100000:flat")
    parser.add_argument("--rounds", type=int, default=1, help="passes over the open demo needs")
    parser.add_argument("--searches", type=int, default=120, help="distinct free-text queries")
    parser.add_argument("--write", action="store_true", help="update docs/benchmarks.md")
    parser.add_argument("--json", help="also write the raw figures here")
    parser.add_argument("--keep", action="store_true", help="keep the throw-away data dirs")
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="scenematch-bench-query-"))
    try:
        results = [measure(size, kind, workdir, args.rounds, args.searches) for size, kind in args.sizes]
    finally:
        if not args.keep:
            shutil.rmtree(workdir, ignore_errors=True)
        else:
            print(f"kept {workdir}", file=sys.stderr)
    command = "nice .venv/bin/python -m benchmarks.query " + " ".join(sys.argv[1:])
    text = render(results, command.strip())
    print(text)
    if args.json:
        Path(args.json).write_text(json.dumps(results, ensure_ascii=False, indent=2))
    if args.write:
        from service.cli.evaluation import replace_section

        replace_section(ROOT / "docs" / "benchmarks.md", SECTION, text)


if __name__ == "__main__":
    main()
