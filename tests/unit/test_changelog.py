"""The journal's log files: torn tails, segments that roll over and go once folded, and a replay that a checkpointer
overtakes."""

from __future__ import annotations

import logging
import os

from ray_runtime.coordinator.changelog import START, ChangeLog, Position
from ray_runtime.coordinator.journal import SQLiteJournal
from ray_runtime.coordinator.state import CoordinatorState

from .conftest import new_task

T = "acme"


def bodies(log: ChangeLog, start: Position = START) -> list[bytes]:
    return [record.body for record in log.read(start) if record.body is not None]


def test_records_read_back_in_order_across_segments(tmp_path):
    log = ChangeLog(tmp_path / "log", segment_bytes=100)
    written = [os.urandom(30 + i) for i in range(20)]
    for body in written:
        log.append(body)
    assert len(log.segments()) > 5  # it rolled over
    assert bodies(log) == written
    middle = [r for r in log.read(START) if r.body is not None][7].end
    assert bodies(log, middle) == written[8:]  # from any position a record ended at


def test_a_torn_tail_is_skipped_and_a_new_writer_starts_a_new_segment(tmp_path, caplog):
    directory = tmp_path / "log"
    log = ChangeLog(directory)
    log.append(b"one")
    log.append(b"two")
    log.close()
    [segment] = log.segments()
    path = directory / f"{segment:020d}.log"
    with open(path, "ab") as file:  # a writer killed halfway through a record
        file.write(b"\x40\x00\x00\x00\x01\x02\x03\x04half a rec")
    assert bodies(log) == [b"one", b"two"]
    again = ChangeLog(directory)
    again.append(b"three")
    assert again.segments() == [segment, segment + 1]  # never after a tail it did not write
    with caplog.at_level(logging.WARNING):
        assert bodies(again) == [b"one", b"two", b"three"]
    assert "unreadable bytes" in caplog.text


def test_a_record_whose_bytes_changed_ends_the_segment_there(tmp_path):
    log = ChangeLog(tmp_path / "log")
    for body in (b"first", b"second", b"third"):
        log.append(body)
    [segment] = log.segments()
    path = tmp_path / "log" / f"{segment:020d}.log"
    data = bytearray(path.read_bytes())
    data[8 + 5 + 8] ^= 0xFF  # a byte of the second record's body
    path.write_bytes(bytes(data))
    assert bodies(log) == [b"first"]  # the CRC refuses it: nothing after it is trusted


def test_checkpoints_delete_the_segments_they_folded_and_replay_stays_whole(tmp_path, limits, clock):
    journal = SQLiteJournal(tmp_path / "j.sqlite3")
    journal.log.segment_bytes = 500
    state = CoordinatorState(limits, clock=clock)
    for i in range(40):
        state.tasks.enqueue(T, "q", [new_task(i)])
        journal.write(state.take_changes())
    assert len(journal.log.segments()) > 5
    assert journal.checkpoint(max_change_sets=1_000) == 40
    assert len(journal.log.segments()) == 1  # the one still written to stays
    assert journal.backlog == 0
    journal.close()
    reopened = SQLiteJournal(tmp_path / "j.sqlite3")
    assert len(reopened.load().tasks) == 40


def test_a_replay_overtaken_by_a_checkpoint_reads_again(tmp_path, limits, clock):
    """The checkpointer of a coordinator on its way out folds and deletes segments while a new one replays."""
    path = tmp_path / "j.sqlite3"
    writer = SQLiteJournal(path)
    writer.log.segment_bytes = 1_000
    state = CoordinatorState(limits, clock=clock)
    for i in range(30):
        state.tasks.enqueue(T, "q", [new_task(i)])
        writer.write(state.take_changes())
    replaying, checkpointer = SQLiteJournal(path), SQLiteJournal(path)
    reads = []
    read = replaying.log.read

    def read_overtaken(start: Position):
        reads.append(start)
        for n, record in enumerate(read(start)):
            yield record
            if n == 0 and len(reads) == 1:  # the first read, one record in: everything folded, segments deleted
                checkpointer.checkpoint(max_change_sets=1_000)

    replaying.log.read = read_overtaken
    replay = replaying.load()
    assert len(reads) == 2 and reads[1] > reads[0]  # it noticed and read again from the new position
    assert sorted(t.input for t in replay.tasks) == sorted(new_task(i).input for i in range(30))


_FULL_DISK = """
import json, resource, signal, sys
from pathlib import Path
from ray_runtime.coordinator.changelog import START, ChangeLog

signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # a write past the limit fails instead of killing the process
log = ChangeLog(Path(sys.argv[1]))
_, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
resource.setrlimit(resource.RLIMIT_FSIZE, (10_000, hard))  # the disk is full at 10 kB
acknowledged, refused = [], 0
for i in range(20):
    body = bytes([i]) * 1_500
    try:
        log.append(body)
        acknowledged.append(i)
    except OSError:
        refused += 1
        break
resource.setrlimit(resource.RLIMIT_FSIZE, (hard, hard))  # room again
log.append(bytes([99]) * 1_500)
acknowledged.append(99)
read = [r.body[0] for r in log.read(START) if r.body is not None]
print(json.dumps({"acknowledged": acknowledged, "refused": refused, "read": read, "segments": len(log.segments())}))
"""


def test_a_write_the_disk_refuses_is_an_error_and_the_next_append_begins_a_new_segment(tmp_path):
    import json
    import subprocess
    import sys

    out = subprocess.run(
        [sys.executable, "-c", _FULL_DISK, str(tmp_path / "log")], capture_output=True, text=True, check=True
    ).stdout
    outcome = json.loads(out)
    assert outcome["refused"] == 1  # the record cut short by the full disk was refused, not acknowledged
    assert outcome["read"] == outcome["acknowledged"]  # every acknowledged record, the one after the refusal too
    assert outcome["segments"] == 2
