"""An HTTP server on 127.0.0.1 that answers `{}` to everything and records every request.

It stands for a URL a launcher chose: a test passes when it recorded nothing.
"""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any


@dataclass
class CountingServer:
    url: str
    hits: list[tuple[str, str, str]] = field(default_factory=list)  # method, path, Authorization


@contextmanager
def counting_server() -> Iterator[CountingServer]:
    """Start a recording server in a thread; stop it on exit."""
    running = CountingServer(url="")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:  # noqa: N802
            self._record()

        def do_POST(self) -> None:  # noqa: N802
            self._record()

        def _record(self) -> None:
            auth = self.headers.get("Authorization", "")
            running.hits.append((self.command, self.path, auth))
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", "2")
            self.end_headers()
            self.wfile.write(b"{}")

        def log_message(self, *args: Any) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    running.url = f"http://127.0.0.1:{server.server_address[1]}"
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield running
    finally:
        server.shutdown()
        server.server_close()
