"""Detector registry: the functions rules point at by name.

A rule file (``rules/DIV001.toml``) says *what* to report and with which thresholds; a
detector says *how* to look.  A detector is ``fn(ctx: RuleContext, p: dict) ->
list[Hit] | None``: ``None`` means not applicable (its metrics are absent), ``[]`` means
applicable and quiet.  Several rules may share one detector with different thresholds.

Detectors never read files; they ask the :class:`RuleContext` for series by role, and
cache shared computations on it (``ctx.cached``) so ten rules smoothing the same train
loss pay for it once.
"""

from __future__ import annotations

import fnmatch
import importlib
import logging
import re
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from typing import Any, TypeVar

import numpy as np

from diagnose.detectors.params import Param
from diagnose.detectors.rule import Rule, rule_classes
from diagnose.metrics import Role, RoleMap, Series, resolve_roles
from diagnose.numbers import sig
from diagnose.run import Histogram, IngestNote, Run

log = logging.getLogger(__name__)

T = TypeVar("T")


@dataclass(frozen=True)
class Hit:
    """One thing a detector found; the engine turns it into a Finding.

    ``metric`` is the raw tag the hit is about (or None for run-level hits), ``step``
    where it happened, ``message`` one present-tense sentence with the key number and
    step, ``evidence`` the numbers that decided it (thresholds included).
    """

    metric: str | None
    step: int | None
    message: str
    evidence: dict[str, Any]
    #: The rule's typed evidence (a ``RuleEvidence``) when a rule class produced the hit.
    detail: Any = field(default=None, compare=False, repr=False)
    #: A lower severity the rule asks for on this hit (see ``Found.severity``).
    severity: str | None = None


Detector = Callable[["RuleContext", dict[str, Any]], "list[Hit] | None"]

_REGISTRY: dict[str, Detector] = {}
_PARAMS: dict[str, dict[str, Param]] = {}


def detector(
    name: str, params: dict[str, Param] | None = None
) -> Callable[[Detector], Detector]:
    """Register ``fn`` under ``name`` (the value of a rule's ``detector`` key).

    ``params`` declares every threshold the detector reads (type and valid range); rule
    files and config are validated against it.  None (a user's own detector) skips the
    check.
    """

    def wrap(fn: Detector) -> Detector:
        if _rule_for_detector(name) is not None:
            raise ValueError(f"detector {name!r} is a built-in rule's detector")
        if name in _REGISTRY and _REGISTRY[name] is not fn:
            existing = _REGISTRY[name]
            # re-imports (e.g. importlib.reload in tests) replace silently
            if (existing.__module__, existing.__qualname__) != (fn.__module__, fn.__qualname__):
                raise ValueError(f"detector {name!r} registered twice")
        _REGISTRY[name] = fn
        if params is not None:
            _PARAMS[name] = dict(params)
        else:
            _PARAMS.pop(name, None)
        return fn

    return wrap


def _rule_for_detector(name: str) -> type[Rule[Any, Any]] | None:
    """The first built-in rule class (by id) whose detector is ``name``, or None."""
    return next((c for c in rule_classes().values() if c.detector == name), None)


def detector_params(name: str) -> dict[str, Param] | None:
    """The parameter specs of detector ``name`` (a built-in rule class's ``Params``, or
    those a user's function declared); None when it declared none."""
    cls = _rule_for_detector(name)
    if cls is not None:
        return cls.Params.specs()
    return _PARAMS.get(name)


def get_detector(name: str) -> Detector | None:
    """The detector named ``name``: a built-in rule class (an instance is callable with
    the detector protocol) or a user's registered function; None when unknown."""
    cls = _rule_for_detector(name)
    if cls is not None:
        unit: Detector = cls()
        return unit
    return _REGISTRY.get(name)


def detector_names() -> list[str]:
    """Every detector name (built-in rule classes' and registered functions), sorted."""
    return sorted({c.detector for c in rule_classes().values()} | set(_REGISTRY))


class RuleContext:
    """What a detector may look at for one run, plus a per-run cache.

    ``run`` the Run; ``roles`` the resolved RoleMap; ``hparams`` the run's hyperparameters
    updated by user overrides (``--hparam``, ``[tool.diagnose.hparams]``); ``notes`` the
    ingest notes.
    """

    def __init__(self, run: Run, roles: RoleMap | None = None,
                 hparams: dict[str, Any] | None = None,
                 metric_aliases: dict[str, Any] | None = None):
        self.run = run
        self.roles = roles if roles is not None else resolve_roles(run.scalars, metric_aliases)
        self.hparams: dict[str, Any] = {**run.hparams, **(hparams or {})}
        self.notes: list[IngestNote] = list(run.notes)
        self._cache: dict[Hashable, Any] = {}
        self._hist: dict[str, list[Histogram]] | None = None
        #: the engine's configured thresholds of another rule, by id (set by
        #: ``engine.evaluate``); None: the built-in rule file's defaults
        self.configured: Callable[[str], dict[str, Any] | None] | None = None

    def thresholds_of(self, rule_id: str) -> dict[str, Any]:
        """Another rule's thresholds, as configured for this run (a rule that reuses
        another's judgement, e.g. PLT001 asking whether UND004 finds the run poor, uses
        the same thresholds the user set for it); the built-in defaults otherwise."""
        got = self.configured(rule_id) if self.configured is not None else None
        if got is None:
            from diagnose.engine import builtin_rules_dir, load_rule_file

            got = dict(load_rule_file(builtin_rules_dir() / f"{rule_id}.toml").thresholds)
        return got

    def series(self, role: Role | str) -> Series | None:
        """Primary series for a role (raw: NaN/inf kept; detectors decide), or None."""
        return self.roles.get(Role(role))

    def cached(self, key: Hashable, compute: Callable[[], T]) -> T:
        """``compute()`` once per run per ``key`` (e.g. ``("smooth", tag, frac)``)."""
        if key not in self._cache:
            self._cache[key] = compute()
        value: T = self._cache[key]
        return value

    def histograms(self, pattern: str = "*") -> dict[str, list[Histogram]]:
        """Histogram samples per tag (step order) for tags matching ``pattern``.

        ``pattern`` is a shell glob (``*relu*``) or, when it starts with ``re:``, a
        case-insensitive regular expression searched in the tag.
        """
        if self._hist is None:
            grouped: dict[str, list[Histogram]] = {}
            for h in self.run.histograms:
                grouped.setdefault(h.tag, []).append(h)
            for samples in grouped.values():
                samples.sort(key=lambda h: h.step)
            self._hist = grouped
        if pattern in ("*", ""):
            return dict(self._hist)
        if pattern.startswith("re:"):
            rx = re.compile(pattern[3:], re.I)
            return {t: h for t, h in self._hist.items() if rx.search(t)}
        pat = pattern.lower()
        return {t: h for t, h in self._hist.items() if fnmatch.fnmatchcase(t.lower(), pat)}


# ---------------------------------------------------------------------------
# Helpers shared by detectors
# ---------------------------------------------------------------------------


def fmt(x: float | int | None) -> str:
    """A number for a message: 3 significant digits, scientific when very large/small."""
    if x is None or (isinstance(x, (int, np.integer)) and not isinstance(x, bool)):
        return sig(x)
    x = float(x)
    if not np.isfinite(x):
        return "NaN" if np.isnan(x) else ("inf" if x > 0 else "-inf")
    if x == 0:
        return "0"
    return sig(x, 4 if 1 <= abs(x) < 1e5 else 3)


def loss_label(s: Series) -> str:
    """``train loss`` / ``val loss`` / ``train box_loss``: how messages name a series."""
    split = {"train": "train", "val": "val", "test": "test"}.get(s.split, s.split)
    if "+" in s.tag:
        return f"{split} total loss"
    name = s.metric.replace("_", " ") if s.metric not in ("loss", "total_loss") else "loss"
    return f"{split} {name}"


def main_losses(ctx: RuleContext, splits: Sequence[str] = ("train", "val")) -> list[Series]:
    """The primary train and/or val loss series that exist (train first)."""
    out = []
    for split in splits:
        role = Role.TRAIN_LOSS if split == "train" else Role.VAL_LOSS
        s = ctx.series(role)
        if s is not None and len(s):
            out.append(s)
    return out


def finite(ctx: RuleContext, s: Series) -> Series:
    """Cached ``s.finite`` (copying a 1M-point series ten times is not free)."""
    return ctx.cached(("finite", s.tag, s.role), lambda: s.finite)


def binned(ctx: RuleContext, s: Series, max_points: int = 2000) -> tuple[np.ndarray, np.ndarray]:
    """Cached mean-binned finite points (:func:`diagnose.signals.downsample_arrays`)."""
    from diagnose import signals

    def compute() -> tuple[np.ndarray, np.ndarray]:
        f = finite(ctx, s)
        return signals.downsample_arrays(f.steps, f.values, max_points, "mean")

    return ctx.cached(("binned", s.tag, s.role, max_points), compute)


def smoothed(ctx: RuleContext, s: Series, frac: float = 0.05) -> tuple[np.ndarray, np.ndarray]:
    """Cached :func:`diagnose.signals.smooth` of a series' finite points."""
    from diagnose import signals

    def compute() -> tuple[np.ndarray, np.ndarray]:
        bs, bv = binned(ctx, s)
        return signals.smooth(bs, bv, frac=frac)

    return ctx.cached(("smooth", s.tag, s.role, frac), compute)


def noise(ctx: RuleContext, s: Series) -> float:
    """Cached point-to-point noise floor of a series (last 20k finite points)."""
    from diagnose import signals

    def compute() -> float:
        v = finite(ctx, s).values
        return signals.noise_floor(v[-20000:])

    return ctx.cached(("noise", s.tag, s.role), compute)


def early_drop(ctx: RuleContext, s: Series) -> float:
    """Cached :func:`diagnose.signals.early_drop` (how far the curve fell from its start)."""
    from diagnose import signals

    def compute() -> float:
        bs, bv = binned(ctx, s)
        _, sm = smoothed(ctx, s)
        return signals.early_drop(bs, bv, smoothed=sm)

    return ctx.cached(("early_drop", s.tag, s.role), compute)


_MODULES = (
    "divergence",
    "instability",
    "gradients",
    "logs",
    "overfit",
    "underfit",
    "plateau",
    "batchnorm",
    "progress",
)


class RegistryError(RuntimeError):
    """A built-in detector module failed to import: our bug, never a quiet "healthy"."""


def _load_all() -> None:
    """Import every detector module.  A module that fails to import is the tool's own
    bug: it raises :class:`RegistryError` (exit 2) instead of leaving its rules silent, so
    a broken install can never pass a run as healthy."""
    for mod in _MODULES:
        try:
            importlib.import_module(f"{__name__}.{mod}")
        except Exception as exc:
            raise RegistryError(
                f"detector module diagnose.detectors.{mod} failed to import: "
                f"{type(exc).__name__}: {exc}"
            ) from exc


_load_all()
