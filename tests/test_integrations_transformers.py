"""The HF Trainer callback on real CPU trainings of a tiny GPT-2 built from a config
(no download, random tokens): a diverging one is stopped, a healthy one is not."""

from __future__ import annotations

import contextlib
import io
import logging
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")
transformers = pytest.importorskip("transformers")
pytest.importorskip("accelerate")

from diagnose.integrations.transformers import DiagnoseCallback  # noqa: E402


class Tokens(torch.utils.data.Dataset):
    """Random token sequences over a 32-token vocabulary (labels = inputs: LM loss)."""

    def __init__(self, n: int, seed: int) -> None:
        g = torch.Generator().manual_seed(seed)
        self.ids = torch.randint(0, 32, (n, 12), generator=g)

    def __len__(self) -> int:
        return len(self.ids)

    def __getitem__(self, i: int) -> dict[str, torch.Tensor]:
        return {"input_ids": self.ids[i], "labels": self.ids[i]}


def _train(tmp_path: Path, lr: float, callback: DiagnoseCallback, steps: int,
           ) -> transformers.Trainer:
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1,
                                     n_head=2)
    args = transformers.TrainingArguments(
        output_dir=str(tmp_path), max_steps=steps, per_device_train_batch_size=8,
        learning_rate=lr, logging_steps=1, eval_strategy="steps", eval_steps=10,
        report_to=[], save_strategy="no", use_cpu=True, disable_tqdm=True,
        max_grad_norm=1e9, seed=0, lr_scheduler_type="constant", log_level="error",
    )
    trainer = transformers.Trainer(model=transformers.GPT2LMHeadModel(config), args=args,
                                   train_dataset=Tokens(128, 0), eval_dataset=Tokens(16, 1),
                                   callbacks=[callback])
    with contextlib.redirect_stdout(io.StringIO()):  # the Trainer prints each log entry
        trainer.train()
    return trainer


@pytest.mark.slow
def test_divergence_stops_the_training(tmp_path: Path,
                                       caplog: pytest.LogCaptureFixture) -> None:
    cb = DiagnoseCallback(stop_on=("divergence",), every_n_steps=2)
    with caplog.at_level(logging.WARNING, logger="diagnose"):
        trainer = _train(tmp_path, lr=3.0, callback=cb, steps=60)
    assert cb.stopped_by is not None and cb.stopped_by.state == "divergence"
    assert trainer.state.global_step < 60
    stop = [r.getMessage() for r in caplog.records if "stopping the training" in r.getMessage()]
    assert len(stop) == 1 and cb.stopped_by.message in stop[0]
    # the TrainingArguments reached the recommender
    rec = next(r for r in cb.stopped_by.recommendations if r.hyperparameter == "learning_rate")
    assert rec.current == 3.0 and rec.proposed < 3.0
    # the entries trainer_state.json keeps in log_history, under their names
    tags = set(cb.monitor.run().scalars["tag"].astype(str))
    assert {"loss", "grad_norm", "learning_rate"} <= tags
    # eval_loss is there once an evaluation ran (every 10 steps); a blow-up caught from the
    # train loss alone can stop the training before the first one
    assert ("eval_loss" in tags) == (trainer.state.global_step >= 10)


def test_healthy_run_goes_to_the_end(tmp_path: Path) -> None:
    cb = DiagnoseCallback(stop_on=("divergence",))  # automatic interval
    trainer = _train(tmp_path, lr=1e-3, callback=cb, steps=10)
    assert cb.stopped_by is None and trainer.state.global_step == 10
    assert not [f for f in cb.findings if f.state == "divergence"]
    # the end-of-training summary entry is not a point of the train loss
    assert "train_loss" not in set(cb.monitor.run().scalars["tag"].astype(str))
