"""Training and filling a FAISS index, on every GPU FAISS sees when there are any.

Quantiser training (IVF k-means, PQ codebooks) and adding a million vectors are the slow part of an index
build and run far faster on a GPU; searching stays on the CPU, where the index is saved and served.
"""
from __future__ import annotations

import logging

import faiss
import numpy as np

log = logging.getLogger(__name__)


def train_and_add(index: "faiss.Index", vectors: np.ndarray, train_size: int | None, seed: int) -> "faiss.Index":
    """Train `index` (on `train_size` rows sampled with `seed`; None: all) and add `vectors`, on the GPUs
    when FAISS sees any; the result is always a CPU index, which is what is saved and searched."""
    sample = vectors
    if not index.is_trained and train_size is not None and train_size < len(vectors):
        rows = np.sort(np.random.default_rng(seed).choice(len(vectors), train_size, replace=False))
        sample = vectors[rows]
    work = _on_gpus(index)
    if not work.is_trained:
        work.train(sample)
    work.add(vectors)
    return index if work is index else faiss.index_gpu_to_cpu(work)


def _on_gpus(index: "faiss.Index") -> "faiss.Index":
    """The index moved to every GPU FAISS sees, or the index itself (no GPU, or a kind without a GPU form)."""
    if faiss.get_num_gpus() == 0 or isinstance(index, faiss.IndexHNSW):
        return index
    try:
        return faiss.index_cpu_to_all_gpus(index)
    except RuntimeError as e:  # e.g. a PQ code size the GPU kernels lack
        log.warning("FAISS cannot build %s on the GPU (%s); building on the CPU", type(index).__name__, e)
        return index
