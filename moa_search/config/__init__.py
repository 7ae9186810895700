"""Configuration: model pools, mixtures, datasets and study specs, and loading them from files.

The bottom layer: it imports nothing of moa-search but :mod:`moa_search.errors`.
"""

from __future__ import annotations

from moa_search.config.mixture import (
    DEFAULT_AGGREGATION_PROMPT,
    REPLAY_BASE_URL,
    AgentSpec,
    MixtureConfig,
    ModelSpec,
    Pool,
    format_validation_error,
    load_mapping,
    load_mixture,
    load_pool,
    read_text_file,
    resolve_pool,
    save_mixture,
    save_pool,
)
from moa_search.config.dataset import (
    TaskItem,
    dataset_hash,
    load_dataset,
)
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
    "REFERENCE_MODEL",
    "Annotation",
    "ModelOutput",
    "load_annotations",
    "load_model_outputs",
    "AgentSpec",
    "BaselineSpec",
    "BudgetSpec",
    "ChooseSpec",
    "DEFAULT_AGGREGATION_PROMPT",
    "EvaluationSpec",
    "JudgeSpec",
    "MixtureConfig",
    "ModelSpec",
    "OBJECTIVES",
    "Pool",
    "REPLAY_BASE_URL",
    "SearchSpaceSpec",
    "StudySpec",
    "TaskItem",
    "dataset_hash",
    "format_validation_error",
    "load_dataset",
    "load_mapping",
    "load_mixture",
    "load_pool",
    "load_study_spec",
    "read_text_file",
    "resolve_pool",
    "save_mixture",
    "save_pool",
]
