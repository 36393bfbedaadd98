"""The Python API: ``diagnose.analyze`` is the command's analysis as objects, byte for byte.

The logs are the sample runs written by the real writers (torch SummaryWriter, Keras
CSVLogger, the HF Trainer); the reference is the ``diagnose`` command run as a process.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest

import diagnose
from diagnose.findings import Finding, Recommendation, RunResult
from diagnose.run import SCALAR_COLUMNS, Run

REPO = Path(__file__).resolve().parents[1]
SAMPLES = REPO / "sample_logs"
PATHS = ["sample_logs/keras_csv", "sample_logs/hf", "sample_logs/tb/divergence_exploding_loss"]


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "diagnose", *args], cwd=REPO,
                          capture_output=True, text=True, timeout=120)


@pytest.fixture(scope="module")
def report(request: pytest.FixtureRequest) -> diagnose.Report:
    with pytest.MonkeyPatch.context() as mp:
        mp.chdir(REPO)  # the same config discovery as the command run from REPO
        return diagnose.analyze(PATHS)


@pytest.mark.slow
def test_to_dict_is_the_json_output_byte_for_byte(report: diagnose.Report) -> None:
    proc = _cli(*PATHS, "--format", "json")
    assert proc.returncode == report.exit_code == 1, proc.stderr
    assert report.to_json() + "\n" == proc.stdout
    assert json.loads(json.dumps(report.to_dict())) == json.loads(proc.stdout)


@pytest.mark.slow
def test_options_are_the_command_options(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(REPO)
    got = diagnose.analyze(PATHS, select="DIV,OVF", hparams={"lr": 0.3}, fail_on="warning")
    proc = _cli(*PATHS, "--format", "json", "--select", "DIV,OVF", "--hparam", "lr=0.3",
                "--fail-on", "warning")
    assert json.loads(json.dumps(got.to_dict())) == json.loads(proc.stdout)
    assert got.exit_code == proc.returncode == 1
    assert {f.rule[:3] for f in got.findings} <= {"DIV", "OVF"}
    lrs = [r.current for r in got.recommendations if r.hyperparameter == "learning_rate"]
    assert lrs and all(v == 0.3 for v in lrs)  # --hparam reached the recommender


def test_typed_objects(report: diagnose.Report) -> None:
    assert all(isinstance(r, RunResult) and isinstance(r.run, Run) for r in report.runs)
    assert report.findings and all(isinstance(f, Finding) for f in report.findings)
    assert report.recommendations
    assert all(isinstance(r, Recommendation) for r in report.recommendations)
    verdicts = report.verdicts
    assert verdicts["sample_logs/keras_csv/divergence_nan"] == "divergence"
    assert verdicts["healthy_moons"] == "healthy"
    assert verdicts["."] == "divergence"  # PATH itself is the run
    assert report["overfit_char_lstm"].states == ["overfit"]
    assert repr(report).startswith("<diagnose.Report 9 runs: ")
    with pytest.raises(KeyError):
        report["no/such/run"]
    assert "overfit_char_lstm" in report._repr_markdown_()  # what Jupyter shows


def test_load_run_gives_the_scalar_table(report: diagnose.Report) -> None:
    run = diagnose.load_run(SAMPLES / "keras_csv" / "overfit_classification")
    assert isinstance(run.scalars, pd.DataFrame)
    assert tuple(run.scalars.columns) == SCALAR_COLUMNS
    assert set(run.scalars["split"].unique()) == {"train", "val"}
    same = report["overfit_classification"].run
    pd.testing.assert_frame_equal(run.scalars, same.scalars)
    # judge() on the loaded run says what the analysis said (its id is "." as for
    # `diagnose PATH` when PATH is the run itself)
    assert run.run_id == "."
    expected = {**report["overfit_classification"].to_dict(), "run": "."}
    assert diagnose.judge(run).to_dict() == expected


def test_load_run_needs_exactly_one_run(tmp_path: Path) -> None:
    with pytest.raises(diagnose.DiagnoseError, match=r"holds 4 runs .*divergence_nan"):
        diagnose.load_run(SAMPLES / "keras_csv")
    with pytest.raises(diagnose.DiagnoseError, match="no training log"):
        diagnose.load_run(tmp_path)


def test_unreadable_paths_are_errors_not_exceptions(tmp_path: Path) -> None:
    got = diagnose.analyze(tmp_path / "missing")
    assert not got.runs and got.errors and got.exit_code == 2


def test_bad_setting_raises(tmp_path: Path) -> None:
    bad = tmp_path / "diagnose.toml"
    bad.write_text("[tool.diagnose]\nfail-on = 'sometimes'\n")
    with pytest.raises(diagnose.ConfigError):
        diagnose.analyze(SAMPLES / "keras_csv", config=bad)
    with pytest.raises(diagnose.DiagnoseError, match="fail_on"):
        diagnose.analyze(SAMPLES / "keras_csv", fail_on="sometimes")


def test_figures_are_the_report_plots(report: diagnose.Report) -> None:
    from matplotlib.figure import Figure

    from diagnose.report.plots import plot_data

    result = report["sample_logs/keras_csv/divergence_nan"]
    fig = report.figure("sample_logs/keras_csv/divergence_nan")
    assert isinstance(fig, Figure)
    panels = plot_data(result)["panels"]
    assert [ax.get_ylabel() for ax in fig.axes] == [p["ylabel"] for p in panels]
    assert fig.get_suptitle() == "sample_logs/keras_csv/divergence_nan"
    assert set(report.figures()) == {r.run.run_id for r in report.runs}
    with pytest.raises(diagnose.DiagnoseError, match="name one"):
        report.figure()


def test_import_is_cheap() -> None:
    code = ("import sys, diagnose; heavy = ('pandas', 'numpy', 'matplotlib', 'scipy', "
            "'torch', 'rich'); print(sorted(m for m in sys.modules if m.split('.')[0] in heavy)); "
            "print(callable(diagnose.analyze), 'analyze' in dir(diagnose))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          cwd=REPO, timeout=60)
    assert proc.stdout.split("\n")[:2] == ["[]", "True True"], proc.stderr


def test_readme_notebook_example_runs_and_shows_real_output(monkeypatch: pytest.MonkeyPatch,
                                                            ) -> None:
    import doctest
    import re

    monkeypatch.chdir(REPO)
    readme = (REPO / "README.md").read_text()
    section = readme.split("## In a notebook", 1)[1].split("\n## ", 1)[0]
    code, session = re.findall(r"```(?:python)?\n(.*?)```", section, flags=re.S)[:2]
    globs: dict = {}
    exec(compile(code, "README.md", "exec"), globs)  # the three lines a user types
    test = doctest.DocTestParser().get_doctest(session, globs, "README", "README.md", 0)
    runner = doctest.DocTestRunner(optionflags=doctest.NORMALIZE_WHITESPACE)
    runner.run(test)
    assert runner.summarize(verbose=False).failed == 0


def test_judge_applies_the_advice_policy_like_the_command() -> None:
    """judge() (callbacks, watch, probe) is the pipeline's per-run step: a non-default
    ``[tool.diagnose.advice]`` changes its advice exactly as it changes the command's."""
    from diagnose.config import Config

    path = SAMPLES / "tb" / "divergence_exploding_loss"
    run = diagnose.load_run(path)
    cfg = Config(advice={"lr_cut_violent": 100.0, "lr_safety_factor": 100.0})
    default = diagnose.judge(run, config=Config()).to_dict()
    tuned = diagnose.judge(run, config=cfg).to_dict()
    assert tuned != default  # the policy reaches the advice
    command = diagnose.analyze(path, config=cfg).results[0].to_dict()
    assert tuned == {**command, "run": run.run_id}


def test_the_run_is_read_only_after_ingest() -> None:
    """Analysis never edits what ingest read: a loaded Run cannot be rebound; a changed
    copy comes from dataclasses.replace (and survives pickling to a worker frozen)."""
    import dataclasses
    import pickle

    run = diagnose.load_run(SAMPLES / "keras_csv" / "overfit_classification")
    assert run.frozen
    with pytest.raises(AttributeError, match="read-only after ingest"):
        run.notes = []
    with pytest.raises(AttributeError, match="read-only after ingest"):
        run.hparams = {"learning_rate": 1.0}
    changed = dataclasses.replace(run, hparams={"learning_rate": 1.0})
    assert changed.hparams == {"learning_rate": 1.0} and run.hparams != changed.hparams
    back = pickle.loads(pickle.dumps(run))
    assert back.frozen and back.run_id == run.run_id
    assert diagnose.judge(changed).run.hparams == {"learning_rate": 1.0}
