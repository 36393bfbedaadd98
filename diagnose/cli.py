"""Command line: argument parsing and exit codes only.

Exit codes (DESIGN.md): 0 no finding at or above ``--fail-on``; 1 at least one; 2 usage
error, invalid config, or no run could be read at all.
"""

from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path
from typing import Any

from diagnose import __version__
from diagnose.config import FAIL_ON, Config, ConfigError, load_config
from diagnose.findings import SEVERITY_RANK

FORMATS = ("text", "markdown", "json", "sarif", "junit", "github")
SUBCOMMANDS = ("rules", "explain", "probe", "baseline")

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A one-line problem with how diagnose was called."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


def _parse_hparams(items: list[str]) -> dict[str, Any]:
    from diagnose.hparams import canonicalize

    raw: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--hparam wants KEY=VALUE, got '{item}'")
        key, value = item.split("=", 1)
        if not key.strip():
            raise UsageError(f"--hparam wants KEY=VALUE, got '{item}'")
        raw[key.strip()] = value.strip()
    return canonicalize(raw)


def _ids(text: str | None) -> list[str]:
    return [t.strip().upper() for t in (text or "").split(",") if t.strip()]


def _analysis_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="diagnose",
        description="Analyse training logs: what state each run is in and what to change.",
        epilog="Subcommands: diagnose rules | explain ID | probe RUN --cmd '...' | baseline",
    )
    p.add_argument("paths", nargs="*", default=["."], metavar="PATH")
    p.add_argument("--format", choices=FORMATS, default="text")
    p.add_argument("-o", "--output", metavar="FILE")
    p.add_argument("--report", metavar="FILE.md", help="also write the markdown advice report")
    p.add_argument("--fail-on", choices=FAIL_ON, default=None)
    p.add_argument("--select", metavar="IDS")
    p.add_argument("--ignore", metavar="IDS")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--baseline", metavar="PATH")
    p.add_argument("--jobs", type=int, default=None, metavar="N")
    p.add_argument(
        "--verify-checksums", action="store_true", help="check every record's data CRC"
    )
    p.add_argument("--preview", action="store_true", help="also run preview rules")
    p.add_argument("--no-progress", action="store_true")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto")
    p.add_argument("--version", action="version", version=f"diagnose {__version__}")
    return p


def _effective_config(args: argparse.Namespace) -> Config:
    config = load_config(Path(args.config) if args.config else None, start=Path.cwd())
    if args.select:
        config.select = _ids(args.select)
        config.origins["select"] = "--select"
    if args.ignore:
        config.ignore = _ids(args.ignore)
        config.origins["ignore"] = "--ignore"
    if args.fail_on:
        config.fail_on = args.fail_on
    if getattr(args, "preview", False):
        config.preview = True
    return config


def _write(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text, encoding="utf-8")
    else:
        sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")


def _exit_code(analysis: Any, fail_on: str) -> int:
    if not analysis.results and analysis.errors:
        return EXIT_USAGE
    if fail_on == "never":
        return EXIT_OK
    return EXIT_FINDINGS if analysis.max_severity() >= SEVERITY_RANK[fail_on] else EXIT_OK


def cmd_analyze(argv: list[str]) -> int:
    from diagnose.engine import load_rules
    from diagnose.pipeline import Options, analyze
    from diagnose.report import render, write_report

    args = _analysis_parser().parse_args(argv)
    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    config = _effective_config(args)
    options = Options(
        hparam_overrides=_parse_hparams(args.hparam),
        verify_checksums=args.verify_checksums,
        jobs=args.jobs,
        progress=not args.no_progress,
    )
    rules = load_rules(config.rules_dirs)
    analysis = analyze(args.paths, config, options, baseline=args.baseline)
    color = {"auto": None, "always": True, "never": False}[args.color]
    if args.output and color is None:
        color = False
    text = render(analysis, args.format, config.fail_on, color=color, rules=rules)
    _write(text, args.output)
    if args.report:
        extra = {"max_plots": config.report["max_plots"]} if "max_plots" in config.report else {}
        write_report(analysis, Path(args.report), rules=rules, fail_on=config.fail_on, **extra)
    for error in analysis.errors:
        if args.format in ("json", "sarif", "junit") or args.output:
            print(f"diagnose: {error.path}: {error.message}", file=sys.stderr)
    return _exit_code(analysis, config.fail_on)


def cmd_rules(argv: list[str]) -> int:
    from diagnose.engine import catalogue, load_rules

    p = _Parser(prog="diagnose rules", description="List every rule.")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--format", choices=("text", "json"), default="text")
    args = p.parse_args(argv)
    config = load_config(Path(args.config) if args.config else None, start=Path.cwd())
    rows = catalogue(load_rules(config.rules_dirs))
    if args.format == "json":
        import json

        _write(json.dumps(rows, indent=2), None)
        return EXIT_OK
    names = [r["name"] + (" (preview)" if r.get("preview") else "") for r in rows]
    width = max((len(n) for n in names), default=4)
    lines = [f"{'ID':<7} {'NAME':<{width}} {'STATE':<20} {'SEVERITY':<8} SUMMARY"]
    for r, name in zip(rows, names, strict=True):
        lines.append(
            f"{r['id']:<7} {name:<{width}} {r['state']:<20} {r['severity']:<8} {r['summary']}"
        )
    _write("\n".join(lines), None)
    return EXIT_OK


def cmd_explain(argv: list[str]) -> int:
    from diagnose.engine import format_rule_doc, load_rules

    p = _Parser(prog="diagnose explain",
                description="One rule's documentation ('advice': the advice policy).")
    p.add_argument("rule_id", metavar="ID")
    p.add_argument("--config", metavar="FILE")
    args = p.parse_args(argv)
    config = load_config(Path(args.config) if args.config else None, start=Path.cwd())
    wanted = args.rule_id.strip().upper()
    if wanted == "ADVICE":  # the advice policy: its named numbers and their values
        from diagnose.advice.policy import format_policy_doc

        _write(format_policy_doc(config.advice_policy()), None)
        return EXIT_OK
    for spec in load_rules(config.rules_dirs):
        if spec.id == wanted or spec.name == args.rule_id.strip().lower():
            _write(format_rule_doc(spec), None)
            return EXIT_OK
    raise UsageError(f"no rule '{args.rule_id}' (see 'diagnose rules')")


def cmd_baseline(argv: list[str]) -> int:
    """Accept today's findings into a versioned baseline file."""
    from diagnose import baseline as bl
    from diagnose.pipeline import Options, analyze

    p = _Parser(
        prog="diagnose baseline",
        description="Record today's findings so the gate fails only on new ones.",
    )
    p.add_argument("paths", nargs="*", default=["."], metavar="PATH")
    p.add_argument("-o", "--output", default=".diagnose-baseline.json", metavar="FILE")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE")
    args = p.parse_args(argv)
    config = load_config(Path(args.config) if args.config else None, start=Path.cwd())
    analysis = analyze(
        args.paths, config, Options(hparam_overrides=_parse_hparams(args.hparam))
    )
    if not analysis.results and analysis.errors:
        for error in analysis.errors:
            print(f"diagnose: {error.path}: {error.message}", file=sys.stderr)
        return EXIT_USAGE
    bl.write_baseline(analysis, Path(args.output))
    count = sum(len(r.findings) for r in analysis.results)
    print(f"diagnose: wrote {count} accepted findings to {args.output}", file=sys.stderr)
    return EXIT_OK


def cmd_probe(argv: list[str]) -> int:
    from diagnose.probe.cli import run_probe_command

    return run_probe_command(argv)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``diagnose`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "rules": cmd_rules,
        "explain": cmd_explain,
        "probe": cmd_probe,
        "baseline": cmd_baseline,
    }
    try:
        if argv and argv[0] in commands:  # a folder named like one: pass ./rules
            return commands[argv[0]](argv[1:])
        return cmd_analyze(argv)
    except UsageError as exc:
        print(f"diagnose: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"diagnose: config error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("diagnose: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # -o/--report/baseline file not writable: the user's, not ours
        if os.environ.get("DIAGNOSE_DEBUG"):
            raise
        print(f"diagnose: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # never a traceback for users; DIAGNOSE_DEBUG=1 shows it
        if type(exc).__name__ == "BaselineError":  # an unreadable --baseline file
            print(f"diagnose: baseline error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if type(exc).__name__ == "RuleError":  # a rules-dirs folder or user rule file
            print(f"diagnose: config error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if type(exc).__name__ in ("AnalysisError", "RegistryError") and not os.environ.get(
            "DIAGNOSE_DEBUG"
        ):  # our own bug while judging: loud, one line, never "healthy"
            print(f"diagnose: internal error: {exc}", file=sys.stderr)
            return EXIT_USAGE
        if os.environ.get("DIAGNOSE_DEBUG"):
            raise
        print(f"diagnose: internal error: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_USAGE
