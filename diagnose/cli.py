"""Command line: argument parsing and exit codes only.

Exit codes (DESIGN.md): 0 no finding at or above ``--fail-on``; 1 at least one; 2 usage
error, invalid config, or no run could be read at all.
"""

from __future__ import annotations

import argparse
import difflib
import os
import sys
import textwrap
from pathlib import Path
from typing import Any

from diagnose import __version__
from diagnose.config import FAIL_ON, Config, ConfigError, load_config
from diagnose.findings import SEVERITY_RANK

FORMATS = ("text", "markdown", "json", "sarif", "junit", "github")
SUBCOMMANDS = ("rules", "explain", "probe", "baseline", "watch")

EXIT_OK, EXIT_FINDINGS, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """A one-line problem with how diagnose was called."""


class _Parser(argparse.ArgumentParser):
    """argparse that raises instead of printing usage and exiting."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(message)


#: Hyperparameters the recommender reads besides the canonical ones (DESIGN.md).
EXTRA_HPARAMS = ("activation", "drop_last", "init", "residual_connections", "num_classes")
#: What a value of each numeric hyperparameter must be: (integer, lowest, highest, the
#: lowest excluded).
_HPARAM_RANGE: dict[str, tuple[bool, float, float, bool]] = {
    "learning_rate": (False, 0, float("inf"), True),
    "batch_size": (True, 1, float("inf"), False),
    "weight_decay": (False, 0, float("inf"), False),
    "dropout": (False, 0, 1, False),
    "momentum": (False, 0, 1, False),
    "warmup_steps": (True, 0, float("inf"), False),
    "grad_clip": (False, 0, float("inf"), True),
    "epochs": (True, 1, float("inf"), False),
    "max_steps": (True, 1, float("inf"), False),
    "num_classes": (True, 2, float("inf"), False),
}
_HPARAM_BOOL = ("drop_last", "residual_connections")


def _suggest(word: str, choices: Any) -> str:
    """' (did you mean X?)' for the closest of ``choices``, or ''."""
    match = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.6)
    return f" (did you mean {match[0]}?)" if match else ""


def _check_hparam(key: str, value: Any, where: str = "--hparam") -> None:
    """A hyperparameter value the recommender can use, or a UsageError that says why."""
    from diagnose.hparams import finite_number

    shown = clean_arg(str(value))
    if key in _HPARAM_BOOL:
        if not isinstance(value, bool):
            raise UsageError(f"{where} {key} wants true or false, got '{shown}'")
        return
    spec = _HPARAM_RANGE.get(key)
    if spec is None:
        return
    integer, low, high, open_low = spec
    number = finite_number(value)
    kind = "a whole number" if integer else "a number"
    if number is None or (integer and not float(number).is_integer()):
        raise UsageError(f"{where} {key} wants {kind}, got '{shown}'")
    if number < low or number > high or (open_low and number == low):
        bound = (f"between {low:g} and {high:g}" if high != float("inf")
                 else f"{'above' if open_low else 'at least'} {low:g}")
        raise UsageError(f"{where} {key} must be {bound}, got '{shown}'")


def _parse_hparams(items: list[str]) -> dict[str, Any]:
    """``--hparam KEY=VALUE`` pairs, canonicalised and checked: a misspelt key or a value
    that is no number where one is needed is a usage error, never silently ignored."""
    raw: dict[str, Any] = {}
    for item in items:
        if "=" not in item:
            raise UsageError(f"--hparam wants KEY=VALUE, got '{clean_arg(item)}'")
        key, value = item.split("=", 1)
        if not key.strip():
            raise UsageError(f"--hparam wants KEY=VALUE, got '{clean_arg(item)}'")
        raw[key.strip()] = value.strip()
    return checked_hparams(raw, "--hparam")


def checked_hparams(raw: dict[str, Any], where: str) -> dict[str, Any]:
    """``raw`` canonicalised, each key known (close matches suggested) and each value
    usable; ``where`` names the source in the error (``--hparam``, a config table)."""
    from diagnose.hparams import ALIASES, CANONICAL, canonical_name, canonicalize

    for key in raw:
        if canonical_name(key) is None and key not in EXTRA_HPARAMS:
            known = (*CANONICAL, *EXTRA_HPARAMS)
            hint = _suggest(str(key).lower(), [*known, *ALIASES])
            raise UsageError(
                f"{where}: unknown hyperparameter '{clean_arg(key)}'"
                + (hint or f" (known: {', '.join(known)})")
            )
    out = canonicalize(raw)
    for key, value in out.items():
        _check_hparam(key, value, where)
    return out


def clean_arg(text: str) -> str:
    """A name from the command line or a log, safe to echo on stderr (see report.clean)."""
    from diagnose.report import clean

    return clean(text)


def _ids(text: str | None) -> list[str]:
    return [t.strip().upper() for t in (text or "").split(",") if t.strip()]


USAGE = """diagnose [PATH ...] [options]
       diagnose rules [--format text|json]
       diagnose explain ID
       diagnose probe RUN --cmd '...'
       diagnose baseline [PATH ...] [-o FILE]
       diagnose watch [PATH ...] [--on-finding CMD]"""

EPILOG = """subcommands:
  rules                 list every rule: id, name, severity, summary
  explain ID            one rule's documentation, thresholds and references
  probe RUN --cmd ...   run short confirmation trials of a run's recommendations
  baseline [PATH ...]   accept today's findings so --baseline fails only on new ones
  watch [PATH ...]      follow live runs; print each new finding once (--on-finding CMD)

exit codes: 0 no finding at or above --fail-on, 1 at least one, 2 usage error or no
run could be read.  'diagnose SUBCOMMAND --help' describes each subcommand."""


def _analysis_parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="diagnose",
        usage=USAGE,
        description="Analyse training logs: what state each run is in and what to change.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("paths", nargs="*", default=["."], metavar="PATH",
                   help="a run folder, a log file, or a folder of runs (default: .)")
    p.add_argument("--format", choices=FORMATS, default="text",
                   help="output format (default: text)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the chosen format to FILE instead of stdout")
    p.add_argument("--report", metavar="FILE.md",
                   help="also write the markdown advice report, plots beside it")
    p.add_argument("--fail-on", choices=FAIL_ON, default=None,
                   help="lowest severity that makes the exit code 1 (default: error)")
    p.add_argument("--select", metavar="IDS",
                   help="only these rule ids or prefixes, comma-separated (DIV,OVF001)")
    p.add_argument("--ignore", metavar="IDS",
                   help="skip these rule ids or prefixes, comma-separated")
    p.add_argument("--config", metavar="FILE",
                   help="config file (default: [tool.diagnose] of the nearest pyproject.toml)")
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE",
                   help="a hyperparameter the logs do not record (repeatable), "
                        "e.g. learning_rate=0.1")
    p.add_argument("--baseline", metavar="PATH",
                   help="a baseline file (diagnose baseline) or a reference run to compare with")
    p.add_argument("--jobs", type=int, default=None, metavar="N",
                   help="worker processes (default: 1, or every core for large work)")
    p.add_argument("--verify-checksums", action="store_true",
                   help="check every TensorBoard record's data CRC (slower)")
    p.add_argument("--preview", action="store_true", help="also run preview rules")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar on stderr")
    p.add_argument("--color", choices=("auto", "always", "never"), default="auto",
                   help="colour and wrap text output (default: auto, on a terminal)")
    talk = p.add_mutually_exclusive_group()
    talk.add_argument("-q", "--quiet", action="store_true",
                      help="text: findings only (no healthy runs, notes or sweep insights)")
    talk.add_argument("-v", "--verbose", action="store_true",
                      help="text: every note, rules not applicable, each change's rationale")
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
    if config.hparams:
        config.hparams = checked_hparams(dict(config.hparams), "[tool.diagnose.hparams]")
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
    verbosity = -1 if args.quiet else (1 if args.verbose else 0)
    text = render(analysis, args.format, config.fail_on, color=color, rules=rules,
                  verbosity=verbosity)
    _write(text, args.output)
    if args.report:
        extra = {"max_plots": config.report["max_plots"]} if "max_plots" in config.report else {}
        write_report(analysis, Path(args.report), rules=rules, fail_on=config.fail_on, **extra)
    if args.format in ("json", "sarif", "junit") or args.output:
        _print_errors(analysis.errors)
    for warning in unmatched_metrics(config, analysis):
        print(f"diagnose: warning: {warning}", file=sys.stderr)
    return _exit_code(analysis, config.fail_on)


def _print_errors(errors: list[Any]) -> None:
    """Unreadable runs on stderr, one line each, names escaped (no escape codes, no
    newline that could start a ``::workflow-command`` line)."""
    for error in errors:
        print(f"diagnose: {clean_arg(error.path)}: {clean_arg(error.message)}", file=sys.stderr)


def unmatched_metrics(config: Config, analysis: Any) -> list[str]:
    """Configured metric roles (``[tool.diagnose.metrics]``) naming no metric that any
    analysed run logged: a typo there silently falls back to guessing, so say so."""
    if not analysis.results:
        return []
    logged: set[str] = set()
    for result in analysis.results:
        logged.update(str(t) for t in (getattr(result.run, "tags", None) or []))
    out = []
    for role, value in sorted(config.metrics.items()):
        if role.endswith("_higher_is_better"):
            continue
        tags = [value] if isinstance(value, str) else list(value)
        if tags and not any(t in logged for t in tags):
            named = ", ".join(f"'{clean_arg(t)}'" for t in tags)
            hint = _suggest(tags[0], logged)
            out.append(f"metrics.{role} = {named} names no metric logged by any run{hint}")
    return out


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
    _write("\n".join(rules_table(rows)), None)
    return EXIT_OK


#: ``diagnose rules`` lines stay within this many columns.
RULES_WIDTH = 100


def rules_table(rows: list[dict[str, Any]], width: int = RULES_WIDTH) -> list[str]:
    """One line per rule (its summary wrapped under itself), no line over ``width``."""
    names = [r["name"] + (" (preview)" if r.get("preview") else "") for r in rows]
    name_w = max((len(n) for n in names), default=4)
    head = f"{'ID':<7} {'NAME':<{name_w}} {'SEVERITY':<8} "
    lines = [head + "SUMMARY"]
    for r, name in zip(rows, names, strict=True):
        prefix = f"{r['id']:<7} {name:<{name_w}} {r['severity']:<8} "
        summary = f"{r['summary']} [{r['state']}]"
        wrapped = textwrap.wrap(summary, width, initial_indent=prefix,
                                subsequent_indent=" " * len(prefix)) or [prefix.rstrip()]
        lines.extend(wrapped)
    return lines


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
    specs = load_rules(config.rules_dirs)
    for spec in specs:
        if spec.id == wanted or spec.name == args.rule_id.strip().lower():
            _write(format_rule_doc(spec), None)
            return EXIT_OK
    hint = _suggest(wanted, [s.id for s in specs]) or _suggest(
        args.rule_id.strip().lower(), [s.name for s in specs])
    raise UsageError(f"no rule '{clean_arg(args.rule_id)}'{hint} (see 'diagnose rules')")


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
        _print_errors(analysis.errors)
        return EXIT_USAGE
    bl.write_baseline(analysis, Path(args.output))
    count = sum(len(r.findings) for r in analysis.results)
    print(f"diagnose: wrote {count} accepted findings to {clean_arg(args.output)}",
          file=sys.stderr)
    return EXIT_OK


def cmd_probe(argv: list[str]) -> int:
    from diagnose.probe.cli import run_probe_command

    return run_probe_command(argv)


def cmd_watch(argv: list[str]) -> int:
    from diagnose.watch import run_watch_command

    return run_watch_command(argv)


def _check_subcommand(argv: list[str]) -> None:
    """``diagnose rule``: a first word that is no path but close to a subcommand is a
    typo, not a missing folder."""
    if not argv or argv[0].startswith("-") or os.path.exists(argv[0]):
        return
    hint = _suggest(argv[0], SUBCOMMANDS)
    if hint:
        raise UsageError(f"unknown command '{clean_arg(argv[0])}'{hint} "
                         "(a PATH of that name does not exist either)")


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``diagnose`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    commands = {
        "rules": cmd_rules,
        "explain": cmd_explain,
        "probe": cmd_probe,
        "baseline": cmd_baseline,
        "watch": cmd_watch,
    }
    try:
        if argv and argv[0] in commands:  # a folder named like one: pass ./rules
            return commands[argv[0]](argv[1:])
        _check_subcommand(argv)
        return cmd_analyze(argv)
    except UsageError as exc:
        print(f"diagnose: error: {clean_arg(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except ConfigError as exc:
        print(f"diagnose: config error: {clean_arg(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("diagnose: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return EXIT_OK
    except OSError as exc:  # -o/--report/baseline file not writable: the user's, not ours
        if os.environ.get("DIAGNOSE_DEBUG"):
            raise
        print(f"diagnose: error: {clean_arg(str(exc))}", file=sys.stderr)
        return EXIT_USAGE
    except Exception as exc:  # never a traceback for users; DIAGNOSE_DEBUG=1 shows it
        if type(exc).__name__ == "BaselineError":  # an unreadable --baseline file
            print(f"diagnose: baseline error: {clean_arg(str(exc))}", file=sys.stderr)
            return EXIT_USAGE
        if type(exc).__name__ == "RuleError":  # a rules-dirs folder or user rule file
            print(f"diagnose: config error: {clean_arg(str(exc))}", file=sys.stderr)
            return EXIT_USAGE
        if type(exc).__name__ in ("AnalysisError", "RegistryError") and not os.environ.get(
            "DIAGNOSE_DEBUG"
        ):  # our own bug while judging: loud, one line, never "healthy"
            print(f"diagnose: internal error: {clean_arg(str(exc))}", file=sys.stderr)
            return EXIT_USAGE
        if os.environ.get("DIAGNOSE_DEBUG"):
            raise
        print(f"diagnose: internal error: {type(exc).__name__}: {clean_arg(str(exc))}",
              file=sys.stderr)
        return EXIT_USAGE
