"""Command lines generated from the config dataclasses (runtime/config_cli.py): for every tool,
--print-config -> --config round trips, a config file is checked like the command line, later
options override the file, and a real run saves the config it ran with beside its output."""
import json

import pytest
import yaml

from calibration.cli import main as quantize_cli
from edge_app.cli import main as edge_cli
from engines.build_engine import main as build_cli
from engines.compare_backends import main as compare_cli
from export.onnx_export import main as export_cli
from training.cli import main as train_cli
from training.data.fetch import main as fetch_cli
from training.evaluate_cli import main as eval_cli

# Each tool with a command line that sets options of every kind: numbers, choices, lists (nargs and
# repeated), MIN,MAX pairs, dicts, --no-X switches, old names and positionals.
COMMANDS = {
    "train-cam": (train_cli, ["--dataset", "mnist128", "--objects", "1,3", "--limit", "train=200", "--limit", "val=50",
                              "--input-size", "64", "--spam-kernels", "1,3,N", "--positive", "all", "--no-progress",
                              "--no-amp", "--lr", "0.01", "--seed", "4", "--relative-floor", "0.25"]),
    "eval-cam": (eval_cli, ["runs/cam/ckpt.pt", "--limit", "30", "--score", "peak", "--conf", "0.25", "--tune-ratio",
                            "--projection", "interpolated", "--objects", "2,2", "--json", "m.json", "--no-progress"]),
    "export-onnx": (export_cli, ["ckpt.pt", "-o", "model.onnx", "--verify", "--tolerance", "0.001", "--no-simplify"]),
    "quantize-int8": (quantize_cli, ["model.onnx", "--samples", "9", "--calib-method", "entropy", "--exclude", "a", "b",
                                     "--target", "cpu"]),
    "build-engine": (build_cli, ["model.onnx", "--int8", "--min-size", "64", "64", "--max-batch", "4",
                                 "--calib", "frames/"]),
    "compare-backends": (compare_cli, ["ckpt.pt", "a.onnx", "b.onnx", "--limit", "0", "--json", "r.json"]),
    "edge_app": (edge_cli, ["--model", "m.onnx", "--source", "0", "--output", "a.mp4", "--output", "frames/",
                            "--conf", "0.3", "--overlap-iou", "0", "--resize", "letterbox", "--max-frames", "5"]),
    "fetch-mnist": (fetch_cli, ["--full"]),
}


def printed_config(main, argv, capsys) -> str:
    capsys.readouterr()
    with pytest.raises(SystemExit) as stop:
        main([*argv, "--print-config"])
    captured = capsys.readouterr()
    assert stop.value.code == 0, captured.err
    return captured.out


@pytest.mark.parametrize("tool", list(COMMANDS))
def test_print_config_then_config_gives_the_same_config(tool, tmp_path, capsys):
    main, argv = COMMANDS[tool]
    first = printed_config(main, argv, capsys)
    (tmp_path / "run.yaml").write_text(first)
    again = printed_config(main, ["--config", str(tmp_path / "run.yaml")], capsys)
    assert again == first
    defaults = printed_config(main, [argv[0]] if not argv[0].startswith("-") else [], capsys) if tool != "edge_app" \
        else printed_config(main, ["--model", "m.onnx", "--source", "0"], capsys)
    assert defaults != first  # the options were really taken, not the defaults printed back


def test_the_printed_config_holds_the_values_as_they_were_understood(capsys):
    config = yaml.safe_load(printed_config(*COMMANDS["train-cam"], capsys))
    assert config["objects"] == [1, 3] and config["limits"] == {"train": 200, "val": 50}
    assert config["input_size"] == [64, 64]  # --input-size H means H x H
    assert config["progress"] is False and config["amp"] is False and config["positive"] == "all"
    quantize = yaml.safe_load(printed_config(*COMMANDS["quantize-int8"], capsys))
    assert quantize["calib_samples"] == 9  # the earlier --samples sets the current setting
    edge = yaml.safe_load(printed_config(*COMMANDS["edge_app"], capsys))
    assert edge["overlap_iou"] is None and edge["outputs"] == ["a.mp4", "frames/"]  # 0 means off


def test_options_after_config_override_it_and_before_it_do_not(tmp_path, capsys):
    (tmp_path / "run.yaml").write_text("epochs: 3\nlr: 0.5\n")
    config = yaml.safe_load(printed_config(train_cli, ["--epochs", "7", "--config", str(tmp_path / "run.yaml"),
                                                       "--lr", "0.1"], capsys))
    assert (config["epochs"], config["lr"]) == (3, 0.1)


@pytest.mark.parametrize("content, words", [
    ("epochs: 0\n", 'key "epochs": 0 is below 1'),
    ("epochs: 2.5\n", "is not an integer"),
    ("objects: [3, 1]\n", "need 1 <= MIN <= MAX"),
    ("limits: {tran: 5}\n", "is not SPLIT=N"),
    ("pooling: max\n", "not among choices"),
    ("epochz: 3\n", "epochz"),
])
def test_a_bad_config_file_is_refused_by_key_like_a_bad_option(content, words, tmp_path, capsys):
    (tmp_path / "bad.yaml").write_text(content)
    with pytest.raises(SystemExit) as stop:
        train_cli(["--config", str(tmp_path / "bad.yaml")])
    assert stop.value.code == 2 and words in capsys.readouterr().err


def test_a_contradiction_between_options_is_a_usage_error(capsys):
    with pytest.raises(SystemExit) as stop:
        build_cli(["model.onnx", "--fp16", "--int8"])
    assert stop.value.code == 2 and "contradict" in capsys.readouterr().err


def test_a_real_run_saves_its_config_and_the_config_reproduces_it(mnist128_checkpoint, tmp_path, capsys):
    metrics = tmp_path / "first.json"
    assert eval_cli([str(mnist128_checkpoint["checkpoint"]), "--limit", "40", "--conf", "0.5", "--json", str(metrics),
                     "--no-progress"]) == 0
    saved = tmp_path / "first.json.config.yaml"
    config = yaml.safe_load(saved.read_text())
    assert (config["limit"], config["min_confidence"], config["json"]) == (40, 0.5, str(metrics))
    again = tmp_path / "again.json"
    assert eval_cli(["--config", str(saved), "--json", str(again)]) == 0
    first, second = json.loads(metrics.read_text()), json.loads(again.read_text())
    assert first == second  # the same settings gave the same metrics
    assert yaml.safe_load((tmp_path / "again.json.config.yaml").read_text()) == config | {"json": str(again)}


def test_edge_app_names_the_option_a_bare_model_path_needs(capsys):
    """eval-cam and export-onnx take the model as their first word; edge_app takes --model. Typed the
    other way, the error says which option the word belongs to, and a missing --model is named."""
    from edge_app.cli import main as edge_app_main

    with pytest.raises(SystemExit) as stop:
        edge_app_main(["runs/demo/model.onnx", "--source", "video.mp4"])
    assert stop.value.code == 2
    assert "give 'runs/demo/model.onnx' as --model runs/demo/model.onnx" in capsys.readouterr().err
    with pytest.raises(SystemExit) as stop:
        edge_app_main(["--source", "video.mp4"])
    assert stop.value.code == 2 and "--model is required" in capsys.readouterr().err
