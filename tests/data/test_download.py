import functools
import hashlib
import http.server
import io
import tarfile
import threading

import pytest

from pixelwise.data.download import VOC2012_ARCHIVE, download_file, download_voc2012, safe_extract
from pixelwise.errors import DownloadError


class CountingHandler(http.server.SimpleHTTPRequestHandler):
    """Serves a folder and counts GET requests."""

    requests = 0

    def do_GET(self):
        type(self).requests += 1
        super().do_GET()

    def log_message(self, *args):
        pass


@pytest.fixture
def served(tmp_path):
    """(folder, base URL) of an HTTP server on 127.0.0.1 serving `folder`."""
    folder = tmp_path / "served"
    folder.mkdir()
    CountingHandler.requests = 0
    server = http.server.ThreadingHTTPServer(
        ("127.0.0.1", 0), functools.partial(CountingHandler, directory=str(folder))
    )
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield folder, f"http://127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def make_voc_archive(path, synthetic_voc):
    """A tar with VOCdevkit/VOC2012 at its top, like the real one; returns its SHA-1."""
    with tarfile.open(path, "w") as tar:
        tar.add(synthetic_voc, arcname="VOCdevkit/VOC2012")
    return hashlib.sha1(path.read_bytes()).hexdigest()


def test_download_verifies_extracts_and_does_not_repeat(served, synthetic_voc, tmp_path):
    folder, url = served
    sha1 = make_voc_archive(folder / VOC2012_ARCHIVE, synthetic_voc)
    root = tmp_path / "data"
    voc = download_voc2012(root, url=f"{url}/{VOC2012_ARCHIVE}", sha1=sha1, progress=False)
    assert voc == root / "VOCdevkit" / "VOC2012"
    assert (voc / "ImageSets" / "Segmentation" / "train.txt").read_text() == (
        synthetic_voc / "ImageSets" / "Segmentation" / "train.txt"
    ).read_text()
    assert (root / VOC2012_ARCHIVE).is_file() and not (root / f"{VOC2012_ARCHIVE}.part").exists()
    assert CountingHandler.requests == 1
    assert download_voc2012(root, url=f"{url}/{VOC2012_ARCHIVE}", sha1=sha1, progress=False) == voc
    assert CountingHandler.requests == 1, "an extracted tree is not downloaded again"


def test_wrong_checksum_is_refused_and_nothing_is_kept(served, synthetic_voc, tmp_path):
    folder, url = served
    make_voc_archive(folder / VOC2012_ARCHIVE, synthetic_voc)
    root = tmp_path / "data"
    with pytest.raises(DownloadError, match="does not match the expected 0000"):
        download_voc2012(root, url=f"{url}/{VOC2012_ARCHIVE}", sha1="0" * 40, progress=False)
    assert list(root.iterdir()) == []


def test_archive_placed_by_hand_is_used_without_download(served, synthetic_voc, tmp_path):
    _, url = served
    root = tmp_path / "data"
    root.mkdir()
    sha1 = make_voc_archive(root / VOC2012_ARCHIVE, synthetic_voc)
    download_voc2012(root, url=f"{url}/missing.tar", sha1=sha1, progress=False)
    assert CountingHandler.requests == 0
    assert (root / "VOCdevkit" / "VOC2012" / "JPEGImages").is_dir()


def test_offline_error_names_url_and_what_to_do(tmp_path):
    url = "http://127.0.0.1:9/VOCtrainval_11-May-2012.tar"  # port 9 (discard): nothing listens
    with pytest.raises(DownloadError, match=r"could not download http://127\.0\.0\.1:9/.*place it at .*VOCtrainval"):
        download_voc2012(tmp_path, url=url, progress=False)


def test_missing_file_on_server_is_a_download_error(served, tmp_path):
    _, url = served
    with pytest.raises(DownloadError, match="404"):
        download_file(f"{url}/nothing.tar", tmp_path / "x.tar", progress=False)
    assert not (tmp_path / "x.tar.part").exists()


@pytest.mark.parametrize("member", ["../escape.txt", "/tmp/absolute-pixelwise.txt", "VOCdevkit/../../escape.txt"])
def test_path_traversal_members_are_refused(tmp_path, member):
    archive = tmp_path / "evil.tar"
    with tarfile.open(archive, "w") as tar:
        data = b"owned"
        info = tarfile.TarInfo(member)
        info.size = len(data)
        tar.addfile(info, io.BytesIO(data))
    destination = tmp_path / "out"
    destination.mkdir()
    with pytest.raises(DownloadError, match="refused member"):
        safe_extract(archive, destination)
    assert list(destination.iterdir()) == [] and not (tmp_path / "escape.txt").exists()


def test_symlink_out_of_the_tree_is_refused(tmp_path):
    archive = tmp_path / "link.tar"
    with tarfile.open(archive, "w") as tar:
        info = tarfile.TarInfo("VOCdevkit/link")
        info.type, info.linkname = tarfile.SYMTYPE, "../../../etc/passwd"
        tar.addfile(info)
    with pytest.raises(DownloadError, match="link points outside"):
        safe_extract(archive, tmp_path / "out")
