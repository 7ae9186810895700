"""The analysis as plain text: the role table (win rates in percentage points), then diversity."""

from __future__ import annotations

import math

from moa_search.analysis.result import AnalysisResult

__all__ = ["format_analysis"]


def _pct(v: float | None, signed: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v * 100:+.1f}" if signed else f"{v * 100:.1f}"


def format_analysis(result: AnalysisResult) -> str:
    """A plain-text report: the role table (win rates in percentage points), then diversity."""
    pct = round(result.confidence * 100)
    lines = [
        f"{result.n_trials} evaluated trials (ridge alpha {result.alpha:g}, {result.n_boot} "
        f"bootstrap resamples, {pct}% intervals; effects in win-rate points)",
        "",
        f"{'role':<10} {'layer':>5}  {'model':<28} {'effect':>7} {f'{pct}% CI':>16}  "
        f"{'with':>11} {'without':>11}",
    ]
    for r in result.roles:
        layer = (
            "any"
            if r.layer is None and r.role == "proposer"
            else ("-" if r.layer is None else str(r.layer))
        )
        ci = f"[{_pct(r.ci_low, True)}, {_pct(r.ci_high, True)}]" if r.ci_low is not None else "-"
        mark = "*" if r.significant else " "
        lines.append(
            f"{r.role:<10} {layer:>5}  {r.model:<28} {_pct(r.effect, True):>7} {ci:>16}{mark} "
            f"{_pct(r.mean_with):>6} ({r.n_with:>3}) {_pct(r.mean_without):>6} ({r.n_without:>3})"
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
