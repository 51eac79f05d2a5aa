"""Where outputs go: checked before the work starts, written so that a failure leaves nothing half-done.

Every tool that writes a file (a model, an engine, a report, pictures) uses these, so that:
- a destination is checked *before* minutes of evaluation or building: a missing folder is made, one
  that cannot be written is refused with the option and the path named (`writable_file`, `writable_folder`);
- a file is written next to its destination and renamed into place only when complete
  (`replace_atomically`), so that disk full, a crash or SIGKILL leaves the earlier file or none — never
  a truncated model that a later run would load.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable

from .errors import WriteError

__all__ = ["json_destination", "write_json_report", "writable_file", "writable_folder", "creatable_folder", "replace_atomically", "write_text_atomic", "write_bytes_atomic"]


def _probe(folder: Path, option: str) -> None:
    """Create and remove a 1-byte file: the only test that catches read-only mounts, permissions and a
    full disk alike (os.access misses the last, and root passes every permission check)."""
    try:
        with tempfile.NamedTemporaryFile(dir=folder, prefix=".spamcam-probe-") as handle:
            handle.write(b"\0")
            handle.flush()
            os.fsync(handle.fileno())
    except OSError as error:
        raise WriteError(f"{option} {folder}: cannot write there ({error.strerror or error})") from error


def writable_folder(path: str | Path, option: str, *, create: bool = True) -> Path:
    """`path` as a folder that can be written (made, with its parents, when `create`)."""
    folder = Path(path).expanduser()
    if folder.exists() and not folder.is_dir():
        raise WriteError(f"{option} {folder}: is a file, not a folder")
    if not folder.exists():
        if not create:
            raise WriteError(f"{option} {folder}: no such folder")
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise WriteError(f"{option} {folder}: cannot create the folder ({error.strerror or error})") from error
    _probe(folder, option)
    return folder


def creatable_folder(path: str | Path, option: str) -> Path:
    """Check that `path` could be made and written, without making it: a folder that already exists is
    probed, a missing one is checked at its nearest existing ancestor. For tools that make their
    output folder only once their inputs are known to be good (train-cam --out)."""
    folder = Path(path).expanduser()
    existing = folder
    while not existing.exists() and existing != existing.parent:
        existing = existing.parent
    if not existing.is_dir():
        raise WriteError(f"{option} {folder}: {existing} is a file, not a folder")
    _probe(existing, option)
    return folder


def writable_file(path: str | Path, option: str) -> Path:
    """`path` as a file that can be (re)written: not a folder; its folder is made if missing and takes writes."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise WriteError(f"{option} {target}: is a folder; give a file name")
    if target.exists() and not target.is_file():  # /dev/full, a FIFO: the atomic rename would replace the node
        raise WriteError(f"{option} {target}: is not a regular file (a device or a pipe); give a file name")
    writable_folder(target.parent, option)
    return target


def replace_atomically(path: str | Path, write: Callable[[Path], object]) -> Path:
    """Call `write(temporary)` for a sibling temporary file, then rename it onto `path`.

    On any failure the temporary file is removed and the error names the destination; an existing
    file at `path` is left as it was."""
    target = Path(path)
    temporary = target.with_name(f".{target.name}.partial")
    try:
        write(temporary)
        with open(temporary, "rb+") as handle:  # on disk before the rename, so a power cut cannot swap in a hole
            os.fsync(handle.fileno())
        os.replace(temporary, target)
    except OSError as error:
        temporary.unlink(missing_ok=True)
        if isinstance(error, WriteError):
            raise
        raise WriteError(f"{target}: not written ({error.strerror or error}); nothing was left there") from error
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return target


def json_destination(value: str | None, option: str = "--json") -> Path | str | None:
    """A --json option: None (not asked), "-" (standard output), or a checked writable file."""
    if value is None or value == "-":
        return value
    return writable_file(value, option)


def write_json_report(destination: Path | str, data) -> str:
    """The report as JSON to `destination` ("-": standard output, one document); says where it went."""
    import json
    import sys

    text = json.dumps(data, indent=2, default=float)
    if destination == "-":
        print(text, file=sys.stdout, flush=True)
        return "standard output"
    write_text_atomic(destination, text)
    return str(destination)


def write_text_atomic(path: str | Path, text: str) -> Path:
    return replace_atomically(path, lambda temporary: temporary.write_text(text))


def write_bytes_atomic(path: str | Path, data: bytes) -> Path:
    return replace_atomically(path, lambda temporary: temporary.write_bytes(data))
