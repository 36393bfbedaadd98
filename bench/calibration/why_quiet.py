"""Which check kept a rule quiet on each run?  (issue 9, round 16: the per-run table every
round rebuilt by hand before asking separability.py whether a group can be split)

Runs one rule's ``detect`` on each selected run of the shared rendered corpus and records
the ``return`` statement that ended it (traced with ``sys.settrace``, nothing in the rule
changes), with the ``if`` it belongs to and the values of the named locals there.  Runs are
grouped by that check: the rule's misses (label has the state, prediction lacks it), the
healthy runs it keeps quiet and its healthy false alarms side by side, so "which condition
fails, for which runs, by how much" is one table; "fired" is the group where the rule
spoke (its state was then lost to precedence or another rule).

    PYTHONPATH=$PWD python bench/calibration/why_quiet.py --predictions /tmp/pred.tsv \\
        --rule UND004 --state underfit [--show l0 level ratio] [--ids r00034 r00104]
"""

from __future__ import annotations

import argparse
import inspect
import re
import sys
from collections import Counter, defaultdict
from pathlib import Path
from types import FrameType
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))
from separability import load_rows, rule_context  # one loader for both tools

RENDERED = Path("/work/main/bench/_out/calibration")


def conditions(fn: Any) -> dict[int, str]:
    """Each ``return`` line of ``fn`` -> the text of the ``if`` it sits under (its own line
    for a return at the function's top level), read from the source."""
    lines, first = inspect.getsourcelines(fn)
    out: dict[int, str] = {}
    for i, line in enumerate(lines):
        if not line.lstrip().startswith("return"):
            continue
        indent = len(line) - len(line.lstrip())
        text = line.strip()
        for j in range(i - 1, -1, -1):
            above = lines[j]
            if above.strip() and len(above) - len(above.lstrip()) < indent:
                if above.lstrip().startswith(("if ", "elif ")):
                    # the whole condition, up to its colon
                    k, cond = j, above.strip()
                    while not cond.endswith(":") and k + 1 < i:
                        k += 1
                        cond += " " + lines[k].strip()
                    text = cond.rstrip(":") + " -> " + text
                break
        out[first + i] = f"line {first + i}: " + " ".join(text.replace("\\", " ").split())
    return out


def rule_of(rule_id: str) -> Any:
    """The built-in rule class ``rule_id`` (importing diagnose.detectors registers them)."""
    import diagnose.detectors  # noqa: F401
    from diagnose.detectors.rule import rule_class

    cls = rule_class(rule_id)
    if cls is None:
        raise ValueError(f"unknown rule {rule_id!r}")
    return cls


def judging(cls: Any) -> Any:
    """The method whose returns hold a rule's checks: the one ``detect`` hands the run to
    (``return self.<name>(ctx, p)``, after gates such as UND004's unfinished run), else
    ``detect`` itself."""
    names = re.findall(r"return self\.(\w+)\(ctx, p\)", inspect.getsource(cls.detect))
    return getattr(cls, names[-1]) if names else cls.detect


def rule_conditions(cls: Any) -> dict[int, str]:
    """:func:`conditions` of ``detect`` and of the method it hands the run to."""
    return {**conditions(cls.detect), **conditions(judging(cls))}


def trace_detect(folder: Path, rule_id: str,
                 show: list[str]) -> tuple[int | None, bool, dict[str, Any]] | None:
    """(line of the return that ended ``detect``, whether it found something, the named
    locals there) for the first run under ``folder``; None if nothing loads."""
    cls = rule_of(rule_id)
    ctx = rule_context(folder)
    if ctx is None:
        return None
    params = cls.Params.build(ctx.thresholds_of(rule_id))
    inner = judging(cls).__code__
    codes = {cls.detect.__code__, inner}
    seen: dict[Any, dict[str, Any]] = {}

    def local(frame: FrameType, event: str, arg: Any) -> Any:
        if event == "return":
            seen[frame.f_code] = {
                "line": frame.f_lineno,
                "locals": {k: frame.f_locals[k] for k in show if k in frame.f_locals}}
        return local

    def calls(frame: FrameType, event: str, arg: Any) -> Any:
        return local if frame.f_code in codes else None

    old = sys.gettrace()
    sys.settrace(calls)
    try:
        found = cls().detect(ctx, params)
    finally:
        sys.settrace(old)
    got = seen.get(inner) or seen.get(cls.detect.__code__) or {}
    return got.get("line"), bool(found), got.get("locals", {})


def fmt(v: Any) -> str:
    if isinstance(v, float):
        return f"{v:.3g}"
    if isinstance(v, tuple):
        return "(" + ",".join(fmt(x) for x in v) + ")"
    return str(v)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--predictions", type=Path, required=True)
    ap.add_argument("--rule", default="UND004")
    ap.add_argument("--state", default="underfit")
    ap.add_argument("--show", nargs="*", default=[], help="locals of detect to print")
    ap.add_argument("--ids", nargs="*", help="only these runs (any label)")
    ap.add_argument("--rendered", type=Path, default=RENDERED)
    args = ap.parse_args(argv)
    try:
        cls = rule_of(args.rule)
    except ValueError as exc:
        print(exc, file=sys.stderr)
        return 2
    st = args.state

    def has(s: str) -> bool:
        return st in s.split("+")

    rows = load_rows(args.predictions)
    group: dict[str, str] = {}
    for r in rows:
        if args.ids is not None:
            if r["id"] in args.ids:
                group[r["id"]] = ("miss" if has(r["label"]) and not has(r["prediction"])
                                  else "alarm" if r["label"] == "healthy"
                                  and has(r["prediction"]) else "other")
        elif has(r["label"]) and not has(r["prediction"]):
            group[r["id"]] = "miss"
        elif r["label"] == "healthy":
            group[r["id"]] = "alarm" if has(r["prediction"]) else "healthy"
    by_id = {r["id"]: r for r in rows}
    where = rule_conditions(cls)
    table: dict[str, list[tuple[str, dict[str, Any]]]] = defaultdict(list)
    for i, rid in enumerate(sorted(group)):
        r = by_id[rid]
        got = trace_detect(args.rendered / r["format"] / rid, args.rule, args.show)
        if got is None:
            continue
        line, fired, loc = got
        key = "fired" if fired else where.get(line or -1, f"line {line}")
        table[key].append((rid, loc))
        if i % 200 == 0 and i:
            print(f"  traced {i}/{len(group)}", file=sys.stderr)
    print(f"{args.rule} on {len(group)} runs ({st}: miss = labelled, not predicted; "
          "alarm = healthy run predicted with it)")
    for key, runs in sorted(table.items(), key=lambda kv: -len(kv[1])):
        n = Counter(group[rid] for rid, _ in runs)
        print(f"\n[{', '.join(f'{g} {c}' for g, c in n.most_common())}] {key}")
        for rid, loc in runs:
            if group[rid] in ("miss", "alarm", "other"):
                r = by_id[rid]
                vals = " ".join(f"{k}={fmt(v)}" for k, v in loc.items())
                print(f"    {group[rid]:5s} {rid} {r['dataset']:14s} {r['cause']:22s} "
                      f"{r['label']} -> {r['prediction']}  {vals}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
