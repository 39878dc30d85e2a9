"""The policy's 20 domains in 5 categories, loaded from data/seed/taxonomy.json."""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from pathlib import Path

SEED_DIR = Path(__file__).resolve().parents[1] / "data" / "seed"


@dataclass(frozen=True)
class DomainInfo:
    code: str
    name: str
    category: str
    category_name: str
    order: int
    description: str
    key_terms: tuple[str, ...] = ()
    synonyms: dict[str, list[str]] = field(default_factory=dict, hash=False, compare=False)


@dataclass(frozen=True)
class Taxonomy:
    categories: dict[str, str]  # code -> Chinese name, in policy order
    domains: dict[str, DomainInfo]  # code -> domain, in policy order

    def is_domain(self, code: str) -> bool:
        return code in self.domains

    def name(self, code: str | None) -> str | None:
        return self.domains[code].name if code in self.domains else None


def load_taxonomy(path: Path | None = None) -> Taxonomy:
    data = json.loads((path or SEED_DIR / "taxonomy.json").read_text(encoding="utf-8"))
    categories = {c["code"]: c["name"] for c in sorted(data["categories"], key=lambda c: c["order"])}
    domains = {}
    for d in sorted(data["domains"], key=lambda d: (list(categories).index(d["category"]), d["order"])):
        domains[d["code"]] = DomainInfo(
            code=d["code"],
            name=d["name"],
            category=d["category"],
            category_name=categories[d["category"]],
            order=d["order"],
            description=d["description"],
            key_terms=tuple(d.get("key_terms", [])),
            synonyms=dict(d.get("synonyms", {})),
        )
    return Taxonomy(categories=categories, domains=domains)


@lru_cache(maxsize=1)
def default_taxonomy() -> Taxonomy:
    return load_taxonomy()
