"""An optional Prometheus endpoint: ``GET /metrics`` serves the latest heartbeat.

The agent calls :meth:`MetricsServer.publish` with each heartbeat it builds, so scraping and
the MQTT health topic always agree; nothing is computed per request.
"""

from __future__ import annotations

import http.server
import threading
from typing import Any

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"


class MetricsServer:
    """A tiny HTTP server in a daemon thread; ``close()`` stops it."""

    def __init__(self, host: str, port: int) -> None:
        self._text = b"# no heartbeat yet\n"
        self._lock = threading.Lock()
        server = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                if self.path.split("?", 1)[0] != "/metrics":
                    self.send_error(404, "only /metrics is served here")
                    return
                body = server.text()
                self.send_response(200)
                self.send_header("Content-Type", CONTENT_TYPE)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, format: str, *args: Any) -> None:
                pass  # scrapes every few seconds would flood the agent's log

        self._httpd = http.server.ThreadingHTTPServer((host, port), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, name="metrics", daemon=True
        )
        self._thread.start()

    @property
    def port(self) -> int:
        port: int = self._httpd.server_address[1]
        return port

    def publish(self, text: str) -> None:
        with self._lock:
            self._text = text.encode()

    def text(self) -> bytes:
        with self._lock:
            return self._text

    def close(self) -> None:
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(timeout=5)
