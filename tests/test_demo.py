"""The seed corpora the demo loads: which records, and the sample a first start embeds."""
from __future__ import annotations

from collections import Counter

from service import demo


def test_the_realistic_demo_sample_keeps_every_domain_and_every_cited_capability():
    needs, caps = demo.demo_records(demo.REALISTIC_DIR)
    scenarios = demo.demo_scenarios()
    some_needs, some_caps = demo.sample(needs, caps, scenarios, per_domain=5)
    by_domain = Counter(demo.gold_domains(n)[0] for n in some_needs)
    assert set(by_domain) == {demo.gold_domains(n)[0] for n in needs} and max(by_domain.values()) == 5
    cited = {c for s in scenarios for c in s["capability_ids"]}
    kept = {c["id"] for c in some_caps}
    assert {c for c in cited if c.startswith("RC-")} <= kept  # the case library keeps its cases
    assert len(some_caps) < len(caps) and all(c in caps for c in some_caps)
    assert demo.sample(needs, caps, scenarios, per_domain=0) == (needs, caps)


def test_a_record_sent_untagged_loses_only_its_domains():
    need = demo.demo_records(demo.REALISTIC_DIR)[0][0]
    bare = demo.untagged(need)
    assert "domain" not in bare and {k: v for k, v in need.items() if k != "domain"} == bare
    assert demo.gold_domains(need) == [need["domain"]]
