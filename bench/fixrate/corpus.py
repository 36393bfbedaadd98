"""Fix-rate cases from the calibration corpus, and the trainer the probe calls for them.

A corpus run is a recipe (``bench/calibration/generate.py``'s config).  This module turns
the recipe into a training script with canonical hyperparameter flags, so the probe can
re-train it with the top recommendation or a random change exactly as it would a user's
script::

    python bench/fixrate/corpus.py --recipe R.json --learning-rate 0.01 ... \\
        --seed 0 --logdir D

Trial seed 0 is the stored run itself (same data split, same init); seed k offsets the
recipe's seed.  The logs are a plain metrics CSV with a ``config.json`` holding every
hyperparameter this recipe honours (so the probe's template covers exactly those).

What each hyperparameter does to the recipe (:func:`apply`): ``learning_rate``,
``weight_decay``, ``momentum``, ``batch_size``, ``dropout``, ``bn_momentum`` are the
recipe's own; ``optimizer`` picks SGD/Adam/AdamW/RMSprop; ``model_capacity`` scales the
hidden width; ``max_steps`` longer than the run trains longer, shorter stops there (the
logs end at that step: the model one would keep); ``warmup_steps`` sets a linear warmup
of that many steps (0 = none); ``lr_schedule`` the schedule after it; ``init`` default /
he_normal / xavier_uniform (or the recipe's broken one); ``activation`` relu / leaky_relu /
gelu / elu / tanh / sigmoid; ``normalization`` batchnorm / groupnorm / layernorm / none on
batch-norm models; ``drop_last`` skips a ragged last batch; ``grad_clip`` clips the global
grad norm (0 = off); ``standardize_targets`` trains a regression on unit-scale targets
and reports its losses back in the original units (so the judge's levels still apply);
``lr_step_factor`` is what the recipe's LR event multiplies the LR by at its step (a
mid-run jump's x1000, an early decay's x0.001; 1 = no event), logged only for a recipe
that has one.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
import zlib
from pathlib import Path
from typing import Any

import numpy as np

HERE = Path(__file__).resolve().parent
CAL = HERE.parent / "calibration"
sys.path.insert(0, str(CAL))

#: Causes whose fix is a different model family, not a hyperparameter (a linear model on
#: non-linear data): not fix-rate cases.
NO_HPARAM_FIX = ("linear_on_nonlinear",)
#: The order states are interleaved in, so a campaign cut short covers every state.
STATES = ("divergence", "overfit", "underfit", "plateau", "batchnorm_collapse")
#: Seed offset between trial seeds (trial seed 0 is the stored run).
SEED_STRIDE = 1_000_003

OPTIMIZERS = {"sgd": "sgd", "sgd_momentum": "sgd", "adam": "adam", "adamw": "adamw",
              "rmsprop": "rmsprop"}
SCHEDULES = ("constant", "step", "cosine", "restarts", "onecycle")
ACTIVATIONS = ("relu", "leaky_relu", "gelu", "elu", "tanh", "sigmoid")
INITS = ("default", "he_normal", "xavier_uniform")
NORMS = ("batchnorm", "groupnorm", "layernorm", "none")

#: The random control's knobs for corpus cases (what :func:`apply` accepts).
CHOICES: dict[str, tuple[Any, ...]] = {
    "optimizer": ("sgd", "adam", "adamw", "rmsprop"),
    "activation": ("relu", "leaky_relu", "gelu", "tanh", "sigmoid"),
    "init": INITS,
    "lr_schedule": SCHEDULES,
    "normalization": ("batchnorm", "groupnorm", "layernorm"),
}
SWITCHES = ("drop_last", "standardize_targets")


def _bn(cfg: dict[str, Any]) -> bool:
    return cfg["arch"] in ("mlp_bn", "cnn_bn")


def _init_name(init: dict[str, Any] | None) -> str:
    if not init:
        return "default"
    kind = init["kind"]
    return {"zero": "zeros", "dead_bias": "dead", "scale": f"scaled_x{init.get('factor')}"}.get(
        kind, kind)


def _total(cfg: dict[str, Any]) -> int:
    return int(cfg.get("total_steps") or cfg["target_steps"])


def hparams_of(cfg: dict[str, Any]) -> dict[str, Any]:
    """The canonical hyperparameters of a recipe that :func:`apply` honours."""
    sched = cfg["schedule"]
    warm = sched["kind"] == "warmup"
    hp: dict[str, Any] = {
        "learning_rate": cfg["lr"], "optimizer": OPTIMIZERS[cfg["optimizer"]],
        "momentum": cfg["momentum"], "weight_decay": cfg["weight_decay"],
        "batch_size": cfg["batch_size"], "max_steps": _total(cfg),
        "warmup_steps": round(sched["warmup"] * _total(cfg)) if warm else 0,
        "lr_schedule": (sched.get("then") or "constant") if warm else sched["kind"],
        "grad_clip": cfg.get("grad_clip", 0.0), "init": _init_name(cfg["init"]),
        "drop_last": bool(cfg.get("drop_last")),
    }
    if cfg["arch"] != "linear":
        hp["model_capacity"] = cfg.get("capacity", 1.0)
        hp["dropout"] = cfg["dropout"]
        hp["activation"] = cfg.get("act_name", cfg["activation"])
    if _bn(cfg):
        hp["bn_momentum"] = cfg["bn_momentum"]
        hp["normalization"] = cfg.get("norm_name", "batchnorm")
    if cfg["task"] == "reg":
        hp["standardize_targets"] = bool(cfg.get("standardized"))
    if cfg.get("lr_event"):
        hp["lr_step_factor"] = float(cfg["lr_event"]["factor"])
    if cfg["task"] != "reg" and cfg.get("n_classes"):
        hp["num_classes"] = cfg["n_classes"]
    return hp


def _bool(v: Any) -> bool:
    return str(v).strip().lower() in ("1", "true", "yes", "on")


def apply(cfg: dict[str, Any], hp: dict[str, Any]) -> dict[str, Any]:
    """The recipe with ``hp`` applied (values as the probe writes them on the command line).

    Raises ValueError for a value the recipe cannot take (the trial then fails, honestly).
    """
    cfg = json.loads(json.dumps(cfg))
    total = _total(cfg)
    for key, raw in hp.items():
        if raw is None:
            continue
        if key == "learning_rate":
            cfg["lr"] = float(raw)
        elif key == "weight_decay":
            cfg["weight_decay"] = float(raw)
        elif key == "momentum":
            cfg["momentum"] = float(raw)
        elif key == "batch_size":
            cfg["batch_size"] = max(1, int(float(raw)))
        elif key == "dropout":
            cfg["dropout"] = float(raw)
        elif key == "bn_momentum":
            cfg["bn_momentum"] = float(raw)
        elif key == "optimizer":
            name = str(raw).lower()
            if name not in ("sgd", "adam", "adamw", "rmsprop"):
                raise ValueError(f"optimizer {raw!r} is not one of sgd/adam/adamw/rmsprop")
            cfg["optimizer"] = "sgd_momentum" if name == "sgd" and cfg["momentum"] else name
        elif key == "model_capacity":
            cap = float(raw)
            cfg["capacity"] = cap
            cfg["hidden"] = max(1, round(cfg["hidden"] * cap))
        elif key == "max_steps":
            n = max(1, int(float(raw)))
            if n > total:
                cfg["target_steps"], cfg["epochs"] = n, None
            elif n < total:
                cfg["stop_at"] = n
        elif key == "init":
            name = str(raw).lower()
            if name == "default":
                cfg["init"] = None
            elif name in ("he_normal", "xavier_uniform"):
                cfg["init"] = {"kind": name}
            elif name != _init_name(cfg["init"]):
                raise ValueError(f"init {raw!r} is not one of {', '.join(INITS)}")
        elif key == "activation":
            name = str(raw).lower()
            if name not in ACTIVATIONS:
                raise ValueError(f"activation {raw!r} is not one of {', '.join(ACTIVATIONS)}")
            cfg["act_name"] = name
            cfg["activation"] = "sigmoid" if name == "sigmoid" else "relu"
        elif key == "normalization":
            name = str(raw).lower()
            if name not in NORMS:
                raise ValueError(f"normalization {raw!r} is not one of {', '.join(NORMS)}")
            cfg["norm_name"] = name
        elif key == "drop_last":
            cfg["drop_last"] = _bool(raw)
        elif key == "grad_clip":
            cfg["grad_clip"] = float(raw)
        elif key == "standardize_targets":
            if _bool(raw) and cfg["task"] == "reg":
                cfg["standardized"] = True
        elif key == "lr_step_factor":
            factor = float(raw)
            if cfg.get("lr_event"):
                cfg["lr_event"]["factor"] = factor
            elif factor != 1.0:
                raise ValueError("lr_step_factor: this recipe has no LR step to scale")
        elif key in ("warmup_steps", "lr_schedule", "num_classes"):
            pass  # below (together), or a description of the data
        else:
            raise ValueError(f"unknown hyperparameter {key!r}")
    cur = hparams_of(cfg)
    then = str(hp.get("lr_schedule") or cur["lr_schedule"]).lower()
    warm_new = float(hp.get("warmup_steps", cur["warmup_steps"]) or 0)
    if then != cur["lr_schedule"] or warm_new != float(cur["warmup_steps"]):
        # the recipe's own schedule (its gamma, cycles, peak) stays unless it changes
        if then not in SCHEDULES:
            raise ValueError(f"lr_schedule {then!r} is not one of {', '.join(SCHEDULES)}")
        warm = float(hp.get("warmup_steps", cur["warmup_steps"]) or 0)
        new_total = int(cfg["target_steps"]) if cfg.get("epochs") is None and (
            cfg["target_steps"] > total) else total
        sched = _schedule(then)
        if warm > 0 and then in ("constant", "cosine"):
            sched = {"kind": "warmup", "warmup": warm / max(1, new_total), "then": then}
        elif warm > 0:
            raise ValueError(f"a warmup before lr_schedule {then!r} is not supported")
        cfg["schedule"] = sched
    return cfg


def _schedule(kind: str) -> dict[str, Any]:
    return {"step": {"kind": "step", "gamma": 0.1, "milestones": [0.5, 0.75]},
            "restarts": {"kind": "restarts", "cycles": 3},
            "onecycle": {"kind": "onecycle", "peak": 0.3}}.get(kind, {"kind": kind})


def train(cfg: dict[str, Any], seed: int, logdir: Path) -> None:
    """Train the recipe (trial ``seed``) and write its metrics CSV and config.json."""
    import generate
    import torch

    cfg = {**cfg, "seed": int(cfg["seed"]) + seed * SEED_STRIDE}
    scale = float(cfg["target_scale"]) if cfg.get("standardized") else 1.0
    run_cfg = {**cfg, "target_scale": 1.0} if cfg.get("standardized") else cfg
    nn = torch.nn
    saved = (nn.ReLU, nn.BatchNorm1d, nn.BatchNorm2d, generate.apply_init,
             generate.make_data, generate.make_optimizer)
    _patch(generate, torch, cfg)
    try:
        rec = generate.train_run(run_cfg)
    finally:  # the hooks are this run's alone: a sweep in one process must not inherit them
        (nn.ReLU, nn.BatchNorm1d, nn.BatchNorm2d, generate.apply_init,
         generate.make_data, generate.make_optimizer) = saved
    stop = cfg.get("stop_at")
    rows: dict[int, dict[str, Any]] = {}
    for name, (steps, values) in rec["series"].items():
        for s, v in zip(steps, values, strict=True):
            if stop is not None and s > stop:
                continue
            v = float(v)
            if name in ("train_loss", "val_loss"):
                v *= scale * scale
            rows.setdefault(s, {"step": s})[name] = v
    logdir.mkdir(parents=True, exist_ok=True)
    cols = ["step", *sorted({k for r in rows.values() for k in r} - {"step"})]
    with open(logdir / "metrics_log.csv", "w", newline="", encoding="utf-8") as fh:
        w = csv.DictWriter(fh, fieldnames=cols)
        w.writeheader()
        for s in sorted(rows):
            w.writerow({k: (repr(v) if isinstance(v, float) else v)
                        for k, v in rows[s].items()})
    hp = hparams_of({**cfg, "total_steps": rec["config"]["total_steps"]})
    if stop is not None:
        hp["max_steps"] = stop
    (logdir / "config.json").write_text(json.dumps(hp, indent=2, sort_keys=True) + "\n")


def _patch(generate: Any, torch: Any, cfg: dict[str, Any]) -> None:
    """The knobs ``generate.train_run`` has no field for, hooked into its helpers."""
    nn = torch.nn
    act = {"leaky_relu": nn.LeakyReLU, "gelu": nn.GELU, "elu": nn.ELU,
           "tanh": nn.Tanh}.get(cfg.get("act_name", ""))
    if act is not None:
        nn.ReLU = act  # make_model picks nn.ReLU for anything but sigmoid
    norm = cfg.get("norm_name")
    if norm in ("groupnorm", "layernorm"):
        def group(ch: int, momentum: float | None = None) -> Any:
            groups = 1 if norm == "layernorm" else next(g for g in (4, 2, 1) if ch % g == 0)
            return nn.GroupNorm(groups, ch)
        nn.BatchNorm1d = nn.BatchNorm2d = group
    elif norm == "none":
        nn.BatchNorm1d = nn.BatchNorm2d = lambda ch, momentum=None: nn.Identity()

    base_init = generate.apply_init

    def apply_init(model: Any, init: dict[str, Any] | None) -> None:
        if init and init["kind"] in ("he_normal", "xavier_uniform"):
            with torch.no_grad():
                for m in model.modules():
                    if isinstance(m, nn.Linear | nn.Conv1d | nn.Conv2d):
                        if init["kind"] == "he_normal":
                            nn.init.kaiming_normal_(m.weight, nonlinearity="relu")
                        else:
                            nn.init.xavier_uniform_(m.weight)
                        if m.bias is not None:
                            m.bias.zero_()
            return
        base_init(model, init)

    generate.apply_init = apply_init
    base_data = generate.make_data

    def make_data(c: dict[str, Any]) -> dict[str, Any]:
        data = base_data(c)
        bs = c["batch_size"]
        if c.get("drop_last") and len(data["xtr"]) % bs and len(data["xtr"]) > bs:
            n = len(data["xtr"]) // bs * bs
            data["xtr"], data["ytr"] = data["xtr"][:n], data["ytr"][:n]
        return data

    generate.make_data = make_data
    clip = float(cfg.get("grad_clip") or 0.0)
    base_opt = generate.make_optimizer

    def make_optimizer(c: dict[str, Any], params: Any) -> Any:
        params = list(params)
        opt = base_opt(c, params)
        if clip > 0:
            step = opt.step

            def clipped(*a: Any, **k: Any) -> Any:
                torch.nn.utils.clip_grad_norm_(params, clip)
                return step(*a, **k)

            opt.step = clipped
        return opt

    generate.make_optimizer = make_optimizer


# --- the cases -------------------------------------------------------------------------


#: The fix-rate campaign draws its cases from the runs stored when it was defined
#: (r00000-r03599): the corpus grows by fresh batches, and the campaign's sample must not
#: move with it (its figures in bench/README.md are for these cases).
CAMPAIGN_RUNS = 3600


def cases(per_state: int, runs: int | None = CAMPAIGN_RUNS) -> list[dict[str, Any]]:
    """Broken corpus runs with a hyperparameter fix: up to ``per_state`` per labelled state
    (a multi-state label counts under its first state in :data:`STATES`), drawn in a
    stable hashed order (a uniform sample of the state's runs), states interleaved; from
    the first ``runs`` runs of the store (None: every run)."""
    import label_check
    import store

    labels = label_check.read_labels()
    picked: dict[str, list[dict[str, Any]]] = {}
    for rec in sorted(store.load(), key=lambda r: zlib.crc32(r["id"].encode())):
        label = labels.get(rec["id"])
        if not label or rec["cause"] in NO_HPARAM_FIX:
            continue
        if runs is not None and int(rec["id"][1:]) >= runs:
            continue
        state = next((s for s in STATES if s in label), None)
        if state is None or len(picked.setdefault(state, [])) >= per_state:
            continue
        picked[state].append({"id": rec["id"], "state": state, "label": label,
                              "cause": rec["cause"], "config": rec["config"]})
    order: list[dict[str, Any]] = []
    for i in range(per_state):
        order += [picked[s][i] for s in STATES if i < len(picked.get(s, []))]
    return order


#: Recipe keys that define the data a run sees (beside the data set): a reference level
#: comes from runs on the same data (40 training samples cannot reach the full set's level).
DATA_KEYS = ("dataset", "n_classes", "n_train", "label_noise", "text_chars", "n_features",
             "n_classes_gen")
#: A same-data reference needs at least this many corpus runs; else the data set's.
MIN_REF_RUNS = 5
#: The reference is this percentile of those runs' best val loss (label_check's choice).
REF_PERCENTILE = 10.0


def levels(case: dict[str, Any]) -> tuple[float, float]:
    """(untrained, healthy reference) val loss of the case's data: ln C (or the target
    variance), and the 10th percentile of the best val loss that corpus runs on the same
    data reach (label_check's data-set level when fewer than five runs share the data),
    at most half the untrained loss, as label_check caps it."""
    import label_check

    cfg = case["config"]
    l0 = label_check.untrained_loss(cfg)
    same = _best_ratios().get(_data_key(cfg), [])
    if len(same) >= MIN_REF_RUNS:
        ratio = float(np.percentile(same, REF_PERCENTILE))
    else:
        refs = label_check.reference_levels(_records())
        key = label_check.ref_key({"config": cfg})
        ratio = refs.get(key, refs.get(key[:1], 0.0))
    return l0, min(ratio * l0, 0.5 * l0)


def _data_key(cfg: dict[str, Any]) -> tuple[Any, ...]:
    return tuple(cfg.get(k) for k in DATA_KEYS)


_CACHE: dict[str, Any] = {}


def _records() -> list[dict[str, Any]]:
    if "records" not in _CACHE:
        import store

        _CACHE["records"] = store.load()
    return _CACHE["records"]


def _best_ratios() -> dict[tuple[Any, ...], list[float]]:
    """Per data key: every run's best val loss over its untrained loss."""
    if "ratios" not in _CACHE:
        import label_check
        import store

        out: dict[tuple[Any, ...], list[float]] = {}
        for rec in _records():
            s = store.series(rec, "val_loss")
            v = np.asarray(s[1], float) if s else np.array([])
            v = v[np.isfinite(v)]
            if len(v):
                out.setdefault(_data_key(rec["config"]), []).append(
                    float(v.min()) / label_check.untrained_loss(rec["config"]))
        _CACHE["ratios"] = out
    return _CACHE["ratios"]


def template(recipe: Path, keys: list[str]) -> str:
    """The probe's command template for a recipe: one placeholder per hyperparameter."""
    words = [sys.executable, str(Path(__file__).resolve()), "--recipe", str(recipe)]
    for key in keys:
        if key != "num_classes":
            words += ["--" + key.replace("_", "-"), "{" + key + "}"]
    return " ".join([*words, "--seed", "{seed}", "--logdir", "{logdir}", "--device",
                     "{device}"])


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--recipe", type=Path, required=True, help="the run's config (JSON)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--logdir", type=Path, required=True)
    p.add_argument("--device", default="cpu", help="accepted for the probe; CPU only")
    args, rest = p.parse_known_args(argv)
    if len(rest) % 2:
        p.error(f"flags come in pairs: {rest}")
    hp = {rest[i].lstrip("-").replace("-", "_"): rest[i + 1] for i in range(0, len(rest), 2)}
    cfg = json.loads(args.recipe.read_text())
    try:
        cfg = apply(cfg, hp)
    except ValueError as exc:
        print(f"corpus.py: {exc}", file=sys.stderr)
        return 2
    train(cfg, args.seed, args.logdir)
    return 0


if __name__ == "__main__":
    import warnings

    warnings.filterwarnings("ignore")
    raise SystemExit(main())

