"""Configuration: model pools, mixtures, datasets and study specs, and loading them from files.

The bottom layer: it imports nothing of moa-search but :mod:`moa_search.errors`.
"""

from __future__ import annotations

from moa_search.config.dataset import (
    TaskItem,
    dataset_hash,
    load_dataset,
)
from moa_search.config.files import format_validation_error, load_mapping, read_text_file
from moa_search.config.mixture import (
    DEFAULT_AGGREGATION_PROMPT,
    AgentSpec,
    MixtureConfig,
    load_mixture,
    resolve_pool,
    save_mixture,
)
from moa_search.config.pool import ModelKind, ModelSpec, Pool, load_pool, save_pool
from moa_search.config.recorded import (
    REFERENCE_MODEL,
    Annotation,
    ModelOutput,
    load_annotations,
    load_model_outputs,
)
from moa_search.config.study import (
    OBJECTIVES,
    BaselineSpec,
    BudgetSpec,
    ChooseSpec,
    EvaluationSpec,
    JudgeSpec,
    SearchSpaceSpec,
    StudySpec,
    load_study_spec,
)

__all__ = [
    "DEFAULT_AGGREGATION_PROMPT",
    "OBJECTIVES",
    "REFERENCE_MODEL",
    "AgentSpec",
    "Annotation",
    "BaselineSpec",
    "BudgetSpec",
    "ChooseSpec",
    "EvaluationSpec",
    "JudgeSpec",
    "MixtureConfig",
    "ModelKind",
    "ModelOutput",
    "ModelSpec",
    "Pool",
    "SearchSpaceSpec",
    "StudySpec",
    "TaskItem",
    "dataset_hash",
    "format_validation_error",
    "load_annotations",
    "load_dataset",
    "load_mapping",
    "load_mixture",
    "load_model_outputs",
    "load_pool",
    "load_study_spec",
    "read_text_file",
    "resolve_pool",
    "save_mixture",
    "save_pool",
]
