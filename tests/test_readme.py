"""The README's ```bash blocks run as written, in a fresh copy of the repository.

Each block runs as one bash script in a copy of the checkout (so a block that forgets to
create or activate its virtualenv fails here as it would on a new machine).  Only the
network is taken away: ``python3 -m venv`` makes a venv that sees this interpreter's
packages (torch 2.13 CPU, the dev extras), and pip installs from no index, so
``pip install -e '.[probe]'`` resolves offline instead of downloading torch.  The full
test suite in the second command is collected, not run (it is what runs this test).
"""

from __future__ import annotations

import os
import re
import shutil
import site
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]

#: Makes ``python3 -m venv DIR`` a venv that reuses this interpreter's packages.
_VENV_HELPER = """
import os, sys, venv
target = sys.argv[-1]
venv.EnvBuilder(with_pip=False, clear=False).create(target)
lib = os.path.join(target, "lib", f"python{sys.version_info[0]}.{sys.version_info[1]}",
                   "site-packages")
with open(os.path.join(lib, "_readme_test_site.pth"), "w") as fh:
    fh.write("\\n".join(SITE) + "\\n")
pip = os.path.join(target, "bin", "pip")
with open(pip, "w") as fh:
    fh.write('#!/bin/sh\\nexec "$(dirname "$0")/python" -m pip "$@"\\n')
os.chmod(pip, 0o755)
"""


def bash_blocks(text: str) -> list[str]:
    """The ```bash fenced blocks of a markdown text, in order."""
    return re.findall(r"^```bash\n(.*?)^```", text, flags=re.S | re.M)


def commands(block: str) -> list[str]:
    """The block's commands, with backslash continuations joined."""
    return [c.strip() for c in re.sub(r"\\\n\s*", " ", block).splitlines() if c.strip()]


def _fresh_checkout(dest: Path) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.egg-info", "runs",
                                    "report*.md", "report_plots", ".pytest_cache", "build")
    shutil.copytree(ROOT, dest, ignore=ignore)


def _offline_env(tmp: Path) -> dict[str, str]:
    shim = tmp / "shim"
    shim.mkdir(parents=True)
    paths = [p for p in (*site.getsitepackages(), site.getusersitepackages())
             if os.path.isdir(p)]
    helper = tmp / "venv_helper.py"
    helper.write_text(f"SITE = {paths!r}\n" + _VENV_HELPER)
    python3 = shim / "python3"
    python3.write_text(textwrap.dedent(f"""\
        #!/bin/sh
        if [ "$1" = "-m" ] && [ "$2" = "venv" ]; then
          shift 2
          exec "{sys.executable}" "{helper}" "$@"
        fi
        exec "{sys.executable}" "$@"
        """))
    python3.chmod(0o755)
    env = {k: v for k, v in os.environ.items()
           if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYTHONHOME")}
    env.update({
        "PATH": f"{shim}{os.pathsep}{env.get('PATH', '')}",
        "PIP_NO_INDEX": "1",
        "PIP_NO_BUILD_ISOLATION": "0",  # pip reads this negated: build in this env
        "PIP_DISABLE_PIP_VERSION_CHECK": "1",
        "MPLBACKEND": "Agg",
        "COLUMNS": "80",
    })
    return env


def _script(cmds: list[str]) -> str:
    """Every command runs; each one's exit status is printed after it."""
    out = []
    for i, cmd in enumerate(cmds):
        if re.search(r"-m pytest\b", cmd):  # the suite itself runs in CI, not in here
            cmd += " --collect-only"
        out.append(f"{cmd}\necho \"__rc {i} $?\"")
    return "\n".join(out) + "\n"


def test_readme_has_the_blocks_this_test_runs() -> None:
    blocks = bash_blocks((ROOT / "README.md").read_text(encoding="utf-8"))
    assert len(blocks) >= 2
    # every block that calls the venv's tools creates the venv itself
    for block in blocks:
        if ".venv" in block or "pip install" in block:
            assert "python3 -m venv .venv" in block, block


_BLOCKS = bash_blocks((ROOT / "README.md").read_text(encoding="utf-8"))


@pytest.mark.slow
@pytest.mark.parametrize("n", range(len(_BLOCKS)))  # one test a block: xdist splits them
def test_readme_blocks_run_as_written(tmp_path: Path, n: int) -> None:
    for block in _BLOCKS[n:n + 1]:
        repo = tmp_path / f"checkout{n}"
        _fresh_checkout(repo)
        env = _offline_env(tmp_path / f"env{n}")
        cmds = commands(block)
        proc = subprocess.run(["bash", "-c", _script(cmds)], cwd=repo, env=env,
                              capture_output=True, text=True, timeout=540)
        log = proc.stdout + proc.stderr
        statuses = [int(m) for m in re.findall(r"^__rc \d+ (\d+)$", proc.stdout, re.M)]
        assert len(statuses) == len(cmds), log[-3000:]
        for cmd, status in zip(cmds, statuses, strict=True):
            # 1 is diagnose's documented "findings at or above --fail-on"
            assert status in (0, 1), f"{cmd!r} exited {status}:\n{log[-3000:]}"
        for bad in ("Traceback", "No module named", "command not found", "internal error"):
            assert bad not in log, f"block {n}: {bad}:\n{log[-3000:]}"
        if "--report report.md" in block:
            assert (repo / "report.md").is_file()
