"""One video frame of a session: the 155 px browser chrome drawn above the page.

The live stream (WHEP) and the recordings both show the 1024x600 window of the contract (seed 002,
spec decision 6): a title tab, the URL bar and a status line drawn like the embeddable viewer
draws them (static/viewer/viewer.css), and the screencast JPEG of the 1024x445 page below. Only the
page's URL and title are drawn: what the page itself shows (password fields masked by the
browser) and nothing from the secret vault.
"""

from __future__ import annotations

import functools

import av
from PIL import Image, ImageDraw, ImageFont

WIDTH, HEIGHT, CHROME = 1024, 600, 155
PAGE_HEIGHT = HEIGHT - CHROME

_FRAME_BG = (0xDE, 0xE1, 0xE6)
_WHITE = (0xFF, 0xFF, 0xFF)
_TEXT = (0x20, 0x21, 0x24)
_MUTED = (0x5F, 0x63, 0x68)
_URLBAR = (0xF1, 0xF3, 0xF4)
_STATUS_BG = (0xF8, 0xF9, 0xFA)
_BORDER = (0xDA, 0xDC, 0xE0)
_FAVICON = (0x9A, 0xA0, 0xA6)
_GREEN = (0x18, 0x80, 0x38)
_RED = (0xB3, 0x26, 0x1E)


@functools.lru_cache(maxsize=2)
def _font(size: int) -> ImageFont.FreeTypeFont | ImageFont.ImageFont:
    return ImageFont.load_default(size=size)


def _fit(draw: ImageDraw.ImageDraw, text: str, font: ImageFont.FreeTypeFont | ImageFont.ImageFont, width: int) -> str:
    """`text` cut with an ellipsis so that it fits in `width` pixels."""
    text = " ".join(text.split())
    if draw.textlength(text, font=font) <= width:
        return text
    low, high = 0, len(text)
    while low < high:
        middle = (low + high + 1) // 2
        if draw.textlength(text[:middle] + "…", font=font) <= width:
            low = middle
        else:
            high = middle - 1
    return text[:low] + "…"


@functools.lru_cache(maxsize=64)
def chrome_image(url: str, title: str, status: str = "Live") -> Image.Image:
    """The 1024x155 chrome for a page (cached: it changes only when the page does)."""
    image = Image.new("RGB", (WIDTH, CHROME), _FRAME_BG)
    draw = ImageDraw.Draw(image)
    font = _font(13)
    # Tab row (42 px): one tab with a favicon and the title.
    draw.rounded_rectangle((8, 8, 248, 48), radius=8, fill=_WHITE)
    draw.ellipse((20, 18, 34, 32), fill=_FAVICON)
    draw.text((42, 25), _fit(draw, title or url or "New tab", font, 196), font=font, fill=_TEXT, anchor="lm")
    # Toolbar (48 px): back, forward, reload, and the URL bar.
    draw.rectangle((0, 42, WIDTH, 89), fill=_WHITE)
    for x in (24, 58):
        direction = -1 if x == 24 else 1
        draw.line((x - 6 * direction, 66, x + 6 * direction, 66), fill=_MUTED, width=2)
        draw.line((x + 6 * direction, 66, x + 1 * direction, 61), fill=_MUTED, width=2)
        draw.line((x + 6 * direction, 66, x + 1 * direction, 71), fill=_MUTED, width=2)
    draw.arc((86, 59, 100, 73), start=40, end=330, fill=_MUTED, width=2)
    draw.rounded_rectangle((112, 50, WIDTH - 10, 82), radius=16, fill=_URLBAR)
    draw.rectangle((128, 64, 136, 71), fill=_MUTED)
    draw.arc((129, 59, 135, 67), start=180, end=360, fill=_MUTED, width=2)
    draw.text((146, 66), _fit(draw, url or "about:blank", font, WIDTH - 180), font=font, fill=_TEXT, anchor="lm")
    # Status line (65 px).
    draw.rectangle((0, 90, WIDTH, CHROME), fill=_STATUS_BG)
    draw.line((0, 90, WIDTH, 90), fill=_BORDER)
    draw.text((14, 122), status, font=font, fill=_GREEN if status == "Live" else _RED, anchor="lm")
    return image


@functools.lru_cache(maxsize=64)
def _chrome_planes(url: str, title: str, status: str) -> tuple[bytes, bytes, bytes]:
    """The chrome in yuv420p: 155 rows of luma, 78 rows of chroma (the last one is shared with
    the page's first row; an odd chrome height cannot be split on a chroma row)."""
    image = Image.new("RGB", (WIDTH, CHROME + 1))
    image.paste(chrome_image(url, title, status), (0, 0))
    image.paste(image.crop((0, CHROME - 1, WIDTH, CHROME)), (0, CHROME))
    frame = av.VideoFrame.from_image(image).reformat(format="yuv420p")
    y, u, v = (bytes(plane) for plane in frame.planes)
    return y[: WIDTH * CHROME], u, v


class FrameError(ValueError):
    """A screencast frame that does not decode."""


class FrameComposer:
    """Turns screencast JPEGs into 1024x600 yuv420p frames: the page decoded straight to YUV
    (no RGB round trip: a frame costs about 2.5 ms of CPU) and stacked under the cached chrome.
    Not thread-safe: one composer per pipeline."""

    def __init__(self) -> None:
        self._decoder = av.CodecContext.create("mjpeg", "r")
        self._blank: av.VideoFrame | None = None

    def _page(self, jpeg: bytes | None) -> av.VideoFrame:
        if not jpeg:
            if self._blank is None:
                self._blank = av.VideoFrame.from_image(Image.new("RGB", (WIDTH, PAGE_HEIGHT), _WHITE)).reformat(
                    format="yuv420p"
                )
            return self._blank
        try:
            decoded = self._decoder.decode(av.Packet(jpeg))
        except av.FFmpegError as exc:
            raise FrameError(str(exc)) from exc
        if not decoded:
            raise FrameError("no picture in the JPEG")
        page = decoded[0]
        # JPEGs are full range; H.264 players expect limited range (and the chrome is).
        full = page.format.name.startswith("yuvj")
        return page.reformat(
            width=WIDTH,
            height=PAGE_HEIGHT,
            format="yuv420p",
            src_color_range="JPEG" if full else None,
            dst_color_range="MPEG" if full else None,
        )

    def frame(self, jpeg: bytes | None, *, url: str, title: str, status: str = "Live") -> av.VideoFrame:
        """The window for one screencast JPEG (None: a blank page). Raises FrameError."""
        page = self._page(jpeg)
        chrome_y, chrome_u, chrome_v = _chrome_planes(url, title, status)
        page_y, page_u, page_v = (bytes(plane) for plane in page.planes)
        chroma_width, chroma_rows = WIDTH // 2, HEIGHT // 2 - (CHROME + 1) // 2
        out = av.VideoFrame(WIDTH, HEIGHT, "yuv420p")
        out.planes[0].update(chrome_y + page_y[: WIDTH * PAGE_HEIGHT])
        out.planes[1].update(chrome_u + page_u[: chroma_width * chroma_rows])
        out.planes[2].update(chrome_v + page_v[: chroma_width * chroma_rows])
        return out
