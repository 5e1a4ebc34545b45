"""The HTTP service: GET /health, GET /model, POST /segment and the web page at GET /, on FastAPI."""

from __future__ import annotations

import asyncio
import contextlib
from concurrent.futures import Executor
from dataclasses import dataclass
from importlib import resources

import numpy as np
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.middleware.cors import CORSMiddleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import ClientDisconnect

from pixelwise.predict import keep_mask
from pixelwise.segmenter import enlarged, shrunk
from pixelwise.serve.batching import Batcher, Busy
from pixelwise.serve.outputs import MEDIA_TYPES, OUTPUTS, render
from pixelwise.serve.uploads import UploadError, decode_upload

FIELD = "image"  # the multipart field that carries the photo
PAGE_FILES = {
    "/": ("index.html", "text/html"), "/app.js": ("app.js", "text/javascript"), "/style.css": ("style.css", "text/css"),
}  # fmt: skip
PAGE_POLICY = (
    "default-src 'self'; img-src 'self' blob: data:; object-src 'none'; base-uri 'none'; form-action 'none'; "
    "frame-ancestors 'none'"
)


@dataclass(frozen=True)
class ServeSettings:
    """Limits and batching of the service."""

    max_upload_mb: float = 20.0
    max_megapixels: float = 50.0
    max_side: int = 2048  # photos are segmented at this size at most, masks answered at their own size
    max_batch: int = 4
    max_pending: int = 32  # photos admitted at once; past it, 503 with Retry-After
    cors_origins: tuple[str, ...] = ()
    trusted_hosts: tuple[str, ...] = ()  # Host headers answered (a loopback server's names); empty: any
    upload_seconds: float = 30.0  # an upload not received by then is answered 408, freeing its place
    engine: str = "torch"  # what runs the model, shown by GET /model


def _error(status: int, message: str, headers: dict | None = None) -> JSONResponse:
    """A JSON error answer: {"error": message}."""
    return JSONResponse({"error": message}, status_code=status, headers=headers)


class UploadLimit:
    """ASGI middleware: a request body over `max_bytes` is answered 413, by its Content-Length or as it streams."""

    def __init__(self, app, max_bytes: int):
        self.app, self.max_bytes = app, max_bytes

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        message = f"the upload is larger than the server's limit of {self.max_bytes / 2**20:g} MB"
        length = dict(scope["headers"]).get(b"content-length", b"0")
        if not length.isdigit():
            return await _error(400, "the Content-Length header is not a number")(scope, receive, send)
        if int(length) > self.max_bytes:
            return await _error(413, message)(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            event = await receive()
            received += len(event.get("body", b""))
            if received > self.max_bytes:
                raise HTTPException(413, message)
            return event

        return await self.app(scope, limited_receive, send)


def _check_query(output: str, keep: str | None, class_names: tuple[str, ...]) -> None:
    """Refuse an unknown `output`, a `keep` without output=blur, or classes to keep that the model lacks."""
    if output not in OUTPUTS:
        raise UploadError(400, f"unknown output {output!r}; choose one of {', '.join(OUTPUTS)}")
    if keep is not None and output != "blur":
        raise UploadError(400, "keep chooses the classes output=blur keeps sharp; add output=blur")
    if output == "blur":
        try:
            keep_mask(np.zeros(1, dtype=np.uint8), class_names, keep)  # the classes are checked before any work
        except ValueError as error:
            raise UploadError(400, f"keep: {error}") from None


async def _uploaded_photo(request: Request) -> tuple[bytes, str]:
    """The bytes and file name of the photo in the multipart field FIELD."""
    form = await request.form(max_files=1, max_fields=8)
    try:
        upload = form.get(FIELD)
        if upload is None:
            raise UploadError(400, f"no field {FIELD!r}: send the photo as multipart/form-data field {FIELD!r}")
        if not isinstance(upload, UploadFile):
            raise UploadError(400, f"field {FIELD!r} holds text, not a file")
        return await upload.read(), (upload.filename or FIELD)[-100:]
    finally:
        await form.close()


def _page_file(name: str) -> bytes:
    """A file of the web page, shipped in the package."""
    return resources.files("pixelwise.serve").joinpath("static", name).read_bytes()


def _answer_errors_as_json(app: FastAPI) -> None:
    """Every refusal and failure as {"error": ...} with its status; a client that left gets nothing to read."""

    @app.exception_handler(UploadError)
    async def upload_error(request: Request, error: UploadError) -> JSONResponse:
        return _error(error.status, str(error))

    @app.exception_handler(Busy)
    async def busy(request: Request, error: Busy) -> JSONResponse:
        return _error(503, str(error), {"Retry-After": str(error.retry_after)})

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, error: HTTPException) -> JSONResponse:
        return _error(error.status_code, str(error.detail), error.headers)

    @app.exception_handler(ClientDisconnect)
    async def gone(request: Request, error: ClientDisconnect) -> Response:
        return Response(status_code=400)  # nobody reads it: the client left during its upload

    @app.exception_handler(Exception)
    async def failure(request: Request, error: Exception) -> JSONResponse:
        return _error(500, f"the server failed to segment the photo ({type(error).__name__}: {error})")

    @app.exception_handler(RequestValidationError)
    async def bad_request(request: Request, error: RequestValidationError) -> JSONResponse:
        problem = error.errors()[0]
        return _error(400, f"{'.'.join(map(str, problem.get('loc', ())))}: {problem.get('msg', 'invalid')}")


def create_app(model, settings: ServeSettings = ServeSettings(), executor: Executor | None = None) -> FastAPI:
    """The service for `model` (a Segmenter or OnnxSegmenter: class names, palette, `segment_photos`).

    The model runs on `executor` (default: a worker thread of its own).
    """
    batcher = Batcher(
        model.segment_photos, max_batch=settings.max_batch, max_pending=settings.max_pending, executor=executor
    )

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="pixelwise", docs_url=None, redoc_url=None, openapi_url=None, lifespan=lifespan)
    app.state.batcher = batcher
    app.add_middleware(UploadLimit, max_bytes=int(settings.max_upload_mb * 2**20))
    if settings.trusted_hosts:  # a page on another site cannot reach a loopback server by renaming itself
        app.add_middleware(TrustedHostMiddleware, allowed_hosts=list(settings.trusted_hosts))
    if settings.cors_origins:
        app.add_middleware(CORSMiddleware, allow_origins=list(settings.cors_origins), allow_methods=["GET", "POST"])

    _answer_errors_as_json(app)

    @app.get("/health")
    async def health() -> dict:
        return {"status": "ok"}

    record = model.model_record

    @app.get("/model")
    async def describe() -> dict:
        return {
            "name": record.get("name"), "encoder": record.get("encoder"), "num_classes": len(model.class_names),
            "class_names": list(model.class_names), "palette": [list(color) for color in model.palette],
            "engine": settings.engine, "outputs": list(OUTPUTS), "max_upload_mb": settings.max_upload_mb,
            "max_side": settings.max_side,
        }  # fmt: skip

    @app.post("/segment")
    async def segment(request: Request, output: str = "mask", keep: str | None = None) -> Response:
        _check_query(output, keep, model.class_names)
        batcher.admit()
        try:
            try:
                data, name = await asyncio.wait_for(_uploaded_photo(request), settings.upload_seconds)
            except asyncio.TimeoutError:
                raise UploadError(408, f"the upload took longer than {settings.upload_seconds:g} s") from None
            max_pixels = int(settings.max_megapixels * 1e6)
            photo = await run_in_threadpool(decode_upload, data, name, max_pixels=max_pixels)
            small = shrunk(photo, settings.max_side)
            mask = enlarged(await batcher.segment(np.asarray(small)), photo.size)
            body = await run_in_threadpool(render, output, photo, mask, model, keep)
        finally:
            batcher.release()
        return Response(body, media_type=MEDIA_TYPES[output])

    for route, (name, media_type) in PAGE_FILES.items():
        app.add_api_route(route, _page_route(_page_file(name), media_type), methods=["GET"], include_in_schema=False)
    return app


def _page_route(content: bytes, media_type: str):
    """A route answering one file of the web page, under PAGE_POLICY."""

    async def page_file() -> Response:
        return Response(content, media_type=media_type, headers={"Content-Security-Policy": PAGE_POLICY})

    return page_file
