"""The model on the main thread, HTTP on another: torch's CPU kernels ran slower when called from a worker thread."""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future

import uvicorn

GRACE_SECONDS = 10  # how long a shutdown waits for requests under way before closing their connections


class MainThreadExecutor(Executor):
    """An Executor whose calls run one at a time on the thread that calls `run_while`."""

    def __init__(self):
        self._jobs: queue.SimpleQueue = queue.SimpleQueue()
        self._closed = False

    def submit(self, fn, /, *args, **kwargs) -> Future:
        """Queue `fn(*args, **kwargs)` for `run_while`; its Future."""
        if self._closed:
            raise RuntimeError("cannot schedule new calls after shutdown")
        future: Future = Future()
        self._jobs.put((future, fn, args, kwargs))
        return future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """Take no more calls; those queued still run while `run_while` does."""
        self._closed = True

    def run_while(self, condition: Callable[[], bool], tick: Callable[[], None] = lambda: None) -> None:
        """Run queued calls on this thread while `condition()` holds, calling `tick()` at least every 0.1 s."""
        while condition():
            tick()
            try:
                job = self._jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            try:
                _run(*job)
            except BaseException:  # Ctrl-C during the call: its request fails, the caller shuts down
                if not job[0].done():
                    job[0].set_exception(RuntimeError("the server was interrupted"))
                raise

    def fail_queued(self) -> None:
        """Give every call still queued an error: nothing will run it."""
        self._closed = True
        while True:
            try:
                future = self._jobs.get_nowait()[0]
            except queue.Empty:
                return
            if future.set_running_or_notify_cancel():
                future.set_exception(RuntimeError("the server stopped"))


def _run(future: Future, fn, args: tuple, kwargs: dict) -> None:
    """Run one queued call into its Future, unless it was cancelled."""
    if not future.set_running_or_notify_cancel():
        return
    try:
        result = fn(*args, **kwargs)
    except Exception as error:
        future.set_exception(error)
    else:
        future.set_result(result)


def serve_with_model_on_main_thread(app, executor: MainThreadExecutor, on_start: Callable[[], None], **config) -> bool:
    """Run uvicorn with `config` on a second thread and `executor`'s calls on this one, until the server stops.

    `on_start()` runs once the server listens. Ctrl-C or SIGTERM shut it down: requests under
    way get up to GRACE_SECONDS to be answered; a second Ctrl-C stops at once. False when the
    server never started (uvicorn has logged why: the port is taken, say).
    """
    server = uvicorn.Server(uvicorn.Config(app, timeout_graceful_shutdown=GRACE_SECONDS, **config))
    http_thread = threading.Thread(target=server.run, name="pixelwise-http")
    announced = []

    def announce_once() -> None:
        if server.started and not announced:
            announced.append(True)
            on_start()

    def stop(*_) -> None:
        server.should_exit = True

    previous = signal.signal(signal.SIGTERM, stop)
    http_thread.start()
    try:
        try:
            executor.run_while(http_thread.is_alive, announce_once)
        except KeyboardInterrupt:
            stop()
            try:
                executor.run_while(http_thread.is_alive)
            except KeyboardInterrupt:
                server.force_exit = True
    finally:
        signal.signal(signal.SIGTERM, previous)
        stop()
        executor.fail_queued()  # a request still waiting for the model gets an error, not a wait without end
        http_thread.join()
    return server.started or bool(announced)
