"""Import and export Archon's JSON layer format (ScalingIntelligence/Archon), for the subset a
Mixture-of-Agents shares with it: ``generator`` and ``fuser`` components, and a final LLM
``ranker`` that keeps the best candidate.

An Archon config is ``{"name": ..., "layers": [[component, ...], ...]}`` (a layer may also be
the older ``{"models": [component, ...]}`` form); a component is ::

    {"type": "generator" | "fuser", "model": "meta-llama/Llama-3.3-70B-Instruct-Turbo",
     "model_type": "Together_API", "top_k": 1, "temperature": 0.7, "max_tokens": 2048,
     "samples": 1}

Mapping, in both directions:

- Archon's first layer, all ``generator`` components → moa-search's first proposer layer
  (``samples`` kept). A generator sees only the conversation, as a layer-0 proposer does.
- a layer of ``fuser`` components that has more layers after it → a proposer layer whose
  agents see the previous layer's answers (Archon's fuser fuses the previous candidates).
- the last layer, exactly one ``fuser`` with ``samples`` 1 → the aggregator.
- the last layer, exactly one LLM ``ranker`` with ``top_k`` 1 (after at least one other layer)
  → the aggregator with ``aggregation: rank``: both return the candidate the model ranks best,
  verbatim.
- a config of a single layer holding one ``generator`` (``samples`` 1) → a mixture with no
  proposer layers (the aggregator alone: a single model).

Anything else raises :class:`~moa_search.errors.ConfigError` naming the position
(``layers[i][j].type``): other component types (``critic``, ``verifier``,
``unit_test_generator``, ``unit_test_evaluator``, custom ones, and a ``ranker`` anywhere but
alone in the last layer, with a ``top_k`` other than 1, or PairRM), a generator after the
first layer (Archon's generators there ignore the previous candidates, which a mixture cannot
express), a fuser in the first layer (nothing to fuse yet), or a last layer that is not one
fuser with one sample or one ranker (Archon would then return a random candidate).

Model names: ``model`` is the provider's model name, i.e. :attr:`ModelSpec.model` of a pool
entry; on import it is matched to a pool alias (an alias equal to it first, then a unique
``ModelSpec.model``). ``model_type`` is derived from the pool entry's ``base_url`` on export
(:data:`MODEL_TYPES_BY_HOST`; any other OpenAI-compatible endpoint gets
:data:`OPENAI_COMPATIBLE_MODEL_TYPE`, which Archon runs through a custom generator registered
with ``Archon.add_generator``) and only informs the choice between ambiguous pool entries on
import. ``top_k`` is written as 1 (Archon's generators ignore it) and ignored on import;
Archon's older ``max_context_length`` is read as ``max_tokens`` when ``max_tokens`` is absent.

Round trip: what Archon has no field for — ``aggregation_prompt``, ``quorum``, ``seed``,
``aggregation: rank`` on a mixture without proposer layers,
``provenance``, a missing ``name``, an agent's ``system_prompt``, and an alias when its model
name is ambiguous in the pool — travels in ``"moa_search"`` extension keys (top level and per
component) that Archon ignores, so ``import_archon(export_archon(m, pool), pool)`` equals ``m``
except for its ``pool`` field (Archon configs name no pool; pass it to :func:`import_archon`'s
caller). Archon itself runs such a config with its own fuser prompt and without those extras.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Mapping
from typing import Any
from urllib.parse import urlparse

from pydantic import ValidationError

from moa_search.config import (
    DEFAULT_AGGREGATION_PROMPT,
    AgentSpec,
    MixtureConfig,
    ModelSpec,
    Pool,
    format_validation_error,
    load_mapping,
)
from moa_search.errors import ConfigError

__all__ = [
    "ARCHON_COMPONENT_TYPES",
    "EXTENSION_KEY",
    "FINAL_RANKER_TYPE",
    "MODEL_TYPES_BY_HOST",
    "OPENAI_COMPATIBLE_MODEL_TYPE",
    "SUPPORTED_TYPES",
    "export_archon",
    "import_archon",
    "load_archon",
    "model_type_for",
    "save_archon",
]

log = logging.getLogger(__name__)

#: Component types Archon knows; only :data:`SUPPORTED_TYPES` map to a mixture.
ARCHON_COMPONENT_TYPES: tuple[str, ...] = (
    "generator",
    "fuser",
    "ranker",
    "critic",
    "verifier",
    "unit_test_generator",
    "unit_test_evaluator",
)
SUPPORTED_TYPES: tuple[str, ...] = ("generator", "fuser")
#: The one extra type accepted as the whole last layer (with ``top_k`` 1): ``aggregation: rank``.
FINAL_RANKER_TYPE = "ranker"
_PAIRRM = "llm-blender/PairRM"

#: Archon's ``model_type`` for the providers it calls natively, by API host.
MODEL_TYPES_BY_HOST: dict[str, str] = {
    "api.openai.com": "OpenAI_API",
    "api.together.xyz": "Together_API",
    "api.together.ai": "Together_API",
    "api.anthropic.com": "Anthropic_API",
    "api.groq.com": "Groq_API",
    "generativelanguage.googleapis.com": "Google_API",
}
#: ``model_type`` written for any other OpenAI-compatible endpoint (vLLM, llama.cpp, Ollama...).
OPENAI_COMPATIBLE_MODEL_TYPE = "OpenAI_Compatible"

#: Key of the moa-search extension blocks Archon ignores.
EXTENSION_KEY = "moa_search"

_DEFAULT_TEMPERATURE = 0.7  # Archon's generate_* defaults
_DEFAULT_MAX_TOKENS = 2048
_KNOWN_KEYS = frozenset(
    {
        "type",
        "model",
        "model_type",
        "top_k",
        "temperature",
        "max_tokens",
        "max_context_length",
        "samples",
        EXTENSION_KEY,
    }
)
_DEFAULT_NAME = "moa-search-mixture"


def model_type_for(spec: ModelSpec) -> str:
    """Archon's ``model_type`` for a pool entry, from its ``base_url`` host (a replay model has
    none: :data:`OPENAI_COMPATIBLE_MODEL_TYPE`)."""
    host = (urlparse(spec.base_url or "").hostname or "").lower()
    return MODEL_TYPES_BY_HOST.get(host, OPENAI_COMPATIBLE_MODEL_TYPE)


# ----------------------------------------------------------------------------- export


def _ambiguous(pool: Pool, spec: ModelSpec) -> bool:
    """Whether ``spec.model`` alone would not find ``spec`` again in ``pool``."""
    if spec.model in pool.aliases:
        return spec.model != spec.alias
    return sum(1 for m in pool.models if m.model == spec.model) > 1


def _component(kind: str, agent: AgentSpec, pool: Pool) -> dict[str, Any]:
    spec = pool.get(agent.model)
    out: dict[str, Any] = {
        "type": kind,
        "model": spec.model,
        "model_type": model_type_for(spec),
        "top_k": 1,
        "temperature": agent.temperature,
        "max_tokens": agent.max_tokens,
        "samples": agent.samples,
    }
    ext: dict[str, Any] = {}
    if _ambiguous(pool, spec):
        ext["alias"] = spec.alias
    if agent.system_prompt is not None:
        ext["system_prompt"] = agent.system_prompt
    if ext:
        out[EXTENSION_KEY] = ext
    return out


def export_archon(mixture: MixtureConfig, pool: Pool) -> dict[str, Any]:
    """The Archon config of ``mixture``; ``pool`` maps its aliases to provider model names.

    Raises :class:`ConfigError` if the mixture names a model the pool lacks. The result is
    plain JSON data (see the module docstring for the mapping and the extension keys).
    """
    mixture.check_pool(pool, mixture.name or "mixture")
    layers: list[list[dict[str, Any]]] = []
    for i, agents in enumerate(mixture.layers):
        kind = "generator" if i == 0 else "fuser"
        layers.append([_component(kind, a, pool) for a in agents])
    ext: dict[str, Any] = {}
    if not mixture.layers:
        agg_kind = "generator"
        if mixture.aggregation == "rank":  # nothing to rank: the executor synthesizes anyway
            ext["aggregation"] = "rank"
    else:
        agg_kind = FINAL_RANKER_TYPE if mixture.aggregation == "rank" else "fuser"
    layers.append([_component(agg_kind, mixture.aggregator, pool)])
    data: dict[str, Any] = {"name": mixture.name or _DEFAULT_NAME, "layers": layers}
    if mixture.name is None:
        ext["name"] = None
    if mixture.aggregation_prompt != DEFAULT_AGGREGATION_PROMPT:
        ext["aggregation_prompt"] = mixture.aggregation_prompt
    if mixture.quorum != 1 or isinstance(mixture.quorum, float):
        ext["quorum"] = mixture.quorum
    if mixture.seed != 0:
        ext["seed"] = mixture.seed
    if mixture.provenance is not None:
        ext["provenance"] = mixture.provenance
    if ext:
        data[EXTENSION_KEY] = ext
    return data


def save_archon(mixture: MixtureConfig, pool: Pool, path: str | os.PathLike[str]) -> None:
    """Write :func:`export_archon`'s config as a JSON file (Archon reads JSON)."""
    from moa_search.config.files import write_text_atomically

    text = json.dumps(export_archon(mixture, pool), indent=4, ensure_ascii=False) + "\n"
    write_text_atomically(path, text, "Archon config")  # a bad path is one paragraph


# ----------------------------------------------------------------------------- import


def _unsupported(source: str, where: str, kind: object) -> ConfigError:
    return ConfigError(
        source,
        f"{where}.type",
        "a 'generator' or 'fuser' component: only generator and fuser are supported when "
        "importing Archon configs, plus one LLM ranker with top_k 1 as the whole last layer "
        "(critics, verifiers, unit-test components and other rankers have no moa-search "
        "equivalent)",
        repr(kind),
    )


def _resolve_alias(component: Mapping[str, Any], pool: Pool, source: str, where: str) -> str:
    ext = component.get(EXTENSION_KEY)
    if isinstance(ext, Mapping) and isinstance(ext.get("alias"), str):
        alias = ext["alias"]
        if alias in pool.aliases:
            return alias
        raise ConfigError(
            source,
            f"{where}.{EXTENSION_KEY}.alias",
            f"a model alias from the pool ({', '.join(pool.aliases)})",
            repr(alias),
        )
    model = component.get("model")
    if not isinstance(model, str) or not model:
        raise ConfigError(source, f"{where}.model", "a model name (a non-empty string)")
    if model in pool.aliases:
        return model
    matches = [m for m in pool.models if m.model == model]
    if len(matches) > 1:
        wanted = component.get("model_type")
        typed = [m for m in matches if model_type_for(m) == wanted]
        if len(typed) == 1:
            return typed[0].alias
        raise ConfigError(
            source,
            f"{where}.model",
            f"a model name that identifies one pool entry, but {model!r} is served by "
            f"{', '.join(m.alias for m in matches)}; rename it to one of those aliases",
        )
    if not matches:
        known = ", ".join(f"{m.alias} ({m.model})" for m in pool.models)
        raise ConfigError(
            source,
            f"{where}.model",
            f"a model of the pool, by alias or provider model name: {known}",
            repr(model),
        )
    return matches[0].alias


def _agent(component: Mapping[str, Any], pool: Pool, source: str, where: str) -> AgentSpec:
    unknown = sorted(set(component) - _KNOWN_KEYS)
    if unknown:
        log.warning("%s: %s: ignoring Archon options %s", source, where, ", ".join(unknown))
    alias = _resolve_alias(component, pool, source, where)
    max_tokens = component.get("max_tokens", component.get("max_context_length"))
    fields: dict[str, Any] = {
        "model": alias,
        "temperature": component.get("temperature", _DEFAULT_TEMPERATURE),
        "max_tokens": _DEFAULT_MAX_TOKENS if max_tokens is None else max_tokens,
        "samples": component.get("samples", 1),
    }
    ext = component.get(EXTENSION_KEY)
    if isinstance(ext, Mapping) and ext.get("system_prompt") is not None:
        fields["system_prompt"] = ext["system_prompt"]
    try:
        return AgentSpec.model_validate(fields)
    except ValidationError as exc:
        err = format_validation_error(exc, source)
        raise ConfigError(source, f"{where}.{err.field}", err.expected, err.got) from None


def _layer_components(layer: Any, source: str, i: int, *, last: bool) -> list[Mapping[str, Any]]:
    items = layer.get("models") if isinstance(layer, Mapping) else layer
    if isinstance(layer, Mapping) and layer.get("branches", 1) != 1:
        raise ConfigError(source, f"layers[{i}].branches", "1 (branches are not supported)")
    if not isinstance(items, list) or not items:
        raise ConfigError(source, f"layers[{i}]", "a non-empty list of components")
    for j, c in enumerate(items):
        if not isinstance(c, Mapping):
            raise ConfigError(source, f"layers[{i}][{j}]", "a component object", type(c).__name__)
        kind = c.get("type")
        final_ranker = kind == FINAL_RANKER_TYPE and last and i > 0 and len(items) == 1
        if kind not in SUPPORTED_TYPES and not final_ranker:
            raise _unsupported(source, f"layers[{i}][{j}]", kind)
    return list(items)


def import_archon(
    data: Mapping[str, Any], pool: Pool, *, source: str = "archon config"
) -> MixtureConfig:
    """The mixture an Archon config describes, its models mapped to ``pool``'s aliases.

    ``source`` names the config in error messages (a file name). Raises :class:`ConfigError`
    for anything outside the supported subset (see the module docstring) or a model the
    pool lacks. The returned mixture has no ``pool``.
    """
    if not isinstance(data, Mapping):
        raise ConfigError(source, "", "an Archon config object", type(data).__name__)
    raw_layers = data.get("layers")
    if not isinstance(raw_layers, list) or not raw_layers:
        raise ConfigError(source, "layers", "a non-empty list of layers")
    last = len(raw_layers) - 1
    layers = [
        _layer_components(layer, source, i, last=i == last) for i, layer in enumerate(raw_layers)
    ]
    for i, components in enumerate(layers):
        for j, c in enumerate(components):
            kind = c["type"]
            if i == 0 and kind != "generator":
                raise ConfigError(
                    source,
                    f"layers[0][{j}].type",
                    "'generator' in the first layer (a fuser there has no candidates to fuse)",
                    repr(kind),
                )
            if i > 0 and kind not in ("fuser", FINAL_RANKER_TYPE):
                raise ConfigError(
                    source,
                    f"layers[{i}][{j}].type",
                    "'fuser' after the first layer (an Archon generator there ignores the "
                    "previous layer's candidates, which a mixture cannot express)",
                    repr(kind),
                )
    if len(layers[last]) != 1:
        raise ConfigError(
            source,
            f"layers[{last}]",
            "a last layer of exactly one fuser or ranker (or a config of one generator alone): "
            "Archon returns a random candidate when the last layer yields several",
            f"{len(layers[last])} components",
        )
    final = layers[last][0]
    where = f"layers[{last}][0]"
    aggregation = "synthesize"
    if final["type"] == FINAL_RANKER_TYPE:
        if final.get("model") == _PAIRRM:
            raise ConfigError(
                source,
                f"{where}.model",
                "an LLM ranker (PairRM is a reward model with no moa-search equivalent)",
                repr(_PAIRRM),
            )
        if final.get("top_k") != 1:
            raise ConfigError(
                source,
                f"{where}.top_k",
                "1 for a ranker as the last component (it then returns the best candidate, as "
                "aggregation: rank does)",
                repr(final.get("top_k")),
            )
        aggregation = "rank"
    aggregator = _agent(final, pool, source, where)
    if aggregation == "synthesize" and aggregator.samples != 1:
        raise ConfigError(
            source,
            f"layers[{last}][0].samples",
            "1 for the last component (several samples would make Archon pick one at random)",
            str(aggregator.samples),
        )
    proposer_layers = tuple(
        tuple(_agent(c, pool, source, f"layers[{i}][{j}]") for j, c in enumerate(components))
        for i, components in enumerate(layers[:last])
    )
    ext = data.get(EXTENSION_KEY)
    ext = dict(ext) if isinstance(ext, Mapping) else {}
    name = data.get("name")
    fields: dict[str, Any] = {
        "name": ext["name"] if "name" in ext else (name if isinstance(name, str) else None),
        "layers": proposer_layers,
        "aggregator": aggregator,
        "aggregation": aggregation,
    }
    for key in ("aggregation", "aggregation_prompt", "quorum", "seed", "provenance"):
        if key in ext:
            fields[key] = ext[key]
    try:
        return MixtureConfig.model_validate(fields)
    except ValidationError as exc:
        err = format_validation_error(exc, source)
        field = f"{EXTENSION_KEY}.{err.field}" if err.field in ext else err.field
        raise ConfigError(source, field, err.expected, err.got) from None


def load_archon(path: str | os.PathLike[str], pool: Pool) -> MixtureConfig:
    """Read an Archon JSON config file and :func:`import_archon` it."""
    return import_archon(load_mapping(path, "Archon config"), pool, source=str(path))
