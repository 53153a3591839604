"""Files written whole or not at all: atomic and durable writes, exclusive records, output checks, hashes.

Every write goes to a temporary file beside its target, is flushed to disk, then renamed (or, for a record that
must never be replaced, hard-linked) into place, and the folder is flushed too, so a crash or a kill leaves
either the old file or the new one. A temporary names its writer's process id, so a later writer can sweep
the ones whose writer is gone without touching a live one.
"""
from __future__ import annotations

import contextlib
import glob
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from pathlib import Path
from typing import Any, Callable, Iterator

import torch

from .errors import ConfigError

STALE_SECONDS = 24 * 3600  # a temporary without a process id (older versions) is stale after a day


def _fsync(path: Path) -> None:
    """Flush a file's (or a folder's) bytes to the disk; folders that cannot be opened are skipped."""
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def sweep_stale_temporaries(target: Path) -> list[Path]:
    """Remove the temporaries of `target` whose writer died (killed mid-write); returns what was removed."""
    pattern = re.compile(rf"^\.{re.escape(target.name)}\.(?:p(\d+)\.)?[^.]+\.tmp$")
    removed = []
    try:
        candidates = list(target.parent.glob(f".{glob.escape(target.name)}.*.tmp"))
    except OSError:
        return removed
    for tmp in candidates:
        match = pattern.match(tmp.name)
        if not match:
            continue
        pid = match.group(1)
        try:
            stale = (not _alive(int(pid))) if pid else time.time() - tmp.stat().st_mtime > STALE_SECONDS
            if stale and int(pid or 0) != os.getpid():
                tmp.unlink()
                removed.append(tmp)
        except OSError:
            continue
    return removed


@contextlib.contextmanager
def _temporary(target: Path) -> Iterator[Path]:
    """A temporary path beside `target` (same filesystem, so the rename is atomic), removed unless consumed."""
    try:
        target.parent.mkdir(parents=True, exist_ok=True)
    except (FileExistsError, NotADirectoryError):
        raise ConfigError(f"{target}: cannot write there, {_first_file(target.parent)} is a file, not a folder")
    sweep_stale_temporaries(target)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.p{os.getpid()}.", suffix=".tmp", dir=target.parent)
    os.close(fd)
    os.chmod(tmp, 0o666 & ~_umask())  # mkstemp makes 0600 files; published sets must be readable
    tmp_path = Path(tmp)
    try:
        yield tmp_path
    finally:
        if tmp_path.exists():
            tmp_path.unlink()


Stamp = tuple[int, int, int] | None  # (inode, size, mtime in ns) of a file, None when there is none


def file_stamp(path: str | os.PathLike) -> Stamp:
    """What a file is now, to tell later whether another writer replaced it meanwhile."""
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_ino, st.st_size, st.st_mtime_ns)


@contextlib.contextmanager
def _written(path: str | os.PathLike, place: Callable[[Path, Path], None],
             unchanged_since: Stamp | bool = False) -> Iterator[Path]:
    """Yield a temporary beside `path`; on success flush it, put it in place with place(tmp, target), flush the
    folder. unchanged_since (a file_stamp taken when the work began): refuse to replace a target that another
    writer changed in the meantime, rather than let the last writer win in silence."""
    target = Path(path)
    with _temporary(target) as tmp:
        yield tmp
        _fsync(tmp)
        if unchanged_since is not False and file_stamp(target) != unchanged_since:
            raise ConfigError(f"{target} changed while this run worked (another run wrote it); not replaced")
        place(tmp, target)
        _fsync(target.parent)


def atomic_path(path: str | os.PathLike, unchanged_since: Stamp | bool = False
                ) -> contextlib.AbstractContextManager[Path]:
    """Yield a temporary path in the target's folder; on success flush it and rename it over `path`
    (with unchanged_since, only if the target is still as stamped: see _written)."""
    return _written(path, os.replace, unchanged_since)


def exclusive_path(path: str | os.PathLike) -> contextlib.AbstractContextManager[Path]:
    """Like atomic_path, for a file that must never be replaced: the temporary is hard-linked into place, which
    fails with FileExistsError when another writer got there first (even at the same instant)."""
    return _written(path, os.link)


@contextlib.contextmanager
def atomic_folder(path: str | os.PathLike) -> Iterator[Path]:
    """Yield an empty temporary folder beside `path`; on success flush what it holds and rename it to `path`,
    which must not exist yet (a folder of many files appears whole or not at all; a failure removes it)."""
    target = Path(path)
    if target.exists():
        raise ConfigError(f"{target} exists; remove it or choose another place")
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.p{os.getpid()}.", suffix=".tmp", dir=target.parent))
    try:
        yield tmp
        for file in sorted(tmp.rglob("*")):
            _fsync(file)
        os.chmod(tmp, 0o777 & ~_umask())  # mkdtemp makes 0700 folders; an exported set must be readable
        os.rename(tmp, target)
        _fsync(target.parent)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _umask() -> int:
    umask = os.umask(0)
    os.umask(umask)
    return umask


def write_json(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=True) + "\n")


def save_torch(path: str | os.PathLike, obj: Any) -> None:
    with atomic_path(path) as tmp:
        torch.save(obj, tmp)


def read_json(path: str | os.PathLike, what: str, remedy: str) -> Any:
    """A JSON file we wrote, or one line naming it, what is wrong and what to do (`remedy`)."""
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"no {what} at {path}; {remedy}")
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(f"{path} is not a readable {what} ({type(err).__name__}: {err}); {remedy}") from None


def file_sha256(path: str | os.PathLike) -> str:
    """sha256 of a file's bytes, read in chunks (result files can be hundreds of MB)."""
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def file_part(text: str) -> str:
    """A name as one file-name component: kept as it is when harmless (so the names already on disk stay), else
    its unsafe characters replaced and a hash of the original appended, so that a name such as
    imagefolder:../../x never climbs out of its folder and two names never meet in one file."""
    safe = re.sub(r"[^A-Za-z0-9._+=-]", "_", text)
    if safe == text and text.strip("."):
        return text
    return f"{safe.strip('.') or '_'}-{hashlib.sha256(text.encode()).hexdigest()[:8]}"


def _first_file(folder: Path) -> Path:
    """The nearest ancestor of `folder` (itself included) that exists but is not a folder."""
    for place in (folder, *folder.parents):
        if place.exists():
            return place if not place.is_dir() else folder
    return folder


def check_output(path: str | os.PathLike, what: str = "--out", folder: bool = False) -> Path:
    """Refuse, before any work, an output place that cannot be written: a file path naming a folder (or a folder
    path naming a file), a parent that is a file, or a folder where nothing can be created. Creates nothing."""
    target = Path(path)
    if target.is_dir() and not folder:
        raise ConfigError(f"{what} {target} is a folder; give a file name inside it")
    if target.exists() and not target.is_dir() and folder:
        raise ConfigError(f"{what} {target} is a file; give a folder")
    parent = target if folder and target.is_dir() else target.parent
    existing = parent
    while not existing.exists():
        existing = existing.parent
    if not existing.is_dir():
        raise ConfigError(f"{what} {target}: cannot write there, {existing} is a file, not a folder")
    try:
        probe = tempfile.NamedTemporaryFile(prefix=".dsdistill-probe.", dir=existing)
        probe.close()
    except OSError as err:
        raise ConfigError(f"{what} {target}: cannot write in {existing} ({err.strerror or err}); "
                          f"choose a writable place") from None
    return target
