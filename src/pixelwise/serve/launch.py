"""`pixelwise serve` as a child process on a free loopback port, for tests, load tests and scripts."""

from __future__ import annotations

import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request

from pixelwise.errors import PixelwiseError

# Headless Chromium on a machine without internet: no background connections that would be refused.
CHROMIUM_FLAGS = (
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
)  # fmt: skip


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def launch_server(checkpoint: str, *options: str, wait_s: float = 120.0, **popen) -> tuple[subprocess.Popen, str]:
    """Start `pixelwise serve --checkpoint checkpoint *options` on a free port; the process and its base URL.

    Returns once GET /health answers 200; raises PixelwiseError if the server exits first or
    does not answer within `wait_s`, and stops it. The caller terminates the process.
    """
    port = free_port()
    command = [sys.executable, "-m", "pixelwise", "serve", "--checkpoint", str(checkpoint), "--port", str(port)]
    process = subprocess.Popen([*command, *options], **popen)
    url = f"http://127.0.0.1:{port}"
    deadline = time.monotonic() + wait_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise PixelwiseError(f"pixelwise serve exited with code {process.returncode} before answering")
        try:
            with urllib.request.urlopen(f"{url}/health", timeout=1) as answer:
                if answer.status == 200:
                    return process, url
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            time.sleep(0.1)
    process.terminate()
    process.wait(timeout=30)
    raise PixelwiseError(f"pixelwise serve did not answer {url}/health within {wait_s:g} s")
