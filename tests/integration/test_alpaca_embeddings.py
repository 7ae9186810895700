"""Diversity of the MoA paper's recorded proposers, measured with the real embedding model."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from moa_search.interop import alpaca
from moa_search.runtime.embeddings import Embedder

DATA = Path(__file__).resolve().parents[2] / ".." / "shared" / "data" / "alpaca_eval"
RESULTS = DATA / "results"
MOA_PROPOSERS = [
    "Qwen1.5-110B-Chat",
    "Qwen1.5-72B-Chat",
    "Meta-Llama-3-70B-Instruct",
    "Mixtral-8x22B-Instruct-v0.1",
    "dbrx-instruct",
]


@pytest.fixture(scope="module")
def data() -> Path:
    assert DATA.is_dir(), (
        f"the shared AlpacaEval data are missing: expected them at {DATA.resolve()} "
        "(they are never copied into the project)"
    )
    return DATA


def test_recorded_diversity_of_the_moa_papers_proposers(data: Path) -> None:
    embedder = Embedder()
    value = alpaca.recorded_diversity(RESULTS, MOA_PROPOSERS, embedder, limit=20)
    assert 0.0 < value < 1.0
    embedded = embedder.stats.embedded
    assert 0 < embedded <= 100  # 5 models x 20 instructions
    pairs = alpaca.recorded_pairwise_distances(RESULTS, MOA_PROPOSERS, embedder, limit=20)
    assert len(pairs) == 10
    assert all(0.0 < d < 1.0 for d in pairs.values())
    assert float(np.mean(list(pairs.values()))) == pytest.approx(value, abs=1e-5)
    assert embedder.stats.embedded == embedded  # the same texts: nothing embedded twice
    with pytest.raises(ValueError, match="two models"):
        alpaca.recorded_diversity(RESULTS, MOA_PROPOSERS[:1], embedder)
