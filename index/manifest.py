"""A persisted index directory and its manifest: written atomically, verified before use.

`<field>/index/manifest.json` records `format_version`, the label watermark the index covers
(`labels_upto`), the collection's `seq` at the save, when it was saved, and a SHA-256 per file. A
save stages the directory, fsyncs every file and directory, and renames it over the old one, so a
crash leaves either the old index or the new one. A load refuses files that do not match their
checksums; the index is derived data, so the caller rebuilds it from the store.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from index.fsutil import fsync_dir, replace_dir

__all__ = ["FORMAT_VERSION", "IndexManifest", "read_manifest", "write_index"]

FORMAT_VERSION = 2  # 1: the manifest without a version (before named vectors); same layout, still read
MANIFEST = "manifest.json"


@dataclass(frozen=True, slots=True)
class IndexManifest:
    labels_upto: int
    seq: int
    saved_at: float
    format_version: int
    disk_bytes: int  # the index directory's size, manifest included


def read_manifest(index_dir: Path) -> IndexManifest | None:
    """The verified manifest of `index_dir`, or None when there is no saved index. Raises on damage."""
    path = index_dir / MANIFEST
    if not path.exists():
        return None
    man: dict[str, Any] = json.loads(path.read_text())
    version = int(man.get("format_version", 1))
    if version > FORMAT_VERSION:
        raise ValueError(f"{path}: format_version {version} is newer than this Nestor ({FORMAT_VERSION})")
    files = man.get("files")
    if files is not None:  # saved before checksums existed otherwise
        for rel, digest in files.items():
            with open(index_dir / rel, "rb") as fh:
                if hashlib.file_digest(fh, "sha256").hexdigest() != digest:
                    raise ValueError(f"{index_dir / rel}: checksum mismatch, the file is damaged")
    size = sum(f.stat().st_size for f in index_dir.rglob("*") if f.is_file())
    return IndexManifest(
        int(man["labels_upto"]), int(man.get("seq", 0)), float(man.get("saved_at", 0.0)), version, size
    )


def write_index(target: Path, save: Any, *, labels_upto: int, seq: int) -> IndexManifest:
    """Save an index into `target` atomically: `save(directory)` writes its files into a staging copy."""
    staged = target.with_name(target.name + ".staging")
    if staged.exists():
        shutil.rmtree(staged)
    save(staged)
    saved_at = time.time()
    files: dict[str, str] = {}
    size = 0
    for f in sorted(p for p in staged.rglob("*") if p.is_file()):
        with open(f, "rb") as fh:
            files[f.relative_to(staged).as_posix()] = hashlib.file_digest(fh, "sha256").hexdigest()
            os.fsync(fh.fileno())
            size += os.fstat(fh.fileno()).st_size
    manifest = {
        "format_version": FORMAT_VERSION,
        "labels_upto": labels_upto,
        "seq": seq,
        "saved_at": saved_at,
        "files": files,
    }
    data = json.dumps(manifest).encode()
    with open(staged / MANIFEST, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    for d in [staged, *(p for p in staged.rglob("*") if p.is_dir())]:
        fsync_dir(d)
    replace_dir(staged, target)
    return IndexManifest(labels_upto, seq, saved_at, FORMAT_VERSION, size + len(data))
