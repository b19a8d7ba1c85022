"""The frame spool of a recording: what a worker writes while a session runs, and reads back to
encode the MP4 when it ends.

A spool is a directory holding `frames.bin` (the screencast JPEGs, one after the other) and
`index.jsonl` (one line per frame: milliseconds since the recording's start, offset and length in
frames.bin, the page's URL and title). Both are only ever appended to, so a runner that takes a
session over on the same machine goes on writing the same spool, and a torn last line (a worker
killed mid-write) is skipped on reading.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO


@dataclass(frozen=True)
class SpoolFrame:
    t_ms: int
    jpeg: bytes
    url: str
    title: str


class Spool:
    def __init__(self, path: Path) -> None:
        self.path = path
        self._data: IO[bytes] | None = None
        self._index: IO[str] | None = None
        self.frames = 0
        self.bytes = 0

    @property
    def data_path(self) -> Path:
        return self.path / "frames.bin"

    @property
    def index_path(self) -> Path:
        return self.path / "index.jsonl"

    def append(self, *, t_ms: int, jpeg: bytes, url: str, title: str) -> None:
        if self._data is None or self._index is None:
            self.path.mkdir(parents=True, exist_ok=True)
            self._data = self.data_path.open("ab")
            self._index = self.index_path.open("a", encoding="utf-8")
        offset = self._data.tell()
        self._data.write(jpeg)
        self._data.flush()  # the index never points past the data
        self._index.write(
            json.dumps(
                {"t": int(t_ms), "o": offset, "n": len(jpeg), "u": url[:2000], "ti": title[:300]}, separators=(",", ":")
            )
            + "\n"
        )
        self._index.flush()
        self.frames += 1
        self.bytes += len(jpeg)

    def close(self) -> None:
        for handle in (self._data, self._index):
            if handle is not None:
                handle.close()
        self._data = self._index = None

    def read(self) -> Iterator[SpoolFrame]:
        """The frames in the order they were written (an unreadable line is skipped)."""
        if not self.index_path.exists() or not self.data_path.exists():
            return
        with self.index_path.open(encoding="utf-8") as index, self.data_path.open("rb") as data:
            for line in index:
                try:
                    entry = json.loads(line)
                    t_ms, offset, length = int(entry["t"]), int(entry["o"]), int(entry["n"])
                except (ValueError, KeyError, TypeError):
                    continue
                data.seek(offset)
                jpeg = data.read(length)
                if len(jpeg) != length:
                    continue
                yield SpoolFrame(t_ms=t_ms, jpeg=jpeg, url=str(entry.get("u", "")), title=str(entry.get("ti", "")))

    def remove(self) -> None:
        self.close()
        shutil.rmtree(self.path, ignore_errors=True)
