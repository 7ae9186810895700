"""Model pools: the models a mixture or a study may use, by alias.

A pool is a frozen pydantic model, read from and written to YAML or JSON files. Each model has a
``kind`` saying how it is reached: ``openai`` (an OpenAI-compatible endpoint at ``base_url``) or
``replay`` (recorded answers at the path ``replay``); the runtime picks the backend by kind.

Secrets never live here: a model names the *environment variable* holding its API key.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationInfo,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from moa_search.config.files import _save, _validate, load_mapping, looks_like_secret

__all__ = [
    "ModelKind",
    "ModelSpec",
    "Pool",
    "load_pool",
    "save_pool",
]

SCHEMA_VERSION: Literal[1] = 1

#: How a pool model is reached; the runtime has one backend per kind.
ModelKind = Literal["openai", "replay", "world"]

_ALIAS = r"^[A-Za-z0-9][A-Za-z0-9_.:-]*$"
_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


class _Frozen(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _missing() -> PydanticCustomError:
    """The error of an absent required field (reported like pydantic's own)."""
    return PydanticCustomError("missing", "Field required")


class ModelSpec(_Frozen):
    """One pool model, reached according to its ``kind``.

    ``openai`` (the default): a model behind an OpenAI-compatible endpoint at ``base_url``.
    ``replay``: a model whose recorded answers (an AlpacaEval ``model_outputs.json`` at the path
    ``replay``) stand in for calls; it has no ``base_url``. A model giving ``replay`` without a
    ``kind`` is a replay model. A relative ``replay`` path is relative to the file that declares
    the pool.
    """

    alias: Annotated[str, Field(pattern=_ALIAS, max_length=100)]
    kind: ModelKind = "openai"
    base_url: Annotated[str | None, Field(validate_default=True)] = None
    replay: Annotated[str | None, Field(validate_default=True)] = None
    model: Annotated[str, Field(min_length=1)]
    api_key_env: str | None = None
    input_price_per_mtok: Annotated[float, Field(ge=0, le=10_000)] = 0.0
    output_price_per_mtok: Annotated[float, Field(ge=0, le=10_000)] = 0.0
    max_concurrency: Annotated[int, Field(ge=1, le=10_000)] = 4
    timeout_s: Annotated[float, Field(gt=0, le=3600)] = 60.0
    max_retries: Annotated[int, Field(ge=0, le=20)] = 2

    @model_validator(mode="before")
    @classmethod
    def _replay_path_means_replay(cls, data: Any) -> Any:
        if isinstance(data, Mapping) and data.get("replay") and "kind" not in data:
            return {**data, "kind": "replay"}
        return data

    @field_validator("base_url")
    @classmethod
    def _check_url(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if kind == "replay":
            if value is not None:
                raise ValueError(
                    "no base_url for a model of kind 'replay': it answers from its recording "
                    "and is never reached over the network"
                )
            return None
        if value is None:
            if kind is None or kind == "world":
                return None  # kind invalid (reported instead), or an in-process test world
            raise _missing()
        if not re.match(r"^https?://[^\s/]+", value):
            raise ValueError("an http:// or https:// URL such as http://127.0.0.1:8080/v1")
        return value.rstrip("/")

    @field_validator("replay")
    @classmethod
    def _check_replay(cls, value: str | None, info: ValidationInfo) -> str | None:
        kind = info.data.get("kind")
        if kind == "replay" and not value:
            raise _missing()
        if kind == "openai" and value is not None:
            raise ValueError(
                "no replay path for a model of kind 'openai' (a recorded model has kind "
                "'replay', or no kind at all)"
            )
        return value

    @field_validator("api_key_env")
    @classmethod
    def _check_env_name(cls, value: str | None) -> str | None:
        if value is not None and (not _ENV_NAME.match(value) or looks_like_secret(value)):
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


def load_pool(path: str | os.PathLike[str]) -> Pool:
    """Load and validate a pool file (replay paths resolved against its folder)."""
    pool: Pool = _validate(Pool, load_mapping(path, "pool file"), str(path))
    return pool.relative_to(Path(path).parent)


def save_pool(pool: Pool, path: str | os.PathLike[str]) -> None:
    """Write a pool file; :func:`load_pool` reads back an equal pool."""
    _save(pool, path)
