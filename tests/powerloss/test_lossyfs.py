"""lossyfs's durability model, through a real mount: what a power cut keeps and what it throws away.

Each test writes through the mount, cuts the power (the backing directory is rolled back to its durable
state) and looks at the backing directory, or mounts it again.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from tests.powerloss.mount import LossyMount


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def write(path: Path, data: bytes, *, sync: bool, mode: str = "wb") -> None:
    with open(path, mode) as fh:
        fh.write(data)
        fh.flush()
        if sync:
            os.fsync(fh.fileno())


def tree(root: Path) -> dict[str, bytes | None]:
    """Every path under root: a file's bytes, None for a directory."""
    return {p.relative_to(root).as_posix(): (None if p.is_dir() else p.read_bytes()) for p in sorted(root.rglob("*"))}


def test_unsynced_write_is_lost_but_a_synced_directory_keeps_the_name(lossy: LossyMount) -> None:
    write(lossy.mnt / "f", b"hello", sync=False)
    fsync_dir(lossy.mnt)
    report = lossy.power_cut()
    assert report["unsynced_blocks"] == 1 and report["unsynced_entries"] == 0
    assert tree(lossy.backing) == {"f": b""}  # the name is durable, not a byte of its data


def test_fsynced_file_without_a_directory_fsync_is_gone(lossy: LossyMount) -> None:
    write(lossy.mnt / "f", b"hello", sync=True)  # fsync(2) of a file does not promise its name
    report = lossy.power_cut()
    assert report["unsynced_entries"] == 1
    assert tree(lossy.backing) == {}


def test_file_and_directory_fsync_keep_everything(lossy: LossyMount) -> None:
    data = os.urandom(3 * 4096 + 100)
    write(lossy.mnt / "f", data, sync=True)
    fsync_dir(lossy.mnt)
    report = lossy.power_cut()
    keys = ("fsyncs", "dir_fsyncs", "unsynced_blocks", "unsynced_entries")
    assert [report[k] for k in keys] == [1, 1, 0, 0]
    assert tree(lossy.backing) == {"f": data}


def test_existing_files_are_durable_and_unsynced_changes_roll_back(tmp_path: Path) -> None:
    from tests.powerloss.mount import require_fuse

    require_fuse()
    m = LossyMount(tmp_path / "fs")
    old = os.urandom(5 * 4096)
    (m.backing / "f").write_bytes(old)
    (m.backing / "gone").write_bytes(b"keep me")
    m.mount()
    try:
        with open(m.mnt / "f", "r+b") as fh:  # overwrite a middle block and append, no fsync
            fh.seek(4096 + 10)
            fh.write(b"X" * 100)
            fh.seek(0, os.SEEK_END)
            fh.write(b"tail")
        os.unlink(m.mnt / "gone")
        assert (m.mnt / "f").read_bytes() != old  # the live view has the change
    finally:
        report = m.power_cut()
    assert report["unsynced_blocks"] == 2 and report["unsynced_entries"] == 1
    assert tree(m.backing) == {"f": old, "gone": b"keep me"}


def test_truncate_without_fsync_rolls_back_and_with_fsync_sticks(lossy: LossyMount) -> None:
    data = os.urandom(3 * 4096)
    write(lossy.mnt / "a", data, sync=True)
    write(lossy.mnt / "b", data, sync=True)
    fsync_dir(lossy.mnt)
    os.truncate(lossy.mnt / "a", 100)
    with open(lossy.mnt / "b", "r+b") as fh:
        fh.truncate(100)
        os.fsync(fh.fileno())
    write(lossy.mnt / "a", b"more", sync=False, mode="ab")  # regrow after the shrink, still unsynced
    lossy.power_cut()
    assert tree(lossy.backing) == {"a": data, "b": data[:100]}


def test_partial_fsync_keeps_only_synced_blocks(lossy: LossyMount) -> None:
    write(lossy.mnt / "f", b"a" * 8192, sync=True)
    fsync_dir(lossy.mnt)
    with open(lossy.mnt / "f", "r+b") as fh:
        fh.write(b"b" * 4096)
        fh.flush()
        os.fdatasync(fh.fileno())  # fdatasync counts like fsync for data and size
        fh.write(b"c" * 4096)
    lossy.power_cut()
    assert tree(lossy.backing) == {"f": b"b" * 4096 + b"a" * 4096}


@pytest.mark.parametrize("sync_dir", [False, True])
def test_atomic_replace_needs_the_directory_fsync(lossy: LossyMount, sync_dir: bool) -> None:
    write(lossy.mnt / "cfg", b"old", sync=True)
    fsync_dir(lossy.mnt)
    write(lossy.mnt / ".cfg.tmp", b"new", sync=True)
    os.replace(lossy.mnt / ".cfg.tmp", lossy.mnt / "cfg")
    if sync_dir:
        fsync_dir(lossy.mnt)
    lossy.power_cut()
    assert tree(lossy.backing) == ({"cfg": b"new"} if sync_dir else {"cfg": b"old"})


def test_rename_across_directories_is_durable_per_directory(lossy: LossyMount) -> None:
    (lossy.mnt / "a").mkdir()
    (lossy.mnt / "b").mkdir()
    fsync_dir(lossy.mnt)
    write(lossy.mnt / "a" / "f", b"data", sync=True)
    fsync_dir(lossy.mnt / "a")
    os.rename(lossy.mnt / "a" / "f", lossy.mnt / "b" / "g")
    fsync_dir(lossy.mnt / "b")  # only the target: the source still holds its old name
    lossy.power_cut()
    assert tree(lossy.backing) == {"a": None, "a/f": b"data", "b": None, "b/g": b"data"}


def test_new_directory_needs_its_parent_fsynced(lossy: LossyMount) -> None:
    (lossy.mnt / "d" / "e").mkdir(parents=True)
    write(lossy.mnt / "d" / "e" / "f", b"x", sync=True)
    fsync_dir(lossy.mnt / "d" / "e")
    fsync_dir(lossy.mnt / "d")  # the root never learns of d
    lossy.power_cut()
    assert tree(lossy.backing) == {}


def test_removed_tree_comes_back_without_directory_fsyncs(lossy: LossyMount) -> None:
    (lossy.mnt / "d").mkdir()
    write(lossy.mnt / "d" / "f", b"x", sync=True)
    fsync_dir(lossy.mnt / "d")
    fsync_dir(lossy.mnt)
    os.unlink(lossy.mnt / "d" / "f")
    os.rmdir(lossy.mnt / "d")
    lossy.power_cut()
    assert tree(lossy.backing) == {"d": None, "d/f": b"x"}


def test_an_open_unlinked_file_keeps_working_until_the_cut(lossy: LossyMount) -> None:
    with open(lossy.mnt / "f", "w+b") as fh:
        os.unlink(lossy.mnt / "f")
        fh.write(b"abc")
        fh.flush()
        fh.truncate(2)
        os.fsync(fh.fileno())
        fh.seek(0)
        assert fh.read() == b"ab"
    assert os.listdir(lossy.mnt) == []
    lossy.power_cut()
    assert tree(lossy.backing) == {}


def test_operations_after_the_cut_fail(lossy: LossyMount) -> None:
    write(lossy.mnt / "f", b"x", sync=True)
    fd = os.open(lossy.mnt / "f", os.O_RDWR)
    try:
        lossy._command("cut")  # cut, but keep the mount: a late write must not reach the backing
        with pytest.raises(OSError):
            os.pwrite(fd, b"late", 0)
        with pytest.raises(OSError):
            os.fsync(fd)
    finally:
        with contextlib.suppress(OSError):  # the flush at close fails too
            os.close(fd)
        lossy.unmount()
    assert tree(lossy.backing) == {}


SQLITE_WRITER = """
import sqlite3, sys, time
conn = sqlite3.connect(sys.argv[1], isolation_level=None)
conn.execute("PRAGMA journal_mode=WAL")
conn.execute("PRAGMA synchronous=FULL")
conn.execute("CREATE TABLE t (x INTEGER)")
conn.executemany("INSERT INTO t VALUES (?)", [(i,) for i in range(100)])
conn.execute("PRAGMA synchronous=OFF")  # this commit is never fsynced: the cut must drop it
conn.execute("INSERT INTO t VALUES (1000)")
print("committed", flush=True)
time.sleep(60)
"""


def test_sqlite_wal_commits_survive_and_unsynced_ones_do_not(lossy: LossyMount) -> None:
    """SQLite runs on the mount (its locks and the mapped -shm), and synchronous=FULL commits survive."""
    writer = subprocess.Popen(
        [sys.executable, "-c", SQLITE_WRITER, str(lossy.mnt / "db.sqlite")], stdout=subprocess.PIPE, text=True
    )
    assert writer.stdout is not None
    assert writer.stdout.readline() == "committed\n"
    writer.kill()  # the power goes: the process dies with its connection open
    writer.wait()
    writer.stdout.close()
    assert lossy.power_cut()["unsynced_blocks"] > 0
    lossy.mount()
    conn = sqlite3.connect(lossy.mnt / "db.sqlite")
    try:
        assert conn.execute("PRAGMA integrity_check").fetchone() == ("ok",)
        assert [r[0] for r in conn.execute("SELECT x FROM t ORDER BY x")] == list(range(100))
    finally:
        conn.close()


def test_a_crash_point_kills_the_caller_before_its_nth_fsync(lossy: LossyMount) -> None:
    code = """
import os, sys
for i in range(10):
    with open(os.path.join(sys.argv[1], f"f{i}"), "wb") as fh:
        fh.write(b"x" * 5000)
        fh.flush()
        os.fsync(fh.fileno())
    fd = os.open(sys.argv[1], os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
"""
    lossy.arm(5)  # f0's fsync, the dir, f1's, the dir, then f2's fsync: killed before it
    writer = subprocess.run([sys.executable, "-c", code, str(lossy.mnt)], check=False)
    assert writer.returncode == -9
    report = lossy.power_cut()
    assert report["killed_at_crash_point"] == 1 and report["unsynced_blocks"] == 2  # f2's two blocks
    assert tree(lossy.backing) == {"f0": b"x" * 5000, "f1": b"x" * 5000}


def test_a_crash_point_can_count_only_the_operations_on_chosen_paths(lossy: LossyMount) -> None:
    code = """
import os, sys
for name in ("a", "b", "c"):
    with open(os.path.join(sys.argv[1], name + ".tmp"), "wb") as fh:
        fh.write(name.encode() * 5000)
        fh.flush()
        os.fsync(fh.fileno())
    os.rename(os.path.join(sys.argv[1], name + ".tmp"), os.path.join(sys.argv[1], name))
    fd = os.open(sys.argv[1], os.O_RDONLY)
    os.fsync(fd)
    os.close(fd)
"""
    lossy.arm(1, r"b\.tmp -> /b$")  # only b's rename counts: a is done, b's data is fsynced, its name is not
    writer = subprocess.run([sys.executable, "-c", code, str(lossy.mnt)], check=False)
    assert writer.returncode == -9
    assert lossy.power_cut()["killed_at_crash_point"] == 1
    # the durable directory still holds b.tmp by the name it had at the last directory fsync
    assert tree(lossy.backing) == {"a": b"a" * 5000}
