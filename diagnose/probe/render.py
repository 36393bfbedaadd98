"""Probe results as text, markdown and an overlay plot of control vs candidates."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from diagnose.numbers import sig


def _num(value: Any) -> str:
    if isinstance(value, float):
        if math.isnan(value):
            return "n/a"
        if math.isinf(value):
            return "diverged" if value > 0 else "-inf"
        return sig(value)
    return "–" if value is None else str(value)


def _value(value: Any) -> str:
    from diagnose.probe.template import format_value

    return _num(value) if isinstance(value, float) else format_value(value)


def change_text(key: str, before: Any, after: Any, proposed: Any = None) -> str:
    """``learning_rate: 8 -> 0.8``; ``enable drop_last``; never ``None``/``False -> True``."""
    if isinstance(after, bool):
        text = f"{'enable' if after else 'disable'} {key}"
    elif before is None:
        text = f"{key} = {_value(after)} (the run records no {key})"
    else:
        text = f"{key}: {_value(before)} -> {_value(after)}"
    if proposed is not None and not isinstance(after, bool) and _value(proposed) != _value(after):
        scaled = ", scaled to the trial budget" if key in ("max_steps", "epochs") else ""
        text += f" (recommended {_value(proposed)}{scaled})"
    return text


def _changes(c: dict[str, Any]) -> str:
    proposed = c.get("proposed") or {}
    return ", ".join(change_text(k, c["from"].get(k), v, proposed.get(k))
                     for k, v in c["changes"].items())


def _trial_summary(trials: list[dict[str, Any]]) -> str:
    parts = []
    for t in trials:
        if t["status"] != "ok":
            parts.append(f"seed {t['seed']}: {t['status']} ({t.get('message', '')})")
        else:
            states = ",".join(t.get("states") or []) or "healthy"
            parts.append(f"seed {t['seed']}: {states}")
    return "; ".join(parts)


def _budget(probe: dict[str, Any]) -> str:
    if probe.get("max_steps"):
        return f"budget {probe['max_steps']} steps"
    if probe.get("epochs"):
        return f"budget {probe['epochs']} epochs"
    return "each trial's own length (the template sets no {max_steps} or {epochs})"


def _compared(probe: dict[str, Any]) -> str:
    if not probe.get("metric"):
        return "no trial logged a loss or metric to compare"
    at = f" at step {probe['matched_step']}" if probe.get("matched_step") is not None else ""
    return f"compared on {probe['metric']}{at}"


def probe_lines(probe: dict[str, Any]) -> list[str]:
    """Plain-text lines for the terminal."""
    lines = [
        f"probe on {probe['device']}: {len(probe['candidates'])} candidate(s) x "
        f"{probe['seeds']} seed(s) + control, {_budget(probe)}, {_compared(probe)}, "
        f"{probe['wall_s']} s",
        f"  control: {_trial_summary(probe['control'].get('trials', []))}",
    ]
    for c in probe["candidates"]:
        effect = ""
        if "effect" in c:
            spread = (f", spread {_num(c.get('spread'))}" if c.get("spread") is not None
                      else "")
            effect = (f" (control {_num(c.get('control_mean'))}, candidate "
                      f"{_num(c.get('candidate_mean'))}{spread})")
        at = (" [final values]" if c.get("compared_at") == "each arm's last step" else "")
        lines.append(f"  {c['verdict'].upper():<12} {_changes(c)}{effect}{at}: "
                     f"{c.get('reason', '')}")
        lines.append(f"    trials: {_trial_summary(c['trials'])}")
    for s in probe.get("skipped", []):
        lines.append(f"  not probed   {s['hyperparameter']}: {s['reason']}")
    return lines


def _md(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ").replace("`", "'")


def probe_markdown(probe: dict[str, Any], plot: Path | None = None) -> str:
    """A markdown section: verdict table, skipped recommendations, the overlay plot."""
    out = [
        "### Probe: confirmation trials",
        "",
        f"Device **{_md(probe['device'])}**, {probe['seeds']} seed(s) per arm, "
        f"{_md(_budget(probe))}, {_md(_compared(probe))}; wall time {probe['wall_s']} s.",
        "",
        "| candidate | verdict | control | candidate | effect | seed spread | why |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in probe["candidates"]:
        out.append(
            f"| {_md(_changes(c))} | **{c['verdict']}** | {_num(c.get('control_mean'))} | "
            f"{_num(c.get('candidate_mean'))} | {_num(c.get('effect'))} | "
            f"{_num(c.get('spread'))} | {_md(c.get('reason', ''))} |"
        )
    for s in probe.get("skipped", []):
        out.append(f"\nNot probed: `{_md(s['hyperparameter'])}` ({_md(s['reason'])}).")
    if plot is not None:
        out += ["", f"![control vs candidates]({plot.name})"]
    return "\n".join(out) + "\n"


def plot_probe(probe: dict[str, Any], path: Path) -> Path | None:
    """Overlay every trial's curve: control in grey, each candidate in its own colour."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    arms = [("control", probe["control"].get("trials", []))] + [
        (c["key"] + f" ({c['verdict']})", c["trials"]) for c in probe["candidates"]
    ]
    if not any(t.get("curve", {}).get("steps") for _, trials in arms for t in trials):
        return None
    fig = Figure(figsize=(7.0, 4.2), dpi=100)
    FigureCanvasAgg(fig)
    ax = fig.add_subplot(1, 1, 1)
    positive = True
    for i, (label, trials) in enumerate(arms):
        color = "0.45" if i == 0 else f"C{i - 1}"
        for j, t in enumerate(trials):
            curve = t.get("curve") or {}
            steps, values = curve.get("steps", []), curve.get("values", [])
            if not steps:
                continue
            finite = [v for v in values if v is not None and math.isfinite(v)]
            positive = positive and all(v > 0 for v in finite)
            ax.plot(steps, [v if v is not None and math.isfinite(v) else math.nan
                            for v in values],
                    color=color, lw=1.2, alpha=0.85, label=label if j == 0 else None)
    if probe.get("matched_step"):
        ax.axvline(probe["matched_step"], color="k", ls=":", lw=1, label="matched step")
    if positive and "loss" in str(probe.get("metric", "")):
        ax.set_yscale("log")
    ax.set_xlabel("step")
    ax.set_ylabel(str(probe.get("metric", "metric")).replace("_", " "))
    ax.set_title("Probe: control vs candidates (every seed)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path)
    return path
