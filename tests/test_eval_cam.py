"""eval-cam on checkpoints trained with train-cam."""
import json

import cv2

import pytest

from training.checkpoint import load_model, save_checkpoint
from training.cli import main as train_cli
from training.evaluate import evaluate_model
from training.evaluate_cli import main as eval_cli

pytestmark = pytest.mark.slow


def test_eval_cam_prints_table_writes_json_and_pictures(mnist128_checkpoint, tmp_path, capsys):
    ckpt = mnist128_checkpoint["checkpoint"]
    code = eval_cli([ckpt, "--limit", "400", "--json", str(tmp_path / "m.json"), "--save-vis", str(tmp_path / "vis"),
                     "--vis-count", "5", "--maxboxacc"])
    assert code == 0
    out = capsys.readouterr().out
    assert "Classification" in out and "Pin-pointing" in out and "Extent" in out and "MaxBoxAccV2" in out
    metrics = json.loads((tmp_path / "m.json").read_text())
    assert metrics["images"] == 400 and metrics["classification_ap_mean"] >= 0.9
    assert 0 <= metrics["extent_ap_mean"] <= 1 and 0 <= metrics["MaxBoxAccV2"] <= 1
    examples = sorted(p for p in (tmp_path / "vis").glob("*.png") if p.name != "contact_sheet.png")
    assert len(examples) == 5
    sheet = cv2.imread(str(tmp_path / "vis" / "contact_sheet.png"))
    tile = cv2.imread(str(examples[0]))
    assert sheet.shape[1] > 5 * tile.shape[1] and sheet.shape[0] > tile.shape[0]  # one row of five, and a legend
    assert "MaxBoxAccRF" in metrics


def test_extent_ap_is_far_better_with_the_tuned_ratio(mnist128_checkpoint):
    ckpt = mnist128_checkpoint["checkpoint"]
    tuned = evaluate_model(ckpt, limit=500)
    untuned = evaluate_model(ckpt, limit=500, ratio=0.0)
    assert tuned["extent_ap_mean"] > untuned["extent_ap_mean"] + 0.2  # the raw 32 px fields are too big
    assert tuned["extent_ap_mean"] >= 0.6


def test_heights_take_the_r_given_for_them_or_the_widths_one(mnist128_checkpoint, capsys):
    ckpt = mnist128_checkpoint["checkpoint"]
    both = evaluate_model(ckpt, limit=200, ratio=0.5)
    tall = evaluate_model(ckpt, limit=200, ratio=0.5, ratio_y=0.2)
    assert (both["ratio"], both["ratio_y"]) == (0.5, None) and (tall["ratio"], tall["ratio_y"]) == (0.5, 0.2)
    assert tall["extent_ap_mean"] != both["extent_ap_mean"]  # the heights' r reached the boxes
    assert evaluate_model(ckpt, limit=200, ratio=0.5, ratio_y="same")["extent_ap_mean"] == both["extent_ap_mean"]
    with pytest.raises(SystemExit) as stop:
        eval_cli([ckpt, "--limit", "50", "--ratio", "0.5", "--ratio-y", "1.5"])
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "--ratio-y" in err and "(-1, 1)" in err and "same" in err


def test_tune_stores_the_chosen_box_settings_in_the_checkpoint(tmp_path):
    out = tmp_path / "run"
    assert train_cli(["--dataset", "embedded", "--epochs", "1", "--limit", "train=300", "--limit", "val=100",
                      "--out", str(out), "--no-progress"]) == 0
    ckpt = out / "ckpt.pt"
    model, payload = load_model(ckpt)
    model.config.ratio = 0.123  # off the tuning grid: only a rewrite of the file can replace it
    save_checkpoint(ckpt, model, extra=payload["extra"], training_state=payload["training_state"])
    result = evaluate_model(ckpt, dataset="embedded", limit=300, tune=True)
    stored, payload = load_model(ckpt)
    assert result["ratio"] != 0.123 and stored.config.ratio == result["ratio"]
    assert (stored.config.projection, stored.config.relative_floor) == (result["projection"], result["relative_floor"])
    assert stored.config.confidence_peak_scales == result["confidence_peak_scales"]  # the form chosen with them
    tried = {(row["projection"], row["relative_floor"]) for row in result["tuning_curve"]}
    assert tried == {(p, f) for p in ("theoretical", "interpolated") for f in (0.0, 0.25, 0.5, 0.75, 0.9)}
    best = max(result["tuning_curve"], key=lambda row: row["extent_ap"])["extent_ap"]
    key = ("projection", "relative_floor", "ratio", "ratio_y")
    assert [row for row in result["tuning_curve"] if [row[k] for k in key] == [result[k] for k in key]][0]["extent_ap"] == best
    assert payload["training_state"]  # rewriting the settings keeps the optimizer state for --resume


def test_tune_with_a_given_projection_and_floor_chooses_only_r(tmp_path):
    out = tmp_path / "run"
    assert train_cli(["--dataset", "embedded", "--epochs", "1", "--limit", "train=300", "--limit", "val=100",
                      "--out", str(out), "--no-progress", "--projection", "theoretical", "--relative-floor", "0"]) == 0
    ckpt = out / "ckpt.pt"
    assert (load_model(ckpt)[0].config.projection, load_model(ckpt)[0].config.relative_floor) == ("theoretical", 0.0)
    result = evaluate_model(ckpt, dataset="embedded", limit=300, tune=True, projection="theoretical",
                            relative_floor=0.5, ratio_y="same")
    assert {(row["projection"], row["relative_floor"]) for row in result["tuning_curve"]} == {("theoretical", 0.5)}
    assert result["ratio_y"] is None and all(row["ratio_y"] is None for row in result["tuning_curve"])
    stored = load_model(ckpt)[0].config
    assert (stored.projection, stored.relative_floor, stored.ratio) == ("theoretical", 0.5, result["ratio"])


def test_tune_ratio_refuses_a_split_with_too_few_objects_and_keeps_the_stored_r(tmp_path, capsys):
    out = tmp_path / "run"
    assert train_cli(["--dataset", "embedded", "--epochs", "1", "--limit", "train=300", "--limit", "val=100",
                      "--out", str(out), "--no-progress"]) == 0
    ckpt = out / "ckpt.pt"
    before = ckpt.read_bytes()
    stored_r = load_model(ckpt)[0].config.ratio
    assert eval_cli([str(ckpt), "--dataset", "embedded", "--limit", "40", "--tune", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "cannot tune r" in err and f"r stays {stored_r:g}" in err
    assert ckpt.read_bytes() == before  # untouched: the next evaluation still uses the good r


def test_reference_and_fast_give_the_same_metrics(mnist128_checkpoint):
    ckpt = mnist128_checkpoint["checkpoint"]
    fast = evaluate_model(ckpt, limit=150, method="fast")
    reference = evaluate_model(ckpt, limit=150, method="reference")
    assert fast["extent_ap"] == reference["extent_ap"]


def test_evaluation_defaults_to_the_splits_training_held_out(mnist_digits, tmp_path, capsys):
    """A model trained with --seed 3 on MNIST128 is tested on seed 3's test split unless told otherwise:
    with npm digits another seed's test split holds digits this model trained on."""
    from export.onnx_export import export_onnx
    from runtime.model_info import read_onnx_metadata
    import onnx

    out = tmp_path / "run"
    assert train_cli(["--dataset", "mnist128", "--seed", "3", "--objects", "1,2", "--epochs", "1", "--limit", "train=200",
                      "--limit", "val=50", "--out", str(out), "--no-progress"]) == 0
    ckpt = out / "ckpt.pt"
    onnx_path = export_onnx(ckpt, tmp_path / "m.onnx")
    assert read_onnx_metadata(onnx.load(str(onnx_path))).trained_on == {"dataset": "mnist128", "mnist_dir": None,
                                                                         "seed": 3, "objects": [1, 2]}
    for model in (ckpt, onnx_path):
        assert evaluate_model(model, limit=20, progress=False)["seed"] == 3
        assert evaluate_model(model, limit=20, seed=0, progress=False)["seed"] == 0  # told otherwise
        assert evaluate_model(model, dataset="embedded", limit=20, progress=False)["seed"] == 0  # other data: no default
    assert eval_cli([str(ckpt), "--limit", "20", "--no-progress"]) == 0
    assert "test split, seed 3)" in capsys.readouterr().out


def test_train_cam_chooses_projection_floor_and_r_after_its_last_epoch(tmp_path):
    """With the defaults (auto), the checkpoint holds what tune_box_settings chooses on its validation split,
    boxes ranked by confidence as they will be when used."""
    from runtime.evaluation import tune_box_settings
    from runtime.postprocess import BoxSettings
    from training.data.registry import load_splits
    from training.predict import classifier_head, localizer_params, predict

    out = tmp_path / "run"
    assert train_cli(["--dataset", "embedded", "--epochs", "1", "--limit", "train=600", "--limit", "val=300",
                      "--out", str(out), "--no-progress"]) == 0
    model, payload = load_model(out / "ckpt.pt")
    splits = load_splits("embedded", sizes={"train": 600, "val": 300})
    expected, _ = tune_box_settings(predict(model, splits.val)[0], localizer_params(model), head=classifier_head(model))
    assert BoxSettings.of(model.config) == expected
    assert payload["extra"]["validation"]["projection"] == expected.projection
