"""moa-search: find the best Mixture-of-Agents for your task, then run and serve it."""

from moa_search.runtime.mixture import Mixture
from moa_search.interop.archon import export_archon, import_archon
from moa_search.runtime.cache import Cache, CachedAnswer, MemoryCache, SQLiteCache
from moa_search.config import (
    AgentSpec,
    MixtureConfig,
    ModelSpec,
    Pool,
    load_mixture,
    load_pool,
    save_mixture,
    save_pool,
)
from moa_search.errors import (
    BudgetExceededError,
    ConfigError,
    MoaSearchError,
    ModelCallError,
    QuorumError,
)
from moa_search.runtime.executor import Executor, ProgressEvent, RunResult, RunStream
from moa_search.runtime.trace import CallRecord, Trace

__version__ = "0.1.0"

__all__ = [
    "AgentSpec",
    "BudgetExceededError",
    "Cache",
    "CachedAnswer",
    "CallRecord",
    "ConfigError",
    "Executor",
    "MemoryCache",
    "Mixture",
    "MixtureConfig",
    "MoaSearchError",
    "ModelCallError",
    "ModelSpec",
    "Pool",
    "ProgressEvent",
    "QuorumError",
    "RunResult",
    "RunStream",
    "SQLiteCache",
    "Trace",
    "__version__",
    "export_archon",
    "import_archon",
    "load_mixture",
    "load_pool",
    "save_mixture",
    "save_pool",
]
