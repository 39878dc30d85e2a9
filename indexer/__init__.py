"""The search core: indexing records, ranking and explaining matches, adapting the encoder.

Three sub-packages by concern, each importing only those above it in this list (and `models`),
never `service`; tests/test_layout.py checks it:

  retrieval   records → documents → embeddings, FAISS (dense) and BM25 (lexical) indexes,
              segments, index versions on disk, and the served engine (snapshot + refresher);
              also what is computed at index time: tokenisation, key terms, predicted domains.
  ranking     one calibrated score per candidate from a snapshot's signals (hybrid), matching
              by id and free-text search, explanations, and offline evaluation / weight fitting.
  adaptation  fine-tuning the encoder on the corpus and feedback, the guard that judges it,
              and committing or rolling back a model version.
"""
