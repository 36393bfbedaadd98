"""Findings about the log itself: nothing to judge, too little to judge, damaged or
restarted files.  They tell the user why other rules may be silent."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from diagnose.detectors import RuleContext, loss_label, main_losses
from diagnose.detectors import params as P
from diagnose.detectors.rule import (
    Found,
    Rule,
    RuleEvidence,
    RuleParams,
    internal,
    param,
    rule,
)


@dataclass(frozen=True)
class NoParams(RuleParams):
    """A rule with no thresholds."""


@rule
class LOG001(Rule[NoParams, "LOG001.Evidence"]):
    """No train or val loss could be identified."""

    id = "LOG001"
    detector = "no_loss_metric"
    Params = NoParams

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        tags: list[str] = field(default_factory=list)
        tag_count: int = 0

    def detect(self, ctx: RuleContext, p: NoParams) -> list[Found[LOG001.Evidence]] | None:
        if main_losses(ctx):
            return []
        tags = ctx.run.tags
        return [Found(None, None, LOG001.Evidence(tags=tags[:50], tag_count=len(tags)))]

    def message(self, ev: LOG001.Evidence) -> str:
        if not ev.tag_count:
            return "the run has no scalar metrics, so no training state can be judged"
        shown = ", ".join(ev.tags[:5]) + (", ..." if ev.tag_count > 5 else "")
        return (f"no loss metric is found among {ev.tag_count} scalar tags ({shown}); map "
                f"one with [tool.diagnose.metrics] train_loss = \"TAG\"")


@dataclass(frozen=True)
class NotesEvidence(RuleEvidence):
    codes: list[str] = field(default_factory=list)
    notes: int = 0
    paths: list[str] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)


class _NotesRule(Rule[NoParams, NotesEvidence]):
    """A finding made of the reader's notes with ``codes``."""

    Params = NoParams
    Evidence = NotesEvidence
    codes: tuple[str, ...] = ()
    what = ""

    def detect(self, ctx: RuleContext, p: NoParams) -> list[Found[NotesEvidence]] | None:
        notes = [n for n in ctx.notes if n.code in self.codes]
        if not notes:
            return []
        paths = sorted({n.path for n in notes if n.path})
        steps = [n.step for n in notes if n.step is not None]
        ev = NotesEvidence(codes=sorted({n.code for n in notes}), notes=len(notes),
                           paths=paths[:20], messages=[n.message for n in notes[:10]])
        return [Found(None, min(steps) if steps else None, ev)]

    def message(self, ev: NotesEvidence) -> str:
        extra = f" ({ev.notes} notes)" if ev.notes > 1 else ""
        return f"{self.what}{extra}: {ev.messages[0].rstrip('.')}"


@rule
class LOG002(_NotesRule):
    """The reader met a truncated or corrupt record."""

    id = "LOG002"
    detector = "truncated_log"
    codes = ("truncated", "corrupt_record")
    what = "part of the log is damaged"


@rule
class LOG003(_NotesRule):
    """The log holds a restart: steps go back."""

    id = "LOG003"
    detector = "restarted_run"
    codes = ("restart",)
    what = "the run was restarted"


@rule
class LOG004(Rule["LOG004.Params", "LOG004.Evidence"]):
    """The main loss has fewer than ``min_points`` finite points: trend and spike rules
    need more before they can speak."""

    id = "LOG004"
    detector = "too_few_points"

    @dataclass(frozen=True)
    class Params(RuleParams):
        min_points: int = param(P.COUNT)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        label: str = internal("")
        points: int = 0
        min_points: int = 0

    def detect(self, ctx: RuleContext, p: LOG004.Params) -> list[Found[LOG004.Evidence]] | None:
        losses = main_losses(ctx)
        if not losses:
            return None
        counts = [(int(np.isfinite(s.values).sum()), s) for s in losses]
        n, s = max(counts, key=lambda c: c[0])
        if n >= p.min_points:
            return []
        last = int(s.steps[-1]) if len(s) else None
        return [Found(s.tag, last, LOG004.Evidence(label=loss_label(s), points=n,
                                                   min_points=p.min_points))]

    def message(self, ev: LOG004.Evidence) -> str:
        n = ev.points
        return (f"{ev.label} has only {n} finite point{'s' if n != 1 else ''} "
                f"(fewer than {ev.min_points}), too few to judge trends")
