"""bench/calibration/why_quiet.py: which return of a rule's detect ended it, on real logs."""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
import pytest

CAL = Path(__file__).resolve().parents[1] / "bench" / "calibration"
sys.path.insert(0, str(CAL))

import why_quiet  # noqa: E402


def _log(folder: Path, floor: float) -> Path:
    """A CSV log whose train loss falls from about 1 to ``floor``, val beside it (1%
    above) every 10 steps: a loss-only run (no class count, no accuracy)."""
    folder.mkdir(parents=True)
    steps = np.arange(1, 101)
    train = floor + (1.0 - floor) * np.exp(-steps / 25.0)
    lines = ["step,train_loss,val_loss"]
    for s, t in zip(steps, train, strict=True):
        val = f"{t * 1.01:.6f}" if s % 10 == 0 else ""
        lines.append(f"{s},{t:.6f},{val}")
    (folder / "metrics_log.csv").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return folder


def test_each_return_is_read_with_the_if_it_belongs_to() -> None:
    def f(x: int) -> int | None:
        if x < 0 \
                or x > 9:
            return None
        if x == 3:
            y = 1
            return y
        return x

    got = list(why_quiet.conditions(f).values())
    assert len(got) == 3
    assert got[0].endswith("if x < 0 or x > 9 -> return None")
    assert got[1].endswith("if x == 3 -> return y")
    assert got[2].endswith(": return x")


def test_a_good_fit_is_quiet_at_the_poor_check_and_a_poor_one_fires(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """UND004 on a loss that fell to 5% of its start (not poor) and one that stopped at
    70% of it with val beside train (learned but poor: fires)."""
    rendered = tmp_path / "rendered"
    _log(rendered / "csv" / "r1", 0.05)
    _log(rendered / "csv" / "r2", 0.7)
    got = why_quiet.trace_detect(rendered / "csv" / "r1", "UND004", ["level", "l0"])
    assert got is not None
    line, fired, seen = got
    where = why_quiet.rule_conditions(why_quiet.rule_of("UND004"))
    assert line is not None and not fired
    assert "level <" in where[line] and "l0" in where[line]
    assert seen["level"] < 0.1 * seen["l0"]
    poor = why_quiet.trace_detect(rendered / "csv" / "r2", "UND004", [])
    assert poor is not None and poor[1]
    tsv = tmp_path / "pred.tsv"
    tsv.write_text("id\tfamily\tdataset\tformat\tcause\tlabel\tprediction\n"
                   "r1\tmlp\tx\tcsv\tc\tunderfit\thealthy\n"
                   "r2\tmlp\tx\tcsv\tc\thealthy\tunderfit\n", encoding="utf-8")
    assert why_quiet.main(["--predictions", str(tsv), "--rendered", str(rendered),
                           "--show", "level"]) == 0
    out = capsys.readouterr().out
    assert "[miss 1] " + where[line] in out and "miss  r1" in out
    assert "[alarm 1] fired" in out and "alarm r2" in out
