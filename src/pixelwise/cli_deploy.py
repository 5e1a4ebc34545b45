"""`pixelwise export` and `pixelwise serve`: a trained model as an ONNX file, and over HTTP with a web page."""

from __future__ import annotations

import argparse
import sys
import warnings
from pathlib import Path

from pixelwise.cli_arguments import (
    command_parser, output_file, overwrite_argument, positive_int, real_number, web_origin, whole_number,
)  # fmt: skip
from pixelwise.errors import PixelwiseError
from pixelwise.serve.engines import ENGINES

LOOPBACK_HOSTS = ("127.0.0.1", "localhost", "::1")
LOOPBACK_NAMES = ("127.0.0.1", "localhost", "[::1]")  # Host headers a loopback server answers (no DNS rebinding)
SERVE_EXTRA = "pip install 'pixelwise[serve]'"


def run_export(args: argparse.Namespace) -> int:
    """pixelwise export."""
    from pixelwise.export import export_onnx, written_by_export
    from pixelwise.onnx_model import is_onnx_file
    from pixelwise.photo_files import refuse_what_is_in_the_way
    from pixelwise.predict import load_model

    if is_onnx_file(args.checkpoint):
        raise PixelwiseError(f"{args.checkpoint}: already an exported model; export a .pt checkpoint")
    if not is_onnx_file(args.out):
        raise PixelwiseError(f"--out {args.out}: name the file NAME.onnx")
    if Path(args.out).is_dir():
        raise PixelwiseError(f"--out {args.out}: is a folder; name the file to write")
    if not Path(args.out).parent.is_dir():
        parent = Path(args.out).parent
        raise PixelwiseError(f"--out {args.out}: {parent} {'is a file' if parent.exists() else 'does not exist'}")
    refuse_what_is_in_the_way([Path(args.out)], args.overwrite, ours=written_by_export)
    model = load_model(args.checkpoint, "cpu")
    try:
        export_onnx(model, args.out, logits=args.logits)
    except OSError as error:  # replace_file's temporary file beside it, named in the error
        raise PixelwiseError(f"--out {args.out}: cannot write ({error.strerror or error})") from None
    outputs = "class indices and logits" if args.logits else "class indices"
    print(f"{args.checkpoint} -> {args.out} ({model.model_name}, {len(model.class_names)} classes; {outputs})")
    return 0


def add_export(subparsers) -> None:
    """pixelwise export's options."""
    parser = command_parser(
        subparsers,
        "export",
        run_export,
        "write a checkpoint as an ONNX file: uint8 RGB photos (N, H, W, 3) of any size in, class indices out",
        "  pixelwise export --checkpoint runs/camvid/best.pt --out camvid.onnx\n"
        "  pixelwise predict --checkpoint camvid.onnx street.jpg --out predictions",
    )
    parser.add_argument("--checkpoint", required=True, metavar="CKPT", help="a .pt file written by pixelwise train")
    parser.add_argument("--out", required=True, type=output_file, metavar="FILE.onnx", help="the ONNX file to write")
    parser.add_argument(
        "--logits", action="store_true", help="also output the logits (N, classes, H, W) as float32, named 'logits'"
    )
    overwrite_argument(parser)


def size_limit(text: str) -> float:
    """An upload limit in MB or a photo limit in megapixels: above 0, at most 1024."""
    value = real_number(text)
    if not 0 < value <= 1024:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1024, got {text!r}")
    return value


def port_number(text: str) -> int:
    """A TCP port: 1 to 65535."""
    return whole_number(text, 1, 65535)


def run_serve(args: argparse.Namespace) -> int:
    """pixelwise serve."""
    try:
        from pixelwise.serve.app import ServeSettings, create_app
        from pixelwise.serve.engines import load_for_serving
        from pixelwise.serve.main_thread import MainThreadExecutor, serve_with_model_on_main_thread
    except ImportError as error:
        raise PixelwiseError(f"pixelwise serve needs {error.name or error}: {SERVE_EXTRA}") from None
    from PIL import Image

    from pixelwise.serve.uploads import MAX_PIXELS

    # Uploads are held to --max-megapixels from their header; Pillow's warning about large ones would only echo it.
    warnings.filterwarnings("ignore", category=Image.DecompressionBombWarning)
    if args.max_megapixels * 1e6 > MAX_PIXELS:
        raise PixelwiseError(f"--max-megapixels: at most {MAX_PIXELS // 10**6} (the image decoder's own limit)")
    if args.host not in LOOPBACK_HOSTS:
        print(
            f"pixelwise serve: warning: listening on {args.host} lets other machines use this model; "
            "it has no authentication",
            file=sys.stderr,
        )
    print(f"pixelwise serve: loading {args.checkpoint}", flush=True)
    model, engine = load_for_serving(args.checkpoint, args.engine, args.device)
    settings = ServeSettings(
        max_upload_mb=args.max_upload_mb, max_megapixels=args.max_megapixels, max_side=args.max_side,
        max_batch=args.max_batch, max_pending=args.max_pending, cors_origins=tuple(args.cors_origin), engine=engine,
        upload_seconds=args.upload_timeout,
        trusted_hosts=LOOPBACK_NAMES if args.host in LOOPBACK_HOSTS else (),
    )  # fmt: skip
    executor = MainThreadExecutor()
    app = create_app(model, settings, executor)
    shown_host = f"[{args.host}]" if ":" in args.host else args.host

    def announce() -> None:
        print(f"pixelwise serve: {model.model_name} on {engine}; open http://{shown_host}:{args.port}/", flush=True)

    config = dict(host=args.host, port=args.port, log_level="warning", access_log=False)
    if not serve_with_model_on_main_thread(app, executor, announce, **config):
        raise PixelwiseError(f"cannot listen on {shown_host}:{args.port} (the reason is on the line above)")
    return 0


def add_serve(subparsers) -> None:
    """pixelwise serve's options."""
    parser = command_parser(
        subparsers,
        "serve",
        run_serve,
        "serve a model over HTTP: a web page at /, POST /segment, GET /model and /health",
        "  pixelwise serve --checkpoint runs/voc/best.pt\n"
        "  curl -F image=@photo.jpg 'http://127.0.0.1:8000/segment?output=json'\n"
        "  curl -F image=@portrait.jpg 'http://127.0.0.1:8000/segment?output=blur&keep=person' -o blur.jpg",
    )
    parser.add_argument(
        "--checkpoint", required=True, metavar="CKPT", help="a .pt file written by pixelwise train, or a .onnx file"
    )
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on (default: 127.0.0.1, this machine)")
    parser.add_argument("--port", type=port_number, default=8000, help="(default: 8000)")
    parser.add_argument(
        "--engine", choices=ENGINES, default="auto",
        help="what runs the model; auto: torch for FCNs and on a GPU, ONNX Runtime otherwise (a .pt is exported at "
        "start) (default: auto)",
    )  # fmt: skip
    parser.add_argument("--device", default="auto", help="with the torch engine: auto, cpu or cuda (default: auto)")
    parser.add_argument(
        "--max-upload-mb", type=size_limit, default=20.0, help="larger uploads are refused with 413 (default: 20)"
    )
    parser.add_argument(
        "--max-megapixels", type=size_limit, default=50.0,
        help="photos with more pixels are refused with 413 before decoding (default: 50)",
    )  # fmt: skip
    parser.add_argument(
        "--max-side", type=positive_int, default=2048, help="segment larger photos at this size (default: 2048)"
    )
    parser.add_argument(
        "--upload-timeout", type=size_limit, default=30.0, metavar="SECONDS",
        help="an upload not received within this time is answered 408 (default: 30)",
    )  # fmt: skip
    parser.add_argument(
        "--max-batch", type=positive_int, default=4,
        help="photos of one size waiting together run as one batch, up to this many; 1 turns batching off (default: 4)",
    )  # fmt: skip
    parser.add_argument(
        "--max-pending", type=positive_int, default=32,
        help="photos in the server at once; more are answered 503 with Retry-After (default: 32)",
    )  # fmt: skip
    parser.add_argument(
        "--cors-origin", action="append", default=[], metavar="ORIGIN", type=web_origin,
        help="let pages from ORIGIN (https://example.org; * for any) call the API from a browser; repeat for more "
        "(default: none)",
    )  # fmt: skip
