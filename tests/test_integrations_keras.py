"""The Keras 3 callback on real CPU trainings with the torch backend: a diverging one is
stopped at the epoch where the loss became NaN, a healthy one runs to the end."""

from __future__ import annotations

import logging
import os

import numpy as np
import pytest

os.environ.setdefault("KERAS_BACKEND", "torch")
keras = pytest.importorskip("keras")

from diagnose.integrations.keras import DiagnoseCallback  # noqa: E402


def _fit(lr: float, callback: DiagnoseCallback, epochs: int) -> keras.callbacks.History:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(256, 8)).astype("float32")
    y = (x.sum(1) > 0).astype("int32")
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(16, activation="relu"),
                              keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(lr), metrics=["accuracy"],
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    return model.fit(x, y, validation_split=0.25, epochs=epochs, batch_size=64, verbose=0,
                     callbacks=[callback])


def test_backend_is_torch() -> None:
    assert keras.backend.backend() == "torch"


def test_divergence_stops_the_training(caplog: pytest.LogCaptureFixture) -> None:
    cb = DiagnoseCallback(stop_on=("divergence",), every_n_epochs=1)
    with caplog.at_level(logging.WARNING, logger="diagnose"):
        history = _fit(lr=1e4, callback=cb, epochs=30)
    assert cb.stopped_by is not None and cb.stopped_by.state == "divergence"
    assert cb.stopped_by.metric == "loss"
    assert len(history.history["loss"]) <= 3  # stopped right after the blow-up, not at 30
    stop = [r.getMessage() for r in caplog.records if "stopping the training" in r.getMessage()]
    assert len(stop) == 1 and cb.stopped_by.message in stop[0]
    rec = next(r for r in cb.stopped_by.recommendations if r.hyperparameter == "learning_rate")
    assert rec.current == pytest.approx(1e4) and rec.proposed < 1e4
    # the epoch logs fit hands to History, under the same names
    tags = set(cb.monitor.run().scalars["tag"].astype(str))
    assert set(history.history) <= tags


def test_healthy_run_goes_to_the_end() -> None:
    cb = DiagnoseCallback(stop_on=("divergence",))  # automatic interval
    history = _fit(lr=0.05, callback=cb, epochs=4)
    assert cb.stopped_by is None and len(history.history["loss"]) == 4
    assert not [f for f in cb.findings if f.severity == "error"]
    assert cb.monitor.checks >= 1


def test_the_plan_reaches_the_judged_run() -> None:
    """While it trains, the judged run says how far it is (epochs done of ``epochs``), so
    the rules that judge where a run ends wait; after fit it reads as finished."""
    cb = DiagnoseCallback(every_n_epochs=100)
    seen: list[dict[str, object]] = []

    class Look(keras.callbacks.Callback):  # type: ignore[misc]
        def on_epoch_end(self, epoch: int, logs: object = None) -> None:
            seen.extend(n.details for n in cb.monitor.run().notes if n.code == "unfinished")

    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 8)).astype("float32")
    y = (x.sum(1) > 0).astype("int32")
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(2)])
    model.compile(optimizer=keras.optimizers.SGD(0.05),
                  loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True))
    model.fit(x, y, epochs=3, batch_size=32, verbose=0, callbacks=[cb, Look()])
    assert seen == [{"step": 1, "planned": 3}, {"step": 2, "planned": 3}]
    assert not cb.monitor.run().notes
