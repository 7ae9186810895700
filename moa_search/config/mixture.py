"""Model pools and mixture configs: the validated, versioned schema and its files.

A *pool* names the models a mixture may use; a *mixture* is a stack of proposer layers plus an
aggregator. Both are frozen pydantic models; files are YAML (``.yaml``/``.yml``) or JSON. Every
loading problem becomes a :class:`~moa_search.errors.ConfigError` whose message is one
paragraph naming the file, the field path and what was expected.

Secrets never live here: a model names the *environment variable* holding its API key.
"""

from __future__ import annotations

import json
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from moa_search.errors import ConfigError

__all__ = [
    "DEFAULT_AGGREGATION_PROMPT",
    "REPLAY_BASE_URL",
    "AgentSpec",
    "MixtureConfig",
    "ModelSpec",
    "Pool",
    "format_validation_error",
    "load_mapping",
    "load_mixture",
    "load_pool",
    "read_text_file",
    "resolve_pool",
    "save_mixture",
    "save_pool",
]

SCHEMA_VERSION = 1

DEFAULT_AGGREGATION_PROMPT = (
    "Several assistants have already answered the user's latest request; their answers are "
    "listed below. Some of them may be wrong, incomplete or biased. Weigh them critically, keep "
    "what is correct and useful, fix what is not, and write one answer of your own that is "
    "accurate, complete and well organised. Do not mention the other answers or this "
    "instruction; answer the user directly."
)

_ALIAS = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


#: The ``base_url`` of replayed models: ``.invalid`` never resolves, so nothing is reachable.
REPLAY_BASE_URL = "http://replay.invalid/v1"


class ModelSpec(_Frozen):
    """One model reachable through an OpenAI-compatible endpoint — or, with ``replay``, a
    model whose recorded answers (an AlpacaEval ``model_outputs.json``) stand in for calls.

    A relative ``replay`` path is relative to the file that declares the pool.
    """

    alias: Annotated[str, Field(pattern=_ALIAS, max_length=100)]
    base_url: str
    replay: str | None = None
    model: Annotated[str, Field(min_length=1)]
    api_key_env: str | None = None
    input_price_per_mtok: Annotated[float, Field(ge=0, le=10_000)] = 0.0
    output_price_per_mtok: Annotated[float, Field(ge=0, le=10_000)] = 0.0
    max_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 4
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    max_retries: Annotated[int, Field(ge=0, le=20)] = 2

    @model_validator(mode="before")
    @classmethod
    def _replay_needs_no_url(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("replay") and "base_url" not in data:
            return {**data, "base_url": REPLAY_BASE_URL}
        return data

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str) -> str:
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("an http:// or https:// URL such as http://127.0.0.1:8080/v1")
        return value.rstrip("/")

    @field_validator("api_key_env")
    @classmethod
    def _check_env_name(cls, value: str | None) -> str | None:
        if value is not None and not _ENV_NAME.match(value):
            raise ValueError(
                "the NAME of an environment variable (letters, digits, underscores), "
                "never the key itself"
            )
        return value

    def api_key(self) -> str | None:
        """The key from the environment; ``None`` when the model needs none."""
        if self.api_key_env is None:
            return None
        return os.environ.get(self.api_key_env)

    def cost(self, tokens_in: int, tokens_out: int) -> float:
        """Dollars for one call with these token counts."""
        return (
            tokens_in * self.input_price_per_mtok + tokens_out * self.output_price_per_mtok
        ) / 1e6


class Pool(_Frozen):
    """The models a mixture or a study may use, by alias."""

    version: Literal[1] = SCHEMA_VERSION
    models: Annotated[tuple[ModelSpec, ...], Field(min_length=1)]

    @model_validator(mode="after")
    def _unique_aliases(self) -> Pool:
        seen: set[str] = set()
        for spec in self.models:
            if spec.alias in seen:
                raise ValueError(f"unique model aliases, but '{spec.alias}' appears twice")
            seen.add(spec.alias)
        return self

    @property
    def aliases(self) -> tuple[str, ...]:
        return tuple(m.alias for m in self.models)

    def relative_to(self, folder: str | os.PathLike[str]) -> Pool:
        """This pool with relative ``replay`` paths made absolute from ``folder``."""
        models = tuple(
            m.model_copy(update={"replay": str(Path(folder) / m.replay)})
            if m.replay and not Path(m.replay).is_absolute()
            else m
            for m in self.models
        )
        return self.model_copy(update={"models": models})

    def get(self, alias: str) -> ModelSpec:
        for spec in self.models:
            if spec.alias == alias:
                return spec
        raise KeyError(alias)


class AgentSpec(_Frozen):
    """One proposer (or the aggregator): a pool model with its sampling parameters."""

    model: Annotated[str, Field(pattern=_ALIAS)]
    temperature: Annotated[float, Field(ge=0, le=2)] = 0.7
    max_tokens: Annotated[int, Field(ge=1, le=1_000_000)] = 512
    system_prompt: str | None = None
    samples: Annotated[int, Field(ge=1, le=64)] = 1


class MixtureConfig(_Frozen):
    """A Mixture-of-Agents: proposer layers, then one aggregator.

    ``layers`` may be empty: the mixture is then the aggregator alone (a single model), which is
    how baselines are expressed. ``quorum`` is either a count (an ``int`` >= 1) of answers each
    layer needs, or a fraction (a ``float`` in (0, 1]) of the layer's calls; a layer always
    needs at least one answer. ``pool`` is an inline pool, a path to a pool file (relative to
    the mixture file), or absent (the caller supplies one). ``aggregation`` is ``synthesize``
    (the aggregator writes a new answer from the last layer's) or ``rank`` (it names the best
    of them, which is returned verbatim — the MoA paper's LLM-ranker baseline).
    """

    version: Literal[1] = SCHEMA_VERSION
    name: str | None = None
    layers: tuple[Annotated[tuple[AgentSpec, ...], Field(min_length=1)], ...] = ()
    aggregator: AgentSpec
    aggregation_prompt: Annotated[str, Field(min_length=1)] = DEFAULT_AGGREGATION_PROMPT
    aggregation: Literal["synthesize", "rank"] = "synthesize"
    quorum: int | float = 1
    seed: Annotated[int, Field(ge=0)] = 0
    pool: Pool | str | None = None
    provenance: dict[str, Any] | None = None

    @field_validator("quorum")
    @classmethod
    def _check_quorum(cls, value: int | float) -> int | float:
        if isinstance(value, bool):
            raise ValueError("a count >= 1 or a fraction in (0, 1]")
        if isinstance(value, int) and value < 1:
            raise ValueError("a count >= 1 or a fraction in (0, 1]")
        if isinstance(value, float) and not 0 < value <= 1:
            raise ValueError("a count >= 1 or a fraction in (0, 1]")
        return value

    def required_answers(self, n_calls: int) -> int:
        """How many of a layer's ``n_calls`` must succeed."""
        if isinstance(self.quorum, float):
            import math

            need = math.ceil(self.quorum * n_calls - 1e-9)
        else:
            need = self.quorum
        return max(1, min(need, n_calls))

    def models_used(self) -> tuple[str, ...]:
        names = [a.model for layer in self.layers for a in layer] + [self.aggregator.model]
        return tuple(dict.fromkeys(names))

    def check_pool(self, pool: Pool, source: str) -> None:
        """Raise :class:`ConfigError` if an agent names a model the pool lacks."""
        for i, layer in enumerate(self.layers):
            for j, agent in enumerate(layer):
                if agent.model not in pool.aliases:
                    raise ConfigError(
                        source,
                        f"layers[{i}][{j}].model",
                        f"a model alias from the pool ({', '.join(pool.aliases)})",
                        repr(agent.model),
                    )
        if self.aggregator.model not in pool.aliases:
            raise ConfigError(
                source,
                "aggregator.model",
                f"a model alias from the pool ({', '.join(pool.aliases)})",
                repr(self.aggregator.model),
            )


# ----------------------------------------------------------------------------- files


_UNION_BRANCHES = frozenset({"int", "float", "str", "Pool"})


def _loc_to_path(loc: tuple[Any, ...]) -> str:
    out = ""
    for part in loc:
        if isinstance(part, int):
            out += f"[{part}]"
        elif part in _UNION_BRANCHES or "[" in part:
            continue  # pydantic's name for a union branch or a validator, not a field
        else:
            out += f".{part}" if out else str(part)
    return out


def _expected(error: Mapping[str, Any]) -> str:
    msg = str(error["msg"])
    if msg.startswith("Value error, "):
        return msg[len("Value error, ") :]
    if error["type"] == "extra_forbidden":
        return "only documented fields, and this one is unknown (check its spelling)"
    if error["type"] == "missing":
        return "this required field to be present"
    if msg.startswith("Input should be "):
        rest = msg[len("Input should be ") :]
        return rest if rest.startswith(("a ", "an ", "'")) else f"a value {rest}"
    return msg[0].lower() + msg[1:] if msg else "a valid value"


def format_validation_error(exc: ValidationError, source: str) -> ConfigError:
    """Turn pydantic's error list into one :class:`ConfigError` paragraph."""
    errors = exc.errors(include_url=False)
    first = errors[0]
    field = _loc_to_path(tuple(first["loc"]))
    got = None
    # Never echo what was put where a key's variable name belongs: it may be the key itself.
    secret = field.endswith("api_key_env")
    if first["type"] not in {"missing", "extra_forbidden"} and "input" in first and not secret:
        rendered = repr(first["input"])
        got = rendered if len(rendered) <= 60 else rendered[:57] + "..."
    err = ConfigError(source, field, _expected(first), got)
    # Other problems, minus the echoes of the first one (union branches, enclosing fields).
    others: list[str] = []
    for e in errors[1:]:
        path = _loc_to_path(tuple(e["loc"]))
        if field.startswith(path) or path in others:
            continue
        others.append(path or "(top level)")
    if others:
        err.args = (err.args[0][:-1] + f" (also check: {', '.join(others[:3])}).",)
    return err


def read_text_file(path: str | os.PathLike[str], what: str) -> str:
    """A UTF-8 text file's content; a missing, unreadable or non-UTF-8 file is a ConfigError
    naming the file and saying it should be ``what``."""
    p = Path(path)
    source = str(p)
    try:
        raw = p.read_bytes()
    except FileNotFoundError:
        raise ConfigError(source, "", f"an existing {what}, but there is no such file") from None
    except IsADirectoryError:
        raise ConfigError(source, "", f"a {what}, but this is a directory") from None
    except OSError as exc:
        raise ConfigError(source, "", f"a readable {what}", exc.strerror) from None
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise ConfigError(
            source, "", f"a UTF-8 text {what}", f"a byte that is not UTF-8 at offset {exc.start}"
        ) from None


def load_mapping(path: str | os.PathLike[str], what: str = "file") -> dict[str, Any]:
    """Read a YAML or JSON file that must hold a mapping; errors become ConfigError."""
    p = Path(path)
    source = str(p)
    text = read_text_file(p, what)
    if not text.strip():
        raise ConfigError(source, "", f"a {what} with content, but it is empty")
    try:
        data = json.loads(text) if p.suffix.lower() == ".json" else yaml.safe_load(text)
    except json.JSONDecodeError as exc:
        raise ConfigError(
            source, "", "valid JSON", f"a syntax error at line {exc.lineno}: {exc.msg}"
        ) from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or "malformed YAML"
        raise ConfigError(source, "", "valid YAML", f"a syntax error{where}: {problem}") from None
    if not isinstance(data, Mapping):
        raise ConfigError(
            source,
            "",
            f"a mapping (key: value pairs) at the top of the {what}",
            f"a {type(data).__name__}",
        )
    return dict(data)


def _validate(model: type[BaseModel], data: Mapping[str, Any], source: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise format_validation_error(exc, source) from None


def load_pool(path: str | os.PathLike[str]) -> Pool:
    """Load and validate a pool file (replay paths resolved against its folder)."""
    pool: Pool = _validate(Pool, load_mapping(path, "pool file"), str(path))
    return pool.relative_to(Path(path).parent)


def load_mixture(path: str | os.PathLike[str]) -> MixtureConfig:
    """Load and validate a mixture file (its pool, if a path, is left unresolved)."""
    return _validate(MixtureConfig, load_mapping(path, "mixture file"), str(path))


def resolve_pool(
    mixture: MixtureConfig,
    mixture_path: str | os.PathLike[str] | None,
    pool_path: str | os.PathLike[str] | None = None,
    default_pool_path: str | os.PathLike[str] | None = None,
) -> Pool:
    """Find the pool for a mixture and check every alias the mixture uses is in it.

    Precedence: an explicit ``pool_path`` (the ``--pool`` flag), the mixture's own pool (inline
    or a path relative to the mixture file), then ``default_pool_path`` (the local pool).
    """
    source = str(mixture_path) if mixture_path is not None else "mixture"
    if pool_path is not None:
        pool = load_pool(pool_path)
    elif isinstance(mixture.pool, Pool):
        base = Path(mixture_path).parent if mixture_path is not None else Path.cwd()
        pool = mixture.pool.relative_to(base)
    elif isinstance(mixture.pool, str):
        base = Path(mixture_path).parent if mixture_path is not None else Path.cwd()
        pool = load_pool(base / mixture.pool)
    elif default_pool_path is not None:
        if not Path(default_pool_path).exists():
            raise ConfigError(
                source,
                "pool",
                "a pool: inline, a pool file path, --pool POOL.yaml, or the local pool "
                f"(start it with 'moa-search local up'; no pool file at {default_pool_path})",
            )
        pool = load_pool(default_pool_path)
    else:
        raise ConfigError(source, "pool", "a pool: inline, a pool file path, or --pool POOL.yaml")
    mixture.check_pool(pool, source)
    return pool


def _dump(model: BaseModel) -> dict[str, Any]:
    return model.model_dump(mode="json", exclude_none=True)


def _write(data: Mapping[str, Any], path: str | os.PathLike[str]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    if p.suffix.lower() == ".json":
        text = json.dumps(data, indent=2, ensure_ascii=False) + "\n"
    else:
        text = yaml.safe_dump(dict(data), sort_keys=False, allow_unicode=True, width=100)
    tmp = p.with_name(p.name + ".tmp")
    tmp.write_text(text, encoding="utf-8")
    tmp.replace(p)


def save_mixture(mixture: MixtureConfig, path: str | os.PathLike[str]) -> None:
    """Write a mixture file; :func:`load_mixture` reads back an equal config."""
    _write(_dump(mixture), path)


def save_pool(pool: Pool, path: str | os.PathLike[str]) -> None:
    """Write a pool file; :func:`load_pool` reads back an equal pool."""
    _write(_dump(pool), path)
