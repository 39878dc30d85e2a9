"""Process-wide objects created once at start-up and shared by the routes."""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from models.taxonomy import Taxonomy
from service.jobs import JobRunner
from service.settings import Settings


@dataclass
class AppState:
    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    taxonomy: Taxonomy
    jobs: JobRunner
    # Set once the search engine is loaded (see service.app); None means not ready.
    engine_ready: bool = False
    extras: dict[str, Any] = field(default_factory=dict)
