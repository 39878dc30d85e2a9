"""`scenematch report`: the same report as POST /v1/reports, written straight to a file."""
from __future__ import annotations

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import typer
from pydantic import ValidationError
from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)

from indexer.ranking.hybrid import RankingModel
from indexer.ranking.matching import Matcher
from indexer.retrieval.engine import SearchEngine
from models.database import make_engine, make_session_factory, migrate, session_scope
from models.taxonomy import default_taxonomy
from service.errors import describe_validation_errors
from service.jobs import JobRunner
from service.reports import storage
from service.reports.cycle_job import PREFIXES, generate_cycle_report, monthly_plan
from service.reports.job import ReportPlan, beijing_now, generate_report
from service.reports.schemas import FORMATS, ReportRequest, request_problems
from service.reports.selection import EmptySelection, SelectionTooLarge, select_needs
from service.settings import Settings
from service.state import AppState


@dataclass
class ReportContext:
    state: AppState
    engine: SearchEngine
    matcher: Matcher


@contextlib.contextmanager
def open_for_reports(settings: Settings) -> Iterator[ReportContext]:
    """Database and index of a data dir, without the service's start-up side effects.

    No job recovery and no demo load: the command may run beside a live service.
    """
    from service.search import open_engine

    settings.ensure_dirs()
    db = make_engine(settings.resolved_database_url)
    migrate(db)
    sessions = make_session_factory(db)
    state = AppState(settings=settings, engine=db, sessions=sessions, taxonomy=default_taxonomy(),
                     jobs=JobRunner(sessions, workers=1))
    engine = open_engine(state)
    try:
        engine.open(build_if_missing=True)
        names = {c: d.name for c, d in state.taxonomy.domains.items()}
        yield ReportContext(state, engine, Matcher(engine, RankingModel.load(), engine.tokenizer, names))
    finally:
        engine.close()
        state.jobs.shutdown()
        db.dispose()


def split_values(values: list[str]) -> list[str]:
    return [v.strip() for item in values for v in item.split(",") if v.strip()]


def read_need_ids(value: str | None) -> list[str] | None:
    """Comma-separated ids, or @file with ids separated by commas, spaces or new lines."""
    if value is None:
        return None
    if value.startswith("@"):
        value = Path(value[1:]).read_text(encoding="utf-8").replace("\n", ",").replace(" ", ",")
    return split_values([value])


def build_request(options: dict[str, Any]) -> ReportRequest:
    need_ids = read_need_ids(options["need_ids"])
    filter_values = {k: options[k] for k in ("domain", "region", "status") if options[k]}
    filter_values.update({k: options[k] for k in ("since", "until") if options[k]})
    body: dict[str, Any] = {"per_need": options["per_need"], "format": options["format"],
                            "include_restricted": options["include_restricted"]}
    kind = options.get("kind") or "matches"
    if kind != "matches":
        body.update(kind=kind, period=options.get("period"), per_domain=options.get("per_domain", 5))
        if filter_values:
            body["filters"] = filter_values
        return ReportRequest.model_validate(body)
    if options["min_score"] is not None:
        body["min_score"] = options["min_score"]
    if need_ids is not None:
        if filter_values:
            raise typer.BadParameter("cannot be combined with --domain, --region, --status, --since, --until",
                                     param_hint="--need-ids")
        body["need_ids"] = need_ids
    else:
        body["filters"] = filter_values
    return ReportRequest.model_validate(body)


def resolve_format(fmt: str | None, out: Path | None) -> str:
    if fmt is None:
        suffix = out.suffix.lower().lstrip(".") if out else ""
        return suffix if suffix in FORMATS else "xlsx"
    if fmt not in FORMATS:
        raise typer.BadParameter(f"unknown format '{fmt}': one of {', '.join(FORMATS)}", param_hint="--format")
    return fmt


def _generate_cycle(console: Console, ctx: ReportContext, request: ReportRequest,
                    out: Path | None) -> tuple[Path, dict[str, Any]]:
    """A quarterly or annual report (their own tables, no per-need progress)."""
    state = ctx.state
    out = out or Path.cwd() / storage.download_names(beijing_now(), request.format, request.period,
                                                     PREFIXES[request.kind])[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    with console.status("生成报告…"):
        result = generate_cycle_report(state.sessions, ctx.matcher, state.taxonomy, request, out,
                                       state.settings.evaluation_weights)
    return out, result


def _generate(console: Console, ctx: ReportContext, request: ReportRequest,
              out: Path | None) -> tuple[Path, dict[str, Any]]:
    state = ctx.state
    if request.kind in ("quarterly", "annual"):
        return _generate_cycle(console, ctx, request, out)
    with session_scope(state.sessions) as session:
        try:
            if request.kind == "monthly":
                plan = monthly_plan(session, state.taxonomy, request)
            else:
                plan = ReportPlan(request, select_needs(session, state.taxonomy, request.need_ids, request.filters,
                                                        request.include_restricted))
            plan.weights = state.settings.evaluation_weights
            selection = plan.selection
        except EmptySelection as exc:
            console.print("[red]没有符合条件的需求，未生成报告。[/red]")
            if exc.unknown_ids:
                console.print("未找到的需求编号：" + "、".join(exc.unknown_ids[:50]))
            raise typer.Exit(2) from None
        except SelectionTooLarge as exc:
            console.print(f"[red]筛选出的需求超过 {exc.limit} 个，请按领域、地区或日期缩小范围。[/red]")
            raise typer.Exit(2) from None
    if selection.unknown_ids:
        console.print(f"[yellow]未找到 {len(selection.unknown_ids)} 个需求编号：[/yellow]"
                      + "、".join(selection.unknown_ids[:50]))
    out = out or Path.cwd() / storage.download_names(beijing_now(), request.format, plan.label, plan.prefix)[0]
    out.parent.mkdir(parents=True, exist_ok=True)
    total = len(selection.need_ids)
    with Progress(TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), TimeRemainingColumn(), console=console) as bar:
        task = bar.add_task("生成匹配报告", total=total)

        def advance(fraction: float, _message: str) -> None:
            bar.update(task, completed=min(total, round(fraction / 0.99 * total)))

        result = generate_report(state.sessions, ctx.matcher, state.taxonomy, plan, out, advance)
        bar.update(task, completed=total)
    return out, result


def run_report_command(options: dict[str, Any]) -> None:
    console = Console(stderr=True)
    options["format"] = resolve_format(options["format"], options["out"])
    try:
        request = build_request(options)
        problems = request_problems(request)
    except ValidationError as exc:
        problems = describe_validation_errors(list(exc.errors()))
    if problems:
        for problem in problems:
            console.print(f"[red]参数错误[/red] {problem['field']}: {problem['reason']}")
        raise typer.Exit(2) from None
    with contextlib.ExitStack() as stack:
        with console.status("加载语义模型与索引…"):
            ctx = stack.enter_context(open_for_reports(Settings()))
        out, result = _generate(console, ctx, request, options["out"])
    if request.kind in ("quarterly", "annual"):
        console.print(f"[green]已生成[/green] {out}：{result['rows']} 行，用时 {result['seconds']:.1f} 秒")
        return
    console.print(f"[green]已生成[/green] {out}：{result['needs']} 个需求，{result['rows']} 行，"
                  f"{result['matches']} 条匹配，用时 {result['seconds']:.1f} 秒"
                  f"（每个需求 {result['ms_per_need']:.0f} 毫秒）")
    if result["not_indexed_need_ids"]:
        console.print(f"[yellow]{len(result['not_indexed_need_ids'])} 个需求尚未进入索引，报告中已注明。[/yellow]")
