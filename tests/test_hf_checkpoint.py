"""A trainer_state.json saved in a checkpoint while the HF Trainer was still running says
so, and the underfit rules, which judge where a run ends, leave such a log alone.

The checkpoints come from real CPU trainings of a tiny GPT-2 built from a config (no
download, random tokens), written by transformers' own Trainer."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest

from diagnose import signals
from diagnose.api import analyze, load_run
from diagnose.run import Run

REPO = Path(__file__).resolve().parents[1]


def _load(path: Path) -> Run:
    return load_run(path / "trainer_state.json")


def _train(out: Path, stop_at: int | None = None, callbacks: tuple[object, ...] = ()) -> None:
    torch = pytest.importorskip("torch")
    transformers = pytest.importorskip("transformers")
    pytest.importorskip("accelerate")

    class Tokens(torch.utils.data.Dataset):  # type: ignore[misc]
        def __init__(self, n: int) -> None:
            g = torch.Generator().manual_seed(0)
            self.ids = torch.randint(0, 32, (n, 12), generator=g)

        def __len__(self) -> int:
            return len(self.ids)

        def __getitem__(self, i: int) -> dict[str, object]:
            return {"input_ids": self.ids[i], "labels": self.ids[i]}

    class StopAt(transformers.TrainerCallback):  # type: ignore[misc]
        """Stops the training the way EarlyStoppingCallback does (control flag)."""

        def on_step_end(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            if stop_at is not None and state.global_step >= stop_at:
                control.should_training_stop = True
            return control

    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    config = transformers.GPT2Config(vocab_size=32, n_positions=16, n_embd=16, n_layer=1,
                                     n_head=2)
    args = transformers.TrainingArguments(
        output_dir=str(out), max_steps=30, per_device_train_batch_size=8,
        learning_rate=1e-3, logging_steps=2, save_strategy="steps", save_steps=10,
        report_to=[], use_cpu=True, disable_tqdm=True, seed=0, log_level="error",
    )
    trainer = transformers.Trainer(model=transformers.GPT2LMHeadModel(config), args=args,
                                   train_dataset=Tokens(64), callbacks=[StopAt(), *callbacks])
    with contextlib.redirect_stdout(io.StringIO()):
        trainer.train()


def test_checkpoint_of_a_running_trainer_is_unfinished(tmp_path: Path) -> None:
    _train(tmp_path)
    mid = _load(tmp_path / "checkpoint-10")
    note = next(n for n in mid.notes if n.code == "unfinished")
    assert note.details == {"step": 10, "planned": 30}
    assert "step 10 of 30 planned" in note.message
    assert signals.plan_reached(mid) == pytest.approx(1 / 3)
    # the last checkpoint is the run's end
    end = _load(tmp_path / "checkpoint-30")
    assert not [n for n in end.notes if n.code == "unfinished"]
    assert signals.plan_reached(end) is None


def test_checkpoint_of_a_stopped_trainer_is_finished(tmp_path: Path) -> None:
    """Stopped early (the control flag EarlyStoppingCallback sets), short of max_steps: the
    run ended there, and where it ends is in the log."""
    _train(tmp_path, stop_at=10)
    stopped = _load(tmp_path / "checkpoint-10")
    assert not [n for n in stopped.notes if n.code == "unfinished"]
    assert signals.plan_reached(stopped) is None


def test_the_live_callback_passes_the_plan(tmp_path: Path) -> None:
    """While it trains, the run DiagnoseCallback judges says how far it is (global step of
    max_steps), so the rules that judge where a run ends wait; after training it reads as
    finished."""
    transformers = pytest.importorskip("transformers")
    from diagnose.integrations.transformers import DiagnoseCallback

    cb = DiagnoseCallback(every_n_steps=1000)
    seen: list[dict[str, object]] = []

    class Look(transformers.TrainerCallback):  # type: ignore[misc]
        def on_log(self, args, state, control, **kw):  # type: ignore[no-untyped-def]
            seen.extend(n.details for n in cb.monitor.run().notes if n.code == "unfinished")

    _train(tmp_path, callbacks=(cb, Look()))
    assert seen[0] == {"step": 2, "planned": 30}
    assert not cb.monitor.run().notes


def test_underfit_is_not_judged_on_an_early_checkpoint() -> None:
    """A binary fine-tune's checkpoint at step 500 of 7,500 (a real public log): the level
    it sits at after 7% of its plan is not where it ends, so the underfit rules are not
    applicable; its curves are otherwise judged (and healthy)."""
    run = REPO / "bench" / "real_extra4" / "hf_sentiment_ckpt500_10evals"
    report = analyze(run)
    result = report.runs[0]
    assert {"UND002", "UND003", "UND004"} <= set(result.not_applicable)
    assert report.verdicts == {".": "healthy"}
    assert any(n.code == "unfinished" for n in result.run.notes)
