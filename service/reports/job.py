"""Generating one report file: selection → matches with explanations → the format's writer."""
from __future__ import annotations

import datetime as dt
import os
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from indexer.ranking.matching import Matcher
from models.taxonomy import Taxonomy
from service.reports import storage
from service.reports.html_writer import HtmlReport
from service.reports.model import BEIJING, NeedResult, ReportMeta, ReportStats
from service.reports.rows import ResultSource, report_matcher
from service.reports.schemas import ReportRequest
from service.reports.selection import Selection
from service.reports.text_writers import CsvReport, JsonlReport
from service.reports.xlsx_writer import XlsxReport

Progress = Callable[[float, str], None]
TITLE = "场景供需匹配报告"


class ReportWriter(Protocol):
    def write(self, result: NeedResult) -> None: ...
    def close(self, stats: ReportStats) -> None: ...
    def abort(self) -> None: ...


WRITERS: dict[str, Callable[[Path, ReportMeta], ReportWriter]] = {
    "xlsx": XlsxReport, "csv": CsvReport, "jsonl": JsonlReport, "html": HtmlReport,
}


@dataclass
class ReportPlan:
    """Everything decided before the work starts: the request and the needs it selected."""

    request: ReportRequest
    selection: Selection
    title: str | None = None  # a report of the publication cycle names its period (cycle.Period.title)
    prefix: str = "场景匹配报告"  # of the download's file name
    weights: dict[str, float] | None = None  # of the cited scenarios' overall evaluation (None: equal)

    @property
    def label(self) -> str | None:
        """A word for the file name when the report covers a single domain."""
        if len(self.selection.domains) == 1:
            return self.selection.domains[0][1]
        return None


def beijing_now() -> dt.datetime:
    return dt.datetime.now(BEIJING)


def generate_report(sessions: sessionmaker[Session], matcher: Matcher, taxonomy: Taxonomy,
                    plan: ReportPlan, out_path: Path, progress: Progress | None = None) -> dict[str, Any]:
    """Write the report to out_path (atomically: a partial file is renamed at the end)."""
    started = time.perf_counter()
    request, selection = plan.request, plan.selection
    matcher = report_matcher(matcher)
    snapshot = matcher.snapshot()
    generated_at = beijing_now()
    meta = ReportMeta(
        title=plan.title or TITLE + (f"（{plan.label}）" if plan.label else ""), generated_at=generated_at,
        index_version=snapshot.version, model=snapshot.model, per_need=request.per_need,
        min_score=request.min_score, include_restricted=request.include_restricted,
        selection=selection.description, needs=len(selection.need_ids), domains=selection.domains,
        unknown_need_ids=selection.unknown_ids)
    source = ResultSource(sessions, matcher, taxonomy, weights=plan.weights, per_need=request.per_need,
                          min_score=request.min_score, include_restricted=request.include_restricted)
    stats = ReportStats()
    total = max(1, len(selection.need_ids))
    part = storage.partial_path(out_path)
    writer = WRITERS[request.format](part, meta)
    try:
        for done, result in enumerate(source(selection.need_ids), start=1):
            writer.write(result)
            stats.add(result)
            if progress is not None and (done % 10 == 0 or done == total):
                progress(0.99 * done / total, f"已处理 {done}/{total} 个需求")
        if progress is not None:
            progress(0.99, "正在写入文件")
        writer.close(stats)
    except BaseException:
        writer.abort()
        part.unlink(missing_ok=True)
        raise
    os.replace(part, out_path)
    seconds = time.perf_counter() - started
    name, ascii_name = storage.download_names(generated_at, request.format, plan.label, plan.prefix)
    return {
        "file": out_path.name, "format": request.format, "file_name": name, "file_name_ascii": ascii_name,
        "needs": stats.needs, "rows": stats.rows, "matches": stats.matches,
        "domains": [{"code": c, "name": n, "needs": k} for c, n, k in selection.domains],
        "unknown_need_ids": selection.unknown_ids, "not_indexed_need_ids": source.not_indexed,
        "vanished_need_ids": source.vanished, "include_restricted": request.include_restricted,
        "index_version": snapshot.version, "model": snapshot.model,
        "size_bytes": out_path.stat().st_size, "generated_at": generated_at.isoformat(),
        "seconds": round(seconds, 3), "ms_per_need": round(1000 * seconds / total, 2),
    }


def report_job(sessions: sessionmaker[Session], matcher: Matcher, taxonomy: Taxonomy, plan: ReportPlan,
               data_dir: Path, retention_days: int) -> Callable[[Any], dict[str, Any]]:
    """The function the job runner calls; the file is named after the job id."""

    def run(ctx: Any) -> dict[str, Any]:
        path = storage.report_path(data_dir, ctx.job_id, plan.request.format)
        result = generate_report(sessions, matcher, taxonomy, plan, path, ctx.progress)
        expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=retention_days)
        return {**result, "expires_at": expires.isoformat(), "message": "报告已生成"}

    return run
