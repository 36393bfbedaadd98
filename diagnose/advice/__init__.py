"""Advice: from findings to concrete hyperparameter changes.

* :mod:`~diagnose.advice.policy`: the named, documented policy numbers
  (``[tool.diagnose.advice]``, ``diagnose explain advice``);
* :mod:`~diagnose.advice.moves`: the shared moves (scale the LR, warmup, clipping, stop
  at or extend to a step, momentum, LR decay) and the per-run context they read;
* :mod:`~diagnose.advice.reconcile`: candidates, precedence and the reconciliation (one
  direction per quantity, one value per hyperparameter).

:mod:`diagnose.recommend` maps each finding's state to the moves it needs.
"""
