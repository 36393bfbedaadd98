"""The rule unit (issue 8, deliver 1): one class per built-in rule with typed parameters
and typed evidence, registered by id, and its TOML checked against it."""

from __future__ import annotations

import dataclasses
import shutil
import tomllib
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pytest

from diagnose.advice.moves import AdviceContext
from diagnose.advice.reconcile import Candidate, candidate
from diagnose.config import Config
from diagnose.detectors import RuleContext, get_detector
from diagnose.detectors import params as P
from diagnose.detectors import rule as rule_mod
from diagnose.detectors.rule import (
    ECHO,
    Found,
    Rule,
    RuleEvidence,
    RuleParams,
    internal,
    optional,
    param,
    rule,
    rule_class,
    rule_classes,
)
from diagnose.engine import AnalysisError, builtin_rules_dir, evaluate, load_rules
from diagnose.findings import Finding
from diagnose.metrics import Role
from diagnose.recommend import recommend
from diagnose.run import Run, make_scalars

RULES = load_rules()
PER_RUN = [r for r in RULES if r.per_run]


@pytest.mark.parametrize("spec", PER_RUN, ids=lambda r: r.id)
def test_every_builtin_rule_is_one_class_whose_params_are_its_toml_thresholds(spec) -> None:
    cls = rule_class(spec.id)
    assert cls is not None, f"{spec.id} has no rule class"
    assert cls.id == spec.id and cls.detector == spec.detector
    assert issubclass(cls.Params, RuleParams) and issubclass(cls.Evidence, RuleEvidence)
    assert dataclasses.is_dataclass(cls.Params) and dataclasses.is_dataclass(cls.Evidence)
    raw = tomllib.loads(spec.path.read_text(encoding="utf-8")).get("thresholds", {})
    # same keys in the same order: evidence that echoes the thresholds keeps its key order
    assert list(cls.Params.specs()) == list(raw), spec.id
    p = cls.Params.build(spec.thresholds)
    assert dict(p.items()) == spec.thresholds


def test_no_rule_class_without_its_toml() -> None:
    assert set(rule_classes()) == {r.id for r in PER_RUN}


def test_evidence_to_dict_leaves_out_internal_and_unset_optional_and_expands_echo() -> None:
    @dataclass(frozen=True)
    class Par(RuleParams):
        a: float = param(P.SHARE)
        b: bool | None = param(P.OPTIONAL_FLAG)

    @dataclass(frozen=True)
    class Ev(RuleEvidence):
        label: str = internal("x")
        first: int = 1
        maybe: float | None = optional()
        always: float | None = None
        thresholds: RuleParams | None = field(default=None, metadata=ECHO)
        last: int = 2

    ev = Ev(thresholds=Par(a=0.5))
    assert ev.to_dict() == {"first": 1, "always": None, "threshold_a": 0.5, "last": 2}
    assert list(ev.to_dict()) == ["first", "always", "threshold_a", "last"]
    assert Ev(maybe=3.0).to_dict()["maybe"] == 3.0
    assert Par(a=0.5, b=True)["b"] is True and Par(a=0.5).get("b", "dflt") == "dflt"


@dataclass(frozen=True)
class _FinalParams(RuleParams):
    above: float = param(P.ANY_NUMBER)


@dataclass(frozen=True)
class _FinalEvidence(RuleEvidence):
    label: str = internal("")
    final: float = 0.0
    above: float = 0.0


class TST901(Rule[_FinalParams, _FinalEvidence]):
    """A rule added the documented way: this class + one TOML."""

    id = "TST901"
    detector = "tst_final_above"
    Params = _FinalParams
    Evidence = _FinalEvidence

    def detect(self, ctx: RuleContext, p: _FinalParams) -> list[Found[_FinalEvidence]] | None:
        s = ctx.series(Role.TRAIN_LOSS)
        if s is None:
            return None
        final = float(s.values[-1])
        if final <= p.above:
            return []
        return [Found(s.tag, int(s.steps[-1]), _FinalEvidence(label=s.tag, final=final,
                                                              above=p.above))]

    def message(self, ev: _FinalEvidence) -> str:
        return f"{ev.label} ends at {ev.final:g}, above {ev.above:g}"

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        ev = finding.detail  # the typed evidence, not a string-keyed dict
        assert isinstance(ev, _FinalEvidence)
        return [candidate("epochs", "increase", None, "current*2",
                          f"{ev.label} still ends {ev.final - ev.above:g} above the bound")]


_TOML = '''
id = "TST901"
name = "final-loss-above"
state = "underfit"
severity = "warning"
detector = "tst_final_above"
summary = "The final train loss is above a bound."
[thresholds]
above = 0.5
'''


def _run() -> Run:
    steps = np.arange(40)
    return Run("r", path=Path("."), format="csv",
               scalars=make_scalars("train_loss", steps, np.linspace(2.0, 0.8, 40))).finalize()


def test_adding_a_rule_is_one_class_and_one_toml(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(rule_mod, "_RULES", dict(rule_mod._RULES))
    rule(TST901)
    (tmp_path / "TST901.toml").write_text(_TOML, encoding="utf-8")
    rules = load_rules([tmp_path])
    spec = next(r for r in rules if r.id == "TST901")
    assert get_detector("tst_final_above") is not None
    found = [f for f in evaluate(_run(), Config(), rules).findings if f.rule == "TST901"]
    assert [f.message for f in found] == ["train_loss ends at 0.8, above 0.5"]
    assert found[0].evidence == {"final": 0.8, "above": 0.5}
    assert isinstance(found[0].detail, _FinalEvidence)
    # its advise reads that typed evidence
    (rec,) = recommend(evaluate(_run(), Config(select=["TST901"]), rules)).findings[0] \
        .recommendations
    assert (rec.hyperparameter, rec.rationale) == (
        "epochs", "train_loss still ends 0.3 above the bound")
    # the class's typed parameter checks the user's config
    quiet = evaluate(_run(), Config(thresholds={"TST901": {"above": 1.0}}), rules)
    assert not [f for f in quiet.findings if f.rule == "TST901"]
    assert spec.thresholds == {"above": 0.5}


def test_a_builtin_rule_whose_class_is_missing_is_our_bug(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A built-in TOML without its class (or naming another class's detector) must not
    fall back to something that silently measures a different thing."""
    from diagnose import engine

    rules_dir = tmp_path / "rules"
    shutil.copytree(builtin_rules_dir(), rules_dir)
    monkeypatch.setattr(engine, "builtin_rules_dir", lambda: rules_dir)
    monkeypatch.setattr(rule_mod, "_RULES", {k: v for k, v in rule_mod._RULES.items()
                                             if k != "OVF004"})
    with pytest.raises(AnalysisError, match="OVF004 has no rule class"):
        load_rules()


def test_findings_carry_their_typed_evidence() -> None:
    """What the JSON shows is what the typed evidence says, and the message is worded
    from that evidence: a rule's advice can read the same object."""
    from diagnose.detectors.divergence import DIV002

    steps = np.arange(200)
    loss = np.r_[np.linspace(2.0, 0.3, 100), np.linspace(0.3, 6.0, 100)]
    run = Run("d", path=Path("."), format="csv",
              scalars=make_scalars("train_loss", steps, loss)).finalize()
    res = evaluate(run, Config(select=("DIV002",)), RULES)
    (f,) = res.findings
    assert isinstance(f.detail, DIV002.Evidence)
    assert f.evidence == f.detail.to_dict()
    assert "label" not in f.evidence and f.detail.label == "train loss"
    assert f.message == DIV002().message(f.detail)
    assert f.detail.ratio_to_best == pytest.approx(f.detail.tail_median / f.detail.best)


def _evidence_keys() -> set[str]:
    """Every JSON evidence key a built-in rule's typed Evidence can write."""
    keys = {"explains"}  # written by the run-level precedence on the core finding
    for cls in rule_classes().values():
        for f in dataclasses.fields(cls.Evidence):
            if f.metadata.get("echo"):
                keys |= {f"threshold_{k}" for k in cls.Params.specs()}
            elif f.metadata.get("json", True):
                keys.add(f.name)
    return keys


def test_the_advice_reads_only_evidence_keys_some_rule_writes() -> None:
    """The detector -> advice contract: a key the recommender reads that no rule writes
    is a dead fallback (the issue counted 34 of them) or a renamed key that silently
    stopped feeding the advice."""
    import ast

    import diagnose.recommend as rec

    tree = ast.parse(Path(rec.__file__).read_text(encoding="utf-8"))
    read: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Name) \
                and node.func.id in ("_ev", "_ev_flag", "_ev_text"):
            read |= {a.value for a in node.args[1:]
                     if isinstance(a, ast.Constant) and isinstance(a.value, str)}
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) \
                and node.func.attr == "get" and isinstance(node.func.value, ast.Attribute) \
                and node.func.value.attr == "evidence" and node.args \
                and isinstance(node.args[0], ast.Constant):
            read.add(node.args[0].value)
        if isinstance(node, ast.Compare) and isinstance(node.left, ast.Constant) \
                and isinstance(node.ops[0], ast.In | ast.NotIn) \
                and isinstance(node.comparators[0], ast.Attribute) \
                and node.comparators[0].attr == "evidence":
            read.add(node.left.value)
    assert len(read) > 30  # the walk finds the reads
    assert sorted(read - _evidence_keys()) == []
