"""`scenematch report`: a batch match report written to a file."""
from __future__ import annotations

from pathlib import Path

import typer

from service.cli.common import configure_logging


def report_command(
    need_ids: str | None = typer.Option(None, help="Need ids, comma-separated, or @file with one id a line"),
    domain: list[str] = typer.Option([], help="Domain code (repeat or comma-separate)"),
    region: list[str] = typer.Option([], help="Region, e.g. 武汉市 (repeat or comma-separate)"),
    status: list[str] = typer.Option([], help="Need status (default: open, matching)"),
    since: str | None = typer.Option(None, help="Published on or after YYYY-MM-DD (Beijing time)"),
    until: str | None = typer.Option(None, help="Published on or before YYYY-MM-DD (Beijing time)"),
    per_need: int = typer.Option(5, help="Matches per need (1–50)"),
    min_score: float | None = typer.Option(None, help="Leave out matches scoring lower (0–1)"),
    fmt: str | None = typer.Option(None, "--format", help="xlsx | csv | jsonl | html (default: from --out, else xlsx)"),
    out: Path | None = typer.Option(None, help="Output file (default: ./场景匹配报告-<time>.<format>)"),
    include_restricted: bool = typer.Option(False, help="Include restricted records and contacts"),
    kind: str = typer.Option("matches", help="matches | monthly (月度发布) | quarterly (季度推介) | annual (年度评选)"),
    period: str | None = typer.Option(None, help="monthly 2026-03, quarterly 2026-Q1, annual 2026"),
    per_domain: int = typer.Option(5, help="Quarterly: capabilities per domain (1–50)"),
) -> None:
    """Batch match report (场景匹配报告) for selected needs, or a report of the publication cycle
    (--kind monthly|quarterly|annual --period …), written to a file, with a progress bar."""
    from service.reports.command import run_report_command, split_values

    configure_logging("WARNING")
    run_report_command({
        "need_ids": need_ids, "domain": split_values(domain), "region": split_values(region),
        "status": split_values(status), "since": since, "until": until, "per_need": per_need,
        "min_score": min_score, "format": fmt, "out": out, "include_restricted": include_restricted,
        "kind": kind, "period": period, "per_domain": per_domain})
