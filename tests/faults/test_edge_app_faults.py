"""edge_app under faults: killed and interrupted runs, streams that stall, vanish or start late, full
and read-only disks, outputs that would overwrite the input, a closing pipe, bad images, bad numbers."""
import json
import os
import subprocess
import sys
import threading
import time
import tracemalloc
from pathlib import Path

import cv2
import numpy as np
import pytest

from edge_app.app import AppConfig, EdgeApp
from edge_app.cli import main as edge_cli
from edge_app.outputs import MjpegServer, OutputError, open_output
from edge_app.sources import SourceError, open_source
from media import feed, frame_count, interrupt_when_written, moving_digits_video

pytestmark = pytest.mark.slow
ROOT = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_sigint_mid_run_leaves_playable_video_and_complete_json(model, mnist_digits, tmp_path):
    video = tmp_path / "long.mp4"
    moving_digits_video(video, mnist_digits, frames=800)
    out, jsonl = tmp_path / "out.mp4", tmp_path / "out.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "edge_app", "--model", str(model), "--source", str(video),
                                "--output", str(out), "--json", str(jsonl)], env=env, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE, text=True)
    stdout, stderr = interrupt_when_written(process, jsonl)
    assert process.returncode == 0, stderr
    assert "done (SIGINT)" in stderr
    lines = jsonl.read_text().splitlines()
    assert 30 <= len(lines) < 800
    assert all(json.loads(line)["frame"] == i for i, line in enumerate(lines))  # every line complete
    assert frame_count(out) == len(lines)  # the container was finalised: every written frame plays


def _start(app: EdgeApp):
    """Run the app on a thread; its log lines and, once it ends, its summary are collected."""
    logs, result = [], {}
    app.log = logs.append
    thread = threading.Thread(target=lambda: result.setdefault("summary", app.run()))
    thread.start()
    return thread, result, logs


def test_live_source_that_disappears_is_reopened_then_given_up(model, tmp_path):
    server = MjpegServer("127.0.0.1", 0)
    port = server.address[1]
    stop = threading.Event()
    threading.Thread(target=feed, args=(server, stop), daemon=True).start()
    out = tmp_path / "live.mp4"
    app = EdgeApp(model, AppConfig(source=f"http://127.0.0.1:{port}/stream.mjpg", outputs=[str(out)],
                                   json=str(tmp_path / "live.jsonl"), reconnect_timeout=6.0))
    thread, result, logs = _start(app)
    time.sleep(3)
    stop.set()
    server.close()  # the camera goes away ...
    time.sleep(1.5)
    stop2 = threading.Event()
    server2 = MjpegServer("127.0.0.1", port)  # ... comes back on the same address ...
    threading.Thread(target=feed, args=(server2, stop2), daemon=True).start()
    time.sleep(4)
    stop2.set()
    server2.close()  # ... and goes away for good
    thread.join(timeout=60)
    summary = result["summary"]
    assert summary.reconnects >= 1 and summary.stopped_by == "source lost"
    assert any("stopped delivering frames" in line for line in logs)
    assert any("reopened" in line for line in logs)
    assert summary.frames > 20 and frame_count(out) == summary.frames


def test_a_stream_that_stays_open_but_silent_is_noticed_within_the_stall_timeout(model, tmp_path):
    """The server keeps the connection open and stops sending: FFmpeg alone waited ~30 s per stall
    and edge_app never gave up. With --stall-timeout 1 and --reconnect-timeout 3 it must give up in a
    few seconds, and keep logging its summary while it waits."""
    server = MjpegServer("127.0.0.1", 0)
    stop = threading.Event()
    threading.Thread(target=feed, args=(server, stop), daemon=True).start()
    app = EdgeApp(model, AppConfig(source=f"http://127.0.0.1:{server.address[1]}/stream.mjpg", stall_timeout=1.0,
                                   reconnect_timeout=3.0, summary_every=0.5))
    thread, result, logs = _start(app)
    time.sleep(2.5)
    stop.set()  # silent from now on, connection kept open
    stalled_at = time.monotonic()
    thread.join(timeout=40)
    server.close()
    assert not thread.is_alive(), "edge_app never gave up on a silent stream"
    assert time.monotonic() - stalled_at < 15  # stall (1 s) + reconnecting (3 s) + back-off, not 30 s per stall
    assert result["summary"].stopped_by == "source lost" and result["summary"].frames > 5
    assert any("stopped delivering frames" in line for line in logs)
    frames_logged = [line for line in logs if " frames, " in line and "FPS" in line]
    assert len(frames_logged) >= 3  # the summary kept coming while the stream was silent


def test_a_stream_that_is_down_at_start_up_is_waited_for(model, tmp_path):
    probe = MjpegServer("127.0.0.1", 0)
    port = probe.address[1]
    probe.close()  # a free port: nothing answers there yet
    stop = threading.Event()
    servers = []

    def camera_boots_late():
        time.sleep(2.0)
        servers.append(MjpegServer("127.0.0.1", port))
        feed(servers[0], stop)

    threading.Thread(target=camera_boots_late, daemon=True).start()
    app = EdgeApp(model, AppConfig(source=f"http://127.0.0.1:{port}/stream.mjpg", max_frames=10, reconnect_timeout=20.0))
    logs = []
    app.log = logs.append
    summary = app.run()
    stop.set()
    servers[0].close()
    assert summary.frames == 10 and any("is not answering; retrying" in line for line in logs)


def test_memory_stays_flat_on_a_long_run(model, mnist_digits, tmp_path):
    video = tmp_path / "loop.mp4"
    moving_digits_video(video, mnist_digits, frames=900, size=128)
    tracemalloc.start()
    app = EdgeApp(model, AppConfig(source=str(video), outputs=[str(tmp_path / "o.mp4")], max_frames=150))
    app.log = lambda _m: None
    app.run()
    baseline = tracemalloc.get_traced_memory()[0]
    app.config.max_frames = 900
    app.run()
    grown = tracemalloc.get_traced_memory()[0] - baseline
    tracemalloc.stop()
    assert grown < 2_000_000, f"Python heap grew by {grown} bytes over 750 more frames"


def test_bad_sources_and_outputs_are_clear_errors(model, tmp_path, capsys):
    with pytest.raises(SourceError, match="no such file"):
        open_source(str(tmp_path / "missing.mp4"))
    with pytest.raises(SourceError, match="no such camera"):
        open_source("v4l2:///dev/video99")
    if "GStreamer" not in cv2.getBuildInformation() or "GStreamer:                   NO" in cv2.getBuildInformation():
        with pytest.raises(SourceError, match="GStreamer"):
            open_source("csi://0")
    with pytest.raises(OutputError, match="unknown output"):
        open_output(str(tmp_path / "x.txt"), fps=25)
    assert edge_cli(["--model", str(model), "--source", str(tmp_path / "missing.mp4")]) == 2
    assert "no such file" in capsys.readouterr().err
    assert edge_cli(["--model", str(model), "--source", "0", "--output", "display://0", "--headless"]) == 2
    (tmp_path / "broken.jpg").write_bytes(b"garbage")
    cv2.imwrite(str(tmp_path / "ok.png"), np.zeros((64, 64, 3), np.uint8))
    summary = EdgeApp(model, AppConfig(source=str(tmp_path))).run()
    assert summary.frames == 1 and summary.bad == 1  # the unreadable image is skipped and counted


def test_outputs_that_name_the_source_or_each_other_are_refused_and_nothing_is_touched(model, mnist_digits, tmp_path,
                                                                                     capsys):
    video = tmp_path / "in.mp4"
    moving_digits_video(video, mnist_digits, frames=20)
    before = video.read_bytes()
    (tmp_path / "sub").mkdir()
    (tmp_path / "link.mp4").symlink_to(video)
    clashes = [["--output", str(video)], ["--json", str(video)], ["--output", str(tmp_path / "sub" / ".." / "in.mp4")],
               ["--output", str(tmp_path / "link.mp4")], ["--output", str(tmp_path)],  # a folder output holding it
               ["--output", str(tmp_path / "o.mp4"), "--json", str(tmp_path / "o.mp4")]]
    for extra in clashes:
        assert edge_cli(["--model", str(model), "--source", str(video), *extra]) == 2, extra
        err = capsys.readouterr().err
        assert "would destroy" in err and ("the source" in err or "--output" in err), err
    assert video.read_bytes() == before
    assert not (tmp_path / "o.mp4").exists() and not list(tmp_path.glob("frame_*.jpg"))
    assert edge_cli(["--model", str(model), "--source", str(video), "--output", str(tmp_path / "sub" / "out.mp4"),
                     "--max-frames", "5"]) == 0  # a different file is fine


def test_a_full_disk_stops_that_output_says_so_and_leaves_only_whole_records(model, mnist_digits, tmp_path, small_disk,
                                                                            capsys):
    video = tmp_path / "in.mp4"
    moving_digits_video(video, mnist_digits, frames=600)
    jsonl, frames = small_disk / "out.jsonl", small_disk / "frames"
    code = edge_cli(["--model", str(model), "--source", str(video), "--json", str(jsonl), "--output", str(frames)])
    captured = capsys.readouterr()
    assert code == 4  # not everything asked for was written: never exit 0
    summary = json.loads(captured.out.strip().splitlines()[-1])["summary"]
    assert set(summary["failed_outputs"]) == {str(jsonl), str(frames)} and summary["outputs"] == []
    assert summary["stopped_by"] == "every output failed" and summary["frames"] < 600
    assert f"stopped writing {jsonl}" in captured.err and "No space left" in captured.err
    lines = jsonl.read_bytes().decode().splitlines(keepends=True)
    assert lines and all(line.endswith("\n") and json.loads(line)["frame"] == i for i, line in enumerate(lines))
    written = sorted(frames.glob("frame_*.jpg"))
    assert written and all(cv2.imread(str(p)) is not None for p in written)  # no truncated JPEG left behind


def test_a_read_only_frames_folder_is_refused_at_start(model, mnist_digits, tmp_path, small_disk, capsys):
    video = tmp_path / "in.mp4"
    moving_digits_video(video, mnist_digits, frames=10)
    (small_disk / "frames").mkdir()
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    assert edge_cli(["--model", str(model), "--source", str(video), "--output", str(small_disk / "frames")]) == 2
    assert "cannot write frames there" in capsys.readouterr().err


@pytest.mark.parametrize("suffix", [".mp4", ".mkv", ".avi"])
def test_a_video_on_a_filling_disk_stops_in_time_and_stays_playable(model, mnist_digits, tmp_path, capsys, suffix):
    """OpenCV's writer reports no full disk and leaves an MP4 without its index; edge_app stops while
    the index (or the last fragment) still fits, so every frame it reports as written plays back."""
    from edge_app.video_output import VIDEO_RESERVE_BYTES

    mount = tmp_path / "disk"
    mount.mkdir()
    size = VIDEO_RESERVE_BYTES + (1 << 20)
    if subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(mount)], capture_output=True).returncode:
        pytest.skip("cannot mount a small tmpfs here to fill a disk (needs root)")
    try:
        video = tmp_path / "in.mp4"
        moving_digits_video(video, mnist_digits, frames=900)
        (mount / "ballast").write_bytes(b"\0" * (size - VIDEO_RESERVE_BYTES - (300 << 10)))  # ~300 KB left for frames
        out = mount / f"out{suffix}"
        assert edge_cli(["--model", str(model), "--source", str(video), "--output", str(out)]) == 4
        captured = capsys.readouterr()
        summary = json.loads(captured.out.strip().splitlines()[-1])["summary"]
        assert str(out) in summary["failed_outputs"] and "can still be finalised" in captured.err
        written = int(summary["failed_outputs"][str(out)].split("stopped after ")[1].split()[0])
        assert 0 < written < 900 and frame_count(out) == written  # every frame written plays back
    finally:
        subprocess.run(["umount", "-l", str(mount)], capture_output=True)


@pytest.mark.parametrize("suffix", [".mp4", ".mkv"])
def test_a_killed_run_leaves_a_video_that_plays_up_to_the_kill(model, mnist_digits, tmp_path, suffix):
    """kill -9 (or a power cut) gives no chance to write an index: a plain MP4 then held 0 playable
    frames of 3.4 MB. Fragmented MP4 (PyAV, packets flushed) keeps all but about the last second;
    Matroska through OpenCV all but what its writer still buffered (a few seconds)."""
    if suffix == ".mp4":
        pytest.importorskip("av", reason="fragmented MP4 needs PyAV: pip install 'spamcam[video]'")
    video = tmp_path / "long.mp4"
    moving_digits_video(video, mnist_digits, frames=1500)
    out, jsonl = tmp_path / f"out{suffix}", tmp_path / "out.jsonl"
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    process = subprocess.Popen([sys.executable, "-m", "edge_app", "--model", str(model), "--source", str(video),
                                "--output", str(out), "--json", str(jsonl)], env=env, stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    deadline = time.time() + 60
    while (not jsonl.exists() or jsonl.read_text().count("\n") < 200) and time.time() < deadline:
        time.sleep(0.05)
    process.kill()
    process.wait(timeout=30)
    processed = jsonl.read_text().count("\n")
    assert 200 <= processed < 1500, "the run ended before it could be killed mid-way"
    playable = frame_count(out)
    lost_at_most = {".mp4": 2 * 25, ".mkv": 5 * 25}[suffix]  # 25 FPS: a one-second fragment; OpenCV's buffer
    assert playable > 0 and playable >= processed - lost_at_most, (playable, processed)
    # a plain MP4 (OpenCV) killed the same way holds nothing playable: what the fragmenting is for
    if suffix == ".mp4":
        plain = tmp_path / "plain.mp4"
        code = ("import cv2, numpy as np, os\n"
                f"w = cv2.VideoWriter({str(plain)!r}, cv2.VideoWriter_fourcc(*'mp4v'), 25, (256, 256))\n"
                "for i in range(300): w.write(np.full((256, 256, 3), i % 255, np.uint8))\n"
                "os.kill(os.getpid(), 9)\n")
        subprocess.run([sys.executable, "-c", code], env=env)
        assert plain.stat().st_size > 0 and frame_count(plain) == 0


@pytest.mark.parametrize("option, value, message", [("--max-frames", "-5", "below 0"), ("--min-score", "nan", "not a finite"),
                                                    ("--reconnect-timeout", "-1", "below 0"),
                                                    ("--stall-timeout", "0", "must be above 0"),
                                                    ("--width", "abc", "not an integer")])
def test_bad_numbers_are_refused_by_name(option, value, message, capsys):
    with pytest.raises(SystemExit) as exit_:
        edge_cli(["--model", "m.onnx", "--source", "0", option, value])
    err = capsys.readouterr().err
    assert exit_.value.code == 2 and option in err and message in err


def test_json_to_a_pipe_that_closes_ends_cleanly(model, mnist_digits, tmp_path):
    video = tmp_path / "in.mp4"
    moving_digits_video(video, mnist_digits, frames=300)
    script = (f"{sys.executable} -m edge_app --model {model} --source {video} --json - 2>{tmp_path / 'err.txt'} | head -n 3;"
              " exit ${PIPESTATUS[0]}")
    done = subprocess.run(["bash", "-c", script], capture_output=True, text=True, cwd=ROOT, timeout=120)
    err = (tmp_path / "err.txt").read_text()
    assert len(done.stdout.splitlines()) == 3 and all(json.loads(line)["frame"] == i
                                                      for i, line in enumerate(done.stdout.splitlines()))
    assert done.returncode == 4 and "Traceback" not in err and "standard output was closed" in err


def test_event_files_on_a_full_disk_are_reported_failed_and_nothing_half_written_is_left(model, mnist_digits,
                                                                                          tmp_path, small_disk):
    from media import crossing_digits_video

    video = tmp_path / "cross.mp4"
    crossing_digits_video(video, mnist_digits)
    free = os.statvfs(small_disk)
    (small_disk / "filler").write_bytes(b"x" * (free.f_bavail * free.f_frsize - 8192))  # two 4 KB pages left
    log, snaps, clips = small_disk / "events.jsonl", small_disk / "snaps", small_disk / "clips"
    summary = EdgeApp(model, AppConfig(source=str(video), event_log=str(log), snapshots=str(snaps), clips=str(clips)),
                      log=lambda m: None).run()
    assert summary.frames == 160  # the video went on
    assert str(snaps) in summary.failed_outputs and str(clips) in summary.failed_outputs
    assert "No space left" in summary.failed_outputs[str(clips)]
    assert str(snaps) not in summary.outputs and str(clips) not in summary.outputs
    assert not list(clips.glob("*.part")) and not list(snaps.glob("*.tmp*"))  # nothing half-written stays
    events = [json.loads(line) for line in log.read_text().splitlines()]  # whole lines only
    for event in events:
        assert event.get("snapshot") is None or Path(event["snapshot"]).is_file()  # never names a lost snapshot


def test_unwritable_event_folders_are_refused_before_anything_is_opened(model, mnist_digits, tmp_path, read_only_dir,
                                                                        capsys):
    video, out = tmp_path / "clip.mp4", tmp_path / "out.mp4"
    moving_digits_video(video, mnist_digits, frames=10)
    for option in ("--clips", "--snapshots", "--event-log"):
        target = read_only_dir / ("events.jsonl" if option == "--event-log" else "folder")
        assert edge_cli(["--model", str(model), "--source", str(video), "--output", str(out), option, str(target)]) == 2
        assert option in capsys.readouterr().err and not out.exists()  # said by name; the video was not begun


def test_one_cameras_unwritable_folder_is_refused_before_any_camera_writes(model, mnist_digits, tmp_path,
                                                                           read_only_dir, capsys):
    """Several cameras, one of them told to write into a read-only folder: refused by camera and path
    with exit 2 before any camera opens anything, so no other camera's file is left made for nothing."""
    video = tmp_path / "v.mp4"
    moving_digits_video(video, mnist_digits, frames=20)
    cameras = tmp_path / "cameras.yaml"
    ok = tmp_path / "ok.jsonl"
    cameras.write_text(f"cameras:\n  - {{name: a, source: {video}, json: {ok}}}\n"
                       f"  - {{name: b, source: {video}, outputs: [{read_only_dir / 'b.mp4'}]}}\n")
    assert edge_cli(["--model", str(model), "--cameras", str(cameras)]) == 2
    line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "camera b: --output" in line and str(read_only_dir) in line
    assert not ok.exists()
