"""The runtime install a Jetson or a CPU box makes, proven: a fresh virtual environment with the
README's runtime-only line (no [train] extra), then edge_app on an exported model and a short video,
and torch neither imported nor installed."""
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from media import moving_digits_video

pytestmark = pytest.mark.slow
ROOT = Path(__file__).resolve().parent.parent
README_LINE = "pip install . onnxruntime"  # the README's runtime-only install line, word for word


@pytest.fixture(scope="module")
def model(mnist128_checkpoint, tmp_path_factory):
    from export.onnx_export import export_onnx

    return export_onnx(mnist128_checkpoint["checkpoint"], tmp_path_factory.mktemp("torch_free") / "model.onnx")


def test_the_readme_shows_the_line_this_test_runs():
    assert f"\n{README_LINE} " in (ROOT / "README.md").read_text()


def test_runtime_install_runs_edge_app_without_torch(model, mnist_digits, tmp_path):
    # A copy of the tracked tree, so that the build leaves nothing in the checkout.
    source = tmp_path / "spamcam"
    files = subprocess.run(["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True).stdout.split(b"\0")
    for name in filter(None, files):
        target = source / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes((ROOT / name.decode()).read_bytes())
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    program, *arguments = README_LINE.split()
    install = subprocess.run([str(venv / "bin" / program), *arguments, "--quiet"], cwd=source, env=env,
                             capture_output=True, text=True, timeout=600)
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]

    video, jsonl = tmp_path / "clip.mp4", tmp_path / "out.jsonl"
    moving_digits_video(video, mnist_digits, frames=30)
    probe = ("import importlib.util, json, sys\n"
             "from edge_app.cli import main\n"
             f"rc = main(['--model', {str(model)!r}, '--source', {str(video)!r}, '--json', {str(jsonl)!r}, '--headless'])\n"
             "print(json.dumps({'rc': rc, 'torch_imported': 'torch' in sys.modules,"
             " 'torch_installed': importlib.util.find_spec('torch') is not None,"
             " 'edge_app_from': sys.modules['edge_app'].__file__}))\n")
    run = subprocess.run([str(venv / "bin" / "python"), "-c", probe], cwd=tmp_path, env=env, capture_output=True,
                         text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-3000:]
    result = json.loads(run.stdout.strip().splitlines()[-1])
    assert result["rc"] == 0
    assert not result["torch_imported"] and not result["torch_installed"]
    assert str(venv) in result["edge_app_from"]  # the installed package ran, not the checkout
    records = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert len(records) == 30 and any(d["class"] == "3" for r in records for d in r["detections"])
