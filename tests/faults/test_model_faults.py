"""Models and calibration data that lie or are broken: metadata that disagrees with the graph,
truncated and empty ONNX files, unreadable, 16-bit and oversized calibration images."""
import json

import cv2
import numpy as np
import onnx
import pytest

from calibration.cli import main as quantize_cli
from calibration.dataset import CalibrationError, calibration_images
from calibration.quantize import quantize_int8
from engines.build_engine import main as build_cli
from runtime.backends import open_backend
from runtime.model_info import MetadataError, read_onnx_metadata


pytestmark = pytest.mark.slow


def _lying(exported, tmp_path, name, change):
    """A copy of the exported model whose spamcam metadata JSON was edited by `change(dict)`."""
    model = onnx.load(str(exported))
    entry = next(p for p in model.metadata_props if p.key == "spamcam")
    data = json.loads(entry.value)
    change(data)
    entry.value = json.dumps(data)
    path = tmp_path / f"{name}.onnx"
    onnx.save(model, str(path))
    return path


LIES = {
    # every per-class list agrees with the two classes (the peak form's too: none): the lie is the count alone
    "classes": (lambda d: d.update(classes=["3", "7"], thresholds=[0.1, 0.1], slopes=[1.0, 1.0], intercepts=[0.0, 0.0],
                                   confidence_peak_scales=None, confidence_peak_offsets=None),
                "outputs 1 CAMs but metadata field 'classes' lists 2"),
    "in_channels": (lambda d: d.update(in_channels=3), "does not run on a 3x128x128 input"),
    "geometry": (lambda d: d["geometry"].__setitem__(0, [5, 2, 0]), "metadata fields 'geometry'/'input_size'"),
    "pooling": (lambda d: d.update(pooling="max"), "field 'pooling'"),
    "resize_mode": (lambda d: d.update(resize_mode="stretch"), "field 'resize_mode'"),
    "ratio_nan": (lambda d: d.update(ratio=float("nan")), "field 'ratio'"),
    "ratio_range": (lambda d: d.update(ratio=1.5), "field 'ratio'"),
    "ratio_y_range": (lambda d: d.update(ratio_y=-1.0), "field 'ratio_y'"),
    "ratio_y_text": (lambda d: d.update(ratio_y="0.3"), "field 'ratio_y'"),
    "thresholds_null": (lambda d: d.update(thresholds=None), "field 'thresholds'"),
    "input_size": (lambda d: d.update(input_size=[128]), "field 'input_size'"),
}


@pytest.mark.parametrize("lie", list(LIES))
def test_metadata_that_disagrees_with_the_graph_is_refused_at_load_by_every_tool(exported, tmp_path, capsys, lie):
    change, message = LIES[lie]
    path = _lying(exported, tmp_path, lie, change)
    with pytest.raises(MetadataError, match=message):
        open_backend(path)
    with pytest.raises(MetadataError, match=message):
        quantize_int8(path, tmp_path / "q.onnx", calibration="mnist128", samples=16, show_progress=False)
    assert not (tmp_path / "q.onnx").exists()
    assert build_cli([str(path), "--backend", "onnxruntime"]) == 2
    from edge_app.cli import main as edge_cli

    assert edge_cli(["--model", str(path), "--source", "0", "--max-frames", "3"]) == 2  # refused before any source
    err = capsys.readouterr().err
    assert "build-engine: error:" in err and "edge_app: error:" in err and str(path) in err


def test_metadata_that_is_not_an_object_is_a_clear_error(exported, tmp_path):
    model = onnx.load(str(exported))
    next(p for p in model.metadata_props if p.key == "spamcam").value = "[1, 2, 3]"
    onnx.save(model, str(tmp_path / "list.onnx"))
    with pytest.raises(MetadataError, match="is a JSON list, not an object"):
        open_backend(tmp_path / "list.onnx")


def test_truncated_and_empty_onnx_files_are_named_not_tracebacks(exported, tmp_path, capsys):
    (tmp_path / "truncated.onnx").write_bytes(exported.read_bytes()[:3000])
    (tmp_path / "empty.onnx").write_bytes(b"")
    for name, message in (("truncated", "truncated or corrupt"), ("empty", "an empty file (0 bytes)")):
        path = str(tmp_path / f"{name}.onnx")
        assert build_cli([path, "--backend", "onnxruntime"]) == 2
        assert quantize_cli([path, "--no-progress"]) == 2
        err = capsys.readouterr().err
        assert err.count(message) == 2 and "Traceback" not in err


def test_histogram_calibration_takes_any_sample_count(exported, tmp_path):
    """Entropy and percentile calibration failed with a numpy error when the sample count was not a
    multiple of the batch size (the last batch was smaller)."""
    from calibration.quantize import even_batch

    assert [even_batch(n, 16) for n in (256, 20, 37, 5)] == [16, 10, 1, 5]
    for method, samples in (("entropy", 20), ("percentile", 37)):
        out = quantize_int8(exported, tmp_path / f"{method}.onnx", calibration="mnist128", samples=samples,
                            method=method, show_progress=False)
        assert read_onnx_metadata(onnx.load(str(out))).extra["calibration"]["samples"] == samples


def test_empty_and_unreadable_calibration_sets_are_clear_errors(exported, tmp_path):
    info = read_onnx_metadata(onnx.load(str(exported)))
    with pytest.raises(CalibrationError, match="holds no images"):
        calibration_images(tmp_path, info)
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    with pytest.raises(CalibrationError, match="could be read"):
        calibration_images(tmp_path, info)
    with pytest.raises(CalibrationError, match="not found"):
        calibration_images(tmp_path / "missing", info)
    empty = tmp_path / "empty"
    empty.mkdir()
    with pytest.raises(CalibrationError, match="holds no images"):
        quantize_int8(exported, tmp_path / "x.onnx", calibration=empty, show_progress=False)
    assert not (tmp_path / "x.onnx").exists()  # nothing half-written



def test_a_16_bit_or_unreadable_image_costs_that_image_not_the_calibration(exported, tmp_path, capsys):
    """A 16-bit PNG used to abort the whole calibration run (pre-processing refused uint16 pixels)."""
    folder = tmp_path / "frames"
    folder.mkdir()
    rng = np.random.default_rng(0)
    for i in range(6):
        cv2.imwrite(str(folder / f"{i}.png"), rng.integers(0, 255, (96, 96), dtype=np.uint8))
    cv2.imwrite(str(folder / "deep.png"), (rng.integers(0, 65535, (96, 96))).astype(np.uint16))
    (folder / "broken.jpg").write_bytes(b"\xff\xd8\xff\xe0 not really a JPEG")
    out = tmp_path / "q.onnx"
    assert quantize_cli([str(exported), "--calib", str(folder), "--calib-samples", "8", "-o", str(out), "--no-progress"]) == 0
    err = capsys.readouterr().err
    assert "skipped 1 of 8" in err and "broken.jpg" in err  # the 16-bit one was read, the broken one named
    assert read_onnx_metadata(onnx.load(str(out))).extra["calibration"]["samples"] == 7


def test_an_image_too_large_to_be_a_frame_is_refused_before_decoding(exported, tmp_path):
    """A 20000x20000 image took 2.5 GB before a misleading error: the header is read first now."""
    from runtime.images import MAX_IMAGE_PIXELS, read_image

    huge = tmp_path / "huge.png"
    side = int(MAX_IMAGE_PIXELS ** 0.5) + 8
    cv2.imwrite(str(huge), np.zeros((side, side), np.uint8))
    with pytest.raises(Exception, match=f"{side}x{side} pixels is more than"):
        read_image(huge)
    with pytest.raises(CalibrationError, match="more than"):
        calibration_images(tmp_path, read_onnx_metadata(onnx.load(str(exported))), 4)
