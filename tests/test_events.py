"""Events (runtime/events.py, edge_app/event_pipeline.py): the lifecycle of each tracked digit in a
generated video, zones, webhooks through a real HTTP receiver that fails at first, snapshots and
browser-playable clips with their retention. All through edge_app on a real exported model."""
import json
import time
from pathlib import Path

import cv2
import pytest

from brokers import WebhookReceiver
from edge_app.app import AppConfig, EdgeApp
from edge_app.cli import main as edge_cli
from edge_app.clips import Retention
from edge_app.sinks import WebhookSink
from media import crossing_digits_video
from runtime.events import parse_zone

FPS = 25


@pytest.fixture(scope="module")
def crossing(mnist_digits, tmp_path_factory):
    path = tmp_path_factory.mktemp("crossing") / "cross.mp4"
    return path, crossing_digits_video(path, mnist_digits, fps=FPS)


def run(model, source, **settings):
    logs = []
    summary = EdgeApp(model, AppConfig(source=str(source), **settings), log=logs.append).run()
    return summary, logs


def lines(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_each_digit_is_one_event_new_then_end(exported, crossing, tmp_path):
    summary, _ = run(exported, crossing[0], event_log=str(tmp_path / "events.jsonl"), camera="feeder")
    events = lines(tmp_path / "events.jsonl")
    assert [(e["type"], e["track_id"]) for e in events] == [("new", 1), ("new", 2), ("end", 1), ("end", 2)]
    for event in events:
        assert event["camera"] == "feeder" and event["label"] == "3" and event["id"].startswith("feeder-")
        assert 0.5 <= event["best_confidence"] <= 1 and len(event["best_box"]) == 4
    new, end = {e["track_id"]: e for e in events if e["type"] == "new"}, {e["track_id"]: e for e in events if e["type"] == "end"}
    for track in (1, 2):
        assert new[track]["id"] == end[track]["id"] and end[track]["end_time"] >= new[track]["start_time"]
        # the best sighting can precede the `new` (sent once the track is confirmed, 3 frames in)
        assert new[track]["frame"] - 2 <= end[track]["best_frame"] <= end[track]["frame"]
    # A enters first (frame ~10), B later (its path starts at frame 20); A leaves first
    assert new[1]["frame"] < new[2]["frame"] and end[1]["frame"] < end[2]["frame"]
    assert summary.events["events"] == {"new": 2, "end": 2}
    assert summary.events["sinks"]["event log"] == {"sent": 4, "failed": 0, "dropped": 0, "queued": 0}


def test_zones_say_where_an_object_went(exported, crossing, tmp_path):
    # B walks along y = 150..206 from the right edge to the left; A along y = 40..96 never reaches y > 120
    zone = "right:128,120 256,120 256,256 128,256"
    run(exported, crossing[0], event_log=str(tmp_path / "events.jsonl"), zones=[zone], update_interval=0.0)
    events = lines(tmp_path / "events.jsonl")
    by_track = {t: [e for e in events if e["track_id"] == t] for t in (1, 2)}
    assert all(e["zones"] == [] for e in by_track[1])
    assert by_track[2][0]["type"] == "new" and by_track[2][0]["current_zones"] == ["right"]
    left = [e for e in by_track[2] if e["type"] == "update" and e["current_zones"] == []]
    assert left, "no update when B left the zone"
    assert by_track[2][-1]["type"] == "end" and by_track[2][-1]["zones"] == ["right"]


def test_entering_a_zone_is_sent_at_once_however_long_the_update_interval(exported, crossing, tmp_path):
    # B (y = 150..206) walks from the right edge into the left half; nothing else would send an update
    run(exported, crossing[0], event_log=str(tmp_path / "events.jsonl"), zones=["left:0,120 128,120 128,256 0,256"],
        update_interval=3600.0)
    updates = [e for e in lines(tmp_path / "events.jsonl") if e["type"] == "update"]
    assert [(e["track_id"], e["current_zones"]) for e in updates] == [(2, ["left"])]


def test_a_bad_zone_is_refused_by_name(capsys):
    with pytest.raises(ValueError, match="NAME:X,Y"):
        parse_zone("door:1,2 3,4")  # two corners are no polygon
    with pytest.raises(SystemExit) as stop:
        edge_cli(["--model", "m.onnx", "--source", "0", "--zone", "door"])
    assert stop.value.code == 2 and "NAME:X,Y" in capsys.readouterr().err


def test_webhooks_are_retried_and_a_dead_endpoint_is_counted_not_fatal(exported, crossing, tmp_path):
    flaky = WebhookReceiver(fail_first=2)  # the first two POSTs get HTTP 500
    dead = "http://127.0.0.1:9/nobody"  # the discard port: connection refused
    try:
        summary, logs = run(exported, crossing[0], webhooks=[flaky.url, dead])
    finally:
        flaky.close()
    assert [(b["type"], b["track_id"]) for b in flaky.bodies] == [("new", 1), ("new", 2), ("end", 1), ("end", 2)]
    assert flaky.requests == 6
    stats = summary.events["sinks"]
    assert stats[f"webhook {flaky.url}"]["sent"] == 4 and stats[f"webhook {flaky.url}"]["failed"] == 0
    assert stats[f"webhook {dead}"]["sent"] == 0 and stats[f"webhook {dead}"]["failed"] + stats[f"webhook {dead}"]["dropped"] == 4
    assert summary.frames == len(crossing[1]) and summary.stopped_by == "end of source"
    assert any(dead in line and "retrying" in line for line in logs)  # said, once


def test_a_full_sink_queue_drops_its_oldest_and_never_blocks():
    sink = WebhookSink("http://127.0.0.1:9/nobody", retries=0, capacity=2, backoff=0.01)
    started = time.perf_counter()
    for k in range(50):
        sink.send({"n": k})
    assert time.perf_counter() - started < 1.0  # 50 sends to a dead endpoint return at once
    sink.close(timeout=2.0)
    stats = sink.stats()
    assert stats["dropped"] >= 40 and stats["sent"] == 0 and stats["dropped"] + stats["failed"] == 50


def test_snapshots_and_clips_of_each_event(exported, crossing, tmp_path):
    pre, post = 1.0, 1.0
    summary, _ = run(exported, crossing[0], event_log=str(tmp_path / "events.jsonl"), snapshots=str(tmp_path / "snaps"),
                     clips=str(tmp_path / "clips"), clip_pre=pre, clip_post=post)
    ends = [e for e in lines(tmp_path / "events.jsonl") if e["type"] == "end"]
    news = {e["track_id"]: e for e in lines(tmp_path / "events.jsonl") if e["type"] == "new"}
    assert len(ends) == 2
    import av

    for end in ends:
        picture = cv2.imread(end["snapshot"])
        assert picture is not None and picture.shape == (256, 256, 3)
        assert news[end["track_id"]]["clip"] == end["clip"]
    clips = {}
    for end in ends:  # A and B are in view at the same time: they share one clip
        clips.setdefault(end["clip"], []).append(end)
    assert len(clips) == 1
    for clip_path, its_events in clips.items():
        clip = Path(clip_path)
        assert clip.is_file() and not clip.with_name(clip.name + ".part").exists()
        data = clip.read_bytes()
        assert data.find(b"moov") < data.find(b"mdat")  # index first: a browser plays it while loading
        with av.open(str(clip)) as container:
            stream = container.streams.video[0]
            assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
            frames = sum(1 for _ in container.decode(stream))
        start = max(0.0, min(news[e["track_id"]]["frame_time"] for e in its_events) - pre)
        stop = min((len(crossing[1]) - 1) / FPS, max(e["frame_time"] for e in its_events) + post)
        assert abs(frames / FPS - (stop - start)) <= 3 / FPS, (frames, start, stop)
    assert summary.events["clips"]["written"] == 1 and summary.events["snapshots"]["written"] == 2


def test_events_apart_in_time_get_clips_of_their_own(exported, mnist_digits, tmp_path):
    video = tmp_path / "apart.mp4"
    crossing_digits_video(video, mnist_digits, fps=FPS, frames=260, start_b=150)  # B enters after A has left
    run(exported, video, event_log=str(tmp_path / "events.jsonl"), clips=str(tmp_path / "clips"), clip_pre=0.5,
        clip_post=0.5)
    ends = [e for e in lines(tmp_path / "events.jsonl") if e["type"] == "end"]
    assert len(ends) == 2 and ends[0]["clip"] != ends[1]["clip"]
    assert all(Path(e["clip"]).is_file() for e in ends)


def test_retention_keeps_the_newest(exported, crossing, tmp_path):
    run(exported, crossing[0], snapshots=str(tmp_path / "snaps"), clips=str(tmp_path / "clips"), retain_count=1)
    assert len(list((tmp_path / "clips").glob("*.mp4"))) == 1 and len(list((tmp_path / "snaps").glob("*.jpg"))) == 1
    folder = tmp_path / "aged"
    folder.mkdir()
    for k, age_days in enumerate([10, 3, 0]):
        path = folder / f"{k}.mp4"
        path.write_bytes(b"x" * (1 << 20))
        stamp = time.time() - age_days * 86400
        import os

        os.utime(path, (stamp, stamp))
    assert [p.name for p in Retention(days=5).apply(folder, (".mp4",))] == ["0.mp4"]
    assert [p.name for p in Retention(megabytes=1.5).apply(folder, (".mp4",))] == ["1.mp4"]
    assert [p.name for p in folder.iterdir()] == ["2.mp4"]


def test_events_need_tracking(capsys):
    with pytest.raises(ValueError, match="need tracking"):
        AppConfig(source="0", event_log="e.jsonl", track=False)


def test_the_command_line_saves_its_config_beside_the_event_outputs(exported, crossing, tmp_path, capsys):
    log, clips = tmp_path / "events.jsonl", tmp_path / "clips"
    assert edge_cli(["--model", str(exported), "--source", str(crossing[0]), "--event-log", str(log), "--clips",
                     str(clips), "--camera", "feeder", "--headless"]) == 0
    summary = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["summary"]
    assert summary["outputs"] == [str(log), str(clips)] and summary["events"]["events"] == {"new": 2, "end": 2}
    saved = (tmp_path / "events.jsonl.config.yaml").read_text()
    assert "camera: feeder" in saved and (clips / "config.yaml").read_text() == saved
