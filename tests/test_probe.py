"""The probe, end to end on the real example training script (CPU), plus its pieces."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

import pytest

from diagnose.probe.template import TemplateError, fill, placeholders
from diagnose.probe.verdict import ArmScore, decide

REPO = Path(__file__).resolve().parents[1]
TRAIN = REPO / "examples" / "train.py"
TEMPLATE = (
    f"{sys.executable} {TRAIN} --lr {{learning_rate}} --batch-size {{batch_size}} "
    "--max-steps {max_steps} --seed {seed} --logdir {logdir} --device {device}"
)

torch = pytest.importorskip("torch")


def _train(logdir: Path, lr: float, steps: int) -> Path:
    subprocess.run(
        [sys.executable, str(TRAIN), "--lr", str(lr), "--max-steps", str(steps),
         "--logdir", str(logdir)],
        check=True, capture_output=True, timeout=300,
    )
    return logdir


def _probe(*args: str, cwd: Path = REPO) -> tuple[int, dict, str]:
    proc = subprocess.run(
        [sys.executable, "-m", "diagnose", "probe", *args, "--format", "json"],
        capture_output=True, text=True, cwd=cwd, timeout=600,
    )
    payload = json.loads(proc.stdout) if proc.stdout.strip().startswith("{") else {}
    return proc.returncode, payload, proc.stderr


# --- template -------------------------------------------------------------------------


def test_template_fills_each_word_without_a_shell() -> None:
    argv = fill("python t.py --lr {lr} --name '{logdir}' --wd {weight_decay}",
                {"learning_rate": 0.03, "logdir": "a b; rm -rf /", "weight_decay": 5e-4})
    assert argv == ["python", "t.py", "--lr", "0.03", "--name", "a b; rm -rf /", "--wd",
                    "0.0005"]
    assert placeholders("x {a} {b} {a}") == ["a", "b"]


def test_template_names_the_missing_value() -> None:
    with pytest.raises(TemplateError, match=r"\{dropout\}.*--hparam dropout=VALUE"):
        fill("python t.py --p {dropout}", {})


# --- verdict logic ----------------------------------------------------------------------


def test_verdict_confirms_when_the_control_diverges_and_the_candidate_does_not() -> None:
    control = ArmScore([math.inf, math.inf], [["divergence"], ["divergence"]], 0)
    cand = ArmScore([0.4, 0.5], [[], []], 0)
    out = decide(control, cand, "divergence", higher=False)
    assert out["verdict"] == "confirmed"


def test_verdict_is_inconclusive_inside_the_seed_spread() -> None:
    control = ArmScore([0.50, 0.60], [[], []], 0)
    cand = ArmScore([0.52, 0.58], [[], []], 0)
    out = decide(control, cand, "overfit", higher=False)
    assert out["verdict"] == "inconclusive"
    assert out["spread"] > 0


def test_verdict_refutes_a_clearly_worse_candidate() -> None:
    control = ArmScore([0.20, 0.21], [[], []], 0)
    cand = ArmScore([0.60, 0.62], [[], []], 0)
    assert decide(control, cand, None, higher=False)["verdict"] == "refuted"


# --- end to end on the real example ------------------------------------------------------


@pytest.mark.slow
def test_probe_confirms_a_lower_learning_rate_for_a_diverged_run(tmp_path: Path) -> None:
    run = _train(tmp_path / "diverged", lr=2.0, steps=300)
    code, out, err = _probe(str(run), "--cmd", TEMPLATE, "--seeds", "2", "--top", "1",
                            "--max-steps", "150", "--device", "cpu",
                            "--workdir", str(tmp_path / "trials"))
    assert code == 0, err
    result = out["runs"][0]
    assert "divergence" in result["states"]
    probe = result["probe"]
    assert probe["device"] == "cpu" and probe["max_steps"] == 150
    cand = probe["candidates"][0]
    assert cand["changes"]["learning_rate"] < 2.0
    assert cand["verdict"] == "confirmed", cand
    assert all(t["status"] == "ok" for t in cand["trials"])
    assert all("divergence" in t["states"] for t in probe["control"]["trials"])


@pytest.mark.slow
def test_probe_refutes_a_bad_candidate_and_survives_a_crashing_one(tmp_path: Path) -> None:
    run = _train(tmp_path / "healthy", lr=0.05, steps=300)
    code, out, err = _probe(str(run), "--cmd", TEMPLATE, "--seeds", "2", "--top", "0",
                            "--max-steps", "150", "--device", "cpu",
                            "--try", "learning_rate=1.5", "--try", "batch_size=0",
                            "--workdir", str(tmp_path / "trials"))
    assert code == 0, err
    probe = out["runs"][0]["probe"]
    by_key = {c["key"]: c for c in probe["candidates"]}
    bad = by_key["learning_rate=1.5"]
    assert bad["verdict"] == "refuted", bad
    crashed = by_key["batch_size=0"]
    assert {t["status"] for t in crashed["trials"]} == {"crashed"}
    assert "batch-size" in crashed["trials"][0]["message"]
    assert crashed["verdict"] == "inconclusive"
    assert all(t["status"] == "ok" for t in probe["control"]["trials"])


def test_probe_explains_a_template_without_logdir(tmp_path: Path) -> None:
    run = _train(tmp_path / "r", lr=0.05, steps=60)
    proc = subprocess.run(
        [sys.executable, "-m", "diagnose", "probe", str(run), "--cmd", "python x.py"],
        capture_output=True, text=True, cwd=REPO, timeout=120,
    )
    assert proc.returncode == 2
    assert "{logdir}" in proc.stderr and "Traceback" not in proc.stderr


def test_lr_range_test_suggests_a_plausible_rate(tmp_path: Path) -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "diagnose", "probe", "--lr-range", "examples.lr_factory:make",
         "--lr-iters", "80", "--device", "cpu", "--format", "json",
         "--report", str(tmp_path / "lr.md")],
        capture_output=True, text=True, cwd=REPO, timeout=300,
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)["lr_range_test"]
    assert 1e-3 <= out["suggested_lr"] <= 3.0
    assert set(out["suggestions"]) >= {"steepest", "valley"}
    png = tmp_path / "lr_range_test.png"
    assert png.stat().st_size > 5000


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_probe_runs_trials_on_the_gpu(tmp_path: Path) -> None:
    run = _train(tmp_path / "diverged", lr=2.0, steps=300)
    code, out, err = _probe(str(run), "--cmd", TEMPLATE, "--seeds", "2", "--top", "1",
                            "--max-steps", "150", "--device", "cuda")
    assert code == 0, err
    probe = out["runs"][0]["probe"]
    assert probe["device"].startswith("cuda")
    assert all(t["device"].startswith("cuda") for t in probe["control"]["trials"])
