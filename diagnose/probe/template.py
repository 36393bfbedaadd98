"""Command templates: ``python train.py --lr {learning_rate} --logdir {logdir}``.

The template is split into argv words first and placeholders are filled inside each
word, so a value is never parsed by a shell: trials run without ``shell=True``.
"""

from __future__ import annotations

import re
import shlex
from collections.abc import Mapping
from typing import Any

from diagnose.hparams import canonical_name

PLACEHOLDER = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")

#: Placeholders the probe fills itself, not from hyperparameters.
BUILTIN = ("logdir", "seed", "max_steps", "epochs", "device")


class TemplateError(ValueError):
    """A one-line problem with a ``--cmd`` template."""


def placeholders(template: str) -> list[str]:
    """Placeholder names in order of first appearance."""
    seen: list[str] = []
    for name in PLACEHOLDER.findall(template):
        if name not in seen:
            seen.append(name)
    return seen


def key_for(name: str) -> str:
    """The hyperparameter a placeholder stands for (``{lr}`` -> ``learning_rate``)."""
    if name in BUILTIN:
        return name
    return canonical_name(name) or name


def format_value(value: Any) -> str:
    """How a value is written on a command line: floats compactly, bools lower-case."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        if value.is_integer() and abs(value) < 1e15:
            return str(int(value)) if abs(value) >= 1 else format(value, "g")
        return format(value, ".6g")
    return str(value)


def fill(template: str, values: Mapping[str, Any]) -> list[str]:
    """The argv for one trial; raises TemplateError naming a placeholder with no value."""
    try:
        words = shlex.split(template)
    except ValueError as exc:
        raise TemplateError(f"--cmd is not a valid command line: {exc}") from None
    if not words:
        raise TemplateError("--cmd is empty")
    out = []
    for word in words:

        def sub(match: re.Match[str]) -> str:
            name = match.group(1)
            key = key_for(name)
            if key in values:
                return format_value(values[key])
            if name in values:
                return format_value(values[name])
            raise TemplateError(
                f"the command template needs {{{name}}} but no value is known: "
                f"pass --hparam {key}=VALUE"
            )

        out.append(PLACEHOLDER.sub(sub, word))
    return out
