"""Win rates: means, standard errors and intervals against hand-computed values."""

from __future__ import annotations

import numpy as np
import pytest

from moa_search.judges.stats import WinRate, win_rate


def test_normal_interval_hand_computed() -> None:
    # mean = 2.5 / 4; squared deviations .140625 + .390625 + .015625 + .140625 = .6875,
    # variance (ddof=1) = .6875 / 3 = .2291666..., std = .4787135538781691, stderr = std / 2
    wr = win_rate([1, 0, 0.5, 1])
    assert wr.n == 4
    assert wr.mean == pytest.approx(0.625)
    assert wr.stderr == pytest.approx(0.23935677693908453)
    # 0.625 - 1.959963984540054 * 0.23935677693908453
    assert wr.ci_low == pytest.approx(0.15586933774380696)
    assert wr.ci_high == 1.0  # 1.094... clipped
    assert wr.method == "normal" and wr.confidence == 0.95


def test_normal_interval_inside_bounds() -> None:
    # mean 0.6; squared deviations 6 * 0.01 + 3 * 0.16 + 0.36 = 0.9; variance 0.1;
    # stderr = sqrt(0.1) / sqrt(10) = 0.1 exactly
    wr = win_rate([0.5, 0.5, 1, 0, 1, 0.5, 0.5, 0.5, 1, 0.5])
    assert wr.mean == pytest.approx(0.6)
    assert wr.stderr == pytest.approx(0.1)
    assert wr.ci_low == pytest.approx(0.6 - 0.1959963984540054)
    assert wr.ci_high == pytest.approx(0.6 + 0.1959963984540054)
    wide = win_rate([0.5, 0.5, 1, 0, 1, 0.5, 0.5, 0.5, 1, 0.5], confidence=0.99)
    # z(0.995) = 2.5758293035489
    assert wide.ci_high == pytest.approx(0.6 + 0.25758293035489)


def test_single_preference_has_zero_stderr() -> None:
    for method in ("normal", "bootstrap"):
        wr = win_rate([0.5], method=method)  # type: ignore[arg-type]
        assert (wr.mean, wr.stderr, wr.ci_low, wr.ci_high, wr.n) == (0.5, 0.0, 0.5, 0.5, 1)


def test_all_wins_and_all_losses() -> None:
    assert win_rate([1.0] * 5) == WinRate(1.0, 0.0, 1.0, 1.0, 5)
    lost = win_rate([0.0] * 5, method="bootstrap")
    assert (lost.mean, lost.ci_low, lost.ci_high) == (0.0, 0.0, 0.0)


def test_bootstrap_is_seeded_percentile_interval() -> None:
    prefs = [1, 0, 0.5, 1, 1, 0, 1, 0.5, 1, 1, 0, 1]
    a = win_rate(prefs, method="bootstrap", n_boot=4000, seed=7)
    b = win_rate(prefs, method="bootstrap", n_boot=4000, seed=7)
    assert a == b
    # the same percentile interval computed directly
    rng = np.random.default_rng(7)
    values = np.asarray(prefs, dtype=float)
    means = values[rng.integers(0, len(prefs), size=(4000, len(prefs)))].mean(axis=1)
    low, high = np.quantile(means, [0.025, 0.975])
    assert a.ci_low == pytest.approx(low) and a.ci_high == pytest.approx(high)
    assert a.mean == pytest.approx(8 / 12)
    assert a.ci_low < a.mean < a.ci_high
    # and close to the normal interval for a sample this size
    normal = win_rate(prefs)
    assert a.stderr == normal.stderr
    assert abs(a.ci_low - normal.ci_low) < 0.08 and abs(a.ci_high - normal.ci_high) < 0.08


def test_bootstrap_chunks_large_inputs() -> None:
    prefs = [1.0, 0.0] * 2000  # 4,000 items x 600 resamples exceeds one chunk
    wr = win_rate(prefs, method="bootstrap", n_boot=600, seed=1)
    assert wr.ci_low < 0.5 < wr.ci_high
    assert wr.ci_high - wr.ci_low == pytest.approx(2 * 1.96 * wr.stderr, rel=0.2)


def test_to_dict() -> None:
    d = win_rate([1, 0]).to_dict()
    assert set(d) == {"mean", "stderr", "ci_low", "ci_high", "n", "confidence", "method"}
    assert d["mean"] == 0.5 and d["n"] == 2


@pytest.mark.parametrize(
    ("prefs", "kwargs"),
    [
        ([], {}),
        ([1.2], {}),
        ([-0.1, 0.5], {}),
        ([float("nan")], {}),
        ([1, 0], {"confidence": 1.0}),
        ([1, 0], {"confidence": 0.0}),
        ([1, 0], {"method": "wilson"}),
        ([1, 0], {"method": "bootstrap", "n_boot": 0}),
        ([[1, 0]], {}),
    ],
)
def test_invalid_input_raises(prefs: list, kwargs: dict) -> None:
    with pytest.raises(ValueError):
        win_rate(prefs, **kwargs)
