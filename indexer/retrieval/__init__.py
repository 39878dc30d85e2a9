"""Retrieval: from stored records to a served, searchable index.

Owns the document view of a record (documents), text processing (text), the encoders and
embedding cache (embedding), the dense and lexical indexes (dense, lexical), key terms and
predicted domains computed at index time (keyterms, classify), immutable segments (segment),
index versions on disk (versions), building them (builder) and serving them (engine).

May import: `models` and itself. Never `indexer.ranking`, `indexer.adaptation` or `service`.
"""
