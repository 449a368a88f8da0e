"""What the browser tests share: Debian's chromium, and an app served on 127.0.0.1 for the length of a test."""

from __future__ import annotations

import contextlib
import shutil
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest


def system_chromium() -> str:
    """The system chromium's path (browsers cannot be downloaded here); skips the test without one."""
    for name in ("chromium", "chromium-browser"):
        found = shutil.which(name)
        if found:
            return found
    pytest.skip("no system chromium (apt-get install chromium; .ci/run does); browsers cannot be downloaded here")


@contextlib.contextmanager
def served(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn on a free loopback port in a thread; yields its base URL."""
    import uvicorn

    srv = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=srv.run, daemon=True)
    thread.start()
    try:
        for _ in range(600):  # bounded: 60 s
            if srv.started:
                break
            time.sleep(0.1)
        assert srv.started, "the server did not start"
        yield f"http://127.0.0.1:{srv.servers[0].sockets[0].getsockname()[1]}"
    finally:
        srv.should_exit = True
        thread.join(60)
