"""Mixture and pool files: validation, one-paragraph errors, lossless round trips."""

from __future__ import annotations

from pathlib import Path

import pytest

from moa_search.config import (
    AgentSpec,
    MixtureConfig,
    ModelSpec,
    Pool,
    load_mixture,
    load_pool,
    resolve_pool,
    save_mixture,
    save_pool,
)
from moa_search.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]

POOL = Pool(
    models=(
        ModelSpec(alias="a", base_url="http://127.0.0.1:1/v1", model="model-a"),
        ModelSpec(
            alias="b",
            base_url="https://api.example.com/v1/",
            model="model-b",
            api_key_env="B_KEY",
            input_price_per_mtok=0.5,
            output_price_per_mtok=1.5,
            max_concurrency=2,
        ),
    )
)


def mixture(**kw: object) -> MixtureConfig:
    base: dict[str, object] = {
        "layers": ((AgentSpec(model="a", samples=2), AgentSpec(model="b")),),
        "aggregator": AgentSpec(model="b", temperature=0.0),
    }
    base.update(kw)
    return MixtureConfig(**base)  # type: ignore[arg-type]


@pytest.mark.parametrize("suffix", [".yaml", ".json"])
def test_round_trip_is_lossless(tmp_path: Path, suffix: str) -> None:
    m = mixture(pool=POOL, quorum=0.5, name="x", provenance={"trial": 3, "metrics": [1.5]})
    path = tmp_path / f"m{suffix}"
    save_mixture(m, path)
    assert load_mixture(path) == m
    save_pool(POOL, tmp_path / f"p{suffix}")
    assert load_pool(tmp_path / f"p{suffix}") == POOL


def test_base_url_trailing_slash_is_normalised_and_cost_uses_prices() -> None:
    b = POOL.get("b")
    assert b.base_url == "https://api.example.com/v1"
    assert b.cost(1_000_000, 2_000_000) == pytest.approx(0.5 + 3.0)


def test_example_mixture_loads() -> None:
    m = load_mixture(ROOT / "studies" / "local" / "mixture.yaml")
    assert m.models_used() == ("smollm2", "gemma3")
    assert len(m.layers) == 2


@pytest.mark.parametrize(
    ("n_calls", "quorum", "need"),
    [(3, 1, 1), (3, 2, 2), (3, 5, 3), (4, 0.5, 2), (3, 0.5, 2), (3, 1.0, 3), (1, 0.1, 1)],
)
def test_quorum(n_calls: int, quorum: float, need: int) -> None:
    assert mixture(quorum=quorum).required_answers(n_calls) == need


BAD_FILES = [
    # (file name, content, field, words expected in the paragraph)
    ("empty.yaml", b"", "", "empty"),
    ("syntax.yaml", b"layers: [\n", "", "valid YAML"),
    ("syntax.json", b"{", "", "valid JSON"),
    ("list.yaml", b"- a\n- b\n", "", "mapping"),
    ("binary.yaml", b"\xff\xfe\x00", "", "UTF-8"),
    ("typo.yaml", b"aggregator: {model: a}\nlayrs: []\n", "layrs", "unknown"),
    ("missing.yaml", b"layers: []\n", "aggregator", "required"),
    (
        "temperature.yaml",
        b"layers: [[{model: a, temperature: 5}]]\naggregator: {model: a}\n",
        "layers[0][0].temperature",
        "less than or equal to 2",
    ),
    ("quorum.yaml", b"aggregator: {model: a}\nquorum: 0\n", "quorum", "count >= 1"),
    (
        "samples.yaml",
        b"layers: [[{model: a, samples: 0}]]\naggregator: {model: a}\n",
        "layers[0][0].samples",
        "greater than or equal to 1",
    ),
    ("version.yaml", b"version: 7\naggregator: {model: a}\n", "version", "1"),
    (
        "url.yaml",
        b"aggregator: {model: a}\npool: {models: [{alias: a, base_url: ftp://x, model: m}]}\n",
        "pool.models[0].base_url",
        "http://",
    ),
    (
        "dupe.yaml",
        b"aggregator: {model: a}\npool: {models: [{alias: a, base_url: 'http://x', model: m},"
        b" {alias: a, base_url: 'http://y', model: n}]}\n",
        "pool",
        "unique",
    ),
]


@pytest.mark.parametrize(("name", "content", "field", "words"), BAD_FILES)
def test_bad_mixture_file_gives_one_paragraph(
    tmp_path: Path, name: str, content: bytes, field: str, words: str
) -> None:
    path = tmp_path / name
    path.write_bytes(content)
    with pytest.raises(ConfigError) as info:
        load_mixture(path)
    err = info.value
    assert err.source == str(path)
    assert err.field == field
    text = str(err)
    assert str(path) in text and words in text
    assert "\n" not in text and "Traceback" not in text


def test_key_put_where_its_variable_name_belongs_is_not_echoed(tmp_path: Path) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text("models: [{alias: a, base_url: 'http://x', model: m, api_key_env: sk-SECRET1}]")
    with pytest.raises(ConfigError) as info:
        load_pool(path)
    assert info.value.field == "models[0].api_key_env"
    assert "SECRET1" not in str(info.value)


def test_unknown_alias_and_pool_resolution(tmp_path: Path) -> None:
    save_pool(POOL, tmp_path / "pool.yaml")
    m = mixture(pool="pool.yaml")
    save_mixture(m, tmp_path / "m.yaml")
    assert resolve_pool(load_mixture(tmp_path / "m.yaml"), tmp_path / "m.yaml") == POOL
    bad = mixture(aggregator=AgentSpec(model="zzz"))
    with pytest.raises(ConfigError) as info:
        resolve_pool(bad, "m.yaml", tmp_path / "pool.yaml")
    assert info.value.field == "aggregator.model" and "zzz" in str(info.value)
    with pytest.raises(ConfigError) as info:
        resolve_pool(mixture(), "m.yaml", None, tmp_path / "absent.yaml")
    assert "moa-search local up" in str(info.value)


def test_a_replay_path_without_a_kind_is_a_replay_model(tmp_path: Path) -> None:
    (tmp_path / "pool.yaml").write_text(
        "models:\n  - {alias: r, model: m, replay: recorded/model_outputs.json}\n"
    )
    spec = load_pool(tmp_path / "pool.yaml").get("r")
    assert spec.kind == "replay" and spec.base_url is None
    assert spec.replay == str(tmp_path / "recorded" / "model_outputs.json")
    pool = load_pool(ROOT / "studies" / "alpacaeval" / "pool.yaml")
    assert {m.kind for m in pool.models} == {"replay"}
    assert POOL.get("a").kind == "openai"


@pytest.mark.parametrize(
    ("model", "field", "words"),
    [
        ("{alias: a, model: m}", "models[0].base_url", "required"),
        ("{alias: a, model: m, kind: replay}", "models[0].replay", "required"),
        ("{alias: a, model: m, replay: o.json, base_url: 'http://x'}", "models[0].base_url", "no"),
        (
            "{alias: a, model: m, kind: openai, base_url: 'http://x', replay: o.json}",
            "models[0].replay",
            "kind 'replay'",
        ),
        ("{alias: a, model: m, kind: grpc, base_url: 'http://x'}", "models[0].kind", "'openai'"),
    ],
)
def test_each_kind_needs_its_own_fields(tmp_path: Path, model: str, field: str, words: str) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text(f"models: [{model}]\n")
    with pytest.raises(ConfigError) as info:
        load_pool(path)
    assert info.value.field == field and words in str(info.value)


def test_replay_pool_round_trips(tmp_path: Path) -> None:
    pool = Pool(models=(ModelSpec(alias="r", model="m", replay=str(tmp_path / "o.json")),))
    assert pool.models[0].kind == "replay"
    save_pool(pool, tmp_path / "pool.yaml")
    assert load_pool(tmp_path / "pool.yaml") == pool


def test_a_config_error_can_be_relabelled_and_keeps_its_hints(tmp_path: Path) -> None:
    path = tmp_path / "pool.yaml"
    path.write_text("models: [{alias: a, base_url: 'ftp://x', model: m, max_retries: -1}]\n")
    with pytest.raises(ConfigError) as info:
        load_pool(path)
    err = info.value
    assert err.also == ("models[0].max_retries",) and "also check" in str(err)
    relabelled = err.with_source("--pool")
    assert str(relabelled) == str(err).replace(str(path), "--pool", 1)
    assert (relabelled.field, relabelled.got, relabelled.also) == (err.field, err.got, err.also)
