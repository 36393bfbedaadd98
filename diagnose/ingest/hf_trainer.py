"""Hugging Face ``trainer_state.json``: the Trainer's ``log_history`` as a Run.

``log_history`` is a list of heterogeneous dicts, each ``{**logs, "step": global_step}``:
training entries (``loss``, ``grad_norm``, ``learning_rate``), eval entries (``eval_*``)
and one final summary (``train_runtime``, ``train_loss``...).  The file is written with
``json.dumps`` (``allow_nan=True``), so a diverged run holds bare ``NaN``/``Infinity``
tokens: only stdlib ``json`` is used, because those NaNs are the evidence.

Decisions:

* ``epoch`` (fractional) is kept as the bookkeeping tag ``epoch`` (split ``other``), as
  HF's TensorBoard callback logs ``train/epoch``: it maps steps to epochs; it is never a
  metric.
* The final summary entry's keys are kept under ``summary/<key>`` (``summary/train_loss``,
  ``summary/train_runtime``) with split ``other``: its ``train_loss`` is the mean over the
  whole run, and as a point at the last step it would pose as the train loss's last value.
  The resolver only looks at train/val/test splits, so ``other`` keeps it out of roles.
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from diagnose.hparams import canonicalize, flatten
from diagnose.ingest.csv_logs import (
    MAX_STEP,
    LogReadError,
    SeriesCap,
    finish_long,
    new_run,
    read_text,
)
from diagnose.ingest.jsonl import TooDeep, loads, skip_json_value
from diagnose.run import Run
from diagnose.sources import RunSource, SourceFile

#: Keys of the end-of-training summary entry (``Trainer.train`` -> ``self.log(metrics)``).
SUMMARY_KEYS = frozenset(
    {
        "train_runtime",
        "train_samples_per_second",
        "train_steps_per_second",
        "total_flos",
        "train_loss",
    }
)

#: Top-level TrainerState fields that are hyperparameters of the run.
HPARAM_FIELDS = (
    "train_batch_size",
    "num_train_epochs",
    "max_steps",
    "logging_steps",
    "eval_steps",
    "save_steps",
    "trial_name",
)


def _is_summary(entry: dict[str, Any]) -> bool:
    return "train_runtime" in entry or ("train_loss" in entry and "loss" not in entry)


def _salvage(text: str) -> tuple[list[Any], int]:
    """log_history entries of a damaged file, parsed one object at a time, and how many
    entries were too deeply nested to parse (stepped over, not lost silently)."""
    m = re.search(r'"log_history"\s*:\s*\[', text)
    if not m:
        return [], 0
    decoder = json.JSONDecoder()
    pos = m.end()
    out: list[Any] = []
    deep = 0
    while True:
        while pos < len(text) and text[pos] in " \t\r\n,":
            pos += 1
        if pos >= len(text) or text[pos] != "{":
            return out, deep
        try:
            obj, pos = decoder.raw_decode(text, pos)
        except RecursionError:
            end = skip_json_value(text, pos)
            if end is None:
                return out, deep
            deep += 1
            pos = end
            continue
        except ValueError:
            return out, deep
        out.append(obj)


def load_trainer_state(source: RunSource, file: SourceFile) -> Run:
    """Read one ``trainer_state.json`` into a Run (format ``hf_trainer_state``)."""
    path = Path(file.path)
    text, notes = read_text(path)
    run = new_run(source, file, "hf_trainer_state")
    run.notes.extend(notes)
    try:
        state = loads(text)
    except ValueError as exc:
        history, deep = _salvage(text)
        why = exc.msg if isinstance(exc, json.JSONDecodeError) else str(exc)
        where = f" at line {exc.lineno}" if isinstance(exc, json.JSONDecodeError) else ""
        if not history:
            raise LogReadError(f"invalid JSON: {why}{where}") from exc
        if isinstance(exc, TooDeep):
            skipped = f"; {deep} too-deep entr(ies) skipped" if deep else ""
            run.note(
                "corrupt_record",
                f"JSON nested too deeply (over ~1000 levels): read the {len(history)} log "
                f"entries one by one{skipped}; run-level fields not read",
                path=str(path),
                details={"entries": deep},
            )
        else:
            skipped = f" ({deep} too-deep entr(ies) skipped)" if deep else ""
            run.note(
                "truncated",
                f"file is cut off ({why}{where}); read the {len(history)} complete log "
                f"entries{skipped}; run-level fields not read",
                path=str(path),
            )
        state = {"log_history": history}
    if not isinstance(state, dict) or not isinstance(state.get("log_history"), list):
        raise LogReadError("no log_history list (not a trainer_state.json)")

    raw = _hparams(state)
    if raw:
        run.raw_hparams = raw
        run.hparams = canonicalize(raw)
    unfinished = _still_training(state)
    if unfinished is not None:
        at, planned = unfinished
        run.note_unfinished(
            at, planned,
            f"a checkpoint saved at step {at:,} of {planned:,} planned, with the trainer not "
            f"told to stop: the run went on after this log, so where it ends is not in it",
            path=str(path),
        )

    tags: list[str] = []
    steps: list[int] = []
    values: list[float] = []
    splits: list[str | None] = []
    no_step = bad = 0
    series = SeriesCap()
    for entry in state["log_history"]:
        if not isinstance(entry, dict):
            bad += 1
            continue
        step = entry.get("step")
        if isinstance(step, float) and step.is_integer():
            step = int(step)
        if not isinstance(step, int) or isinstance(step, bool) or not abs(step) < MAX_STEP:
            no_step += 1
            continue
        summary = _is_summary(entry)
        for key, value in entry.items():
            if key == "step":
                continue
            if isinstance(value, bool) or not isinstance(value, (int, float)):
                if value is not None:
                    bad += 1
                continue
            if not series.admit(str(key)):
                continue
            if summary and key in SUMMARY_KEYS:
                tags.append(f"summary/{key}")
                splits.append("other")
            else:
                tags.append(key)
                splits.append(None)
            steps.append(step)
            values.append(float(value))
    if no_step:
        run.note("skipped_rows", f"{no_step} log entries without a step skipped", path=str(path))
    if bad:
        run.note("bad_value", f"{bad} non-numeric log value(s) skipped", path=str(path))
    series.note(run, path)
    if not tags:
        if not state["log_history"]:
            raise LogReadError("log_history is empty")
        raise LogReadError("no numeric values in log_history")
    long = pd.DataFrame(
        {
            "tag": np.array(tags, dtype=object),
            "step": np.array(steps, dtype="int64"),
            "value": np.array(values, dtype="float64"),
            "split": np.array(splits, dtype=object),
        }
    )
    return finish_long(run, long, file, path, equal_is_restart=False, exempt=["epoch"])


def _still_training(state: dict[str, Any]) -> tuple[int, int] | None:
    """(global_step, max_steps) of a checkpoint saved while the trainer was still running.

    The Trainer saves its state in every checkpoint; the last one of a finished run is at
    ``max_steps`` or, stopped early, carries ``should_training_stop`` true, and a state saved
    after ``train()`` returned holds its summary entry.  A state short of ``max_steps``
    whose control says the trainer had not been told to stop (``stateful_callbacks``, written
    by newer transformers; older states say nothing, so nothing is read from them) is a
    snapshot of a run that went on.
    """
    step, planned = state.get("global_step"), state.get("max_steps")
    if not isinstance(step, int) or not isinstance(planned, int) \
            or isinstance(step, bool) or isinstance(planned, bool):
        return None
    callbacks = state.get("stateful_callbacks")
    control = callbacks.get("TrainerControl") if isinstance(callbacks, dict) else None
    args = control.get("args") if isinstance(control, dict) else None
    if not isinstance(args, dict) or args.get("should_training_stop") is not False:
        return None
    history = state.get("log_history")
    if any(isinstance(e, dict) and _is_summary(e) for e in history or ()):
        return None
    return (step, planned) if 0 < step < planned else None


def _hparams(state: dict[str, Any]) -> dict[str, Any]:
    """Run-level fields plus ``trial_params`` (a hyperparameter search's values win)."""
    raw: dict[str, Any] = {
        key: state[key]
        for key in HPARAM_FIELDS
        if key in state and state[key] is not None and not isinstance(state[key], (dict, list))
    }
    trial = state.get("trial_params")
    if isinstance(trial, dict):
        raw.update(flatten(trial))
    return raw
