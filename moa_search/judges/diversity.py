"""Diversity of proposer outputs: how far apart their sentence embeddings are.

A score of outputs, like a judge's verdict: :func:`diversity` scores a set of outputs per
prompt as the mean pairwise cosine distance of their embeddings within each prompt, averaged
over prompts. The embeddings come from any :class:`~moa_search.runtime.embeddings.TextEmbedder`
(the study's :class:`~moa_search.runtime.embeddings.Embedder`, with its caches).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from moa_search.runtime.embeddings import TextEmbedder

__all__ = ["diversity", "mean_pairwise_cosine_distance"]


def mean_pairwise_cosine_distance(vectors: np.ndarray) -> float:
    """The mean of ``1 - cos(v_i, v_j)`` over all pairs ``i < j`` of rows; in [0, 2].

    Rows need not be normalised; a zero row counts as orthogonal to everything. Fewer than two
    rows give 0.0.
    """
    v = np.asarray(vectors, dtype=np.float64)
    if v.ndim != 2:
        raise ValueError(f"vectors must be a 2-D array (one row per text), got shape {v.shape}")
    n = v.shape[0]
    if n < 2:
        return 0.0
    norms = np.linalg.norm(v, axis=1, keepdims=True)
    unit = v / np.maximum(norms, 1e-12)
    cos = np.clip(unit @ unit.T, -1.0, 1.0)
    upper = np.triu_indices(n, k=1)
    return float(np.mean(1.0 - cos[upper]))


def diversity(outputs_per_prompt: Sequence[Sequence[str]], embedder: TextEmbedder) -> float:
    """How different proposers' outputs are, averaged over prompts.

    For each prompt with at least two outputs, the mean pairwise cosine distance of their
    embeddings; then the mean over those prompts (0.0 when none has two outputs). All texts are
    embedded in one ``embedder.embed`` call.
    """
    groups = [list(outputs) for outputs in outputs_per_prompt if len(outputs) >= 2]
    if not groups:
        return 0.0
    flat = [text for group in groups for text in group]
    vectors = np.asarray(embedder.embed(flat))
    if vectors.shape[0] != len(flat):
        raise ValueError(f"the embedder returned {vectors.shape[0]} vectors for {len(flat)} texts")
    scores: list[float] = []
    start = 0
    for group in groups:
        scores.append(mean_pairwise_cosine_distance(vectors[start : start + len(group)]))
        start += len(group)
    return float(np.mean(scores))
