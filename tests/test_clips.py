"""ClipRecorder on its own: the pre-roll comes from the ring of H.264 packets and starts at a keyframe,
the clip holds exactly the frames it should, and a camera that comes back at another size gets a
new stream. Frames carry their index in binary (white and black squares), so the decoded clip says
which frames it holds."""
from __future__ import annotations

import re
import time
from pathlib import Path

import numpy as np
import pytest

from edge_app.clips import ClipRecorder, pyav_muxes_packets
from media import x264_settings

pytestmark = pytest.mark.skipif(not pyav_muxes_packets(), reason="needs PyAV >= 17 (pip install 'spamcam[video]')")

FPS = 10


BITS, SQUARE = 8, 16


def frame(index: int, size: tuple[int, int] = (96, 128)) -> np.ndarray:
    """Bit k of `index` as a white or black square in the top row: it reads back through H.264."""
    image = np.full((*size, 3), 128, np.uint8)
    for bit in range(BITS):
        image[:SQUARE, bit * SQUARE : (bit + 1) * SQUARE] = 255 if index >> bit & 1 else 0
    return image


def index_of(image: np.ndarray) -> int:
    squares = image[:SQUARE, : BITS * SQUARE].reshape(SQUARE, BITS, SQUARE).mean(axis=(0, 2))
    return sum(1 << bit for bit in range(BITS) if squares[bit] > 128)


def decoded_indices(path: Path) -> list[int]:
    import av

    with av.open(str(path)) as container:
        stream = container.streams.video[0]
        assert stream.codec_context.name == "h264" and stream.codec_context.pix_fmt == "yuv420p"
        return [index_of(f.to_ndarray(format="gray")) for f in container.decode(stream)]


def feed(recorder: ClipRecorder, frames: range, events: dict[int, tuple[str, str]], size=(96, 128)) -> None:
    for index in frames:
        recorder.push(frame(index, size), index / FPS)
        if index in events:
            action, name = events[index]
            getattr(recorder, action)(name, index / FPS)
        time.sleep(0.002)  # a camera's pace: the worker keeps up, no frame is left out


def test_a_clip_starts_at_the_keyframe_before_its_preroll_and_holds_every_frame(tmp_path):
    recorder = ClipRecorder(tmp_path, fps=FPS, pre_seconds=1.5, post_seconds=0.5)
    feed(recorder, range(80), {43: ("start", "a"), 55: ("stop", "a")})
    recorder.close()
    assert recorder.stats()["dropped_frames"] == 0
    indices = decoded_indices(tmp_path / "a.mp4")
    # the event began at frame 43; 1.5 s before is frame 28, and keyframes come every second (every
    # 10th frame), so the clip starts at frame 20 and runs to 0.5 s after the stop at 55
    assert indices == list(range(20, 61)), indices
    assert recorder.written == 1 and not list(tmp_path.glob("*.part"))


def test_overlapping_events_share_a_clip_and_later_ones_get_their_own(tmp_path):
    recorder = ClipRecorder(tmp_path, fps=FPS, pre_seconds=0.0, post_seconds=0.5)
    feed(recorder, range(120), {10: ("start", "a"), 12: ("start", "b"), 20: ("stop", "a"), 30: ("stop", "b"),
                                70: ("start", "c"), 80: ("stop", "c")})
    recorder.close()
    assert sorted(p.name for p in tmp_path.glob("*.mp4")) == ["a.mp4", "c.mp4"]
    assert decoded_indices(tmp_path / "a.mp4") == list(range(10, 36))
    assert decoded_indices(tmp_path / "c.mp4") == list(range(70, 86))


def test_a_new_frame_size_ends_the_clip_and_starts_a_new_stream(tmp_path):
    recorder = ClipRecorder(tmp_path, fps=FPS, pre_seconds=0.0, post_seconds=5.0)
    feed(recorder, range(0, 30), {5: ("start", "a")})
    time.sleep(0.3)  # the worker has taken every frame of the first size before the second comes
    feed(recorder, range(30, 60), {40: ("stop", "a"), 45: ("start", "b"), 50: ("stop", "b")}, size=(64, 128))
    recorder.close()
    # a: from the keyframe at or before 5 (frame 0) to where the size changed
    assert decoded_indices(tmp_path / "a.mp4") == list(range(0, 30))
    # b: its own stream began at 30 with a keyframe every 10 frames; 45 - 0 s -> 40, to the end
    assert decoded_indices(tmp_path / "b.mp4") == list(range(40, 60))
    assert recorder.written == 2


def h264_file(path: Path, frames: int, keyframe_every: int) -> Path:
    """An H.264 file as a camera or a recorder writes it: B-frames, a keyframe every so many frames."""
    import av

    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=FPS)
        stream.width, stream.height, stream.pix_fmt = 128, 96, "yuv420p"
        stream.codec_context.gop_size = keyframe_every
        stream.options = {"preset": "medium", "bframes": "3", "sc_threshold": "0"}
        for index in range(frames):
            picture = av.VideoFrame.from_ndarray(frame(index), format="bgr24")
            picture.pts = index
            container.mux(stream.encode(picture))
        container.mux(stream.encode(None))
    return path


def packets(path: Path) -> list[bytes]:
    import av

    with av.open(str(path)) as container:
        return [bytes(p) for p in container.demux(container.streams.video[0]) if p.size]


def play_file(recorder: ClipRecorder, video: Path, events: dict[int, tuple[str, str]], pause: float = 0.002) -> None:
    """The file through the app's own reader (its frame times) into the recorder, events at frame
    indices, then the recorder closed."""
    from edge_app.sources import open_source

    source = open_source(str(video))
    while (picture := source.read()) is not None:
        recorder.push(picture.image, picture.timestamp)
        if picture.index in events:
            action, name = events[picture.index]
            getattr(recorder, action)(name, picture.timestamp)
        time.sleep(pause)
    source.close()
    recorder.close()


def test_clips_of_an_h264_file_copy_its_packets(tmp_path):
    video = h264_file(tmp_path / "camera.mp4", 80, keyframe_every=20)
    clips = tmp_path / "clips"
    recorder = ClipRecorder(clips, fps=FPS, pre_seconds=1.5, post_seconds=0.5, copy_from=video)
    assert recorder.video == "copied from the source"
    play_file(recorder, video, {43: ("start", "a"), 55: ("stop", "a")})
    indices = decoded_indices(clips / "a.mp4")
    # 1.5 s before frame 43 is frame 28; the file's keyframes are frames 0, 20, 40, 60: the clip starts
    # at 20 and goes on to 0.5 s after the stop at 55, ending before a reference frame: no frame missing
    assert indices[0] == 20 and indices == list(range(20, indices[-1] + 1)) and 60 <= indices[-1] <= 64, indices
    copied, original = packets(clips / "a.mp4"), set(packets(video))
    assert copied and all(p in original for p in copied)  # the file's own packets: nothing re-encoded


def test_a_source_file_that_stops_reading_falls_back_to_encoding_and_loses_no_clip(tmp_path):
    """Fault injection: the file's packets stop being readable at 1 s (a damaged recording). The clip
    of an event that begins later is encoded from the frames instead, and is there."""
    video = h264_file(tmp_path / "camera.mp4", 80, keyframe_every=20)
    messages = []
    recorder = ClipRecorder(tmp_path / "clips", fps=FPS, pre_seconds=0.2, post_seconds=0.2, copy_from=video,
                            log=messages.append)
    packets_of_the_file = recorder._encoder.encode

    def damaged(image, frame_time):
        if frame_time >= 1.0:
            raise OSError("Invalid data found when processing input")
        return packets_of_the_file(image, frame_time)

    recorder._encoder.encode = damaged
    play_file(recorder, video, {50: ("start", "late"), 60: ("stop", "late")}, pause=0.004)
    assert any("encoding the frames instead" in m for m in messages), messages
    assert recorder.video == "encoded H.264" and recorder.failed == 0 and recorder.written == 1
    indices = decoded_indices(tmp_path / "clips" / "late.mp4")
    assert indices[0] <= 50 and indices[-1] >= 60 and indices == list(range(indices[0], indices[-1] + 1)), indices


def test_a_file_browsers_cannot_play_is_encoded(tmp_path):
    import cv2

    video = tmp_path / "old.mp4"
    writer = cv2.VideoWriter(str(video), cv2.VideoWriter_fourcc(*"mp4v"), FPS, (128, 96))
    for index in range(20):
        writer.write(frame(index))
    writer.release()
    recorder = ClipRecorder(tmp_path / "clips", fps=FPS, copy_from=video)
    assert recorder.video == "encoded H.264"
    recorder.close()


@pytest.mark.parametrize("preset, subme", [(None, "subme=0"), ("veryfast", "subme=2")])
def test_clips_are_encoded_with_the_video_preset(tmp_path, preset, subme):
    recorder = ClipRecorder(tmp_path, fps=FPS, pre_seconds=0.0, post_seconds=0.0, **({"preset": preset} if preset else {}))
    feed(recorder, range(20), {0: ("start", "a"), 10: ("stop", "a")})
    recorder.close()
    assert subme in x264_settings(tmp_path / "a.mp4").split()  # ultrafast by default: x264's subme=0


def test_a_recording_replaced_before_the_worker_saw_it_is_still_written_whole(tmp_path):
    """The frame loop can run far ahead of the clip thread (a file at 600 FPS): a recording that ended
    and was replaced by the next before the worker reached it keeps its frames and its post-roll."""
    recorder = ClipRecorder(tmp_path, fps=FPS, pre_seconds=0.0, post_seconds=1.0)
    for index in range(60):  # no pause: everything is queued before the worker takes any of it
        recorder.push(frame(index), index / FPS)
        if index in (10, 20, 35, 45):
            action = {10: recorder.start, 20: recorder.stop, 35: recorder.start, 45: recorder.stop}[index]
            action("a" if index < 30 else "b", index / FPS)
    recorder.close()
    assert recorder.stats()["dropped_frames"] == 0
    assert decoded_indices(tmp_path / "a.mp4") == list(range(10, 31))  # to 1 s after its stop at 20
    assert decoded_indices(tmp_path / "b.mp4") == list(range(30, 56))  # from the keyframe at 30


def test_clips_play_in_a_real_browser(tmp_path):
    """A copied clip (B-frames, from a file) and an encoded one, each loaded by chromium's own decoder."""
    from media import browser_dom, headless_browser

    headless_browser()
    video = h264_file(tmp_path / "camera.mp4", 60, keyframe_every=20)
    copied = ClipRecorder(tmp_path / "copied", fps=FPS, pre_seconds=0.0, post_seconds=0.0, copy_from=video)
    encoded = ClipRecorder(tmp_path / "encoded", fps=FPS, pre_seconds=0.0, post_seconds=0.0)
    for recorder in (copied, encoded):
        feed(recorder, range(60), {20: ("start", "a"), 49: ("stop", "a")})
        recorder.close()
    for name in ("copied", "encoded"):
        page = tmp_path / f"{name}.html"
        page.write_text(f"""<video id="v" src="{name}/a.mp4" muted></video><div id="out">pending</div><script>
            const v = document.getElementById('v'), out = document.getElementById('out');
            v.addEventListener('loadeddata', () => out.textContent = 'loaded ' + v.duration + ' ' + v.videoWidth);
            v.addEventListener('error', () => out.textContent = 'error ' + v.error.code);</script>""")
        dom = browser_dom(page.as_uri(), "--allow-file-access-from-files")
        loaded = re.search(r'<div id="out">loaded ([0-9.]+) 128</div>', dom)
        assert loaded, (name, dom[-300:])
        # frames 20-49 at 10 FPS: 3 s; a copy ends after a B-frame group, up to 4 frames more
        assert 3.0 <= float(loaded.group(1)) <= (3.0 if name == "encoded" else 3.4), (name, loaded.group(1))
