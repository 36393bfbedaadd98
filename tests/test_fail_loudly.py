"""The tool's own mistakes and the user's config mistakes exit 2 with one line.

A CI gate that silently checks nothing (``--select XYZ999``), a threshold that switches a
rule off (``tail_frac = -3.0``), a severity that is ignored, a detector that raises or a
detector module that fails to import must never end in "healthy, exit 0".  Damaged input
stays what it is: a note or an unreadable-path line, the other runs still judged.
"""

from __future__ import annotations

import subprocess
import sys
from contextlib import redirect_stderr, redirect_stdout
from io import StringIO
from pathlib import Path

import pytest

from diagnose import detectors
from diagnose.cli import main
from diagnose.config import Config, ConfigError
from diagnose.engine import RuleError, check_config, load_rules

REPO = Path(__file__).resolve().parents[1]
DIVERGED = REPO / "sample_logs" / "tb" / "divergence_exploding_loss"
HEALTHY = REPO / "sample_logs" / "tb" / "healthy_mlp_adam"
BSL = REPO / "tests" / "rule_fixtures" / "BSL003" / "fire"


def _cli(*argv: str) -> tuple[int, str, str]:
    out, err = StringIO(), StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([*argv, "--no-progress"])
    assert "Traceback" not in err.getvalue()
    return code, out.getvalue(), err.getvalue()


def _config(tmp_path: Path, text: str) -> str:
    path = tmp_path / "diagnose.toml"
    path.write_text(text, encoding="utf-8")
    return str(path)


def _one_line_error(err: str, *needles: str) -> None:
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("diagnose: ")
    for needle in needles:
        assert needle in lines[0], (needle, lines[0])


def test_the_diverged_sample_fails_the_gate_by_default() -> None:
    """The control for every case below: without the mistake the gate says exit 1."""
    assert _cli(str(DIVERGED))[0] == 1


@pytest.mark.parametrize("argv, needles", [
    (("--select", "XYZ999"), ("--select", "'XYZ999'", "no rule id or prefix")),
    (("--select", "DIV,XYZ"), ("--select", "'XYZ'")),
    (("--ignore", "Q"), ("--ignore", "'Q'")),
])
def test_select_or_ignore_naming_no_rule_exits_2(argv: tuple[str, ...],
                                                 needles: tuple[str, ...]) -> None:
    code, out, err = _cli(str(DIVERGED), *argv)
    assert code == 2 and out == ""
    _one_line_error(err, *needles)


def test_known_prefixes_are_accepted() -> None:
    code, _, err = _cli(str(DIVERGED), "--select", "DIV,BSL", "--ignore", "DIV004")
    assert code == 1 and err == ""


@pytest.mark.parametrize("toml, needles", [
    ('select = ["XYZ"]', ("config key 'select'", "'XYZ'")),
    ('ignore = ["OVF", "NOPE1"]', ("config key 'ignore'", "'NOPE1'")),
    ('[thresholds.DIV002]\ntail_frac = -3.0',
     ("thresholds.DIV002.tail_frac", "(0, 1]", "-3.0")),
    ('[thresholds.DIV002]\nmin_points = 2.5', ("thresholds.DIV002.min_points", "integer")),
    ('[thresholds.DIV002]\nexplode_factor = "big"',
     ("thresholds.DIV002.explode_factor", "number")),
    ('[thresholds.DIV002]\nno_such = 1', ("thresholds.DIV002.no_such", "not a threshold")),
    ('[thresholds.XYZ001]\ntail_frac = 0.2', ("thresholds.XYZ001", "unknown rule")),
    ('[thresholds.BN002]\ntag_pattern = "("', ("thresholds.BN002.tag_pattern", "regular")),
    ('[severity]\nXYZ001 = "info"', ("severity.XYZ001", "unknown rule")),
    ('[severity]\nDIV002 = "fatal"', ("severity.DIV002", "error, warning or info")),
])
def test_config_mistakes_exit_2_naming_the_key(tmp_path: Path, toml: str,
                                               needles: tuple[str, ...]) -> None:
    code, out, err = _cli(str(DIVERGED), "--config", _config(tmp_path, toml))
    assert code == 2 and out == ""
    _one_line_error(err, "config error", *needles)


def test_an_in_range_threshold_is_applied(tmp_path: Path) -> None:
    """The validation rejects only what is out of range: a valid override still works
    (a huge explode factor and ratio factor switch DIV002 off; the run still fails on
    other divergence rules, so look at the rule itself; DIV005, which supersedes DIV002
    on this log, is ignored so that DIV002 speaks)."""
    base = 'ignore = ["DIV005"]\n'
    toml = base + "[thresholds.DIV002]\nexplode_factor = 1e9\nratio_factor = 1e9\n"
    code, out, _ = _cli(str(DIVERGED), "--config", _config(tmp_path, toml),
                        "--format", "json")
    assert code in (0, 1)
    assert '"rule": "DIV002"' not in out
    (tmp_path / "b").mkdir()
    code, out, _ = _cli(str(DIVERGED), "--config", _config(tmp_path / "b", base),
                        "--format", "json")
    assert '"rule": "DIV002"' in out


def test_check_config_names_every_kind_of_unknown() -> None:
    rules = load_rules()
    check_config(rules, Config(select=["D", "DIV002", "BSL"], ignore=["LOG00"]))
    with pytest.raises(ConfigError, match="config key 'select' names 'DIV9'"):
        check_config(rules, Config(select=["DIV9"]))
    with pytest.raises(ConfigError, match=r"'thresholds\.OVF001\.min_tau' must be a number "
                                          r"in \[-1, 1\] \(got 3\)"):
        check_config(rules, Config(thresholds={"OVF001": {"min_tau": 3}}))


def test_baseline_rules_honour_severity_config(tmp_path: Path) -> None:
    argv = (str(BSL / "current"), "--baseline", str(BSL / "reference"), "--format", "json")
    code, out, _ = _cli(*argv)
    assert '"rule": "BSL003"' in out and code == 1
    import json

    def severities(text: str) -> dict[str, str]:
        runs = json.loads(text)["runs"]
        return {f["rule"]: f["severity"] for r in runs for f in r["findings"]}

    assert severities(out)["BSL003"] == "warning"
    cfg = _config(tmp_path, '[severity]\nBSL003 = "info"\nBSL001 = "info"\n')
    code, out, _ = _cli(*argv, "--config", cfg)
    got = severities(out)
    assert got["BSL003"] == "info" and got["BSL001"] == "info"
    assert code == 0  # nothing at or above error any more


def test_a_raising_detector_exits_2_naming_rule_and_run(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Other runs must not print "healthy" around a rule that broke on one run."""
    from diagnose.detectors.divergence import DIV004

    def boom(self: DIV004, ctx: detectors.RuleContext, p: DIV004.Params) -> None:
        raise ValueError("index out of range in our own code")

    monkeypatch.setattr(DIV004, "detect", boom)
    code, out, err = _cli(str(HEALTHY), str(DIVERGED))
    assert code == 2 and "healthy" not in out
    _one_line_error(err, "internal error", "DIV004", "loss_trending_up",
                    "ValueError: index out of range in our own code")
    assert "divergence_exploding_loss" in err or "healthy_mlp_adam" in err


def test_a_detector_module_that_fails_to_import_exits_2() -> None:
    """One bad import in a detector module once made the overfit sample print
    ``healthy: no findings``, exit 0."""
    script = (
        "import sys; sys.modules['diagnose.detectors.overfit'] = None\n"
        "from diagnose.cli import main\n"
        f"sys.exit(main([{str(REPO / 'sample_logs' / 'tb' / 'overfit_noisy_labels')!r},"
        " '--no-progress']))\n"
    )
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "healthy" not in proc.stdout and "Traceback" not in proc.stderr
    _one_line_error(proc.stderr, "internal error", "diagnose.detectors.overfit",
                    "failed to import")


@pytest.mark.parametrize("thresholds, needle", [
    ("tail_frac = -3.0", "thresholds.tail_frac' must be a number in (0, 1]"),
    ("nope = 1", "thresholds.nope' is not a parameter of detector 'exploding_loss'"),
    ("tail_frac = 0.1", "thresholds.explode_factor' is missing"),
])
def test_a_rule_file_is_checked_against_its_detector_parameters(
        tmp_path: Path, thresholds: str, needle: str) -> None:
    folder = tmp_path / "rules"
    folder.mkdir()
    (folder / "ZZZ001.toml").write_text(
        'id = "ZZZ001"\nname = "my-explosion"\nstate = "divergence"\n'
        'severity = "error"\ndetector = "exploding_loss"\nsummary = "Mine."\n'
        f"[thresholds]\n{thresholds}\n", encoding="utf-8")
    with pytest.raises(RuleError) as info:
        load_rules([folder])
    assert needle in str(info.value) and "ZZZ001.toml" in str(info.value)
    code, _, err = _cli(str(DIVERGED), "--config",
                        _config(tmp_path, f'rules-dirs = ["{folder}"]'))
    assert code == 2
    _one_line_error(err, "config error", needle)


def test_damaged_input_is_still_a_load_error_not_an_exit_2(tmp_path: Path) -> None:
    """A broken log is the user's data, not our bug: the other run is still judged."""
    bad = tmp_path / "broken"
    bad.mkdir()
    (bad / "events.out.tfevents.1.host").write_bytes(b"\x00garbage" * 10)
    code, out, _ = _cli(str(DIVERGED), str(bad))
    assert code == 1
    assert "divergence" in out


# --- typed parameters -------------------------------------------------------------


def test_every_builtin_threshold_is_typed_and_its_default_valid() -> None:
    """Every built-in rule's thresholds are declared by its detector (the load would fail
    otherwise); pin it here so a new rule cannot skip the declaration."""
    from diagnose.detectors import detector_params

    for rule in load_rules():
        if not rule.per_run:
            continue
        specs = detector_params(rule.detector)
        assert specs is not None, rule.id
        assert set(rule.thresholds) <= set(specs), rule.id
        for key, value in rule.thresholds.items():
            assert specs[key].coerce(value) == value, (rule.id, key)


@pytest.mark.parametrize("param, good, bad", [
    ("FRACTION", [0, 0.5, 1, "0.25"], [-0.01, 1.01, "x", True, float("nan")]),
    ("SHARE", [1e-9, 1.0], [0, 0.0, 2]),
    ("START_SKIP", [0, 0.99], [1, 1.0]),
    ("COUNT", [1, 8, 8.0, "3"], [0, 2.5, -1, float("inf")]),
    ("TAU", [-1, 0, 1], [-1.5, 1.01]),
    ("AT_LEAST_ONE", [1, 1e6], [0.99, 0]),
    ("REGEX", ["a|b", "(^|/)bn"], ["(", 3]),
    ("TAG_PATTERN", ["*relu*", "re:tanh|sigmoid"], ["re:(", 1]),
    ("FLAG", [True, "false"], [1, "yes"]),
])
def test_param_kinds_accept_their_range_and_reject_the_rest(
        param: str, good: list, bad: list) -> None:
    from diagnose.detectors import params

    spec = getattr(params, param)
    for value in good:
        spec.coerce(value)
    for value in bad:
        with pytest.raises(ValueError, match=r"must be|is not a valid"):
            spec.coerce(value)
