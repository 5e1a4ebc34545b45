"""Pascal VOC 2012 download: temporary file, SHA-1 check, rename, safe extraction."""

from __future__ import annotations

import hashlib
import os
import tarfile
import urllib.error
import urllib.request
from pathlib import Path, PurePosixPath

from tqdm import tqdm

from pixelwise.data.voc import find_voc_root, is_voc_tree
from pixelwise.errors import DownloadError

VOC2012_ARCHIVE = "VOCtrainval_11-May-2012.tar"
VOC2012_SHA1 = "4e443f8a2eca6b1dac8a6c57641b67dd40621a49"
VOC2012_URL = f"http://host.robots.ox.ac.uk/pascal/VOC/voc2012/{VOC2012_ARCHIVE}"
CHUNK_BYTES = 1 << 20


def sha1_of(path: Path) -> str:
    """Hex SHA-1 of a file, read in chunks."""
    digest = hashlib.sha1()
    with open(path, "rb") as handle:
        for chunk in iter(lambda: handle.read(CHUNK_BYTES), b""):
            digest.update(chunk)
    return digest.hexdigest()


def download_file(
    url: str, destination: Path, sha1: str | None = None, *, progress: bool = True, timeout: float = 60
) -> Path:
    """Fetch `url` into `destination` via a `.part` file, verifying its SHA-1 before the rename."""
    partial = destination.with_name(destination.name + ".part")
    destination.parent.mkdir(parents=True, exist_ok=True)
    digest = hashlib.sha1()
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response, open(partial, "wb") as handle:
            total = int(response.headers.get("Content-Length") or 0) or None
            with tqdm(total=total, unit="B", unit_scale=True, desc=destination.name, disable=not progress) as bar:
                for chunk in iter(lambda: response.read(CHUNK_BYTES), b""):
                    handle.write(chunk)
                    digest.update(chunk)
                    bar.update(len(chunk))
    except (urllib.error.URLError, OSError, ValueError) as error:
        partial.unlink(missing_ok=True)
        if isinstance(error, urllib.error.HTTPError):
            reason = f"HTTP {error.code} {error.reason}"
        else:
            reason = getattr(error, "reason", error)
        raise DownloadError(
            f"could not download {url} ({reason}); fetch it another way, place it at {destination} and run again"
        ) from None
    if sha1 is not None and digest.hexdigest() != sha1:
        partial.unlink()
        raise DownloadError(f"{url}: SHA-1 {digest.hexdigest()} does not match the expected {sha1}; file discarded")
    os.replace(partial, destination)
    return destination


def _unsafe_reason(member: tarfile.TarInfo) -> str | None:
    """Why extracting `member` could write outside the destination, or None when it is safe."""
    path = PurePosixPath(member.name)
    if path.is_absolute() or member.name.startswith("\\") or ".." in path.parts:
        return "path leaves the destination folder"
    if member.issym() or member.islnk():
        target = PurePosixPath(member.linkname)
        if target.is_absolute() or ".." in (path.parent / target).parts:
            return "link points outside the destination folder"
    if member.isdev():
        return "device files are not extracted"
    return None


def safe_extract(archive: Path, destination: Path) -> None:
    """Extract a tar archive, refusing it whole if any member would land outside `destination`."""
    try:
        with tarfile.open(archive) as tar:
            members = tar.getmembers()
            for member in members:
                reason = _unsafe_reason(member)
                if reason:
                    raise DownloadError(f"{archive}: refused member {member.name!r}: {reason}")
            if hasattr(tarfile, "data_filter"):
                tar.extractall(destination, members, filter="data")
            else:  # Python < 3.11.4: the checks above are the only guard
                tar.extractall(destination, members)
    except (tarfile.TarError, OSError) as error:
        raise DownloadError(f"{archive}: cannot extract ({error}); delete it and download again") from None


def download_voc2012(
    root: Path | str, *, url: str = VOC2012_URL, sha1: str = VOC2012_SHA1, progress: bool = True
) -> Path:
    """Make `root/VOCdevkit/VOC2012` exist and return it; nothing is fetched if it already does."""
    root = Path(root)
    if is_voc_tree(root):
        return find_voc_root(root)
    archive = root / VOC2012_ARCHIVE
    if not archive.is_file():
        download_file(url, archive, sha1, progress=progress)
    elif sha1_of(archive) != sha1:
        raise DownloadError(f"{archive}: SHA-1 does not match {sha1}; delete the file and run again")
    safe_extract(archive, root)
    return find_voc_root(root)
