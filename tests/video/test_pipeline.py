"""The frame pipeline on its own (no server): chrome drawing, the spool and the MP4 encoder."""

from __future__ import annotations

import io
import json
import shutil
import subprocess
from pathlib import Path

import pytest
from PIL import Image, ImageDraw

from video.compose import CHROME, HEIGHT, WIDTH, FrameComposer, FrameError
from video.mp4 import encode_mp4
from video.spool import Spool


def _jpeg(color: tuple[int, int, int], size: tuple[int, int] = (WIDTH, HEIGHT - CHROME)) -> bytes:
    image = Image.new("RGB", size, (255, 255, 255))
    ImageDraw.Draw(image).rectangle((100, 100, 400, 300), fill=color)
    buffer = io.BytesIO()
    image.save(buffer, "JPEG", quality=80)
    return buffer.getvalue()


def _ffprobe(path: Path) -> dict:
    ffprobe = shutil.which("ffprobe")
    if ffprobe is None:
        pytest.fail("ffprobe (Debian's ffmpeg, installed by scripts/install.sh) is needed")
    done = subprocess.run(
        [ffprobe, "-v", "error", "-print_format", "json", "-show_streams", "-show_format", "-count_frames", str(path)],
        capture_output=True,
        text=True,
        check=True,
    )
    return json.loads(done.stdout)


def test_window_frame_is_1024x600_with_the_chrome_above_the_page() -> None:
    frame = FrameComposer().frame(_jpeg((255, 0, 0)), url="https://example.com/a", title="Example")
    assert (frame.width, frame.height, frame.format.name) == (WIDTH, HEIGHT, "yuv420p")
    image = frame.to_image()
    # The page is below the chrome: its red box at page (100..400, 100..300) is at y + 155.
    red = image.getpixel((250, CHROME + 200))
    assert red[0] > 200 and red[1] < 60 and red[2] < 60, red
    assert image.getpixel((250, 50)) != red  # the red box is not drawn over the chrome
    # The chrome's URL bar (#f1f3f4) and the page's white background.
    assert all(abs(a - b) < 8 for a, b in zip(image.getpixel((900, 66)), (0xF1, 0xF3, 0xF4), strict=True))
    assert all(c > 245 for c in image.getpixel((900, CHROME + 400)))


def test_chrome_shows_the_url_and_title_and_changes_with_them() -> None:
    composer = FrameComposer()
    page = _jpeg((0, 0, 255))
    one = composer.frame(page, url="https://example.com/one", title="One").to_image()
    two = composer.frame(page, url="https://example.com/a-much-longer-path/two", title="Two").to_image()
    url_bar = (146, 56, 700, 76)
    tab = (42, 15, 240, 35)
    assert one.crop(url_bar).tobytes() != two.crop(url_bar).tobytes()
    assert one.crop(tab).tobytes() != two.crop(tab).tobytes()
    assert one.crop((0, CHROME, WIDTH, HEIGHT)).tobytes() == two.crop((0, CHROME, WIDTH, HEIGHT)).tobytes()


def test_a_frame_of_another_size_is_fitted_and_a_broken_one_refused() -> None:
    composer = FrameComposer()
    frame = composer.frame(_jpeg((0, 255, 0), size=(800, 300)), url="u", title="t")
    assert (frame.width, frame.height) == (WIDTH, HEIGHT)
    with pytest.raises(FrameError):
        composer.frame(b"not a jpeg", url="u", title="t")


def test_spool_reads_back_what_was_written_and_skips_a_torn_line(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "s")
    spool.append(t_ms=0, jpeg=b"a" * 10, url="u1", title="t1")
    spool.append(t_ms=500, jpeg=b"b" * 20, url="u2", title="t2")
    spool.close()
    with (tmp_path / "s" / "index.jsonl").open("a") as index:
        index.write('{"t": 900, "o"')  # a worker killed mid-write
    again = Spool(tmp_path / "s")  # a runner that took the session over appends
    again.append(t_ms=1000, jpeg=b"c" * 5, url="u3", title="t3")
    again.close()
    frames = list(Spool(tmp_path / "s").read())
    assert [(f.t_ms, f.jpeg, f.url) for f in frames] == [(0, b"a" * 10, "u1"), (500, b"b" * 20, "u2")]


def test_mp4_is_h264_1024x600_and_lasts_until_the_end(tmp_path: Path) -> None:
    spool = Spool(tmp_path / "spool")
    for i, t_ms in enumerate((700, 1200, 1300, 5000)):
        spool.append(t_ms=t_ms, jpeg=_jpeg((40 * i, 0, 200)), url=f"https://example.com/{i}", title=f"Page {i}")
    spool.close()
    out = tmp_path / "out.mp4"
    result = encode_mp4(spool.read(), end_ms=12_000, path=out)
    probe = _ffprobe(out)
    video = probe["streams"][0]
    assert (video["codec_name"], video["width"], video["height"]) == ("h264", 1024, 600)
    assert abs(float(probe["format"]["duration"]) - 12.0) < 0.5, probe["format"]
    # The first frame is also shown from 0, the last one again at the end.
    assert int(video["nb_read_frames"]) == result.frames == 6
    assert result.size_bytes == out.stat().st_size


def test_mp4_of_a_page_that_never_painted_is_one_blank_frame_held(tmp_path: Path) -> None:
    out = tmp_path / "blank.mp4"
    encode_mp4([], end_ms=3000, path=out)
    probe = _ffprobe(out)
    assert abs(float(probe["format"]["duration"]) - 3.0) < 0.5
