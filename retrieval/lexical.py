"""BM25 over item text (bm25s): the exact-word half of product search.

A shopper who types a title word, a brand or a rare term expects the items that contain it; a dense encoder
may rank near-synonyms above them. BM25 scores every item for the query's words, which search mixes with
the dense scores (see `tandemrec.retrieval.search`). The index is small (sparse term weights) and built in
well under a second for catalogues of thousands of items, so it is built when a retriever loads rather
than stored.
"""
from __future__ import annotations

from collections.abc import Sequence

import logging

import bm25s
import numpy as np

STOPWORDS = "english"
logging.getLogger("bm25s").setLevel(logging.WARNING)  # it logs every index build at DEBUG on its own handler


class LexicalIndex:
    """BM25 scores of queries against a fixed list of documents (row i: document i)."""

    def __init__(self, documents: Sequence[str]) -> None:
        self.size = len(documents)
        self._bm25 = bm25s.BM25()
        tokens = bm25s.tokenize(list(documents), stopwords=STOPWORDS, show_progress=False)
        self._bm25.index(tokens, show_progress=False)
        self._vocabulary = set(tokens.vocab)

    def scores(self, queries: Sequence[str]) -> np.ndarray:
        """(len(queries), size) float32 BM25 scores; a query with no indexed word scores 0 everywhere."""
        tokens = bm25s.tokenize(list(queries), stopwords=STOPWORDS, return_ids=False, show_progress=False)
        out = np.zeros((len(queries), self.size), dtype=np.float32)
        for row, words in enumerate(tokens):
            known = [w for w in words if w in self._vocabulary]
            if known:
                out[row] = self._bm25.get_scores(known)
        return out
