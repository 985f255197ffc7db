"""Mount lossyfs (tests/powerloss/lossyfs.py) in a subprocess, cut its power, mount it again.

`LossyMount(root)` keeps the real data in `root/backing` and shows it at `root/mnt`. `power_cut()`
throws away everything not made durable (see lossyfs.py), unmounts, and returns what was thrown away;
`mount()` then serves the rolled-back directory again. Whoever wrote to the mount must be dead before the
cut (a crash kills every process at once).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from types import TracebackType

import pytest

__all__ = ["LossyMount", "fuse_missing", "require_fuse"]

ROOT = Path(__file__).resolve().parents[2]  # the repository: lossyfs runs as tests.powerloss.lossyfs


def fuse_missing() -> str | None:
    """Why lossyfs cannot run here, or None."""
    if not os.path.exists("/dev/fuse"):
        return "/dev/fuse is missing"
    if shutil.which("fusermount3") is None:
        return "fusermount3 is missing (apt-get install fuse3)"
    try:
        import mfusepy  # noqa: F401
    except (ImportError, OSError) as exc:  # mfusepy raises OSError when libfuse is not found
        return f"mfusepy cannot load libfuse: {exc}"
    return None


def require_fuse() -> None:
    """Skip without FUSE locally; under CI fail instead, so a CI run cannot pass by skipping."""
    why = fuse_missing()
    if why is not None:
        if os.environ.get("CI"):
            pytest.fail(f"power-loss tests cannot run in CI: {why}")
        pytest.skip(why)


class LossyMount:
    def __init__(self, root: Path) -> None:
        self.root = root
        self.backing = root / "backing"
        self.mnt = root / "mnt"
        self.backing.mkdir(parents=True, exist_ok=True)
        self.mnt.mkdir(parents=True, exist_ok=True)
        self.proc: subprocess.Popen[str] | None = None
        self.mounts = 0

    def mount(self, timeout: float = 15.0) -> LossyMount:
        shadow = self.root / "shadow"
        shutil.rmtree(shadow, ignore_errors=True)  # the durable copies of the last mount are the backing now
        self.mounts += 1
        log = open(self.root / f"lossyfs-{self.mounts}.log", "w")  # noqa: SIM115 - the child holds it
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "tests.powerloss.lossyfs", str(self.backing), str(self.mnt), str(shadow)],
            cwd=ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=log,
            text=True,
        )
        log.close()
        deadline = time.monotonic() + timeout
        while not os.path.ismount(self.mnt):
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self._kill()
                raise RuntimeError(f"lossyfs did not mount: {self._log_tail()}")
            time.sleep(0.02)
        return self

    def _command(self, cmd: str) -> dict[str, int]:
        assert self.proc is not None and self.proc.stdin is not None and self.proc.stdout is not None
        self.proc.stdin.write(cmd + "\n")
        self.proc.stdin.flush()
        line = self.proc.stdout.readline()
        if not line:
            raise RuntimeError(f"lossyfs did not answer {cmd!r}: {self._log_tail()}")
        result: dict[str, int] = json.loads(line)
        return result

    def stats(self) -> dict[str, int]:
        """fsyncs, dir_fsyncs, and what a cut now would throw away: unsynced_blocks, unsynced_entries."""
        return self._command("stats")

    def arm(self, n: int, pattern: str | None = None) -> None:
        """Kill whichever process makes the `n`-th fsync, directory fsync or rename from now, just before it;
        with `pattern` (a regular expression), count only those on a path it finds (a rename's path is
        `OLD -> NEW`)."""
        self._command(f"arm {n}" + (f" {pattern}" if pattern else ""))

    def power_cut(self) -> dict[str, int]:
        """Roll the backing directory back to its durable state and unmount; returns `stats()` at the cut."""
        report = self._command("cut")
        self.unmount()
        return report

    def unmount(self) -> None:
        if self.proc is None:
            return
        subprocess.run(["fusermount3", "-u", str(self.mnt)], check=False, capture_output=True)
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            subprocess.run(["fusermount3", "-uz", str(self.mnt)], check=False, capture_output=True)
            self._kill()
        self._close_pipes()
        self.proc = None

    def _kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=15)
        self._close_pipes()

    def _close_pipes(self) -> None:
        if self.proc is not None:
            for pipe in (self.proc.stdin, self.proc.stdout):
                if pipe is not None:
                    pipe.close()

    def _log_tail(self) -> str:
        text = (self.root / f"lossyfs-{self.mounts}.log").read_text(errors="replace")
        return text[-2000:]

    def __enter__(self) -> LossyMount:
        return self.mount()

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None) -> None:
        self.unmount()
