"""How moa-search writes a win rate — one way everywhere — and the analysis as plain text.

A win rate, and a difference or effect on win rate, is a fraction with three decimals
(``0.122``; ``+0.035`` for a difference), as ``best`` prints it: :func:`fmt_win_rate` and
:func:`fmt_interval` are the one formatting of it, used by ``best``, ``search``, ``analyze``,
``report`` and ``winrate``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

from moa_search.analysis.importance import Importances, importance_vs_roles
from moa_search.analysis.result import AnalysisResult
from moa_search.analysis.roles import RoleEffect

__all__ = [
    "WIN_RATE_UNIT",
    "fmt_interval",
    "fmt_win_rate",
    "format_analysis",
    "format_importances",
]

#: What a printed win rate is, in words (for headers and notes).
WIN_RATE_UNIT = "win rate as a fraction (0 to 1)"


def fmt_win_rate(value: float | None, *, signed: bool = False, missing: str = "-") -> str:
    """A win rate (``0.122``), or with ``signed`` a difference or effect (``+0.035``); ``None``
    and non-finite values as ``missing``."""
    if value is None or not math.isfinite(value):
        return missing
    value = round(value, 3) + 0.0  # no "-0.000"
    return f"{value:+.3f}" if signed else f"{value:.3f}"


def fmt_interval(
    low: float | None, high: float | None, *, signed: bool = False, missing: str = "-"
) -> str:
    """An interval of win rates (or, ``signed``, of differences) as ``[low, high]``."""
    if low is None or high is None or not (math.isfinite(low) and math.isfinite(high)):
        return missing
    return f"[{fmt_win_rate(low, signed=signed)}, {fmt_win_rate(high, signed=signed)}]"


def format_analysis(result: AnalysisResult) -> str:
    """A plain-text report: the role table (win rates and effects as fractions), then
    diversity."""
    pct = round(result.confidence * 100)
    lines = [
        f"{result.n_trials} evaluated trials (ridge alpha {result.alpha:g}, {result.n_boot} "
        f"bootstrap resamples, {pct}% intervals; win rates and effects as fractions, 0 to 1)",
        "",
        f"{'role':<10} {'layer':>5}  {'model':<28} {'effect':>7} {f'{pct}% CI':>17}  "
        f"{'with':>12} {'without':>12}",
    ]
    for r in result.roles:
        layer = (
            "any"
            if r.layer is None and r.role == "proposer"
            else ("-" if r.layer is None else str(r.layer))
        )
        ci = fmt_interval(r.ci_low, r.ci_high, signed=True)
        mark = "*" if r.significant else " "
        effect = fmt_win_rate(r.effect, signed=True)
        with_, without = fmt_win_rate(r.mean_with), fmt_win_rate(r.mean_without)
        lines.append(
            f"{r.role:<10} {layer:>5}  {r.model:<28} {effect:>7} {ci:>17}{mark} "
            f"{with_:>6} ({r.n_with:>3}) {without:>6} ({r.n_without:>3})"
        )
    lines.append("* interval excludes 0; with/without: raw mean win rate (trials)")
    d = result.diversity
    lines.append("")
    if not d.diversity_varies:
        lines.append("diversity: constant across trials; nothing to estimate")
    else:

        def num(v: float | None, fmt: str = ".3f") -> str:
            return "-" if v is None or not math.isfinite(v) else format(v, fmt)

        lines += [
            "quality vs diversity:",
            f"  cross-validated R²: roles {num(d.r2_roles)}, roles + diversity "
            f"{num(d.r2_roles_diversity)} (adjusted: {num(d.adj_r2_roles)} -> "
            f"{num(d.adj_r2_roles_diversity)})",
            f"  diversity coefficient: {num(d.coefficient_per_sd, '+.4f')} win rate per SD "
            f"({num(d.coefficient, '+.3f')} per unit, {pct}% CI [{num(d.ci_low, '+.3f')}, "
            f"{num(d.ci_high, '+.3f')}])",
            f"  partial correlation: {num(d.partial_r, '+.3f')} (p = {num(d.p_value, '.3g')}, "
            f"{pct}% CI [{num(d.partial_r_ci_low, '+.3f')}, {num(d.partial_r_ci_high, '+.3f')}])",
            "  diversity explains win rate beyond the roles"
            if d.significant
            else "  no evidence that diversity explains win rate beyond the roles",
        ]
    return "\n".join(lines)


def format_importances(imp: Importances, roles: Sequence[RoleEffect] = ()) -> str:
    """The parameter importances for win rate as text, the method named, and why they disagree
    with the role analysis when they do."""
    if not imp.values:
        return imp.note
    lines = [
        f"parameter importances for win rate ({imp.evaluator}, seed {imp.seed}, "
        f"{imp.n_trials} complete trials; they sum to 1):"
    ]
    lines += [f"  {name:<28} {value:.3f}" for name, value in imp.values.items()]
    why = importance_vs_roles(imp, roles)
    if why:
        lines.append(why)
    return "\n".join(lines)
