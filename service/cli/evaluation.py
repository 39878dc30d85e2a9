"""`scenematch eval`, `tune` and `feedback-report`: measure the ranking, fit its weights, and see how
past recommendations fared."""
from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

import numpy as np
import typer

from service.cli.common import ops_state, print_json

DOCS_QUALITY = Path(__file__).resolve().parents[2] / "docs" / "quality.md"
SECTION = "## Ranking"


def engine_with(records: tuple[list[dict[str, Any]], ...] | None, data_dir: Path,
                embedding_model: str | None = None):  # noqa: ANN202
    """A real engine on a fresh SQLite database holding `records`: (needs, capabilities) or (needs,
    capabilities, scenarios); None: the classic demo corpus."""
    from models import repository
    from models.database import session_scope
    from service.app import init_state
    from service.search import open_engine
    from service.settings import Settings

    state = init_state(Settings(data_dir=data_dir, load_demo=records is None, demo_corpus="classic",
                                build_index_on_start=False, auto_adapt=False, embedding_model=embedding_model))
    if records is not None:
        with session_scope(state.sessions) as session:
            for kind, rows in zip(("need", "capability", "scenario"), records):
                for row in rows:
                    data = dict(row)
                    repository.upsert(session, kind, data.pop("id"), data)
    engine = open_engine(state)
    engine.open(build_if_missing=True)
    return engine


def seed_corpus(name: str) -> tuple[list[dict[str, Any]], list[dict[str, Any]], list[dict[str, Any]]]:
    """A seed corpus's needs, capabilities and graded labels."""
    from service import demo

    folder = demo.SEED_CORPORA[name]
    needs, caps = demo.demo_records(folder)
    return needs, caps, demo.demo_labels(folder)


def seed_corpus_engine(name: str, data_dir: Path, as_clients_send: bool = False,
                       embedding_model: str | None = None):  # noqa: ANN202
    """A real engine on a seed corpus; `as_clients_send`: its records stored without domains."""
    from service.demo import untagged

    needs, caps, _ = seed_corpus(name)
    if as_clients_send:
        needs, caps = [untagged(r) for r in needs], [untagged(r) for r in caps]
    return engine_with((needs, caps), data_dir, embedding_model)


def _table(results: dict[str, dict[str, float]], extra: dict[str, float] | None = None) -> str:
    from indexer.ranking.evaluation import METRICS

    extra = extra or {}
    head = "| system | " + " | ".join(METRICS) + (" | judged@10 |" if extra else " |")
    lines = [head, "|---" * (len(METRICS) + 1 + bool(extra)) + "|"]
    for name, metrics in results.items():
        judged = f" {extra[name]:.2f} |" if name in extra else (" – |" if extra else "")
        lines.append(f"| {name} | " + " | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |" + judged)
    return "\n".join(lines)


def _corpus_block(snap: Any, labels: list[dict[str, Any]], reverse: bool, model: Any, cv: bool) -> dict[str, Any]:
    from indexer.ranking import evaluation as ev

    queries = ev.demo_queries(labels, reverse=reverse)
    runs = ev.runs_for(snap, queries, model)
    if cv:
        runs["shipped (5-fold CV weights)"] = ev.cross_validated_runs(snap, queries)
    judged: dict[str, set[str]] = {}
    for row in labels:
        q, t = (row["capability_id"], row["need_id"]) if reverse else (row["need_id"], row["capability_id"])
        judged.setdefault(q, set()).add(t)
    ndcg = {name: ev.per_query(queries, run) for name, run in runs.items()}
    return {"queries": len(queries), "results": ev.score_runs(queries, runs),
            "judged": {name: ev.judged_share(queries, run, judged) for name, run in runs.items()},
            "paired": {f"shipped − {other}": ev.paired_difference(ndcg["shipped"], ndcg[other])
                       for other in ("dense", "lexical")}}


def classification_accuracy(engine: Any, needs: list[dict[str, Any]], caps: list[dict[str, Any]]) -> dict[str, Any]:
    """Top-1 / top-3 of the domains the service predicted for records sent without them (the
    writers' domains as gold: a need's one, any of a capability's)."""
    from models import repository
    from models.database import session_scope
    from service.demo import gold_domains

    out: dict[str, Any] = {}
    with session_scope(engine.sessions) as session:
        for kind, rows in (("need", needs), ("capability", caps)):
            top1 = top3 = 0
            for row in rows:
                stored = repository.get(session, kind, row["id"])
                ranked = [d["code"] for d in (stored.domain_scores or [])] if stored is not None else []
                gold = set(gold_domains(row))
                top1 += bool(ranked[:1] and ranked[0] in gold)
                top3 += bool(gold & set(ranked[:3]))
            out[kind] = {"records": len(rows), "top1": top1 / max(1, len(rows)), "top3": top3 / max(1, len(rows))}
    n = sum(v["records"] for v in out.values())
    out["all"] = {"records": n, "top1": sum(v["top1"] * v["records"] for v in out.values()) / max(1, n),
                  "top3": sum(v["top3"] * v["records"] for v in out.values()) / max(1, n)}
    return out


def evaluate_all(csl: Path | None, csl_limit: int | None, cv: bool,
                 corpora: tuple[str, ...] = ("realistic", "classic")) -> dict[str, Any]:
    from indexer.ranking import evaluation as ev
    from indexer.ranking.hybrid import RankingModel

    model = RankingModel.load()
    out: dict[str, Any] = {"weights": model.to_dict()}
    with tempfile.TemporaryDirectory(prefix="scenematch-eval-") as tmp:
        for name in corpora:
            # The realistic corpus as clients send records (without domains); the classic one tagged, as written.
            untagged = name == "realistic"
            needs, caps, labels = seed_corpus(name)
            engine = seed_corpus_engine(name, Path(tmp) / name, as_clients_send=untagged)
            how = "sent without domains" if untagged else "with their domains"
            for direction, reverse in (("need→capability", False), ("capability→need", True)):
                out[f"{name} {direction}, {how}"] = _corpus_block(engine.snapshot, labels, reverse, model, cv)
            if untagged:
                out["classification"] = classification_accuracy(engine, needs, caps)
            engine.close()
        if csl is not None:
            needs, caps, queries = ev.csl_records(ev.read_csl(csl, csl_limit))
            engine = engine_with((needs, caps), Path(tmp) / "csl")
            runs = ev.runs_for(engine.snapshot, queries, model)
            out[f"CSL {csl.name}"] = {"queries": len(queries), "results": ev.score_runs(queries, runs)}
            engine.close()
    return out


def render(results: dict[str, Any], command: str) -> str:
    parts = [SECTION, "", f"Measured {dt.date.today().isoformat()} with `{command}`.", ""]
    w = results["weights"]
    parts.append("Shipped weights (on per-query z-scores): " + ", ".join(
        f"{k} {v:+.3f}" for k, v in w["weights"].items()) + f", bias {w['bias']:+.3f}; for pairs whose domain "
        "agreement is unknown: " + ", ".join(f"{k} {v:+.3f}" for k, v in (w.get("untagged") or w)["weights"].items())
        + f", bias {(w.get('untagged') or w)['bias']:+.3f}.")
    for name, block in results.items():
        if name in ("weights", "classification"):
            continue
        parts += ["", f"### {name} ({block['queries']} queries)", "", _table(block["results"], block.get("judged"))]
        for label, d in block.get("paired", {}).items():
            parts.append(f"\n{label}: {d['mean']:+.4f} nDCG@10, 95% interval [{d['low']:+.4f}, {d['high']:+.4f}] "
                         f"(paired bootstrap over {d['queries']} queries)")
    if "classification" in results:
        c = results["classification"]
        parts += ["", "### Domain classification, realistic corpus sent without domains", "",
                  "| records | n | top-1 | top-3 |", "|---|---|---|---|"]
        parts += [f"| {k} | {v['records']} | {v['top1']:.3f} | {v['top3']:.3f} |" for k, v in c.items()]
    return "\n".join(parts) + "\n"


def replace_section(doc: Path, section: str, body: str) -> None:
    """Replace one `## ` section of a Markdown file (others' sections are left alone)."""
    text = doc.read_text(encoding="utf-8") if doc.exists() else "# Quality\n\n"
    start = text.find(section + "\n")
    if start < 0:
        new = text.rstrip("\n") + "\n\n" + body
    else:
        end = text.find("\n## ", start + len(section))
        # A blank line before the next section, however the body ends.
        new = text[:start] + body.rstrip("\n") + "\n" + ("" if end < 0 else "\n" + text[end + 1:])
    doc.parent.mkdir(parents=True, exist_ok=True)
    doc.write_text(new, encoding="utf-8")


def eval_command(
    csl: Path = typer.Option(None, help="A file in the CSL title→abstract layout (optional)"),
    csl_limit: int = typer.Option(None, help="Use only the first N CSL pairs"),
    corpus: list[str] = typer.Option(["realistic", "classic"], help="Seed corpora to measure on"),
    cv: bool = typer.Option(True, help="Also report cross-validated fitted weights on each corpus's labels"),
    write: bool = typer.Option(False, help=f"Write the results into {DOCS_QUALITY.name}"),
    feedback: bool = typer.Option(False, "--feedback",
                                  help="Instead: how past recommendations fared (users' feedback)"),
) -> None:
    """nDCG@10, Recall@10/100, MRR@10 of lexical-only, dense-only and the shipped ranking."""
    if feedback:
        feedback_report_command(ks="1,3,5,10", as_json=False)
        return
    unknown = [c for c in corpus if c not in ("realistic", "classic")]
    if unknown:
        raise typer.BadParameter(f"--corpus takes realistic or classic, not {', '.join(unknown)}")
    results = evaluate_all(csl, csl_limit, cv, tuple(corpus))
    command = ("scenematch eval" + "".join(f" --corpus {c}" for c in corpus)
               + (f" --csl {csl}" if csl else "") + (" --write" if write else ""))
    text = render(results, command)
    typer.echo(text)
    if write:
        replace_section(DOCS_QUALITY, SECTION, text)


def training_parts(data_dir: Path, corpora: tuple[str, ...] = ("realistic", "classic"),
                   csl: Path | None = None) -> list[tuple[str, Any, Any]]:
    """(source, signals, grades) of every labelled query's candidates, both directions, per collection."""
    from indexer.ranking import evaluation as ev

    out = []
    for name in corpora:
        _, _, labels = seed_corpus(name)
        engine = seed_corpus_engine(name, data_dir / name)
        try:
            rows = [ev.training_rows(engine.snapshot, ev.demo_queries(labels, reverse=r)) for r in (False, True)]
        finally:
            engine.close()
        out.append((f"data/seed/{'demo' if name == 'classic' else name}/labels (both directions)",
                    np.vstack([r[0] for r in rows]), np.concatenate([r[1] for r in rows])))
    if csl is not None:
        needs, caps, queries = ev.csl_records(ev.read_csl(csl))
        engine = engine_with((needs, caps), data_dir / "csl")
        try:
            x, y, _ = ev.training_rows(engine.snapshot, queries)
        finally:
            engine.close()
        out.append((f"CSL {csl.name}", x, y))
    return out


def tune_command(
    csl: Path = typer.Option(None, help="Also fit on a CSL title→abstract file (dev split only)"),
    corpus: list[str] = typer.Option(["realistic", "classic"], help="Seed corpora whose labels to fit on"),
    c: float = typer.Option(1.0, help="Inverse regularisation strength of the logistic model"),
    save: bool = typer.Option(False, help="Write the fitted weights to indexer/ranking/ranking_weights.json"),
) -> None:
    """Fit the ranking's logistic weights on the seed corpora's labels (both directions) and CSL dev.

    Each collection gets the same total weight, so the largest cannot dictate the balance of the signals.
    """
    from indexer.ranking import evaluation as ev

    with tempfile.TemporaryDirectory(prefix="scenematch-tune-") as tmp:
        parts = training_parts(Path(tmp), tuple(corpus), csl)
    xs = [x for _, x, _ in parts]
    weights = np.concatenate([np.full(len(x), 1.0 / len(x)) for x in xs]) * sum(len(x) for x in xs) / len(xs)
    model = ev.fit_logistic(np.vstack(xs), np.concatenate([y for _, _, y in parts]), c, sample_weight=weights)
    model.info = {**model.info, "labels": [source for source, _, _ in parts], "C": c,
                  "date": dt.date.today().isoformat(),
                  "command": "scenematch tune" + "".join(f" --corpus {n}" for n in corpus)
                  + (" --csl <dev split>" if csl else "") + " --save"}
    typer.echo(json.dumps(model.to_dict(), ensure_ascii=False, indent=2))
    if save:
        model.save()


def feedback_report_command(ks: str = typer.Option("1,3,5,10", "--k", help="Ranks, comma-separated"),
                            as_json: bool = typer.Option(False, "--json", help="Print JSON")) -> None:
    """How past recommendations fared: precision at the ranks shown, by domain (from /v1/feedback)."""
    from rich.console import Console
    from rich.table import Table

    from models.database import session_scope
    from service import feedback

    try:
        ranks = sorted({int(k) for k in ks.split(",") if k.strip()})
    except ValueError:
        raise typer.BadParameter("--k takes whole numbers, e.g. 1,3,5,10") from None
    if not ranks or ranks[0] < 1:
        raise typer.BadParameter("--k takes ranks of 1 or more, e.g. 1,3,5,10")
    with ops_state() as state, session_scope(state.sessions) as session:
        report = feedback.precision_report(feedback.export_rows(session), state.taxonomy, ranks)
    if as_json:
        print_json(report)
        return
    table = Table(title=f"推荐反馈: 按展示名次的准确率 (共 {report['feedback_rows']} 条反馈)",
                  caption="P@k: 准确率/判断数 (名次 ≤ k); 正向 = relevant, contacted, deal")
    table.add_column("领域", no_wrap=True)
    for column in ("判断", *(f"P@{k}" for k in ranks), "对接", "签约"):
        table.add_column(column, no_wrap=True)
    groups = [{"name": "全部", **report["overall"]}, *report["by_domain"]]
    for group in groups:
        cells = []
        for k in ranks:
            p = group["precision"][f"p@{k}"]
            cells.append("—" if p["precision"] is None else f"{p['precision']:.2f}/{p['n']}")
        table.add_row(group["name"], str(group["judged"]), *cells, str(group["labels"]["contacted"]),
                      str(group["labels"]["deal"]))
    Console().print(table)
