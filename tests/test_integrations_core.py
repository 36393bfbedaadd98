"""What every training callback shares (LiveMonitor), and the one-line hint when a
framework is missing."""

from __future__ import annotations

import logging
import math
import subprocess
import sys

import pytest

from diagnose.integrations import LiveMonitor, describe


def _curve(monitor: LiveMonitor, steps: range, blow_up_at: int | None = None) -> None:
    for s in steps:
        loss = 2.0 * math.exp(-s / 30) + 0.1
        if blow_up_at is not None and s >= blow_up_at:
            loss = float("nan")
        monitor.add({"train/loss": loss, "lr": 0.1, "note": "text is skipped"}, s)


def test_run_is_built_in_memory_and_judged_by_the_rules() -> None:
    monitor = LiveMonitor(stop_on=("DIV001",), every=10)
    _curve(monitor, range(40), blow_up_at=30)
    run = monitor.run()
    assert run.format == "live" and set(run.scalars["tag"].astype(str)) == {"train/loss", "lr"}
    assert len(run.scalars) == 80  # the text value was not recorded
    stop = monitor.check(39)
    assert stop is not None and stop.rule == "DIV001" and monitor.stopped_by is stop
    assert monitor.check(40) is None  # one stop, one message


def test_every_n_and_the_automatic_budget() -> None:
    every = LiveMonitor(every=10)
    _curve(every, range(5))
    assert every.due(4)  # nothing judged yet
    every.check(4)
    assert not every.due(10)  # no new point
    _curve(every, range(5, 14))
    assert not every.due(13) and every.due(14)
    auto = LiveMonitor(overhead=1e-9)  # a budget nothing fits in
    _curve(auto, range(5))
    assert not auto.due(4)
    generous = LiveMonitor(overhead=1e9)
    _curve(generous, range(5))
    assert generous.due(4)


def test_new_findings_are_logged_once(caplog: pytest.LogCaptureFixture) -> None:
    seen: list = []
    monitor = LiveMonitor(every=1, on_finding=seen.append, min_severity="warning")
    _curve(monitor, range(40), blow_up_at=30)
    with caplog.at_level(logging.INFO, logger="diagnose"):
        for _ in range(3):
            monitor.check()
    assert seen and [f.rule for f in seen] == [f.rule for f in monitor.findings]
    assert len({(f.rule, f.metric) for f in seen}) == len(seen)
    logged = [r.getMessage() for r in caplog.records]
    # info findings are kept but not logged; warnings and errors are logged once each
    assert len(logged) == sum(f.severity != "info" for f in seen)
    assert all(describe(f) in " ".join(logged) for f in seen if f.severity != "info")


def test_hparams_reach_the_recommender() -> None:
    monitor = LiveMonitor(stop_on=("divergence",), every=1)
    monitor.add_hparams({"optimizer": {"lr": 0.5}, "bad": float("nan")})
    _curve(monitor, range(40), blow_up_at=30)
    stop = monitor.check()
    assert stop is not None
    rec = next(r for r in stop.recommendations if r.hyperparameter == "learning_rate")
    assert rec.current == 0.5 and rec.proposed < 0.5


def test_bad_arguments() -> None:
    with pytest.raises(ValueError, match="every"):
        LiveMonitor(every=0)
    with pytest.raises(ValueError, match="min_severity"):
        LiveMonitor(min_severity="loud")


@pytest.mark.parametrize(("module", "blocked", "extra"), [
    ("lightning", ["lightning", "lightning.pytorch", "pytorch_lightning"], "lightning"),
    ("keras", ["keras"], "keras"),
    ("transformers", ["transformers"], "transformers"),
])
def test_missing_framework_names_the_extra(module: str, blocked: list[str], extra: str) -> None:
    code = (f"import sys\nfor m in {blocked!r}: sys.modules[m] = None\n"
            f"import diagnose.integrations.{module}\n")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          timeout=60)
    assert proc.returncode == 1
    last = proc.stderr.strip().splitlines()[-1]
    assert last.startswith("ImportError: diagnose.integrations.")
    assert f"pip install 'diagnose[{extra}]'" in last


def test_our_own_bug_is_loud_but_never_kills_the_training(
        caplog: pytest.LogCaptureFixture) -> None:
    monitor = LiveMonitor(every=1)
    _curve(monitor, range(10))

    def broken_judge(run: object) -> None:
        raise KeyError("evidence key nobody wrote")

    monitor._judge = broken_judge  # type: ignore[assignment]  # stands for a bug of ours
    with caplog.at_level(logging.ERROR, logger="diagnose"):
        assert monitor.check() is None
    assert monitor.broken and "internal error" in caplog.records[0].getMessage()
    assert caplog.records[0].exc_info is not None  # the traceback is in the log
    _curve(monitor, range(10, 20))
    assert monitor.check() is None and len(caplog.records) == 1  # said once, then off


def test_underfit_waits_for_the_end_of_a_live_run() -> None:
    """A run that learned and sits at a poor level, judged at 60 of 600 planned steps:
    where it ends is ahead of it, so underfit is not judged (the stall is, now); once the
    training is over the same curves are underfit and plateau."""
    monitor = LiveMonitor(every=1000)
    for s in range(60):
        monitor.add({"train/loss": 1.3 + math.exp(-s / 8) + 0.02 * math.sin(s)}, s)
        if s % 5 == 4:
            monitor.add({"val/loss": 1.35 + math.exp(-s / 8)}, s)
    monitor.progress(60, 600)
    note = next(n for n in monitor.run().notes if n.code == "unfinished")
    assert note.details == {"step": 60, "planned": 600} and "60 of 600 planned" in note.message
    monitor.check()
    assert monitor.result is not None and "UND004" in monitor.result.not_applicable
    assert {f.state for f in monitor.findings} == {"plateau"}
    monitor.end()
    assert not monitor.run().notes
    monitor.check()
    assert monitor.result is not None
    assert {f.state for f in monitor.result.findings if f.severity == "warning"} == {
        "plateau", "underfit"}
