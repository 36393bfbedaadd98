"""Remote PATHs (``s3://``, ``gs://``, ``hf://``, ``http(s)://``) read through fsspec.

A remote PATH is listed once; the files discovery and ingest would open are copied
("spooled") into a local temp folder by concurrent downloads, and that folder is then
discovered and read exactly like a local PATH: the same run rules, the same parsers
(memory-mapped TensorBoard reader included), run ids relative to the URL.  Spooling beat
ranged reads through fsspec file objects on every case measured (``bench/README.md``).

Only files a reader may use are fetched: event files, sidecars, MLflow run files and
``trainer_state.json`` whole; other ``*.csv``/``*.json``/``*.log`` tables whole when
small, else their first bytes first, and whole only when the family sniffers call them
a log.  Checkpoints and datasets beside the logs are never downloaded.

Each filesystem is an optional extra (``diagnose[s3]``...); a missing one, missing
credentials or a refused request is a one-line :class:`RemoteError`, which discovery
turns into a LoadError for that PATH while the other PATHs are still analysed.
"""

from __future__ import annotations

import atexit
import contextlib
import os
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any
from urllib.parse import quote, unquote

if TYPE_CHECKING:
    from diagnose.run import Run

#: scheme -> (the package fsspec needs for it, the diagnose extra that installs it)
SCHEMES: dict[str, tuple[str, str]] = {
    "s3": ("s3fs", "s3"),
    "s3a": ("s3fs", "s3"),
    "gs": ("gcsfs", "gcs"),
    "gcs": ("gcsfs", "gcs"),
    "hf": ("huggingface_hub", "hf"),
    "http": ("aiohttp", "http"),
    "https": ("aiohttp", "http"),
}
_URL_RE = re.compile(r"^([A-Za-z][A-Za-z0-9+.-]*)://")

#: Tables up to this size are fetched whole without a sniff first (keras_history's own
#: parse limit, so a history.json is always judged on its full text).
WHOLE_TABLE_BYTES = 5_000_000
#: Larger (or unsized) tables: this much is fetched for the sniffers (they read 8 KiB).
HEAD_BYTES = 64 * 1024
#: Concurrent downloads (async filesystems multiplex them on one event loop).
DOWNLOAD_THREADS = 16

#: Exception class names (anywhere in the cause chain) that mean "who are you?"
_NO_CREDENTIALS = {
    "NoCredentialsError": "no credentials found",
    "PartialCredentialsError": "incomplete credentials",
    "DefaultCredentialsError": "no credentials found",
    "RefreshError": "credentials could not be refreshed",
    "TokenRetrievalError": "credentials could not be refreshed",
    "UnauthorizedSSOTokenError": "SSO session expired",
}
_REFUSED_CODES = (
    "InvalidAccessKeyId",
    "SignatureDoesNotMatch",
    "ExpiredToken",
    "InvalidToken",
    "AccessDenied",
    "AllAccessDisabled",
    "Forbidden",
    "Unauthorized",
    "GatedRepoError",
)
_CREDENTIAL_HELP = {
    "s3": "set AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY or AWS_PROFILE "
    "(FSSPEC_S3_ANON=true for a public bucket)",
    "gs": "run `gcloud auth application-default login` or set GOOGLE_APPLICATION_CREDENTIALS",
    "hf": "run `hf auth login` or set HF_TOKEN",
    "http": "the server refused the request",
}


class RemoteError(Exception):
    """A remote PATH that cannot be listed or read; the message is one line."""

    def __init__(self, message: str) -> None:
        super().__init__(" ".join(str(message).split()) or "unreadable")


def scheme_of(path: str) -> str | None:
    """``s3`` for ``s3://bucket/x``; None for a local path."""
    m = _URL_RE.match(str(path))
    return m.group(1).lower() if m else None


def is_remote(path: str) -> bool:
    """True for any ``scheme://`` PATH (unknown schemes get a clear error later)."""
    return scheme_of(path) is not None


def _family(scheme: str) -> str:
    return {"s3a": "s3", "gcs": "gs", "https": "http"}.get(scheme, scheme)


def extra_hint(scheme: str) -> str:
    """The one line that says which extra a scheme needs."""
    package, extra = SCHEMES[scheme]
    return f"{scheme}:// paths need {package}: pip install 'diagnose[{extra}]'"


def describe_error(exc: BaseException, scheme: str) -> str:
    """One line for a failed remote call: credentials, refusal, missing object, or the
    library's own message (never a traceback)."""
    family = _family(scheme)
    chain: list[BaseException] = []
    seen: BaseException | None = exc
    while seen is not None and seen not in chain and len(chain) < 10:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    for e in chain:
        what = _NO_CREDENTIALS.get(type(e).__name__)
        if what:
            return f"{what} for {scheme}://: {_CREDENTIAL_HELP[family]}"
    for e in chain:
        text = f"{type(e).__name__} {e}"
        code = next((c for c in _REFUSED_CODES if c in text), None)
        status = re.search(r"\b(401|403)\b", text)
        if code or status or isinstance(e, PermissionError):
            why = code or (status.group(1) if status else "access denied")
            return f"access denied ({why}): check the credentials for {scheme}://: " + (
                _CREDENTIAL_HELP[family]
            )
    for e in chain:  # before "not found": fsspec's http raises that for a refused connection
        name = type(e).__name__
        if "Connect" in name or "Timeout" in name or isinstance(e, TimeoutError):
            return f"cannot reach the server: {name}: {_first_line(e)}"
    for e in chain:
        if isinstance(e, FileNotFoundError):
            return "no such file or directory"
    return f"{type(exc).__name__}: {_first_line(exc)}"


def _first_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text[:300] or type(exc).__name__


# ---------------------------------------------------------------------------
# Temp folders: removed when the process exits (or earlier by cleanup()).
# ---------------------------------------------------------------------------

_SPOOL_DIRS: list[str] = []


def cleanup() -> None:
    """Remove every spool folder this process made (also run at exit)."""
    _remove_after(0)


def _remove_after(start: int) -> None:
    import shutil  # here, not at the top: discovery imports this module on every run

    while len(_SPOOL_DIRS) > start:
        shutil.rmtree(_SPOOL_DIRS.pop(), ignore_errors=True)


atexit.register(cleanup)


@contextlib.contextmanager
def scope() -> Iterator[None]:
    """Remove the spool folders made inside the block when it ends (``analyze`` reads
    every run before it returns, so a notebook calling it often keeps no copies)."""
    start = len(_SPOOL_DIRS)
    try:
        yield
    finally:
        _remove_after(start)


def _new_spool_dir() -> str:
    import tempfile

    path = tempfile.mkdtemp(prefix="diagnose-remote-")
    _SPOOL_DIRS.append(path)
    return path


# ---------------------------------------------------------------------------
# Spooling
# ---------------------------------------------------------------------------


@dataclass
class Spool:
    """A remote PATH copied locally: ``local`` stands for ``url``.

    ``local_root``/``url_root`` map every spooled path back to its URL (for a single
    file PATH they are its folder, which also holds the sidecars found beside it).
    ``errors`` are (url, message) pairs for files that could not be fetched.
    """

    url: str
    local: str
    local_root: str
    url_root: str
    quoted: bool = False
    errors: list[tuple[str, str]] = field(default_factory=list)


def _filesystem(url: str) -> tuple[Any, str, str]:
    """(fsspec filesystem, its path for url, scheme); RemoteError when unusable."""
    scheme = scheme_of(url) or ""
    if scheme not in SCHEMES:
        known = ", ".join(f"{s}://" for s in ("s3", "gs", "hf", "http", "https"))
        raise RemoteError(f"unsupported URL scheme {scheme}://: diagnose reads {known}")
    try:
        import fsspec

        fs, path = fsspec.core.url_to_fs(url)
    except ImportError as exc:
        # fsspec says "Install s3fs to access S3" without a module name; a broken
        # dependency of an installed package names itself, and is worth showing
        missing = (getattr(exc, "name", None) or "").split(".")[0]
        hint = extra_hint(scheme)
        if missing and missing not in (SCHEMES[scheme][0], "fsspec"):
            hint += f" ({_first_line(exc)})"
        raise RemoteError(hint) from None
    except Exception as exc:  # bad URL, bad fsspec config
        raise RemoteError(describe_error(exc, scheme)) from None
    return fs, path, scheme


def _is_http(scheme: str) -> bool:
    return scheme in ("http", "https")


def _rel_parts(full: str, root: str, http: bool) -> list[str] | None:
    """Path segments of ``full`` under ``root``; None when unsafe or outside root."""
    full = full.rstrip("/")
    if full == root:
        return []
    if not full.startswith(root + "/"):
        return None
    parts = full[len(root) + 1 :].split("/")
    if http:
        parts = [unquote(p) for p in parts]
    if any(p in ("", ".", "..") or "\\" in p or "\x00" in p or os.sep in p for p in parts):
        return None
    return parts


#: discovery's ``spool_role(name, folders)``: what a file is to it (``whole``,
#: ``table``, ``sidecar``, ``marker``) or None when it never reads it.
Role = Callable[..., "str | None"]


def spool(url: str, sniff: Callable[[str, str], str | None], role: Role) -> Spool:
    """Copy what discovery needs under ``url`` into a new temp folder.

    ``role`` is discovery's :func:`~diagnose.discover.spool_role`; ``sniff(local_path,
    name)`` is its family sniffer, used on the first bytes of large tables.  Raises
    :class:`RemoteError`.
    """
    fs, path, scheme = _filesystem(url)
    http = _is_http(scheme)
    shown = url.rstrip("/") or url
    try:
        info = fs.info(path)
    except Exception as exc:
        raise RemoteError(describe_error(exc, scheme)) from None
    is_dir = info.get("type") == "directory"
    if http:
        is_dir = info.get("mimetype") == "text/html" or url.endswith("/")
    local_dir = _new_spool_dir()
    if not is_dir:
        return _spool_file(fs, path, shown, scheme, local_dir, info, sniff, role)

    root = path.rstrip("/")
    try:
        listing = fs.find(path, withdirs=True, detail=True)
    except Exception as exc:
        raise RemoteError(describe_error(exc, scheme)) from None
    out = Spool(shown, local_dir, local_dir, shown, quoted=http)
    dirs: set[tuple[str, ...]] = set()
    files: dict[tuple[str, ...], dict[str, Any]] = {}
    for name, entry in listing.items():
        parts = _rel_parts(str(name), root, http)
        if parts is None:
            if str(name).rstrip("/") != root:
                out.errors.append((_shown(fs, str(name)), "unsafe object name: not read"))
            continue
        if not parts:
            continue
        if entry.get("type") == "directory":
            dirs.add(tuple(parts))
        else:
            files[tuple(parts)] = entry
            dirs.update(tuple(parts[:i]) for i in range(1, len(parts)))
    for d in sorted(dirs):  # the folder structure decides runs (splits, folds)
        os.makedirs(os.path.join(local_dir, *d), exist_ok=True)
    mlflow_runs = {p[:-1] for p in files if p[-1] == "meta.yaml" and (*p[:-1], "metrics") in dirs}
    plan: list[tuple[str, str, str, int | None]] = []
    for key, entry in sorted(files.items()):
        kind = role(key[-1], key[:-1])
        in_walked_folder = role("meta.yaml", key[:-1]) is not None
        if kind is None and in_walked_folder and any(
            key[:i] in mlflow_runs and key[i] in ("metrics", "params", "tags")
            for i in range(len(key) - 1)
        ):
            kind = "whole"  # MLflow file store: metrics/<key>, params/<key>, tags/<key>
        if kind is not None:
            plan.append((entry["name"], os.path.join(local_dir, *key), kind,
                         entry.get("size")))
    _fetch(fs, plan, sniff, out, scheme)
    return out


def _spool_file(fs: Any, path: str, shown: str, scheme: str, local_dir: str,
                info: dict[str, Any], sniff: Callable[[str, str], str | None],
                role: Callable[[str], str | None]) -> Spool:
    """A URL naming one file: fetch it, plus the sidecar files beside it."""
    http = _is_http(scheme)
    name = shown.rsplit("/", 1)[-1]
    if http:
        name = unquote(name)
    if not name or name in (".", "..") or "\\" in name:
        raise RemoteError("unsafe file name")
    kind = role(name)
    if kind is None:  # judged by name, as a local file is: a checkpoint is never fetched
        raise RemoteError("not a training log this tool can read")
    parent_url = shown.rsplit("/", 1)[0]
    out = Spool(shown, os.path.join(local_dir, name), local_dir, parent_url, quoted=http)
    plan = [(path, out.local, "table" if kind == "table" else "whole", info.get("size"))]
    parent = path.rsplit("/", 1)[0]
    with contextlib.suppress(Exception):  # no listable folder: no sidecars
        for entry in fs.ls(parent, detail=True):
            side = str(entry["name"]).rstrip("/").rsplit("/", 1)[-1]
            side = unquote(side) if http else side
            if entry.get("type") == "file" and side != name and role(side) == "sidecar":
                plan.append((entry["name"], os.path.join(local_dir, side), "sidecar",
                             entry.get("size")))
    _fetch(fs, plan, sniff, out, scheme)
    for where, msg in out.errors:
        if where == _shown(fs, path):
            raise RemoteError(msg)  # the file itself: the PATH's own error
    if not os.path.exists(out.local):  # a large table whose first bytes are not a log
        raise RemoteError("not a training log this tool can read")
    return out


def _shown(fs: Any, rpath: str) -> str:
    """A filesystem path as the URL a user would type (``s3://bucket/key``)."""
    return rpath if "://" in rpath else fs.unstrip_protocol(rpath)


def _fetch(fs: Any, plan: list[tuple[str, str, str, int | None]],
           sniff: Callable[[str, str], str | None], out: Spool, scheme: str) -> None:
    """Download the plan concurrently; a file that fails is an error, not an abort."""
    from concurrent.futures import ThreadPoolExecutor

    from diagnose.ingest.sidecars import MAX_SIDECAR_BYTES

    def one(item: tuple[str, str, str, int | None]) -> None:
        rpath, lpath, kind, size = item
        try:
            if kind == "marker":
                open(lpath, "wb").close()  # only its presence matters (pyvenv.cfg)
            elif kind == "sidecar" and size is not None and size > MAX_SIDECAR_BYTES:
                with open(lpath, "wb") as fh:  # the sidecar reader reports it too big
                    fh.truncate(size)
            elif kind == "table" and (size is None or size > WHOLE_TABLE_BYTES):
                head = fs.cat_file(rpath, start=0, end=HEAD_BYTES)
                with open(lpath, "wb") as fh:
                    fh.write(head)
                if len(head) != HEAD_BYTES:
                    return  # that was the whole file (or the server ignored the range)
                if sniff(lpath, os.path.basename(lpath)) is None:
                    os.remove(lpath)  # not a log: never fetched whole
                    return
                fs.get_file(rpath, lpath)
            else:
                fs.get_file(rpath, lpath)
        except Exception as exc:
            with contextlib.suppress(OSError):
                os.remove(lpath)
            out.errors.append((_shown(fs, rpath), describe_error(exc, scheme)))

    if not plan:
        return
    with ThreadPoolExecutor(max_workers=min(DOWNLOAD_THREADS, len(plan))) as pool:
        list(pool.map(one, plan))


# ---------------------------------------------------------------------------
# Mapping local spool paths back to URLs (after ingest)
# ---------------------------------------------------------------------------


def to_url(path: Any, local_root: str, url_root: str, quoted: bool = False) -> Any:
    """The URL a spooled local path stands for; other paths are returned unchanged."""
    text = os.fspath(path) if isinstance(path, os.PathLike) else path
    if not isinstance(text, str):
        return path
    if text == local_root:
        return url_root
    if text.startswith(local_root + os.sep):
        rel = text[len(local_root) + 1 :].replace(os.sep, "/")
        return f"{url_root}/{quote(rel) if quoted else rel}"
    return path


def relabel_text(text: str, local_root: str, url_root: str) -> str:
    """Replace the spool folder in a message with the URL it stands for."""
    return text.replace(local_root, url_root) if local_root in text else text


def relabel_run(run: Run, origin: tuple[str, str, bool]) -> Run:
    """Give a Run read from a spool its URLs back (path, sources, note paths/messages)."""
    local_root, url_root, quoted = origin
    run.path = to_url(run.path, local_root, url_root, quoted)
    run.sources = [to_url(p, local_root, url_root, quoted) for p in run.sources]
    run.notes = [
        replace(
            n,
            path=to_url(n.path, local_root, url_root, quoted) if n.path else n.path,
            message=relabel_text(n.message, local_root, url_root),
        )
        for n in run.notes
    ]
    return run
