"""`scenematch adapt`, `scenematch model-rollback`, `scenematch models`: the encoder's versions."""
from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any

import typer

from indexer.adaptation import data as adapt_data
from service.cli.common import configure_logging, ops_state, print_json

D = adapt_data.AdaptConfig()  # the CLI's defaults are the API's (`POST /v1/admin/adapt {}`)

RESTART_NOTE = "运行中的服务在下次启动时加载新模型 (a running service loads it at its next start; " \
               "use POST /v1/admin/adapt to adapt a running service in place)"


def _run_job(kind: str, params: dict[str, Any], label: str,
             work: Callable[[Any, Callable[[float, str], None]], dict[str, Any]]) -> dict[str, Any]:
    """Open the engine on the data dir, run `work(engine, progress)` as a recorded job with a bar."""
    from rich.console import Console

    from service.search import open_engine

    configure_logging("WARNING")
    console = Console(stderr=True)
    with ops_state() as state:
        with console.status("加载嵌入模型与索引 (loading the model and the index)…"):
            engine = open_engine(state)
            engine.open(build_if_missing=True)
        try:
            return _follow(state, engine, console, kind, params, label, work)
        finally:
            engine.close()
            state.jobs.shutdown()


def _follow(state: Any, engine: Any, console: Any, kind: str, params: dict[str, Any], label: str,
            work: Callable[[Any, Callable[[float, str], None]], dict[str, Any]]) -> dict[str, Any]:
    from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

    with Progress(TextColumn("{task.description}"), BarColumn(), TaskProgressColumn(),
                  TimeElapsedColumn(), console=console) as bar:
        task = bar.add_task(label, total=1.0)

        def fn(ctx: Any) -> dict[str, Any]:
            def progress(fraction: float, message: str) -> None:
                ctx.progress(fraction, message)
                bar.update(task, completed=fraction, description=f"{label}: {message}" if message else label)
            return work(engine, progress)

        job_id = state.jobs.submit(kind, {**params, "source": "cli"}, fn, exclusive="model")
        job = state.jobs.get(job_id)
        while job is not None and job["status"] in ("queued", "running"):
            time.sleep(0.5)
            job = state.jobs.get(job_id)
    if job is None or job["status"] != "succeeded":
        console.print(f"[red]任务 {job_id} 失败 (failed): {job and job['error']}[/red]")
        raise typer.Exit(1)
    return job["result"] or {}


def _metrics_table(result: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title="留出集评估 held-out evaluation (nDCG@10 / MRR@10)")
    for column in ("集合 set", "查询数 queries", "当前模型 serving", "候选模型 candidate", "差值 Δ", "判定"):
        table.add_column(column)
    metrics = result.get("metrics", {})
    for check in result.get("decision", {}).get("checks", []):
        name = check["set"]
        cand, act = metrics["candidate"][name], metrics["active"][name]
        verdict = "—" if not check["judged"] else ("通过" if check["passed"] else "[red]落后[/red]")
        table.add_row(name, str(check["queries"]), f"{act['ndcg@10']:.4f} / {act['mrr@10']:.4f}",
                      f"{cand['ndcg@10']:.4f} / {cand['mrr@10']:.4f}", f"{check['delta']:+.4f}", verdict)
    return table


def adapt_command(
    max_pairs: int = typer.Option(D.max_pairs, min=32, help="Most training pairs"),
    max_seconds: float = typer.Option(D.max_seconds, min=10, help="Training time budget (s)"),
    learning_rate: float = typer.Option(D.learning_rate, "--lr", min=1e-8, max=1e-2),
    epochs: float = typer.Option(D.epochs, min=0.01, max=10),
    batch_size: int = typer.Option(D.batch_size, min=4, max=128),
    seed: int = typer.Option(D.seed, min=0),
    loss: str = typer.Option(D.loss, help="mnrl | mnrl_symmetric"),
    freeze_embeddings: bool = typer.Option(D.freeze_embeddings, "--freeze-embeddings/--train-embeddings"),
    record_pairs: str = typer.Option(D.record_pairs, help="The records' own pairs: lead (title → opening of "
                                     "the description) | whole | passages | both | none (labelled pairs only)"),
    use_feedback: bool = typer.Option(D.use_feedback, "--feedback/--no-feedback"),
    use_demo_labels: bool = typer.Option(D.use_demo_labels, "--demo-labels/--no-demo-labels"),
    tolerance: float = typer.Option(D.tolerance, min=0, max=0.2, help="Largest nDCG@10 drop still accepted"),
    general_tolerance: float = typer.Option(D.general_tolerance, min=0, max=0.2,
                                            help="Largest drop on the seed records' probe still accepted"),
    refit_ranking: bool = typer.Option(D.refit_ranking, "--refit-ranking/--shipped-ranking",
                                       help="Fit the ranking's weights to the new encoder on the training labels"),
    as_json: bool = typer.Option(False, "--json", help="Print the full result as JSON"),
) -> None:
    """Fine-tune the encoder on the stored records and feedback; activate it only if it does not lose."""
    from rich.console import Console

    from indexer.adaptation import adapt
    from service.settings import Settings

    if loss not in ("mnrl", "mnrl_symmetric"):
        raise typer.BadParameter("--loss takes mnrl or mnrl_symmetric")
    if record_pairs not in adapt_data.RECORD_PAIR_MODES:
        raise typer.BadParameter("--record-pairs takes " + ", ".join(adapt_data.RECORD_PAIR_MODES))
    config = adapt.AdaptConfig(max_pairs=max_pairs, max_seconds=max_seconds, learning_rate=learning_rate,
                               epochs=epochs, batch_size=batch_size, seed=seed, loss=loss,
                               freeze_embeddings=freeze_embeddings, record_pairs=record_pairs,
                               use_feedback=use_feedback,
                               use_demo_labels=use_demo_labels, tolerance=tolerance,
                               general_tolerance=general_tolerance,
                               refit_ranking=refit_ranking)
    settings = Settings()
    base = adapt.BaseModel.resolve(settings.embedding_model, settings.cache_dir)
    result = _run_job("adapt", config.to_dict(), "编码器自适应 adapt",
                      lambda engine, progress: adapt.adapt(engine, base, config, progress))
    if as_json:
        print_json(result)
        return
    console = Console()
    console.print(_metrics_table(result))
    training = result.get("training", {})
    console.print(f"训练 training: {training.get('pairs_trained')} pairs, {training.get('steps')} steps, "
                  f"{training.get('seconds')} s ({training.get('pairs_per_s')} pairs/s)"
                  + (" — 时间上限提前结束 (stopped at the time budget)" if training.get("stopped_early") else ""))
    ranking = result.get("ranking")
    if result["decision"].get("stage") == "served":  # the fused ranking was judged
        console.print(f"排序权重 ranking weights: 按 {ranking['info']['queries']} 个训练集需求重新拟合 "
                      f"(fitted to the new model on {ranking['info']['queries']} labelled training needs)"
                      if ranking else "排序权重 ranking weights: 沿用默认权重 (the shipped weights)")
    if result.get("activated"):
        console.print(f"[green]已启用 activated[/green] 模型版本 {result['version']}, "
                      f"索引版本 {result['index_version']} ({result['seconds']} s)")
        console.print(RESTART_NOTE)
    else:
        console.print(f"[yellow]未启用 not activated[/yellow]: {result['decision']['reason']}")


def model_rollback_command() -> None:
    """Re-activate the previous model version (or the base model) and rebuild the index with it."""
    from indexer.adaptation import adapt
    from models import model_versions as mv
    from service.search import shared_encoder
    from service.settings import Settings

    settings = Settings()
    if mv.active_version(mv.models_root(settings.data_dir)) is None:
        typer.echo("基础模型已在使用, 无可回滚的版本 (the base model is active: nothing to roll back)", err=True)
        raise typer.Exit(1)
    base = adapt.BaseModel.resolve(settings.embedding_model, settings.cache_dir)

    def load(path: str) -> Any:
        model = settings.embedding_model if path == base.path else path
        return shared_encoder(model, str(settings.cache_dir), settings.encoder_backend)

    result = _run_job("model_rollback", {}, "模型回滚 rollback",
                      lambda engine, progress: adapt.rollback(engine, base, load, progress))
    typer.echo(f"已回滚 rolled back {result['rolled_back']} → {result['active_version'] or 'base'}; "
               f"索引版本 {result['index_version']}")
    typer.echo(RESTART_NOTE)


def models_command() -> None:
    """Model versions on disk (newest first) and which one is active."""
    from indexer.adaptation import adapt
    from service.settings import Settings

    settings = Settings()
    base = adapt.BaseModel.resolve(settings.embedding_model, settings.cache_dir)
    print_json(adapt.models_status(None, settings.data_dir, base))
