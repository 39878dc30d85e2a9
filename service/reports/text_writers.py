"""CSV (UTF-8 with BOM, for Excel) and JSONL (one need × match per line, full explanation)."""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

from service.reports.model import NeedResult, ReportMeta, ReportStats, clean_text, columns, flat_rows, strength

# Spreadsheet programs run cells starting with these as formulas (CSV injection).
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def inert(value: Any) -> Any:
    value = clean_text(value)
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


class CsvReport:
    def __init__(self, path: Path, meta: ReportMeta):
        # utf-8-sig writes the BOM Excel needs to read the file as UTF-8 rather than GBK.
        self.file = path.open("w", encoding="utf-8-sig", newline="")
        self.writer = csv.writer(self.file)
        self.cols = columns(meta.with_contacts, with_domain=True)
        self.writer.writerow([c.header for c in self.cols])

    def write(self, result: NeedResult) -> None:
        for row in flat_rows(result, self.cols):
            self.writer.writerow([inert(v) for v in row])

    def close(self, stats: ReportStats) -> None:
        self.file.close()

    def abort(self) -> None:
        self.file.close()


class JsonlReport:
    def __init__(self, path: Path, meta: ReportMeta):
        self.file = path.open("w", encoding="utf-8", newline="\n")
        self.meta = meta

    def _line(self, payload: dict[str, Any]) -> None:
        self.file.write(json.dumps(payload, ensure_ascii=False, default=str))
        self.file.write("\n")

    def write(self, result: NeedResult) -> None:
        if not result.matches:
            self._line({"need": result.need, "rank": None, "score": None, "strength": None,
                        "capability": None, "explanation": None, "note": result.note})
            return
        for match in result.matches:
            self._line({"need": result.need, "rank": match.rank, "score": round(match.score, 6),
                        "strength": strength(match.score), "capability": match.capability,
                        "explanation": match.explanation, "note": None})

    def close(self, stats: ReportStats) -> None:
        self.file.close()

    def abort(self) -> None:
        self.file.close()
