"""End-to-end tests of the command line, as a user and a CI pipeline call it.

The logs are written at test time by the real writers where the tool exists here
(torch's ``SummaryWriter``, Lightning's ``CSVLogger``) and in Keras ``CSVLogger``'s
layout otherwise.  Most calls go through ``diagnose.cli.main`` in-process (fast); two go
through ``python -m diagnose`` and the ``diagnose`` console script.  Every call asserts
that no traceback reaches the user.
"""

from __future__ import annotations

import csv
import io
import json
import math
import os
import re
import shutil
import subprocess
import sys
import tomllib
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import numpy as np
import pytest

from diagnose.cli import main

REPO = Path(__file__).resolve().parents[1]
DATA = Path(__file__).parent / "data"
SCHEMA = json.loads((DATA / "diagnose-output.schema.json").read_text("utf-8"))
RULES_DIR = REPO / "rules"

# ---------------------------------------------------------------------------
# Calling the command line
# ---------------------------------------------------------------------------


@dataclass
class Result:
    """Exit code and captured streams of one ``diagnose`` call."""

    code: int
    out: str
    err: str

    def json(self) -> dict[str, Any]:
        return json.loads(self.out)

    @property
    def err_lines(self) -> list[str]:
        return [line for line in self.err.splitlines() if line.strip()]


def _no_traceback(result: Result) -> Result:
    assert "Traceback" not in result.err, result.err
    assert "Traceback" not in result.out, result.out
    return result


def invoke(*argv: str | Path, cwd: Path) -> Result:
    """``diagnose ARGV`` in-process, from ``cwd`` (so config lookup starts there)."""
    out, err = io.StringIO(), io.StringIO()
    old = Path.cwd()
    os.chdir(cwd)
    try:
        with redirect_stdout(out), redirect_stderr(err):
            code = main([str(a) for a in argv])
    finally:
        os.chdir(old)
    return _no_traceback(Result(code, out.getvalue(), err.getvalue()))


def run_process(args: list[str], cwd: Path) -> Result:
    """``diagnose`` as a separate process (console script or ``python -m``)."""
    drop = ("GITHUB_STEP_SUMMARY", "DIAGNOSE_DEBUG")
    env = {k: v for k, v in os.environ.items() if k not in drop}
    proc = subprocess.run(args, cwd=cwd, capture_output=True, text=True, env=env, timeout=120)
    return _no_traceback(Result(proc.returncode, proc.stdout, proc.stderr))


def findings(doc: dict[str, Any], run: str | None = None) -> list[dict[str, Any]]:
    """All findings of a JSON document, or of one run."""
    return [f for r in doc["runs"] if run in (None, r["run"]) for f in r["findings"]]


def by_run(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {r["run"]: r for r in doc["runs"]}


# ---------------------------------------------------------------------------
# Log writers
# ---------------------------------------------------------------------------


def write_diverged_tensorboard(logdir: Path) -> Path:
    """torch SummaryWriter: loss falls, climbs 25% a step from step 80, NaN from 100 on."""
    from torch.utils.tensorboard import SummaryWriter

    rng = np.random.default_rng(0)
    with SummaryWriter(str(logdir)) as w:
        for step in range(200):
            if step < 80:
                value = 2.0 * math.exp(-step / 25) + 0.3 + 0.01 * rng.standard_normal()
            elif step < 100:
                value = 0.35 * 1.25 ** (step - 79)
            else:
                value = math.nan
            w.add_scalar("train/loss", value, step)
            if step % 10 == 9:
                w.add_scalar("val/loss", value * 1.1, step)
    return logdir


def write_keras_overfit(folder: Path) -> Path:
    """Keras CSVLogger layout (training.log): val loss bottoms at epoch 17, then climbs."""
    rng = np.random.default_rng(1)
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "training.log", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["epoch", "accuracy", "loss", "val_accuracy", "val_loss"])
        for e in range(60):
            loss = 1.7 * math.exp(-e / 10) + 0.03 + 0.005 * rng.standard_normal()
            acc = 1 - 0.7 * math.exp(-e / 10)
            val_loss = 1.8 * math.exp(-e / 8) + 0.5 if e <= 17 else 0.65 + 0.015 * (e - 17)
            val_loss += 0.01 * rng.standard_normal()
            val_acc = 0.72 - 0.003 * max(0, e - 17) - 0.4 * math.exp(-e / 6)
            w.writerow([e, acc, loss, val_acc, val_loss])
    return folder


def write_lightning_healthy(root: Path) -> Path:
    """Lightning's real CSVLogger: both losses fall and settle; hparams.yaml has ``lr``."""
    from lightning.pytorch.loggers import CSVLogger

    rng = np.random.default_rng(2)
    logger = CSVLogger(str(root), name="", version=0)
    logger.log_hyperparams({"lr": 0.01, "batch_size": 32})
    step = 0
    for epoch in range(40):
        for _ in range(10):
            loss = 1.5 * math.exp(-step / 100) + 0.2 + 0.01 * rng.standard_normal()
            logger.log_metrics({"train_loss": loss, "epoch": epoch}, step)
            step += 1
        val = 1.6 * math.exp(-step / 100) + 0.25 + 0.005 * rng.standard_normal()
        logger.log_metrics({"val_loss": val, "epoch": epoch}, step - 1)
    logger.save()
    return Path(logger.log_dir)


# ---------------------------------------------------------------------------
# Fixtures (module scope: every log is written once)
# ---------------------------------------------------------------------------


@pytest.fixture(scope="module", autouse=True)
def _clean_env() -> Iterator[None]:
    """No CI summary file, no debug tracebacks, from whatever shell runs the tests."""
    with pytest.MonkeyPatch.context() as mp:
        mp.delenv("GITHUB_STEP_SUMMARY", raising=False)
        mp.delenv("DIAGNOSE_DEBUG", raising=False)
        yield


@dataclass
class Logs:
    """The shared log tree: ``root`` holds all three runs."""

    root: Path
    diverged: Path  # root/sweep/diverged, error findings
    overfit: Path  # root/keras_overfit, warning findings only
    healthy: Path  # root/lightning/version_0, no error/warning finding
    cwd: Path  # an empty folder without pyproject.toml to call diagnose from


@pytest.fixture(scope="module")
def logs(tmp_path_factory: pytest.TempPathFactory) -> Logs:
    root = tmp_path_factory.mktemp("logs")
    cwd = tmp_path_factory.mktemp("cwd")
    assert not any((p / "pyproject.toml").exists() for p in [cwd, *cwd.parents])
    return Logs(
        root=root,
        diverged=write_diverged_tensorboard(root / "sweep" / "diverged"),
        overfit=write_keras_overfit(root / "keras_overfit"),
        healthy=write_lightning_healthy(root / "lightning"),
        cwd=cwd,
    )


@pytest.fixture(scope="module")
def doc(logs: Logs) -> dict[str, Any]:
    """``diagnose ROOT --format json`` on the shared tree."""
    result = invoke(logs.root, "--format", "json", cwd=logs.cwd)
    assert result.code == 1
    return result.json()


@pytest.fixture(scope="module")
def mixed(logs: Logs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A good run beside damaged and odd logs."""
    root = tmp_path_factory.mktemp("mixed")
    event = next(logs.diverged.glob("events.out.tfevents.*"))
    (root / "good").mkdir()
    shutil.copy(event, root / "good" / event.name)
    (root / "empty").mkdir()
    (root / "empty" / "events.out.tfevents.1700000000.host").write_bytes(b"")
    (root / "garbage").mkdir()
    noise = np.random.default_rng(3).integers(0, 256, 5000, dtype=np.uint8).tobytes()
    (root / "garbage" / "events.out.tfevents.1700000001.host").write_bytes(noise)
    (root / "truncated").mkdir()
    (root / "truncated" / event.name).write_bytes(event.read_bytes()[:300])
    (root / "latin").mkdir()  # Keras layout, latin-1 header byte, NaN/inf values
    (root / "latin" / "training.log").write_bytes(
        b"epoch,loss,val_loss,caf\xe9\n"
        + b"".join(
            f"{e},{1.0 / (e + 1)},{v},{e}\n".encode()
            for e, v in enumerate(["1.2", "nan", "1.0", "inf", "0.9", "-inf", "0.8", "0.7"])
        )
    )
    (root / "words").mkdir()  # a CSV without any numeric column
    (root / "words" / "metrics.csv").write_text("name,comment\nfoo,bar\nbaz,qux\n")
    (root / "loop").mkdir()
    (root / "loop" / "up").symlink_to("..", target_is_directory=True)
    (root / "loop" / "a").symlink_to("b")
    (root / "loop" / "b").symlink_to("a")
    return root


# ---------------------------------------------------------------------------
# The fixtures are what they claim to be
# ---------------------------------------------------------------------------


def test_fixture_runs_have_the_intended_severities(doc: dict[str, Any]) -> None:
    runs = by_run(doc)
    assert set(runs) == {"sweep/diverged", "keras_overfit", "lightning/version_0"}
    sev = {rid: {f["severity"] for f in r["findings"]} for rid, r in runs.items()}
    assert "error" in sev["sweep/diverged"]
    assert {"DIV001"} <= {f["rule"] for f in runs["sweep/diverged"]["findings"]}
    assert "warning" in sev["keras_overfit"] and "error" not in sev["keras_overfit"]
    assert "OVF001" in {f["rule"] for f in runs["keras_overfit"]["findings"]}
    assert not sev["lightning/version_0"] & {"error", "warning"}


# ---------------------------------------------------------------------------
# Exit codes and --fail-on
# ---------------------------------------------------------------------------

EXIT_MATRIX = [
    ("diverged", None, 1),
    ("diverged", "error", 1),
    ("diverged", "warning", 1),
    ("diverged", "never", 0),
    ("overfit", None, 0),
    ("overfit", "error", 0),
    ("overfit", "warning", 1),
    ("overfit", "never", 0),
    ("healthy", None, 0),
    ("healthy", "error", 0),
    ("healthy", "warning", 0),
    ("healthy", "never", 0),
]


@pytest.mark.parametrize(("run", "fail_on", "expected"), EXIT_MATRIX)
def test_exit_code_for_each_fail_on_level(
    logs: Logs, run: str, fail_on: str | None, expected: int
) -> None:
    argv: list[str | Path] = [getattr(logs, run), "--format", "json"]
    if fail_on:
        argv += ["--fail-on", fail_on]
    result = invoke(*argv, cwd=logs.cwd)
    assert result.code == expected, result.err
    assert [r["run"] for r in result.json()["runs"]] == ["."]


def _pyproject(folder: Path, body: str) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / "pyproject.toml"
    path.write_text("[project]\nname = 'x'\n\n" + body)
    return path


def test_fail_on_from_pyproject_and_command_line_wins(logs: Logs, tmp_path: Path) -> None:
    _pyproject(tmp_path, '[tool.diagnose]\nfail-on = "warning"\n')
    sub = tmp_path / "deeper" / "still"  # the nearest pyproject.toml above cwd counts
    sub.mkdir(parents=True)
    assert invoke(logs.overfit, cwd=tmp_path).code == 1
    assert invoke(logs.overfit, cwd=sub).code == 1
    assert invoke(logs.overfit, "--fail-on", "error", cwd=sub).code == 0
    assert invoke(logs.healthy, cwd=sub).code == 0

    _pyproject(tmp_path, '[tool.diagnose]\nfail-on = "never"\n')
    assert invoke(logs.diverged, cwd=tmp_path).code == 0
    assert invoke(logs.diverged, "--fail-on", "error", cwd=tmp_path).code == 1


def test_explicit_config_file(logs: Logs, tmp_path: Path) -> None:
    config = tmp_path / "diagnose.toml"
    config.write_text('fail-on = "warning"\n')
    assert invoke(logs.overfit, "--config", config, cwd=logs.cwd).code == 1
    assert invoke(logs.overfit, cwd=logs.cwd).code == 0


def test_config_severity_select_and_hparams(logs: Logs, tmp_path: Path) -> None:
    _pyproject(tmp_path, '[tool.diagnose.severity]\nOVF001 = "error"\n')
    result = invoke(logs.overfit, "--format", "json", cwd=tmp_path)
    assert result.code == 1
    assert {f["severity"] for f in findings(result.json()) if f["rule"] == "OVF001"} == {"error"}

    _pyproject(tmp_path, '[tool.diagnose]\nselect = ["OVF"]\n')
    only_ovf = invoke(logs.root, "--format", "json", cwd=tmp_path)
    assert only_ovf.code == 0  # the DIV001 error is not selected
    rules = {f["rule"][:3] for f in findings(only_ovf.json())}
    assert rules == {"OVF"}
    only_div = invoke(logs.root, "--format", "json", "--select", "DIV", cwd=tmp_path)
    assert only_div.code == 1
    assert {f["rule"][:3] for f in findings(only_div.json())} == {"DIV"}

    _pyproject(tmp_path, "[tool.diagnose.hparams]\nlearning_rate = 0.5\n")
    for argv, current in ([(), 0.5], [("--hparam", "learning_rate=0.2"), 0.2]):
        result = invoke(logs.diverged, "--format", "json", *argv, cwd=tmp_path)
        lr = _lr_recommendation(result.json())
        assert lr["current"] == current and lr["proposed"] < current


BAD_CONFIGS = [
    ("[tool.diagnose]\nbogus = 1\n", "bogus"),
    ('[tool.diagnose]\nfail-on = "sometimes"\n', "fail-on"),
    ('[tool.diagnose]\nfail_on = "sometimes"\n', "fail"),
    ("[tool.diagnose]\nselect = 5\n", "select"),
    ('[tool.diagnose.severity]\nOVF001 = "fatal"\n', "OVF001"),
    ('[tool.diagnose.severity]\nNOPE8 = "error"\n', "NOPE8"),
    ("[tool.diagnose\nfail-on = \n", "pyproject.toml"),
    ('[tool.diagnose.thresholds.DIV001]\nrecover_points = "many"\n', "recover_points"),
    ("[tool.diagnose.thresholds.DIV001]\nno_such_threshold = 1\n", "no_such_threshold"),
    ("[tool.diagnose.thresholds.NOPE9]\nx = 1\n", "NOPE9"),
    ('[tool.diagnose]\nrules-dirs = ["no_such_folder"]\n', "no_such_folder"),
]


@pytest.mark.parametrize(("body", "names"), BAD_CONFIGS, ids=[n for _, n in BAD_CONFIGS])
def test_invalid_config_is_one_line_and_exit_2(
    logs: Logs, tmp_path: Path, body: str, names: str
) -> None:
    _pyproject(tmp_path, body)
    for argv in ([logs.root], [logs.root, "--format", "json"], ["baseline", logs.root]):
        result = invoke(*argv, cwd=tmp_path)
        assert result.code == 2, (argv, result.out, result.err)
        assert len(result.err_lines) == 1, result.err
        assert names in result.err and "config" in result.err.lower()
        assert result.out == ""


def test_valid_metrics_table_is_accepted(logs: Logs, tmp_path: Path) -> None:
    _pyproject(tmp_path, '[tool.diagnose.metrics]\nval_loss = "val/loss"\n')
    assert invoke(logs.diverged, cwd=tmp_path).code == 1


def test_unknown_metrics_role_is_a_config_error(logs: Logs, tmp_path: Path) -> None:
    _pyproject(tmp_path, '[tool.diagnose.metrics]\nval_los = "val/loss"\n')
    result = invoke(logs.diverged, cwd=tmp_path)
    assert result.code == 2 and len(result.err_lines) == 1 and "val_los" in result.err


def test_missing_config_file_is_one_line(logs: Logs) -> None:
    result = invoke(logs.root, "--config", "no/such/diagnose.toml", cwd=logs.cwd)
    assert result.code == 2 and len(result.err_lines) == 1
    assert "no/such/diagnose.toml" in result.err


USAGE_ERRORS = [
    ["--format", "xml"],
    ["--fail-on", "sometimes"],
    ["--jobs", "0"],
    ["--jobs", "many"],
    ["--no-such-option"],
    ["--hparam", "learning_rate"],
    ["--hparam", "=3"],
]


@pytest.mark.parametrize("argv", USAGE_ERRORS, ids=[" ".join(a) for a in USAGE_ERRORS])
def test_usage_errors_exit_2_with_one_line(logs: Logs, argv: list[str]) -> None:
    result = invoke(logs.healthy, *argv, cwd=logs.cwd)
    assert result.code == 2
    assert len(result.err_lines) == 1 and result.err.startswith("diagnose: ")
    assert result.out == ""


# ---------------------------------------------------------------------------
# Unreadable input
# ---------------------------------------------------------------------------


def test_missing_path_alone_exits_2(logs: Logs) -> None:
    result = invoke("no/such/dir", "--format", "json", cwd=logs.cwd)
    assert result.code == 2
    out = result.json()
    jsonschema.validate(out, SCHEMA)
    assert out["runs"] == [] and [e["path"] for e in out["errors"]] == ["no/such/dir"]
    assert len(result.err_lines) == 1 and "no/such/dir" in result.err
    text = invoke("no/such/dir", "other/missing", cwd=logs.cwd)
    assert text.code == 2 and "no/such/dir" in text.out + text.err


def test_nothing_readable_is_exit_2_whatever_fail_on(logs: Logs) -> None:
    for fail_on in ("error", "warning", "never"):
        assert invoke("no/such/dir", "--fail-on", fail_on, cwd=logs.cwd).code == 2


def test_missing_path_beside_readable_runs(logs: Logs) -> None:
    result = invoke("no/such/dir", logs.healthy, "--format", "json", cwd=logs.cwd)
    assert result.code == 0  # the readable run is healthy: the missing path is listed only
    out = result.json()
    assert [r["run"] for r in out["runs"]] == ["."]
    assert [e["path"] for e in out["errors"]] == ["no/such/dir"]
    both = invoke(logs.diverged, "no/such/dir", cwd=logs.cwd)
    assert both.code == 1


def test_nothing_to_read_exits_2(logs: Logs, tmp_path: Path) -> None:
    """An empty folder, or one with no training log, cannot be a passing CI gate."""
    (tmp_path / "empty").mkdir()
    (tmp_path / "words").mkdir()
    (tmp_path / "words" / "notes.csv").write_text("name,comment\nfoo,bar\n")
    for path in ("empty", "words", "words/notes.csv"):
        result = invoke(tmp_path / path, "--format", "json", cwd=logs.cwd)
        assert result.code == 2, path
        out = result.json()
        assert out["runs"] == [] and len(out["errors"]) == 1
        assert len(result.err_lines) == 1


def test_damaged_logs_beside_a_good_run(mixed: Path, logs: Logs) -> None:
    result = invoke(mixed, "--format", "json", cwd=logs.cwd)
    out = result.json()
    jsonschema.validate(out, SCHEMA)
    runs = by_run(out)
    errors = {e["path"]: e["message"] for e in out["errors"]}
    assert runs["good"]["states"] == ["divergence"]
    assert result.code == 1
    assert {"empty", "garbage"} <= set(errors)
    assert "latin" in runs  # non-UTF-8 header and NaN/inf values: read, not rejected
    assert "truncated" in runs or "truncated" in errors
    assert not set(runs) & set(errors)
    assert not any(p.startswith("words") for p in [*runs, *errors])  # not a metrics table
    # one stderr line per error, nothing else
    assert len(result.err_lines) == len(out["errors"])
    for line in result.err_lines:
        assert line.startswith("diagnose: ")
    for message in errors.values():
        assert "\n" not in message
    log_findings = [f for f in findings(out) if f["rule"].startswith("LOG")]
    assert log_findings and {f["state"] for f in log_findings} == {"log"}
    # the text format lists the same errors and analyses the same runs
    text = invoke(mixed, cwd=logs.cwd)
    assert text.code == 1
    assert all(rid in text.out for rid in runs)
    assert "empty" in text.out and "garbage" in text.out


@pytest.mark.parametrize("fmt", ["text", "markdown", "sarif", "junit", "github"])
def test_every_format_tells_about_unreadable_runs(mixed: Path, logs: Logs, fmt: str) -> None:
    result = invoke(mixed, "--format", fmt, cwd=logs.cwd)
    assert result.code == 1
    told = result.out + result.err
    assert "garbage" in told and "empty" in told


def test_latin1_csv_with_nonfinite_values(mixed: Path, logs: Logs) -> None:
    result = invoke(mixed / "latin", "--format", "json", cwd=logs.cwd)
    out = result.json()
    assert [r["run"] for r in out["runs"]] == ["."]
    run = out["runs"][0]
    assert run["steps"] == [0, 7]
    assert any("caf" in m for m in run["metrics"])
    assert result.code in (0, 1)


def test_symlink_loop_terminates(mixed: Path, logs: Logs) -> None:
    result = invoke(mixed / "loop", "--format", "json", "--fail-on", "never", cwd=logs.cwd)
    out = result.json()
    jsonschema.validate(out, SCHEMA)
    # loop/up -> mixed: its runs are reached once, the loop back is not followed
    ids = [r["run"] for r in out["runs"]]
    assert len(ids) == len(set(ids))
    assert "up/good" in ids


# ---------------------------------------------------------------------------
# The JSON contract
# ---------------------------------------------------------------------------


def test_json_validates_against_schema(doc: dict[str, Any]) -> None:
    jsonschema.validate(doc, SCHEMA)
    assert doc["schema_version"] == 1 and doc["tool"]["name"] == "diagnose"
    assert doc["errors"] == []


def test_schema_rejects_contract_breaks(doc: dict[str, Any]) -> None:
    """The schema has teeth: each mutation below must fail validation."""
    import copy

    def broken(edit: Any) -> dict[str, Any]:
        d = copy.deepcopy(doc)
        edit(d)
        return d

    run0 = next(i for i, r in enumerate(doc["runs"]) if r["findings"])
    mutations = [
        lambda d: d.update(schema_version=2),
        lambda d: d.pop("errors"),
        lambda d: d["runs"][run0]["findings"][0].update(severity="fatal"),
        lambda d: d["runs"][run0]["findings"][0].pop("rule"),
        lambda d: d["runs"][run0].update(states=["overfit", "overfit"]),
        lambda d: d["runs"][run0].update(steps=[0, 1, 2]),
        lambda d: d["runs"][run0].update(run="C:\\logs\\run"),
        lambda d: d["runs"][run0]["findings"][0].update(
            recommendations=[
                {
                    "hyperparameter": "learning_rate",
                    "action": "halve",
                    "current": 0.1,
                    "proposed": 0.05,
                    "rationale": "x",
                }
            ]
        ),
        lambda d: d["runs"][run0]["findings"][0].update(
            recommendations=[
                {
                    "hyperparameter": "learning_rate",
                    "action": "decrease",
                    "current": 0.1,
                    "proposed": None,
                    "rationale": "x",
                }
            ]
        ),
        lambda d: d["errors"].append({"path": "x", "message": "two\nlines"}),
    ]
    for edit in mutations:
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(broken(edit), SCHEMA)


def test_json_matches_the_design_contract(doc: dict[str, Any]) -> None:
    runs = by_run(doc)
    assert list(runs) == sorted(runs)
    div, ovf, ok = runs["sweep/diverged"], runs["keras_overfit"], runs["lightning/version_0"]
    assert (div["format"], ovf["format"], ok["format"]) == (
        "tensorboard",
        "keras_csv",
        "lightning_csv",
    )
    assert div["steps"] == [0, 199] and ovf["steps"] == [0, 59] and ok["steps"] == [0, 399]
    assert {"train/loss", "val/loss"} <= set(div["metrics"])
    assert {"loss", "val_loss", "accuracy", "val_accuracy"} <= set(ovf["metrics"])
    assert ok["hparams"] == {"learning_rate": 0.01, "batch_size": 32}  # lr -> canonical
    assert div["states"] == ["divergence"] and ovf["states"] == ["overfit"]
    assert ok["states"] == []
    for run in doc["runs"]:
        expected: list[str] = []
        for f in run["findings"]:
            if f["severity"] in ("error", "warning") and f["state"] not in expected:
                expected.append(f["state"])
        assert sorted(run["states"]) == sorted(expected)
    nan = next(f for f in div["findings"] if f["rule"] == "DIV001" and f["metric"] == "train/loss")
    assert nan["state"] == "divergence" and nan["severity"] == "error"
    assert nan["step"] == 100 and nan["recommendations"]
    assert all(f["recommendations"] for f in ovf["findings"] if f["severity"] == "warning")


def _lr_recommendation(out: dict[str, Any], run: str = ".") -> dict[str, Any]:
    div = next(f for f in findings(out, run) if f["rule"] == "DIV001")
    return next(r for r in div["recommendations"] if r["hyperparameter"] == "learning_rate")


@pytest.mark.parametrize("key", ["learning_rate", "lr"])
def test_hparam_makes_divergence_advice_concrete(logs: Logs, key: str) -> None:
    unknown = _lr_recommendation(invoke(logs.diverged, "--format", "json", cwd=logs.cwd).json())
    assert unknown["action"] == "decrease" and unknown["current"] is None
    result = invoke(logs.diverged, "--format", "json", "--hparam", f"{key}=0.5", cwd=logs.cwd)
    out = result.json()
    jsonschema.validate(out, SCHEMA)
    lr = _lr_recommendation(out)
    assert lr["action"] == "decrease" and lr["current"] == 0.5
    assert isinstance(lr["proposed"], float) and 0 < lr["proposed"] < 0.5
    assert out["runs"][0]["hparams"].get("learning_rate") in (None, 0.5)


def test_hparam_reaches_the_rules(tmp_path: Path) -> None:
    """--hparam fills in what the log does not record for the rules as for the advice: a
    class count names its source, and a model without batch norm cannot collapse one (the
    real training of BN001's case quiet_recorded_no_batch_norm, without its config.json)."""
    case = Path(__file__).parent / "rule_fixtures" / "BN001" / "quiet_recorded_no_batch_norm"
    shutil.copy(case / "metrics_log.csv", tmp_path / "metrics_log.csv")

    def judged(*extra: str) -> dict[str, Any]:
        out = invoke(".", "--format", "json", *extra, cwd=tmp_path).json()
        run: dict[str, Any] = out["runs"][0]
        return run

    bare = judged()
    assert bare["states"] == ["batchnorm_collapse"] and bare["num_classes"]["count"] is None
    told = judged("--hparam", "num_classes=6")
    assert told["num_classes"] == {"count": 6, "source": "hparam num_classes"}
    assert judged("--hparam", "normalization=none")["states"] == ["overfit"]
    assert judged("--hparam", "use_bn=true")["states"] == ["batchnorm_collapse"]
    # the verbose listing says where the chance level came from, and how to set it
    bare_text = invoke(".", "-v", "--color", "never", cwd=tmp_path).out
    assert "--hparam num_classes=N" in bare_text
    told_text = invoke(".", "-v", "--color", "never", "--hparam", "num_classes=6",
                       cwd=tmp_path).out
    assert "6 (from hparam num_classes)" in told_text and "num_classes=N" not in told_text


def test_output_file_keeps_stdout_empty(logs: Logs, doc: dict[str, Any], tmp_path: Path) -> None:
    target = tmp_path / "out.json"
    result = invoke(logs.root, "--format", "json", "-o", target, cwd=logs.cwd)
    assert result.code == 1 and result.out == "" and result.err == ""
    assert json.loads(target.read_text(encoding="utf-8")) == doc
    text = invoke(logs.root, "--output", tmp_path / "out.txt", cwd=logs.cwd)
    assert text.out == "" and "sweep/diverged" in (tmp_path / "out.txt").read_text()
    nowhere = invoke(logs.root, "-o", tmp_path / "no" / "such" / "dir" / "x.json", cwd=logs.cwd)
    assert nowhere.code == 2 and nowhere.out == "" and len(nowhere.err_lines) == 1
    assert "internal error" not in nowhere.err


def _enabled(rule: str, select: list[str], ignore: list[str]) -> bool:
    """DESIGN's ``--select``/``--ignore``: ids or prefixes; the longest match wins."""
    sel = max((len(p) for p in select if rule.startswith(p)), default=-1)
    ign = max((len(p) for p in ignore if rule.startswith(p)), default=-1)
    return not (select and sel < 0) and ign <= sel


SELECTIONS = [
    ("DIV", ""),
    ("ovf001", ""),
    ("OVF", "OVF002"),
    ("", "OVF"),
    ("", "DIV001,OVF001"),
    ("DIV001, OVF002", ""),
    ("DIV,OVF", "OVF0"),
]


@pytest.mark.parametrize(("select", "ignore"), SELECTIONS)
def test_select_and_ignore(logs: Logs, doc: dict[str, Any], select: str, ignore: str) -> None:
    argv = [logs.root, "--format", "json", "--fail-on", "never"]
    argv += ["--select", select] if select else []
    argv += ["--ignore", ignore] if ignore else []
    sel = [x.strip().upper() for x in select.split(",") if x.strip()]
    ign = [x.strip().upper() for x in ignore.split(",") if x.strip()]
    rules = {f["rule"] for f in findings(invoke(*argv, cwd=logs.cwd).json())}
    expected = {f["rule"] for f in findings(doc) if _enabled(f["rule"], sel, ign)}
    assert expected and expected <= rules  # what fired before still fires if selected
    assert all(_enabled(r, sel, ign) for r in rules)  # and nothing unselected does


def test_ignoring_the_errors_changes_the_exit_code(logs: Logs) -> None:
    assert invoke(logs.root, "--ignore", "DIV", cwd=logs.cwd).code == 0
    assert invoke(logs.root, "--ignore", "DIV", "--fail-on", "warning", cwd=logs.cwd).code == 1


# ---------------------------------------------------------------------------
# Output formats, report, parallelism
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("fmt", ["text", "markdown", "json", "sarif", "junit", "github"])
def test_every_format_runs(logs: Logs, fmt: str) -> None:
    result = invoke(logs.root, "--format", fmt, cwd=logs.cwd)
    assert result.code == 1 and result.out.strip() and result.err == ""
    assert "\x1b[" not in result.out  # no colour codes when stdout is not a terminal
    if fmt == "json":
        jsonschema.validate(result.json(), SCHEMA)
    elif fmt == "sarif":
        sarif = result.json()
        assert sarif["version"] == "2.1.0"
        jsonschema.validate(sarif, json.loads((DATA / "sarif-2.1.0.json").read_text("utf-8")))
        ids = {r["ruleId"] for run in sarif["runs"] for r in run["results"]}
        assert {"DIV001", "OVF001"} <= ids
    elif fmt == "junit":
        cases = ET.fromstring(result.out).iter("testcase")
        failed = {c.get("name") for c in cases if c.find("failure") is not None}
        assert failed == {"sweep/diverged"}  # --fail-on error: only the error run fails
    elif fmt == "github":
        lines = result.out.splitlines()
        assert any(line.startswith("::error ") and "DIV001" in line for line in lines)
        assert any(line.startswith("::warning ") and "OVF001" in line for line in lines)
    else:
        for rid in ("sweep/diverged", "keras_overfit", "lightning/version_0"):
            assert rid in result.out.replace("\\_", "_")


def test_report_writes_markdown_and_plots(logs: Logs, tmp_path: Path) -> None:
    report = tmp_path / "ci" / "report.md"
    report.parent.mkdir()
    result = invoke(logs.root, "--report", report, "--format", "json", cwd=logs.cwd)
    assert result.code == 1
    jsonschema.validate(result.json(), SCHEMA)
    text = report.read_text(encoding="utf-8")
    assert text.startswith("#")
    for rid in ("sweep/diverged", "keras_overfit", "lightning/version_0"):
        assert rid in text.replace("\\_", "_")
    images = re.findall(r"!\[[^\]]*\]\(([^)]+\.png)\)", text)
    assert images
    for image in images:
        png = report.parent / image
        assert png.is_file(), image
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert {p.resolve() for p in report.parent.rglob("*.png")} >= {
        (report.parent / i).resolve() for i in images
    }


@pytest.fixture(scope="module")
def many(logs: Logs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Enough runs (18) for ``--jobs 2`` to use its process pool."""
    root = tmp_path_factory.mktemp("many")
    for k in range(6):
        shutil.copytree(logs.overfit, root / f"keras_{k}")
        shutil.copytree(logs.healthy, root / f"lightning_{k}")
        shutil.copytree(logs.diverged, root / "tb" / f"run_{k}")
    return root


def test_jobs_1_and_2_give_identical_json(many: Path, logs: Logs) -> None:
    one = invoke(many, "--format", "json", "--jobs", "1", cwd=logs.cwd)
    two = invoke(many, "--format", "json", "--jobs", "2", cwd=logs.cwd)
    assert one.code == two.code == 1
    assert len(one.json()["runs"]) == 18
    assert one.out == two.out


# ---------------------------------------------------------------------------
# Baseline
# ---------------------------------------------------------------------------


def test_baseline_accepts_known_findings_and_fails_on_new_ones(logs: Logs, tmp_path: Path) -> None:
    tree = tmp_path / "logs"
    shutil.copytree(logs.overfit, tree / "keras_overfit")
    shutil.copytree(logs.diverged, tree / "sweep" / "diverged")
    accepted = tmp_path / "accepted.json"
    made = invoke("baseline", tree, "-o", accepted, cwd=logs.cwd)
    assert made.code == 0 and made.out == "" and accepted.is_file()
    assert invoke(tree, cwd=logs.cwd).code == 1  # without the baseline
    for fail_on in ("error", "warning"):
        gated = invoke(tree, "--baseline", accepted, "--fail-on", fail_on, cwd=logs.cwd)
        assert gated.code == 0, gated.out

    shutil.copytree(logs.diverged, tree / "sweep" / "diverged_again")
    again = invoke(tree, "--baseline", accepted, "--format", "json", cwd=logs.cwd)
    assert again.code == 1
    states = {r["run"]: r["states"] for r in again.json()["runs"]}
    assert states == {
        "keras_overfit": [],
        "sweep/diverged": [],
        "sweep/diverged_again": ["divergence"],
    }


def test_unusable_baseline_is_a_usage_error(logs: Logs, tmp_path: Path) -> None:
    """A comparison that cannot happen must not let the gate pass."""
    (tmp_path / "not_a_baseline.json").write_text('{"x": 1}')
    (tmp_path / "broken.json").write_text("{garbage")
    for name in ("no_such_run", "not_a_baseline.json", "broken.json"):
        result = invoke(logs.healthy, "--baseline", tmp_path / name, cwd=logs.cwd)
        assert result.code == 2, name
        assert len(result.err_lines) == 1 and name in result.err


def test_baseline_of_nothing_is_exit_2(logs: Logs, tmp_path: Path) -> None:
    result = invoke("baseline", "no/such/dir", "-o", tmp_path / "b.json", cwd=logs.cwd)
    assert result.code == 2 and len(result.err_lines) == 1
    assert not (tmp_path / "b.json").exists()


# ---------------------------------------------------------------------------
# rules / explain
# ---------------------------------------------------------------------------


def _rule_files() -> list[dict[str, Any]]:
    return [tomllib.loads(p.read_text()) for p in sorted(RULES_DIR.glob("*.toml"))]


def test_rules_lists_every_rule(logs: Logs) -> None:
    result = invoke("rules", cwd=logs.cwd)
    assert result.code == 0 and result.err == ""
    lines = result.out.splitlines()
    assert max(len(line) for line in lines) <= 100  # fits a 100-column terminal
    entries: list[str] = []
    for line in lines[1:]:  # a wrapped summary continues on indented lines
        if line.startswith(" ") and entries:
            entries[-1] += line
        elif line:
            entries.append(line)
    rows = {e.split()[0]: e.split() for e in entries}
    specs = _rule_files()
    assert len(specs) >= 20 and set(rows) == {s["id"] for s in specs}
    for spec in specs:
        row = rows[spec["id"]]
        assert row[1] == spec["name"]
        assert f"[{spec['state']}]" in row and spec["severity"] in row
    as_json = json.loads(invoke("rules", "--format", "json", cwd=logs.cwd).out)
    assert {(r["id"], r["name"], r["state"], r["severity"]) for r in as_json} == {
        (s["id"], s["name"], s["state"], s["severity"]) for s in specs
    }


def test_explain_prints_doc_and_thresholds(logs: Logs) -> None:
    spec = tomllib.loads((RULES_DIR / "DIV001.toml").read_text())
    for rule_id in ("DIV001", "div001"):
        result = invoke("explain", rule_id, cwd=logs.cwd)
        assert result.code == 0 and result.err == ""
        flat = " ".join(result.out.split())
        assert "DIV001" in flat and spec["name"] in flat and spec["state"] in flat
        assert " ".join(spec["doc"]["what"].split()[:6]) in flat
        for key, default in spec["thresholds"].items():
            assert re.search(rf"\b{key}\b\W+{re.escape(str(default))}\b", flat), key


@pytest.mark.parametrize("argv", [["explain", "NOPE"], ["explain"]])
def test_explain_unknown_rule_is_one_line(logs: Logs, argv: list[str]) -> None:
    result = invoke(*argv, cwd=logs.cwd)
    assert result.code == 2 and result.out == ""
    assert len(result.err_lines) == 1


# ---------------------------------------------------------------------------
# As installed: console script and python -m
# ---------------------------------------------------------------------------


def test_console_script_and_python_m_agree_with_in_process(logs: Logs, doc: dict[str, Any]) -> None:
    script = Path(sys.executable).with_name("diagnose")
    assert script.is_file(), "the console script 'diagnose' is not installed"
    as_module = run_process(
        [sys.executable, "-m", "diagnose", str(logs.root), "--format", "json"], cwd=logs.cwd
    )
    assert as_module.code == 1 and json.loads(as_module.out) == doc
    as_script = run_process([str(script), "no/such/dir", "--format", "json"], cwd=logs.cwd)
    assert as_script.code == 2
    assert json.loads(as_script.out)["errors"][0]["path"] == "no/such/dir"
    assert len(as_script.err_lines) == 1


# ---------------------------------------------------------------------------
# More of the contract: default PATH, reference runs, strict JSON, CI summary
# ---------------------------------------------------------------------------


def test_default_path_is_cwd(logs: Logs, doc: dict[str, Any]) -> None:
    result = invoke("--format", "json", cwd=logs.root)
    assert result.code == 1 and result.json() == doc
    inside = invoke("--format", "json", cwd=logs.diverged)
    assert [r["run"] for r in inside.json()["runs"]] == ["."]


def _no_constant(name: str) -> None:
    raise AssertionError(f"non-standard JSON constant {name}")


def test_json_is_strict_even_with_nonfinite_evidence(mixed: Path, logs: Logs) -> None:
    """NaN/inf in logs must not leak out as bare NaN/Infinity tokens (jq rejects them)."""
    for path in (logs.root, mixed):
        out = invoke(path, "--format", "json", "--hparam", "lr=0.5", cwd=logs.cwd).out
        json.loads(out, parse_constant=_no_constant)


def test_baseline_reference_run(logs: Logs) -> None:
    same = invoke(logs.healthy, "--baseline", logs.healthy, "--format", "json", cwd=logs.cwd)
    assert same.code == 0
    assert not [f for f in findings(same.json()) if f["severity"] != "info"]
    worse = invoke(logs.diverged, "--baseline", logs.healthy, "--format", "json", cwd=logs.cwd)
    assert worse.code == 1
    out = worse.json()
    jsonschema.validate(out, SCHEMA)
    assert any(f["rule"].startswith("BSL") for f in findings(out))
    ignored = invoke(
        logs.diverged,
        "--baseline",
        logs.healthy,
        "--ignore",
        "BSL",
        "--format",
        "json",
        cwd=logs.cwd,
    )
    assert not [f for f in findings(ignored.json()) if f["rule"].startswith("BSL")]
    assert {f["rule"] for f in findings(ignored.json())} == {"DIV001"}


def test_every_rule_a_finding_can_carry_is_listed_and_explained(logs: Logs) -> None:
    out = invoke(logs.diverged, "--baseline", logs.healthy, "--format", "json", cwd=logs.cwd).json()
    listed = {r["id"] for r in json.loads(invoke("rules", "--format", "json", cwd=logs.cwd).out)}
    for rule in {f["rule"] for f in findings(out)}:
        assert rule in listed
        assert invoke("explain", rule, cwd=logs.cwd).code == 0


def test_report_is_appended_to_github_step_summary(
    logs: Logs, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    summary = tmp_path / "summary.md"
    summary.write_text("earlier step\n")
    monkeypatch.setenv("GITHUB_STEP_SUMMARY", str(summary))
    result = invoke(logs.root, "--format", "github", "--report", tmp_path / "r.md", cwd=logs.cwd)
    assert result.code == 1
    text = summary.read_text(encoding="utf-8")
    assert text.startswith("earlier step\n") and "sweep/diverged" in text.replace("\\_", "_")


def _write_losses(logdir: Path, tag: str, scale: float) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(logdir)) as w:
        for step in range(30):
            w.add_scalar(tag, scale * (1.0 + math.exp(-step / 8)), step)


def test_what_a_run_is(logs: Logs, tmp_path: Path) -> None:
    """Keras train/validation sub-folders are one run; other sub-folders are their own."""
    keras = tmp_path / "keras"
    _write_losses(keras / "train", "epoch_loss", 1.0)
    _write_losses(keras / "validation", "epoch_loss", 1.2)
    _write_losses(keras / "nested" / "child", "loss", 1.0)
    _write_losses(keras / "nested", "loss", 1.0)
    out = invoke(keras, "--format", "json", "--fail-on", "never", cwd=logs.cwd).json()
    jsonschema.validate(out, SCHEMA)
    runs = by_run(out)
    assert set(runs) == {".", "nested", "nested/child"}
    assert runs["."]["steps"] == [0, 29] and len(runs["."]["metrics"]) >= 2
    alone = invoke(keras / "nested" / "child", "--format", "json", cwd=logs.cwd).json()
    assert [r["run"] for r in alone["runs"]] == ["."]


def test_empty_event_file_alone_exits_2(mixed: Path, logs: Logs) -> None:
    result = invoke(mixed / "empty", "--format", "json", cwd=logs.cwd)
    assert result.code == 2 and result.json()["runs"] == []
    assert len(result.json()["errors"]) == 1 and len(result.err_lines) == 1


def test_version_and_probe_usage(logs: Logs) -> None:
    from diagnose import __version__

    with pytest.raises(SystemExit) as exited, redirect_stdout(io.StringIO()) as out:
        main(["--version"])
    assert exited.value.code == 0 and __version__ in out.getvalue()
    probe = invoke("probe", logs.diverged, cwd=logs.cwd)  # no --cmd: a usage error
    assert probe.code == 2 and probe.out == "" and len(probe.err_lines) == 1


# ---------------------------------------------------------------------------
# Help, suggestions and checked values (issue 11)
# ---------------------------------------------------------------------------


def test_help_describes_every_option_and_subcommand(logs: Logs) -> None:
    with pytest.raises(SystemExit) as done, redirect_stdout(io.StringIO()) as out:
        main(["--help"])
    assert done.value.code == 0
    text = out.getvalue()
    usage = text.split("\n\n")[0]
    for sub in ("rules", "explain ID", "probe RUN", "baseline"):
        assert sub in usage
    from diagnose.cli import _analysis_parser

    for action in _analysis_parser()._actions:
        assert action.help, f"{action.option_strings or action.dest} has no help line"
    for flag in ("-q, --quiet", "-v, --verbose", "--jobs N", "--select IDS"):
        assert flag in text


@pytest.mark.parametrize(("argv", "hint"), [
    (["rule"], "did you mean rules?"),
    (["explian", "DIV001"], "did you mean explain?"),
    (["explain", "DIV01"], "did you mean DIV001?"),
    (["explain", "loss-nonfinite"], "did you mean loss-non-finite?"),
])
def test_close_matches_are_suggested(logs: Logs, argv: list[str], hint: str) -> None:
    result = invoke(*argv, cwd=logs.cwd)
    assert result.code == 2 and result.out == ""
    assert len(result.err_lines) == 1 and hint in result.err


def test_a_folder_named_like_a_typo_is_still_a_path(logs: Logs, tmp_path: Path) -> None:
    shutil.copytree(logs.overfit, tmp_path / "rule")
    result = invoke("rule", "--format", "json", cwd=tmp_path)
    assert result.code == 0 and result.json()["runs"][0]["run"] == "."  # warnings only


@pytest.mark.parametrize(("item", "message"), [
    ("learning_rate=abc", "--hparam learning_rate wants a number, got 'abc'"),
    ("lr=-0.1", "--hparam learning_rate must be above 0"),
    ("batch_size=3.5", "--hparam batch_size wants a whole number"),
    ("dropout=2", "--hparam dropout must be between 0 and 1"),
    ("learnin_rate=0.1", "unknown hyperparameter 'learnin_rate' (did you mean learning_rate?)"),
    ("colour=red", "unknown hyperparameter 'colour' (known: learning_rate"),
    ("num_classes=1", "--hparam num_classes must be at least 2, got '1'"),
])
def test_hparam_values_and_keys_are_checked(logs: Logs, item: str, message: str) -> None:
    result = invoke(logs.overfit, "--hparam", item, cwd=logs.cwd)
    assert result.code == 2 and result.out == ""
    assert len(result.err_lines) == 1 and message in result.err


def test_metric_role_naming_no_logged_metric_is_reported(logs: Logs, tmp_path: Path) -> None:
    _pyproject(tmp_path, '[tool.diagnose.metrics]\nval_metric = "val_acuracy"\n')
    result = invoke(logs.overfit, "--format", "json", cwd=tmp_path)
    assert result.code in (0, 1) and result.json()["runs"]
    assert ("warning: metrics.val_metric = 'val_acuracy' names no metric logged by any run "
            "(did you mean val_accuracy?)") in result.err
    _pyproject(tmp_path, '[tool.diagnose.metrics]\nval_metric = "val_accuracy"\n')
    assert "warning" not in invoke(logs.overfit, "--format", "json", cwd=tmp_path).err


def test_quiet_and_verbose(logs: Logs) -> None:
    plain = invoke(logs.root, "--color", "never", cwd=logs.cwd)
    quiet = invoke(logs.root, "-q", "--color", "never", cwd=logs.cwd)
    verbose = invoke(logs.root, "-v", "--color", "never", cwd=logs.cwd)
    assert plain.code == quiet.code == verbose.code == 1
    assert "lightning/version_0" in plain.out and "lightning/version_0" not in quiet.out
    assert "sweep/diverged" in quiet.out and "note " not in quiet.out
    assert quiet.out.rstrip().splitlines()[-1] == plain.out.rstrip().splitlines()[-1]
    assert "n/a" in verbose.out and len(verbose.out) > len(plain.out)
    assert invoke(logs.root, "-q", "-v", cwd=logs.cwd).code == 2


def test_a_run_given_as_the_path_is_named_by_its_folder(logs: Logs, tmp_path: Path) -> None:
    text = invoke(logs.overfit, "--color", "never", cwd=logs.cwd).out
    assert text.startswith("keras_overfit  keras_csv")
    doc = invoke(logs.overfit, "--format", "json", cwd=logs.cwd).json()
    assert doc["runs"][0]["run"] == "."  # the JSON id keeps the DESIGN.md contract
    github = invoke(logs.overfit, "--format", "github", cwd=logs.cwd).out
    assert "::keras_overfit: " in github
    written = invoke(logs.overfit, "--report", tmp_path / "r.md", cwd=logs.cwd)
    assert written.code == 0
    assert [p.name for p in (tmp_path / "r_plots").iterdir()] == ["001-keras_overfit.png"]
    # given from inside the run folder (PATH '.'), the name is still the folder's
    assert invoke(".", "--color", "never", cwd=logs.overfit).out.startswith("keras_overfit  ")


def test_absolute_paths_are_shown_as_given(logs: Logs) -> None:
    missing = logs.root / "nope"
    result = invoke(logs.overfit, missing, "--color", "never", cwd=logs.cwd)
    assert f"{missing.as_posix()}: no such file or directory" in result.out
    assert "../" not in result.out


# ---------------------------------------------------------------------------
# Hostile run names: real folders (issue 11, items 2 and 3)
# ---------------------------------------------------------------------------

_HOSTILE_NAMES = {
    "undecodable": b"bad\xff\xfename",
    "workflow": b"x\n::add-mask::secret\n::error file=a::pwned",
    "escapes": b"esc\x1b[31mred\x1b]8;;http:\x07link\x1b]8;;\x07",
    "line_start": b"::add-mask::at_the_start",
}


@pytest.fixture(scope="module")
def hostile(logs: Logs, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One readable run and one unreadable run under each hostile folder name."""
    root = tmp_path_factory.mktemp("hostile")
    for raw in _HOSTILE_NAMES.values():
        good = os.fsdecode(os.fsencode(root) + b"/" + raw)
        shutil.copytree(logs.overfit, good)
        bad = os.fsdecode(os.fsencode(root) + b"/" + raw + b"_empty")
        os.mkdir(bad)
        Path(bad, "events.out.tfevents.1700000000.host").write_bytes(b"")
    return root


def _injection_free(text: str) -> None:
    """No escape byte, no lone surrogate, no line a GitHub runner reads as a command
    other than our own annotations (our own colour codes aside)."""
    assert "\x1b[31mred" not in text and "\x1b]8" not in text
    text = re.sub(r"\x1b\[[0-9;]*m", "", text)
    assert "\x1b" not in text and "\x07" not in text
    assert not re.search(r"[\ud800-\udfff]", text)
    for line in text.splitlines():
        if line.startswith("::"):  # ours: the name inside is %-escaped on this line
            assert re.match(r"::(error|warning|notice) ", line), line


@pytest.mark.parametrize("fmt", ["text", "markdown", "json", "sarif", "junit", "github"])
def test_hostile_folder_names_in_every_format(hostile: Path, logs: Logs, fmt: str,
                                              tmp_path: Path) -> None:
    for color in ("never", "always"):
        result = invoke(hostile, "--format", fmt, "--color", color, cwd=logs.cwd)
        assert result.code == 0, result.err  # the readable runs overfit: warnings
        _injection_free(result.out)
        _injection_free(result.err)
        if fmt in ("json", "sarif"):  # valid JSON, encodable: no surrogate, raw or \\u
            shown = json.dumps(result.json(), ensure_ascii=False)
            shown.encode("utf-8")
            shown = shown.replace("\\\\", "\\")  # the strings' own backslashes
        else:
            shown = result.out
        assert "\\xff\\xfe" in shown  # the undecodable bytes, shown escaped
    out = tmp_path / f"out.{fmt}"
    result = invoke(hostile, "--format", fmt, "-o", out, "--report", tmp_path / "r.md",
                    cwd=logs.cwd)
    assert result.code == 0 and "internal error" not in result.err
    _injection_free(result.err)
    assert result.err.count("diagnose: ") == 4  # one line per unreadable run
    for written in (out, tmp_path / "r.md"):
        _injection_free(written.read_text(encoding="utf-8"))
    with_names = (tmp_path / "r.md").read_text(encoding="utf-8")
    assert "bad\\xff\\xfename" in with_names


@pytest.mark.slow
def test_hostile_names_in_stderr_and_on_a_terminal(hostile: Path, logs: Logs) -> None:
    proc = subprocess.run([sys.executable, "-m", "diagnose", str(hostile), "--format", "json"],
                          cwd=logs.cwd, capture_output=True, timeout=120,
                          env={**os.environ, "PYTHONIOENCODING": "utf-8"})
    assert proc.returncode == 0
    err = proc.stderr.decode("utf-8")  # valid UTF-8: no raw invalid byte
    _injection_free(err)
    assert "x ::add-mask::secret ::error file=a::pwned_empty: " in err  # one line
    proc = subprocess.run([sys.executable, "-m", "diagnose", str(hostile), "--color", "always"],
                          cwd=logs.cwd, capture_output=True, timeout=120,
                          env={**os.environ, "COLUMNS": "40", "PYTHONIOENCODING": "utf-8"})
    assert proc.returncode == 0
    text = proc.stdout.decode("utf-8")
    _injection_free(text)
    plain = re.sub(r"\x1b\[[0-9;]*m", "", proc.stdout.decode("utf-8", "replace"))
    assert all(len(line) <= 40 for line in plain.splitlines())


def test_config_hparams_are_checked_like_the_flag(logs: Logs, tmp_path: Path) -> None:
    _pyproject(tmp_path, "[tool.diagnose.hparams]\nlearnig_rate = 0.5\n")
    result = invoke(logs.overfit, cwd=tmp_path)
    assert result.code == 2 and len(result.err_lines) == 1
    assert ("[tool.diagnose.hparams]: unknown hyperparameter 'learnig_rate' "
            "(did you mean learning_rate?)") in result.err
    _pyproject(tmp_path, "[tool.diagnose.hparams]\nlr = 0\n")
    assert "learning_rate must be above 0" in invoke(logs.overfit, cwd=tmp_path).err
