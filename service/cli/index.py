"""`scenematch reindex`, `jobs`, `index-status`: the admin API's counterparts for the index and
its jobs, working on the data dir directly."""
from __future__ import annotations

import json
from typing import Any

import typer

from service.cli.common import ops_state, print_json


def reindex_command(
    full: bool = typer.Option(True, "--full/--incremental",
                              help="--full: re-embed everything; --incremental: fold stored changes in"),
    force: bool = typer.Option(False, "--force", help="Run even if a reindex job is recorded as running"),
    engine_name: str = typer.Option("local", "--engine", help="Who embeds a full build: local (this process) "
                                    "or ray (Ray Data, across a cluster's machines)"),
    ray_address: str | None = typer.Option(None, "--ray-address", help="A Ray cluster to join (--engine ray); "
                                           "default: a local Ray on 127.0.0.1, stopped afterwards"),
    no_cache: bool = typer.Option(False, "--no-cache", help="Embed every text again, ignoring the embedding cache"),
) -> None:
    """Rebuild the index into a new version (running services follow it within seconds)."""
    import time

    from rich.console import Console
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    from service import reindex
    from service.app import init_state
    from service.search import open_engine
    from service.settings import Settings

    console = Console(stderr=True)
    mode = "full" if full else "incremental"
    if engine_name not in ("local", "ray") or (engine_name == "ray" and not full):
        console.print("[red]--engine 取 local 或 ray; ray 仅用于全量重建 (--full)[/red]")
        raise typer.Exit(2)
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
            if no_cache:  # the cache wraps the model: unwrap it
                engine.encoder = getattr(engine.encoder, "inner", engine.encoder)
            if engine_name == "ray":
                engine.encoder = batch_encoder(engine.encoder, state, ray_address, cached=not no_cache)
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
            closing = getattr(engine.encoder, "inner", engine.encoder)
            if hasattr(closing, "close") and engine_name == "ray":
                closing.close()  # stops the local Ray (or leaves the cluster)
        state.jobs.shutdown()
        state.engine.dispose()


def batch_encoder(local: Any, state: Any, address: str | None, cached: bool) -> Any:
    """The encoder of a build through Ray Data: the same model, the same vectors, many machines."""
    from indexer.adaptation.adapt import serving_model
    from indexer.retrieval.embedding import CachedEncoder, EmbeddingCache
    from indexer.retrieval.ray_embedding import RayEncoder
    from service.search import embedding_cache_path

    settings = state.settings
    base = getattr(local, "inner", local)
    model = serving_model(settings.data_dir, settings.embedding_model, settings.cache_dir)
    ray_encoder = RayEncoder(base, model, settings.cache_dir, address=address)
    if not cached:
        return ray_encoder
    return CachedEncoder(ray_encoder, EmbeddingCache(embedding_cache_path(settings.cache_dir)))


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
