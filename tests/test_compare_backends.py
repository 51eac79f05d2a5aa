"""compare-backends and INT8 layer exclusion on a model trained here: a deliberately broken
quantization scale must be flagged and named, and keeping the worst layers in float must bring a
model that INT8 ruins back to FP32's accuracy."""
import json

import numpy as np
import onnx
import pytest
from onnx import numpy_helper

from calibration.quantize import quantize_int8
from engines.compare_backends import SQNR_FLOOR, box_agreement, cam_sqnr, compare_backends, main as compare_cli
from export.onnx_export import export_onnx
from runtime.model_info import read_onnx_metadata
from runtime.postprocess import Detection

pytestmark = pytest.mark.slow
EXTENT_TOLERANCE = 0.02  # exclusion must bring extent AP within 2 points of FP32's


@pytest.fixture(scope="module")
def fp32(mnist128_checkpoint, tmp_path_factory):
    return export_onnx(mnist128_checkpoint["checkpoint"], tmp_path_factory.mktemp("compare") / "model.onnx")


@pytest.fixture(scope="module")
def int8(fp32):
    return quantize_int8(fp32, fp32.with_name("model.int8.onnx"), samples=64, show_progress=False)


def _initializers(model):
    return {i.name: i for i in model.graph.initializer}


def _set(initializer, array):
    initializer.CopyFrom(numpy_helper.from_array(np.asarray(array, np.float32), initializer.name))


def test_cam_sqnr_and_box_agreement_by_hand():
    ref = np.ones(100)
    assert cam_sqnr(ref, ref) == float("inf")
    assert cam_sqnr(ref, ref * 1.1) == pytest.approx(20.0)  # noise a tenth of the signal
    a = [[Detection(0, 1.0, (0, 0, 10, 10)), Detection(0, 1.0, (50, 50, 60, 60))], []]
    b = [[Detection(0, 1.0, (1, 1, 10, 10))], [Detection(0, 1.0, (0, 0, 5, 5))]]
    agreement = box_agreement(a, b, ["3"])["3"]
    assert agreement["kept"] == 0.5 and agreement["same"] == 0.5  # one of two each way


def test_a_broken_weight_scale_is_flagged_and_named(fp32, int8, tmp_path):
    model = onnx.load(str(int8))
    scales = _initializers(model)
    damaged = next(n for n in model.graph.node if n.op_type == "DequantizeLinear" and n.input[0].endswith("weight_quantized")
                   and "features.3" in n.input[0])  # LeNet's C3
    _set(scales[damaged.input[1]], numpy_helper.to_array(scales[damaged.input[1]]) * 8)
    broken = tmp_path / "broken.int8.onnx"
    onnx.save(model, str(broken))
    report = compare_backends(fp32, [int8, broken], limit=200, progress=False)
    clean, bad = report["rows"][1], report["rows"][2]
    assert clean["flags"] == [] and clean["cam_sqnr_db"] > SQNR_FLOOR
    assert bad["cam_sqnr_db"] < SQNR_FLOOR and any("CAM SQNR" in flag for flag in bad["flags"])
    conv = [layer for layer in bad["layers"] if layer["weight_sqnr"] is not None and layer["weight_sqnr"] < 0]
    assert len(conv) == 1 and any(conv[0]["node"] in flag and "weight SQNR" in flag for flag in bad["flags"])


def test_keeping_the_worst_layers_float_recovers_an_outlier_channel(fp32, tmp_path):
    """C1's first channel scaled by 300 and C3's matching input by 1/300: the same function (ReLU and
    max-pooling commute with a positive scale), but one channel now rules the per-tensor INT8 range
    of C1's outputs and the other five are crushed."""
    model = onnx.load(str(fp32))
    weights = _initializers(model)
    c1w, c1b, c3w = (numpy_helper.to_array(weights[f"model.features.{name}"]).copy()
                     for name in ("0.weight", "0.bias", "3.weight"))
    c1w[0], c1b[0], c3w[:, 0] = c1w[0] * 300, c1b[0] * 300, c3w[:, 0] / 300
    for name, value in (("0.weight", c1w), ("0.bias", c1b), ("3.weight", c3w)):
        _set(weights[f"model.features.{name}"], value)
    outlier = tmp_path / "outlier.onnx"
    onnx.save(model, str(outlier))
    plain = quantize_int8(outlier, tmp_path / "plain.int8.onnx", samples=64, show_progress=False)
    kept = quantize_int8(outlier, tmp_path / "kept.int8.onnx", samples=64, show_progress=False, exclude_worst=2)
    report = compare_backends(outlier, [plain, kept], limit=300, progress=False)
    reference, ruined, recovered = report["rows"]
    assert ruined["cam_sqnr_db"] < SQNR_FLOOR and ruined["flags"]
    assert recovered["cam_sqnr_db"] > SQNR_FLOOR and not any("CAM SQNR" in flag for flag in recovered["flags"])
    assert abs(recovered["deltas"]["extent_ap_mean"]) <= EXTENT_TOLERANCE
    assert abs(recovered["deltas"]["classification_ap_mean"]) <= 0.01
    float_nodes = read_onnx_metadata(onnx.load(str(kept))).extra["calibration"]["float_nodes"]
    assert set(float_nodes) == {"node_conv2d", "node_conv2d_1"}  # the two layers on either side of the outlier


def test_cli_makes_the_deployed_forms_from_a_checkpoint(mnist128_checkpoint, tmp_path, capsys):
    out = tmp_path / "report.json"
    assert compare_cli([mnist128_checkpoint["checkpoint"], "--limit", "100", "--keep", str(tmp_path / "forms"),
                        "--json", str(out), "--no-progress"]) == 0
    printed = capsys.readouterr().out
    report = json.loads(out.read_text())
    names = [row["model"].rsplit("/", 1)[-1] for row in report["rows"]]
    assert names[:4] == ["ckpt.pt", "model.onnx", "model.int8.onnx", "model.ort.onnx"]
    assert report["rows"][1]["cam_sqnr_db"] > 80  # FP32 ONNX is PyTorch to float rounding
    assert "Per-layer INT8 error of model.int8.onnx" in printed and "ms/image" in printed
    assert (tmp_path / "forms" / "model.int8.onnx").is_file()


def test_cli_errors_are_one_line(tmp_path, capsys):
    assert compare_cli([str(tmp_path / "missing.onnx"), str(tmp_path / "other.onnx")]) == 2
    assert "no such model file" in capsys.readouterr().err
