"""Real training runs: MNIST128 from real digits, the CLI, and data-parallel torchrun."""
import os
import subprocess
import sys

import pytest

from runtime.evaluation import evaluate
from training.checkpoint import load_model
from training.cli import main as train_cli
from training.data.registry import load_splits
from training.predict import localizer_params, predict

pytestmark = pytest.mark.slow


def test_short_mnist128_run_classifies_real_digits(mnist128_checkpoint):
    model, payload = load_model(mnist128_checkpoint["checkpoint"])
    test = load_splits("mnist128").test
    predictions, _ = predict(model, test)
    metrics = evaluate(predictions, localizer_params(model))
    assert len(test) == 2000 and predictions.labels.sum() > 150
    assert metrics["classification_ap_mean"] >= 0.95
    assert metrics["pinpoint_ap_mean"] >= 0.8  # the CAM's maximum lands on the 3
    assert 0 < payload["config"].ratio < 1  # r was tuned on the validation split and stored
    assert payload["extra"]["epoch"] == 4


def test_cli_trains_each_pooling_and_writes_log(tmp_path, capsys):
    for pooling in ("gmp", "gap", "spam"):
        out = tmp_path / pooling
        code = train_cli(["--dataset", "embedded", "--pooling", pooling, "--epochs", "1", "--limit", "train=256",
                          "--limit", "val=64", "--out", str(out), "--no-progress"])
        assert code == 0
        model, _ = load_model(out / "ckpt.pt")
        assert model.config.pooling == pooling
        lines = (out / "log.csv").read_text().splitlines()
        assert lines[0].startswith("epoch,train_loss,val_loss,val_classification_ap") and len(lines) == 2
    assert "epoch 1/1" in capsys.readouterr().out


def test_cli_resume_continues_from_checkpoint(tmp_path):
    args = ["--dataset", "embedded", "--limit", "train=128", "--limit", "val=32", "--out", str(tmp_path), "--no-progress"]
    assert train_cli(args + ["--epochs", "1"]) == 0
    assert train_cli(args + ["--epochs", "2", "--resume"]) == 0
    lines = (tmp_path / "log.csv").read_text().splitlines()
    assert [line.split(",")[0] for line in lines[1:]] == ["1", "2"]


def test_torchrun_two_processes_write_exactly_one_checkpoint(tmp_path):
    out = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "training.cli", "--dataset", "embedded", "--epochs", "2", "--limit", "train=256",
               "--limit", "val=64", "--out", str(out), "--no-progress"]
    env = dict(os.environ, OMP_NUM_THREADS="1")
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-3000:]
    assert sorted(p.name for p in out.iterdir()) == ["ckpt.pt", "config.yaml", "log.csv"]  # from rank 0 alone
    assert result.stdout.count("train-cam: checkpoint") == 1  # only rank 0 reports
    assert "x2 processes" in result.stdout
    model, payload = load_model(out / "ckpt.pt")
    assert payload["extra"]["epoch"] == 2
    assert len((out / "log.csv").read_text().splitlines()) == 3


@pytest.mark.parametrize("balance", [True, False])
def test_epoch_samples_sets_the_draws_per_epoch(mnist_digits, balance):
    """--epoch-samples: short epochs over a large split; balanced draws still favour the rare class."""
    import numpy as np

    from training.data.mnist128 import Mnist128
    from training.predict import TorchSplit
    from training.train import TrainConfig, _sampler

    digits, labels = mnist_digits
    split = Mnist128(digits[:2000], labels[:2000], redraw_each_epoch=True)
    config = TrainConfig(epoch_samples=300, balance=balance)
    drawn = list(_sampler(config, split, TorchSplit(split, 1), 0, 1))
    assert len(drawn) == 300 and max(drawn) < 2000
    share = np.mean(labels[:2000][drawn] == 3)
    assert (share > 0.35) if balance else (share < 0.2)
    assert len(list(_sampler(TrainConfig(), split, TorchSplit(split, 1), 0, 1))) == 2000


def test_learning_rate_warms_up_then_follows_the_schedule():
    from training.train import lr_factor

    assert [lr_factor("cosine", s, 100, 10) for s in (0, 4, 9)] == [0.1, 0.5, 1.0]  # linear warm-up
    assert lr_factor("cosine", 10, 100, 10) == 1.0 and lr_factor("cosine", 55, 100, 10) == pytest.approx(0.5)
    assert lr_factor("cosine", 100, 100, 10) == pytest.approx(0.0, abs=1e-12)
    assert lr_factor("step", 9 + 60, 100, 9) == 0.1 and lr_factor("step", 9 + 59, 100, 9) == 1.0
    assert lr_factor("none", 0, 100) == 1.0
    with pytest.raises(ValueError, match="schedule must be"):
        lr_factor("linear", 0, 100)


def test_the_output_affine_has_its_own_learning_rate_and_no_weight_decay():
    from training.model import ModelConfig, build_model
    from training.train import TrainConfig, _optimizer

    model = build_model(ModelConfig(classes=["3"], input_size=[128, 128], in_channels=1, mean=[0.0], std=[1.0]))
    optimizer = _optimizer(TrainConfig(lr=5e-3, weight_decay=5e-4, output_lr_scale=10), model)
    features, output = optimizer.param_groups
    assert features["lr"] == 5e-3 and features["weight_decay"] == 5e-4
    assert output["lr"] == pytest.approx(5e-2) and output["weight_decay"] == 0.0
    assert {id(p) for p in output["params"]} == {id(model.out_weight), id(model.out_bias)}
    assert len(features["params"]) + len(output["params"]) == len(list(model.parameters()))


def test_denormals_are_flushed_only_while_training(tmp_path):
    """Flushing denormals speeds training up on x86, but it is the thread's global state: left on after
    train(), it changed floating-point behaviour for everything else in the process."""
    import torch

    from training.train import TrainConfig, flush_denormals, train

    tiny = torch.tensor([1e-40], dtype=torch.float32)
    with flush_denormals() as supported:
        if supported:
            assert (tiny * 1.0).item() == 0.0  # flushed inside
    train(TrainConfig(dataset="embedded", out=str(tmp_path), epochs=1, limits={"train": 64, "val": 32}, progress=False))
    assert (tiny * 1.0).item() != 0.0  # and restored after training


def test_memory_formats_train_alike_and_store_contiguous_checkpoints(tmp_path):
    """channels_last only changes the order of sums, so a step's loss agrees with contiguous's to rounding;
    its weights are NHWC in memory, but the checkpoint stores them contiguous, like every older one."""
    import torch

    from training.train import TrainConfig, train

    records = {}
    for layout in ("channels_last", "contiguous"):
        records[layout] = train(TrainConfig(dataset="embedded", out=str(tmp_path / layout), epochs=1, progress=False,
                                            limits={"train": 64, "val": 32}, memory_format=layout))
        state = torch.load(tmp_path / layout / "ckpt.pt", weights_only=True)["state_dict"]
        assert all(tensor.is_contiguous() for tensor in state.values())
    assert records["channels_last"]["train_loss"] == pytest.approx(records["contiguous"]["train_loss"], abs=1e-4)
