"""Where ingest jobs may read: a server-side path must lie under one of the allowed roots.

`POST /jobs/ingest` names files on the server. Without a limit, any holder of a write key (or anyone,
while auth is off) could load any file the process can read into a collection and read it back. So
every source path (`path`, `ids_path`, `payload_path`) goes through `IngestRoots.confine`:

1. a path with a NUL byte is refused (the OS would cut it there);
2. it is resolved with `os.path.realpath` (`~`, `..`, every symlink on the way) and must then lie
   under the realpath of a root (`os.path.commonpath`), else 403 `forbidden` naming
   `NESTOR_INGEST_ROOTS`. A path outside is refused whether or not it exists, so the answer tells
   nothing about files elsewhere;
3. the resolved path is opened without following a final symlink (`O_NOFOLLOW`), and the opened
   descriptor is checked again: where it really is (`/proc/self/fd`) and that it is a regular file.
   A component swapped for a symlink between the check and the open is caught here.

The resolved path is what the job reads from then on, and the runner confines the path again each time
a job starts or resumes (settings may have changed across a restart). What is left: a job re-opens its
resolved path while it runs, so someone who can write inside a root could still swap a directory there
for a symlink mid-job. Only the server and the operator write there by default (the upload directory).
"""

from __future__ import annotations

import os
import stat
from collections.abc import Iterable
from pathlib import Path

from server.ingest.errors import InvalidSource, SourceForbidden

__all__ = ["SETTING", "IngestRoots"]

SETTING = "NESTOR_INGEST_ROOTS"
_PROC_FD = Path("/proc/self/fd")


class IngestRoots:
    """The directories ingest jobs may read from, each resolved once (a symlinked root is followed)."""

    def __init__(self, roots: Iterable[Path | str]) -> None:
        self.roots: tuple[str, ...] = tuple(dict.fromkeys(os.path.realpath(os.fspath(r)) for r in roots))

    def allows(self, real: str) -> bool:
        """Whether `real`, an already resolved absolute path, is one of the roots or under one."""
        return any(os.path.commonpath([root, real]) == root for root in self.roots)

    def confine(self, path: str, what: str = "source") -> Path:
        """The resolved path of `path` if it is a readable regular file under a root.

        Raises SourceForbidden (403) for a path outside every root, InvalidSource (422) for one inside
        that is missing, unreadable or not a regular file."""
        if "\0" in path:
            raise SourceForbidden(f"{what} path contains a NUL byte; ingest jobs read only under {SETTING}")
        real = os.path.realpath(os.path.expanduser(path))
        if not self.allows(real):
            raise self._outside(what, path)
        try:
            fd = os.open(real, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
        except FileNotFoundError:
            raise InvalidSource(f"{what} {path!r} is not a file on the server") from None
        except PermissionError:
            raise InvalidSource(f"{what} {path!r} is not readable by the server") from None
        except OSError as exc:  # ELOOP: the last component became a symlink after the check; EISDIR, ...
            if os.path.islink(real):
                raise self._outside(what, path) from None
            raise InvalidSource(f"{what} {path!r} is not a file on the server ({exc.strerror})") from None
        try:
            if _PROC_FD.is_dir() and not self.allows(os.readlink(_PROC_FD / str(fd))):
                raise self._outside(what, path)  # a directory on the way was swapped for a symlink
            if not stat.S_ISREG(os.fstat(fd).st_mode):
                raise InvalidSource(f"{what} {path!r} is not a regular file")
        finally:
            os.close(fd)
        return Path(real)

    @staticmethod
    def _outside(what: str, path: str) -> SourceForbidden:
        return SourceForbidden(
            f"{what} {path!r} is outside the directories ingest jobs may read; "
            f"the server's {SETTING} setting lists them (the upload directory is always allowed)"
        )
