"""Generating a quarterly or annual report file (the monthly one is a match report, job.py)."""
from __future__ import annotations

import datetime as dt
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy.orm import Session, sessionmaker

from indexer.ranking.matching import Matcher
from models.taxonomy import Taxonomy
from service.reports import cycle, cycle_writers, storage
from service.reports.job import ReportPlan, beijing_now
from service.reports.rows import report_matcher
from service.reports.schemas import ReportFilters, ReportRequest
from service.reports.selection import EmptySelection, by_filters

Progress = Callable[[float, str], None]
PREFIXES = {"monthly": "月度发布报告", "quarterly": "季度推介报告", "annual": "年度评选报告"}


def monthly_plan(session: Session, taxonomy: Taxonomy, request: ReportRequest) -> ReportPlan:
    """The month's needs as a match report's plan (raises selection.EmptySelection like any selection)."""
    period = cycle.parse_period("monthly", request.period or "")
    filters = cycle.monthly_filters(request, period)
    selection = by_filters(session, taxonomy, filters, request.include_restricted)
    if not selection.need_ids:
        raise EmptySelection([])
    selection.description = f"发布月份：{period.label}；" + selection.description.split("；", 1)[-1]
    return ReportPlan(request, selection, title=period.title, prefix=PREFIXES["monthly"])


def generate_cycle_report(sessions: sessionmaker[Session], matcher: Matcher, taxonomy: Taxonomy,
                          request: ReportRequest, out_path: Path, weights: Mapping[str, float],
                          progress: Progress | None = None) -> dict[str, Any]:
    started = time.perf_counter()
    period = cycle.parse_period(request.kind, request.period or "")
    domains = list((request.filters or ReportFilters()).domain)
    generated_at = beijing_now()
    pairs: list[tuple[str, Any]] = [
        ("生成时间", generated_at.strftime("%Y-%m-%d %H:%M（北京时间）")), ("统计期间", period.label),
        ("领域", "、".join(taxonomy.name(c) or c for c in domains) or "全部领域"),
        ("受限数据", "包含（管理员）" if request.include_restricted else "不包含")]
    part = storage.partial_path(out_path)
    if request.kind == "quarterly":
        data = cycle.quarterly(sessions, report_matcher(matcher), taxonomy, period, domains, request.per_domain,
                               request.include_restricted, weights, progress)
        pairs += [("期间发布需求数", data.needs), ("每个领域推介能力数", request.per_domain),
                  ("较强匹配", f"匹配度 ≥ {cycle.STRONG}，且在该需求前 {cycle.MATCHES_PER_NEED} 名内")]
        writer = cycle_writers.write_quarterly_xlsx if request.format == "xlsx" else cycle_writers.write_quarterly_html
        counts = {"needs": data.needs, "rows": sum(len(v) for v in data.by_domain.values()),
                  "domains": [{"code": c, "name": taxonomy.name(c), "capabilities": len(v)}
                              for c, v in data.by_domain.items()]}
    else:
        data = cycle.annual(sessions, taxonomy, period, domains, request.include_restricted, weights)
        pairs.append(("评价权重", "、".join(f"{label} {weights[key]:g}" for key, label in cycle_writers.charts_eval.AXES)))
        writer = cycle_writers.write_annual_xlsx if request.format == "xlsx" else cycle_writers.write_annual_html
        counts = {"scenarios": len(data.rows), "rows": len(data.rows)}
    if progress is not None:
        progress(0.9, "正在写入文件")
    try:
        writer(part, data, pairs)  # type: ignore[arg-type]
        part.replace(out_path)
    finally:
        part.unlink(missing_ok=True)
    name, ascii_name = storage.download_names(generated_at, request.format, period.label, PREFIXES[request.kind])
    return {"file": out_path.name, "format": request.format, "kind": request.kind, "period": request.period,
            "file_name": name, "file_name_ascii": ascii_name, **counts,
            "include_restricted": request.include_restricted, "size_bytes": out_path.stat().st_size,
            "generated_at": generated_at.isoformat(), "seconds": round(time.perf_counter() - started, 3)}


def cycle_job(sessions: sessionmaker[Session], matcher: Matcher, taxonomy: Taxonomy, request: ReportRequest,
              data_dir: Path, retention_days: int, weights: Mapping[str, float]) -> Callable[[Any], dict[str, Any]]:
    def run(ctx: Any) -> dict[str, Any]:
        path = storage.report_path(data_dir, ctx.job_id, request.format)
        result = generate_cycle_report(sessions, matcher, taxonomy, request, path, weights, ctx.progress)
        expires = dt.datetime.now(dt.timezone.utc) + dt.timedelta(days=retention_days)
        return {**result, "expires_at": expires.isoformat(), "message": "报告已生成"}

    return run
