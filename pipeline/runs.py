"""Run directories, stage hashes, manifests and atomic writes: the pipeline's cache.

Layout: ``<out>/<experiment>/<stage>-<hash>/`` holding ``config.yaml`` (the stage's resolved config
slice), ``stage.log``, the stage's artifacts, and ``manifest.json``, written last and atomically.
The hash covers the stage's config slice, its upstream stages' hashes and ``SCHEMA_VERSION``, so a
change to one stage's options reruns that stage and everything downstream, nothing else.

Every file the project writes goes through this module: :func:`atomic_path` (a temporary path beside
the destination, fsynced and renamed into place) and the ``atomic_*`` helpers built on it, so a kill at
any moment leaves the old complete file or none, never a torn one (tests/test_atomic_writes.py kills a
writer mid-file, and greps the packages for writes that bypass these). It is also where a multi-process
run enforces its single writer: on ranks other than 0 (:func:`set_writer`) they write nothing.
A full disk while writing is a :class:`DiskFullError` naming the file and the fix; the file it was
replacing is left as it was and no temporary file stays behind.
"""

from __future__ import annotations

import contextlib
import errno
import hashlib
import json
import logging
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from pipeline.schema import SCHEMA_VERSION

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"

_WRITER = True


class UserError(Exception):
    """A problem the user can fix (input, disk, options): reported as one line, exit code 2."""


class ArtifactError(UserError):
    """An upstream artifact is missing or unreadable; the message says which and how to rebuild it."""


class DiskFullError(UserError):
    """No space left while writing an artifact."""


def set_writer(writer: bool) -> None:
    """Make this process the writer of artifacts (True) or a rank that writes nothing (False)."""
    global _WRITER
    _WRITER = writer


def check_writable(folder: Path) -> None:
    """Write, read back and delete a probe file in ``folder`` (created if missing): permission bits do
    not stop root, a read-only or full file system does, so only a real write tells."""
    folder = Path(folder)
    try:
        folder.mkdir(parents=True, exist_ok=True)
        fd, probe = tempfile.mkstemp(prefix=".write-probe.", dir=folder)
        try:
            os.write(fd, b"ok")
        finally:
            os.close(fd)
            os.unlink(probe)
    except OSError as exc:
        why = "no space left" if exc.errno in (errno.ENOSPC, errno.EDQUOT) else (exc.strerror or str(exc))
        raise UserError(f"{folder}: cannot write there ({why}); choose another folder with --out "
                        "or make this one writable") from exc


def stage_hash(stage: str, config_slice: Any, upstream: dict[str, str]) -> str:
    payload = json.dumps({"schema": SCHEMA_VERSION, "stage": stage, "config": config_slice,
                          "upstream": upstream}, sort_keys=True, default=str)
    return hashlib.sha256(payload.encode()).hexdigest()[:12]


# Temporary copies live in a hidden folder beside the destination, ``.partial.<name>.<random>/<name>``:
# same file system (so the final rename is atomic), the real name (writers that pick the format from
# the suffix, like savefig or coremltools' .mlpackage, see it), and never under the artifact's own
# name, so nothing that looks an artifact up by name can take a half-written copy for it.
PARTIAL_PREFIX = ".partial."


def _fsync_tree(path: Path) -> None:
    """Flush a written file (or every file of a written folder) to disk before it is renamed into place."""
    files = [path] if path.is_file() else [p for p in path.rglob("*") if p.is_file()]
    for f in files:
        fd = os.open(f, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def _fsync_dir(folder: Path) -> None:
    """Make a rename in ``folder`` durable (best effort: not every file system can fsync a folder)."""
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _raise_if_disk_full(exc: OSError, path: Path) -> None:
    if exc.errno in (errno.ENOSPC, errno.EDQUOT):
        raise DiskFullError(f"no space left on the device while writing {path}; free some space (or use --out "
                            "on a larger disk) and run the same command again: finished stages are kept") from exc


@contextlib.contextmanager
def atomic_path(path: Path):
    """Yield a temporary path to write ``path``'s new content to; on a clean exit it is fsynced and renamed
    onto ``path``. For writers with their own file API (``torch.save``, ``onnx.save``, ``savefig``,
    coremltools' ``.save`` of a folder package, ``adb pull``), and the base of every ``atomic_*`` helper.

    A file replaces the old one in one ``os.replace``: a reader, or a kill at any moment, sees the old
    complete file or the new complete one. A folder (an ``.mlpackage``) cannot be swapped in one rename
    over a non-empty folder: the old one is moved aside first, so between the two renames the destination
    is absent, never partial. An error in the body leaves ``path`` as it was and removes the temporary;
    a kill leaves a ``.partial.*`` folder that :meth:`StageDir.begin` removes on the stage's next run.
    On ranks other than the writer (:func:`set_writer`) the body writes into a scratch folder, then dropped.
    """
    path = Path(path)
    if not _WRITER:
        with tempfile.TemporaryDirectory(prefix="not-the-writer-") as scratch:
            yield Path(scratch) / path.name
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        work = Path(tempfile.mkdtemp(prefix=f"{PARTIAL_PREFIX}{path.name}.", dir=path.parent))
    except OSError as exc:
        _raise_if_disk_full(exc, path)
        raise
    tmp = work / path.name
    try:
        yield tmp
        if not tmp.exists():
            raise FileNotFoundError(f"the writer of {path} wrote nothing to {tmp}")
        _fsync_tree(tmp)
        if tmp.is_dir() or path.is_dir():
            if path.exists() or path.is_symlink():
                os.replace(path, work / ".old")
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except OSError as exc:
        _raise_if_disk_full(exc, path)
        raise
    finally:
        shutil.rmtree(work, ignore_errors=True)


def atomic_save(path: Path, write: Callable[[Path], None]) -> Path:
    """``write(tmp_path)`` then rename onto ``path`` (:func:`atomic_path`); nothing at all on a non-writer rank."""
    path = Path(path)
    if _WRITER:
        with atomic_path(path) as tmp:
            write(tmp)
    return path


def atomic_write_bytes(path: Path, data: bytes) -> Path:
    return atomic_save(path, lambda p: p.write_bytes(data))


def atomic_write_text(path: Path, text: str) -> Path:
    return atomic_save(path, lambda p: p.write_text(text))


def atomic_write_json(path: Path, obj: Any) -> Path:
    return atomic_write_text(path, json.dumps(obj, indent=2, sort_keys=False, default=_json_default) + "\n")


def atomic_torch_save(path: Path, obj: Any) -> Path:
    import torch

    return atomic_save(path, lambda p: torch.save(obj, p))


def atomic_write_npz(path: Path, **arrays) -> Path:
    import numpy as np

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.savez(fh, **arrays)
    return atomic_save(path, write)


def atomic_write_npy(path: Path, array) -> Path:
    """One array as ``.npy``, so readers can memory-map it (``np.load(path, mmap_mode=...)``)."""
    import numpy as np

    def write(p: Path) -> None:
        with open(p, "wb") as fh:
            np.save(fh, array)
    return atomic_save(path, write)


def _json_default(obj: Any) -> Any:
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, Path):
        return str(obj)
    raise TypeError(f"not JSON serializable: {type(obj).__name__}")


@contextlib.contextmanager
def _reading(path: Path, stage: str, what: str):
    """Turn any failure to read a stage's artifact into one line naming the file and the fix."""
    try:
        yield
    except FileNotFoundError as exc:
        raise ArtifactError(f"{path} is missing; rebuild it with --force {stage}") from exc
    except Exception as exc:
        raise ArtifactError(f"{path} is not a readable {what} ({type(exc).__name__}); "
                            f"rebuild it with --force {stage}") from exc


def load_checkpoint(path: Path, stage: str, map_location: Any = "cpu") -> dict:
    """``torch.load`` of a stage's checkpoint (tensors and plain data only: nothing in the file is
    executed), with a one-line error naming the file and the fix."""
    import torch

    path = Path(path)
    with _reading(path, stage, "checkpoint"):
        ckpt = torch.load(path, map_location=map_location, weights_only=True)
    if not isinstance(ckpt, dict) or "state_dict" not in ckpt:
        raise ArtifactError(f"{path} is not a checkpoint written by this pipeline; rebuild it with --force {stage}")
    return ckpt


def load_weights(model: Any, state_dict: dict, path: Path, stage: str) -> Any:
    """``model.load_state_dict`` with a one-line error when the checkpoint holds another architecture."""
    try:
        model.load_state_dict(state_dict)
    except (RuntimeError, KeyError, TypeError) as exc:
        first = (str(exc).strip().splitlines() or [type(exc).__name__])[0][:160]
        raise ArtifactError(f"{path} holds weights of another architecture ({first}); "
                            f"rebuild it with --force {stage}") from exc
    return model


def read_npz(path: Path, stage: str) -> dict:
    """Every array of a stage's ``.npz``, with a one-line error naming the file and the fix."""
    import numpy as np

    path = Path(path)
    with _reading(path, stage, "array file"), np.load(path) as z:
        return {k: z[k] for k in z.files}


def read_json(path: Path) -> Any:
    return json.loads(Path(path).read_text())


@dataclass
class StageDir:
    """One stage's folder and what its manifest says."""

    stage: str
    hash: str
    path: Path

    @property
    def manifest_path(self) -> Path:
        return self.path / MANIFEST

    def manifest(self) -> dict | None:
        try:
            return read_json(self.manifest_path)
        except (FileNotFoundError, json.JSONDecodeError):
            return None

    def is_complete(self) -> bool:
        """Complete: the manifest says so for this hash and schema, and every artifact it lists exists."""
        m = self.manifest()
        if not (m and m.get("status") == "complete" and m.get("hash") == self.hash
                and m.get("schema_version") == SCHEMA_VERSION):
            return False
        return all((self.path / a).exists() for a in (m.get("artifacts") or {}).values())

    def begin(self, config_slice: Any) -> None:
        """Start a (re)run: drop a stale manifest first so a crash never leaves 'complete' behind."""
        if not _WRITER:
            return
        self.path.mkdir(parents=True, exist_ok=True)
        if self.manifest_path.exists():
            self.manifest_path.unlink()
        # Temporary files of writes a kill interrupted; not in a folder that parallel processes share
        # under a lock (the source stage), where another process may be writing one right now.
        if not (self.path / ".lock").exists():
            for tmp in self.path.glob(".*.*"):
                if tmp.is_file():
                    tmp.unlink()
            for partial in sorted(self.path.rglob(PARTIAL_PREFIX + "*"), reverse=True):  # at any depth
                shutil.rmtree(partial, ignore_errors=True)
        atomic_write_text(self.path / "config.yaml", yaml.safe_dump(config_slice, sort_keys=False))

    def complete(self, metrics: dict, artifacts: dict[str, str], upstream: dict[str, str],
                 started: float) -> dict:
        manifest = {"stage": self.stage, "hash": self.hash, "status": "complete",
                    "schema_version": SCHEMA_VERSION, "upstream": upstream,
                    "started": time.strftime("%Y-%m-%dT%H:%M:%S", time.localtime(started)),
                    "duration_s": round(time.time() - started, 2),
                    "metrics": metrics, "artifacts": artifacts}
        atomic_write_json(self.manifest_path, manifest)
        return manifest


@dataclass
class StageContext:
    """What a stage's ``run`` gets: its own folder, its upstream stages' folders, the device
    (a ``pipeline.device.DeviceInfo``; its ``is_writer`` says whether this process writes artifacts)."""

    dir: Path
    upstream: dict[str, StageDir]
    device: Any

    @property
    def is_writer(self) -> bool:
        return self.device.is_writer

    def upstream_manifest(self, stage: str) -> dict:
        m = self.upstream[stage].manifest()
        if m is None:
            raise RuntimeError(f"upstream stage {stage!r} has no manifest in {self.upstream[stage].path}")
        return m


def dir_size(path: Path) -> int:
    path = Path(path)
    if path.is_file():
        return path.stat().st_size
    return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
