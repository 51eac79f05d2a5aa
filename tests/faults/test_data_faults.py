"""Datasets and image files that make no sense: VOC objects without a class or with impossible boxes,
empty class folders, 16-bit, broken and oversized images in a folder of frames."""
import cv2
import numpy as np
import pytest

from test_folders import _voc
from training.data.folders import image_folder, voc_directory


@pytest.mark.parametrize("obj, message", [
    ("<object><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>", "has no <name>"),
    ("<object><name>three</name><bndbox><xmin>9</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>",
     "xmax < xmin"),
    ("<object><name>three</name><bndbox><xmin>1</xmin><ymin>1</ymin><xmax>90</xmax><ymax>5</ymax></bndbox></object>",
     "outside the 64x64 image"),
    ("<object><name>three</name><bndbox><xmin>a</xmin><ymin>1</ymin><xmax>5</xmax><ymax>5</ymax></bndbox></object>",
     "without numeric"),
])
def test_voc_annotations_that_make_no_sense_are_refused_with_the_file_named(tmp_path, obj, message):
    _voc(tmp_path / "voc", 4)
    bad = tmp_path / "voc" / "Annotations" / "0001.xml"
    bad.write_text(f"<annotation><filename>0001.png</filename><size><width>64</width><height>64</height></size>"
                   f"{obj}</annotation>")
    with pytest.raises(ValueError, match=message) as error:
        voc_directory(tmp_path / "voc", (64, 64))
    assert "0001.xml" in str(error.value)


def test_an_empty_class_folder_is_refused_not_trained(tmp_path):
    for name, count in (("bird", 2), ("cat", 0)):
        (tmp_path / name).mkdir()
        for i in range(count):
            cv2.imwrite(str(tmp_path / name / f"{i}.png"), np.zeros((8, 8, 3), np.uint8))
    with pytest.raises(ValueError, match="'cat' holds no images"):
        image_folder(tmp_path, (32, 32))



def test_read_image_says_what_is_wrong_with_each_file(tmp_path):
    from runtime.errors import NotFoundError
    from runtime.images import ImageReadError, read_image

    (tmp_path / "empty.png").write_bytes(b"")
    (tmp_path / "text.jpg").write_text("not an image")
    cv2.imwrite(str(tmp_path / "deep.png"), np.full((8, 8), 0xABCD, np.uint16))
    cv2.imwrite(str(tmp_path / "rgba.png"), np.full((8, 8, 4), 200, np.uint8))
    with pytest.raises(NotFoundError, match="no such image file"):
        read_image(tmp_path / "missing.png")
    with pytest.raises(ImageReadError, match="the file is empty"):
        read_image(tmp_path / "empty.png")
    with pytest.raises(ImageReadError, match="not a readable image"):
        read_image(tmp_path / "text.jpg")
    deep = read_image(tmp_path / "deep.png", "unchanged")
    assert deep.dtype == np.uint8 and deep.shape == (8, 8) and int(deep[0, 0]) == 0xAB  # the high byte, as OpenCV does
    assert read_image(tmp_path / "rgba.png", "unchanged").shape == (8, 8, 3)  # alpha is not part of the scene


@pytest.mark.parametrize("suffix", [".png", ".jpg", ".bmp"])
def test_the_size_cap_is_read_from_the_header_before_decoding(tmp_path, suffix):
    from runtime.images import MAX_IMAGE_PIXELS, image_size, read_image

    side = int(MAX_IMAGE_PIXELS ** 0.5) + 8
    huge = tmp_path / f"huge{suffix}"
    assert suffix == ".bmp" or cv2.imwrite(str(huge), np.zeros((side + 4, side), np.uint8))
    if suffix == ".bmp":  # a BMP that large is 50 MB of zeros: its header alone stands for it
        import struct

        huge.write_bytes(b"BM" + b"\0" * 16 + struct.pack("<ii", side * 2, -side) + b"\0" * 28)
        assert image_size(huge) == (side * 2, side)
        with pytest.raises(Exception, match="pixels is more than"):
            read_image(huge)
        return
    assert image_size(huge) == (side, side + 4)  # (width, height)
    small = tmp_path / f"small{suffix}"
    cv2.imwrite(str(small), np.zeros((30, 40), np.uint8))
    assert image_size(small) == (40, 30)
    with pytest.raises(Exception, match=f"{side}x{side + 4} pixels is more than"):
        read_image(huge)


def test_a_folder_of_frames_with_bad_files_skips_them_and_says_so_once(tmp_path, capsys):
    from edge_app.sources import SourceError, open_source

    for i in range(3):
        cv2.imwrite(str(tmp_path / f"{i}.png"), np.full((16, 16, 3), 40 * i, np.uint8))
    (tmp_path / "1a.jpg").write_text("broken")
    (tmp_path / "1b.png").write_bytes(b"")
    (tmp_path / ".hidden.png").write_bytes(b"a macOS resource fork, not a frame")
    source = open_source(str(tmp_path))
    frames = []
    while (frame := source.read()) is not None:
        frames.append(frame)
    assert len(frames) == 3 and source.stats.bad == 2
    err = capsys.readouterr().err
    assert err.count("skipping unreadable images") == 1 and "1a.jpg" in err
    for bad in ("0.png", "2.png"):  # a folder of which nothing can be read is bad input, not a finished run
        (tmp_path / bad).write_bytes(b"")
    (tmp_path / "1.png").write_bytes(b"")
    source = open_source(str(tmp_path))
    with pytest.raises(SourceError, match="none of the 5 images could be read; first: .*0.png"):
        source.read()
    with pytest.raises(SourceError, match="the file is empty"):
        open_source(str(tmp_path / "1.png")).read()
