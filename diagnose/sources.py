"""What discovery hands to ingest: which files make up one run, and how to read them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from diagnose.run import IngestNote

#: File kinds ingest knows how to read.
KINDS = (
    "tensorboard",
    "csv",
    "keras_csv",
    "lightning_csv",
    "ultralytics",
    "hf_trainer_state",
    "mlflow",
    "jsonl",
    "keras_history",
    "mlflow_db",
    "wandb",
)


@dataclass(frozen=True)
class SourceFile:
    """One file (or, for MLflow, one run folder) of a run.

    ``split`` is set when the layout, not the tag, names the split (Keras ``train/`` and
    ``validation/`` folders).  ``tag_suffix`` is set for torch ``add_scalars`` series
    folders: every tag ``T`` read from the file becomes ``T/<tag_suffix>``.  ``member``
    names one run inside a file that holds many (the run uuid in an MLflow SQLite store).
    """

    path: Path
    kind: str
    split: str | None = None
    tag_suffix: str | None = None
    member: str | None = None


@dataclass
class RunSource:
    """One run as discovery found it: an id, a folder, its files and sidecars.

    ``files`` of kind ``tensorboard`` are ordered as they must be read (by the timestamp
    in their names, then by name).  ``sidecars`` are hyperparameter files beside the logs
    (``hparams.yaml``, ``opt.yaml``, ``args.yaml``, ``config.json``...).  ``remote`` is
    set for a run spooled from a remote PATH: (local spool folder, the URL it stands
    for, whether names are URL-quoted), so ingest can give the Run its URLs back.
    ``notes`` are what discovery noticed about the run (a sidecar it refused to follow);
    ingest copies them into the Run.
    """

    run_id: str
    path: Path
    files: list[SourceFile] = field(default_factory=list)
    sidecars: list[Path] = field(default_factory=list)
    remote: tuple[str, str, bool] | None = None
    notes: list[IngestNote] = field(default_factory=list)

    @property
    def kinds(self) -> list[str]:
        """Distinct kinds of the run's files, in file order."""
        seen: list[str] = []
        for f in self.files:
            if f.kind not in seen:
                seen.append(f.kind)
        return seen
