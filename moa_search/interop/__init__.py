"""Interoperability with other tools' formats: AlpacaEval data (:mod:`.alpaca`) and Archon
configs (:mod:`.archon`, re-exported here).

Interop uses config, runtime and judges; nothing below it imports interop.
"""

from __future__ import annotations

from moa_search.interop.archon import (
    ARCHON_COMPONENT_TYPES,
    EXTENSION_KEY,
    FINAL_RANKER_TYPE,
    MODEL_TYPES_BY_HOST,
    OPENAI_COMPATIBLE_MODEL_TYPE,
    SUPPORTED_TYPES,
    export_archon,
    import_archon,
    load_archon,
    model_type_for,
    save_archon,
)

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
