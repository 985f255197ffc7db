"""The durable state lossyfs keeps beside the live tree: what a power cut leaves (see lossyfs.py).

Each file, directory and symlink is a node with our own id (the backing filesystem may reuse inode
numbers). A directory has its live entries and its durable ones (as of its last fsync); a file has the
4 KiB blocks written since its last fsync, and a shadow copy of its durable contents in `shadow/<id>`.
"""

from __future__ import annotations

import errno
import os
import shutil
import stat
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["BLOCK", "Durability", "Node"]

BLOCK = 4096


@dataclass
class Node:
    kind: str  # "file", "dir" or "link"
    entries: dict[str, int] = field(default_factory=dict)  # a directory's names now
    durable: dict[str, int] = field(default_factory=dict)  # ... and at its last fsync
    dirty: set[int] = field(default_factory=set)  # a file's blocks written since its last fsync
    target: str = ""  # a symlink's target


class Durability:
    """The durable state of a tree, next to the live one in `backing`."""

    def __init__(self, backing: Path, shadow: Path) -> None:
        self.backing = backing
        self.shadow = shadow
        self.nodes: dict[int, Node] = {0: Node("dir")}
        self.fsyncs = 0
        self.dir_fsyncs = 0
        self._scan(0, backing)

    def _new(self, kind: str, target: str = "") -> int:
        nid = len(self.nodes)
        self.nodes[nid] = Node(kind, target=target)
        return nid

    def _scan(self, dir_id: int, path: Path) -> None:
        for child in sorted(path.iterdir()):
            st = child.lstat()
            if stat.S_ISDIR(st.st_mode):
                nid = self._new("dir")
                self._scan(nid, child)
            elif stat.S_ISLNK(st.st_mode):
                nid = self._new("link", os.readlink(child))
            else:
                nid = self._new("file")
                shutil.copyfile(child, self.shadow / str(nid))
            self.nodes[dir_id].entries[child.name] = nid
        self.nodes[dir_id].durable = dict(self.nodes[dir_id].entries)

    def lookup(self, path: str) -> int:
        nid = 0
        for part in Path(path).parts[1:]:
            found = self.nodes[nid].entries.get(part)
            if found is None:
                raise OSError(errno.ENOENT, path)
            nid = found
        return nid

    def parent(self, path: str) -> tuple[Node, str]:
        p = Path(path)
        return self.nodes[self.lookup(str(p.parent))], p.name

    # -- namespace changes: live at once, durable at the directory's fsync ----------------------

    def created(self, path: str, kind: str, target: str = "") -> int:
        d, name = self.parent(path)
        nid = self._new(kind, target)
        d.entries[name] = nid
        return nid

    def removed(self, path: str) -> None:
        d, name = self.parent(path)
        d.entries.pop(name, None)

    def renamed(self, old: str, new: str) -> None:
        src, a = self.parent(old)
        dst, b = self.parent(new)
        dst.entries[b] = src.entries.pop(a)

    def fsync_dir(self, nid: int) -> None:
        d = self.nodes[nid]
        if d.kind == "dir":
            d.durable = dict(d.entries)
        self.dir_fsyncs += 1

    # -- file contents: live at once, durable at the file's fsync ---------------------------------

    def wrote(self, nid: int, offset: int, length: int) -> None:
        if length:
            self.nodes[nid].dirty.update(range(offset // BLOCK, (offset + length - 1) // BLOCK + 1))

    def resized(self, nid: int, old: int, new: int) -> None:
        lo, hi = min(old, new), max(old, new)
        if lo != hi:
            self.nodes[nid].dirty.update(range(lo // BLOCK, (hi - 1) // BLOCK + 1))

    def fsync_file(self, nid: int, fd: int) -> None:
        node = self.nodes[nid]
        size = os.fstat(fd).st_size
        sh = os.open(self.shadow / str(nid), os.O_RDWR | os.O_CREAT, 0o644)  # not O_APPEND: pwrite must seek
        try:
            for b in sorted(node.dirty):
                if b * BLOCK < size:
                    os.pwrite(sh, os.pread(fd, BLOCK, b * BLOCK), b * BLOCK)
            os.ftruncate(sh, size)
        finally:
            os.close(sh)
        node.dirty.clear()
        self.fsyncs += 1

    # -- the power cut ---------------------------------------------------------------------------

    def _reachable(self) -> Iterator[Node]:
        seen, todo = {0}, [0]
        while todo:
            n = self.nodes[todo.pop()]
            yield n
            for nid in n.entries.values():
                if nid not in seen:
                    seen.add(nid)
                    todo.append(nid)

    def report(self) -> dict[str, int]:
        live = list(self._reachable())
        return {
            "fsyncs": self.fsyncs,
            "dir_fsyncs": self.dir_fsyncs,
            "unsynced_blocks": sum(len(n.dirty) for n in live),
            "unsynced_entries": sum(len(set(n.entries.items()) ^ set(n.durable.items())) for n in live),
        }

    def rebuild(self) -> None:
        """Make `backing` exactly the durable tree."""
        for child in list(self.backing.iterdir()):
            if child.is_dir() and not child.is_symlink():
                shutil.rmtree(child)
            else:
                child.unlink()
        self._build(0, self.backing, {0})

    def _build(self, dir_id: int, path: Path, seen: set[int]) -> None:
        for name, nid in sorted(self.nodes[dir_id].durable.items()):
            node, target = self.nodes[nid], path / name
            if node.kind == "dir":
                if nid in seen:  # a directory renamed between two durable parents: keep the first
                    continue
                seen.add(nid)
                target.mkdir()
                self._build(nid, target, seen)
            elif node.kind == "link":
                os.symlink(node.target, target)
            elif (self.shadow / str(nid)).exists():
                shutil.copyfile(self.shadow / str(nid), target)
            else:
                target.touch()  # the name is durable, not a byte of its data
