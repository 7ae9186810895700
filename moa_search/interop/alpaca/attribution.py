"""Which proposers a recorded mixture's aggregator draws on: the attribution measure of
:mod:`moa_search.analysis.attribution` applied to AlpacaEval's recorded outputs — a mixture's
final answers (e.g. ``Together-MoA``) against its proposers' recorded answers.

The proposers' recordings are their answers to the instruction alone, i.e. what they answer in a
mixture's first layer. A mixture of several layers (Together-MoA has three) aggregates later
layers' answers, which are not recorded; the shares then measure how much of each proposer's own
first answer survives into the final one.
"""

from __future__ import annotations

import os
from collections.abc import Sequence

from moa_search.analysis.attribution import (
    DEFAULT_N,
    AttributionResult,
    PromptOutputs,
    summarize,
)
from moa_search.config.recorded import load_model_outputs
from moa_search.errors import ConfigError
from moa_search.interop.alpaca.io import _OUTPUTS_FILE, REFERENCE_MODEL, _results_dir

__all__ = ["TOGETHER_MOA", "TOGETHER_MOA_PROPOSERS", "recorded_attribution"]

#: The recorded mixture AlpacaEval publishes.
TOGETHER_MOA = "Together-MoA"
#: Together-MoA's proposers (Wang et al. 2024) that AlpacaEval's results record
#: (WizardLM-2-8x22B's outputs are not among them). Qwen1.5-110B-Chat is also its aggregator.
TOGETHER_MOA_PROPOSERS = (
    "Qwen1.5-110B-Chat",
    "Qwen1.5-72B-Chat",
    "Meta-Llama-3-70B-Instruct",
    "Mixtral-8x22B-Instruct-v0.1",
    "dbrx-instruct",
)


def recorded_attribution(
    results_dir: str | os.PathLike[str],
    mixture: str = TOGETHER_MOA,
    proposers: Sequence[str] = TOGETHER_MOA_PROPOSERS,
    *,
    control: str | None = REFERENCE_MODEL,
    limit: int | None = None,
    n: int = DEFAULT_N,
    confidence: float = 0.95,
) -> AttributionResult:
    """How much of ``mixture``'s recorded final answers comes from each of ``proposers``'
    recorded answers, over the instructions ``mixture`` answered (the first ``limit`` of them,
    in its file's order); a proposer with no recording of an instruction counts as a failed
    call there. ``control`` is a model the mixture never saw (default: AlpacaEval's reference,
    gpt4_1106_preview), attributed beside the proposers as the chance level; ``None`` for none.

    Raises:
        ConfigError: ``results_dir`` holds no recorded outputs of a model named, or a file is
            malformed; no proposer is named.
    """
    if not proposers:
        raise ConfigError("proposers", "", "at least one proposer model", "none")
    results = _results_dir(results_dir)
    tables: dict[str, dict[str, str]] = {}
    for model in dict.fromkeys((mixture, *proposers, *([control] if control else []))):
        path = results / model / _OUTPUTS_FILE
        if not path.is_file():
            raise ConfigError(
                str(results_dir),
                "",
                f"recorded outputs of '{model}' at results/{model}/{_OUTPUTS_FILE}",
                "no such file",
            )
        tables[model] = {o.instruction: o.output for o in load_model_outputs(path)}
    outputs: list[PromptOutputs] = []
    for i, (instruction, final) in enumerate(tables[mixture].items()):
        if limit is not None and i >= limit:
            break
        layer = tuple((p, tables[p].get(instruction)) for p in proposers)
        ctl = tables[control].get(instruction) if control else None
        outputs.append(PromptOutputs(str(i), final, (layer,), control=ctl))
    return summarize(
        outputs,
        n=n,
        confidence=confidence,
        source=f"recorded AlpacaEval outputs, {len(outputs)} instructions",
        mixture=f"{mixture} against {len(proposers)} recorded proposers",
        control=f"{control}'s recorded answer" if control else None,
    )
