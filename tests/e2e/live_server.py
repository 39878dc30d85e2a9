"""The real service on a free loopback port, served by uvicorn in a background thread."""
from __future__ import annotations

import socket
import threading
import time

import httpx
import uvicorn

from service.app import create_app
from service.settings import Settings


class LiveServer:
    """Start with `start()`, stop with `stop()`; `url` is http://127.0.0.1:<port>."""

    def __init__(self, settings: Settings):
        self.settings = settings
        # Binding port 0 ourselves and handing the socket to uvicorn leaves no window for a port clash.
        self._socket = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._socket.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._socket.bind(("127.0.0.1", 0))
        self.url = f"http://127.0.0.1:{self._socket.getsockname()[1]}"
        config = uvicorn.Config(create_app(settings), log_level="warning", lifespan="on")
        self._server = uvicorn.Server(config)
        self._thread = threading.Thread(target=self._server.run, kwargs={"sockets": [self._socket]},
                                        name="e2e-uvicorn", daemon=True)

    def start(self, timeout: float = 120.0) -> "LiveServer":
        self._thread.start()
        deadline = time.monotonic() + timeout
        while not self._server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError("the test server did not start")
            time.sleep(0.05)
        return self

    def wait_ready(self, timeout: float = 1800.0) -> None:
        """Block until /readyz answers 200 (a first index build embeds the corpus, if not cached)."""
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            last = httpx.get(f"{self.url}/readyz", timeout=10)
            if last.status_code == 200:
                return
            time.sleep(0.5)
        raise TimeoutError(f"service not ready: {last.text if last is not None else 'no answer'}")

    def stop(self) -> None:
        self._server.should_exit = True
        self._thread.join(timeout=30)
        self._socket.close()
