"""INS001-INS003: spikes and late noise, and the healthy curves that must stay quiet."""

from __future__ import annotations

import numpy as np
from rule_helpers import decay, findings, make_run


def _keras_running_average(epochs=10, per_epoch=1500, seed=0):
    """Keras batch-level metrics: a running mean of noisy batch losses, reset each epoch."""
    r = np.random.default_rng(seed)
    steps, values = [], []
    for e in range(epochs):
        t = e * per_epoch + np.arange(per_epoch)
        batch = decay(t, 2.4, 0.05, 2500) * r.gamma(4.0, 0.25, per_epoch)
        values.append(np.cumsum(batch) / np.arange(1, per_epoch + 1))
        steps.append(t + 1)
    return np.concatenate(steps), np.concatenate(values)


def test_keras_batch_level_sawtooth_is_not_instability():
    steps, loss = _keras_running_average()
    run = make_run({"batch_loss": (steps, loss)})
    rules = {f.rule for f in findings(run)}
    assert not rules & {"INS001", "INS002", "DIV002", "DIV004"}, rules


def test_healthy_noisy_small_batch_run_is_quiet():
    r = np.random.default_rng(1)
    steps = np.arange(20_000)
    loss = r.gamma(2.0, decay(steps, tau=3000) / 2.0)  # batch of 2: very noisy
    rules = {f.rule for f in findings(make_run({"train_loss": (steps, loss)}))}
    assert not rules & {"INS001", "DIV002", "DIV003", "DIV004"}, rules


def test_one_transient_spike_is_not_a_warning():
    r = np.random.default_rng(2)
    steps = np.arange(3000)
    loss = decay(steps, tau=500) * np.exp(r.normal(0, 0.05, 3000))
    loss[1500:1504] *= [6.0, 3.0, 1.5, 1.1]
    got = [f for f in findings(make_run({"train_loss": (steps, loss)}))
           if f.state in ("instability", "divergence")]
    assert not got


def test_repeated_spikes_fire_with_steps_in_evidence():
    r = np.random.default_rng(3)
    steps = np.arange(3000)
    loss = decay(steps, tau=500) * np.exp(r.normal(0, 0.05, 3000))
    at = [700, 1200, 1900, 2500]
    for s in at:
        loss[s:s + 3] *= [5.0, 2.5, 1.3]
    (f,) = findings(make_run({"train_loss": (steps, loss)}), "INS001")
    assert f.evidence["spikes"] == 4 and f.evidence["spike_steps"] == at
    assert f.step == 700 and "4 times" in f.message


def test_noisy_loss_late_fires_and_scales_with_progress():
    r = np.random.default_rng(4)
    steps = np.arange(4000)
    mean = decay(steps, 2.3, 1.6, 500)
    noisy = mean + r.normal(0, 1, 4000) * np.where(steps > 2500, 0.4, 0.05)
    (f,) = findings(make_run({"train_loss": (steps, noisy)}), "INS002")
    assert f.evidence["noise_to_progress"] >= 0.3
    calm = mean + r.normal(0, 0.05, 4000)
    assert not findings(make_run({"train_loss": (steps, calm)}), "INS002")


def test_grad_norm_spikes_need_grad_norm():
    r = np.random.default_rng(5)
    steps = np.arange(2000)
    loss = decay(steps) * np.exp(r.normal(0, 0.03, 2000))
    run = make_run({"train_loss": (steps, loss)})
    res = findings(run)
    assert not [f for f in res if f.rule == "INS003"]
    g = np.exp(r.normal(0, 0.3, 2000))
    g[[300, 800, 1300, 1700]] *= 50
    (f,) = findings(make_run({"train_loss": (steps, loss), "grad_norm": (steps, g)}),
                    "INS003")
    assert f.evidence["spikes"] == 4 and f.evidence["max_ratio"] > 10


def test_a_loss_stuck_at_chance_with_tiny_jitter_is_not_noisy():
    r = np.random.default_rng(6)
    steps = np.arange(3000)
    loss = np.log(10) + r.normal(0, 0.01, 3000)
    assert not findings(make_run({"train_loss": (steps, loss)}), "INS002")
