"""Batch-norm failures: training looks fine, evaluation mode does not.

* BN001 ``eval_collapse``: train is stable and good from early on, while the eval-mode
  curves are erratic by orders of magnitude (val loss jumping x10 between evaluations)
  or sit at chance level the whole run.  In eval mode BN uses running statistics; with
  tiny batches, dropout before BN, or a train/eval distribution shift those statistics
  are wrong and eval outputs collapse.  A val loss that *steadily* rises is overfitting,
  not this, so the chance branch requires the val loss not to trend upward.  Branches:
  erratic, broken (val >> train from the first evaluation), chance (val accuracy),
  never_good (val apart from train from the start, never better), stuck (one repeated
  val accuracy), swing (val far above train or the untrained level, early and late),
  flat_at_chance (val flat at ln C beside a train that got good), runaway (val
  leaving its first value by a large factor per evaluation) and blown_unmemorised (val
  never good ends three times the untrained level beside a train loss that fell but
  is not near zero).  A val that starts beside train and creeps upward beside a
  memorised train loss is memorisation: the overfit rules' call.
* BN002 ``bn_statistics_degenerate``: BN running variance or gamma histograms collapse
  toward 0 or explode relative to their first logged value.

Both add ``batch_size`` / ``normalization`` from the hyperparameters to the evidence;
batch size <= ``small_batch`` with batch norm is the classic cause.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any

import numpy as np

from diagnose import signals
from diagnose.detectors import RuleContext
from diagnose.detectors import params as P
from diagnose.detectors.divergence import cross_entropy_like
from diagnose.detectors.progress import (
    Curve,
    accuracy_curve,
    accuracy_fractions,
    curve,
    early_eval_ratio,
    early_level,
    end_level,
    ends_nonfinite,
    fmt,
    get_curve,
    level,
    level_before_log,
    pct,
    smoothed,
)
from diagnose.detectors.rule import (
    ECHO,
    Found,
    Rule,
    RuleEvidence,
    RuleParams,
    internal,
    optional,
    param,
    rule,
)
from diagnose.hparams import finite_number, uses_batch_norm
from diagnose.metrics import Role, Series

if TYPE_CHECKING:
    from diagnose.advice.moves import AdviceContext
    from diagnose.advice.reconcile import Candidate
    from diagnose.findings import Finding


def _hparam_evidence(ctx: RuleContext, p: Any) -> dict[str, Any]:
    """batch_size / small_batch / normalization / uses_batch_norm, when known."""
    ev: dict[str, Any] = {}
    bs = ctx.hparams.get("batch_size")
    norm = ctx.hparams.get("normalization")
    if isinstance(bs, (int, float)) and not isinstance(bs, bool):
        ev["batch_size"] = bs
        ev["small_batch"] = bool(bs <= float(p.small_batch))
    if norm is not None:
        ev["normalization"] = norm
        ev["uses_batch_norm"] = uses_batch_norm(ctx.hparams)
    return ev


def _log_jumps(c: Curve) -> float:
    """Median absolute change of log(value) between consecutive points."""
    return float(np.median(np.abs(np.diff(np.log(c.values))))) if len(c) > 2 else 0.0


@rule
class BN001(Rule["BN001.Params", "BN001.Evidence"]):
    """Eval-mode curves erratic by orders of magnitude, or at chance, while train is
    stable and good early; never on a model the logged configuration says has no batch
    norm."""

    id = "BN001"
    detector = "eval_collapse"

    @dataclass(frozen=True)
    class Params(RuleParams):
        min_points: int = param(P.COUNT)
        jump_factor: float = param(P.AT_LEAST_ONE)
        train_jump_factor: float = param(P.AT_LEAST_ONE)
        min_spread: float = param(P.NON_NEGATIVE)
        acc_tol: float = param(P.FRACTION)
        early_frac: float = param(P.SHARE)
        train_good: float = param(P.FRACTION)
        max_val_loss_tau: float = param(P.TAU)
        early_ratio: float = param(P.AT_LEAST_ONE)
        acc_gap: float = param(P.FRACTION)
        small_batch: int = param(P.COUNT)
        min_val_points: int = param(P.COUNT)
        train_good_ratio: float = param(P.SHARE)
        never_frac: float = param(P.SHARE)
        val_bad: float = param(P.SHARE)
        min_gap: float = param(P.AT_LEAST_ONE)
        early_gap: float = param(P.AT_LEAST_ONE)
        acc_learned: float = param(P.FRACTION)
        stuck_min_points: int = param(P.COUNT)
        stuck_share: float = param(P.SHARE)
        stuck_floor: float = param(P.SHARE)
        swing_min_points: int = param(P.COUNT)
        swing_ratio: float = param(P.AT_LEAST_ONE)
        swing_share: float = param(P.SHARE)
        far_bad: float = param(P.AT_LEAST_ONE)
        loose_train_ratio: float = param(P.SHARE)
        flat_rise: float = param(P.NON_NEGATIVE)
        min_swings: int = param(P.COUNT)
        swing_jump_floor: float = param(P.AT_LEAST_ONE)
        swing_noise_mult: float = param(P.AT_LEAST_ONE)
        train_blown: float = param(P.AT_LEAST_ONE)
        memo_floor: float = param(P.SHARE)
        first_evals: int = param(P.COUNT)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        first_step: int = internal(0)
        early_frac: float = internal(0.0)
        batch_size: float | None = optional()
        small_batch: bool | None = optional()
        normalization: str | int | float | bool | None = optional()
        uses_batch_norm: bool | None = optional()
        #: "erratic" (val loss jumps), "broken" (val >> train from the first
        #: evaluations), "chance" (val accuracy at chance throughout) or "never_good"
        #: (val loss never leaves its first, untrained level while train gets good) or
        #: "stuck" (val accuracy repeats one value: a constant eval-mode prediction) or
        #: "swing" (val loss swings to many times the train loss, early and late) or
        #: "flat_at_chance" (val loss flat at ln C from the first evaluation while the
        #: train loss falls below half of it) or "runaway" (val loss leaves its first,
        #: untrained level by a median factor of jump_factor per evaluation) or
        #: "blown_unmemorised" (val never good ends train_blown x the untrained level
        #: while the train loss fell but stays memo_floor of it: not memorised)
        branch: str = "erratic"
        val_median_jump_factor: float | None = optional()
        train_median_jump_factor: float | None = optional()
        val_p10: float | None = optional()
        val_p90: float | None = optional()
        val_spread: float | None = optional()
        train_end: float | None = optional()
        early_val_over_train: float | None = optional()
        val_acc_early: float | None = optional()
        num_classes: int | None = optional()
        chance_accuracy: float | None = optional()
        val_acc_median: float | None = optional()
        val_acc_end: float | None = optional()
        train_acc_early: float | None = optional()
        untrained_level: float | None = optional()
        val_first: float | None = optional()
        val_min: float | None = optional()
        val_median: float | None = optional()
        val_end: float | None = optional()
        val_acc_best: float | None = optional()
        val_acc_stuck: float | None = optional()
        stuck_share: float | None = optional()
        train_acc_end: float | None = optional()
        swing_evaluations: int | None = optional()
        evaluations: int | None = optional()
        val_max_over_train: float | None = optional()
        swing_ratio: float | None = optional()
        swing_excursions: int | None = optional()
        thresholds: RuleParams | None = field(default=None, metadata=ECHO)

    def detect(self, ctx: RuleContext,
               p: BN001.Params) -> list[Found[BN001.Evidence]] | None:
        if uses_batch_norm(ctx.hparams) is False:
            return []  # the log says the model has no batch norm: nothing to collapse
        found = self._detect(ctx, p)
        if found is None or found:
            return found
        for branch in (_never_good, _stuck, _swing, _flat_at_chance, _runaway,
                       _blown_unmemorised):
            hit = branch(ctx, p)
            if hit is not None:
                return [hit]
        return []

    def _detect(self, ctx: RuleContext,
                p: BN001.Params) -> list[Found[BN001.Evidence]] | None:
        val = get_curve(ctx, Role.VAL_LOSS)
        train = get_curve(ctx, Role.TRAIN_LOSS)
        vacc = _acc(ctx, Role.VAL_METRIC)
        tacc = _acc(ctx, Role.TRAIN_METRIC)
        if (val is None or train is None) and (vacc is None or tacc is None):
            return None
        if ends_nonfinite(ctx):
            return []
        min_points = p.min_points
        hp = _hparam_evidence(ctx, p)
        # branch 1: erratic val loss, stable train loss (evaluations before any train
        # blow-up only)
        early = (_before_train_blowup(ctx, val, train, float(p.train_blown))
                 if val is not None and train is not None else None)
        if (
            early is not None and train is not None and len(early) >= min_points
            and len(train) >= min_points
            and float(np.min(early.values)) > 0 and float(np.min(train.values)) > 0
        ):
            vj, tj = _log_jumps(early), _log_jumps(train)
            lo, hi = np.percentile(early.values, [10, 90])
            spread = float(hi / lo)
            if (
                vj >= np.log(float(p.jump_factor))
                and tj <= np.log(float(p.train_jump_factor))
                and spread >= float(p.min_spread)
                and float(np.median(early.values)) >= float(p.val_bad) * _untrained(ctx, train)
                and _bad_from_start(ctx, early, train, p)
                and not eval_ends_learned(ctx, p)
            ):
                return [Found(early.tag, int(early.steps[0]), BN001.Evidence(
                    **hp, branch="erratic", val_median_jump_factor=float(np.exp(vj)),
                    train_median_jump_factor=float(np.exp(tj)), val_p10=float(lo),
                    val_p90=float(hi), val_spread=spread, train_end=end_level(train),
                    thresholds=p))]
        # branch 2: broken from the first evaluations: val loss >> train loss and val
        # accuracy well below train accuracy (overfitting starts with val tracking train)
        ratio = early_eval_ratio(ctx, float(p.early_frac))
        if ratio is not None and ratio >= float(p.early_ratio) and vacc is not None \
                and tacc is not None and len(vacc) >= 2 and len(tacc) >= 2:
            end = float(vacc.steps[0]) + float(p.early_frac) * vacc.span
            va = vacc.raw(level(vacc.steps, vacc.values, float(vacc.steps[0]), end,
                                at_end=False))
            ta = tacc.raw(level(tacc.steps, tacc.values, float(tacc.steps[0]),
                                max(end, float(tacc.steps[0])), at_end=False))
            if ta - va >= float(p.acc_gap) and not eval_outputs_learned(ctx, float(p.acc_learned)):
                first = int(val.steps[0]) if val is not None else int(vacc.steps[0])
                return [Found(val.tag if val is not None else vacc.tag, first, BN001.Evidence(
                    first_step=first, **hp, branch="broken", early_val_over_train=ratio,
                    val_acc_early=va, train_acc_early=ta, thresholds=p))]
        # without a train accuracy: train good from the start by its loss (below any
        # classifier's chance level) while val accuracy never got right
        if ratio is not None and ratio >= float(p.early_ratio) and vacc is not None \
                and tacc is None and val is not None and train is not None \
                and len(vacc) >= 2 and len(train) >= 2:
            end = float(vacc.steps[0]) + float(p.early_frac) * vacc.span
            va = vacc.raw(level(vacc.steps, vacc.values, float(vacc.steps[0]), end,
                                at_end=False))
            t_early = early_level(train)
            if va < float(p.acc_learned) \
                    and _below_any_chance(ctx, t_early, float(p.train_good_ratio)) \
                    and not eval_outputs_learned(ctx, float(p.acc_learned)):
                first = int(val.steps[0])
                return [Found(val.tag, first, BN001.Evidence(
                    first_step=first, **hp, branch="broken", early_val_over_train=ratio,
                    val_acc_early=va, train_end=t_early, thresholds=p))]
        # branch 3: val accuracy at chance throughout, train accuracy good early
        n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
        if vacc is None or tacc is None or n_classes is None:
            return []
        if len(vacc) < min_points or len(tacc) < min_points:
            return []
        chance = signals.chance_accuracy(n_classes)
        tol = float(p.acc_tol) * (1.0 - chance)
        v_med = -float(np.median(vacc.values))
        v_end = vacc.raw(end_level(vacc))
        early_end = float(tacc.steps[0]) + float(p.early_frac) * tacc.span
        t_early = tacc.raw(level(tacc.steps, tacc.values, float(tacc.steps[0]), early_end))
        good = chance + float(p.train_good) * (1.0 - chance)
        if not (v_med <= chance + tol and v_end <= chance + tol and t_early >= good):
            return []
        if val is not None and len(val) >= 3:
            tr = signals.robust_trend(val.steps, val.values)
            if np.isfinite(tr.tau) and tr.tau >= float(p.max_val_loss_tau):
                return []  # a steadily rising val loss is memorisation (OVF001)
        return [Found(vacc.tag, int(vacc.steps[0]), BN001.Evidence(
            early_frac=float(p.early_frac), **hp, branch="chance", num_classes=n_classes,
            chance_accuracy=chance, val_acc_median=v_med, val_acc_end=v_end,
            train_acc_early=t_early, thresholds=p))]

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        from diagnose.recommend import batchnorm_advice

        ev = finding.detail
        if not isinstance(ev, BN001.Evidence):
            return super().advise(ctx, finding)
        return batchnorm_advice(ctx, ev.branch.strip().lower(),
                                finite_number(ev.val_median_jump_factor),
                                finite_number(ev.val_acc_median),
                                finite_number(ev.chance_accuracy), None, None, "",
                                finite_number(ev.batch_size))

    def message(self, ev: BN001.Evidence) -> str:
        if ev.branch == "erratic":
            return (
                f"val loss jumps by a median factor of {ev.val_median_jump_factor:.1f} "
                f"between evaluations (10th-90th percentile {fmt(ev.val_p10)} to "
                f"{fmt(ev.val_p90)}) while train loss moves by "
                f"{ev.train_median_jump_factor:.2f}x per point"
            )
        if ev.branch == "broken" and ev.train_acc_early is None:
            return (
                f"val loss is {ev.early_val_over_train:.0f}x the train loss from the first "
                f"evaluation (step {ev.first_step}) on while val accuracy "
                f"{fmt(ev.val_acc_early)} is not right and the train loss already sits at "
                f"{fmt(ev.train_end)}, below any classifier's chance level (no train "
                f"accuracy logged)"
            )
        if ev.branch == "broken":
            return (
                f"val loss is {ev.early_val_over_train:.0f}x the train loss from the first "
                f"evaluation (step {ev.first_step}) on while val accuracy "
                f"{fmt(ev.val_acc_early)} trails train accuracy {fmt(ev.train_acc_early)}"
            )
        if ev.branch == "never_good":
            return (
                f"val loss never gets good: its minimum {fmt(ev.val_min)} stays near its "
                f"first value {fmt(ev.val_first)} (untrained level about "
                f"{fmt(ev.untrained_level)}) and ends at {fmt(ev.val_end)} while train loss "
                f"falls to {fmt(ev.train_end)}"
            )
        if ev.branch == "swing":
            return (
                f"val loss swings to at least {fmt(ev.swing_ratio)}x the train loss or "
                f"{fmt(_far_bad(ev))}x the untrained level {fmt(ev.untrained_level)}"
                f" at {ev.swing_evaluations} of {ev.evaluations} evaluations in "
                f"{ev.swing_excursions} separate excursions (up to "
                f"{fmt(ev.val_max_over_train)}x, median jump "
                f"{fmt(ev.val_median_jump_factor)}x between evaluations) while train loss "
                f"falls to {fmt(ev.train_end)}"
            )
        if ev.branch == "runaway":
            return (
                f"val loss never gets good: from its first evaluation {fmt(ev.val_first)} "
                f"it grows by a median factor of {fmt(ev.val_median_jump_factor)} per "
                f"evaluation to {fmt(ev.val_end)} (untrained level about "
                f"{fmt(ev.untrained_level)}) while train loss falls to {fmt(ev.train_end)}"
            )
        if ev.branch == "blown_unmemorised":
            times = (ev.val_end / ev.untrained_level
                     if ev.val_end is not None and ev.untrained_level else None)
            return (
                f"val loss never gets good: it ends at {fmt(ev.val_end)}, {fmt(times)}x "
                f"the untrained level {fmt(ev.untrained_level)} (minimum {fmt(ev.val_min)}, "
                f"first {fmt(ev.val_first)}) while the train loss falls only to "
                f"{fmt(ev.train_end)}: eval-mode outputs far worse than an untrained model's "
                f"beside a train fit that is not memorised"
            )
        if ev.branch == "flat_at_chance":
            source = (f"ln C, {ev.num_classes} classes" if ev.num_classes is not None
                      else "as the log shows it, no class count")
            return (
                f"val loss never leaves the untrained level {fmt(ev.untrained_level)} "
                f"({source}): its minimum {fmt(ev.val_min)} and end "
                f"{fmt(ev.val_end)} sit at chance while train loss falls to "
                f"{fmt(ev.train_end)}"
            )
        if ev.branch == "stuck":
            return (
                f"val accuracy repeats the same value {fmt(ev.val_acc_stuck)} in "
                f"{pct(ev.stuck_share or 0.0)} of evaluations while train loss falls to "
                f"{fmt(ev.train_end)} and the val loss never gets below "
                f"{fmt(ev.val_min)} (first {fmt(ev.val_first)})"
            )
        return (
            f"val accuracy stays at chance ({fmt(ev.val_acc_median)} median, chance "
            f"{fmt(ev.chance_accuracy)} for {ev.num_classes} classes) while train accuracy "
            f"is already {fmt(ev.train_acc_early)} in the first {ev.early_frac:.0%} of steps"
        )


def _never_good(ctx: RuleContext, p: BN001.Params) -> Found[BN001.Evidence] | None:
    """Val never gets good first (DESIGN.md, batchnorm_collapse): the val loss stays at or
    above its first value and the untrained level while train gets good, and it starts
    apart from train instead of tracking it (memorisation starts with val ~ train), unless
    the logged configuration says the model has batch norm: memorisation is then no
    reading of a val that never got good (DESIGN.md: that is a collapse, not overfit).

    The untrained level is the larger of the train loss's first value, its start level
    and ln C when the class count is known.  A val accuracy that reached ``acc_learned``
    means val did learn, unless the val loss sits ``early_ratio`` times above the train
    loss's first value (eval outputs blown up by orders of magnitude).
    """
    curves = _positive_val_and_train(ctx, p.min_val_points, per_evaluation=False)
    if curves is None:
        return None
    val, train = curves
    ratio = early_eval_ratio(ctx, float(p.early_frac))
    # memorisation starts with val tracking train; a model the log says has batch norm
    # cannot be told from it that way, and there val never good is a collapse (DESIGN.md)
    if uses_batch_norm(ctx.hparams) is not True and (ratio is None
                                                     or ratio < float(p.early_gap)):
        return None
    ref = _untrained(ctx, train)
    n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
    t_end, v_end = end_level(train), end_level(val)
    v_first, v_min = float(val.values[0]), float(np.min(val.values))
    v_med = float(np.median(val.values))
    # val far worse than the untrained level: train only has to fall clearly, or to
    # reach a good accuracy (the train loss's first logged value may already be low);
    # only where the untrained level is a model's at chance (_untrained_is_chance: a
    # fine-tune's first train loss is no untrained level to be far worse than)
    far = v_med >= float(p.far_bad) * ref and _untrained_is_chance(ctx, val.series, val.values)
    vacc = _acc(ctx, Role.VAL_METRIC)
    cls_loss = classifier_loss(ctx, val.series, val.values)
    # without an accuracy, a loss that is not read as a classifier's (classifier_loss:
    # its untrained level as the log shows it is below ln 2, a regression's or a log
    # that starts after learning) and a val loss not far above that level: read as a
    # regression, no chance level applies, and flat above a train loss that fitted its
    # own few samples it is a floor the log does not place (a tiny train set memorised
    # before its first evaluation), not eval-mode outputs at chance (DESIGN.md: near
    # chance, swinging or huge); read as a classifier's logged after it learned, its
    # untrained level is at least ln 2, and a val median below val_bad of that is no
    # chance level either.  Nothing in the log tells the two readings apart, so such a
    # val loss is never good only when it is in both (UND004 reads such logs the same)
    if vacc is None and not far and not cls_loss \
            and v_med < float(p.val_bad) * float(np.log(2)):
        return None
    # val never got much better than it started; with batch norm recorded, also a val
    # that never reached the level train must reach to count as good (train_good_ratio
    # of the untrained level): its early dip is no learning, and DESIGN.md has a
    # batch-norm model's val that never got good as a collapse, not overfit
    never = v_min >= float(p.never_frac) * _never_base(ctx, val, ref) or (
        uses_batch_norm(ctx.hparams) is True and cls_loss
        and v_min > float(p.train_good_ratio) * ref)
    if not (
        _train_good(ctx, t_end, ref, float(p.loose_train_ratio) if far
                    else float(p.train_good_ratio), p)
        and never
        and v_med >= float(p.val_bad) * ref
        and v_end >= float(p.min_gap) * t_end
    ):
        return None
    acc_best = vacc.raw(float(np.min(vacc.values))) if vacc is not None else None
    val_learned = acc_best is not None and acc_best >= float(p.acc_learned) \
        and (ratio is None or ratio < float(p.early_ratio))
    if val_learned or eval_outputs_learned(ctx, float(p.acc_learned)):
        return None
    return Found(val.tag, int(val.steps[0]), BN001.Evidence(
        **_hparam_evidence(ctx, p), branch="never_good", early_val_over_train=ratio,
        untrained_level=ref, num_classes=n_classes, val_first=v_first, val_min=v_min,
        val_median=v_med, val_end=v_end, train_end=t_end, val_acc_best=acc_best,
        thresholds=p))


def _never_base(ctx: RuleContext, val: Curve, ref: float) -> float:
    """The level val must fall clearly below to have got good: its first value, or the
    untrained level when lower (a first evaluation already blown up) for a
    cross-entropy-like loss only.  A cross-entropy's untrained level (about ln C) is the
    same on every split; a regression's is the train targets' spread, which says nothing
    about the val split's scale, so a regression's val is judged on its own first value."""
    v_first = float(val.values[0])
    if classifier_loss(ctx, val.series, val.values):
        return min(v_first, ref)
    return v_first


def _flat_at_chance(ctx: RuleContext, p: BN001.Params) -> Found[BN001.Evidence] | None:
    """Eval-mode results sit at chance from the first evaluation (DESIGN.md,
    batchnorm_collapse) while train gets good: with the class count known, the val loss
    never gets below ``val_bad`` of the untrained level (ln C, or the train loss's early
    level when higher), ends at most ``flat_rise`` above its minimum, and the train loss
    ends at most ``loose_train_ratio`` of that level (train only has to fall clearly: a
    val that never moves from chance beside it neither rises, as memorisation does, nor
    falls with train, as underfit does).  Unlike :func:`_never_good` val may
    start beside train (both at chance): memorisation that starts there makes the val
    loss rise (``flat_rise``: OVF003's turn upward), this one never moves.  Without the
    class count the untrained level is the log's own (UND's reading, never below a
    first val evaluation or the train loss carried back to the start): the val loss
    must then be cross-entropy-like, end ``early_gap`` times the train loss (a val flat
    just above a train loss that did not get far is a generalisation gap) and the
    eval-mode outputs must not have learned."""
    curves = _positive_val_and_train(ctx, p.min_val_points, per_evaluation=False)
    if curves is None:
        return None
    val, train = curves
    n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
    v_min, v_end, t_end = float(np.min(val.values)), end_level(val), end_level(train)
    if n_classes is not None and n_classes >= 2:
        ref = train_ref = _untrained(ctx, train)
    else:
        ref_how = _untrained_from_log(ctx)
        # without ln C the chance level is the log's own untrained level: val must also
        # end early_gap x the train loss (apart from it, not a generalisation gap) and
        # eval outputs must not have learned
        if ref_how is None or not classifier_loss(ctx, val.series, val.values) \
                or v_end < float(p.early_gap) * t_end \
                or eval_outputs_learned(ctx, float(p.acc_learned)):
            return None
        # train must fall clearly from where it started too: an untrained level the val
        # loss's first value raised says nothing about how far train itself got
        ref, train_ref = ref_how, min(ref_how, _train_start_level(ctx, train))
    if not (v_min >= float(p.val_bad) * ref and v_end <= (1.0 + float(p.flat_rise)) * v_min
            and t_end <= float(p.loose_train_ratio) * train_ref):
        return None
    return Found(val.tag, int(val.steps[0]), BN001.Evidence(
        **_hparam_evidence(ctx, p), branch="flat_at_chance", untrained_level=ref,
        num_classes=n_classes, val_first=float(val.values[0]), val_min=v_min,
        val_median=float(np.median(val.values)), val_end=v_end, train_end=t_end,
        thresholds=p))


def _untrained_from_log(ctx: RuleContext) -> float | None:
    """The untrained level as the log shows it without a class count (UND's reading:
    the largest of the train loss's early level, its level carried back to the start,
    the val loss's first value, at least ln 2 when an accuracy is logged)."""
    from diagnose.detectors.underfit import untrained_level

    got = untrained_level(ctx)
    return got[0] if got is not None else None


def _positive_val_and_train(ctx: RuleContext, min_points: int,
                            per_evaluation: bool = True) -> tuple[Any, Any] | None:
    """The val loss (per evaluation, or its main curve; ``min_points`` or more) and the
    train loss (3 or more), both positive, on a run that does not end non-finite."""
    val = (_per_evaluation(ctx, Role.VAL_LOSS, min_points) if per_evaluation
           else get_curve(ctx, Role.VAL_LOSS))
    train = get_curve(ctx, Role.TRAIN_LOSS)
    if val is None or train is None or len(val) < min_points or len(train) < 3 \
            or ends_nonfinite(ctx):
        return None
    if float(np.min(val.values)) <= 0 or float(np.min(train.values)) <= 0:
        return None
    return val, train


def _runaway(ctx: RuleContext, p: BN001.Params) -> Found[BN001.Evidence] | None:
    """Eval-mode results blow up from the first evaluations (DESIGN.md,
    batchnorm_collapse: a huge val loss, val never good first) even when val starts
    beside train: the per-evaluation val loss never gets below ``never_frac`` of its
    first value (or of the untrained level when lower), changes by a median factor of
    ``jump_factor`` between evaluations and ends ``far_bad`` times the untrained level
    or more, while train gets good (``train_good_ratio``).  Memorisation starts at the
    same place but creeps up a few percent per evaluation; this one leaps, so it is
    judged from ``min_val_points`` evaluations."""
    curves = _positive_val_and_train(ctx, p.min_val_points)
    if curves is None:
        return None
    val, train = curves
    ref = _untrained(ctx, train)
    v_first, v_min = float(val.values[0]), float(np.min(val.values))
    v_end, t_end = end_level(val), end_level(train)
    jump = _log_jumps(val)
    if not (v_min >= float(p.never_frac) * min(v_first, ref)
            and jump >= np.log(float(p.jump_factor))
            and v_end >= float(p.far_bad) * ref
            and _train_good(ctx, t_end, ref, float(p.train_good_ratio), p)):
        return None
    return Found(val.tag, int(val.steps[0]), BN001.Evidence(
        **_hparam_evidence(ctx, p), branch="runaway", untrained_level=ref,
        val_first=v_first, val_min=v_min, val_end=v_end, train_end=t_end,
        val_median_jump_factor=float(np.exp(jump)), evaluations=len(val), thresholds=p))


def _blown_unmemorised(ctx: RuleContext,
                       p: BN001.Params) -> Found[BN001.Evidence] | None:
    """Val never gets good and ends at a blown-up level while train is fine (DESIGN.md:
    "a huge val loss while train is fine" is batchnorm_collapse, not divergence), even
    where val starts beside train and creeps: the per-evaluation val loss never gets
    below ``never_frac`` of its first value (or of the untrained level when lower) and
    ends ``train_blown`` times the untrained level or more (the level DESIGN.md calls
    blown up), while the train loss ends at most ``loose_train_ratio`` of that level
    (train fell clearly) but at least ``memo_floor`` of it (train not memorised).  A
    cross-entropy climbs that far above chance only on confident wrong outputs;
    memorisation makes the model that confident on its train set first (its train loss
    near zero), so a val loss several times chance beside a train-mode fit still far
    from confident says the eval-mode outputs differ from the train-mode ones.  Only
    where the untrained level is a model's at chance (a fine-tune's first train loss is
    no untrained level) and the eval-mode outputs have not learned."""
    curves = _positive_val_and_train(ctx, p.min_val_points)
    if curves is None:
        return None
    val, train = curves
    if not _untrained_is_chance(ctx, val.series, val.values) \
            or eval_outputs_learned(ctx, float(p.acc_learned)):
        return None
    ref = _untrained(ctx, train)
    v_first, v_min = float(val.values[0]), float(np.min(val.values))
    v_end, t_end = end_level(val), end_level(train)
    if not (v_min >= float(p.never_frac) * min(v_first, ref)
            and v_end >= float(p.train_blown) * ref
            and float(p.memo_floor) * ref <= t_end <= float(p.loose_train_ratio) * ref):
        return None
    return Found(val.tag, int(val.steps[0]), BN001.Evidence(
        **_hparam_evidence(ctx, p), branch="blown_unmemorised", untrained_level=ref,
        val_first=v_first, val_min=v_min, val_end=v_end, train_end=t_end,
        evaluations=len(val), thresholds=p))


def _stuck(ctx: RuleContext, p: BN001.Params) -> Found[BN001.Evidence] | None:
    """Val accuracy repeats one value in ``stuck_share`` of the evaluations (the model
    predicts the same class for every eval sample: a constant eval-mode output) while the
    train loss gets good (``train_good_ratio``), train accuracy, when logged, ends at least
    ``acc_gap`` above that value (when not, the val loss stays ``early_gap`` times the
    train loss's end: a train loss that only fell from a blown-up start to the val's level
    never got good), and the val loss never gets below ``never_frac`` of its first value:
    eval-mode statistics are broken, whatever the class count.  With the class count
    known and the repeated value at chance (``acc_tol``, as the chance branch reads it),
    train only has to fall clearly: ``loose_train_ratio`` of its early level and of ln C
    (eval outputs at chance beside a train that learned, as in the never-good branch's
    far_bad case)."""
    vacc = _acc(ctx, Role.VAL_METRIC)
    val = get_curve(ctx, Role.VAL_LOSS)
    train = get_curve(ctx, Role.TRAIN_LOSS)
    if vacc is None or val is None or train is None or len(vacc) < p.stuck_min_points \
            or len(train) < 3 or ends_nonfinite(ctx):
        return None
    share, stuck = _repeated(vacc)
    if share < float(p.stuck_share):
        return None
    ref = early_level(train)
    t_end = end_level(train)
    v_first, v_min = float(val.values[0]), float(np.min(val.values))
    # a constant prediction at chance accuracy (class count known): eval outputs sit at
    # chance, so train only has to fall clearly (loose_train_ratio of its early level and
    # of ln C: a train loss that only fell from a bad init to chance learned nothing)
    n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
    ratio = float(p.train_good_ratio)
    if n_classes is not None and n_classes >= 2:
        chance = signals.chance_accuracy(n_classes)
        stuck_frac = float(accuracy_fractions(vacc, np.array([vacc.sign * stuck]))[0])
        if stuck_frac <= chance + float(p.acc_tol) * (1.0 - chance) \
                and t_end <= float(p.loose_train_ratio) * float(np.log(n_classes)):
            ratio = float(p.loose_train_ratio)
    if not (ref > 0 and t_end <= ratio * ref
            and v_first > 0 and v_min >= float(p.never_frac) * v_first):
        return None
    if not _constant_prediction_loss(ctx, val, train, float(p.never_frac),
                                     float(p.stuck_floor)):
        return None
    tacc = _acc(ctx, Role.TRAIN_METRIC)
    t_acc = tacc.raw(end_level(tacc)) if tacc is not None else None
    if (t_acc is not None and t_acc < stuck + float(p.acc_gap)) \
            or (t_acc is None and v_min < float(p.early_gap) * t_end) \
            or eval_outputs_learned(ctx, float(p.acc_learned)):
        return None
    return Found(vacc.tag, int(vacc.steps[0]), BN001.Evidence(
        **_hparam_evidence(ctx, p), branch="stuck", val_acc_stuck=stuck, stuck_share=share,
        train_acc_end=t_acc, untrained_level=ref, val_first=v_first, val_min=v_min,
        train_end=t_end, thresholds=p))


def _swing(ctx: RuleContext, p: BN001.Params) -> Found[BN001.Evidence] | None:
    """Val loss swings wildly from the first evaluations on (DESIGN.md): at least
    ``swing_share`` of the evaluations (two or more, in both halves of the run) sit
    ``swing_ratio`` times above the smoothed train loss at the same step or ``far_bad``
    times above the untrained level (eval worse than an untrained model), consecutive
    evaluations differ by a median factor of ``jump_factor``, the swinging evaluations
    form at least ``min_swings`` separate excursions (val goes up, comes back, goes up
    again: one excursion that recovers is a transient spike, healthy by DESIGN.md) or one
    that never recovers (it lasts from the first half to the last evaluation), and
    train gets good (``train_good_ratio``; ``loose_train_ratio`` when the val median is
    ``far_bad`` times the untrained level).  Unlike the erratic branch the train loss may
    be noisy per step (a tiny last batch spikes it too): it is compared by its smoothed
    level.  A val loss that rises steadily (memorisation) has small jumps and stays quiet.
    Val is read per evaluation: of the val loss series, the one with the fewest points (a per-epoch
    aggregate rather than per-batch val losses, which swing by nature)."""
    curves = _positive_val_and_train(ctx, p.swing_min_points)
    if curves is None:
        return None
    val, train = curves
    val = _before_train_blowup(ctx, val, train, float(p.train_blown))
    if len(val) < p.swing_min_points:
        return None
    swung = _swinging(ctx, val, train, p)
    if swung is None:
        return None
    high, ratio = swung
    untrained = _untrained(ctx, train)
    n, half = len(ratio), len(ratio) // 2
    # from the first evaluations (DESIGN.md: val never gets good first): a val set of a
    # few dozen samples swings on a handful of confident mistakes once the train loss is
    # near zero, after it got good; broken running statistics swing from the start
    if int(high.sum()) < max(2.0, float(p.swing_share) * n) or not high[:half].any() \
            or not high[half:].any() or not high[:p.first_evals].any():
        return None
    # separate excursions: runs of consecutive swinging evaluations
    excursions = int(high[0]) + int(np.sum(high[1:] & ~high[:-1]))
    # an excursion still going at the last evaluation (and, as above, under way in the
    # first half) never recovered: not a transient spike
    if excursions < p.min_swings and not high[-1]:
        return None
    jump = _log_jumps(val)
    t_jump = _per_evaluation_jumps(train, val.steps)
    ref = early_level(train)
    t_end = end_level(train)
    # eval typically worse than an untrained model: train only has to fall clearly
    # (loose_train_ratio), as in the never-good branch
    far = float(np.median(val.values)) >= float(p.far_bad) * untrained
    # erratic: jump_factor per evaluation, or swing_jump_floor when that is
    # swing_noise_mult times what the train loss moves between the same evaluations
    need = min(np.log(float(p.jump_factor)),
               max(np.log(float(p.swing_jump_floor)), float(p.swing_noise_mult) * t_jump))
    if jump < need or not _train_good(
            ctx, t_end, ref, float(p.loose_train_ratio if far else p.train_good_ratio), p) \
            or eval_ends_learned(ctx, p):
        return None
    return Found(val.tag, int(val.steps[0]), BN001.Evidence(
        **_hparam_evidence(ctx, p), branch="swing", swing_evaluations=int(high.sum()),
        evaluations=n, val_max_over_train=float(np.max(ratio)), swing_ratio=float(p.swing_ratio),
        swing_excursions=excursions, val_median_jump_factor=float(np.exp(jump)),
        train_median_jump_factor=float(np.exp(t_jump)),
        untrained_level=untrained, train_end=t_end, thresholds=p))


def _swinging(ctx: RuleContext, val: Curve, train: Curve,
              p: BN001.Params) -> tuple[np.ndarray, np.ndarray] | None:
    """Which val evaluations swing (``swing_ratio`` times the smoothed train loss at the
    same step, or ``far_bad`` times the untrained level: eval worse than an untrained
    model) and the val / train ratio at each; None where the smoothed train loss is not
    positive."""
    ts, tsm = smoothed(ctx, train)
    t_at = np.interp(val.steps, ts, tsm)
    if not np.all(t_at > 0):
        return None
    ratio = val.values / t_at
    far = float(p.far_bad) * _untrained(ctx, train)
    high = (ratio >= float(p.swing_ratio)) | (val.values >= far)
    return high, ratio


def _bad_from_start(ctx: RuleContext, val: Curve, train: Curve, p: BN001.Params) -> bool:
    """One of the first ``first_evals`` val evaluations already swings (as the swing
    branch reads it): eval-mode results bad from the first evaluations, as DESIGN.md's
    batchnorm_collapse has them (val never gets good first).  A val set of a few dozen
    samples jumps on a handful of confident mistakes once train has fitted; that starts
    after val got good."""
    swung = _swinging(ctx, val, train, p)
    return swung is not None and bool(swung[0][:p.first_evals].any())


def _per_evaluation_jumps(train: Curve, steps: np.ndarray) -> float:
    """Median absolute change of log(train loss) between consecutive evaluations: the
    train loss's median over each interval between evaluation ``steps`` (what a
    per-evaluation val loss is comparable with; a per-step train loss is noisier)."""
    # the train points up to each evaluation (and after the last one) form one group
    group = np.searchsorted(steps, train.steps, side="left")
    levels = [float(np.median(train.values[group == k])) for k in np.unique(group)]
    if len(levels) < 3:
        return 0.0
    return float(np.median(np.abs(np.diff(np.log(levels)))))


def _before_train_blowup(ctx: RuleContext, val: Curve, train: Curve,
                         blown: float) -> Curve:
    """The val evaluations before the smoothed train loss first reaches ``blown`` x
    the untrained level: from there the train loss has blown up too, so the eval-mode
    results say nothing about batch-norm statistics (divergence explains them)."""
    ts, tsm = smoothed(ctx, train)
    over = np.flatnonzero(tsm >= blown * _untrained(ctx, train))
    if not len(over):
        return val
    keep = val.steps < ts[over[0]]
    return replace(val, steps=val.steps[keep], values=val.values[keep])


def _far_bad(ev: BN001.Evidence) -> float | None:
    """The far_bad threshold echoed in the evidence (None when not echoed)."""
    return None if ev.thresholds is None else float(ev.thresholds["far_bad"])


def _untrained(ctx: RuleContext, train: Curve) -> float:
    """The untrained model's loss as far as the log shows: the train loss's early level,
    or ln C when the class count is known and higher."""
    ref = early_level(train)
    n_classes = signals.infer_num_classes(ctx.run, ctx.roles)
    if n_classes is not None and n_classes >= 2:
        ref = max(ref, float(np.log(n_classes)))
    return ref


def eval_outputs_learned(ctx: RuleContext, acc_learned: float) -> bool:
    """Eval-mode outputs are right and not blown up: the val accuracy reached
    ``acc_learned`` and the val loss's median sits below the untrained level (at least
    ln 2, the least chance level of any classifier, since a fine-tune's first train loss
    is no untrained level).  A collapse has val at chance or blown up; a val loss that is
    only many times a memorised train loss, beside a good val accuracy, is not one (the
    overfit rules then judge it)."""
    vacc = _acc(ctx, Role.VAL_METRIC)
    val = get_curve(ctx, Role.VAL_LOSS)
    train = get_curve(ctx, Role.TRAIN_LOSS)
    if vacc is None or val is None or train is None:
        return False
    best = float(accuracy_fractions(vacc, vacc.values.min(keepdims=True))[0])
    ref = max(_untrained(ctx, train), float(np.log(2)))
    return best >= acc_learned and float(np.median(val.values)) < ref


def eval_ends_learned(ctx: RuleContext, p: BN001.Params) -> bool:
    """Eval-mode outputs are right at the end of the run: every val accuracy over the
    last ``early_frac`` of the val steps is at least ``acc_learned`` and every val loss
    there sits below the untrained level (at least ln 2).  Val that swung or jumped
    earlier and ends like this got good and stayed good: whatever it did before
    recovered (DESIGN.md: batch-norm collapse never gets good; a tiny val set jumps
    and a transient recovers), while broken running statistics stay broken."""
    vacc = _acc(ctx, Role.VAL_METRIC)
    val = get_curve(ctx, Role.VAL_LOSS)
    train = get_curve(ctx, Role.TRAIN_LOSS)
    if vacc is None or val is None or train is None or len(vacc) < 2:
        return False
    acc_tail = vacc.values[vacc.steps >= float(vacc.steps[-1]) - float(p.early_frac) * vacc.span]
    loss_tail = val.values[val.steps >= float(val.steps[-1]) - float(p.early_frac) * val.span]
    ref = max(_untrained(ctx, train), float(np.log(2)))
    return bool(np.all(accuracy_fractions(vacc, acc_tail) >= float(p.acc_learned))) \
        and bool(np.all(loss_tail < ref))


def _train_good(ctx: RuleContext, t_end: float, ref: float, ratio: float,
                p: BN001.Params) -> bool:
    """Train got good: its loss ends at most ``ratio`` of the untrained level ``ref``, or
    its accuracy (when logged) ends at ``acc_learned`` or more, well above chance for any
    class count (a first logged train loss can already be low: the untrained level is
    then unknown)."""
    if t_end <= ratio * ref:
        return True
    tacc = _acc(ctx, Role.TRAIN_METRIC)
    if tacc is None:
        return _below_any_chance(ctx, t_end, float(p.train_good_ratio))
    return len(tacc) >= 2 \
        and tacc.raw(end_level(tacc)) >= float(p.acc_learned) and t_end < ref


def _below_any_chance(ctx: RuleContext, t_level: float, ratio: float) -> bool:
    """Without a train accuracy, a cross-entropy-like train loss at most ``ratio`` of
    ln 2 (the least chance level of any classifier) is good whatever the class count: a
    first logged point that already averages the learning (HF's first logging interval)
    hides the untrained level, not this.  The val loss must never get below that train
    level: eval-mode outputs that once matched train-mode ones got good first (DESIGN.md:
    a collapse's val never does)."""
    train = get_curve(ctx, Role.TRAIN_LOSS)
    val = get_curve(ctx, Role.VAL_LOSS)
    return train is not None and val is not None and t_level > 0 \
        and t_level <= ratio * float(np.log(2)) \
        and float(np.min(val.values)) >= t_level \
        and classifier_loss(ctx, train.series, train.values)


def classifier_loss(ctx: RuleContext, s: Series, values: np.ndarray) -> bool:
    """A loss read as a classifier's cross-entropy (ln C chance levels apply to it):
    :func:`cross_entropy_like` (named so, an accuracy logged or the class count known),
    or, where nothing in the log tells what the loss is (:func:`_unnamed_loss`), a loss
    whose train side's untrained level as the log shows it (the train loss's early level,
    or its level carried back to the start) is at least ln 2, the least chance level of
    any classifier.  An unnamed loss whose own untrained level sits below every
    classifier's chance level is a fine-tune that started trained or a regression:
    chance-level readings say nothing about it.  The train side decides, not the val
    curve the branches then judge against that level."""
    if cross_entropy_like(ctx, s, values):
        return True
    if not _unnamed_loss(ctx, s, values):
        return False
    train = get_curve(ctx, Role.TRAIN_LOSS)
    if train is None or len(train) < 2 or float(np.min(train.values)) <= 0:
        return False
    return _train_start_level(ctx, train) >= float(np.log(2))


def _train_start_level(ctx: RuleContext, train: Curve) -> float:
    """Where the train loss started as the log shows it: its early level, or its level
    carried back to the start of the run when higher (a log that starts after learning)."""
    ref = early_level(train)
    before = level_before_log(ctx, train,
                              float(ctx.thresholds_of("UND004")["min_first_cover"]))
    return ref if before is None else max(ref, before)


def _untrained_is_chance(ctx: RuleContext, s: Series, values: np.ndarray) -> bool:
    """The untrained level is a model's at chance, so a val far above it is eval worse
    than an untrained model: a cross-entropy-like loss, or an unnamed one
    (:func:`_unnamed_loss`) whose untrained level as the log shows it (UND's reading) is
    at least ln 2.  A fine-tune's first train loss is no untrained model's."""
    if cross_entropy_like(ctx, s, values):
        return True
    ref = _untrained_from_log(ctx)
    return _unnamed_loss(ctx, s, values) and ref is not None and ref >= float(np.log(2))


def _unnamed_loss(ctx: RuleContext, s: Series, values: np.ndarray) -> bool:
    """Nothing in the log tells what the loss is: no accuracy, no class count (else
    :func:`cross_entropy_like` decides), no regression metric or loss name (a plain loop
    or an HF Trainer without ``compute_metrics`` logs only losses); non-negative and not
    a sum of components."""
    if len(values) == 0 or np.any(values < 0) or "+" in s.tag:
        return False
    return not any(m.metric == "accuracy" or signals.regression_name(m.tag)
                   or signals.regression_name(m.metric) for m in ctx.roles.by_tag.values())


def _repeated(acc: Curve) -> tuple[float, float]:
    """The most repeated value of an accuracy curve (to 6 significant digits) and the
    share of points that take it."""
    raw = np.array([float(f"{acc.raw(float(x)):.6g}") for x in acc.values])
    values, counts = np.unique(raw, return_counts=True)
    k = int(np.argmax(counts))
    return float(counts[k]) / len(raw), float(values[k])


def _constant_prediction_loss(ctx: RuleContext, val: Curve, train: Curve,
                              never_frac: float, floor: float) -> bool:
    """The val loss is one a constant eval-mode prediction can have: it sits at chance,
    its median never much better than the untrained level (``never_frac`` of it: a val
    set of a few dozen samples repeats one accuracy under a model whose val loss sits
    well below that level), and it never gets far below it (``floor`` of it: a constant
    prediction's cross-entropy is at least the entropy of the val set's class shares,
    below half of chance only for a val set of nearly one class).  The untrained level is
    the train loss's early level, or ln C when known and higher, and at least ln 2: a
    logged accuracy makes the loss a classifier's."""
    untrained = max(_untrained(ctx, train), float(np.log(2)))
    return float(np.median(val.values)) >= never_frac * untrained \
        and float(np.min(val.values)) >= floor * untrained


def eval_stuck(ctx: RuleContext, min_points: int, share: float, never_frac: float,
               acc_gap: float) -> bool:
    """Val accuracy repeats one value in ``share`` of at least ``min_points`` evaluations
    (a constant eval-mode prediction), train accuracy, when logged, ends at least
    ``acc_gap`` above it (a tiny val set repeating its best accuracy under a perfect
    train fit is not stuck), the val loss never gets below ``never_frac`` of its first
    value and it is one a constant prediction can have (:func:`_constant_prediction_loss`
    with BN001's never_frac and stuck_floor): val was never good, so its curve says
    nothing about generalisation (DESIGN.md: val never good first is
    batchnorm_collapse, not overfit)."""
    vacc = _acc(ctx, Role.VAL_METRIC)
    tacc = _acc(ctx, Role.TRAIN_METRIC)
    val = get_curve(ctx, Role.VAL_LOSS)
    if vacc is None or val is None or len(vacc) < min_points or len(val) < 2:
        return False
    rep, value = _repeated(vacc)
    v_first = float(val.values[0])
    gap_ok = tacc is None or len(tacc) < 2 or tacc.raw(end_level(tacc)) >= value + acc_gap
    if not (rep >= share and gap_ok
            and v_first > 0 and float(np.min(val.values)) >= never_frac * v_first):
        return False
    # the val loss must be one a constant prediction can have (BN001's own boundary)
    bn = ctx.thresholds_of("BN001")
    train = get_curve(ctx, Role.TRAIN_LOSS)
    return train is None or _constant_prediction_loss(
        ctx, val, train, float(bn["never_frac"]), float(bn["stuck_floor"]))


def _per_evaluation(ctx: RuleContext, role: Role, min_points: int) -> Curve | None:
    """The role's curve with the fewest points (at least ``min_points``) among the series
    of the same metric: one value per evaluation, not per batch."""
    main = get_curve(ctx, role)
    if main is None:
        return None
    best = main
    for s in ctx.roles.candidates(role):
        if s.metric != main.series.metric:
            continue
        c = curve(s, False)
        if c is not None and min_points <= len(c) < len(best):
            best = c
    return best


def _acc(ctx: RuleContext, role: Role) -> Curve | None:
    """The split's accuracy curve (oriented), only when the metric is an accuracy."""
    return accuracy_curve(ctx, role, fraction_only=False)


@rule
class BN002(Rule["BN002.Params", "BN002.Evidence"]):
    """BN running variance / gamma histograms collapse to ~0 or explode."""

    id = "BN002"
    detector = "bn_statistics_degenerate"

    @dataclass(frozen=True)
    class Params(RuleParams):
        tag_pattern: str = param(P.REGEX)
        collapse_ratio: float = param(P.POSITIVE)
        explode_ratio: float = param(P.AT_LEAST_ONE)
        abs_floor: float = param(P.NON_NEGATIVE)
        exclude_pattern: str = param(P.REGEX)
        small_batch: int = param(P.COUNT)

    @dataclass(frozen=True)
    class Evidence(RuleEvidence):
        first_step: int = internal(0)
        step: int = internal(0)
        batch_size: float | None = optional()
        small_batch: bool | None = optional()
        normalization: str | int | float | bool | None = optional()
        uses_batch_norm: bool | None = optional()
        degenerate_tags: list[str] = field(default_factory=list)
        worst_tag: str = ""
        kind: str = "collapse"
        rms_first: float = 0.0
        rms_last: float = 0.0
        ratio: float = 0.0
        bn_tags: int = 0
        thresholds: RuleParams | None = field(default=None, metadata=ECHO)

    def detect(self, ctx: RuleContext,
               p: BN002.Params) -> list[Found[BN002.Evidence]] | None:
        hists = ctx.histograms("re:" + str(p.tag_pattern))
        skip = re.compile(str(p.exclude_pattern), re.I)
        series = {t: h for t, h in hists.items() if len(h) >= 2 and not skip.search(t)}
        if not series:
            return None
        bad: list[dict[str, Any]] = []
        for tag, samples in series.items():
            rms = np.array([np.hypot(h.mean, h.std) for h in samples], dtype="float64")
            ok = np.isfinite(rms)
            if ok.sum() < 2:
                continue
            rms, steps = rms[ok], np.array([h.step for h in samples])[ok]
            first, last = float(rms[0]), float(rms[-1])
            if first <= 0:
                continue
            ratio = last / first
            kind = None
            if ratio <= float(p.collapse_ratio) or last <= float(p.abs_floor):
                kind = "collapse"
            elif ratio >= float(p.explode_ratio):
                kind = "explode"
            if kind:
                bad.append({"tag": tag, "kind": kind, "first": first, "last": last,
                            "ratio": ratio, "step": int(steps[-1]),
                            "first_step": int(steps[0])})
        if not bad:
            return []
        worst = max(bad, key=lambda b: abs(np.log(max(b["ratio"], 1e-300))))
        ev = BN002.Evidence(
            first_step=worst["first_step"], step=worst["step"], **_hparam_evidence(ctx, p),
            degenerate_tags=[b["tag"] for b in bad], worst_tag=worst["tag"],
            kind=worst["kind"], rms_first=worst["first"], rms_last=worst["last"],
            ratio=worst["ratio"], bn_tags=len(series), thresholds=p)
        return [Found(worst["tag"], worst["step"], ev)]

    def advise(self, ctx: AdviceContext, finding: Finding) -> list[Candidate]:
        from diagnose.recommend import batchnorm_advice

        ev = finding.detail
        if not isinstance(ev, BN002.Evidence):
            return super().advise(ctx, finding)
        return batchnorm_advice(ctx, "", None, None, None, finite_number(ev.ratio),
                                ev.worst_tag or None, ev.kind.strip().lower(),
                                finite_number(ev.batch_size))

    def message(self, ev: BN002.Evidence) -> str:
        verb = "collapses" if ev.kind == "collapse" else "explodes"
        return (
            f"{ev.worst_tag} {verb} from RMS {fmt(ev.rms_first)} at step {ev.first_step} "
            f"to {fmt(ev.rms_last)} at step {ev.step} ({len(ev.degenerate_tags)} of "
            f"{ev.bn_tags} BN tags degenerate)"
        )
