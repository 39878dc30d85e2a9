"""Adaptation: fine-tune the encoder on the deployment's corpus and feedback, safely.

Owns one adaptation run and rollback (adapt), training pairs and held-out sets (data), the
training child process (train, run as `python -m indexer.adaptation.train`), the guard that
scores candidate against serving encoder (evaluate), and the ranking weights refitted for an
adapted encoder (weights).

May import: `indexer.retrieval`, `indexer.ranking`, `models` and itself. Never `service`.
"""
