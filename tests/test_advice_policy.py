"""The advice policy (issue 8, deliver 2): the numbers behind the recommendations are
named parameters, shown by ``diagnose explain advice`` and settable in config."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest

from diagnose.advice.policy import AdvicePolicy, format_policy_doc, ordinal
from diagnose.cli import main
from diagnose.config import ConfigError, parse_table

REPO = Path(__file__).resolve().parents[1]
OVERFIT = REPO / "sample_logs" / "keras_csv" / "overfit_classification"
NAN = REPO / "sample_logs" / "hf" / "divergence_nan"


def _recs(capsys: pytest.CaptureFixture[str], run: Path, cfg: Path | None,
          hyper: str) -> list[dict]:
    argv = [str(run), "--format", "json", "--no-progress"]
    if cfg is not None:
        argv += ["--config", str(cfg)]
    main(argv)
    out = json.loads(capsys.readouterr().out)
    return [r for run_ in out["runs"] for f in run_["findings"]
            for r in f["recommendations"] if r["hyperparameter"] == hyper]


def test_every_policy_number_is_documented_and_its_default_valid() -> None:
    for f in dataclasses.fields(AdvicePolicy):
        assert len(f.metadata["doc"]) >= 20, f.name
        assert f.metadata["param"].coerce(f.default) == f.default, f.name
    doc = format_policy_doc()
    for f in dataclasses.fields(AdvicePolicy):
        assert f"  {f.name} = {f.default!r}" in doc


def test_explain_advice_shows_the_configured_values(tmp_path: Path,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    cfg = tmp_path / "pyproject.toml"
    cfg.write_text("[tool.diagnose.advice]\nclip_percentile = 75\n", encoding="utf-8")
    assert main(["explain", "advice", "--config", str(cfg)]) == 0
    out = capsys.readouterr().out
    assert "clip_percentile = 75.0" in out and "lr_safety_factor = 3.0" in out


def test_a_policy_value_from_config_changes_the_recommendation(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _recs(capsys, OVERFIT, None, "weight_decay")
    # the Keras sample trains with Adam: coupled L2, adaptive_coupled_weight_decay
    assert before and {r["proposed"] for r in before} == {0.005}
    cfg = tmp_path / "pyproject.toml"
    cfg.write_text("[tool.diagnose.advice]\nadaptive_coupled_weight_decay = 1e-4\n"
                   "default_dropout = 0.2\n", encoding="utf-8")
    after = _recs(capsys, OVERFIT, cfg, "weight_decay")
    assert {r["proposed"] for r in after} == {0.0001}
    assert all("add 0.0001" in r["rationale"] for r in after)
    assert {r["proposed"] for r in _recs(capsys, OVERFIT, cfg, "dropout")} == {0.2}


def test_the_clip_percentile_is_the_one_the_rationale_names(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (clip,) = {r["rationale"] for r in _recs(capsys, NAN, None, "grad_clip")}
    assert "the 90th percentile of the grad norms" in clip
    cfg = tmp_path / "pyproject.toml"
    cfg.write_text("[tool.diagnose.advice]\nclip_percentile = 50\n", encoding="utf-8")
    recs = _recs(capsys, NAN, cfg, "grad_clip")
    assert recs and all("the 50th percentile" in r["rationale"] for r in recs)
    assert recs[0]["proposed"] < 1.2  # the median of the calm grad norms, below the p90


@pytest.mark.parametrize("table, message", [
    ({"lr_safety_factr": 2}, "config key 'advice.lr_safety_factr' is not an advice policy"),
    ({"lr_safety_factor": 0.5}, "config key 'advice.lr_safety_factor' must be a number >= 1"),
    ({"min_bn_batch": 2.5}, "config key 'advice.min_bn_batch' must be an integer"),
    ({"max_warmup_share": "x"}, "config key 'advice.max_warmup_share' must be a number"),
])
def test_a_bad_policy_key_or_value_is_a_config_error(table: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        parse_table({"advice": table})


def test_ordinal() -> None:
    assert [ordinal(x) for x in (1, 2, 3, 4, 11, 12, 13, 21, 90, 92.5)] == [
        "1st", "2nd", "3rd", "4th", "11th", "12th", "13th", "21st", "90th", "92.5th"]
