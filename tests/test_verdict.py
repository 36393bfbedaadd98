"""The run verdict: "healthy" only when the rules could judge the run (DESIGN.md, "What
each state means", last paragraph).  JSON carries ``verdict`` and ``not_judged_reason``;
markdown and text say "not judged (why)" and never "healthy" for such a run."""

from __future__ import annotations

import json
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import jsonschema
import pytest

from diagnose.cli import main
from diagnose.findings import Finding, RunResult

REPO = Path(__file__).resolve().parents[1]
SCHEMA = json.loads((REPO / "tests" / "data" / "diagnose-output.schema.json").read_text())
HEALTHY = REPO / "sample_logs" / "tb" / "healthy_mlp_adam"
DIVERGED = REPO / "sample_logs" / "tb" / "divergence_exploding_loss"


def _cli(*argv: str) -> tuple[int, str]:
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([*argv, "--no-progress"])
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue()


def _json(*argv: str) -> dict:
    _, out = _cli(*argv, "--format", "json")
    doc = json.loads(out)
    run_schema = {"$ref": "#/$defs/run", "$defs": SCHEMA["$defs"]}
    for run in doc["runs"]:  # run ids here are absolute paths: check the run objects
        jsonschema.validate({**run, "run": "r"}, run_schema)
    return doc


def _keras_csv(folder: Path, header: str, rows: list[str]) -> Path:
    """A Keras CSVLogger file (``epoch`` first, metrics in sorted column order)."""
    folder.mkdir(parents=True)
    (folder / "training.log").write_text("\n".join([header, *rows]) + "\n", encoding="utf-8")
    return folder


def _by_run(doc: dict) -> dict[str, dict]:
    return {Path(r["run"]).name: r for r in doc["runs"]}


@pytest.fixture(scope="module")
def short_and_lossless(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    base = tmp_path_factory.mktemp("verdict")
    # one epoch: two per-epoch rows are judged when they show enough (UND004, PLT001 read
    # the start before the first row as a level), one row never is
    short = _keras_csv(base / "one_epoch", "epoch,accuracy,loss,val_accuracy,val_loss",
                       ["0,0.31,1.92,0.35,1.80"])
    acc = [f"{e},{0.3 + 0.02 * e:.3f},{0.28 + 0.02 * e:.3f}" for e in range(30)]
    lossless = _keras_csv(base / "accuracy_only", "epoch,accuracy,val_accuracy", acc)
    return short, lossless


def test_judged_runs_are_healthy_or_findings() -> None:
    runs = _by_run(_json(str(HEALTHY), str(DIVERGED)))
    assert runs["healthy_mlp_adam"]["verdict"] == "healthy"
    assert runs["healthy_mlp_adam"]["not_judged_reason"] is None
    assert runs["divergence_exploding_loss"]["verdict"] == "findings"
    assert runs["divergence_exploding_loss"]["not_judged_reason"] is None


def test_too_few_points_and_no_loss_are_not_judged(
        short_and_lossless: tuple[Path, Path]) -> None:
    short, lossless = short_and_lossless
    runs = _by_run(_json(str(short), str(lossless), str(HEALTHY)))
    assert runs["one_epoch"]["verdict"] == "not_judged"
    assert runs["one_epoch"]["not_judged_reason"] == "too few points: 1 finite loss point"
    assert runs["accuracy_only"]["verdict"] == "not_judged"
    assert runs["accuracy_only"]["not_judged_reason"] == "no loss metric found"
    # the log finding that explains it is still there, but it is not a training state
    assert runs["accuracy_only"]["states"] == ["log"]
    assert "LOG001" in [f["rule"] for f in runs["accuracy_only"]["findings"]]
    assert runs["healthy_mlp_adam"]["verdict"] == "healthy"


@pytest.mark.parametrize("argv, reason", [
    (("--select", "LOG"), "no rule for a training state is selected"),
    (("--ignore", "B,D,G,I,L,O,P,U"), "every rule is deselected (select/ignore)"),
])
def test_deselecting_the_rules_that_judge_is_not_healthy(argv: tuple[str, ...],
                                                         reason: str) -> None:
    run = _json(str(HEALTHY), *argv)["runs"][0]
    assert run["verdict"] == "not_judged" and run["not_judged_reason"] == reason


def test_markdown_and_text_never_say_healthy_for_a_not_judged_run(
        short_and_lossless: tuple[Path, Path]) -> None:
    short, _ = short_and_lossless
    _, md = _cli(str(short), "--format", "markdown")
    row = next(line for line in md.splitlines() if line.startswith("| ❔"))
    assert "not judged (too few points: 1 finite loss point)" in row
    assert "healthy" not in row and "✅" not in row
    assert "✅" not in md
    _, text = _cli(str(short), "--format", "text", "--color", "never")
    head = text.splitlines()[0]  # the run is the PATH itself: its id is "."
    assert "not judged (too few points: 1 finite loss point)" in head
    assert "healthy" not in text


def test_a_finding_on_a_training_state_outranks_not_judged() -> None:
    """A NaN on a 3-point run is still a divergence: findings, not "not judged"."""
    from diagnose.run import Run

    run = Run("r", path=Path("."), format="csv")
    result = RunResult(run, unjudged="too few points: 3 finite loss points")
    assert result.verdict == "not_judged"
    assert result.not_judged_reason == "too few points: 3 finite loss points"
    nan = Finding("DIV001", "loss-non-finite", "divergence", "error", "loss", 2, "NaN")
    result.findings = [nan]
    assert result.verdict == "findings" and result.not_judged_reason is None
    log = Finding("LOG001", "no-loss-metric", "log", "warning", None, None, "no loss")
    result.findings = [log]
    assert result.verdict == "not_judged"


def test_junit_skips_a_not_judged_run_instead_of_passing_it(
        short_and_lossless: tuple[Path, Path]) -> None:
    import xml.etree.ElementTree as ET

    short, lossless = short_and_lossless
    _, xml = _cli(str(short), str(lossless), str(HEALTHY), "--format", "junit")
    root = ET.fromstring(xml)
    cases = {Path(c.get("name", "")).name: c for c in root.iter("testcase")}
    skipped = cases["one_epoch"].find("skipped")
    assert skipped is not None
    assert skipped.get("message") == "not judged: too few points: 1 finite loss point"
    assert cases["accuracy_only"].find("skipped") is not None
    assert cases["healthy_mlp_adam"].find("skipped") is None
    assert root.get("skipped") == "2" and root.find("testsuite").get("skipped") == "2"
