"""The Lightning callback on real CPU trainings: a diverging one is stopped with the
finding's message, a healthy one runs to the end; the callback sees what ``self.log``
sends to the loggers and leaves the trainer's loggers and checkpoints as they were."""

from __future__ import annotations

import logging
import warnings
from pathlib import Path

import pytest

pl = pytest.importorskip("lightning.pytorch")
torch = pytest.importorskip("torch")

from diagnose.integrations.lightning import DiagnoseCallback  # noqa: E402


class Regressor(pl.LightningModule):
    """A tiny MLP regressor; SGD at ``lr`` (5.0 blows it up within a few steps)."""

    def __init__(self, lr: float) -> None:
        super().__init__()
        self.save_hyperparameters()
        self.net = torch.nn.Sequential(torch.nn.Linear(8, 16), torch.nn.ReLU(),
                                       torch.nn.Linear(16, 1))

    def training_step(self, batch: tuple, _: int) -> torch.Tensor:
        x, y = batch
        loss = torch.nn.functional.mse_loss(self.net(x), y)
        self.log("train_loss", loss)
        return loss

    def validation_step(self, batch: tuple, _: int) -> None:
        x, y = batch
        self.log("val_loss", torch.nn.functional.mse_loss(self.net(x), y))

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.SGD(self.parameters(), lr=self.hparams.lr)


def _fit(tmp_path: Path, lr: float, callback: DiagnoseCallback, epochs: int,
         **trainer: object) -> pl.Trainer:
    torch.manual_seed(0)
    g = torch.Generator().manual_seed(0)
    x = torch.randn(256, 8, generator=g)
    data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
    train = torch.utils.data.DataLoader(data, batch_size=32)
    val = torch.utils.data.DataLoader(data, batch_size=128)
    options = {"logger": pl.loggers.CSVLogger(tmp_path), "enable_checkpointing": False,
               **trainer}
    t = pl.Trainer(max_epochs=epochs, callbacks=[callback], enable_progress_bar=False,
                   enable_model_summary=False, log_every_n_steps=1,
                   default_root_dir=tmp_path, **options)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t.fit(Regressor(lr), train, val)
    return t


def test_divergence_stops_the_training(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cb = DiagnoseCallback(stop_on=("divergence",), every_n_steps=2)
    with caplog.at_level(logging.WARNING, logger="diagnose"):
        trainer = _fit(tmp_path, lr=5.0, callback=cb, epochs=20)
    assert cb.stopped_by is not None and cb.stopped_by.state == "divergence"
    assert trainer.global_step < 40  # 20 epochs would be 160 steps
    stop_lines = [r.getMessage() for r in caplog.records if "stopping" in r.getMessage()]
    assert len(stop_lines) == 1 and cb.stopped_by.message in stop_lines[0]
    # the module's hyperparameters reached the recommender: a concrete lower LR
    rec = next(r for r in cb.stopped_by.recommendations if r.hyperparameter == "learning_rate")
    assert rec.current == 5.0 and 0 < rec.proposed < 5.0
    # the same metrics the CSV logger wrote; our logger is gone after fit
    assert [type(lg).__name__ for lg in trainer.loggers] == ["CSVLogger"]
    logged = cb.monitor.run().scalars
    assert {"train_loss", "val_loss"} <= set(logged["tag"].astype(str))


def test_each_finding_is_logged_once(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    cb = DiagnoseCallback(every_n_steps=1, min_severity="info")
    with caplog.at_level(logging.INFO, logger="diagnose"):
        _fit(tmp_path, lr=5.0, callback=cb, epochs=3)
    assert cb.stopped_by is None  # no stop_on: it only reports
    keys = [(f.rule, f.metric) for f in cb.findings]
    assert len(keys) == len(set(keys)) and any(f.state == "divergence" for f in cb.findings)
    assert cb.monitor.checks > 10
    messages = [r.getMessage() for r in caplog.records]
    for f in cb.findings:  # judged 10+ times, said once
        assert sum(f.message in m for m in messages) == 1, f.rule


def test_healthy_run_is_not_stopped_and_checkpoints_stay(tmp_path: Path) -> None:
    cb = DiagnoseCallback(stop_on=("divergence",))  # the default, automatic interval
    # SGD 0.05 converges in these 3 epochs; at 0.02 the loss still holds 35% of its start
    # and falls steeply at the end, which UND004 rightly reads as too few steps
    trainer = _fit(tmp_path, lr=0.05, callback=cb, epochs=3, logger=False,
                   enable_checkpointing=True)
    assert cb.stopped_by is None and trainer.current_epoch == 3
    assert not [f for f in cb.findings if f.severity != "info"]
    assert cb.monitor.checks >= 1  # at least the judgement at the end of fit
    # with no logger of its own, the trainer still checkpoints where it always does
    assert list((tmp_path / "checkpoints").glob("*.ckpt"))
    assert trainer.loggers == []


def test_the_plan_reaches_the_judged_run(tmp_path: Path) -> None:
    """While it trains, the judged run says how far it is (global step of the planned
    optimizer steps), so the rules that judge where a run ends wait; after fit it reads as
    finished."""
    cb = DiagnoseCallback(every_n_steps=1000)
    seen: list[dict[str, object]] = []

    class Look(pl.Callback):  # type: ignore[misc]
        def on_train_batch_end(self, trainer: pl.Trainer, *args: object, **kw: object) -> None:
            seen.extend(n.details for n in cb.monitor.run().notes if n.code == "unfinished")

    torch.manual_seed(0)
    x = torch.randn(64, 8, generator=torch.Generator().manual_seed(0))
    data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
    t = pl.Trainer(max_epochs=2, callbacks=[cb, Look()], enable_progress_bar=False,
                   enable_model_summary=False, log_every_n_steps=1, logger=False,
                   enable_checkpointing=False, default_root_dir=tmp_path)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        t.fit(Regressor(0.05), torch.utils.data.DataLoader(data, batch_size=32))
    assert {"step": 1, "planned": 4} in seen  # 2 epochs x 2 batches
    assert not cb.monitor.run().notes
