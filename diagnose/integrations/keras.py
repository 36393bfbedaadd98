"""Keras 3 (any backend): ``model.fit(..., callbacks=[DiagnoseCallback(stop_on=("divergence",))])``.

It reads the epoch logs ``fit`` hands to every callback - the same names and values that
``History`` and ``CSVLogger`` keep (``loss``, ``val_loss``, ``accuracy``...) with the
epoch as the step - and the optimizer's learning rate, and stops the training with
``model.stop_training``.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from diagnose.integrations import DEFAULT_OVERHEAD, LiveMonitor, MonitorResults, require

_keras = require("keras", "keras", "Keras 3")
if not hasattr(_keras, "ops"):  # Keras 2 (tf.keras) has no backend-neutral ops
    raise ImportError(f"diagnose.integrations.keras needs Keras 3, found Keras "
                      f"{getattr(_keras, '__version__', '2')}: pip install 'diagnose[keras]'")

__all__ = ["DiagnoseCallback"]

# keras is optional and untyped here: the type check sees a plain base class
if TYPE_CHECKING:
    _Callback = object
else:
    _Callback = _keras.callbacks.Callback


class DiagnoseCallback(MonitorResults, _Callback):
    """Judge the epoch logs so far every ``every_n_epochs`` epochs (default: an automatic
    interval costing under 1% of the training time); log new findings; stop the training
    on a finding whose state or rule id is in ``stop_on``.  ``findings`` / ``stopped_by``
    keep what was found.  Other keywords go to :class:`~diagnose.integrations.LiveMonitor`.
    """

    if TYPE_CHECKING:  # set by Keras' Callback (set_params / set_model)
        params: dict[str, Any]
        model: Any

    def __init__(self, stop_on: Iterable[str] = (), every_n_epochs: int | None = None,
                 overhead: float = DEFAULT_OVERHEAD, **options: Any) -> None:
        super().__init__()
        options.setdefault("run_id", "keras")
        self.monitor = LiveMonitor(stop_on=stop_on, every=every_n_epochs,
                                   overhead=overhead, **options)

    def on_train_begin(self, logs: Mapping[str, Any] | None = None) -> None:
        params = {k: v for k, v in dict(self.params or {}).items() if k in ("epochs", "steps")}
        optimizer = getattr(self.model, "optimizer", None)
        lr = getattr(optimizer, "learning_rate", None)
        if lr is not None and not callable(lr):  # a schedule object is not one number
            params["learning_rate"] = _number(lr)
        self.monitor.add_hparams({k: v for k, v in params.items() if v is not None})

    def on_epoch_end(self, epoch: int, logs: Mapping[str, Any] | None = None) -> None:
        self.monitor.add(logs or {}, epoch)
        self.monitor.progress(epoch + 1, (self.params or {}).get("epochs"), "epochs")
        if self.monitor.maybe_check(epoch) is not None:
            self.model.stop_training = True

    def on_train_end(self, logs: Mapping[str, Any] | None = None) -> None:
        self.monitor.end()
        if self.monitor.stopped_by is None:
            self.monitor.check()


def _number(value: Any) -> float | None:
    """A Keras variable (the optimizer's learning rate) as a float, None when it is not."""
    try:
        return float(_keras.ops.convert_to_numpy(value))
    except (TypeError, ValueError):
        return None
