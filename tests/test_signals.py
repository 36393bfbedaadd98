"""Tests for diagnose.signals: the statistics every detector relies on."""

from __future__ import annotations

import math
import warnings

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from diagnose import signals as S
from diagnose.metrics import Role, Series
from diagnose.run import Run, make_scalars


def _series(steps, values, tag="loss") -> Series:
    steps = np.asarray(steps, dtype="int64")
    return Series(tag, "loss", "train", Role.TRAIN_LOSS, steps,
                  np.asarray(values, dtype="float64"), np.full(len(steps), np.nan), False)


def _ema_loop(steps, values, tau):
    out = [values[0]]
    for i in range(1, len(values)):
        a = math.exp(-(steps[i] - steps[i - 1]) / tau)
        out.append(a * out[-1] + (1 - a) * values[i])
    return np.array(out)


# --- smoothing ---------------------------------------------------------------


def test_ema_matches_the_recursive_definition_on_uneven_steps():
    r = np.random.default_rng(0)
    steps = np.r_[np.arange(0, 200), np.arange(200, 50_000, 137)].astype(float)
    values = r.normal(0, 1, len(steps))
    np.testing.assert_allclose(S.ema(steps, values, 40.0), _ema_loop(steps, values, 40.0),
                               atol=1e-10)


def test_ema_with_tiny_tau_survives_long_runs_without_overflow():
    steps = np.arange(100_000, dtype=float)
    values = np.sin(steps / 50)
    out = S.ema(steps, values, 0.5)
    assert np.all(np.isfinite(out))
    # with tau = 0.5 steps the average forgets within a few points
    ref = _ema_loop(steps[-2000:], values[-2000:], 0.5)[-1000:]
    np.testing.assert_allclose(out[-1000:], ref, atol=1e-9)


def test_ema_skips_nonfinite_and_carries_the_average():
    steps = np.arange(6, dtype=float)
    out = S.ema(steps, np.array([1.0, 1.0, np.nan, np.inf, 1.0, 1.0]), 2.0)
    assert np.all(np.isfinite(out)) and np.allclose(out, 1.0)


def test_ema_smooths_by_steps_not_points():
    """The same curve logged every step or every 10 steps gives the same EMA there."""
    dense = np.arange(0, 2000, dtype=float)
    sparse = dense[::10]
    curve = np.exp(-dense / 300)
    a = S.ema(dense, curve, 50.0)[::10]
    b = S.ema(sparse, curve[::10], 50.0)
    assert np.max(np.abs(a - b)) < 0.02


def test_rolling_median_ignores_a_short_spike():
    steps = np.arange(200)
    v = np.ones(200)
    v[100:102] = 50.0
    out = S.rolling_median(steps, v, 20)
    assert np.allclose(out, 1.0)


@pytest.mark.parametrize("matrix_max", [10**9, 0])  # padded-matrix path, pandas path
@pytest.mark.parametrize("center", [True, False])
def test_rolling_median_matches_brute_force_on_uneven_steps_with_nan(center, matrix_max,
                                                                     monkeypatch):
    monkeypatch.setattr(S, "_MATRIX_MAX", matrix_max)
    r = np.random.default_rng(11)
    s = np.r_[np.arange(0, 300), np.arange(300, 5000, 7)]
    v = r.normal(0, 1, len(s))
    v[::37] = np.nan
    got = S.rolling_median(s, v, 50, center=center)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # all-NaN windows -> NaN
        if center:
            want = [np.nanmedian(v[(s >= x - 25) & (s <= x + 25)]) for x in s]
        else:
            want = [np.nanmedian(v[(s > x - 50) & (s <= x)]) for x in s]
    np.testing.assert_allclose(got, want, equal_nan=True)


@pytest.mark.parametrize("matrix_max", [10**9, 0])
def test_rolling_quantile_matches_numpy(matrix_max, monkeypatch):
    monkeypatch.setattr(S, "_MATRIX_MAX", matrix_max)
    r = np.random.default_rng(12)
    s = np.arange(0, 3000, 3)
    v = r.normal(0, 1, len(s))
    got = S.rolling_quantile(s, v, 60, 0.9)
    want = [np.quantile(v[(s >= x - 30) & (s <= x + 30)], 0.9) for x in s]
    np.testing.assert_allclose(got, want, atol=1e-12)


def test_rolling_median_window_is_in_steps():
    steps = np.r_[np.arange(10), np.arange(10, 10_000, 1000)]
    v = np.r_[np.zeros(10), np.ones(10)]
    out = S.rolling_median(steps, v, 5)
    assert out[-1] == 1.0 and out[0] == 0.0


def test_smooth_handles_edge_cases():
    assert len(S.smooth([], [])[1]) == 0
    assert len(S.smooth([1], [np.nan])[1]) == 0
    _s, v = S.smooth([5], [2.0])
    assert list(v) == [2.0]


# --- windows -----------------------------------------------------------------


def test_tail_is_by_step_not_by_index():
    # dense early logging: 900 points in the first 10% of steps, 100 in the rest
    steps = np.r_[np.arange(900), np.linspace(900, 9000, 100).astype(int)]
    s = _series(np.unique(steps), np.zeros(len(np.unique(steps))))
    t = S.tail(s, 0.2)
    assert t.steps[0] >= 9000 - 0.2 * 9000
    assert len(t) < 30


def test_downsample_keeps_range_and_mean():
    r = np.random.default_rng(1)
    steps = np.arange(1_000_000)
    v = r.normal(3.0, 1.0, len(steps))
    bs, bv = S.downsample_arrays(steps, v, 1000)
    assert len(bv) == 1000
    assert bs[0] < 1000 and bs[-1] > 998_000
    assert abs(bv.mean() - v.mean()) < 1e-3
    _, mx = S.downsample_arrays(steps, v, 1000, "max")
    assert mx.max() == v.max()


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(-1e6, 1e6), min_size=0, max_size=300),
       st.integers(1, 50))
def test_downsample_never_grows_and_keeps_extremes(values, max_points):
    v = np.array(values, dtype=float)
    steps = np.arange(len(v)) * 3
    bs, bv = S.downsample_arrays(steps, v, max_points, "max")
    assert len(bv) <= max(len(v), 0) and len(bv) == len(bs)
    if len(v) > max_points:
        assert len(bv) <= max_points
    if len(v):
        assert bv.max() == v.max()
        assert np.all(np.diff(bs) > 0)


# --- robust statistics ----------------------------------------------------------


def test_noise_floor_recovers_sigma_under_a_trend():
    r = np.random.default_rng(2)
    steps = np.arange(5000)
    v = 5 * np.exp(-steps / 1000) + r.normal(0, 0.1, len(steps))
    assert 0.08 < S.noise_floor(v) < 0.12
    assert 0.08 < S.noise_floor(v, steps, method="residual") < 0.12


def test_noise_floor_of_constant_or_short_is_zero():
    assert S.noise_floor(np.ones(100)) == 0.0
    assert S.noise_floor(np.array([1.0, 2.0])) == 0.0


def test_robust_trend_finds_a_known_slope_and_ignores_outliers():
    r = np.random.default_rng(3)
    steps = np.arange(0, 2000, 2)
    v = 0.001 * steps + r.normal(0, 0.05, len(steps))
    v[::50] += 40  # outliers
    tr = S.robust_trend(steps, v)
    assert tr.slope_lo < 0.001 < tr.slope_hi or abs(tr.slope - 0.001) < 1e-4
    assert tr.rising()
    assert tr.change == pytest.approx(2.0, rel=0.1)


def test_robust_trend_flat_noise_is_not_a_trend():
    r = np.random.default_rng(4)
    steps = np.arange(3000)
    tr = S.robust_trend(steps, r.normal(1.0, 0.2, len(steps)))
    assert not tr.rising() and not tr.falling()
    assert tr.flat(1.0)


def test_robust_trend_effect_gate_rejects_tiny_but_significant_slopes():
    """A slope far below the noise has a tiny effect even when n makes it 'significant'."""
    r = np.random.default_rng(5)
    steps = np.arange(200_000)
    v = 1e-7 * steps + r.normal(0, 1.0, len(steps))
    tr = S.robust_trend(steps, v)
    assert tr.effect < 3 and not tr.rising()


def test_robust_trend_too_short_is_nan():
    tr = S.robust_trend([1, 2], [1.0, 2.0])
    assert math.isnan(tr.slope) and tr.n == 2


def test_two_segment_fit_finds_the_break():
    r = np.random.default_rng(6)
    steps = np.arange(1000)
    v = np.where(steps < 600, 2 - steps / 600, 1.0) + r.normal(0, 0.02, 1000)
    fit = S.two_segment_fit(steps, v)
    assert abs(fit.break_step - 600) < 40
    assert fit.slope_before < 0 and abs(fit.slope_after) < abs(fit.slope_before) / 10
    assert fit.gain > 0.5
    assert S.two_segment_fit([1, 2, 3], [1.0, 2.0, 3.0]) is None


def test_rise_onset_locates_the_turn():
    r = np.random.default_rng(7)
    steps = np.arange(1000)
    v = np.where(steps < 500, 2 - steps / 500, 1 + (steps - 500) / 250) + r.normal(0, 0.02, 1000)
    on = S.rise_onset(steps, v)
    assert 420 < on.min_step < 580 and on.rise > 1.5 and on.sustained > 0.8


def test_early_drop_is_sign_agnostic():
    steps = np.arange(100)
    neg = -3.8e6 - 1e5 * (1 - np.exp(-steps / 10))
    # start = median of the first 10% of steps (-3.836e6), best = -3.9e6
    assert 5e4 < S.early_drop(steps, neg) < 1e5
    assert S.early_drop(steps, -neg) == 0.0  # a rising curve has no early drop


def test_spikes_found_and_recovered():
    r = np.random.default_rng(8)
    steps = np.arange(2000)
    v = 1 + r.normal(0, 0.02, 2000)
    for s in (300, 900, 1500):
        v[s] += 1.0
    found, noise = S.spikes(steps, v)
    assert [sp.step for sp in found] == [300, 900, 1500]
    assert all(sp.end_step is not None for sp in found)
    assert 0.015 < noise < 0.04


def test_spikes_none_in_pure_heavy_tailed_noise():
    r = np.random.default_rng(9)
    steps = np.arange(20_000)
    v = r.gamma(8.0, 1 / 8.0, len(steps))
    found, _ = S.spikes(steps, v, k=6)
    assert len(found) <= 1


def test_spikes_on_a_million_points_keep_a_short_spike_visible():
    r = np.random.default_rng(10)
    steps = np.arange(1_000_000)
    v = r.normal(0, 0.05, len(steps))
    v[654_321] = 3.0
    found, _ = S.spikes(steps, v)
    assert len(found) == 1 and abs(found[0].step - 654_321) < 100


# --- best so far -------------------------------------------------------------


def test_running_best_and_step_of_best_skip_nan():
    v = np.array([3.0, np.nan, 2.0, 5.0, 1.0])
    np.testing.assert_array_equal(S.running_best(v), [3, 3, 2, 2, 1])
    np.testing.assert_array_equal(S.running_best(v, True), [3, 3, 3, 5, 5])
    assert S.step_of_best(np.arange(5) * 10, v) == (40, 1.0)
    step, value = S.step_of_best(np.arange(2), np.array([np.nan, np.nan]))
    assert step is None and math.isnan(value)


# --- chance levels -----------------------------------------------------------


def test_chance_levels():
    assert S.chance_loss(10) == pytest.approx(math.log(10))
    assert S.chance_accuracy(4) == 0.25


def _run(tags_values, hparams=None):
    import pandas as pd

    frames = [make_scalars(tag, np.arange(len(v)), v) for tag, v in tags_values.items()]
    return Run("r", path=".", format="csv", scalars=pd.concat(frames, ignore_index=True),
               hparams=hparams or {}).finalize()


def test_infer_num_classes_from_hparams_first():
    run = _run({"train_loss": [1.0, 0.5]}, {"num_classes": 7})
    assert S.infer_num_classes(run) == 7
    run = _run({"train_loss": [1.0, 0.5]}, {"nc": "3"})
    assert S.infer_num_classes(run) == 3


def test_infer_num_classes_needs_two_agreeing_signals():
    # a first loss at ln 6 alone proves nothing (Keras logs it after an epoch) ...
    run = _run({"train_loss": [math.log(6) + 0.01, 1.7, 1.5]})
    assert S.infer_num_classes(run) is None
    # ... confirmed by the other split's first loss, it does, when the loss is named
    # cross-entropy (an MSE on standardised targets starts near 1.0-1.1 = ln 3)
    run = _run({"train/ce_loss": [math.log(4) + 0.01, 1.2, 1.1],
                "val/ce_loss": [math.log(4) - 0.01, 1.1, 1.0]})
    assert S.infer_num_classes(run) == 4
    run = _run({"train_loss": [math.log(3) + 0.01, 0.9, 0.8],
                "val_loss": [math.log(3) - 0.01, 0.9, 0.8]})
    assert S.infer_num_classes(run) is None
    # the same split's accuracy at the same step near 1/C confirms
    run = _run({"val_loss": [math.log(4) + 0.01, 0.8], "val_acc": [0.251, 0.3]})
    assert S.infer_num_classes(run) == 4
    # an accuracy alone, or one that contradicts the loss, is not enough
    run = _run({"val_loss": [0.9, 0.8], "val_acc": [0.251, 0.3]})
    assert S.infer_num_classes(run) is None
    run = _run({"train_loss": [math.log(6), 1.7, 1.5], "train_acc": [0.7, 0.8, 0.85]})
    assert S.infer_num_classes(run) is None
    run = _run({"train_loss": [0.9, 0.5, 0.4]})
    assert S.infer_num_classes(run) is None


def test_a_count_that_neighbours_fit_as_well_says_so_and_splits_must_agree():
    """An untrained loss sits at or a little above ln C (Jensen): 2.40 is ln 11, or ln 10
    plus an ordinary excess: the chance level is right to a few percent, the count is
    approximate and its source says which counts fit; the splits must not contradict."""
    found = S.class_count(_run({"train_loss": [2.403, 1.9], "train_acc": [0.086, 0.3]}))
    assert found is not None and found.n == 11 and "(about: 10-12 fit too)" in found.source
    found = S.class_count(_run({"train_loss": [math.log(3) + 0.01, 0.6],
                                "train_acc": [0.33, 0.8]}))
    assert found is not None and found.n == 3 and "about" not in found.source
    # 1.42 says 4 with a batch accuracy of 0.27; the val loss's first value says 3
    run = _run({"train_loss": [1.42, 0.4, 0.2], "train_acc": [0.27, 0.9, 0.95],
                "val_loss": [1.12, 0.4, 0.3], "val_acc": [0.30, 0.85, 0.9]})
    assert S.infer_num_classes(run) is None
    run = _run({"train_loss": [1.13, 0.4, 0.2], "train_acc": [0.32, 0.9, 0.95],
                "val_loss": [1.12, 0.4, 0.3], "val_acc": [0.30, 0.85, 0.9]})
    assert S.infer_num_classes(run) == 3


def test_an_untrained_first_loss_a_little_above_ln_c_names_c():
    """0.76 is ln 2 + 0.07: an untrained binary model's first loss (logits that do not
    depend on the label cost at least ln C); no other count fits it.  At the END of a
    run the same value is a 3-class model that learned a little: no count from there."""
    run = _run({"train_loss": [0.76, 0.5, 0.4], "train_acc": [0.5, 0.8, 0.85]})
    assert S.infer_num_classes(run) == 2
    loss = [0.9, 0.8] + [0.76] * 20
    acc = [0.6, 0.55] + [0.5] * 20
    assert S.infer_num_classes(_run({"val_loss": loss, "val_acc": acc})) is None


def test_infer_num_classes_from_a_run_stuck_at_chance_at_its_end():
    # first values logged after training started, but the run ends at ln 3 and 1/3
    loss = [0.73, 1.9, 1.3] + [math.log(3) + 0.01] * 20
    acc = [0.5, 0.4, 0.35] + [0.33] * 20
    run = _run({"val_loss": loss, "val_acc": acc})
    assert S.infer_num_classes(run) == 3


def test_infer_num_classes_from_per_class_columns():
    cols = {f"class_{i}_acc": [0.5, 0.6] for i in range(10)}
    assert S.infer_num_classes(_run({"train_loss": [1.0, 0.5], **cols})) == 10
    # indices that are not 0..C-1 prove nothing
    cols = {"class_3_acc": [0.5, 0.6], "class_7_acc": [0.5, 0.6]}
    assert S.infer_num_classes(_run({"train_loss": [1.0, 0.5], **cols})) is None


def test_spikes_on_a_short_run_are_not_hidden_by_their_own_window():
    """60 points (examples/train.py --lr 1.5): a 5% window is 3 points, and spikes in a
    6-point noise window inflate their own noise; the window spans >= 7 step gaps."""
    rng = np.random.default_rng(0)
    steps = np.arange(5, 305, 5)
    v = np.log10(1.2) + rng.normal(0, 0.03, 60)
    v[[4, 13, 19]] += [1.2, 0.8, 0.5]  # x16, x6, x3
    v[[1, 2, 8]] += [0.3, -0.2, 0.25]  # the early thrash around them
    found, _ = S.spikes(steps, v, k=6.0, window_frac=0.05)
    assert {25, 70, 100} <= {sp.step for sp in found}
    narrow, _ = S.spikes(steps, v, k=6.0, window_frac=0.05, min_window_points=0)
    assert 100 not in {sp.step for sp in narrow}
