"""Hyperparameter files beside the logs: hparams.yaml, opt.yaml, args.yaml, config.json...

These files come from strangers' repositories, and Lightning / YOLOv5 dump them with
PyYAML's full dumper, so they carry ``!!python/object`` tags (argparse Namespaces, whole
torch modules).  They are read with :class:`PlainSafeLoader`, a ``yaml.SafeLoader``
that turns every tag it does not know into a plain value WITHOUT constructing or calling
anything: a Namespace becomes its dict of attributes, any other object the string
``<module.Class>``.  ``yaml.Loader``/``unsafe_load`` and pickle are never used.
"""

from __future__ import annotations

import json
import reprlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import yaml

from diagnose.hparams import flatten
from diagnose.ingest.csv_logs import LogReadError, decode_bytes
from diagnose.run import IngestNote

#: File names discovery treats as hyperparameter sidecars (lower-case).
SIDECAR_NAMES: tuple[str, ...] = (
    "hparams.yaml",
    "hparams.yml",
    "hparams.json",
    "opt.yaml",
    "data.yaml",  # Ultralytics / Roboflow dataset file: nc and names (the class count)
    "data.yml",
    "args.yaml",
    "args.yml",
    "args.json",
    "config.yaml",
    "config.yml",
    "config.json",
    "params.json",
    "params.yaml",
    "hyperparameters.json",
    "hyperparameters.yaml",
    "hyperparams.json",
    "hyperparams.yaml",
    "training_args.json",
)

#: Sidecars larger than this are not hyperparameters (a dataset dump named config.json).
MAX_SIDECAR_BYTES = 20_000_000
#: At most this many flattened keys per file: guards against YAML alias bombs.
MAX_KEYS = 5_000
#: YAML sidecars are parsed up to this many lines (or flow items).
MAX_YAML_LINES = 50_000

#: Object tags whose mapping IS the hyperparameters (keep it as a dict).
_MAPPING_CLASSES = (
    "argparse.Namespace",
    "collections.OrderedDict",
    "lightning.fabric.utilities.data.AttributeDict",
    "lightning_fabric.utilities.data.AttributeDict",
    "pytorch_lightning.utilities.parsing.AttributeDict",
    "lightning.pytorch.utilities.parsing.AttributeDict",
    "omegaconf.dictconfig.DictConfig",
    "types.SimpleNamespace",
)
_PYTHON_TAG = "tag:yaml.org,2002:python/"


#: libyaml's CSafeLoader is SafeLoader with the parser in C (same SafeConstructor, same
#: resolver, so the same safety); it reads a 4 MB Lightning hparams.yaml that pickled a
#: whole dataset in 0.05 s instead of 3 s.  Pure-Python SafeLoader when libyaml is absent.
_SafeBase: type = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


# the base is chosen at run time (typed ``type``), which mypy cannot subclass-check
class PlainSafeLoader(_SafeBase):  # type: ignore[misc]
    """SafeLoader whose unknown tags yield plain data; counts them in ``unknown_tags``."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self.unknown_tags: dict[str, int] = {}


def _class_of(tag: str) -> str:
    """``tag:yaml.org,2002:python/object/apply:os.system`` -> ``os.system``."""
    tail = tag[len(_PYTHON_TAG) :] if tag.startswith(_PYTHON_TAG) else tag.lstrip("!")
    return tail.split(":", 1)[1] if ":" in tail else tail


def _construct_unknown(loader: PlainSafeLoader, suffix: str, node: yaml.Node) -> Any:
    """Plain value for a tagged node; nothing is imported, constructed or called."""
    tag = node.tag
    loader.unknown_tags[tag] = loader.unknown_tags.get(tag, 0) + 1
    cls = _class_of(tag)
    if tag.startswith(_PYTHON_TAG):
        kind = tag[len(_PYTHON_TAG) :].split(":", 1)[0]
        if kind in ("tuple", "list") and isinstance(node, yaml.SequenceNode):
            return loader.construct_sequence(node, deep=True)
        scalar_kinds = ("str", "unicode", "bytes", "int", "long", "float", "bool", "none")
        if kind in scalar_kinds and isinstance(node, yaml.ScalarNode):
            return loader.construct_scalar(node)
        if cls in _MAPPING_CLASSES and isinstance(node, yaml.MappingNode):
            data = loader.construct_mapping(node, deep=True)
            # object/new and object/apply wrap attributes in state/kwds/dictitems.
            for key in ("state", "dictitems", "kwds"):
                if isinstance(data.get(key), Mapping):
                    return dict(data[key])
            return {str(k): v for k, v in data.items()}
        return f"<{cls}>"
    # Local tags (!Foo, Lightning/OmegaConf custom tags): the node's plain content.
    if isinstance(node, yaml.MappingNode):
        return loader.construct_mapping(node, deep=True)
    if isinstance(node, yaml.SequenceNode):
        return loader.construct_sequence(node, deep=True)
    return loader.construct_scalar(node)


# The empty prefix matches every tag SafeLoader has no exact constructor for.
PlainSafeLoader.add_multi_constructor("", _construct_unknown)


def load_yaml_plain(text: str) -> tuple[Any, dict[str, int]]:
    """Parse YAML text safely; returns (data, {unknown tag: count})."""
    loader = PlainSafeLoader(text)
    try:
        return loader.get_single_data(), loader.unknown_tags
    finally:
        loader.dispose()


_short = reprlib.Repr()
_short.maxlist = _short.maxtuple = _short.maxdict = 20
_short.maxlevel = 3
_short.maxstring = _short.maxother = 200


def _plain(value: Any, budget: list[int], depth: int = 0) -> Any:
    """Mappings stay nested (for flatten), lists become a bounded string, keys are capped.

    The caps matter: aliases let a 1 KB YAML expand into billions of entries, and
    ``str()`` on such a list would never finish.
    """
    if isinstance(value, Mapping):
        if depth > 20:
            return _short.repr(value)
        out: dict[str, Any] = {}
        for key, item in value.items():
            if budget[0] <= 0:
                break
            budget[0] -= 1
            out[str(key)] = _plain(item, budget, depth + 1)
        return out
    if isinstance(value, (list, tuple, set)):
        return _short.repr(list(value) if isinstance(value, (tuple, set)) else value)
    if isinstance(value, bytes):
        return _short.repr(value)
    return value


def read_sidecar(path: Path) -> tuple[dict[str, Any], list[IngestNote]]:
    """One sidecar -> (flattened raw hparams, notes).  Never raises for bad content."""
    path = Path(path)
    notes: list[IngestNote] = []
    try:
        size = path.stat().st_size
        if size > MAX_SIDECAR_BYTES:
            return {}, [
                IngestNote("unsupported", f"sidecar too large ({size} bytes); skipped", str(path))
            ]
        raw = path.read_bytes()
        text, enc = decode_bytes(raw, path)
        notes.extend(enc)
    except (OSError, LogReadError) as exc:
        return {}, [IngestNote("unreadable", f"sidecar not readable: {exc}", str(path))]
    if not text.strip():
        return {}, [IngestNote("unreadable", "sidecar is empty", str(path))]
    unknown: dict[str, int] = {}
    if path.suffix.lower() != ".json":
        text, cut_notes = _bound_yaml(text, path)
        notes.extend(cut_notes)
        if not text:
            return {}, notes
    try:
        if path.suffix.lower() == ".json":
            data = json.loads(text)
        else:
            data, unknown = load_yaml_plain(text)
    except (ValueError, yaml.YAMLError, RecursionError) as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        notes.append(IngestNote("unreadable", f"sidecar does not parse: {first}", str(path)))
        return {}, notes
    if unknown:
        shown = ", ".join(sorted({_class_of(t) for t in unknown})[:5])
        notes.append(
            IngestNote(
                "unsupported",
                f"{sum(unknown.values())} tagged YAML value(s) read as plain data, "
                f"nothing constructed ({shown})",
                str(path),
                details={"tags": unknown},
            )
        )
    if data is None:
        return {}, notes
    if not isinstance(data, Mapping):
        notes.append(
            IngestNote("unsupported", "sidecar is not a key/value mapping; skipped", str(path))
        )
        return {}, notes
    budget = [MAX_KEYS]
    plain = _plain(data, budget)
    if budget[0] <= 0:
        notes.append(
            IngestNote(
                "truncated", f"sidecar has more than {MAX_KEYS} keys; kept the first", str(path)
            )
        )
    flat = flatten(plain)
    if path.name.lower() == "hyperparameters.json":
        # SageMaker JSON-encodes every value a second time: "\"adam\"".
        flat = {k: _unquote(v) for k, v in flat.items()}
    return flat, notes


def _bound_yaml(text: str, path: Path) -> tuple[str, list[IngestNote]]:
    """YAML text cut to :data:`MAX_YAML_LINES` lines: building the nodes of a million
    keys takes 25 s even with libyaml, and only :data:`MAX_KEYS` would be kept."""
    notes: list[IngestNote] = []
    lines = text.count("\n")
    if lines > MAX_YAML_LINES:
        pos = -1
        for _ in range(MAX_YAML_LINES):
            pos = text.find("\n", pos + 1)
        text = text[: pos + 1]
        notes.append(
            IngestNote(
                "truncated",
                f"sidecar has {lines} lines; only the first {MAX_YAML_LINES} were read "
                "(too many keys)",
                str(path),
            )
        )
    if text.count(",") > MAX_YAML_LINES:  # one flow mapping or list with a million items
        notes.append(
            IngestNote(
                "unsupported",
                f"sidecar has over {MAX_YAML_LINES} flow-style items (too many keys); skipped",
                str(path),
            )
        )
        return "", notes
    return text, notes


def _unquote(value: Any) -> Any:
    if isinstance(value, str) and len(value) >= 2 and value[0] == value[-1] == '"':
        return value[1:-1]
    return value


def read_sidecars(paths: list[Path]) -> tuple[dict[str, Any], list[IngestNote]]:
    """Read every sidecar in order; a key set by a later file overrides an earlier one.

    Returns raw hparams flattened with '.'-joined keys (canonical names are the
    dispatcher's job, via :func:`diagnose.hparams.canonicalize`) and notes; a sidecar that
    fails to parse gives a note, never an exception.
    """
    raw: dict[str, Any] = {}
    notes: list[IngestNote] = []
    for path in paths:
        flat, file_notes = read_sidecar(Path(path))
        raw.update(flat)
        notes.extend(file_notes)
    return raw, notes
