"""The environment tests run in: the tiny offline model's settings, free loopback ports."""

from __future__ import annotations

import socket
import time

TINY_ENV = {
    "TELLTALE_EMBEDDER_MODEL_NAME": "telltale-tiny",
    "TELLTALE_EMBEDDER_PRETRAINED": "none",
    "TELLTALE_EMBEDDER_SEED": "0",
}


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def wait_for_port(port: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.1)
    raise RuntimeError(f"broker did not listen on 127.0.0.1:{port} within {timeout}s")
