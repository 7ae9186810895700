"""Judges as data: a study spec's ``judge:`` section (:class:`JudgeSpec`) built into a judge.

Each kind a spec may name has one factory in :data:`JUDGE_FACTORIES`; :func:`build_judge`
looks the kind up and calls it with what judges may need from the study — its executor (the
pairwise judge's model calls), its embedder (the reference-embedding judge) and the spec's
folder (relative paths such as annotation files).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from types import MappingProxyType

from moa_search.config.recorded import load_annotations
from moa_search.config.study import JudgeSpec
from moa_search.errors import ConfigError
from moa_search.judges.base import Judge
from moa_search.judges.callable import load_callable_judge
from moa_search.judges.embedding import ReferenceEmbeddingJudge
from moa_search.judges.exact import ExactMatchJudge
from moa_search.judges.pairwise import PairwiseLLMJudge
from moa_search.judges.recorded import RecordedJudge
from moa_search.runtime.embeddings import TextEmbedder
from moa_search.runtime.executor import Executor

__all__ = ["JUDGE_FACTORIES", "JudgeContext", "JudgeFactory", "build_judge"]


@dataclass(frozen=True)
class JudgeContext:
    """What a judge factory may use besides the spec: the study's executor and embedder, and
    the folder that relative paths in the spec are relative to."""

    executor: Executor
    embedder: TextEmbedder
    folder: Path


#: Builds one kind of judge from its spec.
JudgeFactory = Callable[[JudgeSpec, JudgeContext], Judge]


def _reference_embedding(spec: JudgeSpec, ctx: JudgeContext) -> Judge:
    return ReferenceEmbeddingJudge(ctx.embedder)


def _pairwise_llm(spec: JudgeSpec, ctx: JudgeContext) -> Judge:
    assert spec.model is not None  # JudgeSpec requires it for this kind
    return PairwiseLLMJudge(ctx.executor, spec.model, both_orders=spec.both_orders)


def _exact_match(spec: JudgeSpec, ctx: JudgeContext) -> Judge:
    return ExactMatchJudge(pattern=spec.pattern)


def _recorded(spec: JudgeSpec, ctx: JudgeContext) -> Judge:
    assert spec.annotations is not None  # JudgeSpec requires them for this kind
    return RecordedJudge(
        [a for path in spec.annotations for a in load_annotations(ctx.folder / path)]
    )


def _callable(spec: JudgeSpec, ctx: JudgeContext) -> Judge:
    assert spec.function is not None  # JudgeSpec requires it for this kind
    return load_callable_judge(spec.function)


#: Every judge kind a study spec may name, and its factory.
JUDGE_FACTORIES: Mapping[str, JudgeFactory] = MappingProxyType(
    {
        "reference_embedding": _reference_embedding,
        "pairwise_llm": _pairwise_llm,
        "exact_match": _exact_match,
        "recorded": _recorded,
        "callable": _callable,
    }
)


def build_judge(
    spec: JudgeSpec, *, executor: Executor, embedder: TextEmbedder, folder: Path
) -> Judge:
    """The judge ``spec`` describes.

    Args:
        spec: the study spec's ``judge:`` section.
        executor: runs a pairwise judge's calls (its pool holds ``spec.model``).
        embedder: embeds answers for the reference-embedding judge.
        folder: what relative paths in ``spec`` (annotation files) are relative to.

    Raises:
        ConfigError: the kind has no factory, or the judge cannot be built from the spec (a
            model not in the pool, a bad pattern, an unreadable annotation file, a callable
            that cannot be imported).
    """
    factory = JUDGE_FACTORIES.get(spec.kind)
    if factory is None:
        raise ConfigError("judge", "kind", f"one of {', '.join(JUDGE_FACTORIES)}", repr(spec.kind))
    return factory(spec, JudgeContext(executor, embedder, Path(folder)))
