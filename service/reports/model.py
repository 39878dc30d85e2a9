"""What every report format is made of: one result per need, its metadata and running statistics."""
from __future__ import annotations

import datetime as dt
import re
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from indexer.ranking.explain import strength

BEIJING = dt.timezone(dt.timedelta(hours=8), "CST")
UNCLASSIFIED = ("", "未分类")

STATUS_NAMES = {"open": "征集中", "matching": "对接中", "closed": "已关闭", "withdrawn": "已撤回"}
ORG_TYPE_NAMES = {"enterprise": "企业", "university": "高校", "institute": "科研院所",
                  "service": "服务机构", "other": "其他"}
SCORE_BUCKETS = 10  # 0.0–0.1 … 0.9–1.0
MAX_CASE_ROWS = 50_000  # the cases sheet of a very large report keeps its first rows (and says so)
STAGE_NAMES = {"building": "建设", "testing": "测试", "promoting": "推广", "retired": "退出"}


@dataclass
class MatchRow:
    rank: int
    score: float
    capability: dict[str, Any]  # id, title, organization, org_type, region, domain_names, contact
    shared_terms: list[str]
    summary: str
    explanation: dict[str, Any]


@dataclass
class NeedResult:
    need: dict[str, Any]  # id, title, publisher, region, status, domain, domain_name, contact
    matches: list[MatchRow]
    note: str | None = None  # why there is no match, shown in place of one

    @property
    def domain(self) -> str:
        return self.need.get("domain") or UNCLASSIFIED[0]


@dataclass
class ReportMeta:
    title: str
    generated_at: dt.datetime
    index_version: str
    model: str
    per_need: int
    min_score: float | None
    include_restricted: bool
    selection: str  # the selection in words, e.g. 领域：智慧水利；状态：征集中、对接中
    needs: int
    domains: list[tuple[str, str, int]]  # (code, name, needs) in report order
    unknown_need_ids: list[str] = field(default_factory=list)

    @property
    def with_contacts(self) -> bool:
        return self.include_restricted

    def rows_as_pairs(self) -> list[tuple[str, Any]]:
        """The metadata as label/value pairs, as shown at the top of every readable format."""
        unknown = "、".join(self.unknown_need_ids[:50])
        if len(self.unknown_need_ids) > 50:
            unknown += f" 等 {len(self.unknown_need_ids)} 个"
        return [
            ("生成时间", self.generated_at.strftime("%Y-%m-%d %H:%M（北京时间）")),
            ("筛选条件", self.selection),
            ("需求数", self.needs),
            ("每个需求的匹配数", self.per_need),
            ("最低匹配度", "不限" if self.min_score is None else f"{self.min_score:.2f}"),
            ("受限数据与联系方式", "包含（管理员）" if self.include_restricted else "不包含"),
            ("索引版本", self.index_version),
            ("语义模型", self.model),
            ("未找到的需求编号", unknown or "无"),
        ]


@dataclass
class GroupStats:
    needs: int = 0
    needs_matched: int = 0
    matches: int = 0
    score_sum: float = 0.0
    best: float = 0.0

    @property
    def mean(self) -> float:
        return self.score_sum / self.matches if self.matches else 0.0


@dataclass
class ReportStats:
    """Counts gathered while rows stream past, so no format has to keep its rows."""

    by_domain: dict[str, GroupStats] = field(default_factory=dict)
    by_region: dict[str, GroupStats] = field(default_factory=dict)
    buckets: list[int] = field(default_factory=lambda: [0] * SCORE_BUCKETS)
    strengths: Counter[str] = field(default_factory=Counter)
    needs: int = 0
    rows: int = 0
    matches: int = 0
    # The cited cases, one row per (match, case): the cases sheet and section (CASE_HEADERS).
    case_rows: list[list[Any]] = field(default_factory=list)
    cases_left_out: int = 0

    def add(self, result: NeedResult) -> None:
        self._add_cases(result)
        region = result.need.get("region") or "未注明"
        groups = (self.by_domain.setdefault(result.domain, GroupStats()),
                  self.by_region.setdefault(region, GroupStats()))
        self.needs += 1
        self.rows += max(1, len(result.matches))
        self.matches += len(result.matches)
        for group in groups:
            group.needs += 1
            group.needs_matched += bool(result.matches)
            for match in result.matches:
                group.matches += 1
                group.score_sum += match.score
                group.best = max(group.best, match.score)
        for match in result.matches:
            self.buckets[min(SCORE_BUCKETS - 1, int(match.score * SCORE_BUCKETS))] += 1
            self.strengths[strength(match.score)] += 1

    def _add_cases(self, result: NeedResult) -> None:
        for m in result.matches:
            for case in m.explanation.get("cases", []):
                if len(self.case_rows) >= MAX_CASE_ROWS:
                    self.cases_left_out += 1
                    continue
                evaluation, outcome = case.get("evaluation") or {}, case.get("outcome") or {}
                first = outcome.get("first_purchase")
                self.case_rows.append([
                    result.need["id"], result.need["title"], m.capability["id"], m.capability["title"], case["id"],
                    case["title"], case.get("year"), STAGE_NAMES.get(case.get("stage") or "", case.get("stage")),
                    case["similarity"], "本单位" if case.get("via") == "self" else "同一单位其他能力",
                    *[evaluation.get(k) for k in CASE_EVALUATION_KEYS], outcome.get("contract_wan"),
                    "是" if first else ("否" if first is not None else None), outcome.get("signed_at")])

    @staticmethod
    def bucket_label(i: int) -> str:
        return f"{i / SCORE_BUCKETS:.1f}–{(i + 1) / SCORE_BUCKETS:.1f}"


# ---- the flat table shared by XLSX, CSV and HTML -----------------------------------------
@dataclass(frozen=True)
class Column:
    key: str
    header: str
    width: float  # Excel character units
    wrap: bool = False


COLUMNS: tuple[Column, ...] = (
    Column("need_id", "需求编号", 18),
    Column("need_title", "需求名称", 32, True),
    Column("publisher", "发布单位", 22, True),
    Column("region", "需求所在地区", 12),
    Column("status", "需求状态", 10),
    Column("rank", "匹配排名", 9),
    Column("capability_id", "能力编号", 18),
    Column("capability_title", "能力名称", 32, True),
    Column("organization", "所属机构", 24, True),
    Column("org_type", "机构类型", 10),
    Column("capability_region", "能力所在地区", 12),
    Column("score", "匹配度", 9),
    Column("strength", "匹配等级", 10),
    Column("shared_terms", "共同关键词", 26, True),
    Column("summary", "匹配说明", 64, True),
)
CONTACT_COLUMNS: tuple[Column, ...] = (
    Column("need_contact", "需求方联系方式", 22, True),
    Column("capability_contact", "能力方联系方式", 22, True),
)
DOMAIN_COLUMN = Column("domain_name", "所属领域", 14)
CASE_EVALUATION_KEYS = ("tech_advancement", "economic_benefit", "social_benefit", "promotion_value", "overall")
CASE_HEADERS = ("需求编号", "需求名称", "能力编号", "能力名称", "场景编号", "场景名称", "年份", "阶段", "相似度",
                "落地单位", "技术先进性", "经济效益", "社会效益", "推广价值", "综合评价", "合同金额（万元）", "首购首用",
                "签约日期")
CASE_WIDTHS = (18, 30, 18, 30, 20, 30, 6, 6, 8, 14, 10, 10, 10, 10, 10, 14, 8, 12)


def columns(with_contacts: bool, with_domain: bool = False) -> tuple[Column, ...]:
    head = (DOMAIN_COLUMN,) if with_domain else ()
    return head + COLUMNS + (CONTACT_COLUMNS if with_contacts else ())


def flat_rows(result: NeedResult, cols: tuple[Column, ...]) -> list[list[Any]]:
    """One row per match; a need without matches still gets one row that says why."""
    need = result.need
    base = {"need_id": need["id"], "need_title": need["title"], "publisher": need.get("publisher"),
            "region": need.get("region"), "status": STATUS_NAMES.get(need.get("status") or "", need.get("status")),
            "domain_name": need.get("domain_name") or UNCLASSIFIED[1], "need_contact": need.get("contact")}
    if not result.matches:
        return [[{**base, "summary": result.note}.get(c.key) for c in cols]]
    rows = []
    for m in result.matches:
        cap = m.capability
        values = {**base, "rank": m.rank, "capability_id": cap["id"], "capability_title": cap["title"],
                  "organization": cap.get("organization"),
                  "org_type": ORG_TYPE_NAMES.get(cap.get("org_type") or "", cap.get("org_type")),
                  "capability_region": cap.get("region"), "score": round(m.score, 4),
                  "strength": strength(m.score), "shared_terms": "、".join(m.shared_terms),
                  "summary": m.summary, "capability_contact": cap.get("contact")}
        rows.append([values.get(c.key) for c in cols])
    return rows


_CONTROL = re.compile(r"[\x00-\x08\x0b\x0c\x0e-\x1f]")


def clean_text(value: Any) -> Any:
    """Control characters are invalid in XML (XLSX, HTML) and useless in CSV."""
    return _CONTROL.sub("", value) if isinstance(value, str) else value
