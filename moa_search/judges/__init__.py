"""Judges and the scores built on their verdicts and on the outputs they compare.

- :mod:`~moa_search.judges.base` — :class:`Verdict` and the :class:`Judge` contract;
- one module per judge: :mod:`~moa_search.judges.pairwise` (:class:`PairwiseLLMJudge`,
  AlpacaEval-style, a pool model through the executor), :mod:`~moa_search.judges.embedding`
  (:class:`ReferenceEmbeddingJudge`), :mod:`~moa_search.judges.exact`
  (:class:`ExactMatchJudge`), :mod:`~moa_search.judges.callable` (:class:`CallableJudge`,
  :func:`load_callable_judge`), :mod:`~moa_search.judges.recorded` (:class:`RecordedJudge`);
- :mod:`~moa_search.judges.registry` — :func:`build_judge`, a study spec's judge section to a
  judge;
- :mod:`~moa_search.judges.stats` — win rates with intervals;
  :mod:`~moa_search.judges.diversity` — how different proposer outputs are.

Judges use the runtime (a pairwise judge is a model call) and never import search.
"""

from __future__ import annotations

from moa_search.config.dataset import TaskItem
from moa_search.judges.base import Judge, Verdict
from moa_search.judges.callable import CallableJudge, JudgeFunction, load_callable_judge
from moa_search.judges.diversity import diversity, mean_pairwise_cosine_distance
from moa_search.judges.embedding import ReferenceEmbeddingJudge
from moa_search.judges.exact import ExactMatchJudge, normalize_answer
from moa_search.judges.pairwise import (
    DEFAULT_JUDGE_SYSTEM_PROMPT,
    DEFAULT_TEMPLATE,
    PairwiseLLMJudge,
    candidate_first,
    order_seed,
    parse_verdict,
)
from moa_search.judges.recorded import RecordedJudge
from moa_search.judges.registry import JUDGE_FACTORIES, JudgeContext, JudgeFactory, build_judge
from moa_search.judges.stats import WinRate, win_rate

__all__ = [
    "DEFAULT_JUDGE_SYSTEM_PROMPT",
    "DEFAULT_TEMPLATE",
    "JUDGE_FACTORIES",
    "CallableJudge",
    "ExactMatchJudge",
    "Judge",
    "JudgeContext",
    "JudgeFactory",
    "JudgeFunction",
    "PairwiseLLMJudge",
    "RecordedJudge",
    "ReferenceEmbeddingJudge",
    "TaskItem",
    "Verdict",
    "WinRate",
    "build_judge",
    "candidate_first",
    "diversity",
    "load_callable_judge",
    "mean_pairwise_cosine_distance",
    "normalize_answer",
    "order_seed",
    "parse_verdict",
    "win_rate",
]
