"""Seed corpora: needs, capabilities and graded labels written for this project, and the scenarios of the
third list (data/seed/scenarios: they cite capabilities of both corpora, so they sit beside either).

- `realistic` (data/seed/realistic, the default demo): records shaped like the published ones (tender
  numbering, spec lists, marketing pages, cut excerpts, titles that only name a project), labels pooled
  from several rankers across all domains (docs/quality.md, "The realistic development corpus").
- `classic` (data/seed/demo): the first demo, whose titles paraphrase their descriptions; kept for the
  tests that were written on it.
"""
from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from models import repository
from models.database import session_scope
from models.taxonomy import SEED_DIR
from service.scenario_schemas import ScenarioBulkItem
from service.schemas import CapabilityBulkItem, NeedBulkItem

DEMO_DIR = SEED_DIR / "demo"
REALISTIC_DIR = SEED_DIR / "realistic"
SCENARIOS_DIR = SEED_DIR / "scenarios"
SEED_CORPORA = {"realistic": REALISTIC_DIR, "classic": DEMO_DIR}


def read_jsonl(folder: Path) -> Iterator[dict[str, Any]]:
    for path in sorted(folder.glob("*.jsonl")):
        with path.open(encoding="utf-8") as fh:
            for line in fh:
                if line.strip():
                    yield json.loads(line)


def demo_records(demo_dir: Path = DEMO_DIR) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Validated demo needs and capabilities (validation is the API's, so the demo can't drift)."""
    needs = [NeedBulkItem.model_validate(r).model_dump() for r in read_jsonl(demo_dir / "needs")]
    caps = [CapabilityBulkItem.model_validate(r).model_dump()
            for r in read_jsonl(demo_dir / "capabilities")]
    return needs, caps


def demo_scenarios(folder: Path = SCENARIOS_DIR) -> list[dict[str, Any]]:
    """Validated demo scenarios (as the API would store them)."""
    return [ScenarioBulkItem.model_validate(r).model_dump() for r in read_jsonl(folder)]


def demo_labels(demo_dir: Path = DEMO_DIR) -> list[dict[str, Any]]:
    return list(read_jsonl(demo_dir / "labels"))


def untagged(record: dict[str, Any]) -> dict[str, Any]:
    """The record as most clients send it: without domains (the service classifies it)."""
    return {k: v for k, v in record.items() if k not in ("domain", "domains")}


def gold_domains(record: dict[str, Any]) -> list[str]:
    """The domains the corpus's writers gave a record (a need's one, a capability's list)."""
    return list(record.get("domains") or ([record["domain"]] if record.get("domain") else []))


def database_is_empty(sessions: sessionmaker[Session]) -> bool:
    with session_scope(sessions) as session:
        return repository.count(session, "need") == 0 and repository.count(session, "capability") == 0


def sample(needs: list[dict[str, Any]], caps: list[dict[str, Any]], scenarios: list[dict[str, Any]],
           per_domain: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """At most `per_domain` needs and capabilities of each (first) domain, in file order, plus every
    capability a demo scenario cites (so the case library keeps its cases); 0: everything."""
    if per_domain <= 0:
        return needs, caps
    cited = {c for s in scenarios for c in s.get("capability_ids") or []}

    def first(rows: list[dict[str, Any]], keep: set[str]) -> list[dict[str, Any]]:
        seen: dict[str, int] = {}
        out = []
        for row in rows:
            domain = (gold_domains(row) or [""])[0]
            seen[domain] = seen.get(domain, 0) + 1
            if seen[domain] <= per_domain or row["id"] in keep:
                out.append(row)
        return out

    return first(needs, set()), first(caps, cited)


def load_demo(sessions: sessionmaker[Session], demo_dir: Path = REALISTIC_DIR,
              scenarios_dir: Path | None = SCENARIOS_DIR, per_domain: int = 0) -> tuple[int, int]:
    """Store the demo needs and capabilities (a sample of `per_domain`, see `sample`) and the
    scenarios, unless `scenarios_dir` is None."""
    needs, caps = demo_records(demo_dir)
    scenarios = demo_scenarios(scenarios_dir) if scenarios_dir is not None else []
    needs, caps = sample(needs, caps, demo_scenarios() if scenarios_dir is None else scenarios, per_domain)
    with session_scope(sessions) as session:
        for kind, records in (("need", needs), ("capability", caps), ("scenario", scenarios)):
            for record in records:
                data = dict(record)
                repository.upsert(session, kind, data.pop("id"), data)
    return len(needs), len(caps)
