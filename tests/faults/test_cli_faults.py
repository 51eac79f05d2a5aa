"""Every console script under faults: one error model (one line, exit 2; a bug exits 1; Ctrl-C 130,
SIGTERM 143), outputs checked before the work, written whole or not at all, the same option names."""
import errno
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from calibration.cli import build_parser as quantize_parser
from calibration.cli import main as quantize_cli
from edge_app.cli import main as edge_cli
from engines.build_engine import build_parser as build_parser_
from engines.build_engine import main as build_cli
from engines.compare_backends import build_parser as compare_parser
from engines.compare_backends import main as compare_cli
from export.onnx_export import main as export_cli
from runtime.cli import run_cli
from runtime.errors import ConfigError, SpamcamError, WriteError
from training.cli import main as train_cli
from training.data.fetch import main as fetch_cli
from training.evaluate_cli import main as eval_cli

from fault_helpers import fill, one_line_error
from media import moving_digits_video

ROOT = Path(__file__).resolve().parents[2]


# ---- the runner: how each ending maps to a message and an exit code ----------------------------

def _raise(error):
    def work():
        raise error
    return work


@pytest.mark.parametrize("error, code, words", [
    (ConfigError("--foo must be positive"), 2, "tool: error: --foo must be positive"),
    (OSError(errno.ENOSPC, "No space left on device", "/data/x.onnx"), 2, "/data/x.onnx: No space left on device (the disk is full"),
    (OSError(errno.EROFS, "Read-only file system", "/ro/x"), 2, "write somewhere else"),
    (PermissionError(errno.EACCES, "Permission denied", "/root/x"), 2, "Permission denied"),
    (KeyError("oops"), 1, "internal error: KeyError"),
    (KeyboardInterrupt(), 130, "interrupted; what was kept"),
    (MemoryError(), 2, "out of memory"),
])
def test_the_runner_gives_one_line_and_the_documented_exit_code(error, code, words, capsys):
    assert run_cli("tool", _raise(error), interrupted="what was kept") == code
    err = capsys.readouterr().err
    assert words in err and "Traceback" not in err


def test_every_error_spamcam_raises_on_purpose_is_a_spamcam_error_and_keeps_its_builtin_base():
    from calibration.dataset import CalibrationError
    from edge_app.outputs import OutputError
    from edge_app.sources import SourceError
    from runtime.backends.cuda_memory import CudaError
    from runtime.model_info import MetadataError
    from training.checkpoint import CheckpointError

    for kind, builtin in ((MetadataError, ValueError), (CheckpointError, ValueError), (CalibrationError, ValueError),
                          (OutputError, OSError), (SourceError, RuntimeError), (CudaError, RuntimeError)):
        assert issubclass(kind, SpamcamError) and issubclass(kind, builtin), kind


def test_spamcam_traceback_lets_the_traceback_through(monkeypatch):
    monkeypatch.setenv("SPAMCAM_TRACEBACK", "1")
    with pytest.raises(KeyError):
        run_cli("tool", _raise(KeyError("where")))


def test_a_closed_stdout_ends_quietly_with_141():
    """`compare-backends ... | head -1`-style pipelines: the reader leaves, the tool stops without a traceback."""
    code = ("import sys\nfrom runtime.cli import run_cli\n"
            "def work():\n    for i in range(100000):\n        print('line', i)\n"
            "sys.exit(run_cli('tool', work))\n")
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    producer = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    producer.stdout.readline()
    producer.stdout.close()  # the reader goes away
    assert producer.wait(timeout=30) == 141
    assert b"Traceback" not in producer.stderr.read()


def test_sigterm_stops_train_cam_like_ctrl_c_and_keeps_the_last_checkpoint(tmp_path):
    out = tmp_path / "run"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "training.cli", "--dataset", "embedded", "--epochs", "200",
                                "--out", str(out), "--no-progress"], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "ckpt.pt").exists() and time.time() < deadline and process.poll() is None:
        time.sleep(0.1)
    assert (out / "ckpt.pt").exists(), "no checkpoint was written"
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 143, stderr
    assert "train-cam: terminated; the last completed epoch's checkpoint is kept" in stderr and "Traceback" not in stderr
    from training.checkpoint import load_checkpoint

    assert load_checkpoint(out / "ckpt.pt")["training_state"]["epoch"] >= 1  # whole and resumable
    assert not list(out.glob(".*partial"))


# ---- outputs: checked before the work, made whole or not at all --------------------------------

def _tool_commands(ckpt: str, model: str, video: str, target: str) -> dict:
    """For each console script, a command whose output goes to `target` (a file path, or a folder for --out/--save-vis)."""
    return {
        "train-cam": (train_cli, ["--dataset", "embedded", "--epochs", "1", "--out", target, "--no-progress"]),
        "export-onnx": (export_cli, [ckpt, "-o", target]),
        "quantize-int8": (quantize_cli, [model, "-o", target, "--calib-samples", "8", "--no-progress"]),
        "build-engine": (build_cli, [model, "--backend", "onnxruntime", "-o", target]),
        "eval-cam --json": (eval_cli, [ckpt, "--limit", "20", "--json", target, "--no-progress"]),
        "eval-cam --save-vis": (eval_cli, [ckpt, "--limit", "20", "--save-vis", target, "--no-progress"]),
        "compare-backends": (compare_cli, [model, model, "--limit", "8", "--json", target, "--no-progress"]),
        "edge_app --output": (edge_cli, ["--model", model, "--source", video, "--output", target]),
        "edge_app --json": (edge_cli, ["--model", model, "--source", video, "--json", target]),
    }


TOOLS = ["train-cam", "export-onnx", "quantize-int8", "build-engine", "eval-cam --json", "eval-cam --save-vis",
         "compare-backends", "edge_app --output", "edge_app --json"]
TARGET_NAMES = {"train-cam": "run", "eval-cam --save-vis": "vis", "edge_app --output": "out.mp4",
                "eval-cam --json": "m.json", "compare-backends": "r.json", "edge_app --json": "d.jsonl"}


@pytest.fixture(scope="module")
def clip(mnist_digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("clip") / "clip.mp4"
    moving_digits_video(path, mnist_digits, frames=20)
    return str(path)


@pytest.mark.slow
@pytest.mark.parametrize("tool", TOOLS)
def test_an_unwritable_destination_is_refused_before_the_work_with_the_path_named(tool, mnist128_checkpoint, exported,
                                                                                  clip, read_only_dir, capsys):
    target = read_only_dir / TARGET_NAMES.get(tool, "m.onnx")
    main, argv = _tool_commands(str(mnist128_checkpoint["checkpoint"]), str(exported), clip, str(target))[tool]
    started = time.perf_counter()
    assert main(argv) == 2
    captured = capsys.readouterr()
    line = one_line_error(captured.err, tool.split()[0])
    assert str(read_only_dir) in line and ("cannot" in line or "Read-only" in line or "ermission" in line), line
    assert "Method" not in captured.out  # eval-cam printed no table: it stopped before evaluating
    assert time.perf_counter() - started < 30  # not after minutes of training, calibration or evaluation


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["export-onnx", "quantize-int8", "build-engine", "eval-cam --json", "compare-backends"])
def test_a_missing_output_folder_is_made_and_a_folder_is_no_file_name(tool, mnist128_checkpoint, exported, clip,
                                                                      tmp_path, capsys):
    commands = lambda target: _tool_commands(str(mnist128_checkpoint["checkpoint"]), str(exported), clip, target)[tool]
    target = tmp_path / "new" / "deeper" / TARGET_NAMES.get(tool, "m.onnx")
    main, argv = commands(str(target))
    assert main(argv) == 0 and target.is_file()
    main, argv = commands(str(tmp_path))  # an existing folder where a file name belongs
    assert main(argv) == 2
    assert "is a folder; give a file name" in one_line_error(capsys.readouterr().err, tool.split()[0])


@pytest.mark.slow
@pytest.mark.parametrize("tool", ["export-onnx", "quantize-int8", "build-engine"])
def test_a_full_disk_leaves_the_earlier_model_untouched_and_no_partial_file(tool, mnist128_checkpoint, exported, clip,
                                                                            small_disk, capsys):
    target = small_disk / "m.onnx"
    target.write_bytes(b"the earlier model")
    fill(small_disk, leave=16 << 10)  # room for the checks, not for a model
    main, argv = _tool_commands(str(mnist128_checkpoint["checkpoint"]), str(exported), clip, str(target))[tool]
    assert main(argv) == 2
    line = one_line_error(capsys.readouterr().err, tool)
    assert "No space left" in line or "disk is full" in line, line
    assert target.read_bytes() == b"the earlier model"
    assert sorted(p.name for p in small_disk.iterdir()) == ["ballast", "m.onnx"]  # no partial file left


@pytest.mark.slow
def test_pictures_that_fill_the_disk_cost_the_pictures_not_the_metrics(mnist128_checkpoint, small_disk, tmp_path,
                                                                       capsys):
    fill(small_disk, leave=120 << 10)
    metrics = tmp_path / "metrics.json"
    code = eval_cli([str(mnist128_checkpoint["checkpoint"]), "--limit", "40", "--vis-count", "40", "--save-vis",
                     str(small_disk / "vis"), "--json", str(metrics), "--no-progress"])
    captured = capsys.readouterr()
    assert code == 4, captured.err  # an output failed: never reported as success
    result = json.loads(metrics.read_text())
    assert result["images"] == 40 and 0 < result["pictures_written"] < 40  # the metrics are whole
    assert "the pictures stopped there" in captured.err
    written = sorted((small_disk / "vis").glob("*.png"))
    assert len(written) == result["pictures_written"]  # what it says it wrote is there, and nothing half-written
    import cv2

    assert all(cv2.imread(str(p)) is not None for p in written)


# ---- the same option names and the same validation everywhere ----------------------------------

def test_the_calibration_options_are_the_same_in_every_tool_that_calibrates():
    argv = ["model.onnx", "--calib", "frames/", "--calib-samples", "7", "--calib-method", "entropy"]
    for parser in (quantize_parser(), build_parser_(), compare_parser()):
        args = parser.parse_args(argv)
        assert (args.calib, args.calib_samples, args.calib_method) == ("frames/", 7, "entropy"), parser.prog
    old = quantize_parser().parse_args(["model.onnx", "--samples", "9", "--method", "percentile"])
    assert (old.calib_samples, old.calib_method) == (9, "percentile")  # quantize-int8's earlier names still work


@pytest.mark.parametrize("main, argv, words", [
    (train_cli, ["--epochs", "0"], "--epochs: 0 is below 1"),
    (train_cli, ["--objects", "3,1"], "need 1 <= MIN <= MAX"),
    (train_cli, ["--limit", "train=-4"], "is not SPLIT=N"),
    (eval_cli, ["m.pt", "--limit", "-5"], "--limit: -5 is below 1"),
    (quantize_cli, ["m.onnx", "--calib-samples", "0"], "--calib-samples: 0 is below 1"),
    (build_cli, ["m.onnx", "--max-batch", "0"], "--max-batch: 0 is below 1"),
    (compare_cli, ["m.pt", "--limit", "nan"], "is not an integer"),
    (eval_cli, ["m.pt", "--ratio", "nan"], "not a finite number"),
    (export_cli, ["m.pt", "--verify-tolerance", "-1"], "below 0"),
])
def test_bad_numbers_are_refused_by_name_in_every_tool(main, argv, words, capsys):
    with pytest.raises(SystemExit) as stop:
        main(argv)
    assert stop.value.code == 2 and words in capsys.readouterr().err


@pytest.mark.parametrize("main, argv", [
    (train_cli, ["--dataset", "folder:MISSING/birds", "--out", "MISSING/run"]),
    (eval_cli, ["MISSING/ckpt.pt", "--json", "MISSING/out/m.json"]),
    (export_cli, ["MISSING/ckpt.pt"]),
    (quantize_cli, ["MISSING/model.onnx"]),
    (build_cli, ["MISSING/model.onnx", "--backend", "onnxruntime"]),
    (compare_cli, ["MISSING/model.onnx", "MISSING/other.onnx", "--json", "MISSING/r.json"]),
    (edge_cli, ["--model", "MISSING/model.onnx", "--source", "0", "--json", "MISSING/d.jsonl"]),
])
def test_a_missing_input_is_one_line_and_exit_2_in_every_tool(main, argv, capsys, tmp_path):
    missing = tmp_path / "missing"
    assert main([a.replace("MISSING", str(missing)) for a in argv]) == 2
    assert str(missing) in one_line_error(capsys.readouterr().err, _prog(main))
    assert not missing.exists()  # no output folder was made for an input that is not there


def _prog(main) -> str:
    return {"training.cli": "train-cam", "training.evaluate_cli": "eval-cam", "export.onnx_export": "export-onnx",
            "calibration.cli": "quantize-int8", "engines.build_engine": "build-engine",
            "engines.compare_backends": "compare-backends", "edge_app.cli": "edge_app",
            "training.data.fetch": "fetch-mnist"}[main.__module__]


def test_fetch_mnist_into_an_unwritable_cache_says_so_before_downloading(read_only_dir, monkeypatch, capsys):
    monkeypatch.setenv("SPAMCAM_CACHE", str(read_only_dir / "cache"))
    started = time.perf_counter()
    assert fetch_cli(["--full", "--force"]) == 2  # exit 2 like every tool (it was 1)
    line = one_line_error(capsys.readouterr().err, "fetch-mnist")
    assert "cache" in line and str(read_only_dir) in line
    assert time.perf_counter() - started < 5  # refused before the 11.5 MB download


# ---- train-cam and eval-cam: runs are never replaced unasked; bad data is named ----------------
def test_cli_never_replaces_a_run_unasked(tmp_path, capsys):
    args = ["--dataset", "embedded", "--limit", "train=128", "--limit", "val=32", "--out", str(tmp_path), "--no-progress"]
    assert train_cli(args + ["--epochs", "1"]) == 0
    before = (tmp_path / "ckpt.pt").read_bytes()
    capsys.readouterr()
    assert train_cli(args + ["--epochs", "1"]) == 2  # the same command again: refused, run kept
    assert "already holds a run" in capsys.readouterr().err and (tmp_path / "ckpt.pt").read_bytes() == before
    assert train_cli(args + ["--epochs", "1", "--resume"]) == 2  # nothing left to train: said so
    assert "nothing to do" in capsys.readouterr().err and (tmp_path / "ckpt.pt").read_bytes() == before
    assert train_cli(args + ["--epochs", "1", "--overwrite"]) == 0  # asked for: a fresh run, a fresh log
    assert [line.split(",")[0] for line in (tmp_path / "log.csv").read_text().splitlines()[1:]] == ["1"]
    assert train_cli(args[:-3] + ["--out", str(tmp_path / "new"), "--resume", "--no-progress"]) == 2
    assert "no " in capsys.readouterr().err and not (tmp_path / "new" / "ckpt.pt").exists()


def test_cli_reports_bad_input_clearly(tmp_path, capsys):
    assert train_cli(["--dataset", f"folder:{tmp_path / 'missing'}", "--out", str(tmp_path)]) == 2
    assert "does not exist" in capsys.readouterr().err
    assert train_cli(["--dataset", "embedded", "--weights", str(tmp_path / "nope.pth"), "--out", str(tmp_path)]) == 2
    assert "no such file" in capsys.readouterr().err


def test_eval_cam_errors(tmp_path, capsys):
    (tmp_path / "x.pt").write_bytes(b"garbage")
    assert eval_cli([str(tmp_path / "x.pt")]) == 2
    assert "truncated or corrupt" in capsys.readouterr().err


def test_an_output_that_is_a_device_or_a_pipe_is_refused(tmp_path):
    """The atomic rename would replace the node itself (as root, /dev/full became a regular file)."""
    from runtime.output_paths import writable_file

    fifo = tmp_path / "pipe.onnx"
    os.mkfifo(fifo)
    for special in (fifo, Path("/dev/full")):
        if special.exists():
            with pytest.raises(WriteError, match="is not a regular file"):
                writable_file(special, "-o")
    assert fifo.exists() and not fifo.is_file()  # untouched


@pytest.mark.slow
def test_json_to_standard_output_is_one_document_and_the_table_goes_to_stderr(mnist128_checkpoint, capsys):
    assert eval_cli([str(mnist128_checkpoint["checkpoint"]), "--limit", "20", "--json", "-", "--no-progress"]) == 0
    captured = capsys.readouterr()
    assert json.loads(captured.out)["images"] == 20  # nothing but the JSON on stdout
    assert "Classification" in captured.err and not Path("-").exists()
