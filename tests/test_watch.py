"""``diagnose watch`` on logs written by the real writers while it watches: torch's
SummaryWriter (in a background thread for the end-to-end test) and Lightning's CSVLogger.
"""

from __future__ import annotations

import io
import json
import math
import shlex
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from diagnose.api import Judge
from diagnose.cli import main
from diagnose.config import Config
from diagnose.watch import Watcher, run_watch_command

SummaryWriter = pytest.importorskip("torch.utils.tensorboard").SummaryWriter
REPO = Path(__file__).resolve().parents[1]


def _loss(step: int, blow_up_at: int | None) -> float:
    if blow_up_at is not None and step >= blow_up_at:
        return 10.0 ** min(step - blow_up_at + 1, 30)
    return 2.0 * math.exp(-step / 15) + 0.05 * math.sin(step)


def _write(writer: SummaryWriter, steps: range, blow_up_at: int | None = None,
           pause: float = 0.0) -> None:
    for s in steps:
        writer.add_scalar("train/loss", _loss(s, blow_up_at), s)
        writer.flush()
        if pause:
            time.sleep(pause)


def _watcher(tmp_path: Path, **kw: object) -> Watcher:
    return Watcher([str(tmp_path)], Judge(Config()), **kw)  # type: ignore[arg-type]


def test_rejudges_a_growing_run_and_finds_new_runs(tmp_path: Path) -> None:
    writer = SummaryWriter(str(tmp_path / "a"))
    _write(writer, range(40))
    watcher = _watcher(tmp_path)
    first = watcher.poll()
    assert not [f for _, f in first if f.state == "divergence"]
    _write(writer, range(40, 60), blow_up_at=40)  # the run grows and blows up
    second = watcher.poll()
    assert {f.state for _, f in second} >= {"divergence"}
    assert all(r.run.run_id == "a" for r, _ in second)
    assert watcher.poll() == []  # nothing changed: not judged again, nothing said again
    _write(writer, range(60, 70), blow_up_at=40)
    assert watcher.poll() == []  # judged again; the same findings are not new
    writer.close()
    other = SummaryWriter(str(tmp_path / "b"))  # a new run appears
    _write(other, range(30), blow_up_at=20)
    other.close()
    third = watcher.poll()
    assert third and {r.run.run_id for r, _ in third} == {"b"}


def _partial_record(tmp_path: Path) -> bytes:
    """The first record of a real event file, cut 3 bytes short: a write in progress."""
    w = SummaryWriter(str(tmp_path / "donor"))
    w.close()
    data = next((tmp_path / "donor").glob("events.*")).read_bytes()
    length = int.from_bytes(data[:8], "little")
    return data[: 8 + 4 + length + 4 - 3]


def test_a_cut_off_last_record_is_not_damage_while_the_file_is_fresh(tmp_path: Path) -> None:
    partial = _partial_record(tmp_path)
    writer = SummaryWriter(str(tmp_path / "runs" / "live"))
    _write(writer, range(30))
    writer.close()
    event = next((tmp_path / "runs" / "live").glob("events.*"))
    with event.open("ab") as fh:
        fh.write(partial)
    now = [time.time()]
    watcher = Watcher([str(tmp_path / "runs")], Judge(Config()), min_severity="info",
                      settle=30.0, clock=lambda: now[0])
    assert "LOG002" not in {f.rule for _, f in watcher.poll()}
    assert "LOG002" not in {f.rule for _, f in watcher.poll()}  # still fresh
    now[0] += 60  # the file has not changed for a minute: the cut is damage
    late = watcher.poll()
    assert [f.rule for _, f in late if f.rule == "LOG002"] == ["LOG002"]
    assert watcher.poll() == []


def test_appended_csv_rows_and_a_half_written_line(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(str(tmp_path), name="csv", version=0)
    for s in range(30):
        logger.log_metrics({"train_loss": _loss(s, None)}, step=s)
    logger.save()
    metrics = tmp_path / "csv" / "version_0" / "metrics.csv"
    with metrics.open("a") as fh:  # the next row, half written: "30,1e" of "30,1e+30\n"
        fh.write("30,1e")
    watcher = _watcher(tmp_path, min_severity="info")
    first = {f.rule for _, f in watcher.poll()}
    assert not first & {"LOG002", "DIV001", "DIV002", "DIV003"}
    stale = _watcher(tmp_path, min_severity="info", clock=lambda: time.time() + 60)
    assert "LOG002" in {f.rule for _, f in stale.poll()}  # the same cut, left for a minute
    metrics.write_text(metrics.read_text()[: -len("30,1e")])  # the writer's own rows only
    for s in range(30, 45):
        logger.log_metrics({"train_loss": _loss(s, 30)}, step=s)
    logger.save()
    later = watcher.poll()
    assert "divergence" in {f.state for _, f in later}
    assert "LOG002" not in {f.rule for _, f in later}


HOOK = ("import json, sys; from pathlib import Path; "
        "Path(sys.argv[1]).open('a').write(json.dumps([sys.argv[2:], sys.stdin.read()]) + '\\n')")


def test_on_finding_gets_the_finding_on_stdin_without_a_shell(tmp_path: Path) -> None:
    got = tmp_path / "hook.jsonl"
    cmd = shlex.join([sys.executable, "-c", HOOK, str(got)]) + " '$(touch PWNED)' ;rm"
    out = io.StringIO()
    run = str(REPO / "sample_logs" / "tb" / "divergence_exploding_loss")
    code = run_watch_command([run, "--max-iterations", "1", "--format", "json",
                              "--on-finding", cmd], out=out)
    assert code == 1
    printed = [json.loads(line) for line in out.getvalue().splitlines()]
    assert printed and {p["state"] for p in printed} >= {"divergence"}
    calls = [json.loads(line) for line in got.read_text().splitlines()]
    assert [args for args, _ in calls] == [["$(touch PWNED)", ";rm"]] * len(printed)
    assert [json.loads(stdin) for _, stdin in calls] == printed
    assert not list(Path.cwd().glob("PWNED")) and not (tmp_path / "PWNED").exists()


def test_a_failing_hook_is_one_line_and_the_watch_goes_on(
        tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    run = str(REPO / "sample_logs" / "tb" / "divergence_exploding_loss")
    code = main(["watch", run, "--max-iterations", "2", "--interval", "0.01",
                 "--on-finding", str(tmp_path / "no-such-hook")])
    err = capsys.readouterr()
    assert code == 1 and ": ERROR DIV00" in err.out  # every finding still printed
    lines = err.err.splitlines()
    assert lines and all(ln.startswith("diagnose watch: --on-finding: cannot run") for ln in lines)


@pytest.mark.parametrize("args", [["--interval", "0"], ["--max-iterations", "0"],
                                  ["--timeout", "-1"], ["--on-finding", " "]])
def test_usage_errors_exit_2(tmp_path: Path, args: list[str],
                             capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watch", str(tmp_path), *args]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("diagnose: error: ")


@pytest.mark.slow
def test_end_to_end_while_a_summary_writer_writes(tmp_path: Path) -> None:
    """The command as a process, following a run that a background thread writes."""
    got = tmp_path / "hook.jsonl"
    hook = shlex.join([sys.executable, "-c", HOOK, str(got)])
    logs = tmp_path / "logs"
    watch = subprocess.Popen(
        [sys.executable, "-m", "diagnose", "watch", str(logs), "--interval", "0.2",
         "--timeout", "9", "--format", "json", "--on-finding", hook],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )

    def train() -> None:
        writer = SummaryWriter(str(logs / "run1"))
        _write(writer, range(40), pause=0.05)
        _write(writer, range(40, 70), blow_up_at=40, pause=0.05)
        writer.close()

    thread = threading.Thread(target=train)
    time.sleep(1.0)  # the watch starts before the run exists
    thread.start()
    thread.join()
    out, err = watch.communicate(timeout=60)
    assert watch.returncode == 1, err
    printed = [json.loads(line) for line in out.splitlines()]
    keys = [(p["run"], p["rule"], p["metric"]) for p in printed]
    assert len(keys) == len(set(keys))  # each finding once
    assert {p["state"] for p in printed} >= {"divergence"} and {k[0] for k in keys} == {"run1"}
    assert [json.loads(stdin) for _, stdin in map(json.loads, got.read_text().splitlines())] \
        == printed
    assert "Traceback" not in err and "LOG002" not in out


def test_nothing_to_read_is_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["watch", str(tmp_path), "--max-iterations", "2", "--interval", "0.01"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"diagnose watch: no run could be read under {tmp_path}"]


def test_names_from_the_logs_are_escaped(tmp_path: Path) -> None:
    writer = SummaryWriter(str(tmp_path / "run\x1b[31mred"))
    writer.add_scalar("loss\x1b]0;owned\x07", 1.0, 0)
    _write(writer, range(40), blow_up_at=20)
    writer.close()
    out = io.StringIO()
    assert run_watch_command([str(tmp_path), "--max-iterations", "1"], out=out) == 1
    text = out.getvalue()
    assert "run\\x1b[31mred: ERROR" in text and "\x1b" not in text and "\x07" not in text
