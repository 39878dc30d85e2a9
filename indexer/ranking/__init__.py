"""Ranking: candidates from a snapshot, one calibrated score each, and why.

Owns the hybrid score and its shipped weights (hybrid, ranking_weights.json), matching by id
and free-text search (matching), explanations (explain), and offline evaluation and weight
fitting on graded labels (evaluation).

May import: `indexer.retrieval`, `models` and itself. Never `indexer.adaptation` or `service`.
"""
