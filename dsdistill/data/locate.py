"""Where a dataset's files are: the search order of DESIGN.md ("Data"), then a torchvision download.

Order: the `root` argument (--data-root), $DSDISTILL_DATA, /usr/share/datasets/<name> (Debian's
dataset-fashion-mnist installs there), the user cache, and only then torchvision's download into
the cache. Inside each base we accept the files directly, in <base>/<name>/, or in torchvision's
own layout (e.g. FashionMNIST/raw/), so a folder that torchvision filled works as is.
"""
from __future__ import annotations

import os
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import DataNotFoundError
from .spec import DatasetSpec

SYSTEM_DATASETS = Path("/usr/share/datasets")  # module constant so tests can point it elsewhere


@dataclass(frozen=True)
class Location:
    folder: Path   # the folder that holds the native files
    source: str    # for RealData.source: the folder, or that torchvision downloaded into it


def cache_dir(name: str) -> Path:
    """~/.cache/dsdistill/<name>, honouring $XDG_CACHE_HOME."""
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "dsdistill" / name


def search_bases(spec: DatasetSpec, root: str | os.PathLike | None) -> list[Path]:
    if spec.folder is not None:
        return [spec.folder]
    bases = [Path(root).expanduser()] if root is not None else []
    if os.environ.get("DSDISTILL_DATA"):
        bases.append(Path(os.environ["DSDISTILL_DATA"]).expanduser())
    return bases + [SYSTEM_DATASETS / spec.name, cache_dir(spec.name)]


def candidate_folders(spec: DatasetSpec, base: Path) -> list[Path]:
    subdirs = ("",) if spec.folder is not None else ("", spec.name, *spec.layouts)
    return list(dict.fromkeys(base / s for s in subdirs))


def find_files(spec: DatasetSpec, root: str | os.PathLike | None) -> Path | None:
    """The first folder in search order that holds every file the reader needs; only stats files."""
    for base in search_bases(spec, root):
        for folder in candidate_folders(spec, base):
            if folder.is_dir() and not spec.reader.missing(folder):
                return folder
    return None


def _torchvision_fetch(spec: DatasetSpec, target: Path) -> None:
    """Run torchvision's downloader in a scratch folder, then move each finished top-level entry into
    `target`, so an interrupted download never leaves a half-filled folder that looks complete."""
    import torchvision.datasets  # deferred: only needed for downloads

    assert spec.download is not None
    target.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=".download-", dir=target))
    try:
        dataset_class = getattr(torchvision.datasets, spec.download.class_name)
        for kwargs in spec.download.splits:
            dataset_class(root=str(scratch), download=True, **kwargs)
        for entry in scratch.iterdir():
            destination = target / entry.name
            if destination.is_dir():
                shutil.rmtree(destination)
            os.replace(entry, destination)
    except (OSError, RuntimeError, ValueError) as exc:  # URLError and HTTPError are OSErrors
        raise DataNotFoundError(
            f"downloading {spec.name} with torchvision failed ({type(exc).__name__}: {exc}); check the "
            f"network or pass --data-root DIR holding its files{spec.hint}") from None
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def not_found_message(spec: DatasetSpec, root: str | os.PathLike | None, download: bool) -> str:
    looked = ", ".join(str(b) for b in search_bases(spec, root))
    if spec.folder is not None:
        return f"{spec.name}: no {spec.files_wanted} in {spec.folder}"
    advice = f"pass --data-root DIR holding {spec.files_wanted}{spec.hint}"
    if spec.download is not None and not download:
        advice += ", or allow the download"
    return f"{spec.name} not found (looked in {looked}); {advice}"


def locate(spec: DatasetSpec, root: str | os.PathLike | None = None, *, download: bool = True) -> Location:
    """Find the dataset's files, downloading them into the cache as a last resort. A root that is given must
    exist: a mistyped --data-root is a mistake to report, not a reason to search elsewhere."""
    if root is not None and not Path(root).is_dir():
        raise DataNotFoundError(f"--data-root {root}: no such folder; give the folder that holds the {spec.name} "
                                f"files, or leave it out to search the usual places")
    folder = find_files(spec, root)
    if folder is not None:
        return Location(folder, str(folder))
    if download and spec.download is not None and spec.folder is None:
        target = cache_dir(spec.name)
        _torchvision_fetch(spec, target)
        for folder in candidate_folders(spec, target):
            if folder.is_dir() and not spec.reader.missing(folder):
                return Location(folder, f"torchvision download into {folder}")
    raise DataNotFoundError(not_found_message(spec, root, download))
