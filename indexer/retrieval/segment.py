"""One immutable, searchable part of an index for one record kind.

A served index is a base segment (built in full, loaded from a version folder) plus a
small delta segment of records changed since, rebuilt on every refresh. Segments never
change after they are built, so a query can keep using the one it started with while a
refresh or a rebuild swaps in new ones.
"""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from indexer.retrieval.dense import DenseIndex, create_dense_index
from indexer.retrieval.documents import IndexDoc
from indexer.retrieval.keyterms import KeyTerms
from indexer.retrieval.lexical import BM25Index
from models.fsutil import fsync_path

NEED_STATUSES = ("open", "matching", "closed", "withdrawn")
ORG_TYPES = ("enterprise", "university", "institute", "service", "other")


@dataclass
class Filters:
    """Filter values; an empty list means no constraint on that field."""

    domain: list[str]
    region: list[str]
    org_type: list[str]
    status: list[str]


@dataclass
class Segment:
    kind: str
    domain_codes: list[str]
    ids: list[str]
    domain_mask: np.ndarray  # (n, n_domains) bool
    regions: list[str]  # vocabulary of region codes
    region: np.ndarray  # (n,) int32 index into regions, -1 none
    status: np.ndarray  # (n,) int8 index into NEED_STATUSES, -1 n/a
    org_type: np.ndarray  # (n,) int8 index into ORG_TYPES, -1 n/a
    restricted: np.ndarray  # (n,) bool
    doc_vectors: np.ndarray  # (n, d) passage-role embedding of the whole text
    passage_vectors: np.ndarray  # (p, d)
    passage_offsets: np.ndarray  # (n+1,) rows' passage ranges
    passages: list[str]
    tokens: list[list[str]]  # kept so a merge can rebuild the lexical index without jieba
    dense: DenseIndex
    lexical: BM25Index
    own_query_vectors: np.ndarray | None = None  # (n, d) query-role embeddings, needs only
    # Rows whose domains were predicted by the classifier rather than given by the client.
    domain_predicted: np.ndarray | None = None  # (n,) bool
    # None only for versions written before key terms were stored: explained per request then.
    key_terms: KeyTerms | None = None
    # Per row, IndexDoc.extra (what the case library reads); None in versions written before it.
    extra: list[dict] | None = None

    def __post_init__(self) -> None:
        if self.domain_predicted is None:
            self.domain_predicted = np.zeros(len(self.ids), dtype=bool)
        self.row_of = {rid: i for i, rid in enumerate(self.ids)}

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def query_vectors(self) -> np.ndarray:
        """Vectors used when a record is itself the query (matching by id).

        Needs have their own query-role embeddings (short texts rank better that way);
        for capabilities, long and descriptive, the document vectors serve: a separate
        query-role embedding scored within noise of them on the demo labels and would
        double the embedding cost (docs/quality.md).
        """
        return self.doc_vectors if self.own_query_vectors is None else self.own_query_vectors

    # ---- building -------------------------------------------------------------------
    @classmethod
    def build(cls, kind: str, docs: list[IndexDoc], domain_codes: list[str], *,
              doc_vectors: np.ndarray, passage_vectors: np.ndarray,
              query_vectors: np.ndarray | None = None,
              passage_offsets: np.ndarray, tokens: list[list[str]],
              reference: "Segment | None" = None, dense_kind: str = "auto",
              key_terms: list[list[tuple[str, float]]] | None = None) -> "Segment":
        n = len(docs)
        dim = doc_vectors.shape[1] if doc_vectors.ndim == 2 and doc_vectors.shape[1] else 384
        code_pos = {c: i for i, c in enumerate(domain_codes)}
        mask = np.zeros((n, len(domain_codes)), dtype=bool)
        for i, d in enumerate(docs):
            for code in d.domains:
                if code in code_pos:
                    mask[i, code_pos[code]] = True
        regions = sorted({d.region for d in docs if d.region})
        region_pos = {r: i for i, r in enumerate(regions)}
        dense = create_dense_index(n, dim, kind=dense_kind if n else "flat")
        if n:
            dense.build(doc_vectors, np.arange(n, dtype=np.int64))
        return cls(
            kind=kind, domain_codes=list(domain_codes), ids=[d.id for d in docs], domain_mask=mask,
            regions=regions,
            region=np.array([region_pos.get(d.region, -1) for d in docs], dtype=np.int32),
            status=np.array([NEED_STATUSES.index(d.status) if d.status in NEED_STATUSES else -1
                             for d in docs], dtype=np.int8),
            org_type=np.array([ORG_TYPES.index(d.org_type) if d.org_type in ORG_TYPES else -1
                               for d in docs], dtype=np.int8),
            restricted=np.array([d.restricted for d in docs], dtype=bool),
            domain_predicted=np.array([d.domain_predicted for d in docs], dtype=bool),
            doc_vectors=doc_vectors.astype(np.float32, copy=False).reshape(n, dim),
            passage_vectors=passage_vectors.astype(np.float32, copy=False).reshape(-1, dim),
            passage_offsets=passage_offsets.astype(np.int64),
            passages=[p for d in docs for p in d.passages],
            tokens=tokens,
            dense=dense,
            own_query_vectors=None if query_vectors is None
            else query_vectors.astype(np.float32, copy=False).reshape(n, dim),
            lexical=BM25Index.build(tokens, reference=reference.lexical if reference else None),
            key_terms=KeyTerms.build(key_terms) if key_terms is not None and len(key_terms) == n else None,
            extra=[d.extra for d in docs],
        )

    @classmethod
    def merge(cls, base: "Segment", keep: np.ndarray, delta: "Segment",
              dense_kind: str = "auto") -> "Segment":
        """The rows of `base` where `keep` is true followed by every row of `delta`.

        Used to fold the live delta into a new version without re-embedding anything.
        """
        rows = np.flatnonzero(keep)
        regions = sorted(set(base.regions) | set(delta.regions))
        pos = {r: i for i, r in enumerate(regions)}

        def remap(seg: Segment, codes: np.ndarray) -> np.ndarray:
            table = np.array([pos[r] for r in seg.regions] + [-1], dtype=np.int32)
            return table[codes]  # -1 indexes the trailing "none" entry

        passages, offsets, pvecs = [], [0], []
        for seg, seg_rows in ((base, rows), (delta, np.arange(len(delta)))):
            for r in seg_rows:
                a, b = seg.passage_range(int(r))
                passages.extend(seg.passages[a:b])
                pvecs.append(seg.passage_vectors[a:b])
                offsets.append(offsets[-1] + (b - a))
        doc_vectors = np.vstack([base.doc_vectors[rows], delta.doc_vectors])
        n = len(doc_vectors)
        dense = create_dense_index(n, doc_vectors.shape[1], kind=dense_kind if n else "flat")
        if n:
            dense.build(doc_vectors, np.arange(n, dtype=np.int64))
        tokens = [base.tokens[r] for r in rows] + delta.tokens
        dim = doc_vectors.shape[1]
        key_terms = None
        if base.key_terms is not None and delta.key_terms is not None:
            key_terms = KeyTerms.concat([(base.key_terms, rows), (delta.key_terms, np.arange(len(delta)))])
        own_query = None
        if base.own_query_vectors is not None or delta.own_query_vectors is not None:
            own_query = np.vstack([base.query_vectors[rows], delta.query_vectors])
        return cls(
            kind=base.kind, domain_codes=base.domain_codes,
            ids=[base.ids[r] for r in rows] + delta.ids,
            domain_mask=np.vstack([base.domain_mask[rows], delta.domain_mask]),
            regions=regions,
            region=np.concatenate([remap(base, base.region[rows]), remap(delta, delta.region)]),
            status=np.concatenate([base.status[rows], delta.status]),
            org_type=np.concatenate([base.org_type[rows], delta.org_type]),
            restricted=np.concatenate([base.restricted[rows], delta.restricted]),
            domain_predicted=np.concatenate([base.domain_predicted[rows], delta.domain_predicted]),
            doc_vectors=doc_vectors,
            passage_vectors=np.vstack(pvecs) if pvecs else np.zeros((0, dim), np.float32),
            passage_offsets=np.array(offsets, dtype=np.int64), passages=passages, tokens=tokens,
            dense=dense, lexical=BM25Index.build(tokens),
            own_query_vectors=own_query, key_terms=key_terms,
            extra=None if base.extra is None or delta.extra is None
            else [base.extra[r] for r in rows] + delta.extra,
        )

    # ---- filtering ------------------------------------------------------------------
    def allowed(self, filters: Filters | None, *, include_restricted: bool,
                excluded_rows: np.ndarray | None = None,
                default_statuses: tuple[str, ...] | None = None) -> np.ndarray:
        """Boolean mask of rows a caller may see under the filters."""
        ok = np.ones(len(self), dtype=bool)
        if not include_restricted:
            ok &= ~self.restricted
        if filters is not None:
            if filters.domain:
                cols = [self.domain_codes.index(c) for c in filters.domain if c in self.domain_codes]
                ok &= self.domain_mask[:, cols].any(axis=1) if cols else False
            if filters.region:
                codes = [self.regions.index(r) for r in filters.region if r in self.regions]
                ok &= np.isin(self.region, codes)
            if filters.org_type:
                ok &= np.isin(self.org_type, [ORG_TYPES.index(o) for o in filters.org_type])
            statuses = filters.status or list(default_statuses or ())
        else:
            statuses = list(default_statuses or ())
        if statuses:
            ok &= np.isin(self.status, [NEED_STATUSES.index(s) for s in statuses])
        if excluded_rows is not None and len(excluded_rows):
            ok[excluded_rows] = False
        return ok

    def passage_range(self, row: int) -> tuple[int, int]:
        return int(self.passage_offsets[row]), int(self.passage_offsets[row + 1])

    def domains_of(self, row: int) -> list[str]:
        return [self.domain_codes[j] for j in np.flatnonzero(self.domain_mask[row])]

    def key_terms_of(self, row: int, top_k: int) -> dict[str, float] | None:
        return None if self.key_terms is None else self.key_terms.of(row, top_k)

    def extra_of(self, row: int) -> dict:
        return {} if self.extra is None else self.extra[row]

    def given_domains_of(self, row: int) -> list[str]:
        """Domains the client gave (none when they were predicted): what ranking may rely on."""
        return [] if self.domain_predicted[row] else self.domains_of(row)

    # ---- persistence ----------------------------------------------------------------
    def save(self, folder: Path) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        np.savez(folder / "fields.npz", domain_mask=self.domain_mask, region=self.region,
                 status=self.status, org_type=self.org_type, restricted=self.restricted,
                 domain_predicted=self.domain_predicted,
                 passage_offsets=self.passage_offsets)
        np.save(folder / "doc_vectors.npy", self.doc_vectors)
        np.save(folder / "passage_vectors.npy", self.passage_vectors)
        if self.own_query_vectors is not None:
            np.save(folder / "query_vectors.npy", self.own_query_vectors)
        (folder / "records.json").write_text(json.dumps(
            {"kind": self.kind, "domain_codes": self.domain_codes, "ids": self.ids,
             "regions": self.regions, "passages": self.passages, "tokens": self.tokens,
             "extra": self.extra},
            ensure_ascii=False), encoding="utf-8")
        self.dense.save(folder / "dense")
        self.lexical.save(folder / "lexical")
        if self.key_terms is not None:
            self.key_terms.save(folder)
        # numpy & co. do not fsync; versions.py fsyncs the folders
        for path in folder.rglob("*"):
            if path.is_file():
                fsync_path(path)

    @classmethod
    def load(cls, folder: Path) -> "Segment":
        meta = json.loads((folder / "records.json").read_text(encoding="utf-8"))
        fields = np.load(folder / "fields.npz")
        return cls(
            kind=meta["kind"], domain_codes=meta["domain_codes"], ids=meta["ids"],
            domain_mask=fields["domain_mask"], regions=meta["regions"], region=fields["region"],
            status=fields["status"], org_type=fields["org_type"], restricted=fields["restricted"],
            domain_predicted=fields["domain_predicted"] if "domain_predicted" in fields.files else None,
            doc_vectors=np.load(folder / "doc_vectors.npy"),
            passage_vectors=np.load(folder / "passage_vectors.npy"),
            passage_offsets=fields["passage_offsets"], passages=meta["passages"], tokens=meta["tokens"],
            dense=DenseIndex.load(folder / "dense"), lexical=BM25Index.load(folder / "lexical"),
            own_query_vectors=np.load(folder / "query_vectors.npy")
            if (folder / "query_vectors.npy").exists() else None,
            key_terms=KeyTerms.load(folder), extra=meta.get("extra"),
        )
