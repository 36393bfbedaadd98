"""The fitting rules (OVF, UND, PLT, BN, PRG) on fixtures, real logs and traps.

Four layers, from cheapest to most telling:

1. every detector survives degenerate input (empty, one point, all NaN, constant,
   unsorted steps) and returns None or a list;
2. each rule fires on its ``fire`` fixture and stays quiet on its ``quiet`` near miss,
   with the evidence and message the contract asks for, and the fixture files are
   exactly what ``make_fitting_fixtures.py`` writes;
3. a seeded family of healthy runs (schedules, warmup, spikes, tiny val sets, fine-tuning)
   raises no warning: false alarms kill a CI gate;
4. the real logs in ``../shared/real_logs`` get the states their expert labels give
   (unambiguous labels only; skipped when the folder is absent).
"""

from __future__ import annotations

import filecmp
import importlib.util
import math
import sys
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from diagnose.config import Config
from diagnose.detectors import RuleContext, get_detector
from diagnose.detectors.overfit import degradation
from diagnose.detectors.progress import curve
from diagnose.engine import RuleSpec, evaluate, load_rules
from diagnose.metrics import Role, Series
from diagnose.run import Histogram, Run, make_scalars

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from fallback_loader import load_any  # noqa: E402
from shared_data import needs, shared  # noqa: E402

FIXTURES = HERE / "rule_fixtures"
REAL = shared("real_logs")
PREFIXES = ("OVF", "UND", "PLT", "BN", "PRG")
WARN = ("warning", "error")


@pytest.fixture(scope="module")
def rules() -> list[RuleSpec]:
    found = [r for r in load_rules() if r.id.startswith(PREFIXES)]
    assert {r.id for r in found} >= {"OVF001", "OVF002", "OVF003", "UND001", "UND002",
                                     "PLT001", "PLT002", "PLT003", "PRG001", "BN001",
                                     "BN002"}
    return found


def _run(cols: dict[str, tuple[np.ndarray, np.ndarray]], hparams: dict | None = None) -> Run:
    parts = [make_scalars(tag, steps, values) for tag, (steps, values) in cols.items()]
    scalars = pd.concat(parts, ignore_index=True) if parts else make_scalars("x", [], [])
    return Run(run_id="t", path=Path("."), format="csv", scalars=scalars,
               hparams=dict(hparams or {})).finalize()


def _findings(run: Run, rules: list[RuleSpec], config: Config | None = None) -> list:
    return evaluate(run, config or Config(preview=True), rules).findings


def _warn_states(findings: list) -> set[str]:
    return {f.state for f in findings if f.severity in WARN}


# ---------------------------------------------------------------------------
# 1. degenerate input
# ---------------------------------------------------------------------------

_DEGENERATE = {
    "empty": {},
    "one_point": {"loss": ([0], [1.0]), "val_loss": ([0], [1.2]),
                  "accuracy": ([0], [0.5]), "val_accuracy": ([0], [0.4])},
    "all_nan": {t: (np.arange(20), np.full(20, np.nan))
                for t in ("loss", "val_loss", "accuracy", "val_accuracy")},
    "constant": {t: (np.arange(30), np.full(30, v))
                 for t, v in (("loss", 0.7), ("val_loss", 0.7), ("accuracy", 0.5),
                              ("val_accuracy", 0.5))},
    "unsorted_steps": {t: (np.array([5, 3, 9, 1, 7, 2, 8, 0, 6, 4]),
                           np.linspace(1.0, 0.1, 10) * (1.2 if "val" in t else 1.0))
                       for t in ("loss", "val_loss")},
    "inf_and_negative": {"loss": (np.arange(12), np.r_[-3.9e6 - np.arange(11) * 1e4, np.inf]),
                         "val_loss": (np.arange(12), -4.4e6 - np.arange(12) * 1e4)},
}


@pytest.mark.parametrize("case", sorted(_DEGENERATE))
def test_detectors_survive_degenerate_input(case: str, rules: list[RuleSpec]) -> None:
    run = _run(_DEGENERATE[case])
    run.histograms = [Histogram("bn1/running_var", 0, 0.0, np.zeros((0, 3)))]
    ctx = RuleContext(run)
    for rule in rules:
        fn = get_detector(rule.detector)
        assert fn is not None, rule.detector
        out = fn(ctx, dict(rule.thresholds))
        assert out is None or isinstance(out, list), (rule.id, out)
    states = _warn_states(_findings(run, rules))
    if case == "constant":
        # a binary classifier frozen at loss 0.7 ~ ln 2 and accuracy 0.5 is stuck at chance:
        # it never left its initial level, so plateau only (DESIGN.md)
        assert states == {"plateau"}
    else:
        assert not states, case


# ---------------------------------------------------------------------------
# 2. fixtures
# ---------------------------------------------------------------------------

_MINE = sorted(p.name for p in FIXTURES.iterdir() if p.is_dir() and p.name.startswith(PREFIXES))


def test_fixture_folders_cover_every_rule(rules: list[RuleSpec]) -> None:
    assert set(_MINE) == {r.id for r in rules}
    for rid in _MINE:
        assert any((FIXTURES / rid / "fire").iterdir())
        assert any((FIXTURES / rid / "quiet").iterdir())


@pytest.mark.parametrize("case", ["fire", "quiet"])
@pytest.mark.parametrize("rule_id", _MINE)
def test_rule_on_its_fixture(rule_id: str, case: str, rules: list[RuleSpec]) -> None:
    run = load_any(FIXTURES / rule_id / case)
    spec = [r for r in rules if r.id == rule_id]
    hits = [f for f in _findings(run, spec) if f.rule == rule_id]
    if case == "quiet":
        assert hits == [], [h.message for h in hits]
        return
    assert len(hits) == 1, [h.message for h in hits]
    f = hits[0]
    assert f.step is not None and f.metric
    # one present-tense sentence that names a number
    assert f.message and "\n" not in f.message and not f.message.endswith(".")
    assert any(ch.isdigit() for ch in f.message)
    # the thresholds that decided it travel with the evidence
    for key, value in spec[0].thresholds.items():
        assert f.evidence[f"threshold_{key}"] == value
    if rule_id == "OVF001":
        for key in ("best_step", "val_best", "val_end", "val_worsening_pct",
                    "train_change_pct"):
            assert key in f.evidence
        assert f.step == f.evidence["best_step"]
        assert f.evidence["val_worsening_pct"] > 5 and f.evidence["train_change_pct"] < 0
    if rule_id == "BN002":
        assert f.evidence["batch_size"] == 4 and f.evidence["small_batch"] is True


def test_fixtures_are_reproducible(tmp_path: Path) -> None:
    spec = importlib.util.spec_from_file_location("mff", FIXTURES / "make_fitting_fixtures.py")
    assert spec and spec.loader
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    mod.main(tmp_path)
    for name in mod.FIXTURES:
        committed = sorted(p.name for p in (FIXTURES / name).iterdir()
                           if p.name not in ("expect.toml", "config.toml"))  # a case's, by hand
        fresh = sorted(p.name for p in (tmp_path / name).iterdir())
        assert committed == fresh, name
        _, mismatch, errors = filecmp.cmpfiles(FIXTURES / name, tmp_path / name, fresh,
                                               shallow=False)
        assert not mismatch and not errors, (name, mismatch, errors)


def test_thresholds_are_honoured(rules: list[RuleSpec]) -> None:
    run = load_any(FIXTURES / "OVF001" / "fire")
    spec = [r for r in rules if r.id == "OVF001"]
    assert _findings(run, spec)
    strict = Config(thresholds={"OVF001": {"min_rise": 5.0}})
    assert _findings(run, spec, strict) == []


# ---------------------------------------------------------------------------
# unit checks of the shared measurements
# ---------------------------------------------------------------------------


def _series(values: np.ndarray, metric: str, role: Role, hib: bool | None) -> Series:
    steps = np.arange(len(values), dtype="int64") * 10
    return Series(metric, metric, "val", role, steps, np.asarray(values, float),
                  np.full(len(values), np.nan), hib)


def test_degradation_is_direction_aware() -> None:
    p = {"min_points": 5, "smooth_window_frac": 0.05, "min_tail_frac": 0.2,
         "min_points_after": 3, "end_frac": 0.1, "min_effect": 3.0, "min_rise": 0.05,
         "min_sustained": 0.75, "min_tau": 0.2, "jump_effect": 20.0}
    t = np.arange(60.0)
    rng = np.random.default_rng(0)
    acc = 0.9 - 0.5 * np.exp(-t / 5) - 0.004 * np.maximum(t - 20, 0) + rng.normal(0, 0.003, 60)
    up = curve(_series(acc, "accuracy", Role.VAL_METRIC, True))
    assert up is not None and up.sign == -1.0
    deg = degradation(None, up, p)
    assert deg is not None and 15 * 10 <= deg["best_step"] <= 25 * 10
    assert deg["best"] > deg["end"]  # reported in the metric's own units
    # a steadily rising accuracy is fine; the same numbers as an error rate are not
    rising = 0.9 - 0.5 * np.exp(-t / 15) + rng.normal(0, 0.003, 60)
    good = curve(_series(rising, "accuracy", Role.VAL_METRIC, True))
    bad = curve(_series(rising, "error", Role.VAL_METRIC, False))
    assert good is not None and degradation(None, good, p) is None
    assert bad is not None and bad.sign == 1.0
    worse = degradation(None, bad, p)
    assert worse is not None and worse["best_step"] == 0 and worse["end"] > worse["best"]
    # unknown direction: not judged at all
    assert curve(_series(acc, "score_x", Role.VAL_METRIC, None)) is None


def test_still_improving_vs_converged(rules: list[RuleSpec]) -> None:
    t = np.arange(50.0)
    rng = np.random.default_rng(1)
    spec = [r for r in rules if r.id in ("PRG001", "PLT003")]
    cut = 1.5 * np.exp(-t / 40) + 0.1
    flat = 1.5 * np.exp(-t / 4) + 0.1
    for shape, expect in ((cut, "PRG001"), (flat, "PLT003")):
        run = _run({"loss": (t, shape * np.exp(rng.normal(0, 0.01, 50)))})
        assert {f.rule for f in _findings(run, spec)} == {expect}


def test_bn_chance_branch_and_small_batch_evidence(rules: list[RuleSpec]) -> None:
    """Train accuracy good from the start, val accuracy at chance, val loss flat-ish
    but erratic only mildly: the chance branch fires; batch size 4 is in evidence."""
    rng = np.random.default_rng(2)
    t = np.arange(40)
    run = _run({
        "loss": (t, 0.3 * np.exp(-t / 30) + rng.normal(0, 0.005, 40)),
        "accuracy": (t, np.clip(0.9 + 0.002 * t + rng.normal(0, 0.01, 40), 0, 1)),
        "val_loss": (t, 2.3 + rng.normal(0, 0.05, 40)),
        "val_accuracy": (t, 0.1 + rng.normal(0, 0.01, 40)),
    }, hparams={"batch_size": 4, "normalization": "batchnorm", "num_classes": 10})
    found = [f for f in _findings(run, [r for r in rules if r.id == "BN001"])]
    assert len(found) == 1 and found[0].evidence["branch"] == "chance"
    assert found[0].evidence["small_batch"] is True and found[0].evidence["uses_batch_norm"]


def test_eval_broken_from_the_start_is_batchnorm_not_overfit(rules: list[RuleSpec]) -> None:
    """BN momentum 0: val loss ~100x train from the first eval and rising, val accuracy
    far below train: BN001's broken branch, and the overfit rules stand aside."""
    rng = np.random.default_rng(7)
    t = np.arange(30)
    tl = 0.5 * np.exp(-t / 5) + 0.003
    run = _run({
        "loss": (t, tl * np.exp(rng.normal(0, 0.05, 30))),
        "accuracy": (t, np.clip(1 - tl / 3, 0, 1)),
        "val_loss": (t, (30 + 9 * t) * np.exp(rng.normal(0, 0.2, 30))),
        "val_accuracy": (t, 0.55 + rng.normal(0, 0.05, 30)),
    })
    found = _findings(run, rules)
    assert _warn_states(found) == {"batchnorm_collapse"}, [f.message for f in found]
    bn = next(f for f in found if f.rule == "BN001")
    assert bn.evidence["branch"] == "broken" and bn.evidence["early_val_over_train"] > 10


def test_component_loss_rise_counts_when_the_total_does_not(rules: list[RuleSpec]) -> None:
    """YOLO: val box loss keeps falling, val obj loss rises while train obj falls."""
    rng = np.random.default_rng(4)
    t = np.arange(100)

    def n(x: np.ndarray) -> np.ndarray:
        return x * np.exp(rng.normal(0, 0.01, len(x)))

    run = _run({
        "train/box_loss": (t, n(0.02 + 0.05 * np.exp(-t / 30))),
        "train/obj_loss": (t, n(0.02 + 0.02 * np.exp(-t / 30))),
        "val/box_loss": (t, n(0.03 + 0.08 * np.exp(-t / 25))),
        "val/obj_loss": (t, n(0.03 + 0.02 * np.exp(-t / 5) + 0.0001 * t)),
    })
    found = [f for f in _findings(run, [r for r in rules if r.id == "OVF001"])]
    assert len(found) == 1 and found[0].metric == "val/obj_loss"
    assert found[0].evidence["component"] is True
    assert "obj" in found[0].message


def test_plateau_poor_level_and_resumed_run(rules: list[RuleSpec]) -> None:
    rng = np.random.default_rng(5)
    t = np.arange(80)
    spec = [r for r in rules if r.id.startswith("PLT")]
    # a loss that drops 6% early and then sits there: stalled at a poor level, and
    # within 10% of its untrained level (its first value) for the whole run (PLT002)
    stuck = 2.0 * (1 - 0.06 * (1 - np.exp(-t / 5))) * np.exp(rng.normal(0, 0.004, 80))
    got = {f.rule: f for f in _findings(_run({"loss": (t, stuck)}), spec)}
    assert set(got) == {"PLT001", "PLT002"} and got["PLT001"].evidence["poor_level"] is True
    # a resumed run, flat at a good accuracy from its first step: not stuck
    flat = 0.05 * np.exp(rng.normal(0, 0.01, 80))
    acc = np.clip(0.98 + rng.normal(0, 0.002, 80), 0, 1)
    run = _run({"loss": (t, flat), "val_loss": (t, flat * 1.3), "accuracy": (t, acc),
                "val_accuracy": (t, acc - 0.02)})
    assert not _warn_states(_findings(run, spec))


def test_blow_up_then_stuck_at_chance_is_underfit_and_names_the_spike(
        rules: list[RuleSpec]) -> None:
    """A too-large LR blows the loss up to 20 and leaves the net at chance
    (``examples/train.py --lr 1.5``): it IS stuck at chance, so UND001 fires and its
    message names the spike (the LR, not capacity, is the likely cause).  A run that
    learned first (loss well below ln C) and then fell back is a collapse: not UND001."""
    rng = np.random.default_rng(6)
    t = np.arange(60)
    loss = 1.1 + rng.normal(0, 0.05, 60)
    loss[:5] = [0.73, 1.5, 4.1, 1.9, 19.2]
    acc = 1 / 3 + rng.normal(0, 0.01, 60)
    run = _run({"loss": (t, loss), "val_loss": (t, loss + 0.02), "accuracy": (t, acc),
                "val_accuracy": (t, acc)}, hparams={"num_classes": 3})
    found = [f for f in _findings(run, rules) if f.rule == "UND001"]
    assert len(found) == 1 and "spiked to 19.2" in found[0].message
    assert found[0].evidence["loss_peak_over_chance"] > 17
    calm = loss.copy()
    calm[:5] = 1.1  # the same run without the blow-up is at chance all along
    run = _run({"loss": (t, calm), "val_loss": (t, calm + 0.02), "accuracy": (t, acc),
                "val_accuracy": (t, acc)}, hparams={"num_classes": 3})
    found = [f for f in _findings(run, rules) if f.rule == "UND001"]
    assert len(found) == 1 and "spiked" not in found[0].message
    assert found[0].evidence["loss_peak_over_chance"] is None
    learned = calm.copy()
    learned[5:25] = 0.3 + rng.normal(0, 0.02, 20)  # learned, then lost it
    run = _run({"loss": (t, learned), "val_loss": (t, learned + 0.02),
                "accuracy": (t, acc), "val_accuracy": (t, acc)}, hparams={"num_classes": 3})
    assert not [f for f in _findings(run, rules) if f.rule == "UND001"]


def _poor_fit_run(loss_end: float, acc_end: float, val_acc_end: float, start: float = 2.3,
                  n: int = 60, seed: int = 7) -> Run:
    """Train accuracy rising from 0.1 to ``acc_end`` and flat, loss ``start`` -> ``loss_end``."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    r = 1 - np.exp(-t / (0.1 * n))
    loss = (start + (loss_end - start) * r) * np.exp(rng.normal(0, 0.01, n))
    acc = 0.1 + (acc_end - 0.1) * r + rng.normal(0, 0.004, n)
    val_acc = 0.1 + (val_acc_end - 0.1) * r + rng.normal(0, 0.006, n)
    return _run({"loss": (t, loss), "val_loss": (t, loss * 1.05), "accuracy": (t, acc),
                 "val_accuracy": (t, val_acc)})


def test_poor_fit_fires_on_a_flat_mediocre_fit_with_no_gap(rules: list[RuleSpec]) -> None:
    (f,) = [f for f in _findings(_poor_fit_run(1.5, 0.72, 0.70), rules) if f.rule == "UND003"]
    assert f.state == "underfit" and f.evidence["train_loss_end_over_start"] > 0.6
    assert abs(f.evidence["gap"]) < 0.05 and "cannot fit its own training data" in f.message


@pytest.mark.parametrize("case, kwargs", [
    # fits its training data (train accuracy 0.97)
    ("fits", dict(loss_end=0.1, acc_end=0.97, val_acc_end=0.95)),
    # a clear train/val gap: a generalisation problem, not capacity
    ("gap", dict(loss_end=1.2, acc_end=0.78, val_acc_end=0.55)),
    # val far above train: dropout/augmentation handicap the train metric
    ("val_ahead", dict(loss_end=1.2, acc_end=0.66, val_acc_end=0.92)),
    # many classes / language model: modest accuracy but the loss removed most of its
    # starting value (4.6 -> 1.3)
    ("many_classes", dict(loss_end=1.3, acc_end=0.62, val_acc_end=0.60, start=4.6)),
    # a loss below (1 - acc) ln 2 is not the cross-entropy of this accuracy
    ("not_ce", dict(loss_end=0.15, acc_end=0.62, val_acc_end=0.60, start=0.3)),
])
def test_poor_fit_stays_quiet_on_its_traps(rules: list[RuleSpec], case: str,
                                           kwargs: dict) -> None:
    assert not [f for f in _findings(_poor_fit_run(**kwargs), rules) if f.rule == "UND003"]


def _poor_level_run(start: float = 2.3, end: float = 1.5, val_over_train: float = 1.03,
                    n: int = 40, acc_end: float | None = None, rise_to: float | None = None,
                    seed: int = 3, val_acc: bool = True) -> Run:
    """A loss falling from ``start`` towards ``end`` (optionally rising back to
    ``rise_to`` over the last third), val ``val_over_train`` x train, and an accuracy
    rising from 0.1 to ``acc_end`` when given (on val too unless ``val_acc`` is False)."""
    rng = np.random.default_rng(seed)
    t = np.arange(n, dtype=float)
    r = 1 - np.exp(-t / (0.2 * n))
    loss = start + (end - start) * r
    if rise_to is not None:
        k = 2 * n // 3
        loss[k:] = np.linspace(loss[k], rise_to, n - k)
    loss = loss * np.exp(rng.normal(0, 0.01, n))
    cols = {"loss": (t, loss), "val_loss": (t, loss * val_over_train)}
    if acc_end is not None:
        acc = 0.1 + (acc_end - 0.1) * r + rng.normal(0, 0.004, n)
        cols |= {"accuracy": (t, acc)}
        if val_acc:
            cols |= {"val_accuracy": (t, acc - 0.01)}
    return _run(cols)


def _und004(run: Run, rules: list[RuleSpec]) -> list:
    return [f for f in _findings(run, rules) if f.rule == "UND004"]


def test_poor_level_fires_on_a_learned_but_poor_loss(rules: list[RuleSpec]) -> None:
    (f,) = _und004(_poor_level_run(), rules)
    assert f.state == "underfit" and f.severity == "warning"
    assert f.evidence["poor_by"] == "loss" and 0.6 < f.evidence["end_over_untrained"] < 0.7
    assert "learns but stays poor" in f.message and "% of the untrained level" in f.message


@pytest.mark.parametrize("case, kwargs", [
    # learned well: the loss ends at 10% of where it started
    ("good", dict(end=0.23)),
    # never left its initial level: plateau, not underfit
    ("never_learned", dict(end=2.2)),
    # val far above train: a generalisation gap, not underfitting
    ("gap", dict(val_over_train=1.4)),
    # learned, then rose back towards the start: divergence, not a poor fit
    ("rose_back", dict(end=0.4, rise_to=1.9)),
    # an accuracy near perfect with no val accuracy to weigh its loss against: a good
    # fit whatever the loss scale says
    ("accurate", dict(acc_end=0.97, val_acc=False)),
    # a classifier fine-tune starting at 0.3 nats (below ln 2, the least untrained
    # cross-entropy) and easing to 0.2: starts low, not poor
    ("finetune", dict(start=0.3, end=0.2, acc_end=0.8)),
])
def test_poor_level_stays_quiet_on_its_traps(rules: list[RuleSpec], case: str,
                                             kwargs: dict) -> None:
    assert not _und004(_poor_level_run(**kwargs), rules)


def test_poor_level_fires_on_an_accurate_but_unconfident_run(rules: list[RuleSpec]) -> None:
    """Accuracy 0.97 on both splits while the loss stays at 65% of its untrained 2.3
    nats, many times what calibrated predictions at 0.97 pay (about 0.2 nats): right but
    unconfident, still poor on the loss (heavy weight decay), so max_accuracy does not
    silence it."""
    (f,) = _und004(_poor_level_run(acc_end=0.97), rules)
    assert f.evidence["unconfident"] > 1.5
    assert "right but unconfident" in f.message


def test_poor_level_by_accuracy_needs_few_classes(rules: list[RuleSpec]) -> None:
    """Loss 1.1 -> 0.45 is 41% of its untrained level (not poor by loss), but an accuracy
    of 0.6 on a task whose untrained loss bounds it to exp(1.1) ~ 3 classes is poor; a
    char-level LM (untrained 4.5 nats, up to ~90 classes) at the same accuracy is not
    judged by accuracy."""
    (f,) = _und004(_poor_level_run(start=1.1, end=0.45, acc_end=0.6), rules)
    assert f.evidence["poor_by"] == "accuracy"
    assert not _und004(_poor_level_run(start=4.5, end=1.85, acc_end=0.6), rules)


# ---------------------------------------------------------------------------
# 3. healthy traps
# ---------------------------------------------------------------------------


def _healthy(seed: int) -> Run:
    """A healthy run with a random length, schedule, noise, gap, val set size."""
    rng = np.random.default_rng(seed)
    n = int(rng.choice([12, 25, 60, 150, 400]))
    t = np.arange(n, dtype=float)
    kind = ("exp", "cosine", "step", "warmup", "finetune")[seed % 5]
    start = rng.uniform(0.5, 3.0)
    floor = start * rng.uniform(0.02, 0.3)
    if kind == "finetune":
        start, floor = 0.3, 0.2
    base = floor + (start - floor) * np.exp(-t / (rng.uniform(0.1, 0.4) * n))
    if kind == "cosine":
        prog = np.cumsum(0.5 * (1 + np.cos(np.pi * t / n)))
        base = floor + (start - floor) * np.exp(-4 * prog / prog[-1])
    if kind == "step":
        for d in (n // 2, 3 * n // 4):
            base[d:] *= 0.8
    if kind == "warmup":
        base[: max(2, n // 20)] = start
    noise = rng.uniform(0.005, 0.08)
    tl = base * np.exp(rng.normal(0, noise, n))
    vl = base * (1 + rng.uniform(0, 0.3)) * np.exp(rng.normal(0, noise * rng.uniform(1, 3), n))
    if rng.random() < 0.3:
        vl[rng.integers(n // 3, n)] *= rng.uniform(1.5, 3)  # one transient spike
    c = int(rng.choice([2, 10, 100]))

    def acc(x: np.ndarray) -> np.ndarray:
        return np.clip(1 - (1 - 1 / c) * (x / start) ** 0.7, 0, 1)

    va = acc(vl)
    if rng.random() < 0.3:
        va = rng.binomial(16, va) / 16  # tiny val set: 1/16 quanta
    return _run({"loss": (t, tl), "val_loss": (t, vl), "accuracy": (t, acc(tl)),
                 "val_accuracy": (t, va)})


def test_healthy_family_stays_quiet(rules: list[RuleSpec]) -> None:
    loud = {}
    for seed in range(60):
        states = _warn_states(_findings(_healthy(seed), rules))
        if states:
            loud[seed] = states
    assert not loud


def test_keras_batch_sawtooth_is_not_a_plateau_or_overfit(rules: list[RuleSpec]) -> None:
    """Keras per-batch metrics are running averages that reset every epoch."""
    rng = np.random.default_rng(3)
    per_epoch, epochs = 200, 20
    steps = np.arange(per_epoch * epochs)
    epoch = steps // per_epoch
    inst = 0.1 + 2.0 * np.exp(-steps / 1500) * np.exp(rng.normal(0, 0.3, len(steps)))
    running = np.empty_like(inst)
    for e in range(epochs):
        sl = epoch == e
        running[sl] = np.cumsum(inst[sl]) / np.arange(1, sl.sum() + 1)
    run = _run({"batch_loss": (steps, running)})
    assert not _warn_states(_findings(run, rules))


# ---------------------------------------------------------------------------
# 4. real logs with expert labels
# ---------------------------------------------------------------------------

#: run -> (states that must be present, states that must be absent), from MANIFEST.tsv
_REAL_EXPECT: dict[str, tuple[set[str], set[str]]] = {
    "dlgn_v11_memorize": ({"overfit"}, {"batchnorm_collapse", "underfit"}),
    "hf_whisper_ja_5k": ({"overfit"}, {"underfit", "batchnorm_collapse"}),
    "yolov5_cots_150e": ({"overfit"}, {"underfit"}),
    "yolov5_cots_600e": ({"overfit"}, {"underfit"}),
    # labelled plateau,overfit: mAP 0.02 -> 0.20 by epoch ~300, then flat. DESIGN: a run
    # flat at a good level after clear progress is healthy, and the log shows no poor level
    # (the val loss fell 15%, mAP rose tenfold), so plateau is neither required nor
    # forbidden (the lead's decision, issue 9 round 2); the val obj loss rise is overfit
    "yolov5_traffic_886ep_resumed": ({"overfit"}, {"underfit"}),
    # labelled overfit,plateau, but val loss sits flat at 0.72-0.76 from epoch ~20 to 100
    # beside a falling train loss: DESIGN.md says a gap alone, or a val flat at a converged
    # level, is not overfit, so overfit is neither required nor forbidden here
    # ... and plateau neither: val accuracy 0.17 -> 0.75 and val loss 1.9 -> 0.73 (a 60%
    # fall), flat from epoch ~40 while train improves. DESIGN: flat at a good level after
    # clear progress is healthy, not a plateau; nothing in the log shows a poor level
    # (the lead's decision, issue 9 round 2)
    "keras_car_cnn": (set(), {"underfit", "batchnorm_collapse"}),
    # val still creeps down (0.35 -> 0.33) under a 150x gap: only the preview OVF004 says so
    "dlrnn_v28_gap": (set(), {"underfit", "plateau", "overfit"}),
    # at chance from the first to the last epoch: never left the initial level, so
    # plateau only (DESIGN.md), although the MANIFEST also lists underfit
    "eeg_clf_v19_chance_short": ({"plateau"}, {"overfit", "underfit"}),
    "dlgn_v58_chance": ({"plateau"}, {"overfit", "underfit"}),
    "yolov8_xlstm_underfit": ({"underfit"}, {"overfit"}),
    "eeg_tcn_v55_erratic_val": ({"batchnorm_collapse"}, {"underfit"}),
    "eeg_trm_v1_nan_late": ({"overfit"}, {"underfit", "plateau"}),
    "eeg_trm_v3_4_nan_early": (set(), {"underfit", "plateau", "overfit"}),
    "ptycho_nan_gs1": (set(), {"underfit", "plateau", "overfit"}),
    # healthy: no warning from these rules at all
    "convlstm_v20_healthy": (set(), {"*"}),
    "keras_braincnn_trainonly": (set(), {"*"}),
    "ptycho_ok_gs2": (set(), {"*"}),
    "d2_maskrcnn_short": (set(), {"*"}),
    "yolov8_kaz_train100": (set(), {"*"}),
    "keras_tb_hparams_batchlevel": (set(), {"*"}),
    "lstm_textgen_tb": (set(), {"*"}),
    "d2_pothole_frcnn": (set(), {"*"}),
}


@needs(REAL)
@pytest.mark.parametrize("name", sorted(_REAL_EXPECT))
def test_real_log_states(name: str, rules: list[RuleSpec]) -> None:
    folder = REAL / name
    if not folder.is_dir():
        pytest.skip(f"{name} not in this checkout of the real logs")
    run = load_any(folder)
    findings = _findings(run, rules, Config())
    states = _warn_states(findings)
    must, must_not = _REAL_EXPECT[name]
    assert must <= states, (states, [f.message for f in findings])
    if "*" in must_not:
        assert not states, [f.message for f in findings if f.severity in WARN]
    else:
        assert not (states & must_not), [f.message for f in findings]
    for f in findings:
        assert f.step is None or math.isfinite(f.step)


@needs(REAL / "dlrnn_v28_gap")
def test_huge_gap_preview_rule_on_dlrnn(rules: list[RuleSpec]) -> None:
    run = load_any(REAL / "dlrnn_v28_gap")
    found = [f for f in _findings(run, rules, Config(preview=True)) if f.state == "overfit"]
    assert [f.rule for f in found] == ["OVF004"]
    assert found[0].evidence["gap_over_val"] > 0.9


@needs(REAL / "hf_whisper_ja_5k")
def test_whisper_overfit_evidence_points_at_the_first_eval(rules: list[RuleSpec]) -> None:
    run = load_any(REAL / "hf_whisper_ja_5k")
    f = [x for x in _findings(run, rules, Config()) if x.rule == "OVF001"]
    assert len(f) == 1
    ev = f[0].evidence
    assert ev["best_step"] == 1000 and ev["val_end"] > ev["val_best"]
    assert ev["train_change_pct"] < -90
