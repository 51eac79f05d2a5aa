"""export-onnx, INT8 Q/DQ calibration, build-engine and the runtime backends, on real trained models."""
import json
from dataclasses import replace

import numpy as np
import onnx
import pytest

from calibration.dataset import CalibrationError, calibration_images
from calibration.quantize import check_tensorrt_rules, quantize_int8
from engines.build_engine import main as build_cli
from engines.onnxruntime_model import build_onnxruntime_model
from export.onnx_export import main as export_cli, verify_onnx
from runtime.backends import open_backend, store_box_settings
from runtime.geometry import projected_affine
from runtime.postprocess import BoxSettings
from runtime.localizer import Localizer
from runtime.model_info import MetadataError, read_onnx_metadata, write_onnx_metadata
from training.checkpoint import load_model
from training.data.registry import load_splits
from training.evaluate import evaluate_model

pytestmark = pytest.mark.slow


@pytest.fixture(scope="session")
def quantized(exported):
    return quantize_int8(exported, exported.with_name("model.int8.onnx"), calibration="mnist128", samples=256,
                         show_progress=False)


def _real_images(count=16, size=None):
    test = load_splits("mnist128", sizes={"test": count}).test
    return np.stack([test[i].image for i in range(count)])


def test_export_matches_pytorch_on_real_images_at_any_batch_and_size(mnist128_checkpoint, exported):
    images = _real_images(16)
    assert verify_onnx(mnist128_checkpoint["checkpoint"], exported, images) <= 1e-4
    assert verify_onnx(mnist128_checkpoint["checkpoint"], exported, images[:1]) <= 1e-4
    model, _ = load_model(mnist128_checkpoint["checkpoint"])
    wide = np.random.default_rng(0).random((3, 1, 160, 224), dtype=np.float32)  # dynamic height/width
    import torch

    with torch.no_grad():
        expected = model.cam(torch.from_numpy(wide)).numpy()
    got = open_backend(exported).infer(wide)
    assert got.shape == expected.shape == (3, 1, 33, 49)
    assert np.abs(got - expected).max() <= 1e-4


def test_graph_is_checker_clean_with_metadata_round_trip(mnist128_checkpoint, exported):
    proto = onnx.load(str(exported))
    onnx.checker.check_model(proto, full_check=True)
    assert proto.opset_import[0].version >= 17
    assert [d.dim_param for d in proto.graph.input[0].type.tensor_type.shape.dim] == ["batch", "", "height", "width"]
    info = read_onnx_metadata(proto)
    _, payload = load_model(mnist128_checkpoint["checkpoint"])
    config = payload["config"]
    assert info.classes == config.classes and info.geometry == config.geometry
    assert info.thresholds == payload["deploy"]["thresholds"] and info.ratio == config.ratio
    assert info.input_size == config.input_size and info.pooling == "spam" and info.spam_kernels == [1, 2, 5, "N"]
    assert {op.op_type for op in proto.graph.node}.isdisjoint({"ReduceMax", "Softmax", "AveragePool"})  # CAM only


def test_onnx_metrics_equal_pytorch_metrics(mnist128_checkpoint, exported):
    torch_result = evaluate_model(mnist128_checkpoint["checkpoint"], limit=400)
    onnx_result = evaluate_model(exported, dataset="mnist128", limit=400)
    for key in ("classification_ap_mean", "pinpoint_ap_mean", "extent_ap_mean"):
        assert onnx_result[key] == pytest.approx(torch_result[key], abs=1e-3)


def test_int8_graph_follows_tensorrt_rules(quantized):
    proto = onnx.load(str(quantized))
    assert check_tensorrt_rules(proto) == []
    initializers = {i.name: i for i in proto.graph.initializer}
    conv_weights = [initializers[n.input[0]] for n in proto.graph.node
                    if n.op_type == "DequantizeLinear" and n.input[0] in initializers and len(initializers[n.input[0]].dims) == 4]
    assert len(conv_weights) == 4 and all(w.data_type == onnx.TensorProto.INT8 for w in conv_weights)
    zero_points = [onnx.numpy_helper.to_array(initializers[n.input[2]]) for n in proto.graph.node
                   if n.op_type in ("QuantizeLinear", "DequantizeLinear")]
    assert all(z.dtype == np.int8 and not z.any() for z in zero_points)
    assert read_onnx_metadata(proto).extra["precision"] == "int8"


def test_the_rules_checker_catches_asymmetric_uint8(exported, tmp_path):
    from onnxruntime.quantization import QuantFormat, QuantType, quantize_static

    class Reader:
        def __init__(self):
            self.batches = [{"images": _real_images(8)}]

        def get_next(self):
            return self.batches.pop() if self.batches else None

    asymmetric = tmp_path / "uint8.onnx"
    quantize_static(str(exported), str(asymmetric), Reader(), quant_format=QuantFormat.QDQ,
                    activation_type=QuantType.QUInt8, weight_type=QuantType.QUInt8, per_channel=False)
    problems = check_tensorrt_rules(onnx.load(str(asymmetric)))
    assert any("uint8" in p for p in problems) and any("per output channel" in p for p in problems)


def test_int8_extent_ap_within_one_point_of_fp32(exported, quantized):
    fp32 = evaluate_model(exported, dataset="mnist128")
    int8 = evaluate_model(quantized, dataset="mnist128")
    assert fp32["images"] == 2000
    assert abs(int8["extent_ap_mean"] - fp32["extent_ap_mean"]) <= 0.01
    assert abs(int8["classification_ap_mean"] - fp32["classification_ap_mean"]) <= 0.01


def test_quantize_int8_calibrates_on_the_models_own_dataset_by_default(exported, tmp_path, capsys):
    out = quantize_int8(exported, tmp_path / "m.int8.onnx", samples=32, show_progress=False)
    assert "calibrating on 32 images from mnist128 (the dataset the model was trained on" in capsys.readouterr().out
    assert read_onnx_metadata(onnx.load(str(out))).extra["calibration"]["source"] == "mnist128"
    model = onnx.load(str(exported))
    info = read_onnx_metadata(model)
    info.extra.pop("trained_on")
    write_onnx_metadata(model, info)
    onnx.save(model, str(tmp_path / "anonymous.onnx"))
    with pytest.raises(CalibrationError, match="does not record the dataset"):
        quantize_int8(tmp_path / "anonymous.onnx", tmp_path / "a.int8.onnx", show_progress=False)


def test_calibration_folder_goes_through_runtime_preprocessing(exported, tmp_path):
    import cv2

    frame = np.zeros((240, 320, 3), np.uint8)
    cv2.putText(frame, "3", (100, 150), cv2.FONT_HERSHEY_SIMPLEX, 3, (255, 255, 255), 8)
    cv2.imwrite(str(tmp_path / "a.png"), frame)
    info = read_onnx_metadata(onnx.load(str(exported)))
    (image,) = calibration_images(tmp_path, info)
    from runtime.preprocess import preprocess

    np.testing.assert_array_equal(image, preprocess(cv2.imread(str(tmp_path / "a.png")), (128, 128), 1)[0])


def test_foreign_onnx_model_is_a_clear_error(tmp_path):
    from onnx import TensorProto, helper

    graph = helper.make_graph([helper.make_node("Relu", ["x"], ["y"])], "g",
                              [helper.make_tensor_value_info("x", TensorProto.FLOAT, [1, 1, 4, 4])],
                              [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])])
    path = tmp_path / "foreign.onnx"
    onnx.save(helper.make_model(graph), str(path))
    with pytest.raises(MetadataError, match="without spamcam metadata"):
        open_backend(path)
    assert build_cli([str(path), "--backend", "onnxruntime"]) == 2
    (tmp_path / "junk.onnx").write_bytes(b"junk")
    with pytest.raises(ValueError, match="cannot load"):
        open_backend(tmp_path / "junk.onnx")


def test_build_engine_onnxruntime_fp32_and_int8(exported, tmp_path):
    fp32 = build_onnxruntime_model(exported, tmp_path / "m.ort.onnx")
    int8 = build_onnxruntime_model(exported, tmp_path / "m.int8.ort.onnx", int8=True, calibration="mnist128",
                                   calib_samples=64, choose=False)
    images = _real_images(8)
    reference = open_backend(exported).infer(images)
    assert np.abs(open_backend(fp32).infer(images) - reference).max() <= 1e-4
    quantized = open_backend(int8).infer(images)
    assert np.abs(quantized - reference).max() <= 0.1 * np.abs(reference).max()  # INT8: close, not equal
    extra = open_backend(int8).info.extra
    assert extra["precision"] == "int8" and extra["int8_format"].startswith("U8S8")  # the CPU kernels' format
    node_types = {n.op_type for n in onnx.load(str(int8)).graph.node}
    assert node_types & {"QLinearConv", "ConvInteger", "QuantizeLinear"}


def test_build_engine_onnxruntime_keeps_int8_only_when_it_pays(exported, tmp_path, capsys):
    """The CPU INT8 choice is measured here: the recorded numbers must explain the file written, and an
    accuracy budget INT8 cannot meet must give the FP32 model, named as such."""
    chosen = build_onnxruntime_model(exported, tmp_path / "auto.onnx", int8=True, calibration="mnist128", calib_samples=32)
    decision = open_backend(chosen).info.extra["cpu_choice"]
    pays = decision["int8_ms"] < decision["fp32_ms"] and decision["cam_sqnr_db"] >= decision["sqnr_floor_db"]
    assert decision["chosen"] == ("int8" if pays else "fp32")
    assert open_backend(chosen).info.extra.get("precision", "fp32") == decision["chosen"]
    assert "at batch 1 on this CPU" in capsys.readouterr().out
    strict = build_onnxruntime_model(exported, tmp_path / "strict.onnx", int8=True, calibration="mnist128",
                                     calib_samples=32, sqnr_floor=1000)
    info = open_backend(strict).info
    assert info.extra["cpu_choice"]["chosen"] == "fp32" and info.extra.get("precision", "fp32") == "fp32"
    assert "keeping FP32" in capsys.readouterr().out
    assert build_cli([str(exported), "--backend", "onnxruntime", "--int8", "--calib", "mnist128", "--calib-samples", "32",
                      "-o", str(tmp_path / "cli.onnx")]) == 0
    assert f"(ONNX Runtime, {open_backend(tmp_path / 'cli.onnx').info.extra['cpu_choice']['chosen'].upper()})" in \
        capsys.readouterr().out


def test_build_engine_tensorrt_without_tensorrt_says_how_to_get_it(exported, capsys):
    try:
        import tensorrt  # noqa: F401

        pytest.skip("TensorRT is installed here; this test covers machines without it")
    except ImportError:
        pass
    assert build_cli([str(exported), "--fp16"]) == 2
    err = capsys.readouterr().err
    assert "JetPack" in err and "--backend onnxruntime" in err


def test_localizer_maps_boxes_to_the_frame(exported):
    localizer = Localizer(exported)
    test = load_splits("mnist128", sizes={"test": 200}).test
    sample = next(test[i] for i in range(200) if test[i].labels[0])
    frame = np.kron((sample.image[0] * 255).astype(np.uint8), np.ones((3, 4), np.uint8))  # a 384x512 camera frame
    result = localizer(frame)
    assert result.scores[0] > 0.5 and len(result.detections) >= 1
    truth = sample.boxes[0, 1:] * [4, 3, 4, 3]
    from runtime.metrics import box_iou

    assert box_iou(np.array([result.detections[0].box]), truth[None]).max() >= 0.5
    assert set(result.timings_ms) == {"preprocess", "inference", "postprocess"}
    assert json.dumps(result.to_dict(localizer.classes))


def test_store_box_settings_in_onnx_metadata(exported, tmp_path):
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(exported.read_bytes())
    store_box_settings(copy, BoxSettings("interpolated", 0.5, -0.42, 0.1))
    info = open_backend(copy).info
    assert (info.projection, info.relative_floor, info.ratio, info.ratio_y) == ("interpolated", 0.5, -0.42, 0.1)
    params = info.localizer_params()
    assert params.affine == projected_affine(params.chain, "interpolated") != projected_affine(params.chain)
    assert params.ratios == (-0.42, 0.1)
    assert Localizer(copy, ratio=0.2).params.ratios == (0.2, 0.2)  # a given r is for both axes
    store_box_settings(copy, BoxSettings("interpolated", 0.5, -0.42))
    assert open_backend(copy).info.ratio_y is None
    assert open_backend(copy).info.classifier_head().form == "instance"


def test_the_confidence_form_travels_in_the_metadata_and_the_localizer_uses_it(exported, tmp_path):
    """A model whose validation chose the peak form: its ONNX file says so, and the Localizer's boxes
    carry sigma(a_c * (kappa_c * peak + beta_c) + b_c); a model stored with scales only (before the
    offsets) reads with beta_c = 0. Malformed scales or offsets are refused at load, named."""
    copy = tmp_path / "copy.onnx"
    copy.write_bytes(exported.read_bytes())
    settings = BoxSettings.of(open_backend(copy).info)
    test = load_splits("mnist128", sizes={"test": 200}).test
    sample = next(test[i] for i in range(200) if test[i].labels[0])
    for offsets in (None, (-1.5,)):
        store_box_settings(copy, replace(settings, confidence_peak_scales=(0.4,), confidence_peak_offsets=offsets))
        info = open_backend(copy).info
        assert info.confidence_peak_scales == [0.4] and info.classifier_head().form == "peak"
        assert info.confidence_peak_offsets == (None if offsets is None else list(offsets))
        detections = Localizer(copy, min_confidence=None)((sample.image[0] * 255).astype(np.uint8)).detections
        assert detections
        beta = 0.0 if offsets is None else offsets[0]
        for det in detections:
            expected = 1 / (1 + np.exp(-(info.slopes[0] * (0.4 * det.score + beta) + info.intercepts[0])))
            assert det.confidence == pytest.approx(expected, rel=1e-6)
    for bad in ([0.4, 0.5], [-0.1], ["x"]):
        with pytest.raises(MetadataError, match="confidence_peak_scales"):
            replace(info, confidence_peak_scales=bad).validate()
    for bad in ([0.1, 0.2], [float("nan")], ["x"]):
        with pytest.raises(MetadataError, match="confidence_peak_offsets"):
            replace(info, confidence_peak_offsets=bad).validate()
    with pytest.raises(MetadataError, match="confidence_peak_offsets"):  # offsets without the scales they go with
        replace(info, confidence_peak_scales=None, confidence_peak_offsets=[0.1]).validate()


def test_export_cli_verify(mnist128_checkpoint, tmp_path, capsys):
    assert export_cli([mnist128_checkpoint["checkpoint"], "-o", str(tmp_path / "m.onnx"), "--verify"]) == 0
    assert "ok" in capsys.readouterr().out
    assert export_cli([str(tmp_path / "nothing.pt")]) == 2


def test_the_rules_checker_reads_every_kind_of_constant_node():
    """Scales and zero points may come from Constant nodes; a Constant holding `value_ints` (a shape,
    say) is no tensor attribute and must neither raise nor hide a bad zero point."""
    from onnx import TensorProto, helper

    def graph(zero_point_node):
        nodes = [helper.make_node("Constant", [], ["shape"], value_ints=[1, 1, 4, 4]),
                 helper.make_node("Constant", [], ["scale"], value_float=0.1), zero_point_node,
                 helper.make_node("QuantizeLinear", ["x", "scale", "zero"], ["q"]),
                 helper.make_node("DequantizeLinear", ["q", "scale", "zero"], ["dq"]),
                 helper.make_node("Reshape", ["dq", "shape"], ["y"])]
        return helper.make_model(helper.make_graph(nodes, "g", [helper.make_tensor_value_info("x", TensorProto.FLOAT, [16])],
                                                   [helper.make_tensor_value_info("y", TensorProto.FLOAT, [1, 1, 4, 4])]))

    def zero(value):
        return helper.make_node("Constant", [], ["zero"], value=helper.make_tensor("z", TensorProto.INT8, [], [value]))

    assert check_tensorrt_rules(graph(zero(0))) == []
    assert any("asymmetric" in p for p in check_tensorrt_rules(graph(zero(3))))
    assert any("int64 instead of int8" in p for p in check_tensorrt_rules(graph(helper.make_node("Constant", [], ["zero"], value_int=0))))


