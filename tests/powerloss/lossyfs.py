"""lossyfs: a FUSE filesystem that forgets, at a simulated power cut, everything that was not made durable.

    python -m tests.powerloss.lossyfs BACKING MOUNTPOINT SHADOW

Every operation passes straight through to the BACKING directory, so the process above it sees an
ordinary filesystem. Alongside, the filesystem keeps the durable state, as POSIX promises it (and no
more than that):

- a file's contents and size become durable at an `fsync`/`fdatasync` of that file; they are kept as
  a shadow copy in SHADOW (only the 4 KiB blocks written since the last fsync are copied at an fsync);
- a directory's entries (names created, renamed into, renamed away, unlinked, directories made or
  removed) become durable only at an `fsync` of that directory. An fsync of a file does not make its
  own name durable: POSIX does not promise it (fsync(2)), even though ext4 happens to do it;
- what existed in BACKING at mount time is durable.

Writing `cut` to stdin is the power cut: every later operation fails with EIO, BACKING is rebuilt to
exactly the durable state (the durable names of each directory, each file with its durable contents and
size), and one JSON line reports what was thrown away. Unmount afterwards; the next mount starts from the
rebuilt directory. `arm N` kills whoever makes the N-th fsync, directory fsync or rename from then on,
just before it (a crash point: the cut that follows finds the most unsynced state there can be);
`arm N REGEX` counts only the operations on a path the regular expression finds (a rename matches on
`OLD -> NEW`), as LazyFS's `from_rgx`, to kill at one chosen step.
`stats` reports the counts without cutting.

Inodes are tracked by our own node ids (the backing filesystem may reuse inode numbers), so a file
renamed or unlinked without a directory fsync comes back under its durable name with its durable data.
Hard links and special files are refused. It runs single-threaded: simple, and fast enough for tests.
"""

from __future__ import annotations

import errno
import functools
import json
import os
import re
import signal
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tests.powerloss.durable import Durability

T = TypeVar("T", bound=Callable[..., Any])


DIR_HANDLE = 1 << 40  # a directory's handle is this plus its node id: never a file's (a backing fd)
TRACE = bool(os.environ.get("LOSSYFS_TRACE"))  # log every operation to stderr (the mount's log file)


def _backing_flags(flags: int) -> int:
    """Open the backing file read-write (an fsync copies the new blocks to the shadow through the handle
    it comes with, a write-only one too) and without O_APPEND (the kernel sends every write with its
    offset, which pwrite must honour)."""
    return (flags & ~(os.O_ACCMODE | os.O_APPEND)) | os.O_RDWR


def _op(fn: T) -> T:
    """Serialise every operation with the power cut, and fail all of them once the power is off."""

    @functools.wraps(fn)
    def wrapper(self: LossyFS, *args: Any, **kwargs: Any) -> Any:
        with self.mutex:
            if self.dead:
                raise OSError(errno.EIO, "power is off")
            if TRACE:
                shown = [a if not isinstance(a, bytes) else f"<{len(a)} bytes>" for a in args]
                sys.stderr.write(f"{fn.__name__} {shown}\n")
            return fn(self, *args, **kwargs)

    return wrapper  # type: ignore[return-value]


class LossyFS:
    use_ns = True

    def __init__(self, backing: Path, shadow: Path) -> None:
        self.root = backing
        self.model = Durability(backing, shadow)
        self.fds: dict[int, int] = {}  # our file handles (backing fds) -> node ids
        self.mutex = threading.Lock()
        self.dead = False
        self.kill_at: int | None = None  # see arm()
        self.kill_on: re.Pattern[str] | None = None  # ... counting only the operations on these paths
        self.killed = 0

    def _real(self, path: str) -> str:
        return str(self.root) + path

    def _fd_node(self, path: str | None, fh: int | None) -> tuple[int, int | None]:
        if fh is not None and fh in self.fds:
            return self.fds[fh], fh
        if path is None:
            raise OSError(errno.EBADF, "no file handle")
        return self.model.lookup(path), None

    def arm(self, n: int, pattern: str | None = None) -> dict[str, int]:
        """Kill the calling process just before the `n`-th fsync, directory fsync or rename from now: the
        cut then finds the most it can, everything written since the last durability point (LazyFS's
        `crash::timing=before`). With `pattern`, count only the operations on a path it finds."""
        with self.mutex:
            self.kill_at = n
            self.kill_on = re.compile(pattern) if pattern else None
            return {"armed": n}

    def _path_of(self, nid: int) -> str:
        """A live path of node `nid` (fsyncs come by handle, without one)."""
        todo = [(0, "")]
        while todo:
            at, path = todo.pop()
            if at == nid:
                return path or "/"
            todo += [(c, f"{path}/{name}") for name, c in self.model.nodes[at].entries.items()]
        return ""

    def _crash_point(self, path: str | None = None, nid: int | None = None) -> None:
        if self.kill_at is None:
            return
        if self.kill_on is not None:
            where = path if path is not None else self._path_of(nid) if nid is not None else ""
            if not self.kill_on.search(where):
                return
        self.kill_at -= 1
        if self.kill_at > 0:
            return
        self.kill_at = None
        from mfusepy import fuse_get_context  # only here: the module imports without libfuse

        pid = fuse_get_context()[2]
        if pid > 0:
            os.kill(pid, signal.SIGKILL)  # a thread id names its whole process here
        self.killed += 1
        raise OSError(errno.EIO, "killed at a crash point")

    def cut(self) -> dict[str, int]:
        with self.mutex:
            self.dead = True
            report = self.model.report() | {"killed_at_crash_point": self.killed}
            self.model.rebuild()
            return report

    def stats(self) -> dict[str, int]:
        with self.mutex:
            return self.model.report()

    # -- metadata ---------------------------------------------------------------------------------

    @_op
    def getattr(self, path: str | None, fh: int | None = None) -> dict[str, Any]:
        st = os.fstat(fh) if fh is not None and fh in self.fds else os.lstat(self._real(path or "/"))
        keys = ("st_mode", "st_nlink", "st_uid", "st_gid", "st_size", "st_atime", "st_mtime", "st_ctime")
        out = {k: getattr(st, k) for k in keys}
        out.update(st_atime=st.st_atime_ns, st_mtime=st.st_mtime_ns, st_ctime=st.st_ctime_ns)
        return out

    @_op
    def access(self, path: str, amode: int) -> int:
        if not os.access(self._real(path), amode):
            raise OSError(errno.EACCES, path)
        return 0

    @_op
    def readdir(self, path: str | None, fh: int) -> list[str]:
        return [".", "..", *self.model.nodes[fh - DIR_HANDLE].entries]  # by handle: path may be None

    @_op
    def readlink(self, path: str) -> str:
        return os.readlink(self._real(path))

    @_op
    def statfs(self, path: str) -> dict[str, int]:
        sv = os.statvfs(self._real(path))
        keys = ("f_bavail", "f_bfree", "f_blocks", "f_bsize", "f_favail", "f_ffree", "f_files", "f_frsize")
        return {k: getattr(sv, k) for k in keys} | {"f_namemax": sv.f_namemax}

    @_op
    def chmod(self, path: str, mode: int) -> int:
        os.chmod(self._real(path), mode)
        return 0

    @_op
    def chown(self, path: str, uid: int, gid: int) -> int:
        os.lchown(self._real(path), uid, gid)
        return 0

    @_op
    def utimens(self, path: str, times: tuple[int, int] | None = None) -> int:
        os.utime(self._real(path), ns=times) if times else os.utime(self._real(path))
        return 0

    # -- the namespace ----------------------------------------------------------------------------

    @_op
    def mkdir(self, path: str, mode: int) -> int:
        os.mkdir(self._real(path), mode)
        self.model.created(path, "dir")
        return 0

    @_op
    def rmdir(self, path: str) -> int:
        os.rmdir(self._real(path))
        self.model.removed(path)
        return 0

    @_op
    def unlink(self, path: str) -> int:
        os.unlink(self._real(path))
        self.model.removed(path)
        return 0

    @_op
    def symlink(self, target: str, source: str) -> int:
        os.symlink(source, self._real(target))
        self.model.created(target, "link", source)
        return 0

    @_op
    def rename(self, old: str, new: str) -> int:
        self._crash_point(f"{old} -> {new}")
        os.rename(self._real(old), self._real(new))
        self.model.renamed(old, new)
        return 0

    @_op
    def link(self, target: str, source: str) -> int:
        raise OSError(errno.EPERM, "lossyfs does not model hard links")

    @_op
    def mknod(self, path: str, mode: int, dev: int) -> int:
        raise OSError(errno.EPERM, "lossyfs holds regular files, directories and symlinks only")

    @_op
    def opendir(self, path: str) -> int:
        return DIR_HANDLE + self.model.lookup(path)

    @_op
    def releasedir(self, path: str | None, fh: int) -> int:
        return 0

    @_op
    def fsyncdir(self, path: str | None, datasync: int, fh: int) -> int:
        self._crash_point(nid=fh - DIR_HANDLE)
        self.model.fsync_dir(fh - DIR_HANDLE)
        return 0

    # -- file contents ----------------------------------------------------------------------------

    @_op
    def create(self, path: str, mode: int, flags: int = os.O_WRONLY) -> int:
        existed = os.path.lexists(self._real(path))
        fd = os.open(self._real(path), _backing_flags(flags) | os.O_CREAT, mode)
        self.fds[fd] = self.model.lookup(path) if existed else self.model.created(path, "file")
        return fd

    @_op
    def open(self, path: str, flags: int) -> int:
        nid = self.model.lookup(path)
        if flags & os.O_TRUNC:
            self.model.resized(nid, os.stat(self._real(path)).st_size, 0)
        fd = os.open(self._real(path), _backing_flags(flags))
        self.fds[fd] = nid
        return fd

    @_op
    def read(self, path: str | None, size: int, offset: int, fh: int) -> bytes:
        return os.pread(fh, size, offset)

    @_op
    def write(self, path: str | None, data: bytes, offset: int, fh: int) -> int:
        n = os.pwrite(fh, data, offset)
        self.model.wrote(self.fds[fh], offset, n)
        return n

    @_op
    def truncate(self, path: str | None, length: int, fh: int | None = None) -> int:
        nid, fd = self._fd_node(path, fh)
        if fd is not None:
            old = os.fstat(fd).st_size
            os.ftruncate(fd, length)
        else:
            old = os.stat(self._real(path or "/")).st_size
            os.truncate(self._real(path or "/"), length)
        self.model.resized(nid, old, length)
        return 0

    @_op
    def fsync(self, path: str | None, datasync: int, fh: int) -> int:
        self._crash_point(nid=self.fds[fh])
        self.model.fsync_file(self.fds[fh], fh)
        return 0

    @_op
    def flush(self, path: str | None, fh: int) -> int:
        return 0

    @_op
    def release(self, path: str | None, fh: int) -> int:
        self.fds.pop(fh, None)
        os.close(fh)
        return 0

    def init_with_config(self, conn: Any, config: Any) -> None:
        # Unlinked files that are still open are really unlinked (no .fuse_hidden names in the tree),
        # and their remaining operations arrive without a path, by handle.
        if config is not None:
            config.hard_remove = 1
            config.nullpath_ok = 1


def _control(fs: LossyFS, mountpoint: Path) -> None:
    for line in sys.stdin:
        cmd = line.strip()
        if cmd in ("cut", "stats") or cmd.startswith("arm "):
            args = cmd.split(maxsplit=2)
            answer = fs.cut() if cmd == "cut" else fs.stats() if cmd == "stats" else fs.arm(int(args[1]), *args[2:])
            sys.stdout.write(json.dumps(answer) + "\n")
            sys.stdout.flush()
    # stdin closed: whoever mounted us is gone; do not outlive it
    subprocess.run(["fusermount3", "-uz", str(mountpoint)], check=False, capture_output=True)


def main(argv: list[str]) -> int:
    import mfusepy

    class _Fuse(mfusepy.FUSE):  # type: ignore[misc]
        # mfusepy drops the file handle of a FUSE 3 truncate; ftruncate on an unlinked file needs it.
        def truncate_fuse_3(self, path: bytes | None, length: int, fip: Any) -> int:
            fh = fip.contents.fh if fip else None
            result: int = self.operations.truncate(None if path is None else path.decode(), length, fh)
            return result

    backing, mountpoint, shadow = (Path(a).resolve() for a in argv)
    shadow.mkdir(parents=True, exist_ok=True)
    fs = LossyFS(backing, shadow)
    threading.Thread(target=_control, args=(fs, mountpoint), daemon=True).start()
    _Fuse(fs, str(mountpoint), foreground=True, nothreads=True, fsname="lossyfs", auto_unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
