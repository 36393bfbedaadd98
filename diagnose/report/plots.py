"""Train/val curve plots for the markdown report.

Data and drawing are split (Optuna's habit): :func:`plot_data` decides what is drawn
(series by role, log scale, downsampling, finding markers, best step) and tests assert on
it; :func:`draw` only turns that dict into a PNG.  Library code never touches pyplot: a
``Figure`` with an Agg canvas is created and dropped per plot, so nothing leaks between
runs and no display is needed.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from diagnose.findings import SEVERITY_RANK, RunResult
from diagnose.metrics import Role, Series
from diagnose.report import clean, fmt_value, run_label

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: Above this many points a series is drawn as a bucket mean plus a min/max band.
MAX_DRAW_POINTS = 2000
#: A positive loss spanning more than this many decades gets a log y axis.
LOG_DECADES = 2.0
#: At most this many labelled finding markers per plot (the rest are drawn unlabelled).
MAX_MARKER_LABELS = 12

_SEV_COLOR = {"error": "#d62728", "warning": "#ff7f0e", "info": "#7f7f7f"}
_ROLE_STYLE = {
    "train_loss": ("#1f77b4", "train"),
    "val_loss": ("#ff7f0e", "val"),
    "train_metric": ("#1f77b4", "train"),
    "val_metric": ("#ff7f0e", "val"),
    "learning_rate": ("#2ca02c", "lr"),
}


# ---------------------------------------------------------------------------
# Which series
# ---------------------------------------------------------------------------


#: The roles the plots draw.
PLOT_ROLES = ("val_metric", "val_loss", "train_loss", "train_metric", "learning_rate")


def role_series(result: RunResult, roles: tuple[str, ...] = PLOT_ROLES) -> dict[str, Series]:
    """Role name -> series for one run, for the roles asked for.

    Uses the engine's resolved roles (config aliases included), so the plot shows exactly
    the series the findings were computed on; a result built elsewhere resolves its table
    here the same way.
    """
    resolved = result.resolved_roles()
    out: dict[str, Series] = {}
    for name in roles:
        series = resolved.get(Role(name))
        if series is not None and len(series):
            out[name] = series
    return out


@dataclass(frozen=True)
class KeyMetric:
    """The number a reader looks for first: best val metric, else min val loss."""

    role: str
    metric: str
    kind: str  # "max", "min" or "final"
    value: float
    step: int
    final: float

    @property
    def text(self) -> str:
        split = {"val_metric": "val", "val_loss": "val", "train_loss": "train",
                 "train_metric": "train"}.get(self.role, "")
        name = f"{split} {self.metric}".strip()
        if self.kind == "final":
            return f"{name} final {fmt_value(self.value)}"
        out = f"{name} {self.kind} {fmt_value(self.value)}"
        if self.final != self.value:
            out += f" (final {fmt_value(self.final)})"
        return out


def key_metric(result: RunResult) -> KeyMetric | None:
    """The run's key metric (:meth:`RoleMap.key_point`, the one resolver shared with the
    stop-early advice, sweep and baseline): best val metric, else min val loss, else
    final train loss."""
    kp = result.resolved_roles().key_point()
    if kp is None:
        return None
    return KeyMetric(kp.role.value, kp.series.metric, kp.kind, kp.value, kp.step, kp.final)


# ---------------------------------------------------------------------------
# Plot data
# ---------------------------------------------------------------------------


def envelope(
    steps: np.ndarray, values: np.ndarray, max_points: int = MAX_DRAW_POINTS
) -> dict[str, np.ndarray | None]:
    """Downsample finite points to ``max_points // 2`` buckets: mean line + min/max band.

    Returns ``steps``/``values`` (the line) and, when downsampled, ``low``/``high`` (the
    band at the same steps) so a spike of one point in a million still shows.  Vectorised:
    one reshape, no Python loop over points.
    """
    steps = np.asarray(steps, dtype="float64")
    values = np.asarray(values, dtype="float64")
    n = len(values)
    if n <= max_points:
        return {"steps": steps, "values": values, "low": None, "high": None}
    buckets = max(max_points // 2, 1)
    size = math.ceil(n / buckets)
    buckets = math.ceil(n / size)
    pad = buckets * size - n
    v = np.concatenate([values, np.full(pad, np.nan)]).reshape(buckets, size)
    s = np.concatenate([steps, np.full(pad, np.nan)]).reshape(buckets, size)
    count = np.sum(~np.isnan(v), axis=1)
    mean = np.nansum(v, axis=1) / count
    low = np.nanmin(v, axis=1)
    high = np.nanmax(v, axis=1)
    centre = np.nansum(s, axis=1) / count
    return {"steps": centre, "values": mean, "low": low, "high": high}


def _line(series: Series, role: str, max_points: int) -> dict[str, Any]:
    fin = series.finite
    env = envelope(fin.steps, fin.values, max_points)
    bad = ~np.isfinite(series.values)
    colour, split = _ROLE_STYLE.get(role, ("#9467bd", ""))
    label = series.metric if role == "learning_rate" else f"{split} {series.metric}".strip()
    parts = series.tag.split("+")
    if len(parts) > 1:
        label += f" (sum of {len(parts)} parts)"
    elif series.tag != series.metric and len(series.tag) <= 40:
        label += f" [{series.tag}]"
    return {
        "role": role,
        "tag": series.tag,
        "label": label,
        "color": colour,
        "n": len(series),
        "steps": env["steps"],
        "values": env["values"],
        "low": env["low"],
        "high": env["high"],
        "nonfinite_steps": series.steps[bad].astype("int64"),
        "nonfinite_spans": _spans(series.steps, bad),
    }


def _spans(steps: np.ndarray, mask: np.ndarray, limit: int = 50) -> list[tuple[int, int]]:
    """Contiguous runs of ``mask`` as (first step, last step); at most ``limit`` of them."""
    if not mask.any():
        return []
    edges = np.diff(np.concatenate([[0], mask.astype("int8"), [0]]))
    starts = np.flatnonzero(edges == 1)
    ends = np.flatnonzero(edges == -1) - 1
    return [(int(steps[a]), int(steps[b])) for a, b in zip(starts[:limit], ends[:limit],
                                                           strict=True)]


def _wants_log(lines: list[dict[str, Any]]) -> bool:
    """Log y when every finite value is positive and they span more than LOG_DECADES."""
    vals = [ln["low"] if ln["low"] is not None else ln["values"] for ln in lines]
    highs = [ln["high"] if ln["high"] is not None else ln["values"] for ln in lines]
    lo_all = np.concatenate([v[np.isfinite(v)] for v in vals]) if vals else np.array([])
    hi_all = np.concatenate([v[np.isfinite(v)] for v in highs]) if highs else np.array([])
    if not len(lo_all) or np.min(lo_all) <= 0:
        return False
    return bool(math.log10(np.max(hi_all) / np.min(lo_all)) > LOG_DECADES)


def plot_data(
    result: RunResult,
    series: dict[str, Series] | None = None,
    max_points: int = MAX_DRAW_POINTS,
) -> dict[str, Any]:
    """Everything :func:`draw` needs for one run, as plain data.

    Panels: ``loss`` (train/val loss), ``metric`` (train/val metric when a val or train
    metric exists), ``lr`` (when logged).  ``markers`` are the finding steps grouped by
    step with their rule ids and worst severity; ``best`` is the key metric's step.
    """
    if series is None:
        series = role_series(result)
    panels: list[dict[str, Any]] = []
    spec = [
        ("loss", "loss", ("train_loss", "val_loss")),
        ("metric", None, ("train_metric", "val_metric")),
        ("lr", "learning rate", ("learning_rate",)),
    ]
    for key, ylabel, roles in spec:
        lines = [_line(series[r], r, max_points) for r in roles if r in series]
        if not lines:
            continue
        if ylabel is None:
            ylabel = series[roles[1] if roles[1] in series else roles[0]].metric
        log = _wants_log(lines) if key in ("loss", "lr") else False
        panels.append({"key": key, "ylabel": ylabel, "log": log, "lines": lines})

    by_step: dict[int, dict[str, Any]] = {}
    for f in result.findings:
        if f.step is None:
            continue
        m = by_step.setdefault(int(f.step), {"step": int(f.step), "rules": [],
                                             "severity": f.severity})
        if f.rule not in m["rules"]:
            m["rules"].append(f.rule)
        if SEVERITY_RANK[f.severity] > SEVERITY_RANK[m["severity"]]:
            m["severity"] = f.severity
    markers = [by_step[k] for k in sorted(by_step)]

    best = None
    km = key_metric(result)
    if km is not None and km.kind != "final":
        panel = "metric" if km.role == "val_metric" else "loss"
        best = {"step": km.step, "value": km.value, "panel": panel,
                "label": f"best val {km.metric} {fmt_value(km.value)} @ step {km.step}"}
    return {"run": run_label(result.run), "panels": panels, "markers": markers, "best": best}


# ---------------------------------------------------------------------------
# Drawing
# ---------------------------------------------------------------------------


def _mpl_text(text: str, limit: int = 90) -> str:
    """Untrusted text made literal for matplotlib: no mathtext ($), no control bytes."""
    s = clean(text)
    if len(s) > limit:
        s = s[: limit - 1] + "…"
    return s.replace("$", r"\$")


def _pad_flat(ax: Any, lines: list[dict[str, Any]]) -> None:
    """A constant series (fixed lr) gets a readable range instead of a +-4% zoom."""
    vals = np.concatenate([ln["values"] for ln in lines]) if lines else np.array([])
    vals = vals[np.isfinite(vals)]
    if len(vals) and np.ptp(vals) == 0:
        v = float(vals[0])
        low, high = (-1.0, 1.0) if v == 0 else sorted((v * 0.5, v * 1.5))
        ax.set_ylim(low, high)


def _label_markers(ax: Any, markers: list[dict[str, Any]]) -> None:
    """Rule ids above the top panel; markers closer than 1.5% of the x range share one
    label (side-by-side columns) so their texts never overprint."""
    from matplotlib.transforms import blended_transform_factory

    xmin, xmax = ax.get_xlim()
    span = (xmax - xmin) or 1.0
    groups: list[dict[str, Any]] = []
    for m in markers:
        if groups and (m["step"] - groups[-1]["step"]) / span < 0.015:
            last = groups[-1]
            last["rules"] += [r for r in m["rules"] if r not in last["rules"]]
            if SEVERITY_RANK[m["severity"]] > SEVERITY_RANK[last["severity"]]:
                last["severity"] = m["severity"]
        else:
            groups.append({"step": m["step"], "rules": list(m["rules"]),
                           "severity": m["severity"]})
    trans = blended_transform_factory(ax.transData, ax.transAxes)
    for g in groups[:MAX_MARKER_LABELS]:
        text = "\n".join(_mpl_text(r, 30) for r in g["rules"][:4])
        ax.text(g["step"], 1.01, text, transform=trans, rotation=90, va="bottom",
                ha="center", fontsize=7, color=_SEV_COLOR.get(g["severity"], "#7f7f7f"))


def draw(data: dict[str, Any], path: Path, *, dpi: int = 100) -> Path | None:
    """Render :func:`plot_data`'s dict to a PNG at ``path``; None when nothing to draw."""
    fig = build_figure(data, dpi=dpi)
    if fig is None:
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, format="png", metadata={"Software": None})
    return path


def build_figure(data: dict[str, Any], *, dpi: int = 100) -> Figure | None:
    """:func:`plot_data`'s dict as a matplotlib Figure (Agg canvas, no pyplot): the PNG of
    the report, or a notebook's plot via ``diagnose.analyze(...).figure()``."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure
    from matplotlib.ticker import MaxNLocator
    from matplotlib.transforms import blended_transform_factory

    panels = data["panels"]
    if not panels:
        return None
    # Fixed margins in inches instead of constrained layout: same look, half the time.
    # The top margin grows with the longest rule id, printed vertically above the plot.
    labels = [m["rules"] for m in data["markers"][:MAX_MARKER_LABELS]]
    longest = max((len(r) for rules in labels for r in rules), default=0)
    width, panel_h, bottom, gap = 9.0, 2.3, 0.5, 0.3
    top = max(0.75, 0.4 + 0.075 * min(longest, 30))
    height = top + bottom + panel_h * len(panels) + gap * (len(panels) - 1)
    fig = Figure(figsize=(width, height), dpi=dpi)
    FigureCanvasAgg(fig)
    axes = fig.subplots(len(panels), 1, sharex=True, squeeze=False)[:, 0]
    fig.subplots_adjust(left=1.0 / width, right=1 - 0.2 / width, top=1 - top / height,
                        bottom=bottom / height, hspace=gap / panel_h)
    fig.suptitle(_mpl_text(data["run"]), fontsize=11, y=1 - 0.12 / height, va="top")

    for ax, panel in zip(axes, panels, strict=True):
        for ln in panel["lines"]:
            label = _mpl_text(ln["label"], 40)
            if ln["low"] is not None:
                label += f" ({ln['n']:,} pts: mean, min-max band)"
            if ln["low"] is not None:
                ax.fill_between(ln["steps"], ln["low"], ln["high"], color=ln["color"],
                                alpha=0.2, linewidth=0)
            style = "o-" if len(ln["steps"]) <= 60 else "-"
            ax.plot(ln["steps"], ln["values"], style, color=ln["color"], label=label,
                    linewidth=1.2, markersize=3)
            bad = ln["nonfinite_steps"]
            if len(bad):
                # Few points: an x at the top per point; many: shade their spans.
                nan_label = f"{_mpl_text(ln['label'], 40)} NaN/inf ({len(bad):,} pts)"
                if len(bad) <= 50:
                    trans = blended_transform_factory(ax.transData, ax.transAxes)
                    ax.plot(bad, np.full(len(bad), 0.97), "x", color="#d62728",
                            transform=trans, markersize=5, label=nan_label)
                for j, (a, b) in enumerate(ln["nonfinite_spans"] if len(bad) > 50 else []):
                    ax.axvspan(a, max(b, a + 0.5), color="#d62728", alpha=0.12, linewidth=0,
                               label=nan_label if j == 0 else None)
        if panel["log"]:
            ax.set_yscale("log")
        else:
            _pad_flat(ax, panel["lines"])
            # 1.2e-4 style ticks: long decimals would push the label off the figure.
            ax.ticklabel_format(axis="y", style="sci", scilimits=(-3, 4), useOffset=False)
        ax.set_ylabel(_mpl_text(panel["ylabel"], 30))
        ax.grid(True, alpha=0.3)

    for m in data["markers"]:
        colour = _SEV_COLOR.get(m["severity"], "#7f7f7f")
        for ax in axes:
            ax.axvline(m["step"], color=colour, linestyle="--", linewidth=1, alpha=0.7)
    _label_markers(axes[0], data["markers"])

    best = data.get("best")
    if best is not None:
        for ax in axes:
            ax.axvline(best["step"], color="#2ca02c", linestyle=":", linewidth=1.2)
        target = next((a for a, p in zip(axes, panels, strict=True)
                       if p["key"] == best["panel"]), axes[0])
        target.plot([best["step"]], [best["value"]], marker="*", color="#2ca02c",
                    markersize=12, linestyle="none", label=_mpl_text(best["label"], 50))

    for ax in axes:
        handles, _ = ax.get_legend_handles_labels()
        if handles:
            ax.legend(fontsize=8, loc="best", framealpha=0.8)
    axes[-1].set_xlabel("step")
    axes[-1].xaxis.set_major_locator(MaxNLocator(integer=True))
    return fig
