"""Archon interchange: export, import of real-shaped Archon configs, lossless round trips, and
one-paragraph errors for what a mixture cannot express."""

from __future__ import annotations

import copy
import json
import logging
from pathlib import Path
from typing import Any

import pytest

from moa_search.config import AgentSpec, MixtureConfig, ModelSpec, Pool, load_mixture
from moa_search.errors import ConfigError
from moa_search.interop.archon import (
    EXTENSION_KEY,
    OPENAI_COMPATIBLE_MODEL_TYPE,
    export_archon,
    import_archon,
    load_archon,
    save_archon,
)

ROOT = Path(__file__).resolve().parents[2]
TOGETHER = "https://api.together.xyz/v1"

POOL = Pool(
    models=(
        ModelSpec(
            alias="wizard",
            base_url=TOGETHER,
            model="microsoft/WizardLM-2-8x22B",
            api_key_env="TOGETHER_API_KEY",
        ),
        ModelSpec(alias="qwen110", base_url=TOGETHER, model="Qwen/Qwen1.5-110B-Chat"),
        ModelSpec(alias="qwen72", base_url=TOGETHER, model="Qwen/Qwen1.5-72B-Chat"),
        ModelSpec(alias="gpt4o", base_url="https://api.openai.com/v1", model="gpt-4o-mini"),
        # one model name behind two endpoints: only an alias tells them apart
        ModelSpec(alias="llama-a", base_url="http://127.0.0.1:8001/v1", model="llama"),
        ModelSpec(alias="llama-b", base_url="http://127.0.0.1:8002/v1", model="llama"),
    )
)

# The shape of Archon's configs/MoA-lite.json (ScalingIntelligence/Archon), models trimmed.
MOA_LITE: dict[str, Any] = {
    "name": "archon-MoA-lite",
    "layers": [
        [
            {
                "type": "generator",
                "model": "microsoft/WizardLM-2-8x22B",
                "model_type": "Together_API",
                "top_k": 1,
                "temperature": 0.7,
                "max_tokens": 2048,
            },
            {
                "type": "generator",
                "model": "Qwen/Qwen1.5-110B-Chat",
                "model_type": "Together_API",
                "top_k": 1,
                "temperature": 0.7,
                "max_tokens": 2048,
                "samples": 3,
            },
        ],
        [
            {
                "type": "fuser",
                "model": "Qwen/Qwen1.5-72B-Chat",
                "model_type": "Together_API",
                "top_k": 1,
                "temperature": 0.7,
                "max_tokens": 2048,
                "top_k_generations": 2,
                "fuse_generations_count": 1,
            }
        ],
    ],
}


def test_import_a_real_shaped_archon_config(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING)
    m = import_archon(MOA_LITE, POOL, source="MoA-lite.json")
    assert m.name == "archon-MoA-lite"
    assert m.layers == (
        (
            AgentSpec(model="wizard", temperature=0.7, max_tokens=2048),
            AgentSpec(model="qwen110", temperature=0.7, max_tokens=2048, samples=3),
        ),
    )
    assert m.aggregator == AgentSpec(model="qwen72", temperature=0.7, max_tokens=2048)
    assert m.quorum == 1 and m.pool is None
    assert "top_k_generations" in caplog.text  # options without an equivalent are reported


def test_import_three_fuser_layers_and_the_old_models_form() -> None:
    gen = {"type": "generator", "model": "gpt4o", "model_type": "OpenAI_API", "temperature": 0.2}
    fuser = {
        "type": "fuser",
        "model": "Qwen/Qwen1.5-110B-Chat",
        "model_type": "Together_API",
        "temperature": 0.5,
        "max_context_length": 1024,  # older configs; read as max_tokens
        "samples": 1,
    }
    data = {
        "name": "deep",
        "layers": [{"branches": 1, "models": [gen, gen]}, [fuser, fuser], [fuser], [fuser]],
    }
    m = import_archon(data, POOL)
    assert len(m.layers) == 3
    assert m.layers[0] == (AgentSpec(model="gpt4o", temperature=0.2, max_tokens=2048),) * 2
    assert all(a.model == "qwen110" and a.max_tokens == 1024 for a in m.layers[1])
    assert m.aggregator == AgentSpec(model="qwen110", temperature=0.5, max_tokens=1024)

    single = {"name": "gpt-4o-mini alone", "layers": [[gen]]}
    alone = import_archon(single, POOL)
    assert alone.layers == () and alone.aggregator.model == "gpt4o"


def test_a_final_ranker_with_top_k_1_is_aggregation_rank() -> None:
    data = copy.deepcopy(MOA_LITE)
    data["layers"][1] = [
        {
            "type": "ranker",
            "model": "Qwen/Qwen1.5-110B-Chat",
            "model_type": "Together_API",
            "top_k": 1,
            "temperature": 0.7,
            "max_tokens": 2048,
            "samples": 1,
        }
    ]
    m = import_archon(data, POOL)
    assert m.aggregation == "rank" and m.aggregator.model == "qwen110"
    assert export_archon(m, POOL)["layers"][-1] == data["layers"][-1]
    data["layers"][1][0]["top_k"] = 5  # a ranker passing five candidates on: not the end
    with pytest.raises(ConfigError) as info:
        import_archon(data, POOL)
    assert info.value.field == "layers[1][0].top_k"
    data["layers"][1][0].update(top_k=1, model="llm-blender/PairRM")
    with pytest.raises(ConfigError, match="PairRM"):
        import_archon(data, POOL)


def test_round_trip_is_lossless(tmp_path: Path) -> None:
    rich = MixtureConfig(
        layers=(
            (
                AgentSpec(model="wizard", temperature=0.9, max_tokens=300, samples=2),
                AgentSpec(model="llama-b", temperature=0.0, system_prompt="Be terse."),
            ),
            (AgentSpec(model="llama-a", max_tokens=77), AgentSpec(model="qwen72")),
        ),
        aggregator=AgentSpec(model="gpt4o", temperature=0.2, max_tokens=1024),
        aggregation_prompt="Fuse these answers.",
        quorum=0.5,
        seed=7,
        provenance={"study": "s", "trial": 3, "metrics": {"win_rate": {"mean": 0.6}}},
    )
    for mixture in (
        rich,
        rich.model_copy(update={"name": "named", "quorum": 1.0}),
        rich.model_copy(update={"quorum": 2, "seed": 0, "provenance": None}),
        rich.model_copy(update={"aggregation": "rank"}),
        MixtureConfig(name="solo", aggregator=AgentSpec(model="qwen110")),
        MixtureConfig(aggregator=AgentSpec(model="qwen110"), aggregation="rank"),
        load_mixture(ROOT / "studies" / "local" / "mixture.yaml"),
    ):
        pool = POOL if mixture.name != "local-example" else local_like_pool()
        exported = export_archon(mixture, pool)
        wire = json.loads(json.dumps(exported))  # what a JSON file holds
        assert import_archon(wire, pool) == mixture.model_copy(update={"pool": None})
        path = tmp_path / "archon.json"
        save_archon(mixture, pool, path)
        assert load_archon(path, pool) == mixture.model_copy(update={"pool": None})

    exported = export_archon(rich, POOL)
    first = exported["layers"][0]
    assert [c["type"] for layer in exported["layers"] for c in layer] == [
        "generator",
        "generator",
        "fuser",
        "fuser",
        "fuser",
    ]
    assert first[0] == {
        "type": "generator",
        "model": "microsoft/WizardLM-2-8x22B",
        "model_type": "Together_API",
        "top_k": 1,
        "temperature": 0.9,
        "max_tokens": 300,
        "samples": 2,
    }
    assert first[1]["model"] == "llama" and first[1]["model_type"] == OPENAI_COMPATIBLE_MODEL_TYPE
    assert first[1][EXTENSION_KEY] == {"alias": "llama-b", "system_prompt": "Be terse."}
    assert exported["layers"][-1][0]["model_type"] == "OpenAI_API"
    assert exported["name"] == "moa-search-mixture"
    assert exported[EXTENSION_KEY]["quorum"] == 0.5
    # a plain MoA exports no extension at all
    plain = MixtureConfig(
        name="plain",
        layers=((AgentSpec(model="wizard"), AgentSpec(model="qwen110")),),
        aggregator=AgentSpec(model="qwen72"),
    )
    assert all(
        EXTENSION_KEY not in c for layer in export_archon(plain, POOL)["layers"] for c in layer
    )
    assert EXTENSION_KEY not in export_archon(plain, POOL)


def local_like_pool() -> Pool:
    return Pool(
        models=(
            ModelSpec(alias="smollm2", base_url="http://127.0.0.1:9001/v1", model="smollm2-135m"),
            ModelSpec(alias="gemma3", base_url="http://127.0.0.1:9002/v1", model="gemma3-270m"),
        )
    )


@pytest.mark.parametrize("kind", ["critic", "ranker", "verifier", "unit_test_generator"])
def test_unsupported_components_are_named_with_their_position(kind: str) -> None:
    data = copy.deepcopy(MOA_LITE)
    data["layers"].insert(1, [{"type": kind, "model": "gpt-4o-mini", "temperature": 0.7}])
    with pytest.raises(ConfigError) as info:
        import_archon(data, POOL, source="archon.json")
    err = info.value
    assert err.field == "layers[1][0].type"
    assert repr(kind) in str(err) and "only generator and fuser are supported" in str(err)
    assert str(err).startswith("archon.json: field 'layers[1][0].type'")


def _fuser_in_first_layer(d: dict[str, Any]) -> None:
    d["layers"][0].append({"type": "fuser", "model": "gpt4o"})


def _generator_after_first_layer(d: dict[str, Any]) -> None:
    d["layers"][1][0]["type"] = "generator"


def _two_final_fusers(d: dict[str, Any]) -> None:
    d["layers"][1].append(dict(d["layers"][1][0]))


def _set(i: int, j: int, key: str, value: Any) -> Any:
    def change(d: dict[str, Any]) -> None:
        d["layers"][i][j][key] = value

    return change


def _no_layers(d: dict[str, Any]) -> None:
    d["layers"] = []


@pytest.mark.parametrize(
    ("change", "field", "words"),
    [
        (_fuser_in_first_layer, "layers[0][2].type", "first layer"),
        (_generator_after_first_layer, "layers[1][0].type", "ignores the previous"),
        (_two_final_fusers, "layers[1]", "exactly one fuser"),
        (_set(1, 0, "samples", 2), "layers[1][0].samples", "random"),
        (_set(0, 0, "model", "claude-3"), "layers[0][0].model", "wizard (microsoft/WizardLM"),
        (_set(0, 0, "temperature", 5), "layers[0][0].temperature", "less than or equal to 2"),
        (_set(0, 0, "model", "llama"), "layers[0][0].model", "llama-a, llama-b"),
        (_no_layers, "layers", "non-empty"),
    ],
)
def test_what_a_mixture_cannot_express_is_a_config_error(
    change: Any, field: str, words: str
) -> None:
    data = copy.deepcopy(MOA_LITE)
    change(data)
    with pytest.raises(ConfigError) as info:
        import_archon(data, POOL, source="a.json")
    assert info.value.field == field
    assert words in str(info.value)


def test_export_needs_every_model_in_the_pool() -> None:
    m = MixtureConfig(aggregator=AgentSpec(model="missing"))
    with pytest.raises(ConfigError) as info:
        export_archon(m, POOL)
    assert "aggregator.model" in str(info.value)
