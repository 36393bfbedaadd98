"""HuggingFace Trainer: ``Trainer(..., callbacks=[DiagnoseCallback(stop_on=("divergence",))])``.

It reads each ``on_log`` entry - the entries ``trainer_state.json`` keeps in
``log_history`` (``loss``, ``learning_rate``, ``grad_norm``, ``eval_loss``...) at
``state.global_step`` - and the TrainingArguments' hyperparameters, and stops the
training with ``control.should_training_stop``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from diagnose.integrations import DEFAULT_OVERHEAD, LiveMonitor, MonitorResults, require

_tf = require("transformers", "transformers", "HuggingFace transformers")

__all__ = ["DiagnoseCallback"]

# transformers is optional and untyped here: the type check sees a plain base class
if TYPE_CHECKING:
    _TrainerCallback = object
else:
    _TrainerCallback = _tf.TrainerCallback

#: TrainingArguments fields passed to the recommender as the run's hyperparameters.
HPARAM_ARGS = (
    "learning_rate",
    "weight_decay",
    "per_device_train_batch_size",
    "gradient_accumulation_steps",
    "max_grad_norm",
    "num_train_epochs",
    "max_steps",
    "warmup_steps",
    "warmup_ratio",
    "lr_scheduler_type",
    "seed",
)


class DiagnoseCallback(MonitorResults, _TrainerCallback):
    """Judge the Trainer's log entries so far every ``every_n_steps`` global steps
    (default: an automatic interval costing under 1% of the training time); log new
    findings; stop the training on a finding whose state or rule id is in ``stop_on``.
    ``findings`` / ``stopped_by`` keep what was found.  Other keywords go to
    :class:`~diagnose.integrations.LiveMonitor`."""

    def __init__(self, stop_on: Iterable[str] = (), every_n_steps: int | None = None,
                 overhead: float = DEFAULT_OVERHEAD, **options: Any) -> None:
        options.setdefault("run_id", "transformers")
        self.monitor = LiveMonitor(stop_on=stop_on, every=every_n_steps,
                                   overhead=overhead, **options)

    def on_train_begin(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        params = {k: getattr(args, k, None) for k in HPARAM_ARGS}
        max_steps = params.get("max_steps")
        if max_steps is not None and max_steps <= 0:
            params.pop("max_steps")
        self.monitor.add_hparams({k: v for k, v in params.items() if v is not None})

    def on_log(self, args: Any, state: Any, control: Any,
               logs: Mapping[str, Any] | None = None, **kwargs: Any) -> None:
        logs = dict(logs or {})
        # the end-of-training summary (train_runtime, mean train_loss) is not a curve point
        if "train_runtime" in logs or ("train_loss" in logs and "loss" not in logs):
            return
        step = int(state.global_step)
        self.monitor.add(logs, step)
        self.monitor.progress(step, getattr(state, "max_steps", None))
        if self.monitor.maybe_check(step) is not None:
            control.should_training_stop = True

    def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
        self.monitor.end()
        if self.monitor.stopped_by is None:
            self.monitor.check()
