"""Atomic file writes: temp file, fsync, rename, fsync of the directory."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from index import stamp

__all__ = ["atomic_write_bytes", "fsync_dir", "fsync_tree", "makedirs", "replace_dir"]


def fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def makedirs(path: Path) -> None:
    """`mkdir -p` that survives a power cut: each directory it creates is fsynced into its parent.

    fsync(2) of a file or a directory does not make its own name durable; only an fsync of the
    directory that holds the name does (tests/powerloss found a fresh data directory lost whole)."""
    missing = []
    p = path
    while not p.exists():
        missing.append(p)
        p = p.parent
    for d in reversed(missing):
        d.mkdir(exist_ok=True)
        fsync_dir(d.parent)


def fsync_tree(root: Path) -> None:
    """fsync every directory under `root` (itself included), deepest first: every name in the tree is durable."""
    for d in sorted((p for p in root.rglob("*") if p.is_dir() and not p.is_symlink()), key=lambda p: -len(p.parts)):
        fsync_dir(d)
    fsync_dir(root)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    fsync_dir(path.parent)
    stamp.bump()  # a follower checks the files again (index/stamp.py)


def replace_dir(staged: Path, target: Path) -> None:
    """Swap a fully written, fsynced directory into place.

    A crash leaves either the old directory or the new one (possibly as `target.old`, which the
    loader ignores), never a half-written one.
    """
    old = target.with_name(target.name + ".old")
    if old.exists():
        shutil.rmtree(old)
    if target.exists():
        os.replace(target, old)
    os.replace(staged, target)
    fsync_dir(target.parent)
    stamp.bump()
    if old.exists():
        shutil.rmtree(old)
