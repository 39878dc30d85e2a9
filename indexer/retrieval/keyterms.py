"""Each record's key terms, extracted once at index time for explanations.

Explaining a match needs the key terms of both records; extracting them with jieba at
query time was the largest step of a match-by-id request (docs/benchmarks.md "Query
latency"). They are computed where the BM25 tokens are (beside the encoder, in the
tokenization thread) and kept compactly: one vocabulary plus CSR arrays, so 100k records
with 80 terms each cost about 64 MB of numpy memory and no Python object per term.
"""
from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

# Explanations compare the query's 40 best terms with the match's 80 best (indexer/ranking/explain.py);
# a record can be either side, so 80 are kept and the query side uses a prefix.
TOP_K = 80
FILES = ("key_terms.npz", "key_terms_vocab.json")


def extract(tokenizer: Any, text: str) -> list[tuple[str, float]]:
    return tokenizer.key_terms(text, top_k=TOP_K)


@dataclass
class KeyTerms:
    vocab: list[str]
    offsets: np.ndarray  # (n+1,) int64
    term_ids: np.ndarray  # (m,) int32 into vocab
    weights: np.ndarray  # (m,) float32, best first within a row

    @classmethod
    def build(cls, per_row: Sequence[Sequence[tuple[str, float]]]) -> "KeyTerms":
        position: dict[str, int] = {}
        ids, weights, offsets = [], [], [0]
        for terms in per_row:
            for term, weight in terms:
                ids.append(position.setdefault(term, len(position)))
                weights.append(weight)
            offsets.append(len(ids))
        return cls(list(position), np.array(offsets, dtype=np.int64), np.array(ids, dtype=np.int32),
                   np.array(weights, dtype=np.float32))

    @classmethod
    def empty(cls, n: int = 0) -> "KeyTerms":
        return cls.build([[] for _ in range(n)])

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def of(self, row: int, top_k: int = TOP_K) -> dict[str, float]:
        a, b = int(self.offsets[row]), int(self.offsets[row + 1])
        b = min(b, a + top_k)
        # Every explained hit reads a row: tolist() converts it in one call rather than 2×80
        # numpy scalars one by one (the same Python ints and floats as int() and float()).
        return dict(zip(map(self.vocab.__getitem__, self.term_ids[a:b].tolist()), self.weights[a:b].tolist()))

    def rows(self, rows: np.ndarray) -> list[list[tuple[str, float]]]:
        return [list(self.of(int(r)).items()) for r in rows]

    @classmethod
    def concat(cls, parts: Sequence[tuple["KeyTerms", np.ndarray]]) -> "KeyTerms":
        """The chosen rows of each part, in order (used when folding a delta into a new base)."""
        return cls.build([terms for kt, rows in parts for terms in kt.rows(rows)])

    def save(self, folder: Path) -> None:
        np.savez(folder / FILES[0], offsets=self.offsets, term_ids=self.term_ids, weights=self.weights)
        (folder / FILES[1]).write_text(json.dumps(self.vocab, ensure_ascii=False), encoding="utf-8")

    @classmethod
    def load(cls, folder: Path) -> "KeyTerms | None":
        """None for an index version written before key terms were stored (computed per request)."""
        if not all((folder / f).exists() for f in FILES):
            return None
        arrays = np.load(folder / FILES[0])
        vocab = json.loads((folder / FILES[1]).read_text(encoding="utf-8"))
        return cls(vocab, arrays["offsets"], arrays["term_ids"], arrays["weights"])
