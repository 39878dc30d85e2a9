"""The FastAPI application: wiring of settings, database, search engine and routes."""
from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware
from sqlalchemy import delete

from models.database import make_engine, make_session_factory, migrate, session_scope
from models.db import Category, Domain
from models.taxonomy import Taxonomy, default_taxonomy
from service import demo, search
from service.errors import install_error_handlers
from service.jobs import JobRunner
from service.metrics import ServiceMetrics
from service.replica import Replica
from service.metrics import router as metrics_router
from service.middleware import BodyLimitMiddleware, RequestIdMiddleware
from service.routes import admin, console, feedback, matching, meta, records, scenarios
from service.routes import adapt as adapt_routes
from service.routes import reports as report_routes
from service.routes import classify as classify_routes
from service.routes import ranking as ranking_routes
from service.settings import Settings
from service.state import AppState

log = logging.getLogger("scenematch")

DESCRIPTION = """
**scenematch** 场景供需智能匹配服务: matches published scenario needs (场景需求) with enterprise,
university and institute capabilities (企业能力) across the 20 domains of Hubei's scenario plan.

Errors always have the shape `{"error": {"code", "message", "details"}}`.
Writes need `Authorization: Bearer <token>` (admin or client token).
"""


def seed_taxonomy(state: AppState) -> None:
    """Mirror the taxonomy file into the database (the file is the source of truth)."""
    tax: Taxonomy = state.taxonomy
    with session_scope(state.sessions) as session:
        session.execute(delete(Domain))
        session.execute(delete(Category))
        session.flush()
        for order, (code, name) in enumerate(tax.categories.items()):
            session.add(Category(code=code, name=name, order=order))
        session.flush()
        for d in tax.domains.values():
            session.add(Domain(code=d.code, name=d.name, category=d.category, order=d.order,
                               description=d.description, key_terms=list(d.key_terms)))


def init_state(settings: Settings) -> AppState:
    settings.ensure_dirs()
    engine = make_engine(settings.resolved_database_url)
    sessions = make_session_factory(engine)
    # Other replicas may share this database and data dir: start-up work runs one replica at a time.
    replica = Replica(engine, settings.data_dir)
    with replica.starting():
        migrate(engine)
        replica.register()
        state = AppState(settings=settings, engine=engine, sessions=sessions, taxonomy=default_taxonomy(),
                         jobs=JobRunner(sessions, owner=replica.owner, owner_alive=replica.owner_alive))
        state.extras["replica"] = replica
        interrupted = state.jobs.recover()
        if interrupted:
            log.warning("marked %d interrupted job(s) as failed", interrupted)
        seed_taxonomy(state)
        if settings.load_demo and demo.database_is_empty(state.sessions):
            n_needs, n_caps = demo.load_demo(state.sessions, demo.SEED_CORPORA[settings.demo_corpus],
                                                per_domain=settings.demo_per_domain)
            log.info("loaded the %s demo corpus: %d needs, %d capabilities", settings.demo_corpus, n_needs, n_caps)
    return state


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or Settings()

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        state = init_state(settings)
        app.state.scenematch = state
        metrics.bind(state)
        state.jobs.on_finish = metrics.observe_job
        state.extras.setdefault("engine_hooks", []).append(metrics.instrument_engine)
        if settings.build_index_on_start:
            search.start_search(state)
        else:
            state.extras["not_ready_reason"] = "search is disabled (SCENEMATCH_BUILD_INDEX_ON_START=false)"
        try:
            yield
        finally:
            search.stop_search(state)
            state.jobs.shutdown()
            state.extras["replica"].close()
            state.engine.dispose()

    app = FastAPI(title="scenematch 场景供需匹配", version="1.0.0", description=DESCRIPTION,
                  lifespan=lifespan)
    metrics = ServiceMetrics()  # per app: tests run many apps in one process
    app.state.metrics = metrics
    install_error_handlers(app)
    app.include_router(meta.router)
    app.include_router(records.needs_router)
    app.include_router(records.capabilities_router)
    app.include_router(scenarios.router)
    app.include_router(matching.router)
    app.include_router(classify_routes.router)
    app.include_router(report_routes.router)
    app.include_router(feedback.router)
    app.include_router(admin.router)
    app.include_router(adapt_routes.router)
    app.include_router(ranking_routes.router)
    app.include_router(feedback.admin_router)
    app.include_router(metrics_router)
    app.include_router(console.router)
    origins = [o.strip() for o in settings.cors_origins.split(",") if o.strip()]
    if origins:
        app.add_middleware(CORSMiddleware, allow_origins=origins, allow_methods=["*"],
                           allow_headers=["*"])
    app.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    app.add_middleware(RequestIdMiddleware, metrics_hook=metrics.observe_request)
    return app
