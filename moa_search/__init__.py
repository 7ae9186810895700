"""moa-search: find the best Mixture-of-Agents for your task, then run and serve it.

The curated public API: the :class:`Mixture` to run a mixture from Python, the study runner
(:class:`SearchSession`, imported on first use so that ``import moa_search`` stays light), the
study spec, the judge contract, the config types and their loaders, the executor with its trace,
the caches and the errors. Everything else lives in the subpackages.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from moa_search._version import package_version
from moa_search.config import (
    AgentSpec,
    MixtureConfig,
    ModelSpec,
    Pool,
    StudySpec,
    load_mixture,
    load_pool,
    load_study_spec,
    save_mixture,
    save_pool,
)
from moa_search.errors import (
    AnalysisError,
    ConfigError,
    InvalidMixture,
    LocalServerError,
    MoaSearchError,
    ModelCallError,
    NotRecordedError,
    QuorumError,
)
from moa_search.interop.archon import export_archon, import_archon
from moa_search.runtime.cache import (
    Cache,
    CachedAnswer,
    MemoryCache,
    RedisCache,
    SQLiteCache,
    open_cache,
)
from moa_search.runtime.executor import Executor, ProgressEvent, RunResult, RunStream
from moa_search.runtime.mixture import Mixture
from moa_search.runtime.trace import CallRecord, Trace

if TYPE_CHECKING:
    from moa_search.judges import Judge, Verdict
    from moa_search.search.session import SearchSession

__all__ = [
    "AgentSpec",
    "AnalysisError",
    "Cache",
    "CachedAnswer",
    "CallRecord",
    "ConfigError",
    "Executor",
    "InvalidMixture",
    "Judge",
    "LocalServerError",
    "MemoryCache",
    "Mixture",
    "MixtureConfig",
    "MoaSearchError",
    "ModelCallError",
    "ModelSpec",
    "NotRecordedError",
    "Pool",
    "ProgressEvent",
    "QuorumError",
    "RedisCache",
    "RunResult",
    "RunStream",
    "SQLiteCache",
    "SearchSession",
    "StudySpec",
    "Trace",
    "Verdict",
    "__version__",
    "export_archon",
    "import_archon",
    "load_mixture",
    "load_pool",
    "load_study_spec",
    "open_cache",
    "save_mixture",
    "save_pool",
]


def __getattr__(name: str) -> Any:
    """:class:`SearchSession`, :class:`Judge` and :class:`Verdict` on first use: they bring in
    Optuna, the search layer, and every judge with numpy."""
    if name == "SearchSession":
        from moa_search.search.session import SearchSession

        return SearchSession
    if name == "__version__":
        return package_version()
    if name in ("Judge", "Verdict"):
        from moa_search import judges

        return getattr(judges, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
