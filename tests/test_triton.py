"""Triton Inference Server: export-triton's repository (config checked with Triton's own ModelConfig
protobuf), and the triton:// backend against a real tritonserver on loopback (tests/triton_server.py):
boxes through Triton equal the local backend's, over gRPC and HTTP, frame by frame and in edge_app."""
import json
from pathlib import Path

import cv2
import pytest

from engines.triton_repository import export_triton, main as export_triton_cli, parse_triton_config, triton_config
from runtime.errors import ConfigError, DeviceError, ModelError
from runtime.localizer import Localizer
from runtime.model_info import ModelInfo, load_onnx, read_onnx_metadata
from media import moving_digits_video
import triton_server
from brokers import free_port

pytestmark = pytest.mark.slow
pytest.importorskip("tritonclient.grpc", reason="the Triton tests need tritonclient (spamcam[triton], make setup)")


@pytest.fixture(scope="module")
def model(exported):
    return exported


def test_export_triton_writes_a_repository_triton_parses_with_the_metadata(model, tmp_path, capsys):
    assert export_triton_cli([str(model), "--repository", str(tmp_path / "models"), "--name", "birds",
                              "--max-batch", "16", "--queue-delay-us", "500", "--instances", "2", "--kind", "cpu"]) == 0
    folder = tmp_path / "models" / "birds"
    assert (folder / "1" / "model.onnx").read_bytes() == Path(model).read_bytes()
    config = parse_triton_config((folder / "config.pbtxt").read_text())
    info = read_onnx_metadata(load_onnx(model))
    assert config.name == "birds" and config.platform == "onnxruntime_onnx" and config.max_batch_size == 16
    assert [(i.name, list(i.dims)) for i in config.input] == [(info.input_name, [info.in_channels, -1, -1])]
    assert [(o.name, list(o.dims)) for o in config.output] == [(info.output_name, [len(info.classes), -1, -1])]
    assert config.dynamic_batching.max_queue_delay_microseconds == 500
    assert config.instance_group[0].count == 2 and config.instance_group[0].kind == config.instance_group[0].KIND_CPU
    assert ModelInfo.from_json(config.parameters["spamcam"].string_value) == info  # the metadata travels whole
    assert "checked with Triton's ModelConfig" in capsys.readouterr().out
    with pytest.raises(ConfigError, match="exists; give --overwrite"):
        export_triton(model, tmp_path / "models", name="birds")  # an existing version is not replaced silently


def test_a_static_engine_profile_gives_fixed_dims(model):
    info = read_onnx_metadata(load_onnx(model))
    config = parse_triton_config(triton_config(info, name="m", platform="tensorrt_plan", max_batch=4,
                                               input_hw=(128, 128), output_hw=(25, 25), input_type="TYPE_FP16"))
    assert list(config.input[0].dims) == [info.in_channels, 128, 128] and list(config.output[0].dims) == [1, 25, 25]
    from tritonclient.grpc import model_config_pb2

    assert config.input[0].data_type == model_config_pb2.TYPE_FP16
    with pytest.raises(ConfigError, match="not a valid Triton model config"):
        parse_triton_config('name: "m"\nmax_batch_size: "eight"\n')


def test_an_unreachable_server_is_a_clear_error():
    port = free_port()  # nothing listens there
    with pytest.raises(DeviceError, match=f"cannot reach Triton at 127.0.0.1:{port}"):
        Localizer(f"triton://127.0.0.1:{port}/birds")
    with pytest.raises(ConfigError, match="expected triton://HOST"):
        Localizer("triton://127.0.0.1:8001")


@pytest.fixture(scope="module")
def server(model, tmp_path_factory):
    reason = triton_server.missing_reason()
    if reason:
        pytest.skip(f"no Triton server here: {reason}")
    repository = tmp_path_factory.mktemp("triton")
    triton_server.python_model(repository, "spamcam", Path(model))
    with triton_server.Server(repository, repository / "server.log") as running:
        yield running


@pytest.mark.parametrize("scheme", ["triton", "triton+http"])
def test_boxes_through_triton_equal_the_local_backends(model, server, mnist_digits, tmp_path, scheme):
    port = server.grpc if scheme == "triton" else server.http
    remote, local = Localizer(f"{scheme}://127.0.0.1:{port}/spamcam"), Localizer(model)
    assert remote.backend.name == "triton" and remote.info == local.info  # the metadata came from the config
    video = tmp_path / "v.mp4"
    moving_digits_video(video, mnist_digits, frames=30)
    capture = cv2.VideoCapture(str(video))
    frames = [capture.read()[1] for _ in range(30)]
    found = 0
    for batch in (frames[:1], frames[1:9], frames[9:30]):  # 21 frames: more than the model's max_batch_size 8
        for a, b in zip(remote.process_batch(batch), local.process_batch(batch)):
            assert [(d.class_index, d.box) for d in a.detections] == [(d.class_index, d.box) for d in b.detections]
            assert [d.confidence for d in a.detections] == pytest.approx([d.confidence for d in b.detections], abs=1e-5)
            found += len(a.detections)
    assert found > 10
    remote.close()


def test_a_model_triton_does_not_serve_names_what_it_serves(server):
    with pytest.raises(ModelError, match="no ready model 'birds'.*ready there: spamcam"):
        Localizer(f"triton://127.0.0.1:{server.grpc}/birds")


def test_edge_app_on_triton_writes_what_the_local_model_does(model, server, mnist_digits, tmp_path):
    from edge_app.cli import main as edge_cli

    video = tmp_path / "v.mp4"
    moving_digits_video(video, mnist_digits, frames=40)
    for name, uri in (("local", str(model)), ("triton", f"triton://127.0.0.1:{server.grpc}/spamcam")):
        assert edge_cli(["--model", uri, "--source", str(video), "--json", str(tmp_path / f"{name}.jsonl")]) == 0
    lines = {name: [json.loads(line) for line in (tmp_path / f"{name}.jsonl").read_text().splitlines()]
             for name in ("local", "triton")}
    assert len(lines["triton"]) == len(lines["local"]) == 40
    boxes = {name: [[(d["class"], d["box"], d.get("track_id")) for d in r["detections"]] for r in records]
             for name, records in lines.items()}
    assert boxes["triton"] == boxes["local"]


def test_a_server_restart_mid_run_is_ridden_out_and_a_server_gone_for_good_ends_the_run(model, server, mnist_digits,
                                                                                        tmp_path):
    """edge_app on triton:// with a camera-rate source: the server is killed and started again (the
    run goes on, retrying), then killed for good (the run ends with 'model server lost', exit 3)."""
    import threading
    import time

    from edge_app.app import MODEL_SERVER_LOST, AppConfig, EdgeApp

    repository = tmp_path / "repo"
    triton_server.python_model(repository, "spamcam", Path(model))
    video = tmp_path / "v.mp4"
    moving_digits_video(video, mnist_digits, frames=2000)  # 80 s at 25 FPS: longer than the test
    own = triton_server.Server(repository, tmp_path / "a.log")
    # Long enough to ride out the restart below even on a loaded machine (a cold tritonserver start is a
    # few seconds), short enough that the final outage ends the run soon.
    localizer = Localizer(f"triton://127.0.0.1:{own.grpc}/spamcam", give_up_after=20.0)
    logs, result = [], {}
    app = EdgeApp(localizer, AppConfig(source=str(video), realtime=True, json=str(tmp_path / "out.jsonl")),
                  log=logs.append)
    thread = threading.Thread(target=lambda: result.setdefault("summary", app.run()))
    thread.start()
    time.sleep(3)
    own.process.kill()  # the server dies ...
    own.process.wait()
    time.sleep(1)
    again = triton_server.Server(repository, tmp_path / "b.log", ports=(own.http, own.grpc))  # ... and comes back
    before = len((tmp_path / "out.jsonl").read_text().splitlines())
    time.sleep(6)  # the client may be in its longest back-off (4 s) when the server comes back
    after = len((tmp_path / "out.jsonl").read_text().splitlines())
    again.process.kill()  # ... and goes away for good
    thread.join(timeout=90)
    summary = result["summary"]
    assert after > before + 20  # frames flowed again after the restart
    assert localizer.backend.retries > 0
    assert summary.stopped_by == MODEL_SERVER_LOST
    assert any("stopped answering" in line for line in logs)


def test_batches_of_several_cameras_stay_within_the_servers_max_batch_size(model, server, tmp_path):
    from edge_app.app import AppConfig
    from edge_app.multi import BatchSettings, MultiCameraApp

    configs = [AppConfig(source="unused.mp4", camera=f"c{i}") for i in range(2)]
    app = MultiCameraApp(Localizer(f"triton://127.0.0.1:{server.grpc}/spamcam"), configs,
                         batch=BatchSettings(max_batch=16))
    assert app.batch.max_batch == 8  # the model config's max_batch_size
