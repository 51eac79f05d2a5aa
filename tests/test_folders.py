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
    from training.evaluate import evaluate_model

    _voc(tmp_path / "voc", 60)
    out = tmp_path / "run"
    assert train_cli(["--dataset", f"voc:{tmp_path / 'voc'}", "--input-size", "96", "128", "--epochs", "2",
                      "--out", str(out), "--no-progress"]) == 0
    result = evaluate_model(out / "ckpt.pt", split="test")
    assert result["classes"] == ["seven", "three"] and result["images"] == 6
    assert all(0.0 <= v <= 1.0 for v in result["classification_ap"] if v == v)
    splits = load_splits(f"voc:{tmp_path / 'voc'}", input_size=(96, 128))
    assert len(splits.train) + len(splits.val) + len(splits.test) == 60
    # LeNet on data read from disk sees it centred by the training split's own statistics (--input-norm auto).
    from training.checkpoint import load_model

    pixels = np.stack([splits.train[i].image for i in range(len(splits.train))])
    config = load_model(out / "ckpt.pt")[0].config
    np.testing.assert_allclose(config.mean, pixels.mean(axis=(0, 2, 3)), atol=1e-5)
    np.testing.assert_allclose(config.std, pixels.std(axis=(0, 2, 3)), atol=1e-5)


def _lists(root, **lists):
    main = root / "ImageSets" / "Main"
    main.mkdir(parents=True, exist_ok=True)
    for name, ids in lists.items():
        (main / f"{name}.txt").write_text("".join(f"{i:04d}\n" for i in ids))


def _ids(split) -> set[str]:
    return {p.stem for p in split.paths}


def test_voc_with_only_train_and_test_lists_never_trains_on_test(tmp_path):
    """The common layout that used to be split 80/10/10 at random, putting test images into training."""
    _voc(tmp_path / "voc", 40)
    _lists(tmp_path / "voc", train=range(0, 30), test=range(30, 40))
    splits = load_splits(f"voc:{tmp_path / 'voc'}", input_size=(96, 128))
    assert _ids(splits.test) == {f"{i:04d}" for i in range(30, 40)}
    assert not (_ids(splits.train) | _ids(splits.val)) & _ids(splits.test)
    assert _ids(splits.train) | _ids(splits.val) == {f"{i:04d}" for i in range(30)}
    assert len(splits.val) == 3 and not _ids(splits.train) & _ids(splits.val)  # val carved from train
    assert "val carved from train" in splits.description and "27 train / 3 val / 10 test" in splits.description


def test_voc_trainval_and_test_lists_and_limits(tmp_path):
    _voc(tmp_path / "voc", 40)
    _lists(tmp_path / "voc", trainval=range(0, 20), val=range(15, 20), test=range(20, 40))
    splits = load_splits(f"voc:{tmp_path / 'voc'}", input_size=(96, 128), sizes={"train": 4, "test": 6})
    assert _ids(splits.val) == {f"{i:04d}" for i in range(15, 20)}
    assert len(splits.train) == 4 and _ids(splits.train) <= {f"{i:04d}" for i in range(15)}
    assert len(splits.test) == 6 and _ids(splits.test) <= {f"{i:04d}" for i in range(20, 40)}
    assert "train capped to 4" in splits.description


def test_overlapping_lists_are_refused(tmp_path):
    _voc(tmp_path / "voc", 20)
    _lists(tmp_path / "voc", train=range(0, 12), val=range(12, 15), test=range(10, 20))
    with pytest.raises(ValueError, match="train and test splits share 2 image"):
        load_splits(f"voc:{tmp_path / 'voc'}", input_size=(96, 128))


def test_the_default_input_size_is_the_images_own(tmp_path):
    _voc(tmp_path / "voc", 12)
    splits = load_splits(f"voc:{tmp_path / 'voc'}")
    assert splits.input_size == (96, 128) and splits.test[0].image.shape == (3, 96, 128)
    assert "input size 96x128" in splits.description


def test_folder_with_train_and_test_folders(tmp_path):
    for split, count in (("train", 10), ("test", 4)):
        for name, digit in (("three", 3), ("background", 5)):
            (tmp_path / split / name).mkdir(parents=True)
            for i in range(count):
                cv2.imwrite(str(tmp_path / split / name / f"{i}.png"), _digit_image(digit, seed=i)[0])
    splits = load_splits(f"folder:{tmp_path}", input_size=(48, 48))
    assert all(p.parent.parent.name == "test" for p in splits.test.paths) and len(splits.test) == 8
    assert all(p.parent.parent.name == "train" for p in splits.train.paths + splits.val.paths)
    assert len(splits.val) == 2 and "val carved from train" in splits.description
    (tmp_path / "test" / "seven").mkdir()
    cv2.imwrite(str(tmp_path / "test" / "seven" / "0.png"), _digit_image(7)[0])
    with pytest.raises(ValueError, match="do not exist in the train folder"):
        load_splits(f"folder:{tmp_path}", input_size=(48, 48))


def test_csv_split_column(tmp_path):
    rows = [["image", "labels", "split"]]
    for i in range(12):
        cv2.imwrite(str(tmp_path / f"{i}.png"), _digit_image(3 if i % 2 else 7, seed=i)[0])
        rows.append([f"{i}.png", "three" if i % 2 else "", "test" if i >= 9 else "train"])
    with open(tmp_path / "list.csv", "w", newline="") as handle:
        csv.writer(handle).writerows(rows)
    splits = load_splits(f"csv:{tmp_path / 'list.csv'}", input_size=(32, 32))
    assert sorted(p.name for p in splits.test.paths) == ["10.png", "11.png", "9.png"]
    assert len(splits.train) + len(splits.val) == 9 and len(splits.val) == 1
    with open(tmp_path / "list.csv", "a", newline="") as handle:
        csv.writer(handle).writerow(["0.png", "", "test"])  # the same image in train and in test
    with pytest.raises(ValueError, match="train and test splits share 1 image"):
        load_splits(f"csv:{tmp_path / 'list.csv'}", input_size=(32, 32))




def test_resuming_a_raw_pixel_run_with_measured_statistics_says_which_option_differs(tmp_path, capsys):
    from training.cli import main as train_cli

    _voc(tmp_path / "voc", 30)
    args = ["--dataset", f"voc:{tmp_path / 'voc'}", "--input-size", "64", "--out", str(tmp_path / "run"), "--no-progress"]
    assert train_cli(args + ["--epochs", "1", "--input-norm", "none"]) == 0
    capsys.readouterr()
    assert train_cli(args + ["--epochs", "2", "--resume"]) == 2  # auto: measured statistics now
    error = capsys.readouterr().err
    assert "mean [0.0, 0.0, 0.0] there" in error and "resume it with --input-norm none" in error
    assert train_cli(args + ["--epochs", "2", "--resume", "--input-norm", "none"]) == 0
