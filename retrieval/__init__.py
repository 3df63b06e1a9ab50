"""Retrieval: item index, offline ranking metrics and the Retriever API over a run folder."""
