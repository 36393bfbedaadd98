"""The rule engine: load declarative rules, run their detectors, return findings.

A rule is one TOML file (built-in ones in the top-level ``rules/`` folder, shipped in the
wheel as ``diagnose/_builtin_rules``; users add folders with ``rules-dirs``)::

    id = "DIV001"                      # 2-4 capitals + 3 digits, unique
    name = "loss-non-finite"           # kebab-case
    state = "divergence"               # one of findings.State
    severity = "error"                 # error | warning | info
    detector = "nonfinite_loss"        # registered in diagnose.detectors
    summary = "Loss becomes NaN or infinite and does not recover."
    preview = false                    # optional: off unless preview is enabled
    supersedes = ["DIV002"]            # optional: drop these rules' findings on the
                                       # same metric when this rule fires
    evaluated_by = "baseline"          # optional, instead of ``detector``: a rule that
                                       # is documented here but produced elsewhere
                                       # (BSL001-003 by diagnose.baseline.compare with
                                       # --baseline); evaluate() skips it, the
                                       # catalogue and `diagnose explain` list it
    [thresholds]                       # defaults; users override per rule in config
    recover_points = 3
    [doc]
    what = "..."  why = "..."  evidence = "..."
    causes = ["..."]  fixes = ["..."]  references = ["..."]
    [doc.thresholds]                   # one line per threshold key
    recover_points = "finite points after the last NaN that count as a recovery"

Validation errors are :class:`RuleError` with one line naming the file and the key.
"""

from __future__ import annotations

import functools
import logging
import re
import time
import tomllib
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np

from diagnose.config import SEVERITIES, Config, ConfigError, is_severity
from diagnose.findings import CORE_STATES, SEVERITY_RANK, Finding, RunResult, Severity, State
from diagnose.metrics import resolve_roles
from diagnose.run import Run

log = logging.getLogger(__name__)

_ID_RE = re.compile(r"^[A-Z]{2,4}[0-9]{3}$")
_NAME_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*$")
_DOC_TEXT = ("what", "why", "evidence")
_DOC_LISTS = ("causes", "fixes", "references")
_TOP_KEYS = {
    "id", "name", "state", "severity", "detector", "summary", "preview", "thresholds",
    "doc", "supersedes", "evaluated_by",
}

#: Where rules without a detector are evaluated (``evaluated_by``): name -> description.
EVALUATORS = {
    "baseline": "comparison with a reference run (diagnose RUN --baseline REFERENCE_RUN)",
}


class RuleError(ValueError):
    """A rule file that cannot be used; the message is one line naming file and key."""


class AnalysisError(RuntimeError):
    """The tool's own bug while judging a run (a detector raised, a built-in rule names a
    detector that does not exist).  One line naming the rule and the run; the CLI exits 2
    instead of letting the other runs print "healthy" over a silent gap."""


@dataclass(frozen=True)
class RuleSpec:
    """One rule as declared in its TOML file."""

    id: str
    name: str
    state: State
    severity: Severity
    detector: str
    summary: str
    thresholds: dict[str, Any] = field(default_factory=dict)
    doc: dict[str, Any] = field(default_factory=dict)
    preview: bool = False
    path: Path | None = None
    supersedes: tuple[str, ...] = ()
    evaluated_by: str | None = None

    @property
    def per_run(self) -> bool:
        """True for rules whose detector :func:`evaluate` runs on each run; False for
        rules produced elsewhere (``evaluated_by``), which are documented only."""
        return self.evaluated_by is None


# ---------------------------------------------------------------------------
# Loading
# ---------------------------------------------------------------------------


def builtin_rules_dir() -> Path:
    """Where the built-in rules live: inside the wheel, else the repo's ``rules/``."""
    packaged = Path(__file__).parent / "_builtin_rules"
    if packaged.is_dir():
        return packaged
    return Path(__file__).parents[1] / "rules"


def _is_threshold_value(v: Any) -> bool:
    if isinstance(v, (int, float, str, bool)):
        return True
    return isinstance(v, list) and all(
        isinstance(x, (int, float, str)) and not isinstance(x, bool) for x in v
    )


def parse_rule(data: dict[str, Any], path: Path) -> RuleSpec:
    """Validate one rule table; raise :class:`RuleError` naming ``path`` and the key."""
    where = str(path)

    def bad(key: str, why: str) -> RuleError:
        return RuleError(f"{where}: key '{key}' {why}")

    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise bad(unknown[0], "is not a rule key")
    evaluated_by = data.get("evaluated_by")
    if evaluated_by is not None:
        if evaluated_by not in EVALUATORS:
            raise bad("evaluated_by", f"must be one of {', '.join(sorted(EVALUATORS))}")
        if "detector" in data:
            raise bad("detector", "cannot be combined with evaluated_by (the rule is "
                      "not run by a detector)")
        if data.get("thresholds"):
            raise bad("thresholds", "cannot be set for a rule with evaluated_by (its "
                      "evaluator does not read them)")
    required = ("id", "name", "state", "severity", "summary")
    for key in required + (() if evaluated_by is not None else ("detector",)):
        if key not in data:
            raise bad(key, "is missing")
        if not isinstance(data[key], str) or not data[key].strip():
            raise bad(key, "must be a non-empty string")
    if not _ID_RE.match(data["id"]):
        raise bad("id", "must be 2-4 capital letters and 3 digits (e.g. DIV001)")
    if not _NAME_RE.match(data["name"]):
        raise bad("name", "must be kebab-case")
    if data["state"] not in {s.value for s in State}:
        raise bad("state", f"must be one of {', '.join(s.value for s in State)}")
    if data["severity"] not in SEVERITIES:
        raise bad("severity", f"must be one of {', '.join(SEVERITIES)}")
    preview = data.get("preview", False)
    if not isinstance(preview, bool):
        raise bad("preview", "must be true or false")
    thresholds = data.get("thresholds", {})
    if not isinstance(thresholds, dict):
        raise bad("thresholds", "must be a table")
    for k, v in thresholds.items():
        if not _is_threshold_value(v):
            raise bad(f"thresholds.{k}", "must be a number, string, boolean or list")
    doc = data.get("doc", {})
    if not isinstance(doc, dict):
        raise bad("doc", "must be a table")
    for k in _DOC_TEXT:
        if k in doc and not isinstance(doc[k], str):
            raise bad(f"doc.{k}", "must be a string")
    for k in _DOC_LISTS:
        if k in doc and (
            not isinstance(doc[k], list) or not all(isinstance(x, str) for x in doc[k])
        ):
            raise bad(f"doc.{k}", "must be a list of strings")
    if "thresholds" in doc and not isinstance(doc["thresholds"], dict):
        raise bad("doc.thresholds", "must be a table of threshold = description")
    sup = data.get("supersedes", [])
    if not isinstance(sup, list) or not all(isinstance(x, str) and _ID_RE.match(x) for x in sup):
        raise bad("supersedes", "must be a list of rule ids")
    return RuleSpec(
        id=data["id"],
        name=data["name"],
        state=State(data["state"]),
        severity=data["severity"],
        detector=data.get("detector", ""),
        summary=data["summary"].strip(),
        thresholds=dict(thresholds),
        doc=dict(doc),
        preview=preview,
        path=path,
        supersedes=tuple(sup),
        evaluated_by=evaluated_by,
    )


def load_rule_file(path: Path) -> RuleSpec:
    """Read and validate one ``*.toml`` rule file."""
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise RuleError(f"{path}: not valid TOML ({exc})") from None
    except OSError as exc:
        raise RuleError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_rule(data, path)


def _unit(spec: RuleSpec) -> Any:
    """What evaluates ``spec`` on a run: its built-in rule class (an instance; found by
    id), else the detector its TOML names (a built-in class's, or a user's function)."""
    from diagnose.detectors import get_detector
    from diagnose.detectors.rule import rule_class

    cls = rule_class(spec.id)
    if cls is not None and cls.detector == spec.detector:
        return cls()
    return get_detector(spec.detector)


def param_specs(spec: RuleSpec) -> dict[str, Any] | None:
    """The typed parameters of ``spec`` (its rule class's ``Params``, or what a user's
    detector declared); None for a rule without declared parameters."""
    from diagnose.detectors import detector_params
    from diagnose.detectors.rule import rule_class

    if not spec.per_run:
        return None
    cls = rule_class(spec.id)
    if cls is not None and cls.detector == spec.detector:
        return cls.Params.specs()
    return detector_params(spec.detector)


def check_thresholds(spec: RuleSpec) -> RuleSpec:
    """``spec`` with its ``[thresholds]`` validated against its detector's declared
    parameters: every key known, every required one present, every value in range.
    Raises :class:`RuleError` naming the file and the key."""
    specs = param_specs(spec)
    if specs is None:
        return spec
    where = str(spec.path) if spec.path else spec.id
    known = ", ".join(sorted(specs)) or "none"
    out: dict[str, Any] = {}
    for key, value in spec.thresholds.items():
        param = specs.get(key)
        if param is None:
            raise RuleError(f"{where}: key 'thresholds.{key}' is not a parameter of "
                            f"detector {spec.detector!r} (known: {known})")
        try:
            out[key] = param.coerce(value)
        except ValueError as exc:
            raise RuleError(f"{where}: key 'thresholds.{key}' {exc}") from None
    for key, param in specs.items():
        if param.required and key not in out:
            raise RuleError(f"{where}: key 'thresholds.{key}' is missing (detector "
                            f"{spec.detector!r} needs it)")
    return replace(spec, thresholds=out)


@functools.lru_cache(maxsize=32)
def _load_cached(dirs: tuple[tuple[str, bool], ...],
                 stamp: tuple[int, ...]) -> tuple[RuleSpec, ...]:
    rules: list[RuleSpec] = []
    seen: dict[str, Path] = {}
    for folder, builtin in dirs:
        path = Path(folder)
        if not path.is_dir():
            raise RuleError(f"{path}: rules folder not found")
        for file in sorted(path.glob("*.toml")):
            spec = load_rule_file(file)
            if spec.id in seen:
                raise RuleError(f"{file}: key 'id' duplicates {spec.id} from {seen[spec.id]}")
            if spec.per_run and _unit(spec) is None:
                if builtin:  # our own rule without its code: a broken install
                    raise AnalysisError(f"built-in rule {spec.id} names detector "
                                        f"{spec.detector!r}, which is not registered")
                raise RuleError(f"{file}: key 'detector' names unknown detector "
                                f"{spec.detector!r}")
            if builtin and spec.per_run:
                from diagnose.detectors.rule import rule_class

                cls = rule_class(spec.id)
                if cls is None or cls.detector != spec.detector:
                    # one class per rule: its typed parameters, evidence and message
                    raise AnalysisError(f"built-in rule {spec.id} has no rule class with "
                                        f"detector {spec.detector!r}")
            spec = check_thresholds(spec)
            seen[spec.id] = file
            rules.append(spec)
    return tuple(rules)


def _stamp(dirs: Iterable[Path]) -> tuple[int, ...]:
    out: list[int] = []
    for d in dirs:
        try:
            out.append(max((f.stat().st_mtime_ns for f in d.glob("*.toml")), default=0))
            out.append(len(list(d.glob("*.toml"))))
        except OSError:
            out.append(-1)
    return tuple(out)


def load_rules(extra_dirs: Sequence[Path] = ()) -> list[RuleSpec]:
    """Built-in rules plus every ``*.toml`` in ``extra_dirs``, sorted by id.

    Raises :class:`RuleError` for an invalid file, a duplicate id, a missing folder, or
    (in a user folder) a detector that does not exist.  Cached per folder set and mtime.
    """
    folders = [(str(builtin_rules_dir()), True)] + [(str(Path(d)), False) for d in extra_dirs]
    stamp = _stamp(Path(f) for f, _ in folders)
    return sorted(_load_cached(tuple(folders), stamp), key=lambda r: r.id)


# ---------------------------------------------------------------------------
# Configuration applied to rules
# ---------------------------------------------------------------------------


def _coerce_threshold(rule: RuleSpec, key: str, default: Any, value: Any) -> Any:
    """A config value for a threshold: checked against the detector's declared type and
    range, or (a user detector that declares none) converted to the default's type."""
    where = f"thresholds.{rule.id}.{key}"
    param = (param_specs(rule) or {}).get(key)
    if param is not None:
        try:
            return param.coerce(value)
        except ValueError as exc:
            raise ConfigError(f"config key '{where}' {exc}") from None
    if isinstance(default, bool):
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.lower() in ("true", "false"):
            return value.lower() == "true"
        raise ConfigError(f"config key '{where}' must be true or false")
    if isinstance(default, (int, float)):
        try:
            num = float(value)
        except (TypeError, ValueError):
            raise ConfigError(f"config key '{where}' must be a number") from None
        if isinstance(default, int) and num.is_integer():
            return int(num)
        return num
    return value


def rule_thresholds(rule: RuleSpec, config: Config) -> dict[str, Any]:
    """The rule's defaults updated by ``config.thresholds[rule.id]``; an unknown key
    raises :class:`ConfigError` naming it."""
    params = dict(rule.thresholds)
    for key, value in config.thresholds.get(rule.id, {}).items():
        if key not in params:
            known = ", ".join(sorted(params)) or "none"
            raise ConfigError(
                f"config key 'thresholds.{rule.id}.{key}' is not a threshold of "
                f"{rule.id} (known: {known})"
            )
        params[key] = _coerce_threshold(rule, key, params[key], value)
    return params


def check_config(rules: Sequence[RuleSpec], config: Config) -> None:
    """Raise :class:`ConfigError` for select/ignore naming no rule, thresholds/severity
    naming an unknown rule or key, or a threshold of the wrong type or out of range.

    A gate that checks nothing (``--select XYZ999``) must fail, not pass forever.
    """
    ids = {r.id for r in rules}
    for key in ("select", "ignore"):
        for entry in getattr(config, key):
            if not any(rid.startswith(entry) for rid in ids):
                raise ConfigError(
                    f"{config.origin(key)} names '{entry}', which is no rule id or prefix "
                    "(see 'diagnose rules')"
                )
    for rid in config.thresholds:
        if rid not in ids:
            raise ConfigError(f"config key 'thresholds.{rid}' names an unknown rule")
    for rid in config.severity:
        if rid not in ids:
            raise ConfigError(f"config key 'severity.{rid}' names an unknown rule")
    for r in rules:
        rule_thresholds(r, config)


# ---------------------------------------------------------------------------
# Evaluation
# ---------------------------------------------------------------------------


def _sort_key(f: Finding) -> tuple[int, int, str, str]:
    return (-SEVERITY_RANK[f.severity], f.step if f.step is not None else -1, f.rule,
            f.metric or "")


def _suppress(findings: list[Finding], by_id: dict[str, RuleSpec]) -> list[Finding]:
    """Drop redundant findings.

    1. A rule's ``supersedes`` list: when it fires on a metric, the superseded rules'
       findings on that metric go (NaN explains the explosion before it).
    2. The same state on the same metric at the same step from two rules keeps only the
       most severe (ties: lower rule id).
    """
    dropped: set[int] = set()
    for i, f in enumerate(findings):
        for other in findings:
            if other is f:
                continue
            spec = by_id.get(other.rule)
            if spec and f.rule in spec.supersedes and other.metric == f.metric:
                dropped.add(i)
                break
    best: dict[tuple[str, str | None, int | None], int] = {}
    for i, f in enumerate(findings):
        if i in dropped or f.step is None:
            continue
        key = (f.state, f.metric, f.step)
        j = best.get(key)
        if j is None:
            best[key] = i
            continue
        g = findings[j]
        if (SEVERITY_RANK[f.severity], g.rule) > (SEVERITY_RANK[g.severity], f.rule):
            dropped.add(j)
            best[key] = i
        else:
            dropped.add(i)
    return [f for i, f in enumerate(findings) if i not in dropped]


#: Run-level precedence across metrics (DESIGN.md "What each state means"): a state
#: explains the symptoms of the states listed for it, so those are folded into its finding
#: as evidence instead of being reported as a second state.  divergence >
#: batchnorm_collapse > overfit, plateau, underfit > other states.
EXPLAINS: dict[str, tuple[str, ...]] = {
    # the grad norm explodes, the loss thrashes, val degrades because the loss diverged
    "divergence": ("batchnorm_collapse", "overfit", "plateau", "underfit", "instability",
                   "exploding_gradients"),
    # val never good because eval-mode statistics are broken: not overfit (val side only)
    "batchnorm_collapse": ("overfit", "plateau", "underfit", "instability"),
}
#: States whose explanation covers only symptoms on validation metrics (train-side
#: findings are their own evidence: train is fine under a batch-norm collapse).
_VAL_SIDE_ONLY = ("batchnorm_collapse",)


def fold_explained(findings: list[Finding], roles: Any = None) -> list[Finding]:
    """Fold the findings a higher state explains into that state's first finding.

    A warning/error finding of a lower state is explained when it starts at or after the
    higher finding's step (a symptom that came with or after it; an overfit that started
    well before the divergence has its own evidence and stays) and, for a batch-norm
    collapse, is about a validation metric.  The folded findings become the higher
    finding's ``explains`` evidence (rule, state, metric, step, message), so nothing is
    lost; info findings are left alone (they carry no state).
    """
    out = list(findings)
    for state, lower in EXPLAINS.items():
        heads = [i for i, f in enumerate(out)
                 if f.state == state and SEVERITY_RANK[f.severity] >= SEVERITY_RANK["warning"]]
        if not heads:
            continue
        steps = [step for i in heads if (step := out[i].step) is not None]
        onset = min(steps) if steps else None
        folded: list[int] = []
        for j, g in enumerate(out):
            if g.state not in lower or SEVERITY_RANK[g.severity] < SEVERITY_RANK["warning"]:
                continue
            if onset is not None and g.step is not None and g.step < onset:
                continue  # it started before: its own evidence (overfit, then divergence)
            if state in _VAL_SIDE_ONLY and not _val_side(g.metric, roles):
                continue
            folded.append(j)
        if not folded:
            continue
        head = out[heads[0]]
        explains = list(head.evidence.get("explains", [])) + [
            {"rule": out[j].rule, "state": out[j].state, "metric": out[j].metric,
             "step": out[j].step, "message": out[j].message} for j in folded]
        out[heads[0]] = replace(head, evidence={**head.evidence, "explains": explains},
                                explained=head.explained + tuple(out[j] for j in folded))
        out = [f for j, f in enumerate(out) if j not in set(folded)]
    return out


def _val_side(metric: str | None, roles: Any) -> bool:
    """True when ``metric`` is a validation/test series of the run."""
    if metric is None or roles is None:
        return False
    s = roles.by_tag.get(metric)
    return s is not None and s.split in ("val", "test")


def evaluate(run: Run, config: Config | None = None,
             rules: list[RuleSpec] | None = None) -> RunResult:
    """Run every enabled rule on ``run`` and return its findings.

    Rules are selected with ``config.rule_enabled`` (preview rules need preview on or an
    exact select), thresholds are rule defaults updated by the config, severity can be
    overridden.  A detector returning None puts the rule in ``not_applicable``.  A
    detector that raises is the tool's own bug: :class:`AnalysisError` naming the rule and
    the run (the CLI exits 2), never a silently skipped rule.
    """
    from diagnose.detectors import RuleContext

    config = config or Config()
    if rules is None:
        rules = load_rules(config.rules_dirs)
        check_config(rules, config)
    roles = resolve_roles(run.scalars, config.metrics)
    ctx = RuleContext(run, roles=roles, hparams=config.hparams)
    result = RunResult(run=run, roles=roles.as_dict(), role_map=roles)
    findings: list[Finding] = []
    by_id = {r.id: r for r in rules}
    ctx.configured = lambda rid: rule_thresholds(by_id[rid], config) if rid in by_id else None
    for rule in rules:
        if not rule.per_run:
            continue  # produced elsewhere (evaluated_by), e.g. by baseline.compare
        if not config.rule_enabled(rule.id, rule.preview):
            continue
        params = rule_thresholds(rule, config)
        fn = _unit(rule)
        if fn is None:
            raise AnalysisError(f"rule {rule.id}: detector {rule.detector!r} is not "
                                f"registered (run {run.run_id})")
        t0 = time.perf_counter()
        try:
            hits = fn(ctx, params)
        except Exception as exc:
            raise AnalysisError(
                f"rule {rule.id} ({rule.detector}) failed on run {run.run_id}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc
        elapsed = time.perf_counter() - t0
        if elapsed > 0.2:
            log.debug("rule %s took %.3fs on %s", rule.id, elapsed, run.run_id)
        if hits is None:
            result.not_applicable.append(rule.id)
            continue
        severity = config.severity_for(rule.id, rule.severity)
        for h in hits:
            findings.append(
                Finding(
                    rule=rule.id,
                    name=rule.name,
                    state=rule.state,
                    severity=_hit_severity(h, severity, rule.id in config.severity),
                    metric=h.metric,
                    step=None if h.step is None else int(h.step),
                    message=h.message,
                    evidence=dict(h.evidence),
                    detail=h.detail,
                )
            )
    findings = _suppress(findings, by_id)
    findings.sort(key=_sort_key)
    findings = fold_explained(findings, roles)
    result.findings = findings
    result.unjudged = _why_not_judged(ctx, rules, config, result.not_applicable)
    return result


def _hit_severity(hit: Any, severity: Severity, configured: bool) -> Severity:
    """The rule's (or the config's) severity, lowered where the detector asks for it on
    one hit; a severity the user configured for the rule is kept as given."""
    asked = getattr(hit, "severity", None)
    if configured or asked is None or SEVERITY_RANK[asked] >= SEVERITY_RANK[severity]:
        return severity
    assert is_severity(asked)  # SEVERITY_RANK (above) holds the severities, no other key
    return asked


def _why_not_judged(ctx: Any, rules: Sequence[RuleSpec], config: Config,
                    not_applicable: Sequence[str]) -> str | None:
    """Why no rule could judge the run's training state, or None when one could.

    Event rules (a NaN, an astronomical value) apply to any loss, however short, so they
    cannot vouch for a healthy run; the trend rules (those with ``min_points``) can.  A run
    is judged when at least one enabled trend rule for a core state was applicable and the
    loss has the points that rule asks for.
    """
    from diagnose.detectors import main_losses

    enabled = [r for r in rules if r.per_run and config.rule_enabled(r.id, r.preview)]
    if not enabled:
        return "every rule is deselected (select/ignore)"
    losses = main_losses(ctx)
    if not losses:
        return "no loss metric found" if ctx.run.tags else "no scalar metrics"
    core = [r for r in enabled if r.state in CORE_STATES]
    if not core:
        return "no rule for a training state is selected"
    trend = {r.id: rule_thresholds(r, config) for r in core}
    needs = {rid: p["min_points"] for rid, p in trend.items()
             if isinstance(p.get("min_points"), int)}
    if not needs:
        return None
    # a detector may stay quiet ([]) on a short curve instead of saying "not applicable",
    # so the loss must also have the points the rule asks for
    points = max(int(np.isfinite(s.values).sum()) for s in losses)
    if any(rid not in not_applicable and points >= need for rid, need in needs.items()):
        return None
    if points < max(needs.values()):
        return f"too few points: {points} finite loss point{'s' if points != 1 else ''}"
    return "no trend rule applies to the logged metrics"


# ---------------------------------------------------------------------------
# Documentation for `diagnose rules` / `diagnose explain`
# ---------------------------------------------------------------------------


def catalogue(rules: Sequence[RuleSpec]) -> list[dict[str, Any]]:
    """One row per rule for ``diagnose rules``: id, name, state, severity, summary,
    preview."""
    return [
        {
            "id": r.id,
            "name": r.name,
            "state": r.state,
            "severity": r.severity,
            "summary": r.summary,
            "preview": r.preview,
        }
        for r in sorted(rules, key=lambda r: r.id)
    ]


def _wrap(text: str, indent: str = "  ", width: int = 88) -> str:
    import textwrap

    return "\n".join(
        textwrap.fill(par.strip(), width=width, initial_indent=indent,
                      subsequent_indent=indent)
        for par in str(text).strip().split("\n\n")
        if par.strip()
    )


def format_rule_doc(spec: RuleSpec) -> str:
    """Plain-text documentation of one rule for ``diagnose explain ID``."""
    import textwrap

    from diagnose.ruledoc import THRESHOLDS_TITLE, doc_sections

    how = (f"detector: {spec.detector}" if spec.per_run
           else f"evaluated by: {EVALUATORS.get(spec.evaluated_by or '', spec.evaluated_by)}")
    lines = [f"{spec.id} {spec.name}"
             + (" (preview)" if spec.preview else ""),
             f"state: {spec.state}   severity: {spec.severity}   {how}",
             "",
             textwrap.fill(spec.summary, width=88),
             ""]
    sections = doc_sections(spec.doc)
    for sec in sections:
        if sec.key == "references":
            continue  # shown last, after thresholds and supersedes
        if sec.text:
            lines += [sec.title, _wrap(sec.text), ""]
        else:
            lines.append(sec.title)
            lines += [textwrap.fill(x, width=88, initial_indent="  - ",
                                    subsequent_indent="    ") for x in sec.items]
            lines.append("")
    if spec.thresholds:
        lines.append(f"{THRESHOLDS_TITLE} (default; override in [tool.diagnose.thresholds."
                     f"{spec.id}])")
        tdoc = spec.doc.get("thresholds", {}) or {}
        params = param_specs(spec) or {}
        for key, value in spec.thresholds.items():
            desc = tdoc.get(key, "")
            head = f"  {key} = {value!r}"
            if key in params:
                head += f"  ({params[key].describe()})"
            lines.append(head if not desc else f"{head}\n"
                         + textwrap.fill(desc, width=88, initial_indent="      ",
                                         subsequent_indent="      "))
        lines.append("")
    if spec.supersedes:
        lines += [f"Supersedes: {', '.join(spec.supersedes)} (on the same metric)", ""]
    for sec in sections:
        if sec.key == "references":
            lines.append(sec.title)
            lines += [textwrap.fill(x, width=88, initial_indent="  - ",
                                    subsequent_indent="    ") for x in sec.items]
            lines.append("")
    return "\n".join(lines).rstrip() + "\n"
