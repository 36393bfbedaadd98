"""Bounded fuzz suite: every log family, damaged every way (tests/fuzz_cases.py).

Per family: a cut at every offset of the last record, a few bit flips, NUL tails and
holes, a giant cell and line, deep nesting and a huge claimed length.  Every case must
load without a crash, within seconds, and never lose points without saying so.  The
longer campaign with the same cases is bench/fuzz/campaign.py.
"""

from __future__ import annotations

import time
from pathlib import Path

import numpy as np
import pytest

from tests.fuzz_cases import FAMILIES, Case, Family, flipped_byte, mutations, truncations

#: Bytes at the end of each file cut at every offset (about the last record).
LAST_BYTES = {"tensorboard": 50, "ultralytics_v5": 120, "hf_trainer_state": 120}
FLIPS = 6
MAX_SECONDS = 5.0


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_fuzz_family(family: Family, tmp_path: Path) -> None:
    case = Case(family, tmp_path)
    rng = np.random.default_rng(11)
    bad: list[str] = []
    slowest = 0.0
    last = LAST_BYTES.get(family.name, 60)
    data = case.data
    cases = [(label, d, off) for label, d, off in truncations(data, last)]
    cases += [
        (label, d, None) for label, d in mutations(data, rng, FLIPS, family.name == "tensorboard")
    ]
    for label, damaged, offset in cases:
        start = time.perf_counter()
        outcome = case.check(damaged, offset, flipped_byte(label))
        slowest = max(slowest, time.perf_counter() - start)
        if outcome.kind not in ("ok", "undetectable"):
            bad.append(f"{label}: {outcome.kind} {outcome.detail}")
    assert not bad, bad[:10]
    assert slowest < MAX_SECONDS, slowest


#: Folder names a hostile log tree can carry: invalid UTF-8, newlines with GitHub
#: workflow commands, terminal escapes (OSC-8 links, CSI), C0 controls.
HOSTILE_NAMES = (
    b"bad-\xff\xfe\x80",
    b"nl\n::add-mask::x\n::error file=a::b",
    b"osc\x1b]8;;http:x\x07link\x1b]8;;\x07",
    b"csi\x1b[2J\x1b[31mred",
    b"c0\x01\x02\x7f",
)


@pytest.mark.parametrize("family", FAMILIES, ids=[f.name for f in FAMILIES])
def test_fuzz_hostile_names(family: Family, tmp_path: Path) -> None:
    """Every family reads the same points from run folders with hostile names."""
    import os
    import shutil

    from tests.fuzz_cases import load_tree

    case = Case(family, tmp_path / "ref")
    tree = os.path.join(os.fsencode(tmp_path), b"tree")
    os.mkdir(tree)
    for name in HOSTILE_NAMES:
        shutil.copytree(case.pristine, os.fsdecode(os.path.join(tree, name)), symlinks=True)
    runs, errors = load_tree(Path(os.fsdecode(tree)))
    assert not errors, errors
    assert len(runs) == len(HOSTILE_NAMES)
    assert all(len(r.scalars) + len(r.histograms) == case.points for r in runs)
