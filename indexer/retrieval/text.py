"""Chinese text processing for scenario needs and enterprise capabilities.

One tokenizer serves both sides so that BM25 statistics, key-term explanations
and evidence passages all see the same words. Domain vocabulary from the policy
taxonomy (data/seed/taxonomy.json) is added to a private jieba dictionary so
terms such as 数字孪生流域 or 人形机器人 are not cut into generic pieces.
"""

from __future__ import annotations

import json
import logging
import math
import re
import threading
import unicodedata
from collections import Counter
from pathlib import Path
from typing import Iterable, Mapping

import jieba

SEED_DIR = Path(__file__).resolve().parents[2] / "data" / "seed"

# jieba logs every dictionary load at DEBUG to stderr; that is noise in a service.
jieba.setLogLevel(logging.WARNING)

# Taxonomy terms get at least this frequency (jieba's total is ~6e7; common
# words are 1e4..1e5) so they win against splits in context, while a wrong
# merge across a word boundary still costs an extra single-character token.
TERM_FREQ = 20_000

_HAS_WORD = re.compile(r"[^\W_]")
_NUMBER = re.compile(r"^[\d.,:/%+\-]+$")
_SINGLE_ASCII = re.compile(r"^[a-z]$")

# Sentence ends: Chinese/ASCII terminators (plus trailing closing quotes), newlines,
# and an ASCII full stop when used as a Chinese period (after a CJK char or before space).
_SENT_END = re.compile(
    r"[。！？；!?;]+[”’」』）)\]】]*"
    r"|(?<=[\u3400-\u9fff）)])\.(?!\d)"
    r"|\.(?=\s)"
    r"|\n+"
)
# Numbered-item markers that start a new clause: (一) （1） 一、 1、 1. 1) ① 二是.
_ITEM = re.compile(
    r"(?:^|(?<=[\s，,：:；;。]))"
    r"(?:[（(][一二三四五六七八九十\d]{1,3}[）)]"
    r"|[一二三四五六七八九十]{1,3}、"
    r"|\d{1,2}[、)）]"
    r"|\d{1,2}\.(?!\d)"
    r"|[一二三四五六七八九十]{1,2}是)"
    r"|[①-⑳]"
)
_OPENERS = "(（《“‘「『[【〔"
_CLAUSE = re.compile(r"(?<=[，,、：:])")


def normalize(text: str) -> str:
    """NFKC (full-width → half-width) and lowercase, so ＡＩ, AI and ai match."""
    return unicodedata.normalize("NFKC", text).lower()


def load_taxonomy(seed_dir: str | Path | None = None) -> dict:
    """The policy taxonomy: 5 categories, 20 domains with key terms and synonyms."""
    path = Path(seed_dir or SEED_DIR) / "taxonomy.json"
    return json.loads(path.read_text(encoding="utf-8"))


def load_wordlist(path: str | Path) -> set[str]:
    """One normalised entry per line; blank lines skipped ('#' is a real entry)."""
    lines = Path(path).read_text(encoding="utf-8").splitlines()
    return {normalize(w.strip()) for w in lines if w.strip()}


def synonym_map(taxonomy: dict) -> dict[str, tuple[str, ...]]:
    """variant → canonical term(s), normalised. A variant may serve several heads (双碳)."""
    out: dict[str, set[str]] = {}
    for d in taxonomy["domains"]:
        for head, variants in d.get("synonyms", {}).items():
            h = normalize(head)
            for v in variants:
                v = normalize(v)
                if v != h:
                    out.setdefault(v, set()).add(h)
    return {v: tuple(sorted(hs)) for v, hs in out.items()}


_default_synonyms: dict[str, tuple[str, ...]] | None = None


def expand_synonyms(tokens: Iterable[str], synonyms: Mapping[str, tuple[str, ...]] | None = None) -> list[str]:
    """Append the canonical term after each variant token (UAV → 无人机).

    Mapping both sides onto canonical heads makes matching symmetric without
    multiplying every canonical term into all of its variants.
    """
    global _default_synonyms
    if synonyms is None:
        if _default_synonyms is None:  # racing threads build the same map: harmless
            _default_synonyms = synonym_map(load_taxonomy())
        synonyms = _default_synonyms
    return [x for t in tokens for x in (t, *synonyms.get(t, ()))]


_base_lock = threading.Lock()
_base_jieba: jieba.Tokenizer | None = None


def _private_jieba() -> jieba.Tokenizer:
    """A fresh, initialised jieba.Tokenizer that shares nothing mutable with others.

    Loading jieba's dictionary takes ~1 s, so it is loaded once per process and
    each tokenizer gets its own copy of the frequency table (~50 ms) to extend.
    """
    global _base_jieba
    with _base_lock:
        if _base_jieba is None:
            base = jieba.Tokenizer()
            base.initialize()
            _base_jieba = base
        tk = jieba.Tokenizer()
        tk.FREQ, tk.total = dict(_base_jieba.FREQ), _base_jieba.total
        tk.initialized = True
        return tk


_idf_lock = threading.Lock()
_jieba_idf: tuple[dict[str, float], float] | None = None


def _general_idf() -> tuple[dict[str, float], float]:
    """jieba's bundled general-Chinese IDF table and its median (for unknown words)."""
    global _jieba_idf
    with _idf_lock:
        if _jieba_idf is None:
            path = Path(jieba.__file__).parent / "analyse" / "idf.txt"
            table: dict[str, float] = {}
            for line in path.read_text(encoding="utf-8").splitlines():
                word, _, val = line.rpartition(" ")
                if word:
                    table[word] = float(val)
            vals = sorted(table.values())
            _jieba_idf = (table, vals[len(vals) // 2])
        return _jieba_idf


class ChineseTokenizer:
    """Taxonomy-aware jieba tokenizer with stopword/generic-term handling.

    The jieba instance is private and fully initialised in ``__init__``; after
    that it is only read, so one tokenizer can be shared across threads.
    Defaults were chosen on the CSL title→abstract benchmark (benchmarks/lexical.py):
    search mode with single characters kept scored best; the taxonomy dictionary
    and synonym expansion are neutral there and kept/offered for policy vocabulary.
    """

    def __init__(
        self,
        seed_dir: str | Path | None = None,
        *,
        mode: str = "search",
        keep_single_chars: bool = True,
        use_taxonomy: bool = True,
        hmm: bool = True,
        synonyms: bool = False,
    ) -> None:
        if mode not in ("search", "precise"):
            raise ValueError("mode must be 'search' or 'precise'")
        seed = Path(seed_dir) if seed_dir else SEED_DIR
        self.mode, self.keep_single_chars, self.hmm = mode, keep_single_chars, hmm
        self.use_synonyms = synonyms
        self.taxonomy = load_taxonomy(seed)
        self.stopwords = load_wordlist(seed / "stopwords.txt")
        self.generic_terms = load_wordlist(seed / "generic_terms.txt")
        self.synonyms = synonym_map(self.taxonomy)
        terms: set[str] = set()
        for d in self.taxonomy["domains"]:
            terms.update(normalize(t) for t in d["key_terms"])
            for head, variants in d.get("synonyms", {}).items():
                terms.add(normalize(head))
                terms.update(normalize(v) for v in variants)
        # Terms with spaces can never be one jieba token; keep the rest.
        self.domain_terms = frozenset(t for t in terms if t and not t.isspace() and " " not in t)
        # Long terms are also emitted when found inside a longer word (search mode
        # only adds 2/3-gram parts, which would miss e.g. 数字孪生 in 数字孪生流域).
        long_terms = (t for t in self.domain_terms if len(t) >= 4 and use_taxonomy)
        self._long_terms = sorted(long_terms, key=len)
        self._jieba = _private_jieba()
        if use_taxonomy:
            for t in sorted(self.domain_terms):
                freq = max(self._jieba.suggest_freq(t), self._jieba.FREQ.get(t, 0), TERM_FREQ)
                self._jieba.add_word(t, freq=freq)

    # -- tokens ---------------------------------------------------------------

    def _keep(self, tok: str, single_chars: bool) -> bool:
        if tok in self.domain_terms:  # policy vocabulary wins over stopword lists (ETC, ITS)
            return True
        if not tok or tok in self.stopwords or not _HAS_WORD.search(tok):
            return False
        if _NUMBER.match(tok) or _SINGLE_ASCII.match(tok):
            return False
        if len(tok) == 1 and not single_chars:
            return False
        return True

    def _words(self, norm: str, search: bool) -> list[str]:
        """jieba words of normalised text; in search mode also their dictionary parts."""
        words = [w.strip() for w in self._jieba.cut(norm, HMM=self.hmm)]
        if not search:
            return words
        freq = self._jieba.FREQ
        out: list[str] = []
        for w in words:
            n = len(w)
            if n > 2:
                out.extend(w[i:i + 2] for i in range(n - 1) if freq.get(w[i:i + 2]))
            if n > 3:
                out.extend(w[i:i + 3] for i in range(n - 2) if freq.get(w[i:i + 3]))
                for t in self._long_terms:
                    if len(t) >= n:
                        break
                    if t in w:
                        out.append(t)
            out.append(w)
        return out

    def tokens(self, text: str) -> list[str]:
        """BM25 tokens: normalised words (plus sub-words in search mode), filtered."""
        if not text:
            return []
        words = self._words(normalize(text), self.mode == "search")
        toks = [w for w in words if self._keep(w, self.keep_single_chars)]
        return self.expand(toks) if self.use_synonyms else toks

    def expand(self, tokens: Iterable[str]) -> list[str]:
        """Synonym expansion with this tokenizer's taxonomy (see expand_synonyms)."""
        return expand_synonyms(tokens, self.synonyms)

    def is_generic(self, term: str) -> bool:
        """True for genre words (系统, 平台, 赋能...) that are weak evidence of a match."""
        return normalize(term) in self.generic_terms

    def is_domain_term(self, term: str) -> bool:
        """True for taxonomy key terms and synonyms (strong evidence in explanations)."""
        return normalize(term) in self.domain_terms

    def key_terms(
        self,
        text: str,
        top_k: int = 20,
        idf: Mapping[str, float] | None = None,
        generic_weight: float = 0.1,
    ) -> list[tuple[str, float]]:
        """Content words ranked by tf·idf, for explanations.

        Whole words only (no search-mode fragments), no single characters.
        ``idf`` may come from the corpus (e.g. a BM25Index); otherwise jieba's
        general-Chinese table is used. Taxonomy terms are boosted because they
        are what a reader recognises; generic terms are multiplied by
        ``generic_weight`` so they only surface when nothing better exists.
        Weights are scaled so the best term is 1.0.
        """
        if not text:
            return []
        words = [w for w in self._words(normalize(text), search=False) if self._keep(w, False)]
        if not words:
            return []
        tf = Counter(words)
        if idf is None:
            table, default = _general_idf()
        else:
            table, default = idf, max(idf.values(), default=1.0)
        scored = {}
        for w, n in tf.items():
            weight = (1.0 + math.log(n)) * table.get(w, default)
            if w in self.domain_terms:
                weight *= 1.5
            if w in self.generic_terms:
                weight *= generic_weight
            scored[w] = weight
        # Ties (common for words unknown to the IDF table) go to the longer, more specific term.
        ranked = sorted(scored.items(), key=lambda kv: (-kv[1], -len(kv[0]), kv[0]))[:top_k]
        top = ranked[0][1] or 1.0
        return [(w, s / top) for w, s in ranked]

    # -- sentences and passages ----------------------------------------------

    def sentences(self, text: str, min_chars: int = 12) -> list[str]:
        """Split into sentences/clauses on 。！？；\\n and numbered items.

        Pieces shorter than ``min_chars`` (bare markers, tiny headings) are merged
        into the next piece so evidence snippets stay readable. Original text is
        kept (no normalisation) because these strings are shown to users.
        """
        if not text:
            return []
        pieces: list[str] = []
        start = 0
        for m in _SENT_END.finditer(text):
            pieces.append(text[start:m.end()])
            start = m.end()
        pieces.append(text[start:])
        split: list[str] = []
        for p in pieces:
            cuts = [m.start() for m in _ITEM.finditer(p) if p[:m.start()].strip()]
            for a, b in zip([0, *cuts], [*cuts, len(p)]):
                split.append(p[a:b])
        out: list[str] = []
        carry = ""
        for p in split:
            p = _join(carry, p.strip()) if carry else p.strip()
            if not p:
                continue
            if len(p) < min_chars:
                carry = p
                continue
            carry = ""
            out.append(p)
        if carry:
            if out:
                out[-1] = _join(out[-1], carry)
            else:
                out.append(carry)
        return out

    def passages(self, text: str, max_chars: int = 220, overlap_sentences: int = 1) -> list[str]:
        """Chunk text into passages of at most ``max_chars`` on sentence boundaries.

        Consecutive passages share up to ``overlap_sentences`` sentences so a fact
        spanning a boundary is still found whole. A sentence longer than
        ``max_chars`` is split on clause punctuation, then hard-cut.
        """
        sents: list[str] = []
        for s in self.sentences(text):
            sents.extend(_split_long(s, max_chars) if len(s) > max_chars else [s])
        out: list[str] = []
        i = 0
        while i < len(sents):
            cur, j = sents[i], i + 1
            while j < len(sents) and len(_join(cur, sents[j])) <= max_chars:
                cur, j = _join(cur, sents[j]), j + 1
            out.append(cur)
            if j >= len(sents):
                break
            # Step back for overlap, but always make progress and keep the next
            # passage able to take at least one new sentence.
            start = max(i + 1, j - overlap_sentences)
            while start < j and len(_join("".join(sents[start:j]), sents[j])) > max_chars:
                start += 1
            i = start
        return out


def _join(a: str, b: str) -> str:
    """Concatenate pieces; a space only where no punctuation separates two words.

    Chinese sentences end in punctuation and join directly; a heading line
    (no final punctuation) or ASCII words keep a visible break.
    """
    if a and b and _HAS_WORD.match(a[-1]) and (_HAS_WORD.match(b[0]) or b[0] in _OPENERS):
        return a + " " + b
    return a + b


def _split_long(sentence: str, max_chars: int) -> list[str]:
    """Split an over-long sentence on clause punctuation, hard-cutting what remains."""
    parts = [p for p in _CLAUSE.split(sentence) if p]
    out: list[str] = []
    cur = ""
    for p in parts:
        while len(p) > max_chars:
            if cur:
                out.append(cur)
                cur = ""
            out.append(p[:max_chars])
            p = p[max_chars:]
        if len(cur) + len(p) <= max_chars:
            cur += p
        else:
            out.append(cur)
            cur = p
    if cur:
        out.append(cur)
    return out


_default_lock = threading.Lock()
_default: ChineseTokenizer | None = None


def get_tokenizer() -> ChineseTokenizer:
    """Process-wide default tokenizer (building one loads jieba's dictionary, ~1 s)."""
    global _default
    with _default_lock:
        if _default is None:
            _default = ChineseTokenizer()
        return _default
