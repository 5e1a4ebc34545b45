"""Dynamic batching: photos that arrive while the model is busy run together, one size per batch, with a bound."""

from __future__ import annotations

import asyncio
import math
import time
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, ThreadPoolExecutor

import numpy as np

SegmentPhotos = Callable[[np.ndarray], np.ndarray]  # (N, H, W, 3) uint8 -> (N, H, W) uint8


class Busy(Exception):
    """Too many photos are admitted already; `retry_after` is a fair guess of the seconds until there is room."""

    def __init__(self, retry_after: int):
        super().__init__(f"the server is busy; retry in {retry_after} s")
        self.retry_after = retry_after


class Batcher:
    """Runs `segment_photos` on `executor` (default: a worker thread), on batches of up to `max_batch` photos of a size.

    No photo waits for a batch to fill: the worker takes every same-sized photo queued when it is
    free, so a lone client sees one photo's latency and concurrent clients share passes.
    `admit` bounds the photos admitted (queued or being read) to `max_pending`.
    """

    def __init__(
        self, segment_photos: SegmentPhotos, *, max_batch: int, max_pending: int, executor: Executor | None = None
    ):
        self.segment_photos = segment_photos
        self.max_batch, self.max_pending = max_batch, max_pending
        self.pending = 0
        self.seconds_per_photo = 0.1
        self._queue: deque[tuple[np.ndarray, asyncio.Future]] = deque()
        self._wake = asyncio.Event()
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="pixelwise-model")
        self._worker: asyncio.Task | None = None

    def start(self) -> None:
        """Start the worker on the running event loop."""
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        """Stop the worker; photos still queued get an error."""
        if self._worker is not None:
            self._worker.cancel()
            await asyncio.gather(self._worker, return_exceptions=True)
        for _, future in self._queue:
            if not future.done():
                future.set_exception(RuntimeError("the server is shutting down"))
        self._executor.shutdown(wait=True)

    def admit(self) -> None:
        """Count one more photo in, or raise Busy when `max_pending` are in already; pair with `release`."""
        if self.pending >= self.max_pending:
            raise Busy(max(1, math.ceil(self.pending * self.seconds_per_photo)))
        self.pending += 1

    def release(self) -> None:
        """Count one admitted photo out."""
        self.pending -= 1

    async def segment(self, photo: np.ndarray) -> np.ndarray:
        """The (H, W) uint8 mask of one (H, W, 3) uint8 photo, computed in some batch."""
        future = asyncio.get_running_loop().create_future()
        self._queue.append((photo, future))
        self._wake.set()
        return await future

    def _next_batch(self) -> list[tuple[np.ndarray, asyncio.Future]]:
        """The oldest queued photo and the queued photos of its size after it, up to `max_batch`; cancelled skipped."""
        batch: list[tuple[np.ndarray, asyncio.Future]] = []
        kept: deque[tuple[np.ndarray, asyncio.Future]] = deque()
        while self._queue:
            photo, future = self._queue.popleft()
            if future.done():  # its client went away
                continue
            if len(batch) < self.max_batch and (not batch or photo.shape == batch[0][0].shape):
                batch.append((photo, future))
            else:
                kept.append((photo, future))
        self._queue = kept
        return batch

    async def _run(self) -> None:
        """Forever: wait for photos, run them batch by batch, hand each its mask or the error."""
        loop = asyncio.get_running_loop()
        while True:
            await self._wake.wait()
            self._wake.clear()
            while batch := self._next_batch():
                await self._run_batch(loop, batch)

    async def _run_batch(self, loop: asyncio.AbstractEventLoop, batch: list) -> None:
        """Run one batch on the executor and resolve every photo's future: its mask or the error."""
        started = time.perf_counter()
        try:
            stacked = np.stack([photo for photo, _ in batch])
            masks = await loop.run_in_executor(self._executor, self.segment_photos, stacked)
            if len(masks) != len(batch):
                raise RuntimeError(f"the model answered {len(masks)} masks for {len(batch)} photos")
        except Exception as error:  # every photo of the batch gets the error; the worker goes on
            for _, future in batch:
                if not future.done():
                    future.set_exception(error)
            return
        elapsed = (time.perf_counter() - started) / len(batch)
        self.seconds_per_photo = 0.8 * self.seconds_per_photo + 0.2 * elapsed
        for (_, future), mask in zip(batch, masks):
            if not future.done():
                future.set_result(mask)
