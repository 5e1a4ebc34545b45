"""`pixelwise serve`'s routes, outputs, limits and refusals, through FastAPI's test client (no socket)."""

import io
import re
import socket
import struct
import threading
import zlib

import httpx
import numpy as np
import pytest
from fastapi.testclient import TestClient
from PIL import Image

from pixelwise.cli import main
from pixelwise.cli_arguments import web_origin
from pixelwise.data.labels import palette_png
from pixelwise.models import build_model
from pixelwise.segmenter import Segmenter
from pixelwise.serve.app import ServeSettings, create_app

CLASS_NAMES = ("background", "person", "dog")
PALETTE = ((0, 0, 0), (192, 128, 128), (64, 0, 128))


@pytest.fixture(scope="module")
def model() -> Segmenter:
    network = build_model("fcn32s", num_classes=len(CLASS_NAMES))
    return Segmenter(network, model_name="fcn32s", class_names=CLASS_NAMES, palette=PALETTE).for_inference()


@pytest.fixture(scope="module")
def client(model):
    with TestClient(create_app(model)) as client:
        yield client


def jpeg(width: int = 75, height: int = 50, seed: int = 0) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 256, size=(height, width, 3), dtype=np.uint8)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="JPEG")
    return buffer.getvalue()


def png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims `width` x `height` pixels, with almost no pixel data behind it."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(b"\0" * 64)) + chunk(b"IEND", b"")
    )


def post(client, data: bytes = None, query: str = "", *, form: dict | None = None, **kwargs):
    """POST /segment with `data` as the photo (a random JPEG by default), or with the text fields `form`."""
    files = {"image": ("photo.jpg", jpeg() if data is None else data, "image/jpeg")}
    return client.post(f"/segment{query}", files=kwargs.pop("files", files), data=form, **kwargs)


def test_health_and_model_describe_the_service(client):
    assert client.get("/health").json() == {"status": "ok"}
    described = client.get("/model").json()
    assert described["name"] == "fcn32s" and described["class_names"] == list(CLASS_NAMES)
    assert described["palette"] == [list(color) for color in PALETTE]


def test_mask_is_a_palette_png_at_the_photo_size_equal_to_predict(client, model):
    photo = jpeg(131, 97, seed=1)
    answer = post(client, photo)
    assert answer.status_code == 200 and answer.headers["content-type"] == "image/png"
    mask = Image.open(io.BytesIO(answer.content))
    assert mask.mode == "P" and mask.size == (131, 97)
    expected = model.predict(Image.open(io.BytesIO(photo)))
    assert np.array_equal(np.asarray(mask), expected)
    assert answer.content == _png_bytes(palette_png(expected, PALETTE)), "the same file `predict` would write"


def _png_bytes(image: Image.Image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def test_json_overlay_and_blur_outputs(client, model):
    photo = jpeg(64, 48, seed=2)
    counts = post(client, photo, "?output=json").json()
    expected = model.predict(Image.open(io.BytesIO(photo)))
    assert (counts["width"], counts["height"]) == (64, 48)
    assert {entry["name"]: entry["pixels"] for entry in counts["classes"]} == {
        CLASS_NAMES[index]: int((expected == index).sum()) for index in np.unique(expected)
    }
    overlay = post(client, photo, "?output=overlay")
    assert overlay.headers["content-type"] == "image/jpeg"
    width, height = Image.open(io.BytesIO(overlay.content)).size
    assert width >= 64 and height > 48, "the photo above a legend"
    for query in ("?output=blur", "?output=blur&keep=person,dog"):
        blurred = post(client, photo, query)
        assert blurred.status_code == 200 and Image.open(io.BytesIO(blurred.content)).size == (64, 48)


BAD_REQUESTS = [
    ("empty body", dict(files=None, content=b"", headers={"content-type": "multipart/form-data; boundary=x"}), 400,
     "no field 'image'"),
    ("missing field", dict(files={"photo": ("a.jpg", jpeg(), "image/jpeg")}), 400, "no field 'image'"),
    ("text field", dict(files=None, form={"image": "photo.jpg"}), 400, "holds text, not a file"),
    ("empty file", dict(data=b""), 400, "the upload is empty"),
    ("not an image", dict(data=b"%PDF-1.4 not a photo"), 415, "not an image this server reads"),
    ("truncated JPEG", dict(data=jpeg(200, 200)[:1500]), 400, "cannot decode the image"),
    ("decompression bomb", dict(data=png_header_only(100_000, 100_000)), 413, "refused before decoding"),
    ("over the pixel limit", dict(data=png_header_only(8000, 8000)), 413, "8000x8000 is more than"),
    ("unknown output", dict(query="?output=gif"), 400, "unknown output 'gif'"),
    ("unknown class to keep", dict(query="?output=blur&keep=cat"), 400, "unknown class 'cat'"),
    ("keep without blur", dict(query="?keep=person"), 400, "add output=blur"),
    ("empty keep", dict(query="?output=blur&keep=,"), 400, "expected class names"),
]  # fmt: skip


@pytest.mark.parametrize("name, request_parts, status, message", BAD_REQUESTS, ids=[row[0] for row in BAD_REQUESTS])
def test_a_bad_upload_gets_a_json_4xx_naming_the_problem(client, name, request_parts, status, message):
    parts = dict(request_parts)
    answer = post(client, parts.pop("data", None), parts.pop("query", ""), **parts)
    assert answer.status_code == status, answer.text
    assert message in answer.json()["error"]


def test_after_every_bad_upload_a_good_photo_still_succeeds(model):
    with TestClient(create_app(model, ServeSettings(max_upload_mb=1))) as client:
        for _, request_parts, _, _ in BAD_REQUESTS:
            parts = dict(request_parts)
            assert post(client, parts.pop("data", None), parts.pop("query", ""), **parts).status_code >= 400
        too_big = post(client, b"\xff\xd8" + bytes(2 * 2**20))
        assert too_big.status_code == 413 and "limit of 1 MB" in too_big.json()["error"]
        assert post(client, jpeg(), "?output=json").status_code == 200


def test_an_upload_streamed_without_a_length_is_cut_at_the_limit(model):
    with TestClient(create_app(model, ServeSettings(max_upload_mb=1))) as client:

        def chunks():
            yield b"--x\r\ncontent-disposition: form-data; name=image; filename=a.jpg\r\n\r\n"
            for _ in range(40):
                yield bytes(64 * 1024)

        answer = client.post("/segment", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
        assert answer.status_code == 413


class GatedModel:
    """A model whose passes wait for `gate`, so a test can hold the server busy; it counts photos per pass."""

    def __init__(self, model):
        self.model, self.gate, self.batch_sizes = model, threading.Event(), []
        self.class_names, self.palette, self.model_record = model.class_names, model.palette, model.model_record

    def segment_photos(self, photos):
        self.gate.wait(timeout=30)
        self.batch_sizes.append(len(photos))
        return self.model.segment_photos(photos)


def wait_until(condition, seconds: float = 30.0) -> None:
    """Poll `condition` every 20 ms until it holds, failing after `seconds`."""
    pause = threading.Event()
    for _ in range(int(seconds / 0.02)):
        if condition():
            return
        pause.wait(0.02)
    raise AssertionError("timed out waiting")


def test_past_the_bound_the_server_answers_503_with_retry_after_then_recovers(model):
    gated = GatedModel(model)
    app = create_app(gated, ServeSettings(max_pending=2, max_batch=4))
    with TestClient(app) as client:
        answers = []
        threads = [threading.Thread(target=lambda: answers.append(post(client, jpeg()))) for _ in range(2)]
        for thread in threads:
            thread.start()
        wait_until(lambda: app.state.batcher.pending == 2)
        refused = post(client, jpeg())
        assert refused.status_code == 503 and int(refused.headers["retry-after"]) >= 1
        assert "busy" in refused.json()["error"]
        gated.gate.set()
        for thread in threads:
            thread.join(timeout=30)
        assert [answer.status_code for answer in answers] == [200, 200]
        assert post(client, jpeg()).status_code == 200
        assert app.state.batcher.pending == 0, "every admitted photo was counted out"


def test_photos_of_one_size_that_wait_together_run_as_one_batch(model):
    gated = GatedModel(model)
    app = create_app(gated, ServeSettings(max_batch=3, max_pending=16))
    with TestClient(app) as client:
        answers = []
        sizes = [(40, 30)] * 5 + [(50, 30)] * 2
        threads = [
            threading.Thread(target=lambda size=size: answers.append(post(client, jpeg(*size), "?output=json")))
            for size in sizes
        ]
        for thread in threads:
            thread.start()
        wait_until(lambda: app.state.batcher.pending == len(sizes))  # all in: one in a pass, the rest queued
        gated.gate.set()
        for thread in threads:
            thread.join(timeout=30)
        assert sorted((answer.json()["width"], answer.json()["height"]) for answer in answers) == sorted(sizes)
        # The first pass took the photos that came before it; the rest waited and share passes of up to 3.
        assert sum(gated.batch_sizes) == 7 and max(gated.batch_sizes) == 3, gated.batch_sizes
        assert len(gated.batch_sizes) <= 4, gated.batch_sizes


def test_the_page_is_served_with_its_script_and_no_cors_unless_asked(client, model):
    page = client.get("/")
    assert page.status_code == 200 and '<script src="/app.js"' in page.text
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'fetch("/segment' in client.get("/app.js").text
    for name in ("/", "/app.js", "/style.css"):
        addresses = re.findall(r"(?:https?:)?//[a-z0-9-]+\.[a-z0-9.-]+", client.get(name).text, re.IGNORECASE)
        assert addresses == [], f"{name} names no other site"
    preflight = {"origin": "https://example.org", "access-control-request-method": "POST"}
    assert "access-control-allow-origin" not in client.options("/segment", headers=preflight).headers
    with TestClient(create_app(model, ServeSettings(cors_origins=("https://example.org",)))) as cors_client:
        allowed = cors_client.options("/segment", headers=preflight)
        assert allowed.headers["access-control-allow-origin"] == "https://example.org"


def test_the_server_never_reads_a_path_named_in_a_request(client, model):
    photo = jpeg(40, 30, seed=5)
    named = client.post("/segment?output=json", files={"image": ("/etc/hostname", photo, "image/jpeg")})
    assert named.status_code == 200 and (named.json()["width"], named.json()["height"]) == (40, 30)
    as_text = client.post("/segment", files={"image": ("photo.jpg", b"/etc/hostname", "text/plain")})
    assert as_text.status_code == 415, "a path sent as the photo is bytes that are not an image"


def test_cli_serve_refuses_bad_settings_and_warns_on_all_addresses(tmp_path, capsys):
    with pytest.raises(SystemExit) as exit_code:
        main(["serve", "--checkpoint", str(tmp_path / "absent.pt"), "--max-upload-mb", "0"])
    assert exit_code.value.code == 2 and "must be above 0" in capsys.readouterr().err
    refused = ("not a url", "https://example.org/page", "ftp://example.org", "https://example.org:99999",
        "https://example.org:", "http://[::1", "https://user@example.org")  # fmt: skip
    for origin in refused:
        with pytest.raises(SystemExit) as exit_code:
            main(["serve", "--checkpoint", str(tmp_path / "absent.pt"), "--cors-origin", origin])
        err = capsys.readouterr().err
        assert exit_code.value.code == 2 and "expected an origin" in err and repr(origin) in err
        assert len(err.strip().splitlines()) == 1
    as_sent = {"HTTPS://Example.org:08443/": "https://example.org:8443", "https://example.org:443":
        "https://example.org", "https://例え.jp": "https://xn--r8jz45g.jp", "http://[::1]:8000": "http://[::1]:8000",
        "*": "*"}  # fmt: skip
    assert {given: web_origin(given) for given in as_sent} == as_sent, "as a browser sends them"
    assert main(["serve", "--checkpoint", str(tmp_path / "absent.pt")]) == 2
    assert "absent.pt" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(tmp_path / "m.onnx"), "--engine", "torch"]) == 2
    assert "the torch engine needs the .pt" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(tmp_path / "m.onnx"), "--device", "cuda"]) == 2
    assert "runs models on the CPU here, not on 'cuda'" in capsys.readouterr().err
    assert main(["serve", "--checkpoint", str(tmp_path / "absent.pt"), "--host", "0.0.0.0"]) == 2
    assert "lets other machines use this model" in capsys.readouterr().err


def test_auto_engine_runs_fcn_on_torch_and_other_models_on_onnx_runtime(tmp_path):
    from pixelwise.checkpoint import model_fields, save_checkpoint
    from pixelwise.onnx_model import OnnxSegmenter
    from pixelwise.serve.engines import load_for_serving

    photo = np.random.default_rng(3).integers(0, 256, size=(45, 70, 3), dtype=np.uint8)
    for name, engine in (("fcn8s", "torch"), ("unet", "onnxruntime")):
        segmenter = Segmenter(
            build_model(name, num_classes=3), model_name=name, class_names=CLASS_NAMES, palette=PALETTE
        )
        save_checkpoint(model_fields(segmenter), tmp_path / f"{name}.pt")
        served, chosen = load_for_serving(tmp_path / f"{name}.pt", "auto", "cpu")
        assert chosen == engine and isinstance(served, OnnxSegmenter) == (engine == "onnxruntime")
        agreement = (served.predict(photo) == segmenter.for_inference().predict(photo)).mean()
        assert agreement >= 0.999
    torch_served, chosen = load_for_serving(tmp_path / "unet.pt", "torch", "cpu")
    assert chosen == "torch" and isinstance(torch_served, Segmenter)


class FailingModel(GatedModel):
    """A model whose first pass raises and whose second answers too few masks; later passes are right."""

    def segment_photos(self, photos):
        self.batch_sizes.append(len(photos))
        if len(self.batch_sizes) == 1:
            raise RuntimeError("out of memory")
        return self.model.segment_photos(photos)[:0] if len(self.batch_sizes) == 2 else super().segment_photos(photos)


def test_a_failing_model_gets_a_json_500_and_the_server_goes_on(model):
    failing = FailingModel(model)
    failing.gate.set()
    app = create_app(failing, ServeSettings())
    with TestClient(app, raise_server_exceptions=False) as client:
        first, second = post(client, jpeg()), post(client, jpeg())
        assert first.status_code == 500 and "out of memory" in first.json()["error"]
        assert second.status_code == 500 and "0 masks for 1 photos" in second.json()["error"]
        assert post(client, jpeg()).status_code == 200
        assert app.state.batcher.pending == 0


def test_an_exported_model_is_served_like_a_checkpoint(model, tmp_path):
    from pixelwise.export import export_onnx
    from pixelwise.onnx_model import load_onnx

    export_onnx(model, tmp_path / "model.onnx")
    with TestClient(create_app(load_onnx(tmp_path / "model.onnx"), ServeSettings(engine="onnxruntime"))) as client:
        described = client.get("/model").json()
        assert described["engine"] == "onnxruntime" and described["class_names"] == list(CLASS_NAMES)
        photo = jpeg(90, 70, seed=4)
        answer = post(client, photo)
        expected = model.predict(Image.open(io.BytesIO(photo)))
        assert (np.asarray(Image.open(io.BytesIO(answer.content))) == expected).mean() >= 0.999


def test_a_loopback_server_answers_only_its_own_host_names(model):
    settings = ServeSettings(trusted_hosts=("127.0.0.1", "localhost"))
    with TestClient(create_app(model, settings), base_url="http://localhost") as client:
        assert client.get("/health").status_code == 200
        assert client.get("/health", headers={"host": "attacker.example"}).status_code == 400


def http_exchange(port: int, request: bytes, seconds: float = 30) -> bytes:
    """Send raw `request` bytes to 127.0.0.1:`port` and read the answer until the server closes or `seconds` pass."""
    with socket.create_connection(("127.0.0.1", port), timeout=seconds) as connection:
        try:
            connection.sendall(request)
        except OSError:
            pass  # the server may answer and close before the whole body is sent
        answer = b""
        while chunk := connection.recv(65536):
            answer += chunk
            if b"\r\n\r\n" in answer and b'"error"' in answer:
                break
        return answer


def test_a_real_server_refuses_slow_and_oversized_uploads_and_goes_on(tmp_path):
    from pixelwise.checkpoint import model_fields, save_checkpoint
    from pixelwise.serve.launch import launch_server

    network = build_model("fcn32s", num_classes=len(CLASS_NAMES))
    segmenter = Segmenter(network, model_name="fcn32s", class_names=CLASS_NAMES, palette=PALETTE)
    save_checkpoint(model_fields(segmenter), tmp_path / "model.pt")
    with (tmp_path / "stderr.txt").open("wb") as log:
        process, url = launch_server(
            str(tmp_path / "model.pt"), "--max-upload-mb", "1", "--upload-timeout", "1", stderr=log
        )
    port = int(url.rsplit(":", 1)[1])
    head = "POST /segment HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: multipart/form-data; boundary=x\r\n"
    try:
        slow = http_exchange(port, f"{head}Content-Length: 1000\r\n\r\n--x\r\n".encode())
        assert slow.startswith(b"HTTP/1.1 408") and b"longer than 1 s" in slow
        big = http_exchange(port, f"{head}Content-Length: {3 * 2**20}\r\n\r\n".encode() + bytes(3 * 2**20))
        assert big.startswith(b"HTTP/1.1 413")
        files = {"image": ("photo.jpg", jpeg(), "image/jpeg")}
        assert httpx.post(f"{url}/segment", files=files, timeout=60).status_code == 200
        huge = {"image": ("huge.png", png_header_only(10_000, 10_000), "image/png")}  # past Pillow's warning
        assert httpx.post(f"{url}/segment", files=huge, timeout=60).status_code == 413
    finally:
        process.terminate()
        process.wait(timeout=30)
    assert "DecompressionBombWarning" not in (tmp_path / "stderr.txt").read_text(), "the 413 says it, once"
