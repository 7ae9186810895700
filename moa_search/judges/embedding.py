"""A judge without a model call: the answer whose embedding is closer to the reference wins."""

from __future__ import annotations

import asyncio

import numpy as np

from moa_search.config.dataset import TaskItem
from moa_search.judges.base import Judge, Verdict
from moa_search.runtime.embeddings import TextEmbedder

__all__ = ["ReferenceEmbeddingJudge"]


class ReferenceEmbeddingJudge(Judge):
    """The answer whose embedding is closer (by cosine) to the item's reference wins.

    Preference 1.0 if the candidate is closer, 0.0 if the baseline is, 0.5 when the two
    similarities are within ``tolerance``; ``detail`` gives both similarities. Embedding runs
    on a worker thread. Raises :class:`ValueError` for an item without a reference.
    """

    def __init__(
        self, embedder: TextEmbedder, *, tolerance: float = 1e-6, name: str | None = None
    ) -> None:
        self.embedder = embedder
        self.tolerance = float(tolerance)
        self.name = name or "reference-embedding"

    async def apreference(self, item: TaskItem, candidate: str, baseline: str) -> Verdict:
        if item.reference is None:
            raise ValueError(f"{self.name} needs a reference answer, but item {item.id!r} has none")
        vectors = await asyncio.to_thread(
            self.embedder.embed, [candidate, baseline, item.reference]
        )
        v = np.asarray(vectors, dtype=np.float64)
        v = v / np.maximum(np.linalg.norm(v, axis=1, keepdims=True), 1e-12)
        sim_c = float(v[0] @ v[2])
        sim_b = float(v[1] @ v[2])
        pref = 0.5
        if abs(sim_c - sim_b) > self.tolerance:
            pref = 1.0 if sim_c > sim_b else 0.0
        detail = f"cos(candidate, reference)={sim_c:.6f}; cos(baseline, reference)={sim_b:.6f}"
        return Verdict(pref, detail)
