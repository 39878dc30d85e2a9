"""What the command modules share: JSON logging, operator database access, JSON output."""
from __future__ import annotations

import json
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

import typer

if TYPE_CHECKING:
    from service.state import AppState


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
