"""Signal processing for training curves: the statistics every detector shares.

Training curves are noisy, autocorrelated, logged at uneven step intervals (dense during
epoch 1, every eval later; restarts), sometimes a million points long, and sometimes
negative by design (Poisson NLL, ELBO).  Everything here therefore

* works in **step** units, never in index units, so a window means the same thing whether
  a run logs every step or every 500 steps;
* is robust (medians, MAD, Theil-Sen) so one spike does not move a baseline;
* is scale-free and sign-agnostic where a decision depends on it: sizes are measured
  against a curve's own noise floor or its own early drop, never as ratios of raw values
  that could be negative;
* downsamples before anything super-linear, so a 1M-point series costs milliseconds.

Functions take plain ``(steps, values)`` arrays unless they say they take a
:class:`diagnose.metrics.Series`; non-finite values are the caller's business except
where a docstring says they are skipped.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable
from dataclasses import dataclass, replace

import numpy as np
import pandas as pd

from diagnose.metrics import RoleMap, Series

#: Robust sigma from a median absolute deviation (normal consistency constant).
MAD_TO_SIGMA = 1.4826

#: Cap on points fed to O(n^2) statistics (Theil-Sen, Kendall tau, two-segment fits).
TREND_MAX_POINTS = 400

__all__ = [
    "ClassCount",
    "Onset",
    "Spike",
    "Trend",
    "TwoSegment",
    "accuracy_quantum",
    "best_so_far",
    "chance_accuracy",
    "chance_loss",
    "class_count",
    "downsample",
    "downsample_arrays",
    "early_drop",
    "ema",
    "infer_num_classes",
    "mad_sigma",
    "noise_floor",
    "rise_onset",
    "robust_scale",
    "robust_trend",
    "rolling_median",
    "running_best",
    "smooth",
    "spikes",
    "step_of_best",
    "tail",
    "two_segment_fit",
    "window",
]


# ---------------------------------------------------------------------------
# Basic robust statistics
# ---------------------------------------------------------------------------


#: Robust scale estimates use at most this many (evenly strided) points: the estimate's
#: error is already ~0.3% there and medians of 1M points cost 30 ms each.
SCALE_MAX_POINTS = 100_000


def _thin(v: np.ndarray, max_n: int = SCALE_MAX_POINTS) -> np.ndarray:
    return v[:: -(-len(v) // max_n)] if len(v) > max_n else v


def mad_sigma(values: np.ndarray) -> float:
    """Robust standard deviation (1.4826 x MAD) of the finite values; 0.0 when < 2.
    Long inputs are strided down to :data:`SCALE_MAX_POINTS` first."""
    v = _thin(np.asarray(values, dtype="float64"))
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return 0.0
    return float(MAD_TO_SIGMA * np.median(np.abs(v - np.median(v))))


def robust_scale(values: np.ndarray) -> float:
    """A spread that is never zero for a non-constant curve: MAD sigma, else IQR/1.349,
    else mean absolute deviation (a step curve can have MAD 0 and still move)."""
    v = np.asarray(values, dtype="float64")
    v = v[np.isfinite(v)]
    if len(v) < 2:
        return 0.0
    s = mad_sigma(v)
    if s > 0:
        return s
    q75, q25 = np.percentile(v, [75, 25])
    if q75 > q25:
        return float((q75 - q25) / 1.349)
    return float(np.mean(np.abs(v - np.mean(v))))


def noise_floor(values: np.ndarray, steps: np.ndarray | None = None,
                method: str = "diff") -> float:
    """Point-to-point noise of a curve, robust to its trend and to spikes.

    ``method="diff"`` (default): MAD sigma of first differences / sqrt(2): cheap, and a
    smooth trend barely contributes.  ``method="residual"``: MAD sigma of the residuals
    from a centred rolling median (needs ``steps``); better when the trend is steep
    relative to the noise.  Non-finite values are skipped.  Returns 0.0 for a constant or
    too-short curve, so callers should floor it with a scale of their own.
    """
    v = np.asarray(values, dtype="float64")
    ok = np.isfinite(v)
    v = v[ok]
    if len(v) < 3:
        return 0.0
    if method == "residual" and steps is not None:
        s = np.asarray(steps)[ok]
        span = float(s[-1] - s[0]) if len(s) > 1 else 0.0
        med = rolling_median(s, v, max(span / 20.0, 1.0))
        return mad_sigma(v - med)
    d = np.diff(v)
    return mad_sigma(d) / math.sqrt(2.0)


# ---------------------------------------------------------------------------
# Windows and downsampling (by step, never by index)
# ---------------------------------------------------------------------------


def _as_series(like: Series, steps: np.ndarray, values: np.ndarray,
               wall: np.ndarray | None = None) -> Series:
    if wall is None:
        wall = np.full(len(steps), np.nan)
    return replace(like, steps=np.asarray(steps, dtype="int64"),
                   values=np.asarray(values, dtype="float64"), wall_time=wall)


def window(series: Series, start: float | None = None, end: float | None = None) -> Series:
    """Points with ``start <= step <= end`` (either bound may be None)."""
    ok = np.ones(len(series.steps), dtype=bool)
    if start is not None:
        ok &= series.steps >= start
    if end is not None:
        ok &= series.steps <= end
    return _as_series(series, series.steps[ok], series.values[ok], series.wall_time[ok])


def tail(series: Series, frac: float) -> Series:
    """The last ``frac`` of the run measured in steps (not points): with dense early
    logging, the last 20% of points can be the last 2% of training."""
    if len(series) == 0:
        return series
    first, last = float(series.steps[0]), float(series.steps[-1])
    return window(series, start=last - frac * (last - first))


def downsample_arrays(steps: np.ndarray, values: np.ndarray, max_points: int,
                      how: str = "mean") -> tuple[np.ndarray, np.ndarray]:
    """Bin a curve into at most ``max_points`` equal-width step bins.

    ``how`` is ``mean`` (noise-reducing, the default), ``min``, ``max`` (keeps spikes
    visible) or ``last``.  Non-finite values are dropped first; each bin's step is the
    mean step of its points.  Steps must be increasing.  O(n), vectorised.
    """
    s = np.asarray(steps, dtype="float64")
    v = np.asarray(values, dtype="float64")
    ok = np.isfinite(v)
    if not ok.all():
        s, v = s[ok], v[ok]
    n = len(v)
    if n <= max_points or max_points < 1:
        return s, v
    lo, hi = s[0], s[-1]
    width = (hi - lo) / max_points
    if width <= 0:
        return s[-1:], v[-1:]
    # bin k holds lo + k*width <= step < lo + (k+1)*width; with sorted steps each bin is a
    # contiguous run, so its first index is a binary search (no per-point arithmetic).
    edges = lo + width * np.arange(1, max_points)
    starts = np.unique(np.r_[0, np.searchsorted(s, edges, side="left")])
    starts = starts[starts < n]
    counts = np.diff(np.r_[starts, n])
    bs = np.add.reduceat(s, starts) / counts
    if how == "mean":
        bv = np.add.reduceat(v, starts) / counts
    elif how == "max":
        bv = np.maximum.reduceat(v, starts)
    elif how == "min":
        bv = np.minimum.reduceat(v, starts)
    elif how == "last":
        bv = v[np.r_[starts[1:] - 1, n - 1]]
    else:
        raise ValueError(f"unknown downsample method {how!r}")
    return bs, bv


def downsample(series: Series, max_points: int, how: str = "mean") -> Series:
    """:func:`downsample_arrays` on a Series (steps rounded back to int)."""
    if len(series) <= max_points:
        return series
    s, v = downsample_arrays(series.steps, series.values, max_points, how)
    return _as_series(series, np.round(s).astype("int64"), v)


# ---------------------------------------------------------------------------
# Smoothing that respects uneven steps
# ---------------------------------------------------------------------------


def ema(steps: np.ndarray, values: np.ndarray, tau: float) -> np.ndarray:
    """Exponential moving average with a time constant of ``tau`` **steps**.

    Each point's weight is ``1 - exp(-dt / tau)`` with ``dt`` the step gap, so a curve
    logged every step and the same curve logged every 100 steps smooth alike (a fixed
    per-point alpha, as in TensorBoard, would smooth the sparse one 100x less).
    Non-finite values are skipped (the average carries over).  Vectorised in chunks.
    """
    s = np.asarray(steps, dtype="float64")
    x = np.asarray(values, dtype="float64")
    n = len(x)
    out = np.full(n, np.nan)
    ok = np.isfinite(x)
    if not ok.any():
        return out
    idx = np.flatnonzero(ok)
    s2, x2 = s[idx], x[idx]
    tau = max(float(tau), 1e-12)
    dt = np.diff(s2, prepend=s2[0])
    loga = -dt / tau  # log of the decay factor a_i
    y = np.empty(len(x2))
    # y_i = a_i y_{i-1} + (1 - a_i) x_i, solved blockwise with cumulative products;
    # blocks end before exp() of the cumulative log-decay could overflow.
    prev = 0.0
    start = 0
    m = len(x2)
    cum = np.cumsum(loga)
    while start < m:
        base = cum[start - 1] if start > 0 else 0.0
        stop = int(np.searchsorted(-(cum - base), 600.0, side="right"))
        stop = max(stop, start + 1)
        seg = slice(start, stop)
        L = cum[seg] - base
        w = -np.expm1(loga[seg])  # 1 - a_i
        if start == 0:
            w[0] = 1.0  # the first point seeds the average
        acc = np.cumsum(w * x2[seg] * np.exp(-L))
        y[seg] = np.exp(L) * (prev + acc)
        prev = y[stop - 1]
        start = stop
    out[idx] = y
    # carry the average over skipped points
    if len(idx) < n:
        filled = pd.Series(out).ffill().to_numpy()
        out = filled
    return out


def rolling_median(steps: np.ndarray, values: np.ndarray, window_steps: float,
                   center: bool = True) -> np.ndarray:
    """Rolling median over a window of ``window_steps`` steps (not points).

    Robust to spikes (a spike shorter than half the window cannot move it).  Centred by
    default (``[s - w/2, s + w/2]``); ``center=False`` gives the causal (trailing) window
    ``(s - w, s]``.  Non-finite values are ignored inside each window.  Vectorised: the
    windows are gathered into one padded matrix and sorted row-wise, which for the sizes
    detectors use (<= a few thousand binned points) is far cheaper than pandas' rolling.
    """
    s = np.asarray(steps, dtype="float64")
    v = np.asarray(values, dtype="float64")
    n = len(v)
    if n == 0:
        return v.copy()
    w = max(float(window_steps), 1.0)
    if center:
        lo = np.searchsorted(s, s - w / 2, side="left")
        hi = np.searchsorted(s, s + w / 2, side="right")
    else:
        lo = np.searchsorted(s, s - w, side="right")
        hi = np.arange(1, n + 1)
    width = int((hi - lo).max())
    if n * width > _MATRIX_MAX:
        return _rolling_median_pandas(s, v, w, center)
    return _window_quantile(v, lo, hi, width, 0.5)


#: Above this many window cells pandas' O(n log w) skiplist beats sorting a padded matrix.
_MATRIX_MAX = 40_000


def rolling_quantile(steps: np.ndarray, values: np.ndarray, window_steps: float,
                     q: float) -> np.ndarray:
    """Centred rolling ``q``-quantile over a window of ``window_steps`` steps (linear
    interpolation, NaN ignored).  Used for local noise scales: loss noise is roughly
    multiplicative, so one global sigma overstates late noise and understates early."""
    s = np.asarray(steps, dtype="float64")
    v = np.asarray(values, dtype="float64")
    n = len(v)
    if n == 0:
        return v.copy()
    w = max(float(window_steps), 1.0)
    lo = np.searchsorted(s, s - w / 2, side="left")
    hi = np.searchsorted(s, s + w / 2, side="right")
    width = int((hi - lo).max())
    if n * width > _MATRIX_MAX:
        quantiles: np.ndarray = _pandas_window(s, v, w, True).quantile(q).to_numpy()
        return quantiles
    return _window_quantile(v, lo, hi, width, q)


def _window_quantile(v: np.ndarray, lo: np.ndarray, hi: np.ndarray, width: int,
                     q: float) -> np.ndarray:
    """q-quantile of ``v[lo[i]:hi[i]]`` for every i, via one padded, row-sorted matrix."""
    n = len(v)
    idx = lo[:, None] + np.arange(width)[None, :]
    valid = idx < hi[:, None]
    vals = np.where(np.isfinite(v), v, np.nan)
    mat = np.where(valid, vals[np.minimum(idx, n - 1)], np.nan)
    mat.sort(axis=1)  # NaNs go last
    k = np.sum(np.isfinite(mat), axis=1)
    pos = q * np.maximum(k - 1, 0)
    below = np.floor(pos).astype(np.int64)
    above = np.minimum(below + 1, np.maximum(k - 1, 0))
    rows = np.arange(n)
    a, b = mat[rows, below], mat[rows, above]
    frac = pos - below
    with np.errstate(over="ignore", invalid="ignore"):
        # a*(1-f) + b*f never overflows for finite a, b (b - a can, near 1e308)
        out = np.where(frac == 0, a, a * (1 - frac) + b * frac)
    out[k == 0] = np.nan
    result: np.ndarray = out
    return result


def _pandas_window(s: np.ndarray, v: np.ndarray, w: float,
                   center: bool) -> pd.api.typing.Rolling:
    """A pandas step-window roller with the same closed ends as the matrix path:
    ``[s - w/2, s + w/2]`` centred, ``(s - w, s]`` trailing (steps as nanoseconds)."""
    idx = pd.to_datetime(np.round(s - s[0]).astype("int64"), unit="ns")
    ser = pd.Series(np.where(np.isfinite(v), v, np.nan), index=idx)
    return ser.rolling(pd.Timedelta(round(w), unit="ns"), min_periods=1, center=center,
                       closed="both" if center else "right")


def _rolling_median_pandas(s: np.ndarray, v: np.ndarray, w: float, center: bool) -> np.ndarray:
    """Wide windows on long series: pandas' skiplist median, O(n log w)."""
    medians: np.ndarray = _pandas_window(s, v, w, center).median().to_numpy()
    return medians


def smooth(steps: np.ndarray, values: np.ndarray, frac: float = 0.05,
           robust: bool = True, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """The house smoother: returns ``(steps, smoothed)`` for the finite points.

    Window = ``frac`` of the run's step span.  ``robust=True`` uses a centred rolling
    median (spike-proof, the default for baselines); ``False`` an EMA with the same time
    constant (lags, but tracks onsets of sustained rises).  Long curves are first binned
    to ``max_points`` mean-bins so the cost stays flat on a 1M-point log.
    """
    s = np.asarray(steps, dtype="float64")
    v = np.asarray(values, dtype="float64")
    ok = np.isfinite(v)
    s, v = s[ok], v[ok]
    if len(v) == 0:
        return s, v
    if len(v) > max_points:
        s, v = downsample_arrays(s, v, max_points, "mean")
    span = float(s[-1] - s[0]) if len(s) > 1 else 0.0
    w = max(frac * span, 1.0)
    if robust:
        return s, rolling_median(s.astype("int64"), v, w)
    return s, ema(s, v, w / 2.0)


# ---------------------------------------------------------------------------
# Best so far
# ---------------------------------------------------------------------------


def running_best(values: np.ndarray, higher_is_better: bool = False) -> np.ndarray:
    """Best value so far at each point (running min, or max when higher is better);
    non-finite values never become the best."""
    v = np.asarray(values, dtype="float64")
    fill = -np.inf if higher_is_better else np.inf
    w = np.where(np.isfinite(v), v, fill)
    out = np.maximum.accumulate(w) if higher_is_better else np.minimum.accumulate(w)
    out[~np.isfinite(out)] = np.nan
    return out


def best_so_far(values: np.ndarray, higher_is_better: bool = False) -> np.ndarray:
    """Alias of :func:`running_best` (the name the docs use)."""
    return running_best(values, higher_is_better)


def step_of_best(steps: np.ndarray, values: np.ndarray,
                 higher_is_better: bool = False) -> tuple[int | None, float]:
    """(step, value) of the best finite value; (None, nan) when there is none.
    Ties go to the earliest step."""
    v = np.asarray(values, dtype="float64")
    ok = np.isfinite(v)
    if not ok.any():
        return None, float("nan")
    w = np.where(ok, v, -np.inf if higher_is_better else np.inf)
    i = int(np.argmax(w) if higher_is_better else np.argmin(w))
    return int(steps[i]), float(v[i])


# ---------------------------------------------------------------------------
# Trends
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Trend:
    """A robust trend over a window.

    ``slope`` (per step) with its Theil-Sen 95% interval ``[slope_lo, slope_hi]``;
    ``tau``/``p_value`` from Kendall's tau; ``change`` = slope x step span (the fitted
    rise or fall over the window); ``rel_change`` = change / |fitted start level| (NaN
    when that level is ~0); ``effect`` = |change| / noise floor (how many noise sigmas the
    trend moves the curve: the gate to use, since curves are autocorrelated and p-values
    from i.i.d. tests are far too optimistic); ``start``/``end`` fitted values.
    """

    slope: float
    slope_lo: float
    slope_hi: float
    tau: float
    p_value: float
    change: float
    rel_change: float
    effect: float
    noise: float
    start: float
    end: float
    n: int

    def rising(self, min_effect: float = 3.0, min_tau: float = 0.3) -> bool:
        """Rising with a material effect: CI above 0, tau and effect size past gates."""
        return self.slope_lo > 0 and self.tau >= min_tau and self.effect >= min_effect

    def falling(self, min_effect: float = 3.0, min_tau: float = 0.3) -> bool:
        """Falling with a material effect (mirror of :meth:`rising`)."""
        return self.slope_hi < 0 and self.tau <= -min_tau and self.effect >= min_effect

    def flat(self, max_effect: float = 1.0) -> bool:
        """No material movement: the fitted change is within ``max_effect`` noise sigmas."""
        return self.effect <= max_effect


_NAN_TREND = Trend(*(float("nan"),) * 11, 0)


def robust_trend(steps: np.ndarray, values: np.ndarray,
                 max_points: int = TREND_MAX_POINTS) -> Trend:
    """Theil-Sen slope + Kendall tau + effect size of a curve (finite points only).

    Long curves are mean-binned to ``max_points`` first (Theil-Sen is O(n^2)); the noise
    floor is taken from the raw points so binning does not make a trend look stronger.
    Returns a Trend of NaNs (n < 3) when there is too little to say.
    """
    s = np.asarray(steps, dtype="float64")
    v = np.asarray(values, dtype="float64")
    ok = np.isfinite(v)
    s, v = s[ok], v[ok]
    if len(v) < 3 or s[-1] == s[0]:
        return replace(_NAN_TREND, n=len(v))
    noise = noise_floor(v[-20000:])
    bs, bv = downsample_arrays(s, v, max_points, "mean")
    if len(bv) < 3:
        return replace(_NAN_TREND, n=len(v))
    from scipy import stats  # imported on first use (~1 s): many runs never need it

    res = stats.theilslopes(bv, bs, alpha=0.95)
    slope, intercept, lo, hi = (float(x) for x in res[:4])
    if np.ptp(bv) == 0:
        tau, p = 0.0, 1.0
    else:
        kt = stats.kendalltau(bs, bv)
        tau, p = float(kt.statistic), float(kt.pvalue)
    span = float(bs[-1] - bs[0])
    change = slope * span
    start = intercept + slope * bs[0]
    end = intercept + slope * bs[-1]
    scale = max(abs(start), 1e-12)
    rel = change / scale if abs(start) > 1e-9 * max(1.0, robust_scale(bv)) else float("nan")
    floor = noise if noise > 0 else 1e-12 * max(abs(start), 1.0)
    effect = abs(change) / floor if np.isfinite(floor) and floor > 0 else float("nan")
    return Trend(slope, lo, hi, tau if np.isfinite(tau) else 0.0, p, change, rel,
                 effect, noise, start, end, len(v))


# ---------------------------------------------------------------------------
# Change points and onsets
# ---------------------------------------------------------------------------


@dataclass(frozen=True)
class TwoSegment:
    """Best two-line fit: break at ``break_step``; slopes before/after; ``gain`` = share
    of the one-line residual sum of squares the break removes (0..1)."""

    break_step: float
    slope_before: float
    slope_after: float
    gain: float


def two_segment_fit(steps: np.ndarray, values: np.ndarray, min_frac: float = 0.1,
                    max_points: int = TREND_MAX_POINTS) -> TwoSegment | None:
    """Continuous-in-index two-segment least-squares fit (each segment >= ``min_frac``
    of the points); None when fewer than 8 finite points.  O(n) with cumulative sums."""
    s, v = downsample_arrays(steps, values, max_points, "mean")
    n = len(v)
    if n < 8:
        return None

    def _sse_prefix(x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        k = np.arange(1, len(x) + 1, dtype="float64")
        sx, sy = np.cumsum(x), np.cumsum(y)
        sxx, sxy, syy = np.cumsum(x * x), np.cumsum(x * y), np.cumsum(y * y)
        vx = sxx - sx * sx / k
        cxy = sxy - sx * sy / k
        vy = syy - sy * sy / k
        with np.errstate(divide="ignore", invalid="ignore"):
            b = np.where(vx > 0, cxy / vx, 0.0)
        sse = np.maximum(vy - b * cxy, 0.0)
        return sse, b

    x = (s - s[0]) / max(s[-1] - s[0], 1.0)
    sse_l, b_l = _sse_prefix(x, v)
    sse_r, b_r = _sse_prefix(x[::-1], v[::-1])
    sse_r, b_r = sse_r[::-1], b_r[::-1]
    lo = max(int(min_frac * n), 3)
    cand = np.arange(lo, n - lo)
    if len(cand) == 0:
        return None
    total = sse_l[cand - 1] + sse_r[cand]
    j = int(cand[np.argmin(total)])
    full = sse_l[-1]
    gain = 1.0 - float(total.min()) / full if full > 0 else 0.0
    scale = 1.0 / max(s[-1] - s[0], 1.0)
    return TwoSegment(float(s[j]), float(b_l[j - 1]) * scale, float(b_r[j]) * scale, gain)


@dataclass(frozen=True)
class Onset:
    """Where a (lower-is-better) curve leaves its running minimum for good.

    ``min_step``/``min_value``: the best smoothed point; ``onset_step``: last step before
    the sustained rise at which the curve was within ``k`` noise of its min;
    ``rise``: final smoothed value - min; ``rise_noise``: rise / noise;
    ``sustained``: share of smoothed points after the onset above min + k*noise.
    """

    min_step: float
    min_value: float
    onset_step: float
    rise: float
    rise_noise: float
    sustained: float


def rise_onset(steps: np.ndarray, values: np.ndarray, k: float = 3.0,
               frac: float = 0.05) -> Onset | None:
    """Find where the smoothed curve starts rising from its running minimum.

    Smooths robustly (rolling median over ``frac`` of the span), takes the global
    minimum, and walks back from the end to the last point still within ``k`` noise
    sigmas of it.  None when fewer than 5 finite points.
    """
    s, sm = smooth(steps, values, frac=frac)
    if len(sm) < 5:
        return None
    noise = max(noise_floor(np.asarray(values)[np.isfinite(values)]), 1e-12)
    i = int(np.argmin(sm))
    thr = sm[i] + k * noise
    after = sm[i:]
    above = after > thr
    # last index (from the min on) still at the min's level
    inside = np.flatnonzero(~above)
    j = i + int(inside[-1]) if len(inside) else i
    rise = float(sm[-1] - sm[i])
    sustained = float(above.mean()) if len(above) else 0.0
    return Onset(float(s[i]), float(sm[i]), float(s[j]), rise, rise / noise, sustained)


def early_drop(steps: np.ndarray, values: np.ndarray, frac: float = 0.1,
               smoothed: np.ndarray | None = None) -> float:
    """How far the curve fell from its start: median of the first ``frac`` of steps
    minus the best later smoothed value (>= 0).  A sign-agnostic unit of "how much this
    loss moves" that rules use instead of ratios of raw values.  ``smoothed`` may pass a
    precomputed :func:`smooth` of the same points."""
    s = np.asarray(steps, dtype="float64")
    v = np.asarray(values, dtype="float64")
    ok = np.isfinite(v)
    s, v = s[ok], v[ok]
    if len(v) < 2:
        return 0.0
    head_end = s[0] + frac * (s[-1] - s[0])
    head = v[s <= head_end]
    start = float(np.median(head)) if len(head) else float(v[0])
    if smoothed is None:
        ss, sm = smooth(s, v, frac=0.05)
    else:
        ss, sm = s, smoothed
    later = sm[ss > head_end] if len(sm) == len(ss) else sm
    best = float(np.min(later)) if len(later) else float(np.min(sm))
    return max(start - best, 0.0)


# ---------------------------------------------------------------------------
# Spikes
# ---------------------------------------------------------------------------


def _q90_sigma(resid: np.ndarray) -> float:
    """Sigma implied by the 90th percentile of |residual| under a Gaussian (1.645)."""
    r = _thin(np.abs(resid))
    r = r[np.isfinite(r)]
    if len(r) < 20:
        return 0.0
    return float(np.quantile(r, 0.90) / 1.645)


@dataclass(frozen=True)
class Spike:
    """One excursion above the local baseline.

    ``step``/``value``: the peak; ``baseline``: the rolling median there; ``height``:
    (value - baseline) / noise; ``ratio``: (value - baseline) / scale where scale is the
    curve's robust spread (sign-agnostic "how many typical spreads"); ``end_step``: first
    step back within the recovery band (None if it never came back); ``points``: how many
    points the excursion spans.
    """

    step: int
    value: float
    baseline: float
    height: float
    ratio: float
    end_step: int | None
    points: int


def spikes(steps: np.ndarray, values: np.ndarray, k: float = 6.0,
           window_frac: float = 0.05, max_points: int = 4000,
           direction: str = "up", min_window_points: int = 7) -> tuple[list[Spike], float]:
    """Upward (or ``direction="down"``) excursions more than ``k`` noise sigmas off a
    centred rolling-median baseline.  Returns ``(spikes, noise)``.

    The noise scale is *local* (a rolling window twice the baseline's): loss noise is
    roughly multiplicative, so a global sigma would call every early wiggle a spike.  It
    is the larger of the rolling MAD sigma of the residuals and their rolling 90th
    absolute percentile / 1.645 (equal for Gaussian noise), so a uniformly noisy curve
    has no spikes however noisy it is and heavy-tailed small-batch noise counts less;
    spike points are assumed to be under 10% of a window, so the baseline window spans at
    least ``min_window_points`` typical step gaps (a 60-point run's 5% window is 3 points,
    and a spike inside a 6-point noise window inflates its own noise scale and hides
    itself).  Long curves are max-binned
    (min-binned for ``down``) to ``max_points`` first, which keeps every spike visible;
    their local noise comes from the raw first differences per bin.
    """
    s = np.asarray(steps, dtype="float64")
    v = np.asarray(values, dtype="float64")
    ok = np.isfinite(v)
    s, v = s[ok], v[ok]
    if len(v) < 8:
        return [], 0.0
    sign = 1.0 if direction == "up" else -1.0
    span = float(s[-1] - s[0])
    w = max(window_frac * span, 3.0)
    if len(v) <= max_points and min_window_points > 0:
        w = max(w, min_window_points * float(np.median(np.diff(s))))
    if len(v) > max_points:
        # Baseline from mean bins, peaks from max (min) bins, noise from the raw points:
        # the max of a bin of pure noise is not a spike.
        s_raw = s
        d = np.diff(v) / math.sqrt(2.0)
        raw_noise = max(mad_sigma(d), _q90_sigma(d))
        bs, bmean = downsample_arrays(s, v, max_points, "mean")
        _, bpeak = downsample_arrays(s, v, max_points, "max" if sign > 0 else "min")
        s, v = bs, bpeak
        base = rolling_median(bs, bmean, w)
        resid = sign * (v - base)
        # local raw noise: per-bin mean |first difference| (x 1.2533 = sigma for Gaussian
        # noise), then a rolling median over bins so the bins holding spikes do not count
        ds, dm = downsample_arrays(s_raw[1:], np.abs(d), max_points, "mean")
        per_bin = np.interp(bs, ds, 1.2533 * dm)
        local = rolling_median(bs, per_bin, 2 * w)
        local = np.maximum(np.nan_to_num(local, nan=raw_noise), 0.25 * raw_noise)
    else:
        base = rolling_median(s, v, w)
        resid = sign * (v - base)
        # local scale (loss noise shrinks with the loss), floored by a global fraction
        absr = np.abs(resid)
        glob = max(mad_sigma(resid), _q90_sigma(resid))
        # the tail-sensitive q90 term is capped by its run-wide value: where spikes
        # cluster (several in one window) they would otherwise become their own noise;
        # the MAD term stays local (it ignores up to half the window being spikes)
        local = np.maximum(
            MAD_TO_SIGMA * rolling_quantile(s, absr, 2 * w, 0.5),
            np.minimum(rolling_quantile(s, absr, 2 * w, 0.9) / 1.645, glob),
        )
        local = np.maximum(np.nan_to_num(local, nan=glob), 0.25 * glob)
        raw_noise = glob
    noise = raw_noise
    if noise <= 0:
        noise = robust_scale(resid)
        local = np.full(len(v), noise)
    if noise <= 0:
        return [], 0.0
    scale = max(robust_scale(v), noise)
    local = np.where(local > 0, local, noise)
    out_mask = resid > k * local
    if not out_mask.any():
        return [], noise
    back = resid <= 2.0 * local
    found: list[Spike] = []
    edges = np.flatnonzero(np.diff(np.r_[0, out_mask.astype(np.int8), 0]))
    for a, b in zip(edges[::2], edges[1::2], strict=True):
        peak = a + int(np.argmax(resid[a:b]))
        later = np.flatnonzero(back[b:])
        end = int(s[b + later[0]]) if len(later) else None
        found.append(
            Spike(round(s[peak]), float(v[peak]), float(base[peak]),
                  float(resid[peak] / local[peak]), float(resid[peak] / scale), end,
                  int(b - a))
        )
    return found, noise


# ---------------------------------------------------------------------------
# Chance levels
# ---------------------------------------------------------------------------


def chance_loss(n_classes: int) -> float:
    """Cross-entropy of a uniform guess over ``n_classes``: ln C."""
    return math.log(n_classes)


def chance_accuracy(n_classes: int) -> float:
    """Accuracy of a uniform guess: 1 / C."""
    return 1.0 / n_classes


@dataclass(frozen=True)
class ClassCount:
    """A class count and the source that gave it, for evidence and messages
    (``10 (hparam num_classes)``): a chance level nobody can trace is not evidence."""

    n: int
    source: str

    def __str__(self) -> str:
        return f"{self.n} ({self.source})"


#: Hyperparameter names that state the class count (the last part of a nested key:
#: ``model.num_classes``, ``data/nc``).  ``nc`` is Ultralytics' data.yaml.
_NC_KEYS = ("num_classes", "n_classes", "num_class", "n_class", "nclasses", "numclasses",
            "number_of_classes", "num_labels", "n_labels", "nc", "classes")
#: Keys whose value is the label map or list itself: HF config.json ``id2label`` /
#: ``label2id`` (flattened to ``id2label.0`` ...), Ultralytics data.yaml ``names`` (a
#: list, or a dict flattened to ``names.0`` ...), ``classes`` / ``class_names`` lists.
_LABEL_MAP_KEYS = ("id2label", "label2id", "names", "classes", "class_names", "label_names")
#: Output-size names that are the class count only when the run logs an accuracy (a
#: regression head has an output size too).
_OUTPUT_KEYS = ("output_dim", "output_size", "out_features", "num_outputs", "n_outputs")
#: Vocabulary sizes: the class count of a language model's token cross-entropy.
_VOCAB_KEYS = ("vocab_size", "n_vocab", "ntokens", "ntoken", "vocab_len")
#: HF ``architectures`` whose head is a token cross-entropy over the vocabulary.
_LM_ARCH = re.compile(r"(CausalLM|LMHead|MaskedLM|ConditionalGeneration|Seq2SeqLM)", re.I)
#: HF ``architectures`` with a classification head (``num_labels``, default 2).
_CLS_ARCH = re.compile(r"For(Sequence|Token|Image|Audio)Classification|ForMultipleChoice",
                       re.I)
#: The largest class count taken from a hyperparameter (a vocabulary included).
_MAX_CLASSES = 1_000_000
#: Longest list repr parsed for a class list (a sidecar list kept as its repr).
_MAX_LIST_CHARS = 200_000


def _count_value(val: object) -> int | None:
    """An integer count >= 2 from a hyperparameter value (``10``, ``"10"``, ``10.0``)."""
    if isinstance(val, bool) or val is None:
        return None
    if isinstance(val, (int, float)) and math.isfinite(val) and float(val).is_integer():
        n = int(val)
    elif isinstance(val, str) and val.strip().isdigit():
        n = int(val.strip())
    else:
        return None
    return n if 2 <= n <= _MAX_CLASSES else None


def _list_count(val: object) -> int | None:
    """Names in a class list kept as its repr (``"['cat', 'dog']"``); None when the repr
    was shortened (``...``) or is not a flat list of names.  ``ast.literal_eval`` only parses
    literals: nothing from the log is executed."""
    import ast

    if isinstance(val, (list, tuple)):
        items: object = val
    elif isinstance(val, str) and val.strip()[:1] in "[(" and len(val) <= _MAX_LIST_CHARS \
            and "..." not in val:
        try:
            items = ast.literal_eval(val.strip())
        except (ValueError, SyntaxError, MemoryError, RecursionError):
            return None
    else:
        return None
    # names only: Ultralytics' ``classes: [0, 2]`` is a filter of class indices
    if not isinstance(items, (list, tuple)) or not all(isinstance(x, str) for x in items):
        return None
    n = len(items)
    return n if 2 <= n <= _MAX_CLASSES else None


def _split_key(key: str) -> list[str]:
    return [p for p in re.split(r"[./]", str(key).strip().lower()) if p]


def _hparams_of(run: object) -> list[tuple[str, object]]:
    """Canonical hparams first, then the raw (flattened) ones as written."""
    out = list((getattr(run, "hparams", None) or {}).items())
    out += list((getattr(run, "raw_hparams", None) or {}).items())
    return [(str(k), v) for k, v in out]


def _hparam_class_count(run: object, has_accuracy: bool) -> ClassCount | None:
    """C from what the run's configuration says, most explicit first: a count key, a
    label map or class list, an HF classification head, an output size beside an
    accuracy, a language model's vocabulary."""
    items = _hparams_of(run)
    flat = {k.lower(): v for k, v in reversed(items)}  # the first spelling wins
    problem = str(next((v for k, v in items if _split_key(k)[-1:] == ["problem_type"]),
                       "")).lower()
    if "multi_label" in problem or "regression" in problem:
        return None  # several labels at once, or no classes: no 1/C chance level
    # 1. a count key; top-level keys before nested ones (a data module's ``nc`` and a
    # model's ``num_classes`` agree, but the run's own key is the plainest)
    for key, val in sorted(items, key=lambda kv: len(_split_key(kv[0]))):
        parts = _split_key(key)
        if parts and parts[-1] in _NC_KEYS:
            n = _count_value(val)
            if n is not None:
                return ClassCount(n, f"hparam {key}")
    # 2. a label map (flattened dict: ``id2label.0`` ...) or a class list
    maps: dict[str, set[str]] = {}
    for key in flat:
        parts = _split_key(key)
        for i, part in enumerate(parts[:-1]):
            if part in _LABEL_MAP_KEYS and i == len(parts) - 2:
                maps.setdefault(".".join(parts[: i + 1]), set()).add(parts[-1])
    for key, labels in sorted(maps.items(), key=lambda kv: (len(kv[0]), kv[0])):
        if len(labels) >= 2:
            return ClassCount(len(labels), f"label map {key} ({len(labels)} labels)")
    for key, val in items:
        parts = _split_key(key)
        if parts and parts[-1] in _LABEL_MAP_KEYS:
            n = _list_count(val)
            if n is not None:
                return ClassCount(n, f"class list {key} ({n} names)")
    arch = " ".join(str(v) for k, v in items if _split_key(k)[-1:] == ["architectures"])
    # 3. an HF classification head with no label map written: save_pretrained leaves out
    # values at their defaults, and num_labels defaults to 2
    if _CLS_ARCH.search(arch):
        return ClassCount(2, "HF classification head with the default num_labels 2")
    # 4. an output size, when the run logs an accuracy (a classifier)
    if has_accuracy:
        for key, val in items:
            parts = _split_key(key)
            if parts and parts[-1] in _OUTPUT_KEYS:
                n = _count_value(val)
                if n is not None:
                    return ClassCount(n, f"hparam {key} (a classifier: accuracy is logged)")
    # 5. a vocabulary: the class count of a token cross-entropy, when the model is a
    # language model (by its HF architecture, or no accuracy is logged at all)
    if _LM_ARCH.search(arch) or not has_accuracy:
        for key, val in items:
            parts = _split_key(key)
            if parts and parts[-1] in _VOCAB_KEYS:
                n = _count_value(val)
                if n is not None:
                    why = "language model" if _LM_ARCH.search(arch) else "no accuracy logged"
                    return ClassCount(n, f"vocabulary {key} ({why})")
    return None


#: Per-class metric tags: ``class_3_acc``, ``acc_class3``, ``val/class-7/f1``, ``cls_2``,
#: ``test/f1_per_class/4``.
_PER_CLASS_RE = re.compile(r"(?:^|[/_\-. ])(?:class|cls)[_\-. /]?(\d{1,4})(?=$|[/_\-. ])", re.I)
#: Per-class columns of a classification metric by index: ``val_acc_0`` .. ``val_acc_9``,
#: ``test/f1_3`` (torchmetrics ``average=None`` logged one column per class).
_PER_INDEX_RE = re.compile(
    r"(?:^|[/_\-. ])(?:acc|accuracy|f1|f1_score|precision|recall|auroc|auc|iou)[_\-. ](\d{1,4})$",
    re.I)


def _per_class_count(tags: Iterable[object]) -> int | None:
    """C from per-class metric columns (``class_0_acc`` .. ``class_9_acc``,
    ``test_acc_0`` .. ``test_acc_9``): the indices of one tag pattern must be exactly
    0..C-1 (or 1..C) with C >= 2, so two stray numbered tags prove nothing."""
    groups: dict[str, set[int]] = {}
    for tag in tags:
        for pattern in (_PER_CLASS_RE, _PER_INDEX_RE):
            m = pattern.search(str(tag))
            if m:
                key = str(tag)[: m.start(1)] + "#" + str(tag)[m.end(1):]
                groups.setdefault(key.lower(), set()).add(int(m.group(1)))
                break
    best = None
    for idx in groups.values():
        n = len(idx)
        if n >= 2 and (idx == set(range(n)) or idx == set(range(1, n + 1))):
            best = max(best or 0, n)
    return best


#: How far an untrained model's loss typically sits ABOVE ln C (nats): logits that do
#: not depend on the label give E[loss] = E[logsumexp(z) - z_y] >= ln C (Jensen), so a
#: first loss between ln C and ln C + this is C, and may as well be C - 1 or C - 2 when
#: their ln values are that close (above about 6 classes the loss cannot tell them apart).
UNTRAINED_EXCESS = 0.1


def _loss_classes(first: float, tol: float, untrained: bool = False) -> int | None:
    """C when ``first`` is ln C within ``tol`` x ln C and a quarter of the gap to ln(C+1)
    and ln(C-1); or, for an ``untrained`` (first logged) loss, when it sits between ln C
    and ln C + ``tol`` x ln C + :data:`UNTRAINED_EXCESS` and no other count fits it at
    all; None otherwise.  Above a few classes neighbouring counts fit as well
    (:func:`_loss_rivals`): the chance level is then right to a few percent, the count
    only approximately, and the source says so."""
    if not (0.3 < first <= math.log(1000.5)):
        return None
    c = round(math.exp(first))
    if not 2 <= c <= 1000:
        return None
    # above ~ln 25 every value is within a few % of some ln C, which proves nothing
    gap = math.log(c + 1) - math.log(c)
    if abs(first - math.log(c)) <= min(tol * math.log(c), gap / 4):
        return c
    # a little above ln C (the untrained excess), when no other count fits it at all
    below = math.floor(math.exp(first))
    if untrained and below >= 2 and _loss_rivals(first, below, tol) is None and \
            0 <= first - math.log(below) <= tol * math.log(below) + UNTRAINED_EXCESS:
        return below
    return None


def _loss_rivals(first: float, c: int, tol: float) -> tuple[int, int] | None:
    """The range of counts C' other than ``c`` that could have given ``first`` as an
    untrained loss (between ln C' - ``tol`` x ln C' and ln C' + ``tol`` x ln C' +
    :data:`UNTRAINED_EXCESS`), as (lowest, highest) including ``c``; None when ``c`` is
    the only one (the count is then exact, not approximate)."""
    lo = max(2, math.floor(math.exp(first - UNTRAINED_EXCESS) / (1 + tol)) - 1)
    hi = min(1000, math.ceil(math.exp(first / (1 - tol))) + 1)
    fits = [k for k in range(lo, hi + 1) if -tol * math.log(k)
            <= first - math.log(k) <= tol * math.log(k) + UNTRAINED_EXCESS]
    fits = sorted(set(fits) | {c})
    return (fits[0], fits[-1]) if len(fits) > 1 else None


def _about(first: float, c: int, tol: float) -> str:
    """`` (about: 9-11 fit too)`` when neighbouring counts fit ``first`` as well."""
    r = _loss_rivals(first, c, tol)
    return f" (about: {r[0]}-{r[1]} fit too)" if r else ""


#: Relative distance from ln C within which a loss with no accuracy beside it and no
#: cross-entropy name is taken as the uniform prediction (a sigmoid stack stuck at
#: 2.3026 = ln 10, logged to 4-5 digits); an MSE on standardised targets wanders near
#: 1.0-1.1 (ln 3), not onto ln C to 0.05%.
UNIFORM_TOL = 0.0005

#: Loss names that say cross-entropy (a language model's too): only such a loss may
#: give a class count without an accuracy beside it (an MSE on standardised targets sits
#: near 1.0-1.1, i.e. near ln 3, by construction).
CE_LOSS_NAME = re.compile(r"(^|[_/])(ce|nll|xent|cross_?entropy|cls|class|classification|"
                          r"lm|mlm|clm|causal_lm|masked_lm)([_/]|loss|$)", re.I)


#: A regression loss or error metric by its name (MSE, MAE, Huber, smooth L1, R^2, MAPE
#: ...), as a whole word of a tag or metric name: a loss so named, or logged beside such a
#: metric, is no class cross-entropy whatever its value.  The one owner of this reading.
REGRESSION_NAME = re.compile(
    r"(^|[^a-z0-9])(r?mse|mae|s?mape|r2|rmsle|msle|huber|l1|l2|smooth_?l1|regress\w*|"
    r"(root_)?mean_(squared|absolute)(_log)?_error|explained_variance)([^a-z0-9]|loss|$)",
    re.I)


def regression_name(name: str) -> bool:
    """``name`` (a tag or metric name) names a regression loss or error metric."""
    return REGRESSION_NAME.search(name) is not None

#: Accuracy grids tried when looking for a small eval set's 1/N steps (N samples).
_MAX_QUANTUM_N = 500
#: Distinct accuracy values needed before a grid is believed.
_MIN_QUANTUM_VALUES = 4


def accuracy_quantum(values: np.ndarray) -> float | None:
    """1/N when every accuracy value is a multiple of 1/N for a small eval set of N
    samples (N <= 500, at least 4 distinct values), else None.  On 50 samples an
    accuracy moves in steps of 0.02: a chance level can only be met to within a step."""
    v = np.asarray(values, dtype=float)
    v = np.unique(v[np.isfinite(v) & (v >= 0.0) & (v <= 1.0)])[:64]
    if len(v) < _MIN_QUANTUM_VALUES:
        return None
    n = np.arange(2, _MAX_QUANTUM_N + 1, dtype=float)[:, None]
    counts = v[None, :] * n
    # logged values carry 4 decimals (Keras CSV: an error of 5e-5) or float32 rounding
    fits = np.all(np.abs(counts - np.round(counts)) <= np.maximum(6e-5 * n, 1e-4), axis=1)
    hit = np.flatnonzero(fits)
    return float(1.0 / n[hit[0], 0]) if len(hit) else None


def _acc_classes(first: float, quantum: float | None = None) -> set[int]:
    """Every C (2..1000) for which ``first`` is a plausible chance accuracy: within a
    quarter of 1/C (initial accuracies wander by a few points), or within one step of a
    small eval set's accuracy grid (``quantum``, 1/N)."""
    if not 0.0 < first <= 0.55:
        return set()
    q = quantum or 0.0
    out = set()
    for c in range(2, 1001):
        gap = abs(first - 1.0 / c)
        if (0.75 * first <= 1.0 / c <= 1.25 * first and gap <= 0.25 / c) or gap <= q:
            out.add(c)
        elif 1.0 / c < 0.75 * first - q:
            break
    return out


def infer_num_classes(run: object, roles: RoleMap | None = None,
                      rel_tol: float = 0.04) -> int | None:
    """Number of classes C, or None unless the evidence is unambiguous; the source is
    :func:`class_count`'s (every chance-level test reads C through here)."""
    found = class_count(run, roles, rel_tol)
    return found.n if found is not None else None


def class_count(run: object, roles: RoleMap | None = None,
                rel_tol: float = 0.04) -> ClassCount | None:
    """Number of classes C and the source that gave it, or None (unknown) unless the
    evidence is unambiguous.

    Order: the configuration (:func:`_hparam_class_count`: a count key such as
    ``num_classes``/``num_labels``/``nc``, an HF ``id2label``/``label2id`` map or a class
    list such as data.yaml ``names``, an HF classification head, an output size beside
    an accuracy, a language model's vocabulary); then per-class metric columns
    (``class_0_acc`` .. ``class_{C-1}_acc``); then the curves, which must agree with each
    other: a first loss within ``rel_tol`` of ln C, or a little above it (an untrained
    loss sits at or above ln C) where no other count fits, confirmed by the same split's
    first accuracy near 1/C at the same step (within a step of a small eval set's
    accuracy grid), with no other split's first loss pointing at another count; or, when
    an accuracy is logged but did not confirm, one split *ending* with its loss at ln C
    and its accuracy at 1/C together (a run stuck at chance); or, only when no accuracy
    is logged at all, a loss named cross-entropy (or at ln C to :data:`UNIFORM_TOL`)
    confirmed by the other split's first loss or by the same loss still near ln C over
    the first tenth of the run.  Where neighbouring counts fit the loss as well (above
    about 6 classes), the source ends with ``(about: 9-11 fit too)``: the chance level
    is right to a few percent, the count is not exact.  A single first value is never
    enough: Keras/CSV logs
    record the first loss *after* an epoch of training, and a loss of 1.06 or an
    accuracy of 0.25 is some ln C or 1/C by coincidence all too often.  ``roles`` is a
    RoleMap (computed when omitted).
    """
    scalars = getattr(run, "scalars", None)
    if roles is None and scalars is not None:
        from diagnose.metrics import resolve_roles

        roles = resolve_roles(scalars)
    by_tag = roles.by_tag if roles is not None else {}
    has_accuracy = any(s.metric == "accuracy" for s in by_tag.values())
    found = _hparam_class_count(run, has_accuracy)
    if found is not None:
        return found
    if roles is None or scalars is None or not len(scalars):
        return None
    per_class = _per_class_count(np.asarray(list(by_tag), dtype=object))
    if per_class is not None:
        return ClassCount(per_class, f"{per_class} per-class metric columns")
    if any(regression_name(s.metric) for s in by_tag.values()):
        return None  # a regression's loss near some ln C is a coincidence
    return _curve_class_count(roles, rel_tol)


def _curve_class_count(roles: RoleMap, rel_tol: float) -> ClassCount | None:
    """C from the curves alone (see :func:`class_count`)."""
    from diagnose.metrics import Role

    only_loss: list[tuple[int, str, float]] = []
    early: dict[int, str] = {}
    said: set[int] = set()  # every count some split's first loss points at
    confirmed: ClassCount | None = None
    for loss_role, acc_role in ((Role.TRAIN_LOSS, Role.TRAIN_METRIC),
                                (Role.VAL_LOSS, Role.VAL_METRIC)):
        s = roles.get(loss_role)
        if s is None or "+" in s.tag:
            continue
        ok = np.isfinite(s.values)
        f, st = s.values[ok], s.steps[ok]
        if len(f) == 0:
            continue
        c = _loss_classes(float(f[0]), rel_tol, untrained=True)
        if c is None:
            continue
        said.add(c)
        gap = float(np.median(np.diff(st))) if len(st) > 1 else 1.0
        acc = next((a for a in roles.candidates(acc_role) if a.metric == "accuracy"), None)
        if acc is not None:
            aok = np.isfinite(acc.values)
            if aok.any() and abs(int(acc.steps[aok][0]) - int(st[0])) <= max(1.0, gap / 2):
                # the same split's accuracy at the same step is the confirmation (or the
                # contradiction: a loss of ln 6 with an accuracy of 0.7 is no chance level)
                # a small eval set moves its accuracy in steps of 1/N (a train accuracy
                # per minibatch does too, but a step of 1/32 admits every C near 12)
                quantum = accuracy_quantum(acc.values[aok]) if acc.split != "train" else None
                if c in _acc_classes(float(acc.values[aok][0]), quantum) and not confirmed:
                    confirmed = ClassCount(c, f"first {s.tag} {_sig_text(f[0])} ~ ln {c} and "
                                              f"first {acc.tag} "
                                              f"{_sig_text(acc.values[aok][0])} ~ 1/{c}"
                                              + _about(float(f[0]), c, rel_tol))
                continue
        only_loss.append((c, s.tag, float(f[0])))
        if len(f) >= 5:
            head = f[st <= st[0] + 0.1 * (st[-1] - st[0])]
            head = head if len(head) >= 3 else f[:3]
            if _loss_classes(float(np.median(head)), rel_tol) == c:
                early[c] = s.tag
    # the other split's first loss pointing at another count is a contradiction (an
    # untrained loss a few tenths above ln C reads as ln(C + 1) with an accuracy near
    # both chance levels): unknown rather than a guess
    if any(a.metric == "accuracy" for a in roles.by_tag.values()):
        end = _tail_joint(roles, rel_tol)
        if confirmed is not None and said <= {confirmed.n} and \
                (end is None or end.n == confirmed.n):
            return confirmed
        # a run that ends at a chance level (loss and accuracy together, over its last
        # tenth) says more than one first point; no guessing from a lone loss
        return end
    # no accuracy logged: only a loss named cross-entropy, or one at ln C to within
    # UNIFORM_TOL (the uniform prediction itself, not a loss near it), may speak for C
    kept = [(c, tag) for c, tag, first in only_loss if CE_LOSS_NAME.search(tag)
            or abs(first - math.log(c)) <= UNIFORM_TOL * math.log(c)]
    counts = [c for c, _ in kept]
    for c, tag in kept:
        if counts.count(c) >= 2:
            return ClassCount(c, f"first train and val losses ~ ln {c} (no accuracy "
                                 f"logged){_about(math.log(c), c, rel_tol)}")
        if c in early:
            return ClassCount(c, f"{tag} ~ ln {c} over its first tenth (no accuracy logged)"
                                 f"{_about(math.log(c), c, rel_tol)}")
    return None


def _sig_text(x: float) -> str:
    """A value for a source line: 4 significant digits."""
    return f"{float(x):.4g}"


def _tail_joint(roles: RoleMap, rel_tol: float) -> ClassCount | None:
    """C when one split *ends* with its loss at ln C and its accuracy at 1/C together
    (medians of the last tenth of steps): a run stuck at chance says so at its end even
    when its first values were logged after training had started."""
    from diagnose.metrics import Role

    for loss_role, acc_role in ((Role.VAL_LOSS, Role.VAL_METRIC),
                                (Role.TRAIN_LOSS, Role.TRAIN_METRIC)):
        s = roles.get(loss_role)
        acc = next((a for a in roles.candidates(acc_role) if a.metric == "accuracy"), None)
        if s is None or acc is None or "+" in s.tag:
            continue
        levels = []
        for ser in (s, acc):
            ok = np.isfinite(ser.values)
            v, st = ser.values[ok], ser.steps[ok]
            if len(v) < 3:
                break
            tail_v = v[st >= st[-1] - 0.1 * (st[-1] - st[0])]
            levels.append(float(np.median(tail_v if len(tail_v) >= 3 else v[-3:])))
        if len(levels) < 2:
            continue
        c = _loss_classes(levels[0], rel_tol)
        quantum = accuracy_quantum(acc.values) if acc.split != "train" else None
        if c is not None and c in _acc_classes(levels[1], quantum):
            return ClassCount(c, f"{s.tag} and {acc.tag} end at ln {c} and 1/{c} together"
                                 f"{_about(levels[0], c, rel_tol)}")
    return None


def lr_frozen_from(lr: Series | None, low_share: float, min_points: int = 4) -> float | None:
    """The step from which the logged LR stayed below ``low_share`` of its peak to the
    end of the run (the weights barely move after it: the run trained only until then),
    or None: no LR logged (fewer than ``min_points``), or it ends above that share."""
    if lr is None or len(lr.finite) < min_points:
        return None
    steps, values = lr.finite.steps, lr.finite.values
    peak = float(np.max(values))
    low = values < low_share * peak
    if peak <= 0 or not low[-1]:
        return None
    first = len(low) - int(np.argmin(low[::-1])) if not low.all() else 0
    return float(steps[first])


def plan_reached(run: object) -> float | None:
    """Share of its planned steps a run had reached when its log was written, where the
    writer marked the log a checkpoint of a run still training (the ingest note
    ``unfinished``, with the step and the plan); None where nothing in the log says the
    run went on after it."""
    for note in getattr(run, "notes", ()):
        if getattr(note, "code", None) != "unfinished":
            continue
        step, planned = note.details.get("step"), note.details.get("planned")
        if isinstance(step, int) and isinstance(planned, int) and 0 < step < planned:
            return step / planned
    return None
