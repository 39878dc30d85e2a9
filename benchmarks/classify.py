"""Measure domain classification on the demo corpus, each component alone and combined.

    python -m benchmarks.classify [--holdout 0.3] [--seed 7] [--splits 5]
    python -m benchmarks.classify --realistic

`--realistic`: the realistic corpus's records classified as if sent without domains (no example of
their own), with the taxonomy alone and with the seed records as reference examples (the service's
indexer/retrieval/reference.py), the record's own id always left out.

A stratified part of the demo needs and capabilities (by their first domain) is held out
of the labelled examples and classified, over several random splits. The combination
weights are fitted on each split's training part only (5-fold cross-fitting: each
training record is scored by a classifier built from the other folds), so the held-out
figures never see their own labels. The same fit on the whole corpus, printed last, is
what indexer/retrieval/classify.py ships. A capability counts as right at top-1 when the top
domain is one of its domains. Prints Markdown. Not imported by the package.
"""
from __future__ import annotations

import argparse
import statistics
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
from scipy.optimize import minimize
from tqdm import tqdm

from indexer.retrieval import classify
from indexer.retrieval.classify import DomainClassifier, ExamplePart
from indexer.retrieval.documents import doc_from_row
from indexer.retrieval.embedding import CachedEncoder, EmbeddingCache, load_encoder
from indexer.retrieval.text import get_tokenizer
from models.taxonomy import default_taxonomy

FOLDS = 5
FITS = {"all": classify.FEATURES, "examples": ("knn", "centroid"), "zero_shot": ("prototype", "terms")}


def demo_docs() -> list:
    from service.demo import demo_records  # the validated demo corpus (bench only)

    tokenizer = get_tokenizer()
    needs, caps = demo_records()
    docs = []
    for kind, records in (("need", needs), ("capability", caps)):
        for r in records:
            row = SimpleNamespace(**{"cases": None, "status": "", "org_type": "", **r})
            docs.append(doc_from_row(kind, row, tokenizer))
    return docs


def stratified_holdout(docs: list, fraction: float, seed: int) -> np.ndarray:
    """Boolean mask of held-out docs: `fraction` of each (kind, first domain) group."""
    rng = np.random.default_rng(seed)
    groups: dict[tuple[str, str], list[int]] = {}
    for i, d in enumerate(docs):
        groups.setdefault((d.kind, d.domains[0]), []).append(i)
    held = np.zeros(len(docs), dtype=bool)
    for key in sorted(groups):
        idx = np.array(groups[key])
        rng.shuffle(idx)
        held[idx[:round(fraction * len(idx))]] = True
    return held


def label_matrix(docs: list, codes: list[str]) -> np.ndarray:
    y = np.zeros((len(docs), len(codes)), dtype=bool)
    for i, d in enumerate(docs):
        for c in d.domains:
            y[i, codes.index(c)] = True
    return y


def cross_fitted_components(encoder, tokenizer, taxonomy, vectors, y, tokens, train, seed):
    """Components of each training row from a classifier that never saw that row."""
    rows = np.flatnonzero(train)
    fold = np.random.default_rng(seed + 1).permutation(len(rows)) % FOLDS
    out: dict[str, np.ndarray] = {}
    for f in range(FOLDS):
        part, other = rows[fold == f], rows[fold != f]
        clf = DomainClassifier(encoder, tokenizer, taxonomy, ExamplePart(vectors[other], y[other]))
        comps = clf.components(vectors[part], tokens=[tokens[i] for i in part])
        for name, value in comps.items():
            out.setdefault(name, np.zeros((len(vectors), y.shape[1])))[part] = value
    return {k: v[rows] for k, v in out.items()}, y[rows]


def fit_weights(comps: dict[str, np.ndarray], y: np.ndarray, names: tuple[str, ...]) -> dict[str, float]:
    """Weights minimizing the cross-entropy of softmax(Σ w·feature) against the labels."""
    feats = np.stack([classify.feature(n, comps[n]) for n in names], axis=-1)
    target = y / y.sum(axis=1, keepdims=True)

    def loss(w: np.ndarray) -> tuple[float, np.ndarray]:
        z = feats @ w
        z -= z.max(axis=1, keepdims=True)
        p = np.exp(z)
        p /= p.sum(axis=1, keepdims=True)
        grad = np.einsum("nd,ndf->f", p - target, feats) / len(z)
        return float(-(target * np.log(p + 1e-12)).sum(axis=1).mean()), grad

    result = minimize(loss, np.ones(len(names)), jac=True, method="L-BFGS-B",
                      bounds=[(0, None)] * len(names))
    return {n: float(w) for n, w in zip(names, result.x)}


def accuracy(probs: np.ndarray, y: np.ndarray, mask: np.ndarray) -> tuple[float, float]:
    order = np.argsort(-probs[mask], axis=1, kind="stable")
    truth = y[mask]
    top1 = truth[np.arange(len(truth)), order[:, 0]]
    top3 = np.take_along_axis(truth, order[:, :3], axis=1).any(axis=1)
    return float(top1.mean()), float(top3.mean())


def set_scores(probs: np.ndarray, y: np.ndarray, codes: list[str], threshold: float) -> tuple[float, float, float]:
    """Mean precision, recall, F1 of the capability domain sets chosen with `threshold`."""
    p_list, r_list, f_list = [], [], []
    for i, ranked in enumerate(_ranked(probs, codes)):
        chosen = set(classify.chosen_domains("capability", ranked, threshold))
        truth = {codes[j] for j in np.flatnonzero(y[i])}
        hit = len(chosen & truth)
        p, r = hit / len(chosen), hit / len(truth)
        p_list.append(p)
        r_list.append(r)
        f_list.append(2 * p * r / (p + r) if hit else 0.0)
    return statistics.mean(p_list), statistics.mean(r_list), statistics.mean(f_list)


def _ranked(probs: np.ndarray, codes: list[str]) -> list[list[tuple[str, float]]]:
    order = np.argsort(-probs, axis=1)[:, :classify.MAX_DOMAINS]
    return [[(codes[j], float(probs[i, j])) for j in row] for i, row in enumerate(order)]


def one_hot_scores(raw: np.ndarray, seed: int) -> np.ndarray:
    # Ties (a text with no key term scores 0 everywhere) are broken at random, not by order.
    return raw + 1e-9 * np.random.default_rng(seed).random(raw.shape)


def evaluate_split(data: SimpleNamespace, fraction: float, seed: int) -> dict[str, tuple[float, ...]]:
    """Fit on one split's training part, score its held-out part: row name → figures."""
    held = stratified_holdout(data.docs, fraction, seed)
    train = ~held
    cv_comps, cv_y = cross_fitted_components(data.encoder, data.tokenizer, data.taxonomy,
                                             data.passages, data.y, data.tokens, train, seed)
    fitted = {name: fit_weights(cv_comps, cv_y, names) for name, names in FITS.items()}
    t0 = time.perf_counter()
    clf = DomainClassifier(data.encoder, data.tokenizer, data.taxonomy,
                           ExamplePart(data.passages[train], data.y[train]))
    build_ms = 1000 * (time.perf_counter() - t0)
    rows = np.flatnonzero(held)
    t0 = time.perf_counter()
    comps = clf.components(data.passages[held], texts=[data.texts[i] for i in rows])
    per_record_ms = 1000 * (time.perf_counter() - t0) / len(rows)
    q_comps = clf.components(data.queries[held], tokens=[data.tokens[i] for i in rows])
    scores = {
        "knn alone (k=20)": comps["knn"],
        "example centroids alone": comps["centroid"],
        "prototypes alone (name + description + key terms)": comps["prototype"],
        "key terms alone": one_hot_scores(comps["terms"], seed),
        "examples: knn + centroids": classify.combine(comps, fitted["examples"]),
        "zero-shot: prototypes + key terms": classify.combine(comps, fitted["zero_shot"]),
        "**combined** (all four)": classify.combine(comps, fitted["all"]),
        "combined, record embedded in query role": classify.combine(q_comps, fitted["all"]),
    }
    y, need = data.y[held], data.is_need[held]
    out = {name: (*accuracy(s, y, need), *accuracy(s, y, ~need)) for name, s in scores.items()}
    combined = scores["**combined** (all four)"][~need]
    out["sets"] = set_scores(combined, y[~need], data.codes, classify.EXTRA_DOMAIN_THRESHOLD)
    out["top1_sets"] = set_scores(combined, y[~need], data.codes, 1.01)
    out["speed"] = (build_ms, per_record_ms, float(train.sum()))
    out["counts"] = (float(len(rows)), float(need.sum()), float((~need).sum()))
    return out


def load_data(args: argparse.Namespace) -> SimpleNamespace:
    taxonomy, tokenizer = default_taxonomy(), get_tokenizer()
    encoder = CachedEncoder(load_encoder(args.model, args.cache_dir),
                            EmbeddingCache(args.cache_dir / "embeddings.sqlite"))
    docs = demo_docs()
    texts = [d.full_text for d in docs]
    with tqdm(total=2 * len(texts), desc="embedding demo corpus", unit="text") as bar:
        passages = encoder.encode_passages(texts, progress=lambda d, t: bar.update(d - bar.n))
        queries = np.vstack([encoder.encode_queries(texts[i:i + 256]) for i in range(0, len(texts), 256)])
        bar.update(bar.total - bar.n)
    tokens = [tokenizer.tokens(t) for t in tqdm(texts, desc="tokenizing", unit="text")]
    codes = list(taxonomy.domains)
    return SimpleNamespace(taxonomy=taxonomy, tokenizer=tokenizer, encoder=encoder, docs=docs,
                           texts=texts, passages=passages, queries=queries, tokens=tokens, codes=codes,
                           y=label_matrix(docs, codes), is_need=np.array([d.kind == "need" for d in docs]))


def shipped_constants(data: SimpleNamespace, seed: int) -> tuple[dict, dict, float, float]:
    """The same fit on the whole corpus: the weights and threshold classify.py ships."""
    everything = np.ones(len(data.docs), dtype=bool)
    comps, y = cross_fitted_components(data.encoder, data.tokenizer, data.taxonomy, data.passages,
                                       data.y, data.tokens, everything, seed)
    weights = fit_weights(comps, y, FITS["all"])
    zero = fit_weights(comps, y, FITS["zero_shot"])
    caps = ~data.is_need
    probs = classify.combine(comps, weights)
    thresholds = np.round(np.arange(0.1, 0.55, 0.05), 2)
    f1s = [set_scores(probs[caps], y[caps], data.codes, t)[2] for t in thresholds]
    return weights, zero, float(thresholds[int(np.argmax(f1s))]), max(f1s)


def realistic_report(args: argparse.Namespace) -> None:
    from indexer.retrieval.reference import SEED_RECORD_DIRS, ReferenceExamples
    from models.taxonomy import SEED_DIR
    from service.demo import REALISTIC_DIR, demo_records, gold_domains  # bench only

    taxonomy, tokenizer = default_taxonomy(), get_tokenizer()
    codes = list(taxonomy.domains)
    encoder = CachedEncoder(load_encoder(args.model, args.cache_dir),
                            EmbeddingCache(args.cache_dir / "embeddings.sqlite"))
    needs, caps = demo_records(REALISTIC_DIR)
    records = [("need", r) for r in needs] + [("capability", r) for r in caps]
    docs = [doc_from_row(kind, SimpleNamespace(**{"cases": None, "status": "", "org_type": "", **r,
                                                  "domain": None, "domains": []}), tokenizer)
            for kind, r in records]
    texts = [d.full_text for d in docs]
    vectors = encoder.encode_passages(texts)
    ids = [r["id"] for _, r in records]
    setups = {
        "taxonomy only (no examples)": None,
        "+ classic seed records (data/seed/demo) as examples": [SEED_DIR / "demo"],
        "+ all seed records but the record itself (what a deployment of other records has)": list(SEED_RECORD_DIRS),
    }
    print(f"Realistic corpus ({len(needs)} needs, {len(caps)} capabilities) classified as sent without domains; "
          f"model {encoder.name}.\n")
    print("| examples | needs top-1 | needs top-3 | capabilities top-1 | capabilities top-3 | all top-1 | all top-3 |")
    print("|---|---|---|---|---|---|---|")
    for name, folders in setups.items():
        ranked = []
        if folders is None:
            ranked = DomainClassifier(encoder, tokenizer, taxonomy).predict_vectors(vectors, texts)
        else:
            reference = ReferenceExamples(folders)
            for i in range(len(docs)):  # the record itself is never its own example
                part = ExamplePart(*reference.labelled(encoder, codes, exclude={ids[i]}))
                clf = DomainClassifier(encoder, tokenizer, taxonomy, [part])
                ranked += clf.predict_vectors(vectors[i:i + 1], texts[i:i + 1])
        cells = []
        for kinds in (("need",), ("capability",), ("need", "capability")):
            rows = [i for i, (k, _) in enumerate(records) if k in kinds]
            top1 = np.mean([ranked[i][0][0] in gold_domains(records[i][1]) for i in rows])
            top3 = np.mean([bool({c for c, _ in ranked[i][:3]} & set(gold_domains(records[i][1]))) for i in rows])
            cells += [f"{top1:.3f}", f"{top3:.3f}"]
        print(f"| {name} | " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(prog="python -m benchmarks.classify", description=__doc__.splitlines()[0])
    parser.add_argument("--holdout", type=float, default=0.3)
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--splits", type=int, default=5, help="random splits averaged (seed, seed+1, ...)")
    parser.add_argument("--model", default=None, help="embedding model (default: offline e5-small)")
    parser.add_argument("--cache-dir", type=Path, default=Path.home() / ".cache" / "scenematch")
    parser.add_argument("--realistic", action="store_true", help="the realistic corpus as sent without domains")
    args = parser.parse_args()
    if args.realistic:
        realistic_report(args)
        return

    data = load_data(args)
    seeds = [args.seed + i for i in range(args.splits)]
    results = [evaluate_split(data, args.holdout, s) for s in tqdm(seeds, desc="splits", unit="split")]
    mean = {k: np.mean([r[k] for r in results], axis=0) for k in results[0]}
    spread = {k: np.std([r[k] for r in results], axis=0) for k in results[0]}
    total, n_needs, n_caps = mean["counts"]
    print(f"Demo corpus, {args.holdout:.0%} of the needs and of the capabilities held out per first "
          f"domain ({n_needs:.0f} needs, {n_caps:.0f} capabilities per split); the rest are the labelled "
          f"examples. Mean of {len(seeds)} random splits (seeds {seeds[0]}–{seeds[-1]}), ± the standard "
          f"deviation across splits for the combined row. Weights fitted on each split's training part "
          f"only. Model: {data.encoder.name}.\n")
    print("| classifier | needs top-1 | needs top-3 | capabilities top-1 | capabilities top-3 |")
    print("|---|---|---|---|---|")
    for name in results[0]:
        if name in ("sets", "top1_sets", "speed", "counts"):
            continue
        m, sd = mean[name], spread[name]
        cells = [f"{v:.3f}" + (f" ± {s:.3f}" if name.startswith("**") else "") for v, s in zip(m, sd)]
        print(f"| {name} | " + " | ".join(cells) + " |")
    p, r, f = mean["sets"]
    print(f"\nCapability domain sets (top-1 plus any other domain with probability ≥ "
          f"{classify.EXTRA_DOMAIN_THRESHOLD}): precision {p:.3f}, recall {r:.3f}, F1 {f:.3f} "
          f"(top-1 only: F1 {mean['top1_sets'][2]:.3f}).")
    build_ms, per_record_ms, n_train = mean["speed"]
    print(f"\nSpeed: building the classifier from {n_train:.0f} examples {build_ms:.1f} ms; scoring "
          f"{per_record_ms:.2f} ms per record (tokenizing included, encoding excluded).")
    weights, zero, threshold, best_f1 = shipped_constants(data, args.seed)
    print("\nFitted on the whole corpus (5-fold cross-fitting), shipped in indexer/retrieval/classify.py:")
    print(f"- WEIGHTS = {_fmt(weights)}")
    print(f"- ZERO_SHOT_WEIGHTS = {_fmt(zero)}")
    print(f"- EXTRA_DOMAIN_THRESHOLD = {threshold} (mean F1 of capability domain sets {best_f1:.3f})")
    drift = max(abs(weights[n] - classify.WEIGHTS[n]) / max(weights[n], 1e-6) for n in classify.FEATURES)
    if drift > 0.05:
        print(f"\n(classify.WEIGHTS differ from this fit by up to {drift:.0%}: update them.)")


def _fmt(weights: dict[str, float]) -> str:
    full = {n: round(weights.get(n, 0.0), 2) for n in classify.FEATURES}
    return "{" + ", ".join(f'"{k}": {v}' for k, v in full.items()) + "}"


if __name__ == "__main__":
    main()
