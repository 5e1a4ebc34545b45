"""Why `pixelwise serve` runs the model on its main thread: one photo's time called there and from a worker thread.

FCN-8s (untrained, 21 classes) segments one 500x375 photo through `segment_photos`, called
directly on the main thread or through a `Batcher` on its default worker thread, each in a
process of its own (as in the server, where torch runs on one thread only); the two kinds of
process take turns, --rounds each, and each reports the median of 20 calls.
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import subprocess
import sys
import time

import numpy as np

from common import result_line, run_script, untrained_segmenter
from pixelwise.runtime import keep_freed_memory
from pixelwise.segmenter import Segmenter
from pixelwise.serve.batching import Batcher

CALLS = 20


def main_thread_seconds(model: Segmenter, photo: np.ndarray) -> float:
    """Median seconds of `segment_photos` called on this thread."""
    seconds = []
    for _ in range(CALLS):
        started = time.perf_counter()
        model.segment_photos(photo[None])
        seconds.append(time.perf_counter() - started)
    return statistics.median(seconds[2:])


async def worker_thread_seconds(model: Segmenter, photo: np.ndarray) -> float:
    """Median seconds of one photo through a Batcher, which calls `segment_photos` on its worker thread."""
    batcher = Batcher(model.segment_photos, max_batch=1, max_pending=1)
    batcher.start()
    seconds = []
    for _ in range(CALLS):
        started = time.perf_counter()
        await batcher.segment(photo)
        seconds.append(time.perf_counter() - started)
    await batcher.stop()
    return statistics.median(seconds[2:])


def one_process(mode: str) -> None:
    """Build the model, then print the median milliseconds per photo on the `mode` thread."""
    keep_freed_memory()  # as `pixelwise serve` does
    model = untrained_segmenter("fcn8s").for_inference()
    photo = np.random.default_rng(0).integers(0, 256, size=(375, 500, 3), dtype=np.uint8)
    seconds = main_thread_seconds(model, photo) if mode == "main" else asyncio.run(worker_thread_seconds(model, photo))
    print(f"{seconds * 1000:.2f}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--mode", choices=("main", "worker"), help=argparse.SUPPRESS)  # one measuring process
    args = parser.parse_args()
    if args.mode:
        return one_process(args.mode)
    times = {"main": [], "worker": []}
    for _ in range(args.rounds):
        for mode in times:
            command = [sys.executable, __file__, "--mode", mode]
            output = subprocess.run(command, capture_output=True, text=True, check=True).stdout
            times[mode].append(float(output.split()[-1]))
        print(f"main thread {times['main'][-1]:.1f} ms, worker thread {times['worker'][-1]:.1f} ms", flush=True)
    print(result_line(worker_over_main=statistics.median(times["worker"]) / statistics.median(times["main"])))


if __name__ == "__main__":
    run_script(main)
