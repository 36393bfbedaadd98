"""diagnose: reads training logs and says what state a run is in and what to change.

Python API (imported on first use, so ``import diagnose`` stays cheap)::

    report = diagnose.analyze("runs/")       # what `diagnose runs/ --format json` says
    run = diagnose.load_run("runs/exp1")     # run.scalars is a pandas DataFrame
    report.figure("exp1")                    # the report's plot as a matplotlib Figure
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> module that defines it (loaded lazily by __getattr__).
_EXPORTS = {
    "analyze": "diagnose.api",
    "load_run": "diagnose.api",
    "judge": "diagnose.api",
    "Report": "diagnose.api",
    "DiagnoseError": "diagnose.api",
    "RunResult": "diagnose.findings",
    "Finding": "diagnose.findings",
    "Recommendation": "diagnose.findings",
    "LoadError": "diagnose.findings",
    "Run": "diagnose.run",
    "Config": "diagnose.config",
    "ConfigError": "diagnose.config",
}

__all__ = [
    "Config",
    "ConfigError",
    "DiagnoseError",
    "Finding",
    "LoadError",
    "Recommendation",
    "Report",
    "Run",
    "RunResult",
    "__version__",
    "analyze",
    "judge",
    "load_run",
]

if TYPE_CHECKING:
    from diagnose.api import DiagnoseError, Report, analyze, judge, load_run
    from diagnose.config import Config, ConfigError
    from diagnose.findings import Finding, LoadError, Recommendation, RunResult
    from diagnose.run import Run


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'diagnose' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted([*globals(), *_EXPORTS])
