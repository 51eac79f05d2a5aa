"""Small checks the fault tests share."""
import os
from pathlib import Path


def fill(disk: Path, leave: int) -> None:
    """Fill `disk` until only about `leave` bytes are free."""
    free = os.statvfs(disk).f_bavail * os.statvfs(disk).f_frsize
    (disk / "ballast").write_bytes(b"\0" * max(0, free - leave))


def one_line_error(err: str, prog: str) -> str:
    """The error line a tool printed; fails if it printed a traceback instead."""
    assert "Traceback" not in err, err
    lines = [line for line in err.splitlines() if line.startswith(f"{prog}: error:")]
    assert lines, err
    return lines[0]
