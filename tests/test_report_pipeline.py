"""Every format on the real pipeline: Keras CSVLogger logs written here, plus real logs.

No hand-built findings: discovery, ingest, engine and recommender produce the Analysis,
so these tests catch a format that breaks on what the engine really emits (synthetic YOLO
loss sums, duplicated recommendations, long evidence lists).
"""

from __future__ import annotations

import json
import xml.etree.ElementTree as ET
from pathlib import Path

import jsonschema
import numpy as np
import pytest
from PIL import Image

from diagnose.engine import load_rules
from diagnose.findings import Analysis
from diagnose.pipeline import Options, analyze
from diagnose.report import FORMATS, render, write_report
from diagnose.report.plots import plot_data

SCHEMA = json.loads((Path(__file__).parent / "data" / "sarif-2.1.0.json").read_text("utf-8"))
REAL_LOGS = Path(__file__).resolve().parents[2] / "shared" / "real_logs"


def _keras_csv(path: Path, loss: np.ndarray, val: np.ndarray) -> None:
    """A Keras CSVLogger file, the format keras.callbacks.CSVLogger writes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    rows = ["epoch,accuracy,loss,val_accuracy,val_loss"]
    for e, (lo, va) in enumerate(zip(loss, val, strict=True)):
        acc = 1 - 0.7 * np.exp(-e / 8)
        rows.append(f"{e},{acc:.4f},{lo},{0.76 - 0.0003 * (e - 14) ** 2:.4f},{va}")
    path.write_text("\n".join(rows) + "\n", encoding="utf-8")


@pytest.fixture(scope="module")
def analysis(tmp_path_factory: pytest.TempPathFactory) -> Analysis:
    root = tmp_path_factory.mktemp("logs")
    ep = np.arange(40)
    loss = 1.8 * np.exp(-ep / 8) + 0.1
    _keras_csv(root / "overfit_run" / "training.log", loss, 0.7 + 0.002 * (ep - 12) ** 2)
    nan = np.concatenate([loss[:20], loss[19] * 3.0 ** np.arange(1, 6), np.full(5, np.nan)])
    _keras_csv(root / "nan_run" / "training.log", nan, nan * 1.1)
    (root / "broken").mkdir()
    (root / "broken" / "events.out.tfevents.1.host").write_bytes(b"\x00" * 7)
    return analyze([str(root)], options=Options(jobs=1))


def test_pipeline_analysis_has_what_the_formats_need(analysis: Analysis) -> None:
    ids = [r.run.run_id for r in analysis.results]
    assert ids == ["nan_run", "overfit_run"]
    assert [e.path for e in analysis.errors] == ["broken"]
    nan_run = analysis.results[0]
    assert "DIV001" in {f.rule for f in nan_run.findings}
    assert any(f.recommendations for f in nan_run.findings)


@pytest.mark.parametrize("fmt", FORMATS)
def test_every_format_renders_pipeline_output(analysis: Analysis, fmt: str) -> None:
    out = render(analysis, fmt, rules=load_rules([]), color=False)
    assert "nan_run" in out and "overfit_run" in out


def test_pipeline_sarif_junit_github(analysis: Analysis) -> None:
    rules = load_rules([])
    sarif = json.loads(render(analysis, "sarif", rules=rules))
    jsonschema.validate(sarif, SCHEMA)
    run = sarif["runs"][0]
    div = next(r for r in run["tool"]["driver"]["rules"] if r["id"] == "DIV001")
    assert div["help"]["markdown"] and div["fullDescription"]["text"]
    uris = {r["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
            for r in run["results"]}
    assert all(u.endswith("/training.log") for u in uris)
    suite = ET.fromstring(render(analysis, "junit").encode()).find("testsuite")
    nan_case = next(c for c in suite.findall("testcase") if c.get("name") == "nan_run")
    assert any(f.get("message").startswith("DIV001") for f in nan_case.findall("failure"))
    broken = next(c for c in suite.findall("testcase") if c.get("name") == "broken")
    assert broken.find("error") is not None
    notes = run["invocations"][0]["toolExecutionNotifications"]
    assert any(n["level"] == "error" and n["message"]["text"].startswith("broken:")
               for n in notes)
    github = render(analysis, "github")
    assert github.startswith("::error file=")
    assert "title=DIV001 loss-non-finite::nan_run:" in github


def test_pipeline_report_plots(analysis: Analysis, tmp_path: Path) -> None:
    files = write_report(analysis, tmp_path / "report.md", rules=load_rules([]))
    assert [p.name for p in files[1:]] == ["001-nan_run.png", "002-overfit_run.png"]
    for png in files[1:]:
        with Image.open(png) as img:
            assert img.size[0] > 300
    data = plot_data(analysis.results[0])
    steps = {f.step for f in analysis.results[0].findings if f.step is not None}
    assert {m["step"] for m in data["markers"]} == steps
    loss = data["panels"][0]["lines"][0]
    assert loss["role"] == "train_loss" and len(loss["nonfinite_steps"]) == 5


@pytest.mark.skipif(not REAL_LOGS.is_dir(), reason="shared/real_logs is not beside the repo")
def test_real_logs_report(tmp_path: Path) -> None:
    runs = ["keras_car_cnn", "yolov5_cots_150e", "eeg_trm_v3_4_nan_early"]
    analysis = analyze([str(REAL_LOGS / r) for r in runs], options=Options(jobs=1))
    assert len(analysis.results) == 3
    rules = load_rules([])
    jsonschema.validate(json.loads(render(analysis, "sarif", rules=rules)), SCHEMA)
    files = write_report(analysis, tmp_path / "real.md", rules=rules)
    assert len(files) == 4
    yolo = next(r for r in analysis.results if "yolov5" in str(r.run.path))
    data = plot_data(yolo)
    assert [p["key"] for p in data["panels"]] == ["loss", "metric", "lr"]
    assert "(sum of 3 parts)" in data["panels"][0]["lines"][0]["label"]
