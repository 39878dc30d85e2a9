"""The "## Query latency" section of docs/benchmarks.md, written from benchmarks.query's figures."""
from __future__ import annotations

import datetime as dt
from typing import Any

SECTION = "## Query latency"


def index_kind(r: dict[str, Any]) -> str:
    dense = r["built"]["dense"]
    return dense.get("type") or dense.get("kind") or "?"


def label(r: dict[str, Any]) -> str:
    return f"{r['size']:,} ({index_kind(r)})"


def render(results: list[dict[str, Any]], command: str) -> str:
    lines = [SECTION, "", "Command (throw-away data dirs; the synthetic capabilities' vectors are demo embeddings "
             "plus noise, written straight into an index version, as in the index build benchmark):", "",
             f"    {command}", "",
             f"Measured {dt.date.today().isoformat()} on 2 cores shared with other developers (load average in "
             "the table), "
             "SQLite, a real `scenematch serve` on 127.0.0.1, one request at a time over one keep-alive "
             "connection (http.client, so the figures are the server's). The raw index search "
             "(filter mask, FAISS top-100 and BM25 top-50 over the same files, in the benchmark process) and "
             "the encoder call (the serving model, one query, no cache) are timed in the same run, "
             "alternating with the HTTP calls.", "",
             "| capabilities | dense index | match by id p50 / p95 | raw index search p50 / p95 | ratio p50 / p95 "
             "(goal ≤ 2×) | free-text search p50 | one encoder call p50 | ratio (goal ≤ 1.2×) "
             "| one plain fp32 query encode p50 | search / plain (goal ≤ 1.0×) | GET /healthz p50 | load avg |",
             "|---|---|---|---|---|---|---|---|---|---|---|---|"]
    for r in results:
        lines.append(
            f"| {r['size']:,} | {index_kind(r)} | {r['http_match_p50']:.1f} / {r['http_match_p95']:.1f} ms "
            f"| {r['raw_p50']:.1f} / {r['raw_p95']:.1f} ms "
            f"| {r['http_match_p50'] / r['raw_p50']:.1f}× / {r['http_match_p95'] / r['raw_p95']:.1f}× "
            f"| {r['http_search_p50']:.1f} ms | {r['encoder_p50']:.1f} ms "
            f"| {r['http_search_p50'] / r['encoder_p50']:.2f}× | {r['plain_encoder_p50']:.1f} ms "
            f"| {r['http_search_p50'] / r['plain_encoder_p50']:.2f}× | {r['http_floor_p50']:.1f} ms "
            f"| {r['load'][0]:.1f}→{r['load'][1]:.1f} |")
    lines += ["", "Where the time goes (p50 of each step, in-process, same index files; `rank` is candidate "
              "retrieval plus scoring, for search it includes the encoder call):", "",
              "| capabilities | request | server took_ms | rank | database rows | explanations | JSON |",
              "|---|---|---|---|---|---|---|"]
    for r in results:
        for kind in ("match", "search"):
            b = r["breakdown"][kind]
            lines.append(f"| {label(r)} | {'match by id' if kind == 'match' else 'free-text search'} "
                         f"| {r[f'server_{kind}_p50']:.1f} ms | {b['rank']:.1f} ms | {b['db']:.1f} ms "
                         f"| {b['explain']:.1f} ms | {b['json']:.1f} ms |")
    lines += ["", "Explanations of a match-by-id page (p50, in-process, pages not explained before): "
              + "; ".join(f"{label(r)}: {r['explain_ab']['stored']:.1f} ms with the key terms stored in the "
                          f"index, {r['explain_ab']['extracted']:.1f} ms extracting them per request"
                          for r in results if "explain_ab" in r) + ".",
              "", FINDINGS]
    return "\n".join(lines)


FINDINGS = """\
Reading the tables:

- **Where it stands.** Match by id went from 25–27 ms p50 (first runs) to 10.3–10.6 ms (second
  session) to about 5 ms now, free-text search from 53–57 ms to 34–46 ms to 28–30 ms. With the
  index the service picks for each size, the ratio goals are still missed: 2.6–3.5× the raw
  search (goal ≤ 2×) and 1.23–1.28× one encoder call (goal ≤ 1.2×).
- **Why a ratio to the raw search is the wrong yardstick.** It falls when the search gets
  slower. The last row of the first table serves the same 100,000 capabilities from a Flat
  index (the service's choice below 50,000): the ≤ 2× goal is met, at 1.6× p50 and p95, while
  every match by id takes about twice as long as with the IVF index the service picks. The work
  around the search is fixed per request and does not grow with the corpus: the HTTP round trip
  through uvicorn, FastAPI and the middleware (`GET /healthz`, 0.6–0.9 ms here, where each call
  follows the benchmark's own work; back to back 0.30 ms, as for a bare FastAPI app on the same
  stack, 0.32 ms, timed with a throw-away client), the route's thread hop, parameters and session
  (~0.4 ms), the page's rows from the database (0.5–0.8 ms, where the leak rules check each
  record's current visibility), the ten explanations the contract asks for (0.6 ms) and the JSON
  (0.1 ms). That is more than the 1.3–2.1 ms raw search. The two structural savings left would
  not reach ≤ 2× at 10,000 and only just at 100,000: the page's fields served from the index
  (~0.5 ms, and the leak rules would depend on the last refresh) and an async route (the thread
  hop, ~0.2 ms, and the event loop would block on the database). Free-text search adds ~6 ms to the encoder's 22–25 ms: candidates
  and scoring (~2.6 ms: the IVF search ~0.9, BM25 ~0.4, the five signals and sort ~0.8, jieba
  ~0.25), then the same page costs; ≤ 1.2× would leave 4.4–5 ms. Absolute budgets (match by id
  ≤ 6 ms p50 and ≤ 8 ms p95 at 100,000 capabilities; search ≤ one encoder call + 7 ms) would
  hold the service to what users feel; the rows of the indexes the service picks meet them here.
- **What changed in this round** (each measured in-process before it was kept):
  - a Flat index under a filter (every public query is filtered once restricted records exist)
    searched a copy of the allowed vectors: 3.4 ms at 10k; FAISS's row bitmap takes 0.36 ms;
  - BM25 scored each query twice (all rows, then the candidates), and picking the top 50 among
    ~100k positive rows took 1.2 ms: one pass now, with an exact top-k from a threshold read off a
    strided sample of the positive scores; segments pass their row mask to FAISS instead of ~100k
    ids to map back (rank step at 100k: 4.9 → 2.2 ms);
  - the matching routes send orjson bytes instead of validating the page against the response
    model (tests hold them to the model's own JSON), and read the page's rows with one prepared
    Core select instead of the ORM (0.5 + 1.0 → 0.1 + 0.5 ms);
  - explanations prepare the query's terms once per page (1.1 → 0.6 ms a page);
  - a lone query skips `SentenceTransformer.encode()`'s per-call set-up (1.5–3 ms of the call,
    the same vector): the encoder column falls with it, which is why that ratio did not improve;
  - after each index install the engine freezes the long-lived objects out of garbage
    collection: a full collection took 383 ms at 100k (705k tracked objects), now 0.1 ms.
- **Tried and not kept:** running jieba and BM25 in a second thread while the encoder runs
  (26.9 vs 27.1 ms p50 over 100 queries at 100k: torch already uses both cores), and one torch
  thread per query (equal on a quiet machine; torch's thread setting is process-wide, and the
  in-process reindex needs both cores). Nor letting OpenMP threads spin briefly before they sleep
  (`GOMP_SPINCOUNT`; the service sets `OMP_WAIT_POLICY=PASSIVE`, docs/reliability.md): with
  300,000 spins one query embedding took 17 instead of 28 ms on a quiet machine and free-text
  search over HTTP 22 instead of 26 ms p50, but with one core kept busy by another process an
  embedding took 36–138 ms (300,000 to 10,000 spins) instead of 31 ms, and under heavier load the
  spinning default took seconds (docs/reliability.md). Measured with throw-away scripts, not this
  benchmark: 40 query embeddings timed in one process under each `GOMP_SPINCOUNT`, alone and beside
  `python -c 'while True: pass'`; search over HTTP with the server alone (this benchmark's own
  encoder calls, in a second process, spin too and slow the server).
- **Explanations do not dominate:** each record's key terms are extracted at index time
  (indexer/retrieval/keyterms.py), so a page of ten costs 0.6–0.7 ms against 6.6–6.7 ms extracting them
  per request (the line above the tables measures both on the same index).
"""
