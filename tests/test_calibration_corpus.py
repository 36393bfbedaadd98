"""The calibration corpus machinery (bench/calibration): store, writers, label checker.

One short real training goes through the store and every log writer, and each rendering
must be read back by diagnose as one run holding the stored train loss; the label checker
must call curves with an unmistakable shape what DESIGN.md calls them.
"""

from __future__ import annotations

import gzip
import json
import math
import sys
from pathlib import Path

import numpy as np
import pytest

CAL = Path(__file__).resolve().parents[1] / "bench" / "calibration"
sys.path.insert(0, str(CAL))

import label_check  # noqa: E402
import store  # noqa: E402


def _record(train: list[float], val: list[float] | None, *, n_classes: int = 10,
            arch: str = "mlp", rid: str = "r00000", val_every: int = 1,
            val_acc: list[float] | None = None) -> dict:
    """A stored record with hand-made curves (per-epoch train and val, 10 steps/epoch;
    val every ``val_every`` train points, with its accuracy when given)."""
    steps = [10 * (i + 1) for i in range(len(train))]
    series = {"train_loss": [steps, [store.encode_value(v) for v in train]]}
    if val is not None:
        vsteps = steps[val_every - 1::val_every][: len(val)]
        series["val_loss"] = [vsteps, [store.encode_value(v) for v in val]]
        if val_acc is not None:
            series["val_acc"] = [vsteps, [store.encode_value(v) for v in val_acc]]
    cfg = {"task": "cls", "dataset": "classification", "n_classes": n_classes, "arch": arch,
           "total_steps": steps[-1], "target_scale": 1.0}
    return {"id": rid, "intended": [], "config": cfg, "series": series, "family": "mlp",
            "dataset": "classification", "cause": "x"}


def test_store_round_trip_survives_a_torn_write(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl.gz"
    a = _record([2.0, float("nan")], None, rid="r00001")
    store.append([a], path)
    store.append([_record([1.0, 0.5], None, rid="r00002")], path)
    with open(path, "ab") as fh:  # a writer killed mid-member
        fh.write(gzip.compress(b'{"id": "r00003"}\n')[:15])
    recs = store.load(path)
    assert [r["id"] for r in recs] == ["r00001", "r00002"]
    steps, values = store.series(recs[0], "train_loss")
    assert steps == [10, 20] and values[0] == 2.0 and math.isnan(values[1])


@pytest.mark.parametrize(
    ("train", "val", "expected"),
    [
        # learns to a good level and stays there (10 classes: chance ln 10 = 2.30)
        (np.geomspace(2.3, 0.1, 20), np.geomspace(2.3, 0.15, 20), []),
        # flat at chance from the start: plateau only
        (np.full(20, 2.30) + np.linspace(0, -0.02, 20), np.full(20, 2.31), ["plateau"]),
        # val turns up while train keeps falling: overfit
        (np.geomspace(2.3, 0.01, 20),
         np.r_[np.geomspace(2.3, 0.6, 8), np.linspace(0.65, 1.6, 12)], ["overfit"]),
        # blown up: the loss is NaN from mid-run on
        (np.r_[np.geomspace(2.3, 0.5, 10), np.full(10, np.nan)],
         np.r_[np.geomspace(2.3, 0.6, 10), np.full(10, np.nan)], ["divergence"]),
        # learns a little, still falling slowly at a poor level: underfit
        (np.linspace(2.3, 1.5, 20), np.linspace(2.3, 1.55, 20), ["underfit"]),
    ],
)
def test_label_checker_reads_the_definitions(train, val, expected) -> None:
    rec = _record(list(train), list(val))
    # a good level on this data set is 0.1 (what the corpus' other runs reach)
    refs = {("classification", 10): 0.1 / math.log(10)}
    out = label_check.check({**rec, "intended": expected}, refs)
    assert out["label"] == expected, out
    assert out["status"] == "kept"


def test_batchnorm_collapse_needs_batch_norm() -> None:
    train = list(np.geomspace(2.3, 0.05, 20))
    val = list(np.full(20, 2.6))  # eval at chance from the first evaluation
    refs = {("classification", 10): 0.1 / math.log(10)}
    with_bn = label_check.check(_record(train, val, arch="mlp_bn"), refs)
    assert with_bn["label"] == ["batchnorm_collapse"]
    without = label_check.check(_record(train, val, arch="mlp"), refs)
    assert without["label"] != ["batchnorm_collapse"]


def test_batch_norm_val_that_learned_before_its_first_evaluation_can_overfit() -> None:
    # val already far below chance (ln 10 = 2.30) at its first evaluation, then rises 60%
    # while train keeps falling: it learned (before the first eval), so this is overfit
    train = list(np.geomspace(1.5, 0.01, 20))
    val = list(np.r_[0.5, np.linspace(0.5, 0.8, 19)])
    refs = {("classification", 10): 0.1 / math.log(10)}
    out = label_check.check(_record(train, val, arch="mlp_bn"), refs)
    assert out["label"] == ["overfit"], out


def test_batch_norm_val_that_never_left_chance_and_rises_is_not_healthy() -> None:
    # train learns a little; val starts at chance and climbs 40%: neither healthy nor a
    # clean collapse (train is not good), so the checker drops it as unclear
    train = list(np.linspace(2.3, 1.6, 20))
    val = list(np.linspace(2.35, 3.3, 20))
    refs = {("classification", 10): 0.1 / math.log(10)}
    out = label_check.check(_record(train, val, arch="cnn_bn"), refs)
    assert out["status"] == "dropped" and "never left chance" in out["why"], out
    # without batch norm the same curves are memorisation: overfit (no collapse to weigh)
    out = label_check.check(_record(train, val, arch="cnn"), refs)
    assert out["label"] == ["overfit"], out


REFS = {("classification", 10): 0.1 / math.log(10)}


def test_a_noisy_early_train_dip_is_not_an_early_plateau() -> None:
    # per-step train loss with minibatch noise around a slow fall, val (every 6 steps)
    # falling steadily all run: still improving at a poor level = underfit. The old
    # criterion took the minimum of the first 20% of the train curve as "the level by
    # 20%", so one noisy dip made it plateau (r00266, r00007 in the corpus).
    rng = np.random.default_rng(0)
    train = np.clip(np.linspace(2.25, 1.75, 60) + rng.normal(0, 0.35, 60), 0.8, None)
    val = np.linspace(2.25, 1.78, 10)
    out = label_check.check(_record(list(train), list(val), val_every=6), REFS)
    assert out["label"] == ["underfit"], out


def test_a_val_accuracy_that_climbs_is_not_flat_from_the_start() -> None:
    # the loss barely leaves ln 10 (under-confident logits) but the val accuracy climbs
    # from chance (0.1) to 0.55: the run left its initial level, learning slowly at a poor
    # level = underfit (the old level-only test called it plateau)
    train, val = np.linspace(2.30, 2.20, 20), np.linspace(2.30, 2.21, 20)
    acc = np.linspace(0.1, 0.55, 20)
    out = label_check.check(_record(list(train), list(val), val_acc=list(acc)), REFS)
    assert out["label"] == ["underfit"], out
    # ... and when it climbs to a good accuracy (0.93), "poor" rests only on the loss
    # against the data set's reference level, which the accuracy contradicts: unclear
    acc = np.r_[np.linspace(0.1, 0.93, 10), np.full(10, 0.93)]
    out = label_check.check(_record(list(train), list(val), val_acc=list(acc)), REFS)
    assert out["status"] == "dropped" and "val accuracy" in out["why"], out
    # an accuracy that sits where it started (a val split whose majority class is more
    # frequent than in the data set) is no sign of learning: still flat, still plateau
    acc = np.full(20, 0.4)
    out = label_check.check(_record(list(train), list(val), val_acc=list(acc)), REFS)
    assert out["label"] == ["plateau"], out


def test_a_stop_inside_the_train_noise_is_not_dated() -> None:
    # only two val evaluations (val cannot date the stop), a per-step train loss whose
    # minibatch noise is larger than its fall: whether it stopped by 20% of the run or
    # kept improving cannot be told, so plateau is unclear and the run is dropped (the
    # old criterion took the early minimum and called it plateau + underfit)
    rng = np.random.default_rng(1)
    train = list(np.clip(np.linspace(2.25, 1.9, 60) + rng.normal(0, 0.4, 60), 0.8, None))
    out = label_check.check(_record(train, [2.0, 1.95], val_every=30), REFS)
    assert out["status"] == "dropped" and "noise" in out["why"], out
    # ... but a val that fell a lot between its two evaluations (after 20% of the run)
    # shows the run still improving: underfit, not plateau
    out = label_check.check(_record(train, [2.25, 1.7], val_every=30), REFS)
    assert out["label"] == ["underfit"], out


def test_val_stuck_while_train_keeps_improving_is_not_healthy() -> None:
    # train falls steadily to a middling level while val never leaves ln 10: not a
    # plateau (the optimiser is not stuck) and not healthy; the old criterion read only
    # train, saw it still improving and a large gap, and called the run healthy
    train, val = np.geomspace(2.3, 1.2, 20), np.full(20, 2.30)
    out = label_check.check(_record(list(train), list(val)), REFS)
    assert out["status"] == "dropped" and "train still gains" in out["why"], out


@pytest.mark.slow  # torch, sklearn, lightning and tensorboard imports: ~10 s of CPU
def test_a_real_run_renders_in_every_format_and_reads_back(tmp_path: Path) -> None:
    pytest.importorskip("torch")
    pytest.importorskip("sklearn")
    import generate
    import write_logs

    from diagnose.config import Config
    from diagnose.pipeline import Options, analyze

    cfg = generate.draw_config(1, 0)
    cfg.update(dataset="wine", arch="mlp", task="cls", target_steps=40, epochs=None,
               val_every=2, train_log="step", log_every=1, cause="default", init=None,
               lr_event=None, schedule={"kind": "cosine"}, optimizer="adam", lr=3e-3,
               batch_size=32, hidden=16, depth=1, n_train=None, raw_inputs=False,
               input_scale=1.0, input_shift=0.0, ragged_last=None, val_every_steps=None)
    rec = generate.train_run(cfg)
    assert len(rec["series"]["train_loss"][0]) == rec["config"]["total_steps"]
    assert len(rec["series"]["val_loss"][0]) >= 2
    path = tmp_path / "runs.jsonl.gz"
    store.append([rec], path)
    (rec,) = store.load(path)
    for fmt in write_logs.FORMATS:
        write_logs.render(rec, tmp_path / "out", fmt)
    analysis = analyze([str(tmp_path / "out")], Config(), Options(jobs=1))
    assert not analysis.errors
    by_format: dict[str, list] = {}
    for res in analysis.results:
        by_format.setdefault(res.run.run_id.split("/")[0], []).append(res)
    assert sorted(by_format) == sorted(write_logs.FORMATS)
    first, last = rec["series"]["train_loss"][0][0], rec["series"]["train_loss"][0][-1]
    for fmt, results in by_format.items():
        assert len(results) == 1, fmt
        steps = results[0].run.scalars["step"]
        # every per-step format keeps the whole step range (Lightning counts from 0)
        if fmt != "keras_csv":
            assert {int(steps.min()), int(steps.max())} <= {first - 1, first, last - 1, last}, fmt
    json.dumps(rec)  # the record stays plain JSON


def test_thresholds_are_chosen_on_the_training_runs_only(tmp_path: Path) -> None:
    """The fold's fit sees only its training runs: a candidate that helps only the held-out
    runs is not chosen, one that helps the training runs is, and each setting is analysed
    once (cached) however many folds ask for it."""
    import fitting

    grid_file = tmp_path / "grid.toml"
    grid_file.write_text("[OVF003]\nmin_gap_ratio = [0.7]\n[DIV002]\nexplode_factor = [2]\n")
    grid = fitting.read_grid(grid_file)
    assert grid == [("OVF003", "min_gap_ratio", [0.7]), ("DIV002", "explode_factor", [2.0])]
    runs = [{"id": "a", "label": ["overfit"]}, {"id": "b", "label": []}]
    passes: list[dict] = []

    def analyze(th: dict) -> dict[str, set[str]]:
        passes.append(th)
        if th.get("OVF003"):  # the raised threshold silences the false alarm on "b"
            return {"a": {"overfit"}, "b": set()}
        if th.get("DIV002"):  # helps "b" only through a divergence call on "a": worse
            return {"a": {"divergence"}, "b": set()}
        return {"a": {"overfit"}, "b": {"overfit"}}

    def objective(train: list[dict], pred: dict[str, set[str]]) -> float:
        ok = sum(set(r["label"]) == pred.get(r["id"], set()) for r in train)
        return ok / len(train)

    cal = fitting.Calibrator(grid, analyze, objective)
    assert cal.fit(runs) == {"OVF003": {"min_gap_ratio": 0.7}}
    assert cal.fit(runs[:1]) == {}  # on "a" alone no candidate beats the defaults
    cal.predictions({"OVF003": {"min_gap_ratio": 0.7}})
    assert len(passes) == cal.runs() == 3


def test_a_feature_constant_in_training_is_only_centred() -> None:
    """make_data scales as StandardScaler: a digits pixel that is 0 in all 400 training
    samples of this split but not in val must not become a val input of ~1e6 (the
    ``std + 1e-6`` floor did that to 114 stored runs); every other feature is unchanged."""
    import generate

    cfg = {"dataset": "digits", "seed": 0, "n_train": 400, "task": "cls", "label_noise": 0.0,
           "input_scale": 1.0, "input_shift": 0.0}
    data = generate.make_data(cfg)
    xtr, xva = data["xtr"].double().numpy(), data["xva"].double().numpy()
    const = np.ptp(xtr, axis=0) == 0
    moving = const & (np.abs(xva - xtr[0]) > 0).any(axis=0)
    assert moving.any()  # the split does have the trap
    assert np.abs(xva[:, moving]).max() <= 16  # raw pixels are 0..16: only centred
    assert (xtr[:, const] == 0).all()
    assert np.abs(xva[:, ~const]).max() < 100  # real features: a few training stds


def test_store_replace_rewrites_only_the_members_of_the_replaced_runs(tmp_path: Path) -> None:
    path = tmp_path / "runs.jsonl.gz"
    store.append([_record([2.0, 1.0], None, rid="r00001"),
                  _record([2.0, 1.5], None, rid="r00002")], path)
    store.append([_record([3.0, 1.0], None, rid="r00003")], path)
    before = path.read_bytes()
    new = _record([9.0, 8.0], None, rid="r00002")
    assert store.replace([new], path) == 1
    after = path.read_bytes()
    recs = list(store.iter_records(path))
    assert [r["id"] for r in recs] == ["r00001", "r00002", "r00003"]
    assert store.series(recs[1], "train_loss")[1] == [9.0, 8.0]
    assert recs[0] == _record([2.0, 1.0], None, rid="r00001")
    # the untouched second member (r00003) is copied byte for byte
    assert after.endswith(before[_first_member_len(before):])
    with pytest.raises(KeyError, match="r00009"):
        store.replace([_record([1.0], None, rid="r00009")], path)
    assert path.read_bytes() == after  # a failed replace leaves the file as it was


def _first_member_len(data: bytes) -> int:
    import zlib

    d = zlib.decompressobj(wbits=31)
    d.decompress(data)
    return len(data) - len(d.unused_data)


def test_macro_f1_interval_brackets_the_score_and_narrows_with_more_runs() -> None:
    """The bootstrap band of a fold's macro-F1: it holds the fold's own score, a few runs
    make it wide and many runs with the same mix make it narrow; no labelled state, none."""
    import evaluate

    few = [({"overfit"}, {"overfit"})] * 3 + [({"overfit"}, set()), (set(), {"overfit"})] \
        + [({"plateau"}, {"plateau"})] * 4 + [(set(), set())] * 4
    score = evaluate.score(few)["macro_f1"]
    lo, hi = evaluate.macro_f1_interval(few)
    assert lo <= score <= hi and hi - lo > 0.1
    lo20, hi20 = evaluate.macro_f1_interval(few * 20)
    assert lo20 <= score <= hi20 and hi20 - lo20 < (hi - lo) / 2
    assert evaluate.macro_f1_interval([(set(), set())] * 5) is None


def test_false_alarm_band_holds_the_rate_and_tells_two_batches_apart() -> None:
    """Two batches' healthy false-alarm rates (3 of 159 and 17 of 361, one rule set) have
    overlapping 95% bands; a band holds its own rate; no healthy runs, no band."""
    import evaluate

    lo_b, hi_b = evaluate.fa_rate_interval(3, 159)
    lo_a, hi_a = evaluate.fa_rate_interval(17, 361)
    assert lo_b <= 3 / 159 <= hi_b and lo_a <= 17 / 361 <= hi_a
    assert lo_a < hi_b  # the two rates are within each other's noise
    assert evaluate.fa_rate_interval(0, 100)[0] == 0.0 < evaluate.fa_rate_interval(0, 100)[1]
    assert evaluate.fa_rate_interval(0, 0) is None
