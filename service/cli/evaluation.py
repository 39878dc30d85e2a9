"""`scenematch eval`, `tune` and `feedback-report`: measure the ranking, fit its weights, and see how
past recommendations fared."""
from __future__ import annotations

import datetime as dt
import json
import tempfile
from pathlib import Path
from typing import Any

import typer

from service.cli.common import ops_state, print_json

DOCS_QUALITY = Path(__file__).resolve().parents[2] / "docs" / "quality.md"
SECTION = "## Ranking"


def engine_with(records: tuple[list[dict[str, Any]], ...] | None, data_dir: Path):  # noqa: ANN202
    """A real engine on a fresh SQLite database holding `records`: (needs, capabilities) or (needs,
    capabilities, scenarios); None: the demo corpus."""
    from models import repository
    from models.database import session_scope
    from service.app import init_state
    from service.search import open_engine
    from service.settings import Settings

    state = init_state(Settings(data_dir=data_dir, load_demo=records is None, build_index_on_start=False))
    if records is not None:
        with session_scope(state.sessions) as session:
            for kind, rows in zip(("need", "capability", "scenario"), records):
                for row in rows:
                    data = dict(row)
                    repository.upsert(session, kind, data.pop("id"), data)
    engine = open_engine(state)
    engine.open(build_if_missing=True)
    return engine


def _table(results: dict[str, dict[str, float]]) -> str:
    from indexer.ranking.evaluation import METRICS

    lines = ["| system | " + " | ".join(METRICS) + " |", "|---" * (len(METRICS) + 1) + "|"]
    for name, metrics in results.items():
        lines.append(f"| {name} | " + " | ".join(f"{metrics[m]:.4f}" for m in METRICS) + " |")
    return "\n".join(lines)


def evaluate_all(csl: Path | None, csl_limit: int | None, cv: bool) -> dict[str, Any]:
    from indexer.ranking import evaluation as ev
    from indexer.ranking.hybrid import RankingModel
    from service.demo import demo_labels

    model = RankingModel.load()
    out: dict[str, Any] = {"weights": {"weights": model.weights, "bias": model.bias}}
    with tempfile.TemporaryDirectory(prefix="scenematch-eval-") as tmp:
        engine = engine_with(None, Path(tmp) / "demo")
        snap = engine.snapshot
        labels = demo_labels()
        for name, reverse in (("demo need→capability", False), ("demo capability→need", True)):
            queries = ev.demo_queries(labels, reverse=reverse)
            runs = ev.runs_for(snap, queries, model)
            if cv:
                runs["shipped (5-fold CV weights)"] = ev.cross_validated_runs(snap, queries)
            out[name] = {"queries": len(queries), "results": ev.score_runs(queries, runs)}
        engine.close()
        if csl is not None:
            pairs = ev.read_csl(csl, csl_limit)
            needs, caps, queries = ev.csl_records(pairs)
            engine = engine_with((needs, caps), Path(tmp) / "csl")
            runs = ev.runs_for(engine.snapshot, queries, model)
            out[f"CSL {csl.name}"] = {"queries": len(queries), "results": ev.score_runs(queries, runs)}
            engine.close()
    return out


def render(results: dict[str, Any], command: str) -> str:
    parts = [SECTION, "", f"Measured {dt.date.today().isoformat()} with `{command}`.", ""]
    w = results["weights"]
    parts.append("Shipped weights: " + ", ".join(f"{k} {v:+.3f}" for k, v in w["weights"].items())
                 + f", bias {w['bias']:+.3f}.")
    for name, block in results.items():
        if name == "weights":
            continue
        parts += ["", f"### {name} ({block['queries']} queries)", "", _table(block["results"])]
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
    cv: bool = typer.Option(True, help="Also report cross-validated fitted weights on the demo labels"),
    write: bool = typer.Option(False, help=f"Write the results into {DOCS_QUALITY.name}"),
    feedback: bool = typer.Option(False, "--feedback",
                                  help="Instead: how past recommendations fared (users' feedback)"),
) -> None:
    """nDCG@10, Recall@10/100, MRR@10 of lexical-only, dense-only and the shipped ranking."""
    if feedback:
        feedback_report_command(ks="1,3,5,10", as_json=False)
        return
    results = evaluate_all(csl, csl_limit, cv)
    command = "scenematch eval" + (f" --csl {csl}" if csl else "") + (" --write" if write else "")
    text = render(results, command)
    typer.echo(text)
    if write:
        replace_section(DOCS_QUALITY, SECTION, text)


def demo_training_parts(data_dir: Path) -> list[tuple[Any, Any, list[str]]]:
    """Every demo-labelled query's candidates with their signals and grades, need→capability then
    capability→need (`training_rows`), on a fresh demo index in `data_dir`."""
    from indexer.ranking import evaluation as ev
    from service.demo import demo_labels

    engine = engine_with(None, data_dir)
    try:
        return [ev.training_rows(engine.snapshot, ev.demo_queries(demo_labels(), reverse=r)) for r in (False, True)]
    finally:
        engine.close()


def tune_command(
    csl: Path = typer.Option(None, help="Also fit on a CSL title→abstract file (dev split only)"),
    c: float = typer.Option(1.0, help="Inverse regularisation strength of the logistic model"),
    save: bool = typer.Option(False, help="Write the fitted weights to indexer/ranking/ranking_weights.json"),
    untagged_only: bool = typer.Option(False, "--untagged-only",
                                       help="Keep the shipped weights; fit only the model for pairs whose "
                                            "domain agreement is unknown: the shipped relative weights without "
                                            "the domain signal, Platt-scaled on the demo labels"),
) -> None:
    """Fit the ranking's logistic weights on the demo labels (both directions) and CSL dev.

    Each collection gets the same total weight, so the larger one cannot dictate the
    balance between the dense and lexical signals.
    """
    import numpy as np

    from indexer.ranking import evaluation as ev

    xs, ys, ws, sources = [], [], [], []
    with tempfile.TemporaryDirectory(prefix="scenematch-tune-") as tmp:
        parts = demo_training_parts(Path(tmp) / "demo")
        x = np.vstack([p[0] for p in parts])
        if untagged_only:
            shipped = ev.with_untagged_model(x, np.concatenate([p[1] for p in parts]))
            typer.echo(json.dumps(shipped.untagged.to_dict(), ensure_ascii=False, indent=2))
            if save:
                shipped.save()
            return
        xs.append(x)
        ys.append(np.concatenate([p[1] for p in parts]))
        sources.append("data/seed/demo/labels (both directions)")
        if csl is not None:
            needs, caps, queries = ev.csl_records(ev.read_csl(csl))
            engine = engine_with((needs, caps), Path(tmp) / "csl")
            x_csl, y_csl, _ = ev.training_rows(engine.snapshot, queries)
            engine.close()
            xs.append(x_csl)
            ys.append(y_csl)
            sources.append(f"CSL {csl.name}")
    for x in xs:
        ws.append(np.full(len(x), 1.0 / len(x)))
    weights = np.concatenate(ws) * sum(len(x) for x in xs) / len(xs)
    model = ev.fit_logistic(np.vstack(xs), np.concatenate(ys), c, sample_weight=weights)
    model.info = {"fitted": True, "labels": sources, "C": c, "rows": int(sum(len(y) for y in ys)),
                  "date": dt.date.today().isoformat(), "command": "scenematch tune"
                  + (" --csl <dev split>" if csl else "") + " --save"}
    typer.echo(json.dumps({"weights": model.weights, "bias": model.bias, "info": model.info},
                          ensure_ascii=False, indent=2))
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
