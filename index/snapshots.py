"""Collection snapshots: one tar of the store of record, with a SHA-256 per file and for the whole.

A snapshot holds what a collection cannot rebuild: `collection.json`, `points.sqlite` (copied with
SQLite's backup API under the collection's write lock), `vectors.f32` up to the committed label
count, and for multi-vector collections the `muvera/` state and the token files up to the same
count. Rows below that count never change (labels are never reused), so they are copied after the
lock is released; writers wait only for the database copy. The persisted ANN index is derived data.
It is included when a stable copy covering no label past the snapshot can be taken (it usually
can); otherwise the restored collection rebuilds it in the background and searches stay exact on
the rows not indexed yet.

Layout: `<data_dir>/snapshots/<collection>/<snapshot>.tar` plus `<snapshot>.json` (its size, the
SHA-256 of the whole file, seq and count). The tar's last member, `manifest.json`, lists every other
member with its size and SHA-256. A restore checks the whole-file digest (when known), every member
against the manifest, that nothing is missing or extra, and SQLite's `quick_check`, before it
touches the target collection. A corrupt or truncated snapshot is refused with `invalid_snapshot`.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
import shutil
import sqlite3
import tarfile
import time
import uuid
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import IO, Any

from index.contract import AnyCollection
from index.dense import field_dir
from index.errors import InvalidSnapshot, SnapshotNotFound
from index.fsutil import atomic_write_bytes, fsync_dir
from nestor_client.models import CollectionConfig

__all__ = ["SnapshotInfo", "SnapshotStore", "file_sha256"]

log = logging.getLogger("nestor.snapshots")

FORMAT = 1
MANIFEST = "manifest.json"
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,200}$")
_CHUNK = 1 << 20


@dataclass(frozen=True, slots=True)
class SnapshotInfo:
    name: str
    collection: str
    created_at: float
    size: int
    sha256: str
    seq: int
    count: int
    index_included: bool

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def file_sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as fh:
        while chunk := fh.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


class _HashingReader:
    """Reads at most `size` bytes of `fh`, hashing them; tarfile pulls a member's data through it."""

    def __init__(self, fh: IO[bytes], size: int) -> None:
        self.fh, self.left, self.sha = fh, size, hashlib.sha256()

    def read(self, n: int = -1) -> bytes:
        n = self.left if n < 0 else min(n, self.left)
        data = self.fh.read(n)
        self.left -= len(data)
        self.sha.update(data)
        return data


class _HashingWriter:
    """The tar's output file, hashed as it is written, so the whole-file digest costs no second read."""

    def __init__(self, fh: IO[bytes]) -> None:
        self.fh, self.pos, self.sha = fh, 0, hashlib.sha256()

    def write(self, data: bytes) -> int:
        self.sha.update(data)
        self.pos += len(data)
        return self.fh.write(data)

    def tell(self) -> int:
        return self.pos

    def flush(self) -> None:
        self.fh.flush()


def _check_name(what: str, name: str) -> None:
    if not _NAME.match(name):
        raise SnapshotNotFound(f"no {what} {name!r}")


class SnapshotStore:
    def __init__(self, data_dir: Path) -> None:
        self.root = data_dir / "snapshots"
        self.staging = data_dir / "restore"  # restores unpack here, next to (never inside) collections/
        self.root.mkdir(parents=True, exist_ok=True)
        shutil.rmtree(self.staging, ignore_errors=True)  # left by a restore that crashed: never installed
        self.staging.mkdir(exist_ok=True)

    # -- create ----------------------------------------------------------------------------

    def create(self, coll: AnyCollection) -> SnapshotInfo:
        folder = self.root / coll.name
        folder.mkdir(parents=True, exist_ok=True)
        stamp = time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
        name = f"{coll.name}-{stamp}-{uuid.uuid4().hex[:6]}"
        work = self.staging / f"snap-{name}"
        work.mkdir()
        part = folder / f".{name}.tar.part"
        try:
            n, seq = coll.backup_store(work / "points.sqlite")
            members: list[tuple[str, Path, int]] = [("points.sqlite", work / "points.sqlite", -1)]
            members += coll.snapshot_files(n)
            included = False
            for rel, src in coll.index_dirs():
                index_copy = self._copy_index(src, work / "indexes" / rel / "index", n)
                if index_copy is not None:
                    prefix = f"{rel}/index" if rel else "index"
                    members += [
                        (f"{prefix}/{f.relative_to(index_copy).as_posix()}", f, -1)
                        for f in sorted(index_copy.rglob("*"))
                        if f.is_file()
                    ]
                    included = True
            count = _count(work / "points.sqlite")
            config = json.loads(next(p for arc, p, _ in members if arc == "collection.json").read_bytes())
            with open(part, "wb") as raw:
                out = _HashingWriter(raw)
                files: dict[str, dict[str, Any]] = {}
                with tarfile.open(fileobj=out, mode="w", format=tarfile.PAX_FORMAT) as tar:  # type: ignore[call-overload]
                    for arc, path, size in members:
                        files[arc] = _add(tar, arc, path, size)
                    manifest = {
                        "format": FORMAT,
                        "collection": coll.name,
                        "config": config,
                        "created_at": time.time(),
                        "seq": seq,
                        "labels": n,
                        "count": count,
                        "files": files,
                    }
                    data = json.dumps(manifest, indent=1).encode()
                    info = tarfile.TarInfo(MANIFEST)
                    info.size, info.mtime, info.mode = len(data), int(time.time()), 0o644
                    tar.addfile(info, _BytesReader(data))
                raw.flush()
                os.fsync(raw.fileno())
            size = part.stat().st_size
            snap = SnapshotInfo(
                name, coll.name, manifest["created_at"], size, out.sha.hexdigest(), seq, count, included
            )
            os.replace(part, folder / f"{name}.tar")
            atomic_write_bytes(folder / f"{name}.json", json.dumps(snap.to_dict()).encode())
            return snap
        finally:
            part.unlink(missing_ok=True)
            shutil.rmtree(work, ignore_errors=True)

    @staticmethod
    def _copy_index(src: Path, dst: Path, labels: int) -> Path | None:
        """A stable copy of the persisted index, or None when there is none worth including.

        The indexer may swap in a newer index while we copy, so the manifest is read before and after
        (each save has its own `saved_at`): a change means a mixed copy, and we try again. An index
        covering labels past the snapshot would serve labels the snapshot's store does not have.
        """
        for _ in range(3):
            try:
                before = (src / "manifest.json").read_bytes()
                shutil.rmtree(dst, ignore_errors=True)
                shutil.copytree(src, dst)
                after = (src / "manifest.json").read_bytes()
            except (FileNotFoundError, NotADirectoryError, shutil.Error):
                if not src.exists():
                    return None
                continue
            if before != after:
                continue
            try:
                upto = int(json.loads(after)["labels_upto"])
            except (ValueError, KeyError, TypeError):
                return None
            if upto > labels:
                return None
            return dst
        return None

    # -- read, delete ----------------------------------------------------------------------

    def list(self, collection: str) -> list[SnapshotInfo]:
        folder = self.root / collection
        if not _NAME.match(collection) or not folder.is_dir():
            return []
        out = []
        for side in folder.glob("*.json"):
            if (side.with_suffix(".tar")).exists():
                try:
                    out.append(SnapshotInfo(**json.loads(side.read_bytes())))
                except (ValueError, TypeError):
                    log.warning("snapshot record %s is unreadable; skipping it", side)
        return sorted(out, key=lambda s: (s.created_at, s.name))

    def get(self, collection: str, name: str) -> tuple[SnapshotInfo, Path]:
        _check_name("collection", collection)
        _check_name("snapshot", name)
        side = self.root / collection / f"{name}.json"
        tar = side.with_suffix(".tar")
        if not side.exists() or not tar.exists():
            raise SnapshotNotFound(f"collection {collection!r} has no snapshot {name!r}")
        return SnapshotInfo(**json.loads(side.read_bytes())), tar

    def delete(self, collection: str, name: str) -> None:
        _, tar = self.get(collection, name)
        tar.with_suffix(".json").unlink()  # the record first: a half-deleted snapshot is not listed
        tar.unlink(missing_ok=True)
        fsync_dir(tar.parent)

    def incoming(self) -> Path:
        """A fresh path for an uploaded snapshot, under the staging directory."""
        return self.staging / f"upload-{uuid.uuid4().hex}.tar"

    # -- restore ---------------------------------------------------------------------------

    def unpack(self, tar_path: Path, expect_sha256: str | None = None) -> tuple[Path, dict[str, Any]]:
        """Verify a snapshot and unpack it into a fresh staging directory; returns it and the manifest."""
        if expect_sha256 is not None:
            got = file_sha256(tar_path)
            if got != expect_sha256.lower():
                raise InvalidSnapshot(
                    f"snapshot checksum mismatch: the file's SHA-256 is {got}, expected {expect_sha256.lower()} "
                    "(truncated or corrupt)"
                )
        dest = self.staging / f"restore-{uuid.uuid4().hex}"
        dest.mkdir()
        try:
            manifest = _unpack(tar_path, dest)
            _check_unpacked(dest, manifest)
        except BaseException:
            shutil.rmtree(dest, ignore_errors=True)
            raise
        return dest, manifest


class _BytesReader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def read(self, n: int = -1) -> bytes:
        end = len(self.data) if n < 0 else self.pos + n
        out = self.data[self.pos : end]
        self.pos += len(out)
        return out


def _add(tar: tarfile.TarFile, arc: str, path: Path, size: int) -> dict[str, Any]:
    """Add `path` (its first `size` bytes; -1: all) as member `arc`; returns its size and SHA-256."""
    with open(path, "rb") as fh:
        have = os.fstat(fh.fileno()).st_size
        size = have if size < 0 else size
        if have < size:
            raise RuntimeError(f"{path}: {have} bytes on disk, {size} committed")
        info = tarfile.TarInfo(arc)
        info.size, info.mtime, info.mode = size, int(time.time()), 0o644
        reader = _HashingReader(fh, size)
        tar.addfile(info, reader)  # type: ignore[arg-type]
    return {"size": size, "sha256": reader.sha.hexdigest()}


def _count(db: Path) -> int:
    conn = sqlite3.connect(db)
    try:
        return int(conn.execute("SELECT count(*) FROM points").fetchone()[0])
    finally:
        conn.close()


_PART = re.compile(r"^[A-Za-z0-9_.-]{1,200}$")


def _safe(name: str) -> bool:
    """A member name a snapshot may hold: a top-level file, `index/` or `muvera/` files (one level deeper
    for an index's backend), and the same under `vectors/<name>/` for a named vector."""
    parts = name.split("/")
    if not all(_PART.match(p) and p not in (".", "..") for p in parts):
        return False
    if parts[0] == "vectors":
        parts = parts[2:]
    return 1 <= len(parts) <= 3 and (len(parts) == 1 or parts[0] in ("index", "muvera"))


def _unpack(tar_path: Path, dest: Path) -> dict[str, Any]:
    seen: dict[str, dict[str, Any]] = {}
    manifest: dict[str, Any] | None = None
    try:
        with tarfile.open(tar_path, mode="r:") as tar:
            for member in tar:
                if not member.isreg() or not _safe(member.name) or member.name in seen:
                    raise InvalidSnapshot(f"not a Nestor snapshot: unexpected member {member.name!r}")
                src = tar.extractfile(member)
                assert src is not None
                if member.name == MANIFEST:
                    try:
                        manifest = json.loads(src.read(16 << 20))
                    except ValueError:
                        raise InvalidSnapshot("snapshot manifest is corrupt (not JSON)") from None
                    continue
                target = dest / member.name
                target.parent.mkdir(parents=True, exist_ok=True)
                sha = hashlib.sha256()
                size = 0
                with open(target, "wb") as out:
                    while chunk := src.read(_CHUNK):
                        sha.update(chunk)
                        size += len(chunk)
                        out.write(chunk)
                    out.flush()
                    os.fsync(out.fileno())
                seen[member.name] = {"size": size, "sha256": sha.hexdigest()}
    except (tarfile.TarError, EOFError, OSError) as exc:
        raise InvalidSnapshot(f"snapshot is truncated or corrupt: {exc}") from None
    if manifest is None:
        raise InvalidSnapshot("snapshot is truncated or corrupt: it has no manifest (manifest.json is written last)")
    if (
        not isinstance(manifest, dict)
        or manifest.get("format") != FORMAT
        or not isinstance(manifest.get("files"), dict)
    ):
        raise InvalidSnapshot(f"not a Nestor snapshot of format {FORMAT}")
    files: dict[str, Any] = manifest["files"]
    missing = sorted(set(files) - set(seen))
    extra = sorted(set(seen) - set(files))
    if missing or extra:
        raise InvalidSnapshot(f"snapshot is truncated or corrupt: missing {missing}, unexpected {extra}")
    for arc, want in files.items():
        if seen[arc] != {"size": want.get("size"), "sha256": want.get("sha256")}:
            raise InvalidSnapshot(f"snapshot is corrupt: {arc} does not match its checksum in the manifest")
    return manifest


def _check_unpacked(dest: Path, manifest: dict[str, Any]) -> None:
    for need in ("collection.json", "points.sqlite"):
        if not (dest / need).exists():
            raise InvalidSnapshot(f"not a Nestor snapshot: no {need}")
    try:
        config = CollectionConfig.model_validate_json((dest / "collection.json").read_bytes())
    except ValueError as exc:
        raise InvalidSnapshot(f"snapshot config is invalid: {exc}") from None
    conn = sqlite3.connect(dest / "points.sqlite")
    try:
        ok = conn.execute("PRAGMA quick_check").fetchone()[0]
        meta = dict(conn.execute("SELECT key, value FROM meta").fetchall())
    except sqlite3.DatabaseError as exc:
        raise InvalidSnapshot(f"snapshot database is corrupt: {exc}") from None
    finally:
        conn.close()
    if ok != "ok":
        raise InvalidSnapshot(f"snapshot database is corrupt: {ok}")
    labels = int(meta.get("next_label", 0))
    if labels != manifest.get("labels"):
        raise InvalidSnapshot("snapshot is inconsistent: its store does not match its committed label count")
    for name, vcfg in config.vector_fields().items():
        where = dest / field_dir(Path(), name)
        path, size = (
            (where / "tokens.ends", labels * 8) if vcfg.multivector else (where / "vectors.f32", labels * 4 * vcfg.dim)
        )
        if not path.exists() or path.stat().st_size != size:
            raise InvalidSnapshot(f"snapshot is inconsistent: {path.relative_to(dest)} does not hold {labels} labels")
    for name in config.sparse_fields():
        path = dest / field_dir(Path(), name) / "sparse.ends"
        if not path.exists() or path.stat().st_size != labels * 8:
            raise InvalidSnapshot(f"snapshot is inconsistent: {path.relative_to(dest)} does not hold {labels} labels")
    fsync_dir(dest)
