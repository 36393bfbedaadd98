"""The advice policy: every number the moves use to turn evidence into a setting.

Named, documented and typed like a rule's thresholds, shown by ``diagnose explain
advice`` and settable in ``[tool.diagnose.advice]``::

    [tool.diagnose.advice]
    lr_safety_factor = 5.0      # propose the LR where the loss turned / 5
    default_weight_decay = 1e-4

A key that is not a policy parameter, or a value out of its range, is a one-line
:class:`~diagnose.config.ConfigError` (exit 2).
"""

from __future__ import annotations

import dataclasses
import textwrap
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from diagnose.detectors import params as P


def _knob(default: Any, spec: P.Param, doc: str) -> Any:
    return field(default=default, metadata={"param": spec, "doc": doc})


@dataclass(frozen=True)
class AdvicePolicy:
    """The policy numbers of the shared moves (defaults from the seeds and the tuning
    playbook)."""

    lr_safety_factor: float = _knob(
        3.0, P.AT_LEAST_ONE,
        "the LR at which the loss turned, divided by this, is the proposed LR (a margin "
        "below the observed unstable LR)")
    default_weight_decay: float = _knob(
        5e-4, P.POSITIVE, "weight decay proposed when a run has none (seeds 003)")
    default_dropout: float = _knob(
        0.3, P.Param(float, 0.0, 1.0, lo_open=True, hi_open=True),
        "dropout proposed when a run has none or very little (seeds 003: 0.2-0.5)")
    min_bn_batch: int = _knob(
        32, P.COUNT, "smallest batch size that gives BatchNorm usable statistics "
        "(anchors b9: 16-32)")
    sgd_momentum: float = _knob(
        0.9, P.Param(float, 0.0, 1.0, lo_open=True, hi_open=True),
        "momentum proposed for plain SGD run with momentum 0 (seeds 003)")
    max_warmup_share: float = _knob(
        0.10, P.SHARE, "warmup is capped at this share of the run's steps (tuning playbook)")
    min_warmup_share: float = _knob(
        0.05, P.FRACTION, "a warmup shorter than this share of the run does little; "
        "proposals are at least this long (within max_warmup_share)")
    warmup_onset_multiple: float = _knob(
        2.0, P.POSITIVE, "the warmup covers this multiple of the steps the trouble took to "
        "show")
    max_warmup_onset: float = _knob(
        0.5, P.SHARE, "warmup is proposed only for trouble that starts within this share "
        "of the run (later trouble is not a start-up problem)")
    clip_percentile: float = _knob(
        90.0, P.Param(float, 0.0, 100.0, lo_open=True),
        "clip at this percentile of the grad norms logged before the trouble (tuning "
        "playbook)")
    max_clipped_share: float = _knob(
        0.5, P.FRACTION, "when more than this share of the logged updates would be "
        "clipped, lower the LR instead of clipping")
    default_clip_norm: float = _knob(
        1.0, P.POSITIVE, "global grad-norm clip proposed when no grad norms are logged to "
        "take a percentile of")

    # -- the optimizer's usual LR range (a value far outside it is moved into it)
    sgd_lr_low: float = _knob(1e-3, P.POSITIVE, "bottom of plain/momentum SGD's usual LR "
                              "range (seeds 001)")
    sgd_lr_high: float = _knob(0.5, P.POSITIVE, "top of SGD's usual LR range")
    adam_lr_low: float = _knob(1e-5, P.POSITIVE, "bottom of Adam/AdamW's usual LR range")
    adam_lr_high: float = _knob(3e-3, P.POSITIVE, "top of Adam/AdamW's usual LR range")
    rmsprop_lr_low: float = _knob(1e-5, P.POSITIVE, "bottom of RMSprop's usual LR range")
    rmsprop_lr_high: float = _knob(1e-2, P.POSITIVE, "top of RMSprop's usual LR range")
    lr_far_factor: float = _knob(
        3.0, P.AT_LEAST_ONE, "an LR more than this factor below the bottom (or above the "
        "top) of the optimizer's usual range is far outside it: a run that never learned "
        "gets its LR moved into the range")
    ramp_tail_share: float = _knob(
        0.25, P.SHARE, "a warmup never ends when the logged LR still rises over this last "
        "share of the run and ends at its peak")
    ramp_min_rise: float = _knob(
        1.2, P.AT_LEAST_ONE, "... and rises by at least this factor over that share")
    bn_momentum_fix: float = _knob(
        0.1, P.Param(float, 0.0, 1.0, lo_open=True, hi_open=True),
        "BatchNorm momentum proposed when the logged one is 0 or 1 (running statistics "
        "never update, or are the last batch's; PyTorch's default 0.1, Keras's 0.9 in its "
        "inverted convention)")
    bn_momentum_with_drop_last: bool = _knob(
        True, P.FLAG, "a BatchNorm momentum of 1 set back to bn_momentum_fix carries "
        "drop_last in the same trial (together_with) unless the run already drops it: at "
        "momentum 1 eval mode used the last training batch's statistics, and the last "
        "batch of an epoch is the incomplete one (bench/README.md round 13: on the 4-seed "
        "oracle, momentum 0.1 alone misses the level where drop_last reaches it, 0.340 vs "
        "0.151 / bar 0.321; campaigns +2 (4 seeds) and +1 (2 seeds), none lost; on 16 "
        "held-out runs alone 11, with drop_last 14, none lost; momentum 0, statistics "
        "never updated, carries nothing)")
    default_transformer_dropout: float = _knob(
        0.1, P.Param(float, 0.0, 1.0, lo_open=True, hi_open=True),
        "attention/hidden dropout proposed for an overfitting transformer that has less "
        "(BERT's and GPT-2's default)")
    tiny_bn_batch: int = _knob(
        8, P.COUNT, "a batch this small or smaller gives BatchNorm too few samples: "
        "GroupNorm is the first advice")
    lr_range_landing: float = _knob(
        0.75, P.FRACTION, "an LR proposal that a relative move would leave outside the "
        "optimizer's usual range lands at this geometric position inside it (0 = bottom, "
        "1 = top; 0.75 = upper middle); an unknown optimizer gets the widest range")
    relu_with_he_init: bool = _knob(
        True, P.FLAG, "a switch from a saturating activation (sigmoid/tanh) to ReLU carries "
        "He (Kaiming) init with it, applied in the same trial (the recommendation's "
        "together_with): ReLU under an init scaled for sigmoid/tanh still vanishes in a "
        "deep stack, and He init alone does not revive a saturating net (He et al. 2015)")
    clip_with_first_blowup: bool = _knob(
        True, P.FLAG, "a regression whose loss went non-finite and is told to standardise "
        "its targets gets gradient clipping at default_clip_norm in the same trial "
        "(together_with): clipping bounds the updates whatever else is unscaled (inputs, "
        "an init); bench/README.md fourth session: clip alone fixes the two corpus cases "
        "where standardising alone stays non-finite")
    short_run_steps: int = _knob(
        1000, P.COUNT, "a run planned for fewer steps than this that never left its "
        "initial level with an LR far below the usual range has no steps to spare: its LR "
        "lands at short_run_landing instead of lr_range_landing (the progress a run makes is "
        "about LR x steps; a tiny LR says nothing about where the LR becomes unstable)")
    short_run_landing: float = _knob(
        1.0, P.FRACTION, "where in the usual range (geometric, 0 = bottom, 1 = top) a tiny "
        "LR of a short run lands (bench/README.md round 6: Adam 7.2e-4 and SGD 0.11 leave "
        "chance but miss the level in 240-290 steps; 3e-3 and 0.5 reach it)")
    short_diverged_landing: float = _knob(
        0.9, P.FRACTION, "where in the usual range (geometric) an LR far above it lands "
        "when the run has fewer than short_run_steps steps (lr_range_landing otherwise): "
        "the blow-up says nothing about where below it the LR is stable, and a short run "
        "needs LR x steps to reach its level (bench/README.md round 7: AdamW 7.2e-4 "
        "misses the level in 176 steps, 1.5e-3 and 3e-3 reach it; SGD 0.25-0.5 keeps two "
        "171-264 step runs fixed); below 1 for a margin under the range's top")
    # -- divergence
    sudden_points: int = _knob(
        3, P.COUNT, "a loss that goes non-finite within this many logged points after it "
        "turned upward blew up suddenly: cut the LR by lr_cut_violent")
    violent_rise: float = _knob(
        100.0, P.AT_LEAST_ONE, "a loss that rose this many times its minimum before the "
        "blow-up rose violently: cut the LR by lr_cut_violent")
    steep_rise: float = _knob(
        10.0, P.AT_LEAST_ONE, "a loss that rose this many times its minimum (or went "
        "non-finite after a gradual rise) rose steeply: cut the LR by lr_cut_steep")
    lr_cut_violent: float = _knob(10.0, P.AT_LEAST_ONE, "LR divisor for a violent blow-up")
    lr_cut_steep: float = _knob(5.0, P.AT_LEAST_ONE, "LR divisor for a steep blow-up")
    lr_cut_mild: float = _knob(3.0, P.AT_LEAST_ONE, "LR divisor for a mild rise")
    scheduled_lr_span: float = _knob(
        1.5, P.AT_LEAST_ONE, "an LR whose logged values before the blow-up span at least "
        "this ratio is scheduled: the proposal is then the LR where the loss turned / "
        "lr_safety_factor")
    lr_jump_ratio: float = _knob(
        10.0, P.AT_LEAST_ONE, "a logged LR that rose this many times from one logged value "
        "to the next before a blow-up jumped: restore the LR before the jump")
    lr_step_factor_fix: float = _knob(
        1.0, P.POSITIVE, "lr_step_factor (what a schedule step multiplies the LR by: "
        "StepLR's gamma) proposed after a mid-run LR jump: 1 keeps the LR that trained "
        "fine before the jump (no jump); the usual decay 0.1 would also change the "
        "schedule after it")
    unscaled_loss_level: float = _knob(
        1000.0, P.POSITIVE, "a diverging loss whose minimum stayed at or above this is a "
        "regression loss on unscaled targets (a classification loss starts near "
        "ln(classes)): standardise the targets first")
    init_blowup_factor: float = _knob(
        10.0, P.AT_LEAST_ONE, "a diverging classifier whose first logged loss is already "
        "this many times its untrained level ln C, with the LR not above its usual range, "
        "blew up at initialisation (weights drawn too large): fix the init first, not the LR")
    init_blowup_classes: int = _knob(
        100_000, P.COUNT, "with the class count not logged, a classifier's untrained level "
        "is taken as ln of this many classes (a generous upper bound: a large vocabulary), "
        "so only a first loss init_blowup_factor x that high counts as an init blow-up")
    blown_first_factor: float = _knob(
        3.0, P.AT_LEAST_ONE, "a flat run whose first logged train loss is this many times "
        "its untrained level ln C (ln init_blowup_classes when C is not logged) and came "
        "down within the first tenth of the run blew up in its first steps (DESIGN.md: "
        "about 3x is a blow-up): never told to raise the LR for a saddle plateau")
    max_scheduled_lr_share: float = _knob(
        0.5, P.SHARE, "that proposal is at most this share of the current LR")
    # -- instability
    many_spikes: int = _knob(
        5, P.COUNT, "this many loss spikes cut the LR by lr_cut_spiky, fewer by "
        "lr_cut_unstable")
    lr_cut_spiky: float = _knob(3.0, P.AT_LEAST_ONE, "LR divisor for many spikes")
    lr_cut_unstable: float = _knob(
        2.0, P.AT_LEAST_ONE, "LR divisor for a few spikes, noise, dead ReLU units")
    late_share: float = _knob(
        0.5, P.SHARE, "instability that starts after this share of the run is late: decay "
        "the LR instead of warming it up")
    max_batch_to_double: int = _knob(
        256, P.COUNT, "an unstable run's batch below this size is doubled (less gradient "
        "noise)")
    # -- overfit
    min_patience: int = _knob(3, P.COUNT, "early-stopping patience, at least (evaluations)")
    max_patience: int = _knob(10, P.COUNT, "early-stopping patience, at most (evaluations)")
    evals_per_patience: int = _knob(
        15, P.COUNT, "one evaluation of patience per this many logged evaluations "
        "(AUTOTRAINER: epochs / 15)")
    weight_decay_factor: float = _knob(
        3.0, P.AT_LEAST_ONE, "an overfit run's weight decay is multiplied by this")
    strong_overfit_pct: float = _knob(
        50.0, P.POSITIVE, "a val curve that ended this many % worse than its best overfits "
        "strongly: multiply the weight decay by strong_weight_decay_factor")
    strong_weight_decay_factor: float = _knob(
        10.0, P.AT_LEAST_ONE, "weight decay factor for a strong overfit")
    max_weight_decay: float = _knob(
        0.1, P.POSITIVE, "weight decay is not raised beyond this")
    decoupled_weight_decay: float = _knob(
        0.05, P.POSITIVE, "weight decay proposed for an AdamW run that has none (decoupled "
        "decay: usual range 0.01-0.1, as explain OVF001 says)")
    max_coupled_weight_decay: float = _knob(
        5e-3, P.POSITIVE, "weight decay of SGD/Adam (added to the gradient: usual range "
        "5e-4 to 5e-3) is not raised beyond this; max_weight_decay caps AdamW and unknown "
        "optimizers")
    min_stop_share: float = _knob(
        0.1, P.SHARE, "an early stop is never proposed before this share of the run's "
        "length (a val curve best at its first evaluations says regularise, not stop at "
        "step 8)")
    adaptive_coupled_weight_decay: float = _knob(
        5e-3, P.POSITIVE, "weight decay proposed for an overfitting Adam/RMSprop run that has "
        "none (coupled L2: the adaptive denominator scales the decay down for weights with "
        "large gradients, Loshchilov & Hutter 2019, so the SGD default 5e-4 barely "
        "regularises; the top of the coupled range, max_coupled_weight_decay)")
    stop_with_dropout: bool = _knob(
        True, P.FLAG, "an early stop of an overfitting run whose logged dropout is below "
        "min_dropout carries the finding's own dropout move in the same trial "
        "(together_with): the stop keeps the best checkpoint of a model that began to "
        "memorise, dropout lowers the level that checkpoint reaches, and the two do not "
        "conflict (bench/README.md round 11: stop + dropout 0.3 fixes a transformer on 93 "
        "text samples that the stop alone leaves above the level, and keeps the two "
        "overfit cases the stop fixed; on 30 held-out runs it fixes 6 where the stop "
        "alone fixes 5, none lost)")
    min_dropout: float = _knob(
        0.2, P.FRACTION, "dropout below this is raised to default_dropout")
    max_dropout: float = _knob(0.5, P.FRACTION, "dropout is not raised beyond this")
    dropout_step: float = _knob(0.1, P.SHARE, "dropout is raised by this step")
    # -- underfit, plateau, still improving
    small_lr_factor: float = _knob(
        3.0, P.AT_LEAST_ONE, "a small LR (below 1e-3 for SGD, 1e-4 otherwise) of an "
        "underfit run is multiplied by this")
    tiny_lr: float = _knob(1e-5, P.POSITIVE, "an LR below this is tiny: multiply it by "
                           "tiny_lr_factor instead")
    tiny_lr_factor: float = _knob(10.0, P.AT_LEAST_ONE, "LR factor for a tiny LR")
    heavy_reg_factor: float = _knob(
        3.0, P.AT_LEAST_ONE, "weight decay above this multiple of the optimizer's usual "
        "maximum holds an underfit or never-learning run down: it is set back to the usual "
        "default, first")
    heavy_reg_with_fit: bool = _knob(
        True, P.FLAG, "an underfitting run held down by heavy regularisation (see "
        "heavy_reg_factor, max_dropout) gets it set back together with the finding's own "
        "capacity increase and, when advised, its length extension, in the same trial "
        "(together_with): the regularisation held the fit down for the whole run, so "
        "lifting it alone leaves a model that still cannot fit in the steps it has "
        "(bench/README.md round 11: weight decay 0.1 -> 5e-4 alone, or with x2 width, "
        "or with 1000 steps, misses the level; all three reach it; on 15 held-out runs "
        "the set-back fixes 11 alone and 14 with what it carries, none lost)")
    weight_decay_divisor: float = _knob(
        10.0, P.AT_LEAST_ONE, "an underfit run's weight decay is divided by this")
    min_dropout_to_halve: float = _knob(
        0.1, P.FRACTION, "an underfit run's dropout of at least this is halved")
    still_learning_gain: float = _knob(
        0.02, P.NON_NEGATIVE, "an underfit train loss that still fell this share over the "
        "last quarter of the run is still learning: train longer")
    capacity_with_length: bool = _knob(
        True, P.FLAG, "an underfitting short run (fewer than short_run_steps steps) told "
        "to grow its model carries the finding's own length extension in the same trial "
        "(together_with), when the finding advises one (the train loss still fell, or its "
        "LR annealed to the end): a bigger model needs at least the steps the small one "
        "lacked, and a short run's progress is about LR x steps (bench/README.md round 13: "
        "width x2 alone leaves two short annealed campaign runs underfit in every seed, "
        "with 1000 steps both are fixed over 2 and 4 seeds; on 12 held-out short runs x2 "
        "alone fixes 0, with the length 5, and ends lower in all 12; the capacity stays "
        "the top move, so no bottleneck run loses it)")
    longer_first_gain: float = _knob(
        0.05, P.NON_NEGATIVE, "an underfit train loss that still fell this share over the "
        "last quarter was stopped while learning: training longer (the cheapest, evidence-"
        "sized fix) comes before a bigger model")
    plateau_lr_factor: float = _knob(
        3.0, P.AT_LEAST_ONE, "the LR of a run stuck at a poor level (or with a small LR) "
        "is multiplied by this")
    annealed_share: float = _knob(
        0.05, P.SHARE, "an LR below this share of its peak has already decayed (a plateau "
        "there is the end of the schedule)")
    early_decay_share: float = _knob(
        0.25, P.SHARE, "a logged LR that fell below annealed_share of its peak within this "
        "share of the run and stayed there trained the rest at a negligible LR: a run that "
        "never learned gets its schedule sized to the run, not init advice")
    early_saturation: float = _knob(
        0.5, P.SHARE, "a plateau at a good level that starts within this share of the run "
        "saturated early: cut the run")
    cut_share: float = _knob(
        0.2, P.FRACTION, "an early-saturated run stops this share of the way from the "
        "plateau start to its end")
    big_tail_gain: float = _knob(
        0.05, P.NON_NEGATIVE, "a curve still improving by this share over its tail (or by "
        "big_tail_share of its progress) trains long_extension longer, else "
        "short_extension")
    big_tail_share: float = _knob(
        0.15, P.NON_NEGATIVE, "share of its total progress a tail must gain to count as big "
        "(see big_tail_gain)")
    long_extension: float = _knob(2.0, P.AT_LEAST_ONE, "length factor for a big tail gain "
                                  "(and for an underfit run still learning)")
    max_short_extension: float = _knob(
        8.0, P.AT_LEAST_ONE, "an underfit run of fewer than short_run_steps steps that "
        "still learns, or whose logged LR annealed to its end (the schedule flattened the "
        "tail, not convergence), trains up to short_run_steps steps, at least "
        "long_extension and at most this factor longer (progress is about LR x steps; "
        "bench/README.md round 9: x2 leaves 235- and 176-step runs underfit or within "
        "the seed gate; 1000 steps removes the state in both seeds of both and fixes the "
        "176-step one)")
    short_extension: float = _knob(1.5, P.AT_LEAST_ONE, "length factor for a small tail gain")

    @classmethod
    def from_config(cls, values: Mapping[str, Any]) -> AdvicePolicy:
        """The policy with ``[tool.diagnose.advice]`` applied; ConfigError naming the key
        for an unknown key or a value out of range."""
        from diagnose.config import ConfigError

        specs = {f.name: f.metadata["param"] for f in dataclasses.fields(cls)}
        out: dict[str, Any] = {}
        for key, value in values.items():
            spec = specs.get(key)
            if spec is None:
                known = ", ".join(sorted(specs))
                raise ConfigError(f"config key 'advice.{key}' is not an advice policy "
                                  f"parameter (known: {known})")
            try:
                out[key] = spec.coerce(value)
            except ValueError as exc:
                raise ConfigError(f"config key 'advice.{key}' {exc}") from None
        return cls(**out)


def ordinal(x: float) -> str:
    """90 -> '90th', 1 -> '1st', 92.5 -> '92.5th' (for "the 90th percentile")."""
    if float(x).is_integer():
        n = int(x)
        suffix = "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")
        return f"{n}{suffix}"
    return f"{x:g}th"


def format_policy_doc(policy: AdvicePolicy | None = None) -> str:
    """Plain text for ``diagnose explain advice``: each parameter, its value, range and
    meaning."""
    policy = policy or AdvicePolicy()
    lines = ["advice policy",
             "",
             textwrap.fill("The numbers the recommendations are computed with. Override "
                           "them in [tool.diagnose.advice].", width=88),
             "",
             "Parameters (value; override in [tool.diagnose.advice])"]
    for f in dataclasses.fields(policy):
        spec: P.Param = f.metadata["param"]
        value = getattr(policy, f.name)
        lines.append(f"  {f.name} = {value!r}  ({spec.describe()})")
        lines.append(textwrap.fill(f.metadata["doc"], width=88, initial_indent="      ",
                                   subsequent_indent="      "))
    return "\n".join(lines) + "\n"
