"""The rule unit: one class per built-in rule, beside its family's detectors.

A rule class names its id and detector (as its TOML does), declares typed ``Params`` (the
type and valid range of each threshold; the defaults and their docs stay in the rule's
TOML, which is checked against these specs when rules load), and typed ``Evidence`` whose
``to_dict()`` gives the JSON keys.  ``detect`` measures, ``message`` words a finding from
its evidence alone, and ``advise`` turns the finding into recommendation candidates (by
default the shared advice for the rule's state, ``recommend.GENERATORS``)::

    @rule
    class DIV004(Rule["DIV004.Params", "DIV004.Evidence"]):
        id = "DIV004"
        detector = "loss_trending_up"

        @dataclass(frozen=True)
        class Params(RuleParams):
            min_points: int = param(P.COUNT)

        @dataclass(frozen=True)
        class Evidence(RuleEvidence):
            label: str = internal()
            slope_per_step: float = 0.0

        def detect(self, ctx, p): ...
        def message(self, ev): ...

Adding a rule = one class here, one TOML in ``rules/`` and one case file in
``tests/rule_fixtures``.
"""

from __future__ import annotations

import dataclasses
from abc import ABC, abstractmethod
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, ClassVar, Generic, TypeVar

from diagnose.detectors.params import Param

if TYPE_CHECKING:
    from diagnose.advice.moves import AdviceContext
    from diagnose.advice.reconcile import Candidate
    from diagnose.detectors import Hit, RuleContext
    from diagnose.findings import Finding


def param(spec: Param) -> Any:
    """A threshold field with its type and range (the default lives in the rule's TOML;
    an optional one defaults to None, meaning "the detector's own default")."""
    if spec.required:
        return field(metadata={"param": spec})
    return field(default=None, metadata={"param": spec})


def internal(default: Any = None) -> Any:
    """An evidence field the message needs (a label, a branch) that is not a JSON key."""
    return field(default=default, metadata={"json": False})


def optional(default: Any = None) -> Any:
    """An evidence key written only when it has a value (absent, not null, otherwise)."""
    return field(default=default, metadata={"omit_none": True})


#: Metadata of an evidence field holding the rule's Params, written as
#: ``threshold_<key>`` entries (the BN and OVF rules' style):
#: ``thresholds: RuleParams | None = field(default=None, metadata=ECHO)``.
ECHO = {"echo": True}


@dataclass(frozen=True)
class RuleParams:
    """Base of a rule's typed thresholds."""

    @classmethod
    def specs(cls) -> dict[str, Param]:
        """Every threshold's type and range, by key, in declaration order."""
        return {f.name: f.metadata["param"] for f in dataclasses.fields(cls)}

    @classmethod
    def build(cls, values: Mapping[str, Any]) -> Any:
        """The typed parameters from checked threshold values (TOML + config)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in names})

    def items(self) -> list[tuple[str, Any]]:
        """(key, value) pairs of the thresholds that are set (an optional one left to the
        detector's default is None and left out), for evidence that echoes them."""
        pairs = [(f.name, getattr(self, f.name)) for f in dataclasses.fields(self)]
        return [(k, v) for k, v in pairs if v is not None]

    def __getitem__(self, key: str) -> Any:
        """``p["tail_frac"]``: for the family helpers shared by several rules' Params."""
        return getattr(self, key)

    def get(self, key: str, default: Any = None) -> Any:
        """The threshold ``key``, or ``default`` when it is unset (None) or not declared."""
        value = getattr(self, key, None)
        return default if value is None else value


@dataclass(frozen=True)
class RuleEvidence:
    """Base of a rule's typed evidence; ``to_dict`` gives the finding's JSON keys in field
    order (``internal`` fields left out, ``optional`` ones only when set, an ``ECHO``
    field (metadata ``ECHO``) expanded to ``threshold_<key>`` entries)."""

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {}
        for f in dataclasses.fields(self):
            if not f.metadata.get("json", True):
                continue
            value = getattr(self, f.name)
            if f.metadata.get("echo"):
                if value is not None:
                    out.update({f"threshold_{k}": v for k, v in value.items()})
                continue
            if value is None and f.metadata.get("omit_none"):
                continue
            out[f.name] = value
        return out


E = TypeVar("E", bound=RuleEvidence)
P = TypeVar("P", bound=RuleParams)


@dataclass(frozen=True)
class Found(Generic[E]):
    """What ``detect`` found: the raw tag (None for run-level), the step, the evidence."""

    metric: str | None
    step: int | None
    evidence: E
    #: A lower severity for this one finding (never a higher one), e.g. "info" for a
    #: pattern that did not stop learning; a severity set in the user's config wins.
    severity: str | None = None


class Rule(ABC, Generic[P, E]):
    """One built-in rule: typed parameters and evidence, ``detect`` and ``message``."""

    id: ClassVar[str]
    #: The ``detector`` its TOML names (shown by ``diagnose explain``; checked on load).
    detector: ClassVar[str]
    Params: ClassVar[type[RuleParams]]
    Evidence: ClassVar[type[RuleEvidence]]

    @abstractmethod
    def detect(self, ctx: RuleContext, p: P) -> list[Found[E]] | None:
        """None: not applicable (its metrics are absent); []: applicable and quiet."""

    @abstractmethod
    def message(self, ev: E) -> str:
        """One present-tense sentence with the key number and step, from ``ev`` alone."""

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        """The rule's recommendation candidates for ``finding`` (its typed evidence is
        ``finding.detail``).  By default the shared advice for the rule's state
        (``recommend.GENERATORS``); a rule overrides this to advise from its own evidence.
        """
        from diagnose.recommend import state_advice

        return state_advice(ctx, finding)

    def __call__(self, ctx: RuleContext, values: Mapping[str, Any]) -> list[Hit] | None:
        """The detector protocol the engine calls: thresholds in, Hits (with the typed
        evidence kept as ``detail``) out."""
        from diagnose.detectors import Hit

        found = self.detect(ctx, self.Params.build(values))
        if found is None:
            return None
        return [Hit(f.metric, f.step, self.message(f.evidence), f.evidence.to_dict(),
                    f.evidence, f.severity) for f in found]


_RULES: dict[str, type[Rule[Any, Any]]] = {}

R = TypeVar("R", bound=type)


def rule(cls: R) -> R:
    """Register a rule class under its id (the one registry of built-in rules)."""
    rid = cls.id  # type: ignore[attr-defined]
    existing = _RULES.get(rid)
    if existing is not None and (existing.__module__, existing.__qualname__) != (
            cls.__module__, cls.__qualname__):
        raise ValueError(f"rule {rid!r} registered twice")
    _RULES[rid] = cls
    return cls


def rule_class(rule_id: str) -> type[Rule[Any, Any]] | None:
    """The class of built-in rule ``rule_id``, or None."""
    return _RULES.get(rule_id)


def rule_classes() -> dict[str, type[Rule[Any, Any]]]:
    """Every registered rule class by id (sorted)."""
    return dict(sorted(_RULES.items()))
