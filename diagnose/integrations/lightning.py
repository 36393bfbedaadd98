"""PyTorch Lightning: ``Trainer(callbacks=[DiagnoseCallback(stop_on=("divergence",))])``.

The callback adds an in-memory logger next to the trainer's own, so it sees exactly the
metrics ``self.log`` sends to TensorBoard or CSV (same names, same steps, the same
``log_every_n_steps``) and the module's hyperparameters; it is removed again when fitting
ends.  It is added at ``on_fit_start``, after the checkpoint folder has been chosen from
the first logger, so it never moves checkpoints.
"""

from __future__ import annotations

import importlib
import math
from argparse import Namespace
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from diagnose.integrations import DEFAULT_OVERHEAD, LiveMonitor, MonitorResults, require

try:
    _pl = importlib.import_module("lightning.pytorch")
except ImportError:  # the older package name, else the hint naming the extra
    _pl = require("pytorch_lightning", "lightning", "PyTorch Lightning")

__all__ = ["DiagnoseCallback"]

# lightning is optional and untyped here: the type check sees plain base classes
if TYPE_CHECKING:
    _Logger = object
    _Callback = object
else:
    _Logger = _pl.loggers.Logger
    _Callback = _pl.Callback


class _MemoryLogger(_Logger):
    """Hands every ``log_metrics``/``log_hyperparams`` call to the monitor."""

    def __init__(self, owner: DiagnoseCallback) -> None:
        super().__init__()
        self._owner = owner

    @property
    def name(self) -> str:
        return "diagnose"

    @property
    def version(self) -> int:
        return 0

    def log_metrics(self, metrics: Mapping[str, float], step: int | None = None) -> None:
        self._owner._logged(metrics, step)

    def log_hyperparams(self, params: Any, *args: Any, **kwargs: Any) -> None:
        if isinstance(params, Namespace):
            params = vars(params)
        if isinstance(params, Mapping):
            self._owner.monitor.add_hparams(params)


class DiagnoseCallback(MonitorResults, _Callback):
    """Judge the metrics logged so far every ``every_n_steps`` global steps (default: an
    automatic interval costing under 1% of the training time); log new findings; stop
    the training (``trainer.should_stop``) on a finding whose state or rule id is in
    ``stop_on``.  ``monitor.findings`` / ``stopped_by`` keep what was found.
    Other keywords go to :class:`~diagnose.integrations.LiveMonitor`."""

    def __init__(self, stop_on: Iterable[str] = (), every_n_steps: int | None = None,
                 overhead: float = DEFAULT_OVERHEAD, **options: Any) -> None:
        super().__init__()
        options.setdefault("run_id", "lightning")
        self.monitor = LiveMonitor(stop_on=stop_on, every=every_n_steps,
                                   overhead=overhead, **options)
        self._logger = _MemoryLogger(self)
        self._trainer: Any = None
        self._planned: int | None = None

    def on_fit_start(self, trainer: Any, pl_module: Any) -> None:
        self._trainer = trainer
        if self._logger not in trainer.loggers:
            trainer.loggers = [*trainer.loggers, self._logger]

    def _logged(self, metrics: Mapping[str, float], step: int | None) -> None:
        trainer = self._trainer
        position = int(step if step is not None else getattr(trainer, "global_step", 0))
        self.monitor.add(metrics, position)
        self.monitor.progress(int(getattr(trainer, "global_step", 0)), self._planned)
        self.monitor.maybe_check(position)

    def _sync_stop(self, trainer: Any) -> None:
        """Stop on every process when any asked (a stop on one rank only would hang DDP);
        a single process just reads its own flag."""
        wanted = self.monitor.stopped_by is not None
        if trainer.strategy.reduce_boolean_decision(wanted, all=False):
            trainer.should_stop = True

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        self._planned = _planned_steps(trainer)

    def on_train_batch_end(self, trainer: Any, *args: Any, **kwargs: Any) -> None:
        self._sync_stop(trainer)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self._sync_stop(trainer)

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        self.monitor.end()
        if self.monitor.stopped_by is None:
            self.monitor.check()  # what the whole run says, logged once
        trainer.loggers = [lg for lg in trainer.loggers if lg is not self._logger]


def _planned_steps(trainer: Any) -> int | None:
    """The optimizer steps the trainer plans (``estimated_stepping_batches``: max_steps,
    or max_epochs x batches, read once the train loader is set up), None where it cannot
    say (an endless run: infinite)."""
    planned = getattr(trainer, "estimated_stepping_batches", None)
    ok = isinstance(planned, (int, float)) and math.isfinite(planned) and planned > 0
    return int(planned) if ok and planned is not None else None
