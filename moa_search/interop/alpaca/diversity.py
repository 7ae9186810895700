"""How different recorded models' answers really are: the study's diversity measure applied to
AlpacaEval's recorded outputs."""

from __future__ import annotations

import os
from collections.abc import Sequence
from itertools import combinations

import numpy as np

from moa_search.config.recorded import load_model_outputs
from moa_search.interop.alpaca.io import _OUTPUTS_FILE, _results_dir
from moa_search.judges.diversity import diversity
from moa_search.runtime.embeddings import TextEmbedder

__all__ = ["recorded_diversity", "recorded_pairwise_distances"]


def _aligned_outputs(
    results_dir: str | os.PathLike[str], models: Sequence[str], limit: int | None
) -> list[list[str]]:
    """Per instruction recorded by every model (the first model's order), each model's
    output; the first ``limit`` such instructions."""
    if len(models) < 2:
        raise ValueError(f"diversity needs at least two models, got {list(models)}")
    results = _results_dir(results_dir)
    recorded = [load_model_outputs(results / m / _OUTPUTS_FILE) for m in models]
    tables = [{o.instruction: o.output for o in outputs} for outputs in recorded]
    rows: list[list[str]] = []
    for o in recorded[0]:
        if all(o.instruction in t for t in tables):
            rows.append([t[o.instruction] for t in tables])
            if limit is not None and len(rows) >= limit:
                break
    if not rows:
        raise ValueError(f"no instruction was recorded by all of {list(models)}")
    return rows


def recorded_diversity(
    results_dir: str | os.PathLike[str],
    models: Sequence[str],
    embedder: TextEmbedder,
    *,
    limit: int | None = None,
) -> float:
    """How different ``models``' recorded answers are: per instruction the mean pairwise
    cosine distance of their embeddings, averaged over the instructions every model answered
    (the first ``limit`` of them, in the first model's order) — the study's diversity measure
    (:func:`moa_search.judges.diversity.diversity`) applied to one layer of these proposers.

    Raises:
        ConfigError: a model's outputs are missing or malformed.
        ValueError: fewer than two models, or no instruction they all answered.
    """
    return diversity(_aligned_outputs(results_dir, models, limit), embedder)


def recorded_pairwise_distances(
    results_dir: str | os.PathLike[str],
    models: Sequence[str],
    embedder: TextEmbedder,
    *,
    limit: int | None = None,
) -> dict[tuple[str, str], float]:
    """(model a, model b) -> mean cosine distance between their answers to the same
    instruction, over the same instructions as :func:`recorded_diversity` (pairs in
    ``models`` order, a before b). Their mean is :func:`recorded_diversity`.
    """
    rows = _aligned_outputs(results_dir, models, limit)
    k = len(models)
    vectors = np.asarray(embedder.embed([text for row in rows for text in row]), dtype=np.float64)
    vectors = vectors / np.maximum(np.linalg.norm(vectors, axis=1, keepdims=True), 1e-12)
    v = vectors.reshape(len(rows), k, -1)
    out: dict[tuple[str, str], float] = {}
    for i, j in combinations(range(k), 2):
        cos = np.clip(np.einsum("nd,nd->n", v[:, i], v[:, j]), -1.0, 1.0)
        out[(models[i], models[j])] = float(np.mean(1.0 - cos))
    return out
