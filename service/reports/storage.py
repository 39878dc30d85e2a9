"""Where report files live (DATA_DIR/reports/<job id>.<ext>), how long, and how they are named."""
from __future__ import annotations

import datetime as dt
import logging
import re
import time
from pathlib import Path
from urllib.parse import quote

log = logging.getLogger("scenematch.reports")

JOB_ID = re.compile(r"^[0-9a-f]{32}$")
CONTENT_TYPES = {
    "xlsx": "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet",
    "csv": "text/csv; charset=utf-8",
    "jsonl": "application/x-ndjson; charset=utf-8",
    "html": "text/html; charset=utf-8",
}
# A partial file this old belongs to a job that died with its process.
STALE_PART_S = 24 * 3600


def reports_dir(data_dir: Path) -> Path:
    folder = data_dir / "reports"
    folder.mkdir(parents=True, exist_ok=True)
    return folder


def valid_job_id(job_id: str) -> bool:
    return bool(JOB_ID.fullmatch(job_id))


def report_path(data_dir: Path, job_id: str, fmt: str) -> Path:
    """The file of a report; the id is checked first, so no path can leave the reports folder."""
    if not valid_job_id(job_id) or fmt not in CONTENT_TYPES:
        raise ValueError("invalid report id or format")
    return reports_dir(data_dir) / f"{job_id}.{fmt}"


def partial_path(final: Path) -> Path:
    return final.with_name(final.name + ".part")


def cleanup(data_dir: Path, retention_days: int, now: float | None = None) -> int:
    """Delete reports older than the retention and abandoned partial files; returns how many."""
    folder = reports_dir(data_dir)
    now = time.time() if now is None else now
    removed = 0
    for path in folder.iterdir():
        if not path.is_file():
            continue
        age = now - path.stat().st_mtime
        limit = STALE_PART_S if path.name.endswith((".part", ".body")) else retention_days * 86400
        if age > limit:
            path.unlink(missing_ok=True)
            removed += 1
    if removed:
        log.info("removed %d expired report file(s)", removed)
    return removed


def download_names(generated_at: dt.datetime, fmt: str, label: str | None = None,
                   prefix: str = "场景匹配报告") -> tuple[str, str]:
    """(Chinese name, ASCII fallback) for the download, e.g. 场景匹配报告-智慧水利-20260105-0930.xlsx."""
    stamp = generated_at.strftime("%Y%m%d-%H%M")
    middle = f"-{label}" if label else ""
    safe_middle = re.sub(r'[\\/:*?"<>|\s]+', "_", middle)
    return f"{prefix}{safe_middle}-{stamp}.{fmt}", f"scenematch-report-{stamp}.{fmt}"


def content_disposition(name: str, fallback: str) -> str:
    """RFC 6266 with an RFC 5987 UTF-8 name: browsers show the Chinese name, old clients the ASCII one."""
    ascii_name = fallback.replace('"', "").replace("\\", "")
    return f"attachment; filename=\"{ascii_name}\"; filename*=UTF-8''{quote(name, safe='')}"
