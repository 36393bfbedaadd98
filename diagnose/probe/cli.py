"""``diagnose probe``: argument parsing and output for confirmation trials and the LR test."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from diagnose.probe.core import ProbeError, TrialsFailed
from diagnose.probe.template import TemplateError


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # type: ignore[override]
        from diagnose.cli import UsageError

        raise UsageError(message)


def _parser() -> argparse.ArgumentParser:
    p = _Parser(
        prog="diagnose probe",
        description="Short confirmation trials of a run's recommendations against a "
        "control, over seeds; or an LR range test with --lr-range.",
    )
    p.add_argument("run", nargs="?", metavar="RUN", help="the run (folder or log file)")
    p.add_argument("--cmd", metavar="TEMPLATE",
                   help="training command with {hyperparameter} placeholders and {logdir}")
    p.add_argument("--top", type=int, default=3, help="candidates from the top N recs")
    p.add_argument("--seeds", type=int, default=2)
    p.add_argument("--max-steps", type=int, default=None, help="trial budget in steps")
    p.add_argument("--budget", type=float, default=0.1,
                   help="trial budget as a share of the run's steps (default 0.1; 1 = the "
                   "full original length)")
    p.add_argument("--device", choices=("auto", "cpu", "cuda"), default="auto")
    p.add_argument("--timeout", type=float, default=900.0, help="seconds per trial")
    p.add_argument("--try", dest="tries", action="append", default=[],
                   metavar="KEY=VALUE[,KEY=VALUE]", help="an extra candidate of your own")
    p.add_argument("--hparam", action="append", default=[], metavar="KEY=VALUE")
    p.add_argument("--workdir", metavar="DIR", help="where trials log (default: a temp dir)")
    p.add_argument("--format", choices=("text", "json"), default="text")
    p.add_argument("-o", "--output", metavar="FILE")
    p.add_argument("--report", metavar="FILE.md")
    p.add_argument("--config", metavar="FILE")
    p.add_argument("--lr-range", metavar="MODULE:FACTORY",
                   help="run an LR range test on the factory's (model, loss_fn, loader)")
    p.add_argument("--lr-min", type=float, default=1e-7)
    p.add_argument("--lr-max", type=float, default=10.0)
    p.add_argument("--lr-iters", type=int, default=100)
    p.add_argument("--batch-search", action="store_true",
                   help="with --lr-range on a GPU: find the largest batch that fits")
    return p


def _parse_try(items: list[str]) -> list[dict[str, Any]]:
    from diagnose.cli import UsageError
    from diagnose.hparams import canonicalize

    out = []
    for item in items:
        raw = {}
        for part in item.split(","):
            if "=" not in part:
                raise UsageError(f"--try wants KEY=VALUE[,KEY=VALUE], got '{item}'")
            k, v = part.split("=", 1)
            raw[k.strip()] = v.strip()
        out.append(canonicalize(raw))
    return out


def _lr_range(args: argparse.Namespace) -> int:
    from diagnose.probe.lr_range import (
        load_factory,
        lr_range_test,
        max_batch_size,
        plot_lr_range,
    )

    try:
        factory = load_factory(args.lr_range)
    except (ValueError, ImportError) as exc:
        raise ProbeError(f"--lr-range: {exc}") from None
    device = "cuda" if args.device == "cuda" else "cpu"
    if args.device == "auto":
        import torch

        device = "cuda" if torch.cuda.is_available() else "cpu"
    result = lr_range_test(factory, start_lr=args.lr_min, end_lr=args.lr_max,
                           num_iter=args.lr_iters, device=device)
    payload: dict[str, Any] = {"lr_range_test": result.to_dict(), "device": device}
    out_dir = Path(args.report).parent if args.report else Path(".")
    plot = plot_lr_range(result, out_dir / "lr_range_test.png")
    payload["plot"] = str(plot)
    if args.batch_search:
        payload["batch_search"] = max_batch_size(factory, device)
    if args.format == "json":
        text = json.dumps(payload, indent=2)
    else:
        s = result.suggestions
        text = "\n".join([
            f"LR range test on {device}: {len(result.lrs)} steps from {args.lr_min:g}"
            f"{' (stopped early: loss passed 4x its best)' if result.stopped_early else ''}",
            f"  suggested learning_rate {result.suggested:.3g} by {result.rule}",
            *(f"  {k}: {v:.3g}" for k, v in sorted(s.items())),
            f"  plot: {plot}",
            *([f"  largest batch that fits: {payload['batch_search']}"]
              if args.batch_search else []),
        ])
    _emit(text, args.output)
    if args.report:
        Path(args.report).write_text(
            "## LR range test\n\n"
            f"Suggested learning rate **{result.suggested:.3g}** ({result.rule}).\n\n"
            f"![LR range test]({plot.name})\n", encoding="utf-8")
    return 0


def _emit(text: str, output: str | None) -> None:
    if output:
        Path(output).write_text(text + "\n", encoding="utf-8")
    else:
        sys.stdout.write(text + "\n")


def run_probe_command(argv: list[str]) -> int:
    """Parse, run and print; usage problems raise the CLI's UsageError (exit 2)."""
    from diagnose.cli import UsageError, _parse_hparams
    from diagnose.config import load_config
    from diagnose.pipeline import Options, analyze
    from diagnose.probe.core import run_probe
    from diagnose.probe.render import plot_probe, probe_lines, probe_markdown

    args = _parser().parse_args(argv)
    try:
        if args.lr_range:
            return _lr_range(args)
        if not args.run or not args.cmd:
            raise UsageError("diagnose probe needs RUN and --cmd (or --lr-range MODULE:FACTORY)")
        if args.seeds < 1 or args.top < 0:
            raise UsageError("--seeds must be >= 1 and --top >= 0")
        config = load_config(Path(args.config) if args.config else None, start=Path.cwd())
        overrides = _parse_hparams(args.hparam)
        analysis = analyze([args.run], config, Options(hparam_overrides=overrides))
        if not analysis.results:
            why = analysis.errors[0].message if analysis.errors else "no run found"
            raise UsageError(f"{args.run}: {why}")
        if len(analysis.results) > 1:
            ids = ", ".join(r.run.run_id for r in analysis.results[:5])
            raise UsageError(f"{args.run} holds {len(analysis.results)} runs ({ids}); "
                             "point the probe at one")
        result = analysis.results[0]

        def progress(outcome: Any) -> None:
            print(f"diagnose probe: {outcome.spec.arm} seed {outcome.spec.seed}: "
                  f"{outcome.status} ({outcome.wall_s:.1f} s)", file=sys.stderr)

        result.probe = run_probe(
            result, args.cmd, config=config, overrides=overrides, top=args.top,
            seeds=args.seeds, extra=_parse_try(args.tries), frac=args.budget,
            max_steps=args.max_steps, device=args.device, timeout=args.timeout,
            workdir=Path(args.workdir) if args.workdir else None, on_done=progress,
        )
    except TrialsFailed as exc:
        print(f"diagnose: error: {exc}; each trial's error follows", file=sys.stderr)
        for text in exc.errors:
            print(f"--- {text}", file=sys.stderr)
        return 2
    except (ProbeError, TemplateError) as exc:
        raise UsageError(str(exc)) from None
    from diagnose import __version__

    if args.format == "json":
        text = json.dumps(analysis.to_dict(__version__), indent=2, allow_nan=False)
    else:
        head = [f"{result.run.run_id}: {', '.join(result.states) or 'healthy'}"]
        head += [f"  {f.severity} {f.rule} {f.message}" for f in result.findings]
        text = "\n".join(head + probe_lines(result.probe))
    _emit(text, args.output)
    if args.report:
        from diagnose.report import write_report

        report = Path(args.report)
        write_report(analysis, report)
        plot = plot_probe(result.probe, report.with_name(report.stem + "_probe.png"))
        with report.open("a", encoding="utf-8") as fh:
            fh.write("\n" + probe_markdown(result.probe, plot))
    return 0
