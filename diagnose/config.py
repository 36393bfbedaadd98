"""``[tool.diagnose]`` configuration: read, validate at the edge, merge with the CLI.

Example::

    [tool.diagnose]
    select = ["DIV", "OVF"]          # rule ids or prefixes
    ignore = ["PLT002"]
    fail-on = "warning"              # error | warning | never
    rules-dirs = ["ci/diagnose_rules"]

    [tool.diagnose.severity]
    OVF001 = "error"

    [tool.diagnose.thresholds.DIV002]
    explode_factor = 20.0

    [tool.diagnose.metrics]          # role -> tag(s) the resolver should use
    val_metric = "eval/exact_match"
    val_metric_higher_is_better = true

    [tool.diagnose.report]
    max_plots = 200                  # runs plotted in the markdown report

    [tool.diagnose.hparams]          # like --hparam KEY=VALUE
    learning_rate = 0.1

    [tool.diagnose.advice]           # advice policy (diagnose explain advice)
    lr_safety_factor = 5.0

Invalid config raises :class:`ConfigError` with a one-line message naming the key.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeGuard

if TYPE_CHECKING:
    from diagnose.findings import Severity

FAIL_ON = ("error", "warning", "never")
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info")


def is_severity(value: object) -> TypeGuard[Severity]:
    """Whether ``value`` is one of :data:`SEVERITIES`."""
    return value in SEVERITIES
_TOP_KEYS = {
    "select",
    "ignore",
    "fail-on",
    "fail_on",
    "rules-dirs",
    "rules_dirs",
    "severity",
    "thresholds",
    "metrics",
    "report",
    "hparams",
    "advice",
    "preview",
}


class ConfigError(ValueError):
    """A one-line, user-facing configuration problem."""


@dataclass
class Config:
    """Effective settings after config file + command line."""

    select: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    fail_on: str = "error"
    rules_dirs: list[Path] = field(default_factory=list)
    severity: dict[str, Severity] = field(default_factory=dict)
    thresholds: dict[str, dict[str, Any]] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    report: dict[str, Any] = field(default_factory=dict)
    hparams: dict[str, Any] = field(default_factory=dict)
    #: ``[tool.diagnose.advice]``: advice policy overrides (:class:`AdvicePolicy` keys).
    advice: dict[str, Any] = field(default_factory=dict)
    preview: bool = False
    source: Path | None = None
    #: Where a setting came from when not the config file (``{"select": "--select"}``),
    #: so an error names what the user typed.
    origins: dict[str, str] = field(default_factory=dict)

    def advice_policy(self) -> Any:
        """The :class:`~diagnose.advice.policy.AdvicePolicy` with ``advice`` applied
        (ConfigError naming the key when one is unknown or out of range)."""
        from diagnose.advice.policy import AdvicePolicy

        return AdvicePolicy.from_config(self.advice)

    def origin(self, key: str) -> str:
        """How an error message names setting ``key``: ``--select`` or ``config key
        'select'``."""
        return self.origins.get(key, f"config key '{key}'")

    def severity_for(self, rule_id: str, default: Severity) -> Severity:
        """The severity a finding of ``rule_id`` gets: the config's override or
        ``default``; every evaluator (engine, baseline) goes through here."""
        return self.severity.get(rule_id, default)

    def rule_enabled(self, rule_id: str, preview_rule: bool = False) -> bool:
        """``select``/``ignore`` by id or prefix; the longest matching prefix wins."""
        sel = max((len(p) for p in self.select if rule_id.startswith(p)), default=-1)
        ign = max((len(p) for p in self.ignore if rule_id.startswith(p)), default=-1)
        if self.select and sel < 0:
            return False
        if ign > sel:
            return False
        # preview rules run only when asked for: --preview or selected by full id
        return not (preview_rule and not self.preview and sel < len(rule_id))


def find_pyproject(start: Path) -> Path | None:
    """The nearest pyproject.toml at or above ``start``."""
    start = start.resolve()
    for folder in [start, *start.parents] if start.is_dir() else start.parents:
        candidate = folder / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def _ids(value: Any, key: str) -> list[str]:
    if isinstance(value, str):
        value = [v for v in value.split(",")]
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"config key '{key}' must be a list of rule ids or prefixes")
    return [v.strip().upper() for v in value if v.strip()]


def parse_table(table: dict[str, Any], source: Path | None = None) -> Config:
    """Validate a ``[tool.diagnose]`` table into a :class:`Config`."""
    if not isinstance(table, dict):
        raise ConfigError("[tool.diagnose] must be a table")
    unknown = sorted(set(table) - _TOP_KEYS)
    if unknown:
        raise ConfigError(f"unknown config key 'tool.diagnose.{unknown[0]}'")
    cfg = Config(source=source)
    if "select" in table:
        cfg.select = _ids(table["select"], "select")
    if "ignore" in table:
        cfg.ignore = _ids(table["ignore"], "ignore")
    fail_on = table.get("fail-on", table.get("fail_on"))
    if fail_on is not None:
        if fail_on not in FAIL_ON:
            raise ConfigError(f"config key 'fail-on' must be one of {', '.join(FAIL_ON)}")
        cfg.fail_on = fail_on
    dirs = table.get("rules-dirs", table.get("rules_dirs"))
    if dirs is not None:
        if not isinstance(dirs, list) or not all(isinstance(d, str) for d in dirs):
            raise ConfigError("config key 'rules-dirs' must be a list of folders")
        base = source.parent if source else Path.cwd()
        cfg.rules_dirs = [(base / d) for d in dirs]
    sev = table.get("severity", {})
    if not isinstance(sev, dict):
        raise ConfigError("config key 'severity' must be a table of RULE = severity")
    for rule, level in sev.items():
        if not is_severity(level):
            raise ConfigError(f"config key 'severity.{rule}' must be error, warning or info")
        cfg.severity[rule.upper()] = level
    th = table.get("thresholds", {})
    if not isinstance(th, dict):
        raise ConfigError("config key 'thresholds' must be a table of rule tables")
    for rule, values in th.items():
        if not isinstance(values, dict):
            raise ConfigError(f"config key 'thresholds.{rule}' must be a table")
        for name, value in values.items():
            if isinstance(value, bool) or not isinstance(value, (int, float, str)):
                raise ConfigError(f"config key 'thresholds.{rule}.{name}' must be a number")
        cfg.thresholds[rule.upper()] = dict(values)
    for key in ("metrics", "report", "hparams", "advice"):
        value = table.get(key, {})
        if not isinstance(value, dict):
            raise ConfigError(f"config key '{key}' must be a table")
        setattr(cfg, key, dict(value))
    _check_metrics(cfg.metrics)
    _check_report(cfg.report)
    cfg.advice_policy()  # unknown keys and out-of-range values fail here, at the edge
    if "preview" in table:
        if not isinstance(table["preview"], bool):
            raise ConfigError("config key 'preview' must be true or false")
        cfg.preview = table["preview"]
    return cfg


def _check_metrics(metrics: dict[str, Any]) -> None:
    """Role names (train_loss, val_metric...) take a tag or list of tags."""
    from diagnose.metrics import Role

    roles = {r.value for r in Role}
    for key, value in metrics.items():
        if key.endswith("_higher_is_better") and key[: -len("_higher_is_better")] in (
            "val_metric",
            "train_metric",
        ):
            if not isinstance(value, bool):
                raise ConfigError(f"config key 'metrics.{key}' must be true or false")
            continue
        if key not in roles:
            raise ConfigError(
                f"unknown config key 'metrics.{key}' (roles: {', '.join(sorted(roles))})"
            )
        tags = [value] if isinstance(value, str) else value
        if not isinstance(tags, list) or not all(isinstance(t, str) for t in tags):
            raise ConfigError(f"config key 'metrics.{key}' must be a tag or a list of tags")


#: ``[tool.diagnose.report]`` keys and their types.
REPORT_KEYS: dict[str, type] = {"max_plots": int}


def _check_report(report: dict[str, Any]) -> None:
    for key, value in report.items():
        kind = REPORT_KEYS.get(key.replace("-", "_"))
        if kind is None:
            raise ConfigError(f"unknown config key 'report.{key}'")
        if not isinstance(value, kind) or isinstance(value, bool):
            raise ConfigError(f"config key 'report.{key}' must be a {kind.__name__}")


def load_config(path: Path | None = None, start: Path | None = None) -> Config:
    """Load ``path`` (a pyproject.toml or a bare diagnose.toml) or the nearest pyproject.

    A pyproject without ``[tool.diagnose]`` gives the defaults.  A file that is not valid
    TOML raises :class:`ConfigError`.
    """
    if path is None:
        path = find_pyproject(start or Path.cwd())
        if path is None:
            return Config()
    elif not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: not valid TOML ({exc})") from None
    if "tool" in data or path.name == "pyproject.toml":
        table = data.get("tool", {}).get("diagnose", {})
    else:
        table = data.get("diagnose", data)
    return parse_table(table, source=path)
