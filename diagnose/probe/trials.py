"""Running trials: subprocesses, one per GPU at a time, sequential on the CPU.

A trial that crashes, hangs past its timeout or writes no logs is reported as such and
the others go on.  Each trial's logs are read with our own ingest and judged with our
own rules, exactly like a user's run.
"""

from __future__ import annotations

import contextlib
import os
import queue
import shutil
import signal
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from diagnose.config import Config
from diagnose.findings import RunResult


@dataclass
class TrialSpec:
    """One subprocess to run: which arm, which seed, which argv, where it logs."""

    arm: str  # "control" or a candidate key
    seed: int
    argv: list[str]
    logdir: Path
    params: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrialOutcome:
    """What happened to one trial and what our analyzer says about its logs."""

    spec: TrialSpec
    status: str  # ok | crashed | timeout | no_logs | unreadable
    returncode: int | None
    wall_s: float
    device: str
    message: str = ""  # one line: what happened, ending with the error's last line whole
    result: RunResult | None = None
    error: str = ""  # the trial's output when it failed, whole (up to ERROR_CHARS)


def visible_gpus() -> list[str]:
    """GPU indices this process may use, without importing torch when it can be avoided."""
    env = os.environ.get("CUDA_VISIBLE_DEVICES")
    if env is not None:
        ids = [g.strip() for g in env.split(",") if g.strip() and g.strip() != "-1"]
        return ids
    smi = shutil.which("nvidia-smi")
    if smi:
        try:
            out = subprocess.run(
                [smi, "--query-gpu=index", "--format=csv,noheader"],
                capture_output=True, text=True, timeout=20, check=False,
            )
            ids = [line.strip() for line in out.stdout.splitlines() if line.strip().isdigit()]
            if out.returncode == 0 and ids:
                return ids
        except (OSError, subprocess.SubprocessError):
            pass
    try:
        import torch

        return [str(i) for i in range(torch.cuda.device_count())]
    except Exception:
        return []


#: A failed trial's output is kept whole up to this many characters (its end when longer:
#: a traceback's last lines say what broke).
ERROR_CHARS = 20000


def _last_line(text: str) -> str:
    kept = [line.strip() for line in text.strip().splitlines() if line.strip()]
    return kept[-1] if kept else "(no output)"


def _whole(text: str) -> str:
    text = text.strip()
    if len(text) <= ERROR_CHARS:
        return text
    return f"[first {len(text) - ERROR_CHARS} characters left out]\n" + text[-ERROR_CHARS:]


def judge_logdir(logdir: Path, config: Config) -> RunResult | None:
    """Read a trial's logs with our ingest and judge them like a user's run (the
    pipeline's per-run step); None when nothing readable."""
    from diagnose.discover import discover
    from diagnose.ingest import IngestError, load_run
    from diagnose.pipeline import judge_run

    sources, _errors = discover([str(logdir)])
    for source in sources:
        try:
            run = load_run(source)
        except IngestError:
            continue
        return judge_run(run, config, config.hparams)
    return None


def run_one(spec: TrialSpec, gpu: str | None, timeout: float, config: Config) -> TrialOutcome:
    """Run one trial to completion or timeout, then judge its logs."""
    env = dict(os.environ)
    env["CUDA_VISIBLE_DEVICES"] = gpu if gpu is not None else ""
    env.setdefault("PYTHONUNBUFFERED", "1")
    spec.logdir.mkdir(parents=True, exist_ok=True)
    device = f"cuda:{gpu}" if gpu is not None else "cpu"
    start = time.monotonic()
    log_path = spec.logdir.parent / f"{spec.logdir.name}.log"
    try:
        with open(log_path, "w", encoding="utf-8", errors="replace") as log:
            proc = subprocess.Popen(
                spec.argv, stdout=log, stderr=subprocess.STDOUT, env=env,
                start_new_session=True,
            )
            try:
                code = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                _kill_group(proc)
                partial = log_path.read_text(encoding="utf-8", errors="replace")
                return TrialOutcome(
                    spec, "timeout", None, time.monotonic() - start, device,
                    f"killed after {timeout:.0f} s", error=_whole(partial),
                )
    except OSError as exc:
        return TrialOutcome(spec, "crashed", None, time.monotonic() - start, device,
                            f"could not start: {exc}", error=f"could not start: {exc}")
    wall = time.monotonic() - start
    output = log_path.read_text(encoding="utf-8", errors="replace")
    if code != 0:
        return TrialOutcome(spec, "crashed", code, wall, device,
                            f"exit code {code}: {_last_line(output)}", error=_whole(output))
    result = judge_logdir(spec.logdir, config)
    if result is None:
        return TrialOutcome(spec, "no_logs", code, wall, device,
                            f"exited 0 but wrote no readable logs under {spec.logdir}")
    return TrialOutcome(spec, "ok", code, wall, device, "", result)


def _kill_group(proc: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(timeout=5)
    except (ProcessLookupError, subprocess.TimeoutExpired, PermissionError):
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


def run_trials(
    specs: list[TrialSpec],
    gpus: list[str],
    timeout: float,
    config: Config,
    on_done: Any = None,
) -> list[TrialOutcome]:
    """Run every trial: one worker per GPU in parallel, or one CPU worker in sequence."""
    todo: queue.Queue[TrialSpec] = queue.Queue()
    for spec in specs:
        todo.put(spec)
    outcomes: list[TrialOutcome] = []
    lock = threading.Lock()

    def worker(gpu: str | None) -> None:
        while True:
            try:
                spec = todo.get_nowait()
            except queue.Empty:
                return
            outcome = run_one(spec, gpu, timeout, config)
            with lock:
                outcomes.append(outcome)
                if on_done is not None:
                    on_done(outcome)

    slots: list[str | None] = list(gpus) if gpus else [None]
    threads = [threading.Thread(target=worker, args=(g,), daemon=True) for g in slots]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    order = {id(s): i for i, s in enumerate(specs)}
    outcomes.sort(key=lambda o: order[id(o.spec)])
    return outcomes
