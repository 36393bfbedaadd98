"""Remote PATHs: an S3 API (moto in server mode) and an HTTP server, both on 127.0.0.1.

The logs are real: event files written by torch's SummaryWriter in this module, and
copies of sample_logs/ runs written by Keras, Lightning, the HF Trainer and Ultralytics
in real trainings.  Every remote answer is compared with the same tree read locally:
same runs, same ids, same findings.  No traffic leaves the loopback interface
(``AWS_EC2_METADATA_DISABLED`` keeps botocore off the instance-metadata address).
"""

from __future__ import annotations

import functools
import http.server
import io
import json
import logging
import math
import os
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest

from diagnose import remote
from diagnose.discover import discover, spool_role
from diagnose.pipeline import Options, analyze
from tests.fixtures_csv_family import write_mlflow_run

ROOT = Path(__file__).resolve().parents[1]
SAMPLES = ROOT / "sample_logs"
SAMPLE_RUNS = [
    "hf/divergence_nan",
    "keras_csv/overfit_classification",
    "keras_tb/healthy_breast_cancer",
    "lightning/healthy_wine",
    "ultralytics/healthy_cls_digits",
]
BUCKET = "logs"
KEY, SECRET = "testing-key", "testing-secret"

moto_server = pytest.importorskip("moto.server")
boto3 = pytest.importorskip("boto3")
pytest.importorskip("s3fs")


# ---------------------------------------------------------------------------
# The log tree (real writers) and the servers
# ---------------------------------------------------------------------------


def _write_torch_run(logdir: Path, diverge: bool) -> None:
    from torch.utils.tensorboard import SummaryWriter

    with SummaryWriter(str(logdir)) as w:
        for step in range(60):
            loss = 2.0 * math.exp(-step / 15) + 0.05
            if diverge and step >= 30:
                loss = math.inf if step < 40 else math.nan
            w.add_scalar("train/loss", loss, step, walltime=1_700_000_000 + step)
            if step % 5 == 0:
                w.add_scalar("val/loss", loss * 1.1, step, walltime=1_700_000_000 + step)
            w.add_scalar("lr", 0.1, step, walltime=1_700_000_000 + step)


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """exp/: torch runs (one diverges, one add_scalars layout), sample runs of five
    other families, a checkpoint and a large non-metrics table that must not be read."""
    from torch.utils.tensorboard import SummaryWriter

    root = tmp_path_factory.mktemp("remote") / "exp"
    _write_torch_run(root / "torch" / "healthy", diverge=False)
    (root / "torch" / "healthy" / "hparams.yaml").write_text("lr: 0.1\nbatch_size: 32\n")
    (root / "torch" / "healthy" / "model.ckpt").write_bytes(os.urandom(300_000))
    _write_torch_run(root / "torch" / "diverged", diverge=True)
    with SummaryWriter(str(root / "torch" / "scalars")) as w:
        for step in range(20):
            w.add_scalars("loss", {"train": 1.0 / (step + 1), "val": 1.5 / (step + 1)}, step)
    for run in SAMPLE_RUNS:
        shutil.copytree(SAMPLES / run, root / run)
    write_mlflow_run(
        root / "tracking",
        {"train/loss": [(1_700_000_000_000 + s, 1.0 / (s + 1), s) for s in range(30)],
         "val_loss": [(1_700_000_000_000 + s, 1.2 / (s + 1), s) for s in range(0, 30, 3)]},
        params={"lr": "0.01", "batch_size": "64"},
    )
    (root / "tracking" / "mlruns" / ".trash").mkdir()
    (root / "tracking" / "mlruns" / ".trash" / "metrics.csv").write_text("step,loss\n0,1\n")
    rows = "".join(f"{i},{i % 10},images/{i:06d}.png\n" for i in range(6000))
    (root / "data").mkdir()
    (root / "data" / "labels.csv").write_text("id,label,path\n" + rows)
    return root


@pytest.fixture(scope="module")
def s3(tree: Path) -> Iterator[dict[str, str]]:
    """A moto S3 server on 127.0.0.1 holding ``tree`` under s3://logs/exp/; yields the
    environment a client needs to reach it."""
    logging.getLogger("werkzeug").setLevel(logging.ERROR)
    server = moto_server.ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    server.start()
    host, port = server.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    client = boto3.client(
        "s3", endpoint_url=endpoint, aws_access_key_id=KEY, aws_secret_access_key=SECRET,
        region_name="us-east-1",
    )
    client.create_bucket(Bucket=BUCKET)
    for path in sorted(tree.rglob("*")):
        if path.is_file():
            client.upload_file(str(path), BUCKET, f"exp/{path.relative_to(tree).as_posix()}")
    env = _isolated_env()
    env.update(AWS_ENDPOINT_URL=endpoint, AWS_ACCESS_KEY_ID=KEY, AWS_SECRET_ACCESS_KEY=SECRET)
    try:
        yield env
    finally:
        server.stop()


def _isolated_env() -> dict[str, str]:
    """This process's environment without any AWS setting, and with every way botocore
    could look for credentials off this machine closed."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    env.update(
        AWS_EC2_METADATA_DISABLED="true",
        AWS_SHARED_CREDENTIALS_FILE=os.devnull,
        AWS_CONFIG_FILE=os.devnull,
        AWS_DEFAULT_REGION="us-east-1",
        NO_PROXY="127.0.0.1,localhost",
        PYTHONPATH=os.pathsep.join([str(ROOT), os.environ.get("PYTHONPATH", "")]),
    )
    return env


def _point_at(monkeypatch: pytest.MonkeyPatch, env: dict[str, str]) -> None:
    """Give this process ``env``'s AWS settings; fresh s3fs instances then read them."""
    import s3fs

    for key in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(key)
    for key, value in env.items():
        if key.startswith("AWS_") or key == "NO_PROXY":
            monkeypatch.setenv(key, value)
    s3fs.S3FileSystem.clear_instance_cache()


@pytest.fixture()
def s3_env(s3: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, str]]:
    """This process pointed at the moto server with valid keys."""
    import s3fs

    _point_at(monkeypatch, s3)
    yield s3
    s3fs.S3FileSystem.clear_instance_cache()


class _QuietHandler(http.server.SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:
        pass


@pytest.fixture(scope="module")
def http_root(tree: Path) -> Iterator[str]:
    """The stdlib HTTP server on 127.0.0.1 serving the tree's parent folder."""
    handler = functools.partial(_QuietHandler, directory=str(tree.parent))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


def _main(*args: str) -> tuple[int, dict[str, Any], str]:
    """``diagnose ARGS --format json`` in this process: (exit code, JSON, stderr)."""
    from diagnose.cli import main

    out, err = io.StringIO(), io.StringIO()
    with redirect_stdout(out), redirect_stderr(err):
        code = main([*args, "--format", "json", "--jobs", "1"])
    assert "Traceback" not in err.getvalue()
    return code, json.loads(out.getvalue()), err.getvalue()


def _comparable(data: dict[str, Any]) -> dict[str, Any]:
    """The JSON without note paths (local vs URL) and tool version."""
    runs = []
    for run in data["runs"]:
        run = dict(run)
        run["notes"] = [{k: v for k, v in n.items() if k != "path"} for n in run["notes"]]
        runs.append(run)
    return {"runs": runs, "errors": data["errors"], "sweeps": data.get("sweeps")}


@pytest.fixture(scope="module")
def local_json(tree: Path) -> dict[str, Any]:
    return analyze([str(tree)], options=Options(jobs=1)).to_dict("test")


# ---------------------------------------------------------------------------
# S3
# ---------------------------------------------------------------------------


def test_s3_tree_reads_like_the_local_tree(
    s3_env: dict[str, str], local_json: dict[str, Any]
) -> None:
    url = f"s3://{BUCKET}/exp"
    analysis = analyze([url], options=Options(jobs=1))
    got = analysis.to_dict("test")
    assert [r["run"] for r in got["runs"]] == [r["run"] for r in local_json["runs"]]
    assert _comparable(got) == _comparable(local_json)
    ids = {r["run"]: r for r in got["runs"]}
    # the families and layouts all came through: splits folded, add_scalars folded
    assert set(ids) == {
        "torch/healthy", "torch/diverged", "torch/scalars", *SAMPLE_RUNS[:3],
        "lightning/healthy_wine/lightning_logs/version_0", SAMPLE_RUNS[4],
        "tracking/mlruns/0/0123456789abcdef0123456789abcdef",
    }
    assert "divergence" in ids["torch/diverged"]["states"]
    assert ids["torch/healthy"]["hparams"]["learning_rate"] == 0.1
    assert {"loss/train", "loss/val"} <= set(ids["torch/scalars"]["metrics"])
    # the Runs point at their URLs, not at the spool folder
    by_id = {r.run.run_id: r.run for r in analysis.results}
    assert str(by_id["torch/healthy"].path) == f"{url}/torch/healthy"
    assert all(str(p).startswith(f"{url}/") for r in by_id.values() for p in r.sources)
    assert all(not n.path or n.path.startswith(url) for r in by_id.values() for n in r.notes)


def test_s3_spool_fetches_logs_only(
    s3_env: dict[str, str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """The checkpoint is never fetched; a large table is fetched whole only when the
    sniffers call its first bytes a log."""
    monkeypatch.setattr(remote, "WHOLE_TABLE_BYTES", 1000)
    sources, errors = discover([f"s3://{BUCKET}/exp/"])
    assert errors == []
    spool = {s.remote[0] for s in sources}
    assert len(spool) == 1
    local = Path(spool.pop())
    assert not (local / "torch" / "healthy" / "model.ckpt").exists()
    assert not (local / "data" / "labels.csv").exists()
    assert not (local / "tracking" / "mlruns" / ".trash" / "metrics.csv").exists()
    assert (local / "tracking" / "mlruns" / "0" / "0123456789abcdef0123456789abcdef" / "metrics"
            / "train" / "loss").is_file()
    csv = local / "lightning" / "healthy_wine" / "lightning_logs" / "version_0" / "metrics.csv"
    assert csv.read_bytes() == (SAMPLES / "lightning/healthy_wine/lightning_logs/version_0"
                                / "metrics.csv").read_bytes()
    remote.cleanup()
    assert not local.exists()


def test_scope_removes_only_its_own_spools(s3_env: dict[str, str]) -> None:
    outer, _ = discover([f"s3://{BUCKET}/exp/torch/healthy"])
    with remote.scope():
        inner, _ = discover([f"s3://{BUCKET}/exp/torch/diverged"])
        assert Path(inner[0].remote[0]).is_dir()
    assert not Path(inner[0].remote[0]).exists()
    assert Path(outer[0].remote[0]).is_dir()
    remote.cleanup()


def test_s3_single_file_with_its_sidecars(s3_env: dict[str, str]) -> None:
    url = f"s3://{BUCKET}/exp/ultralytics/healthy_cls_digits/results.csv"
    analysis = analyze([url], options=Options(jobs=1))
    assert analysis.errors == []
    (result,) = analysis.results
    assert result.run.run_id == "."
    assert result.run.format == "ultralytics"
    assert "batch_size" in result.run.hparams  # from args.yaml beside it
    assert str(result.run.sources[0]) == url
    # files that are not logs are refused by name or by their first bytes, unread
    ckpt, labels = f"s3://{BUCKET}/exp/torch/healthy/model.ckpt", f"s3://{BUCKET}/exp/data/labels.csv"
    _, errors = discover([ckpt, labels])
    assert {(e.path, e.message) for e in errors} == {
        (ckpt, "not a training log this tool can read"),
        (labels, "not a training log this tool can read"),
    }


def test_s3_cli_missing_object_and_a_local_path(s3_env: dict[str, str], tree: Path) -> None:
    """One unreadable PATH is an error line; the other PATHs are still analysed."""
    missing = f"s3://{BUCKET}/nothing-here"
    code, data, _ = _main(missing, str(tree / "torch" / "diverged"))
    assert code == 1
    assert data["errors"] == [{"path": missing, "message": "no such file or directory"}]
    assert [r["run"] for r in data["runs"]] == ["."]
    code, _, err = _main(missing)
    assert code == 2
    assert f"{missing}: no such file or directory" in err


def test_s3_missing_credentials(
    s3: dict[str, str], tree: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    env = {k: v for k, v in s3.items() if k not in ("AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY")}
    _point_at(monkeypatch, env)
    url = f"s3://{BUCKET}/exp"
    code, data, err = _main(url)
    assert code == 2
    (error,) = data["errors"]
    assert error["path"] == url
    assert error["message"].startswith("no credentials found for s3://")
    assert "AWS_ACCESS_KEY_ID" in error["message"]
    assert f"{url}: no credentials found" in err
    # with a readable PATH beside it, that run is analysed and the exit is not 2
    code, data, _ = _main(url, str(tree / "torch" / "healthy"))
    assert code in (0, 1)
    assert len(data["runs"]) == 1
    assert len(data["errors"]) == 1


def test_s3_invalid_credentials(s3: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> None:
    """moto checks access keys once its auth is switched on (its /moto-api/reset-auth)."""
    import urllib.request

    endpoint = s3["AWS_ENDPOINT_URL"]

    def auth_after(count: str) -> None:
        req = urllib.request.Request(f"{endpoint}/moto-api/reset-auth", data=count.encode(),
                                     headers={"Content-Type": "text/plain"}, method="POST")
        with urllib.request.urlopen(req, timeout=10):
            pass

    _point_at(monkeypatch, {**s3, "AWS_ACCESS_KEY_ID": "AKIAWRONGWRONGWRONG1",
                            "AWS_SECRET_ACCESS_KEY": "x"})
    auth_after("0")
    try:
        code, data, _ = _main(f"s3://{BUCKET}/exp")
    finally:
        auth_after("inf")
    assert code == 2
    (error,) = data["errors"]
    assert error["message"].startswith("access denied ("), error
    assert "AWS_ACCESS_KEY_ID" in error["message"]


# ---------------------------------------------------------------------------
# HTTP (fsspec's http filesystem over http://, as for https:// paths)
# ---------------------------------------------------------------------------


def test_http_tree_reads_like_the_local_tree(
    http_root: str, local_json: dict[str, Any]
) -> None:
    url = f"{http_root}/exp/"
    got = analyze([url], options=Options(jobs=1)).to_dict("test")
    assert _comparable(got) == _comparable(local_json)


def test_http_single_event_file_and_missing_file(http_root: str, tree: Path) -> None:
    (event,) = (tree / "torch" / "diverged").glob("events.out.tfevents.*")
    url = f"{http_root}/exp/torch/diverged/{event.name}"
    analysis = analyze([url, f"{http_root}/exp/torch/none.csv"], options=Options(jobs=1))
    (result,) = analysis.results
    assert result.run.run_id == "."
    assert "divergence" in result.states
    assert str(result.run.sources[0]) == url
    assert [(e.path, e.message) for e in analysis.errors] == [
        (f"{http_root}/exp/torch/none.csv", "no such file or directory")
    ]
    # code-scanning outputs point at the URL, not at a temp copy or a folded "http:/"
    from diagnose.report import render

    sarif = json.loads(render(analysis, "sarif"))
    uris = {loc["physicalLocation"]["artifactLocation"]["uri"]
            for res in sarif["runs"][0]["results"] for loc in res["locations"]}
    assert uris == {url}
    assert "file=" + url.replace(":", "%3A") + "," in render(analysis, "github")  # escaped


def test_http_file_that_fails_to_download(http_root: str, tree: Path) -> None:
    """A listed file that cannot be fetched is an error line; the rest is read."""
    folder = tree.parent / "partial"
    shutil.copytree(tree / "torch" / "healthy", folder / "good",
                    ignore=shutil.ignore_patterns("*.ckpt"))
    (folder / "gone").mkdir()
    gone = "events.out.tfevents.1700000000.host.1.0"
    (folder / "gone" / "index.html").write_text(f'<a href="{gone}">{gone}</a>')
    analysis = analyze([f"{http_root}/partial"], options=Options(jobs=1))
    assert [r.run.run_id for r in analysis.results] == ["good"]
    assert [(e.path, e.message) for e in analysis.errors] == [
        (f"{http_root}/partial/gone/{gone}",
         "could not be downloaded: no such file or directory")
    ]


# ---------------------------------------------------------------------------
# Extras, schemes, names
# ---------------------------------------------------------------------------


def test_missing_extra_names_it(s3: dict[str, str]) -> None:
    """s3fs hidden from the import system, as on a machine without diagnose[s3]."""
    code = "; ".join([
        "import sys", "sys.modules['s3fs'] = None", "from diagnose.cli import main",
        "sys.exit(main(sys.argv[1:]))",
    ])
    proc = subprocess.run(
        [sys.executable, "-c", code, f"s3://{BUCKET}/exp", "--format", "json"],
        env=s3, capture_output=True, text=True, timeout=120,
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    (err,) = json.loads(proc.stdout)["errors"]
    assert err["message"] == "s3:// paths need s3fs: pip install 'diagnose[s3]'"


def test_gcs_without_gcsfs_names_the_extra() -> None:
    try:
        import gcsfs  # noqa: F401
    except ImportError:
        pass
    else:
        pytest.skip("gcsfs is installed")
    sources, errors = discover(["gs://some-bucket/runs"])
    assert sources == []
    assert [e.message for e in errors] == ["gs:// paths need gcsfs: pip install 'diagnose[gcs]'"]


def test_unsupported_scheme() -> None:
    _, errors = discover(["ftp://example.invalid/x"])
    assert errors[0].message.startswith("unsupported URL scheme ftp://")


def test_server_not_listening() -> None:
    import socket

    with socket.socket() as sock:  # a port nothing listens on once it is closed
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    _, errors = discover([f"http://127.0.0.1:{port}/runs/"])
    assert [e.path for e in errors] == [f"http://127.0.0.1:{port}/runs"]
    assert errors[0].message.startswith("cannot reach the server: ")


def test_spool_role_follows_discovery_names() -> None:
    assert spool_role("events.out.tfevents.1.host.1.0") == "whole"
    assert spool_role("trainer_state.json") == "whole"
    assert spool_role("hparams.yaml") == "sidecar"
    assert spool_role("metrics.csv") == "table"
    assert spool_role("pyvenv.cfg") == "marker"
    assert spool_role("model.ckpt") is None
    assert spool_role("events.out.tfevents.1.profile-empty") is None
    assert spool_role("metrics.csv", ("runs", ".git")) is None  # folders the walk skips
    assert spool_role("metrics.csv", ("runs", "node_modules")) is None
    assert spool_role("metrics.csv", ("runs", "a")) == "table"


def test_unsafe_names_and_url_mapping() -> None:
    assert remote._rel_parts("b/exp/a/../../x", "b/exp", http=False) is None
    assert remote._rel_parts("b/exp/a//x", "b/exp", http=False) is None
    assert remote._rel_parts("b/other/x", "b/exp", http=False) is None
    assert remote._rel_parts("http://h/exp/a%20b/c", "http://h/exp", http=True) == ["a b", "c"]
    assert remote._rel_parts("http://h/exp/%2e%2e/c", "http://h/exp", http=True) is None
    local = os.path.join(os.sep, "tmp", "spool")
    assert remote.to_url(os.path.join(local, "a b", "c"), local, "http://h/exp", True) == (
        "http://h/exp/a%20b/c"
    )
    assert remote.to_url(local, local, "s3://b/exp") == "s3://b/exp"
    assert remote.to_url("/elsewhere/x", local, "s3://b/exp") == "/elsewhere/x"
