"""The class count C behind every chance-level test, from each source a real log carries
(Lightning's hparams.yaml, an HF config.json, a YOLO data.yaml, per-class columns, the
curves), with the source named; and the key metric that the report's best step and the
stop-early advice share (never a majority-class accuracy).

Files come from the real writers where one runs here (Lightning's CSVLogger,
transformers' ``save_pretrained``) or from the shared real logs; a data.yaml is written
in the two layouts Roboflow and Ultralytics use (Ultralytics itself is not installed).
"""

from __future__ import annotations

import math
import shutil
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from shared_data import require, shared

from diagnose import discover, engine, ingest, signals
from diagnose.metrics import never_leaves_start, resolve_roles
from diagnose.recommend import recommend
from diagnose.run import Run, make_scalars


def load(folder: Path) -> Run:
    sources, errors = discover.discover([str(folder)])
    assert len(sources) == 1 and not errors, (sources, errors)
    return ingest.load_run(sources[0])


def count(run: Run) -> signals.ClassCount | None:
    return signals.class_count(run, resolve_roles(run.scalars))


def table_run(tags_values: dict[str, list[float]], hparams: dict | None = None) -> Run:
    frames = [make_scalars(tag, np.arange(len(v)), v) for tag, v in tags_values.items()]
    return Run("r", path=".", format="csv", scalars=pd.concat(frames, ignore_index=True),
               hparams=hparams or {}).finalize()


# --- configuration files ---------------------------------------------------------------


@pytest.mark.slow  # importing Lightning (torch) alone takes seconds
def test_lightning_hparams_yaml_nested_num_classes(tmp_path: Path) -> None:
    from lightning.pytorch.loggers import CSVLogger

    logger = CSVLogger(str(tmp_path), name="", version=0)
    logger.log_hyperparams({"model": {"num_classes": 5, "hidden": 32}, "lr": 0.01})
    for step in range(6):
        logger.log_metrics({"train_loss": 1.6 - 0.1 * step, "val_acc": 0.3 + 0.05 * step},
                           step=step)
    logger.save()
    assert (tmp_path / "version_0" / "hparams.yaml").exists()
    found = count(load(tmp_path / "version_0"))
    assert found == signals.ClassCount(5, "hparam model.num_classes")
    assert str(found) == "5 (hparam model.num_classes)"


def test_real_lightning_hparams_yaml() -> None:
    run = load(require(shared("real_logs_more", "pl_cnn_luis_v18")))
    assert count(run) == signals.ClassCount(3, "hparam num_classes")
    # TabNet's output_dim is the class count because the run logs an accuracy ...
    run = load(require(shared("real_logs", "forest_v23_healthy")))
    found = count(run)
    assert found is not None and found.n == 7 and found.source.startswith("hparam output_dim")
    # ... but a regression's output size is not (no accuracy logged): C stays unknown
    assert count(load(require(shared("real_logs_more", "tb_pl_tft_optuna_v1")))) is None


def _hf_run(tmp_path: Path, config) -> Run:
    """A real trainer_state.json (shared real logs) beside a config.json written by
    transformers' own save_pretrained, as in an HF Trainer output folder."""
    trainer_state = require(shared("real_logs_more", "hf_reqclass_46ep", "trainer_state.json"))
    folder = tmp_path / "checkpoint-9800"
    folder.mkdir(parents=True)
    shutil.copy(trainer_state, folder / "trainer_state.json")
    config.save_pretrained(str(folder))
    assert (folder / "config.json").exists()
    return load(folder)


def test_hf_config_json_label_maps_heads_and_vocabulary(tmp_path: Path) -> None:
    transformers = pytest.importorskip("transformers")
    tiny = {"hidden_size": 32, "num_hidden_layers": 1, "num_attention_heads": 2,
            "intermediate_size": 37}
    labels = {i: name for i, name in enumerate(["bug", "feature", "question", "docs"])}
    cfg = transformers.BertConfig(id2label=labels, label2id={v: k for k, v in labels.items()},
                                  architectures=["BertForSequenceClassification"], **tiny)
    found = count(_hf_run(tmp_path / "a", cfg))
    assert found is not None and found.n == 4 and "id2label" in found.source
    # two labels are the default: save_pretrained leaves the map out, the head says 2
    cfg = transformers.BertConfig(architectures=["BertForSequenceClassification"], **tiny)
    found = count(_hf_run(tmp_path / "b", cfg))
    assert found is not None and found.n == 2 and "classification head" in found.source
    # a causal LM: the token cross-entropy's classes are the vocabulary
    cfg = transformers.GPT2Config(vocab_size=1000, n_embd=32, n_layer=1, n_head=2,
                                  bos_token_id=0, eos_token_id=0,
                                  architectures=["GPT2LMHeadModel"])
    found = count(_hf_run(tmp_path / "c", cfg))
    assert found is not None and found.n == 1000 and "vocab_size" in found.source
    # several labels at once: no 1/C chance level, C stays unknown
    cfg = transformers.BertConfig(num_labels=5, problem_type="multi_label_classification",
                                  architectures=["BertForSequenceClassification"], **tiny)
    assert count(_hf_run(tmp_path / "d", cfg)) is None


def _yolo_run(tmp_path: Path, data_yaml: str) -> Run:
    """A real YOLOv5 run folder (results.csv + opt.yaml) with a data.yaml beside it."""
    real = require(shared("real_logs", "yolov5_cots_150e"))
    tmp_path.mkdir()
    for name in ("results.csv", "opt.yaml"):
        shutil.copy(real / name, tmp_path / name)
    (tmp_path / "data.yaml").write_text(data_yaml)
    return load(tmp_path)


def test_yolo_data_yaml_nc_and_names(tmp_path: Path) -> None:
    roboflow = ("train: ../train/images\nval: ../valid/images\ntest: ../test/images\n\n"
                "nc: 12\nnames: ['Beans_Rust', 'Beans_Spot', 'Blight', 'Gray_Mold', 'Leaf_Spot',"
                " 'Mildew_Fruit', 'Mildew_Leaf', 'Mold', 'Mites', 'Rot', 'Scab', 'Wilt']\n\n"
                "roboflow:\n  workspace: w\n  project: p\n  version: 6\n")
    run = _yolo_run(tmp_path / "a", roboflow)
    assert any(p.name == "data.yaml" for p in run.sources)
    assert count(run) == signals.ClassCount(12, "hparam nc")
    # Ultralytics' own layout: names as an index -> name mapping, no nc
    ultra = "path: ../datasets/x\ntrain: images/train\nval: images/val\nnames:\n" \
            "  0: person\n  1: helmet\n  2: vest\n"
    assert count(_yolo_run(tmp_path / "b", ultra)) == signals.ClassCount(
        3, "label map names (3 labels)")
    # a flow-style names list without nc
    flow = "{names: [prohibitor, danger, mandatory, other], train: t, val: v}\n"
    assert count(_yolo_run(tmp_path / "c", flow)) == signals.ClassCount(
        4, "class list names (4 names)")


def test_class_list_shortened_in_the_sidecar_is_unknown_not_guessed() -> None:
    names = str([f"c{i}" for i in range(5)]) + " ..."
    run = table_run({"train_loss": [1.0, 0.5]}, {"names": names})
    assert signals.class_count(run) is None
    # Ultralytics' classes: [0, 2] filters class indices, it names no classes
    assert signals.class_count(table_run({"train_loss": [1.0, 0.5]}, {"classes": "[0, 2]"})) \
        is None


# --- metric columns and curves -----------------------------------------------------------


def test_per_index_metric_columns() -> None:
    cols = {f"test_acc_{i}": [0.5, 0.6] for i in range(4)}
    found = signals.class_count(table_run({"train_loss": [1.0, 0.5], **cols}))
    assert found == signals.ClassCount(4, "4 per-class metric columns")
    cols = {f"test/f1_per_class/{i}": [0.5, 0.6] for i in range(3)}
    assert signals.infer_num_classes(table_run({"train_loss": [1.0, 0.5], **cols})) == 3
    # top-1/top-5 accuracies are not classes
    cols = {"val_acc_1": [0.5, 0.6], "val_acc_5": [0.7, 0.8]}
    assert signals.class_count(table_run({"train_loss": [1.0, 0.5], **cols})) is None


def test_accuracy_grid_of_a_small_eval_set() -> None:
    assert signals.accuracy_quantum(np.array([3, 7, 9, 12, 11]) / 50) == pytest.approx(0.02)
    assert signals.accuracy_quantum(np.random.default_rng(0).random(20)) is None
    # 10 validation samples: 0.3 is one sample from a 5-class chance level of 0.2
    # (outside a quarter of 1/5); the grid admits it, the loss at ln 5 confirms
    acc = [0.3, 0.4, 0.5, 0.6, 0.7]
    loss = [math.log(5) + 0.01, 1.4, 1.2, 1.0, 0.9]
    found = signals.class_count(table_run({"val_loss": loss, "val_acc": acc}))
    assert found is not None and found.n == 5 and "~ 1/5" in found.source
    # a train accuracy per minibatch does not widen it: 1/32 steps admit any C near 12
    assert signals.class_count(table_run({"train_loss": loss, "train_acc": acc})) is None


def test_curve_source_is_named() -> None:
    run = table_run({"train_nll": [math.log(6) + 0.01, 1.7, 1.5],
                     "val_nll": [math.log(6) - 0.01, 1.6, 1.4]})
    found = signals.class_count(run)
    assert found is not None and found.n == 6 and "first train and val losses" in found.source
    assert signals.infer_num_classes(run) == 6


# --- key metric: the one best step ---------------------------------------------------------


def test_accuracy_at_its_first_level_is_no_objective() -> None:
    run = load(require(shared("real_logs", "dlgn_v58_chance")))  # 0.500 -> 0.508, 2 classes
    roles = resolve_roles(run.scalars)
    acc = roles.by_tag["val_acc"]
    assert never_leaves_start(acc)
    key = roles.key_point()
    assert key is not None and key.series.metric == "loss" and key.kind == "min"
    healthy = resolve_roles(load(require(shared("real_logs", "dlgn_v65_healthy"))).scalars)
    assert not never_leaves_start(healthy.by_tag["val_acc"])
    key = healthy.key_point()
    assert key is not None and key.series.tag == "val_acc" and key.kind == "max"


@pytest.mark.parametrize("name, key_tag, key_step", [
    ("yolov5_traffic_886ep_resumed", "metrics/mAP_0.5:0.95", 462),
    ("eeg_clf_v26_overfit", "val_acc", 585),
])
def test_stop_early_keeps_the_runs_own_best_checkpoint(name: str, key_tag: str,
                                                       key_step: int) -> None:
    """The val loss rose from an early minimum while the key metric (mAP, accuracy) kept
    improving: the stop goes to the key metric's best, where the report's best step is."""
    folder = shared("real_logs", name)
    folder = folder if folder.exists() else shared("real_logs_more", name)
    result = recommend(engine.evaluate(load(require(folder))))
    key = result.resolved_roles().key_point()
    assert key is not None and key.series.tag == key_tag and key.step == key_step
    stops = [r for f in result.findings for r in f.recommendations
             if r.hyperparameter in ("max_steps", "epochs") and r.action == "set"]
    assert stops
    offset = 1 if result.run.format.find("ultralytics") >= 0 else 0  # 0-indexed epochs
    for r in stops:
        assert r.proposed == key_step + offset, r.rationale
        assert "the run's key metric, was best" in r.rationale


@pytest.mark.parametrize("name, regression", [
    ("val_mse", True), ("eval_mae", True), ("val/rmse", True), ("huber_loss", True),
    ("SmoothL1Loss", True), ("r2", True), ("val_r2", True), ("mean_absolute_error", True),
    ("root_mean_squared_error", True), ("regression_loss", True),
    ("val_loss", False), ("accuracy", False), ("loss_cls", False), ("mr2", False),
    ("rpn_loss", False), ("term", False),
])
def test_one_reading_of_a_regression_name(name: str, regression: bool) -> None:
    """The class count, batch-norm's loss reading and the advice share one owner of "this
    name is a regression loss or metric" (a word of the name, '_' and '/' as separators)."""
    assert signals.regression_name(name) is regression
