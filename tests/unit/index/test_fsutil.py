"""index/fsutil: the directory helpers durability rests on (their power-cut behaviour: tests/powerloss)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from index import fsutil
from index.fsutil import fsync_tree, makedirs


def test_makedirs_creates_each_missing_level_and_fsyncs_its_parent(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    synced: list[Path] = []
    monkeypatch.setattr(fsutil, "fsync_dir", lambda p: synced.append(p))
    (tmp_path / "a").mkdir()
    makedirs(tmp_path / "a" / "b" / "c")
    assert (tmp_path / "a" / "b" / "c").is_dir()
    assert synced == [tmp_path / "a", tmp_path / "a" / "b"]  # the parent of each new name, top down
    synced.clear()
    makedirs(tmp_path / "a" / "b")  # exists: nothing to make, nothing to sync
    assert synced == []


def test_fsync_tree_syncs_every_directory_deepest_first(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    synced: list[Path] = []
    monkeypatch.setattr(fsutil, "fsync_dir", lambda p: synced.append(p))
    (tmp_path / "x" / "y").mkdir(parents=True)
    (tmp_path / "z").mkdir()
    (tmp_path / "x" / "f").write_bytes(b"")
    os.symlink(tmp_path / "z", tmp_path / "link")  # a symlink to a directory is a name, not a directory to sync
    fsync_tree(tmp_path)
    assert sorted(synced) == sorted([tmp_path, tmp_path / "x", tmp_path / "x" / "y", tmp_path / "z"])
    assert synced.index(tmp_path / "x" / "y") < synced.index(tmp_path / "x") < synced.index(tmp_path)


def test_the_real_fsync_dir_runs(tmp_path: Path) -> None:
    makedirs(tmp_path / "d" / "e")
    fsync_tree(tmp_path)
    assert (tmp_path / "d" / "e").is_dir()
