"""What the training callbacks cost at their default (automatic) interval.

Trains each test model (the ones in tests/test_integrations_*.py) for about
``--seconds`` of wall time twice, without and with ``DiagnoseCallback()``, and prints
per framework: steps, wall time, the judgements run during training and their seconds,
and that share of the training's wall time (the one judgement at the end of fit is shown
apart: it runs once, after the last step).  Run from the repo root:
``python bench/live_overhead.py [--seconds 30] [--only lightning,keras,transformers]``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import logging
import os
import sys
import tempfile
import time
import warnings
from pathlib import Path

os.environ.setdefault("KERAS_BACKEND", "torch")
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
logging.getLogger("diagnose").setLevel(logging.CRITICAL)
warnings.filterwarnings("ignore")


def lightning(seconds: float, callback: object | None) -> tuple[int, float]:
    import lightning.pytorch as pl
    import torch
    from test_integrations_lightning import Regressor

    g = torch.Generator().manual_seed(0)
    x = torch.randn(4096, 8, generator=g)
    data = torch.utils.data.TensorDataset(x, x.sum(1, keepdim=True))
    loader = torch.utils.data.DataLoader(data, batch_size=32)
    with tempfile.TemporaryDirectory() as tmp:
        t = pl.Trainer(max_time={"seconds": seconds}, max_epochs=-1, logger=False,
                       callbacks=[callback] if callback else [], enable_progress_bar=False,
                       enable_model_summary=False, enable_checkpointing=False,
                       log_every_n_steps=1, default_root_dir=tmp)
        t0 = time.perf_counter()
        t.fit(Regressor(0.01), loader)
        return t.global_step, time.perf_counter() - t0


def keras(seconds: float, callback: object | None) -> tuple[int, float]:
    import keras as k
    import numpy as np

    class Budget(k.callbacks.Callback):
        def on_epoch_end(self, epoch: int, logs: object = None) -> None:
            if time.perf_counter() - t0 > seconds:
                self.model.stop_training = True

    rng = np.random.default_rng(0)
    x = rng.normal(size=(2048, 8)).astype("float32")
    y = (x.sum(1) > 0).astype("int32")
    model = k.Sequential([k.Input((8,)), k.layers.Dense(16, activation="relu"),
                          k.layers.Dense(2)])
    model.compile(optimizer=k.optimizers.SGD(0.05), metrics=["accuracy"],
                  loss=k.losses.SparseCategoricalCrossentropy(from_logits=True))
    t0 = time.perf_counter()
    h = model.fit(x, y, validation_split=0.25, epochs=10_000, batch_size=64, verbose=0,
                  callbacks=[Budget(), *([callback] if callback else [])])
    return len(h.history["loss"]) * 24, time.perf_counter() - t0


def transformers(seconds: float, callback: object | None) -> tuple[int, float]:
    import torch
    import transformers as tf
    from test_integrations_transformers import Tokens

    class Budget(tf.TrainerCallback):
        def on_step_end(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            if time.perf_counter() - t0 > seconds:
                control.should_training_stop = True

    tf.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = tf.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1, n_head=2)
    with tempfile.TemporaryDirectory() as tmp:
        args = tf.TrainingArguments(output_dir=tmp, max_steps=100_000,
                                    per_device_train_batch_size=8, learning_rate=1e-3,
                                    logging_steps=1, report_to=[], save_strategy="no",
                                    use_cpu=True, disable_tqdm=True, log_level="error")
        trainer = tf.Trainer(model=tf.GPT2LMHeadModel(config), args=args,
                             train_dataset=Tokens(4096, 0),
                             callbacks=[Budget(), *([callback] if callback else [])])
        t0 = time.perf_counter()
        with contextlib.redirect_stdout(io.StringIO()):
            trainer.train()
        return trainer.state.global_step, time.perf_counter() - t0


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--seconds", type=float, default=30.0)
    p.add_argument("--only", default="lightning,keras,transformers")
    args = p.parse_args()
    print(f"{'framework':<13} {'steps':>6} {'s/step':>8} {'judged':>6} {'in-training s':>13} "
          f"{'share':>7} {'final s':>7} {'no-callback s/step':>18}")
    for name in args.only.split(","):
        module = __import__(f"diagnose.integrations.{name}", fromlist=["DiagnoseCallback"])
        bare_steps, bare_wall = globals()[name](args.seconds, None)
        cb = module.DiagnoseCallback()
        steps, wall = globals()[name](args.seconds, cb)
        costs = cb.monitor.costs
        during = sum(costs[:-1])  # the last judgement is the one at the end of fit
        print(f"{name:<13} {steps:>6} {wall / steps:>8.4f} {len(costs) - 1:>6} "
              f"{during:>13.3f} {during / wall:>7.2%} {costs[-1]:>7.3f} "
              f"{bare_wall / bare_steps:>18.4f}")


if __name__ == "__main__":
    main()
