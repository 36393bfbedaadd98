"""Findings, recommendations and per-run results: the analysis side's data model.

Plain frozen dataclasses; ``to_dict`` gives exactly the JSON contract of DESIGN.md
(schema_version 1), so every output format is built from the same dicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from enum import StrEnum
from typing import Any, Literal

from diagnose.metrics import RoleMap, resolve_roles
from diagnose.run import Run

Severity = Literal["error", "warning", "info"]
Action = Literal["increase", "decrease", "set", "enable", "disable"]

#: Severity rank, for ``--fail-on`` and sorting.
SEVERITY_RANK: dict[str, int] = {"info": 0, "warning": 1, "error": 2}

SCHEMA_VERSION = 1

class State(StrEnum):
    """Every state a rule may report (DESIGN.md "What each state means" and the other
    states it names).  A rule file with any other ``state`` is a load error, so a typo
    cannot invent a state that no report, benchmark or precedence knows."""

    DIVERGENCE = "divergence"
    BATCHNORM_COLLAPSE = "batchnorm_collapse"
    OVERFIT = "overfit"
    PLATEAU = "plateau"
    UNDERFIT = "underfit"
    INSTABILITY = "instability"
    EXPLODING_GRADIENTS = "exploding_gradients"
    VANISHING_GRADIENTS = "vanishing_gradients"
    DEAD_UNITS = "dead_units"
    LR_SCHEDULE = "lr_schedule"
    UNDERTRAINED = "undertrained"
    LOG = "log"
    REGRESSION = "regression"


#: The training states the run-level verdict is about (DESIGN.md "What each state
#: means"); a run none of their rules could look at is "not judged", never "healthy".
CORE_STATES = ("divergence", "batchnorm_collapse", "overfit", "plateau", "underfit")

#: ``RunResult.verdict`` values.
Verdict = Literal["healthy", "findings", "not_judged"]


def _plain(value: Any) -> Any:
    """JSON-safe copy: numpy scalars -> Python, non-finite floats -> strings."""
    import math

    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    if hasattr(value, "item") and not isinstance(value, (str, bytes)):
        try:
            value = value.item()
        except (TypeError, ValueError):
            return str(value)
    if isinstance(value, float) and not math.isfinite(value):
        return "NaN" if math.isnan(value) else ("Infinity" if value > 0 else "-Infinity")
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    return str(value)


@dataclass(frozen=True)
class Recommendation:
    """One concrete change: hyperparameter, action, current -> proposed, and why."""

    hyperparameter: str
    action: Action
    current: Any
    proposed: Any
    rationale: str
    #: Changes applied in the same trial as this one; in JSON as ``together_with`` (an
    #: additive field under schema_version 1, present only when non-empty).
    together: tuple[Recommendation, ...] = ()
    #: True: this change only works with them (a switch to ReLU goes with He init), so a
    #: trial that cannot carry them is not tried.  False: they are companions that help it
    #: (dropout beside an early stop), and the change alone is still the advice.
    together_needed: bool = True

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = _plain(
            {
                "hyperparameter": self.hyperparameter,
                "action": self.action,
                "current": self.current,
                "proposed": self.proposed,
                "rationale": self.rationale,
            }
        )
        if self.together:
            out["together_with"] = [r.to_dict() for r in self.together]
        return out


@dataclass(frozen=True)
class Finding:
    """One rule firing on one run, with the evidence that decided it."""

    rule: str
    name: str
    state: str
    severity: Severity
    metric: str | None
    step: int | None
    message: str
    evidence: dict[str, Any] = field(default_factory=dict)
    recommendations: tuple[Recommendation, ...] = ()
    #: The rule's typed evidence (``detectors.rule.RuleEvidence``) that ``evidence`` was
    #: written from; None for a user's detector or a hand-made finding.
    detail: Any = field(default=None, compare=False, repr=False)
    #: Findings of lower states this one explains (run-level precedence): summarised in
    #: ``evidence["explains"]``, kept whole so the advice can still read them.
    explained: tuple[Finding, ...] = field(default=(), compare=False, repr=False)

    def with_recommendations(self, recs: list[Recommendation]) -> Finding:
        return replace(self, recommendations=tuple(recs))

    def to_dict(self) -> dict[str, Any]:
        return {
            "rule": self.rule,
            "name": self.name,
            "state": self.state,
            "severity": self.severity,
            "metric": self.metric,
            "step": None if self.step is None else int(self.step),
            "message": self.message,
            "evidence": _plain(self.evidence),
            "recommendations": [r.to_dict() for r in self.recommendations],
        }


@dataclass
class RunResult:
    """Everything the analysis says about one run."""

    run: Run
    roles: dict[str, str] = field(default_factory=dict)
    findings: list[Finding] = field(default_factory=list)
    not_applicable: list[str] = field(default_factory=list)
    probe: dict[str, Any] | None = None
    #: The engine's resolved RoleMap, kept so the recommender, the sweep, the plots and the
    #: probe reuse it instead of resolving the table again (not part of the JSON).
    role_map: RoleMap | None = field(default=None, repr=False, compare=False)
    #: Why the rules could not judge the run (set by the engine: too few points, no loss,
    #: every rule deselected or not applicable); None when they could.
    unjudged: str | None = None

    @property
    def verdict(self) -> Verdict:
        """``findings`` when an error/warning finding names a training state (not a
        ``log`` state: those say why the log cannot be judged), else ``not_judged`` when
        the rules could not judge the run, else ``healthy``."""
        if any(s != "log" for s in self.states):
            return "findings"
        return "not_judged" if self.unjudged else "healthy"

    @property
    def not_judged_reason(self) -> str | None:
        """Why the run was not judged (a short phrase), or None when it was."""
        return self.unjudged if self.verdict == "not_judged" else None

    def class_count(self) -> dict[str, Any]:
        """The class count behind the chance-level tests and the source that gave it
        (:func:`diagnose.signals.class_count`); ``count`` None when it is unknown."""
        from diagnose.signals import class_count

        found = class_count(self.run, self.resolved_roles()) if self.run.scalars is not None \
            else None
        return {"count": found.n if found else None, "source": found.source if found else None}

    def resolved_roles(self) -> RoleMap:
        """The run's RoleMap: the engine's, or resolved now from ``roles`` as aliases."""
        if self.role_map is None:
            self.role_map = resolve_roles(self.run.scalars, dict(self.roles or {}))
        return self.role_map

    @property
    def states(self) -> list[str]:
        """States of error/warning findings, first-seen order, no repeats."""
        seen: list[str] = []
        for f in self.findings:
            if SEVERITY_RANK[f.severity] >= SEVERITY_RANK["warning"] and f.state not in seen:
                seen.append(f.state)
        return seen

    def to_dict(self) -> dict[str, Any]:
        run = self.run
        rng = run.step_range
        out: dict[str, Any] = {
            "run": run.run_id,
            "format": run.format,
            "metrics": run.tags,
            "steps": [rng[0], rng[1]] if rng else [],
            "hparams": _plain(run.hparams),
            "states": self.states,
            "findings": [f.to_dict() for f in self.findings],
            # extensions (schema_version 1 allows additions)
            "verdict": self.verdict,
            "not_judged_reason": self.not_judged_reason,
            # extensions (schema_version 1 allows additions)
            "roles": dict(self.roles),
            "not_applicable": list(self.not_applicable),
            "num_classes": _plain(self.class_count()),
            "notes": [
                _plain({"code": n.code, "message": n.message, "path": n.path, "step": n.step})
                for n in run.notes
            ],
        }
        if self.probe is not None:
            out["probe"] = _plain(self.probe)
        return out


@dataclass(frozen=True)
class LoadError:
    """A path that could not be read at all (listed under ``errors``)."""

    path: str
    message: str

    def to_dict(self) -> dict[str, str]:
        return {"path": self.path, "message": self.message}


@dataclass
class Analysis:
    """The whole answer for one invocation: every run, every error, extras."""

    results: list[RunResult] = field(default_factory=list)
    errors: list[LoadError] = field(default_factory=list)
    extras: dict[str, Any] = field(default_factory=dict)  # e.g. "sweeps", "baseline"

    def max_severity(self) -> int:
        """Highest severity rank over all findings, -1 when none."""
        ranks = [SEVERITY_RANK[f.severity] for r in self.results for f in r.findings]
        return max(ranks, default=-1)

    def to_dict(self, version: str) -> dict[str, Any]:
        out: dict[str, Any] = {
            "schema_version": SCHEMA_VERSION,
            "tool": {"name": "diagnose", "version": version},
            "runs": [r.to_dict() for r in self.results],
            "errors": [e.to_dict() for e in self.errors],
        }
        for key, value in self.extras.items():
            out[key] = _plain(value)
        return out
