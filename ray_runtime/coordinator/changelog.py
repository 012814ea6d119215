"""The journal's log: change sets appended to plain files, one record after another.

An append is one ``write`` of a framed record (length, CRC-32, body) to the newest segment file: no lock shared with
anyone, no page writes, no index. The coordinator is the only writer; the checkpointer process reads behind it,
folds what it read into the snapshot database and deletes the segments it has folded.

* A record is there once ``write`` returns (the kernel holds it: a kill of the process keeps it); with
  ``sync=True`` it is also on the disk (``fsync``), so power loss keeps it too.
* A writer cut off mid-record leaves a torn tail: the CRC tells, readers stop there, and it was never acknowledged.
  A new writer never appends after a tail it did not write: it starts a new segment.
* A segment is closed once a later one exists; a reader that sees a later segment before it reads an earlier one
  to its end has read all of it.

Segments are named by a number that only grows: ``<dir>/<number>.log``.
"""

from __future__ import annotations

import contextlib
import logging
import os
import struct
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import BinaryIO, NamedTuple

__all__ = ["START", "ChangeLog", "Position", "Record"]

logger = logging.getLogger(__name__)

SEGMENT_BYTES = 64 << 20  # a segment is closed and a new one begun past this size
_HEADER = struct.Struct("<II")  # body length, CRC-32 of the body
_SUFFIX = ".log"


class Position(NamedTuple):
    """A place in the log: a segment and a byte offset in it."""

    segment: int
    offset: int

    def __str__(self) -> str:
        return f"{self.segment}:{self.offset}"

    @classmethod
    def parse(cls, text: str) -> Position:
        segment, offset = text.split(":")
        return cls(int(segment), int(offset))


START = Position(0, 0)
"""Where a log begins: before every segment."""


class Record(NamedTuple):
    """One change set as the log holds it, and where the log continues after it."""

    body: bytes | None  # None: the end of a closed segment, and the reader moves on to the next
    end: Position


class ChangeLog:
    """Segment files of framed records in a directory: append at the end, read from any position."""

    def __init__(
        self, directory: Path, *, sync: bool = False, segment_bytes: int = SEGMENT_BYTES, after: int = 0
    ) -> None:
        """
        Args:
            directory: Where the segments are.
            sync: Whether an append also waits for the disk (``fsync``).
            segment_bytes: The size past which an append begins a new segment.
            after: A segment number new segments must come after (the folded position's: readers start there).
        """
        self.directory = directory
        self.after = after
        self.sync = sync
        self.segment_bytes = segment_bytes
        self._fd: int | None = None  # the segment this process appends to, opened at its first append
        self._size = 0

    # --------------------------------------------------------------------------------------------- writing

    def append(self, body: bytes) -> None:
        """Add one record; returns once it survives a kill of this process (with ``sync``, power loss too)."""
        if self._fd is None or self._size >= self.segment_bytes:
            self._begin_segment()
        record = _HEADER.pack(len(body), zlib.crc32(body)) + body
        try:
            written = os.write(self._fd, record)  # type: ignore[arg-type]
            if written != len(record):  # a full disk
                raise OSError(f"log segment short write ({written} of {len(record)} bytes): is the disk full?")
        except OSError:
            self.close()  # what went in is a torn tail that readers stop at: the next append begins a new segment
            raise
        self._size += written
        if self.sync:
            os.fdatasync(self._fd)  # type: ignore[arg-type]

    def _begin_segment(self) -> None:
        """Close the current segment (if any) and start the next number: never append after another's tail."""
        self.directory.mkdir(parents=True, exist_ok=True)
        number = max([self.after, *self.segments()]) + 1
        fd = os.open(self._path(number), os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_APPEND)
        if self.sync:
            _sync_directory(self.directory)
        if self._fd is not None:
            os.close(self._fd)
        self._fd, self._size = fd, 0

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    # --------------------------------------------------------------------------------------------- reading

    def segments(self) -> list[int]:
        """The numbers of the segments present, oldest first."""
        with contextlib.suppress(FileNotFoundError):
            return sorted(int(p.name[: -len(_SUFFIX)]) for p in self.directory.iterdir() if p.name.endswith(_SUFFIX))
        return []

    def read(self, start: Position) -> Iterator[Record]:
        """Every whole record from ``start`` on, across segments, in order, up to the end of what is readable.

        When a segment is closed and read to its end, a record without a body moves the position to the next one.
        """
        files: list[tuple[int, BinaryIO]] = []
        try:
            for number in self.segments():  # open them all first: a segment deleted after this stays readable
                if number >= start.segment:
                    with contextlib.suppress(FileNotFoundError):
                        files.append((number, open(self._path(number), "rb")))  # noqa: SIM115 (closed below)
            for index, (number, file) in enumerate(files):
                end = start.offset if number == start.segment else 0
                for record in _records(number, file, end):
                    end = record.end.offset
                    yield record
                if index + 1 < len(files):  # a later segment existed before this one was read: it was closed
                    _report_torn_tail(number, file, end)
                    yield Record(None, Position(files[index + 1][0], 0))
        finally:
            for _, file in files:
                file.close()

    def unread_bytes(self, start: Position) -> int:
        """How many bytes of log lie after ``start`` (what a replay would read)."""
        total = 0
        for number in self.segments():
            if number >= start.segment:
                with contextlib.suppress(FileNotFoundError):
                    size = self._path(number).stat().st_size
                    total += size - start.offset if number == start.segment else size
        return max(0, total)

    def drop_before(self, segment: int) -> None:
        """Delete the segments numbered below ``segment`` (folded into the snapshot)."""
        for number in self.segments():
            if number < segment:
                with contextlib.suppress(FileNotFoundError):
                    self._path(number).unlink()

    def _path(self, number: int) -> Path:
        return self.directory / f"{number:020d}{_SUFFIX}"


def _records(number: int, file: BinaryIO, offset: int) -> Iterator[Record]:
    """The whole records of one segment from ``offset``, up to its end or its torn tail."""
    file.seek(offset)
    while True:
        header = file.read(_HEADER.size)
        if len(header) < _HEADER.size:
            break
        length, crc = _HEADER.unpack(header)
        body = file.read(length)
        if len(body) < length or zlib.crc32(body) != crc:
            break
        offset += _HEADER.size + length
        yield Record(body, Position(number, offset))


def _report_torn_tail(number: int, file: BinaryIO, end: int) -> None:
    """Say so when a closed segment ends with bytes that are no whole record (a write cut off by a crash)."""
    left = os.fstat(file.fileno()).st_size - end
    if left > 0:
        logger.warning("log segment %d ends with %d unreadable bytes (a write cut off by a crash)", number, left)


def _sync_directory(directory: Path) -> None:
    fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
