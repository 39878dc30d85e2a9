"""FastAPI dependencies, all in one place."""
from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from service import auth
from service.settings import Settings
from service.state import AppState


# Dependencies without I/O are async: FastAPI runs a plain `def` dependency in its thread pool,
# and each hop cost about a quarter of a millisecond per request (docs/benchmarks.md).
async def get_state(request: Request) -> AppState:
    return request.app.state.scenematch


StateDep = Annotated[AppState, Depends(get_state)]


async def get_settings(state: StateDep) -> Settings:
    return state.settings


def get_session(state: StateDep) -> Iterator[Session]:
    session = state.sessions()
    try:
        yield session
        session.commit()
    except BaseException:
        session.rollback()
        raise
    finally:
        session.close()


SessionDep = Annotated[Session, Depends(get_session)]


async def caller_is_admin(request: Request, state: StateDep) -> bool:
    return auth.is_admin(request, state.settings)


AdminViewDep = Annotated[bool, Depends(caller_is_admin)]


async def require_writer(request: Request, state: StateDep) -> None:
    auth.check_writer(request, state.settings)


async def require_admin(request: Request, state: StateDep) -> None:
    auth.check_admin(request, state.settings)
