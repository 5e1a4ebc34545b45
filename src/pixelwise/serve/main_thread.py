"""The model on the main thread, HTTP on another: torch's CPU kernels ran slower when called from a worker thread."""

from __future__ import annotations

import queue
import signal
import threading
from collections.abc import Callable
from concurrent.futures import Executor, Future

import uvicorn


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

    def run_while(self, condition: Callable[[], bool]) -> None:
        """Run queued calls on this thread while `condition()` holds (checked at least every 0.1 s)."""
        while condition():
            try:
                future, fn, args, kwargs = self._jobs.get(timeout=0.1)
            except queue.Empty:
                continue
            if not future.set_running_or_notify_cancel():
                continue
            try:
                result = fn(*args, **kwargs)
            except Exception as error:
                future.set_exception(error)
            except BaseException:  # Ctrl-C during a call: its request fails, the caller shuts down
                future.set_exception(RuntimeError("the server was interrupted"))
                raise
            else:
                future.set_result(result)


def serve_with_model_on_main_thread(app, executor: MainThreadExecutor, **config) -> bool:
    """Run uvicorn with `config` on a second thread and `executor`'s calls on this one, until the server stops.

    Ctrl-C or SIGTERM shut the server down gracefully: requests under way are answered first.
    False when the server never started (uvicorn has logged why: the port is taken, say).
    """
    server = uvicorn.Server(uvicorn.Config(app, **config))
    http_thread = threading.Thread(target=server.run, name="pixelwise-http")

    def stop(*_) -> None:
        server.should_exit = True

    previous = signal.signal(signal.SIGTERM, stop)
    http_thread.start()
    try:
        try:
            executor.run_while(http_thread.is_alive)
        except KeyboardInterrupt:
            stop()
            executor.run_while(http_thread.is_alive)
    finally:
        signal.signal(signal.SIGTERM, previous)
        http_thread.join()
    return server.started
