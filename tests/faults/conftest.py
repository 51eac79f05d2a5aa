"""The fault-injection suite's shared faults: a disk that fills up, a folder that cannot be written.

Both are real: a tmpfs of a few hundred KB (mounting needs root), and a read-only remount of one (or,
for a non-root user, a folder without write permission). Where the machine allows neither, the tests
that need them skip and say why.
"""
import os
import subprocess
from pathlib import Path

import pytest


@pytest.fixture(scope="module")
def model(exported):
    """The trained MNIST128 model as ONNX, as edge_app and the deploy tools take it."""
    return exported


def _mount_tmpfs(mount: Path, size: str) -> None:
    mount.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True,
                          text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here to fill a disk ({done.stderr.strip() or 'mount failed'})")


@pytest.fixture()
def small_disk(tmp_path):
    """A 256 KB tmpfs: a disk that fills up during a run (mounting needs root; skipped otherwise)."""
    mount = tmp_path / "disk"
    _mount_tmpfs(mount, "256k")
    yield mount
    subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.fixture()
def read_only_dir(tmp_path):
    """An existing folder nothing can be written into: a read-only tmpfs as root (root ignores
    permissions), a chmod 555 folder otherwise."""
    folder = tmp_path / "read-only"
    if os.geteuid() == 0:
        _mount_tmpfs(folder, "1m")
        subprocess.run(["mount", "-o", "remount,ro", str(folder)], check=True)
        yield folder
        subprocess.run(["umount", "-l", str(folder)], capture_output=True)
        return
    folder.mkdir()
    folder.chmod(0o555)
    yield folder
    folder.chmod(0o755)
