"""Image-level-labelled folders, CSV lists and VOC-style directories: labels, kept-aside boxes, and a
train + eval round trip on a VOC-style directory."""
import csv

import cv2
import numpy as np
import pytest

from training.data.folders import image_csv, image_folder, voc_directory
from training.data.registry import load_splits


def _digit_image(digit: int, size=(96, 128), seed=0):
    rng = np.random.default_rng(seed)
    image = np.full(size + (3,), 20, np.uint8)
    x, y = int(rng.integers(5, size[1] - 40)), int(rng.integers(35, size[0] - 5))
    cv2.putText(image, str(digit), (x, y), cv2.FONT_HERSHEY_SIMPLEX, 1.2, (255, 255, 255), 3)
    ys, xs = np.nonzero(image[:, :, 0] > 128)
    return image, (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)


def _voc(root, count=40):
    (root / "Annotations").mkdir(parents=True)
    (root / "JPEGImages").mkdir()
    truths = []
    for i in range(count):
        digit = 3 if i % 2 == 0 else 7
        image, (x0, y0, x1, y1) = _digit_image(digit, seed=i)
        cv2.imwrite(str(root / "JPEGImages" / f"{i:04d}.png"), image)
        name = "three" if digit == 3 else "seven"
        (root / "Annotations" / f"{i:04d}.xml").write_text(
            f"<annotation><filename>{i:04d}.png</filename><object><name>{name}</name><difficult>0</difficult>"
            f"<bndbox><xmin>{x0 + 1}</xmin><ymin>{y0 + 1}</ymin><xmax>{x1}</xmax><ymax>{y1}</ymax></bndbox>"
            "</object></annotation>")
        truths.append((name, (x0, y0, x1, y1)))
    return truths


def test_voc_labels_come_from_objects_and_boxes_are_scaled_to_the_input(tmp_path):
    truths = _voc(tmp_path / "voc", 6)
    data = voc_directory(tmp_path / "voc", (64, 64), channels=3)
    assert data.classes == ["seven", "three"]
    for i, (name, (x0, y0, x1, y1)) in enumerate(truths):
        sample = data[i]
        assert sample.image.shape == (3, 64, 64)
        assert sample.labels.tolist() == ([0.0, 1.0] if name == "three" else [1.0, 0.0])
        (cls, bx0, by0, bx1, by1), = sample.boxes
        np.testing.assert_allclose([bx0, by0, bx1, by1], [x0 * 0.5, y0 * 64 / 96, x1 * 0.5, y1 * 64 / 96])


def test_class_folders_with_background(tmp_path):
    for name, digit in (("three", 3), ("background", 5)):
        (tmp_path / name).mkdir()
        for i in range(3):
            cv2.imwrite(str(tmp_path / name / f"{i}.jpg"), _digit_image(digit, seed=i)[0])
    data = image_folder(tmp_path, (48, 48))
    assert data.classes == ["three"]
    labels = sorted(data[i].labels.tolist()[0] for i in range(len(data)))
    assert labels == [0, 0, 0, 1, 1, 1]
    assert len(data[0].boxes) == 0  # image-level labels only


def test_csv_lists_and_errors(tmp_path):
    cv2.imwrite(str(tmp_path / "a.png"), _digit_image(3)[0])
    cv2.imwrite(str(tmp_path / "b.png"), _digit_image(7)[0])
    with open(tmp_path / "list.csv", "w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerows([["image", "labels"], ["a.png", "three;digit"], ["b.png", ""]])
    data = image_csv(tmp_path / "list.csv", (32, 32))
    assert data.classes == ["digit", "three"] and data[0].labels.tolist() == [1.0, 1.0] and not data[1].labels.any()
    (tmp_path / "b.png").write_bytes(b"broken")
    with pytest.raises(ValueError, match="not a readable image"):
        data[1]
    (tmp_path / "bad.csv").write_text("path,classes\nx,y\n")
    with pytest.raises(ValueError, match="image,labels"):
        image_csv(tmp_path / "bad.csv", (32, 32))
    with pytest.raises(ValueError, match="one sub-folder"):
        image_folder(tmp_path / "list.csv", (32, 32))


@pytest.mark.slow
def test_train_and_evaluate_on_a_voc_directory(tmp_path):
    from training.cli import main as train_cli
    from training.evaluate_cli import evaluate_model

    _voc(tmp_path / "voc", 60)
    out = tmp_path / "run"
    assert train_cli(["--dataset", f"voc:{tmp_path / 'voc'}", "--input-size", "96", "128", "--epochs", "2",
                      "--out", str(out), "--no-progress"]) == 0
    result = evaluate_model(out / "ckpt.pt", split="test")
    assert result["classes"] == ["seven", "three"] and result["images"] == 6
    assert all(0.0 <= v <= 1.0 for v in result["classification_ap"] if v == v)
    splits = load_splits(f"voc:{tmp_path / 'voc'}", input_size=(96, 128))
    assert len(splits.train) + len(splits.val) + len(splits.test) == 60
