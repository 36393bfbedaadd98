"""Findings about the log itself: nothing to judge, too little to judge, damaged or
restarted files.  They tell the user why other rules may be silent."""

from __future__ import annotations

import numpy as np

from diagnose.detectors import Hit, RuleContext, detector, loss_label, main_losses
from diagnose.detectors import params as P


@detector("no_loss_metric", params={})
def detect_no_loss_metric(ctx: RuleContext, p: dict) -> list[Hit] | None:
    """No train or val loss could be identified (LOG001)."""
    if main_losses(ctx):
        return []
    tags = ctx.run.tags
    if not tags:
        msg = "the run has no scalar metrics, so no training state can be judged"
    else:
        shown = ", ".join(tags[:5]) + (", ..." if len(tags) > 5 else "")
        msg = (f"no loss metric is found among {len(tags)} scalar tags ({shown}); map one "
               f"with [tool.diagnose.metrics] train_loss = \"TAG\"")
    return [Hit(None, None, msg, {"tags": tags[:50], "tag_count": len(tags)})]


def _notes_hit(ctx: RuleContext, codes: tuple[str, ...], what: str) -> list[Hit]:
    notes = [n for n in ctx.notes if n.code in codes]
    if not notes:
        return []
    first = notes[0]
    paths = sorted({n.path for n in notes if n.path})
    extra = f" ({len(notes)} notes)" if len(notes) > 1 else ""
    msg = f"{what}{extra}: {first.message.rstrip('.')}"
    steps = [n.step for n in notes if n.step is not None]
    return [Hit(None, min(steps) if steps else None, msg, {
        "codes": sorted({n.code for n in notes}), "notes": len(notes), "paths": paths[:20],
        "messages": [n.message for n in notes[:10]]})]


@detector("truncated_log", params={})
def detect_truncated_log(ctx: RuleContext, p: dict) -> list[Hit] | None:
    """The reader met a truncated or corrupt record (LOG002)."""
    return _notes_hit(ctx, ("truncated", "corrupt_record"), "part of the log is damaged")


@detector("restarted_run", params={})
def detect_restarted_run(ctx: RuleContext, p: dict) -> list[Hit] | None:
    """The log holds a restart: steps go back (LOG003)."""
    return _notes_hit(ctx, ("restart",), "the run was restarted")


@detector("too_few_points", params=dict(min_points=P.COUNT))
def detect_too_few_points(ctx: RuleContext, p: dict) -> list[Hit] | None:
    """The main loss has fewer than ``min_points`` finite points (LOG004): trend and
    spike rules need more before they can speak."""
    losses = main_losses(ctx)
    if not losses:
        return None
    counts = [(int(np.isfinite(s.values).sum()), s) for s in losses]
    n, s = max(counts, key=lambda c: c[0])
    if n >= p["min_points"]:
        return []
    last = int(s.steps[-1]) if len(s) else None
    msg = (f"{loss_label(s)} has only {n} finite point{'s' if n != 1 else ''} "
           f"(fewer than {p['min_points']}), too few to judge trends")
    return [Hit(s.tag, last, msg, {"points": n, "min_points": p["min_points"]})]
