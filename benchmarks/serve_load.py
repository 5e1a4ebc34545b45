"""`pixelwise serve` under load on loopback: throughput and latency at 1, 4 and 16 clients, memory over 1,000 requests.

The server runs as its own process (`pixelwise serve` on 127.0.0.1). Each client is a thread
that sends real photos (CamVid val, resized to 500x375 and JPEG-encoded) one after another to
POST /segment and reads the mask; every level is bounded by a request count and a deadline.
The reference is the server's work done offline by the same model on the same engine and
photos in this process: decode, `predict`, the mask's PNG. Offline rounds and server levels
take turns (--rounds times), so the machine's drift touches both sides alike, and medians
are compared. Memory is the server's resident set size after a warm-up and after every
MEMORY_STEP of --memory-requests more requests. Writes JSON to --out.
"""

from __future__ import annotations

import argparse
import http.client
import io
import json
import statistics
import tempfile
import threading
import time
from pathlib import Path

import numpy as np
from PIL import Image

from common import find_camvid, result_line, run_script, untrained_segmenter
from pixelwise.checkpoint import model_fields, save_checkpoint
from pixelwise.data.labels import palette_png
from pixelwise.runtime import keep_freed_memory
from pixelwise.serve.engines import load_for_serving
from pixelwise.serve.launch import launch_server

PHOTO_SIZE = (500, 375)
WARM_UP_REQUESTS = 300
BOUNDARY = "pixelwise-load-test"
MEMORY_STEP = 250  # requests between readings of the server's memory


def photo_files(camvid: Path, count: int) -> list[bytes]:
    """`count` CamVid val photos resized to PHOTO_SIZE, as JPEG files in memory."""
    files = []
    for path in sorted((camvid / "images" / "val").iterdir())[:count]:
        buffer = io.BytesIO()
        Image.open(path).convert("RGB").resize(PHOTO_SIZE).save(buffer, format="JPEG", quality=90)
        files.append(buffer.getvalue())
    return files


def untrained_checkpoint(folder: Path, name: str) -> Path:
    """A checkpoint of `name`, untrained, with VOC's 21 classes: speed does not depend on the weights."""
    path = folder / f"{name}.pt"
    save_checkpoint(model_fields(untrained_segmenter(name)), path)
    return path


def offline_round(model, photos: list[bytes]) -> list[float]:
    """Seconds per photo of the server's work done offline: decode, `predict`, the mask's PNG."""
    seconds = []
    for data in photos:
        started = time.perf_counter()
        mask = model.predict(Image.open(io.BytesIO(data)).convert("RGB"))
        palette_png(mask, model.palette).save(io.BytesIO(), format="PNG")
        seconds.append(time.perf_counter() - started)
    return seconds


def rss_bytes(pid: int) -> int:
    """Resident set size of process `pid`."""
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) * 1024
    raise RuntimeError(f"no VmRSS for process {pid}")


def multipart_body(photo: bytes) -> bytes:
    """A multipart/form-data body (boundary BOUNDARY) carrying `photo` in the field 'image'."""
    head = f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="image"; filename="photo.jpg"\r\n'
    head += "Content-Type: image/jpeg\r\n\r\n"
    return head.encode() + photo + f"\r\n--{BOUNDARY}--\r\n".encode()


def load_level(port: int, photos: list[bytes], clients: int, requests: int, deadline_s: float) -> dict:
    """`clients` threads sending `requests` photos in all (bounded by `deadline_s`); rate, latencies, refusals.

    Each client keeps one connection and sends bodies built beforehand, so that the load
    generator, which shares the CPU with the server, spends as little of it as it can.
    """
    bodies = [multipart_body(photo) for photo in photos]
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}"}
    latencies, statuses, lock = [], [], threading.Lock()
    deadline = time.perf_counter() + deadline_s
    counter = iter(range(requests))

    def client() -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        try:
            while time.perf_counter() < deadline:
                with lock:
                    number = next(counter, None)
                if number is None:
                    return
                started = time.perf_counter()
                connection.request("POST", "/segment", body=bodies[number % len(bodies)], headers=headers)
                answer = connection.getresponse()
                answer.read()
                with lock:
                    statuses.append(answer.status)
                    if answer.status == 200:
                        latencies.append(time.perf_counter() - started)
        finally:
            connection.close()

    started = time.perf_counter()
    threads = [threading.Thread(target=client) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    elapsed = time.perf_counter() - started
    return {
        "clients": clients, "ok": len(latencies), "refused_503": statuses.count(503),
        "other_errors": len(statuses) - len(latencies) - statuses.count(503),
        "images_per_s": len(latencies) / elapsed, "latencies": latencies,
    }  # fmt: skip


def measure(args: argparse.Namespace, checkpoint: Path, photos: list[bytes]) -> dict:
    """Offline rounds and server levels in turns, then the server's memory over --memory-requests."""
    keep_freed_memory()  # as every pixelwise command, the server included, does
    model, engine = load_for_serving(checkpoint, args.engine, "cpu")
    offline_round(model, photos)  # warm-up
    server, url = launch_server(str(checkpoint), "--engine", args.engine, "--max-batch", str(args.max_batch))
    port, offline, levels = int(url.rsplit(":", 1)[1]), [], {clients: [] for clients in args.levels}
    try:
        load_level(port, photos, 1, len(photos), args.deadline)  # warm-up
        for _ in range(args.rounds):
            offline += offline_round(model, photos * 2)
            for clients in args.levels:
                levels[clients].append(load_level(port, photos, clients, args.requests, args.deadline))
        load_level(port, photos, 4, WARM_UP_REQUESTS, args.deadline)
        readings, served = [rss_bytes(server.pid)], 0
        for _ in range(0, args.memory_requests, MEMORY_STEP):
            served += load_level(port, photos, 4, MEMORY_STEP, args.deadline)["ok"]
            readings.append(rss_bytes(server.pid))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return {
        "engine": engine, "max_batch": args.max_batch, "rounds": args.rounds,
        "offline": {"images_per_s": 1 / statistics.median(offline), "median_s": statistics.median(offline)},
        "levels": [summary(clients, runs) for clients, runs in levels.items()],
        "memory": {"rss_mb_every_step": [reading / 2**20 for reading in readings], "step": MEMORY_STEP,
                   "requests": served, "growth_kb_per_request": (readings[-1] - readings[0]) / 1024 / max(1, served)},
    }  # fmt: skip


def summary(clients: int, runs: list[dict]) -> dict:
    """One level's rounds: the median rate, latency percentiles over every request, refusals and errors summed."""
    latencies = np.concatenate([run["latencies"] for run in runs]) if any(run["ok"] for run in runs) else [np.nan]
    p50, p95, p99 = np.percentile(latencies, [50, 95, 99])
    return {
        "clients": clients, "images_per_s": statistics.median(run["images_per_s"] for run in runs),
        "p50_s": p50, "p95_s": p95, "p99_s": p99, "ok": sum(run["ok"] for run in runs),
        "refused_503": sum(run["refused_503"] for run in runs),
        "other_errors": sum(run["other_errors"] for run in runs),
    }  # fmt: skip


def report(results: dict) -> None:
    """The table of levels against the offline reference, and the memory readings."""
    offline = results["offline"]
    print(f"offline: {offline['images_per_s']:.2f} img/s, one photo {offline['median_s'] * 1000:.0f} ms (median)")
    for level in results["levels"]:
        print(
            f"{level['clients']:>3} clients: {level['images_per_s']:6.2f} img/s "
            f"({level['images_per_s'] / offline['images_per_s']:.2f} of offline), p50/p95/p99 "
            f"{level['p50_s'] * 1000:.0f}/{level['p95_s'] * 1000:.0f}/{level['p99_s'] * 1000:.0f} ms "
            f"({level['p99_s'] / offline['median_s']:.2f}x one offline photo), {level['ok']} answered, "
            f"503: {level['refused_503']}, other errors: {level['other_errors']}"
        )
    memory = results["memory"]
    shown = " -> ".join(f"{reading:.0f}" for reading in memory["rss_mb_every_step"])
    print(f"server memory (MB, every {memory['step']} requests): {shown}; "
          f"{memory['growth_kb_per_request']:.1f} KB per request")  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--checkpoint", help="a .pt or .onnx model (default: an untrained --model with 21 classes)")
    parser.add_argument("--model", default="fcn8s", help="the untrained model when no --checkpoint (default: fcn8s)")
    parser.add_argument("--engine", default="auto", choices=("auto", "torch", "onnxruntime"))
    parser.add_argument("--max-batch", type=int, default=4, help="the server's --max-batch (default: 4, its own)")
    parser.add_argument("--levels", type=int, nargs="+", default=[1, 4, 16], help="concurrent clients per level")
    parser.add_argument("--requests", type=int, default=48, help="requests per level and round (default: 48)")
    parser.add_argument("--rounds", type=int, default=3, help="turns of offline and server levels (default: 3)")
    parser.add_argument("--memory-requests", type=int, default=1000, help="requests between memory readings")
    parser.add_argument("--deadline", type=float, default=600, help="seconds at most per level (default: 600)")
    parser.add_argument("--camvid", help="CamVid folder (default: ../shared/data/camvid)")
    parser.add_argument("--out", default="benchmarks/results/serve_load.json")
    args = parser.parse_args()
    photos = photo_files(find_camvid(args.camvid), 8)
    with tempfile.TemporaryDirectory() as folder:
        checkpoint = Path(args.checkpoint) if args.checkpoint else untrained_checkpoint(Path(folder), args.model)
        results = measure(args, checkpoint, photos)
    results["checkpoint"] = args.checkpoint or f"untrained {args.model}"
    report(results)
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(results, indent=1))
    offline, levels = results["offline"], results["levels"]
    print(result_line(
        top_level_over_offline=levels[-1]["images_per_s"] / offline["images_per_s"],
        first_level_p99_over_offline=levels[0]["p99_s"] / offline["median_s"],
        growth_kb_per_request=results["memory"]["growth_kb_per_request"],
    ))  # fmt: skip


if __name__ == "__main__":
    run_script(main)
