"""The logged configuration read as canonical hyperparameters (diagnose.hparams)."""

from __future__ import annotations

import pytest

from diagnose.hparams import canonicalize, uses_batch_norm


@pytest.mark.parametrize(("raw", "expected"), [
    ({"normalization": "batchnorm"}, True),
    ({"norm_layer": "torch.nn.BatchNorm2d"}, True),
    ({"norm": "sync_bn"}, True),
    ({"norm": "BN"}, True),
    ({"use_bn": True}, True),
    ({"batch_norm": "true"}, True),
    ({"use_bn": False}, False),
    ({"batch_norm": 0}, False),
    ({"normalization": "none"}, False),
    ({"normalization": "groupnorm"}, False),
    ({"norm_layer": "LayerNorm"}, False),
    ({"norm": "gn"}, False),
    ({"normalization": "ln"}, False),
    ({"norm_layer": "InstanceNorm2d"}, False),
    ({"learning_rate": 0.1}, None),
    ({"norm": 2.0}, None),
    ({"norm": "l2"}, None),
    ({"normalization": ""}, None),
])
def test_uses_batch_norm_reads_names_and_switches(raw: dict, expected: bool | None) -> None:
    """A layer name says which normalization the model has; an on/off alias says whether it
    has batch norm; a config that names none, or a value that is neither (a clipping norm
    under a key named ``norm``), says nothing (None, not False)."""
    assert uses_batch_norm(canonicalize(raw)) is expected
