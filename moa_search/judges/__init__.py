"""Judges and the scores built on their verdicts (win rate with intervals).

Judges use the runtime (a pairwise judge is a model call) and never import search.
"""

from __future__ import annotations

from moa_search.judges.core import (
    DEFAULT_JUDGE_SYSTEM_PROMPT,
    DEFAULT_TEMPLATE,
    CallableJudge,
    ExactMatchJudge,
    Judge,
    JudgeFunction,
    PairwiseLLMJudge,
    ReferenceEmbeddingJudge,
    TaskItem,
    Verdict,
    candidate_first,
    load_callable_judge,
    normalize_answer,
    order_seed,
    parse_verdict,
)
from moa_search.judges.recorded import (
    RecordedJudge,
)
from moa_search.judges.stats import (
    WinRate,
    win_rate,
)

__all__ = [
    "CallableJudge",
    "DEFAULT_JUDGE_SYSTEM_PROMPT",
    "DEFAULT_TEMPLATE",
    "ExactMatchJudge",
    "Judge",
    "JudgeFunction",
    "PairwiseLLMJudge",
    "RecordedJudge",
    "ReferenceEmbeddingJudge",
    "TaskItem",
    "Verdict",
    "WinRate",
    "candidate_first",
    "load_callable_judge",
    "normalize_answer",
    "order_seed",
    "parse_verdict",
    "win_rate",
]
