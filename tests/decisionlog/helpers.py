"""Decision log test helpers: a log collector on 127.0.0.1, and a strict event check."""

from __future__ import annotations

import gzip
import http.server
import json
import threading
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema

from attestpolicy.decisionlog import DecisionLogEvent, event_json_schema

__all__ = ["Collector", "Received", "checked", "read_log"]

_VALIDATOR = jsonschema.Draft202012Validator(event_json_schema())
_GATE_SECONDS = 60.0  # a hung collector lets go at the latest then (a failing test)


def checked(event: dict[str, Any] | bytes | str) -> dict[str, Any]:
    """``event`` (a dict or its JSON) after checking it against the JSON Schema and the
    strict model; the dict."""
    document: dict[str, Any] = event if isinstance(event, dict) else json.loads(event)
    _VALIDATOR.validate(document)
    DecisionLogEvent.model_validate(document)
    return document


def read_log(path: Path) -> list[dict[str, Any]]:
    """Every event of a JSON lines file, each checked."""
    return [checked(line) for line in path.read_text(encoding="utf-8").splitlines()]


@dataclass(frozen=True)
class Received:
    """One upload as the collector saw it."""

    path: str
    headers: dict[str, str]
    body: bytes
    status: int

    @property
    def events(self) -> list[dict[str, Any]]:
        """The gzip JSON array's events, each checked."""
        array = json.loads(gzip.decompress(self.body))
        assert isinstance(array, list)
        return [checked(event) for event in array]


class Collector:
    """A decision log service (OPA's API) on 127.0.0.1, in a thread.

    It answers every POST with the next of ``script`` (then ``status``), after waiting
    for ``gate`` (open unless a test closes it: a hung collector). ``arrived`` is set when
    a request has been read.
    """

    def __init__(self) -> None:
        self.received: list[Received] = []
        self.status = 200
        self.script: deque[int] = deque()
        self.gate = threading.Event()
        self.gate.set()
        self.arrived = threading.Event()
        self.port = 0
        self._lock = threading.Lock()
        self._server: http.server.ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        """``http://127.0.0.1:<port>``."""
        return f"http://127.0.0.1:{self.port}"

    def start(self, port: int = 0) -> Collector:
        """Listen on ``port`` (0: any free port) and serve in a daemon thread."""
        collector = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
                collector.arrived.set()
                collector.gate.wait(_GATE_SECONDS)
                with collector._lock:
                    status = collector.script.popleft() if collector.script else collector.status
                    collector.received.append(
                        Received(self.path, dict(self.headers.items()), body, status)
                    )
                self.send_response(status)
                if 300 <= status < 400:
                    self.send_header("Location", "/elsewhere")
                self.send_header("Content-Length", "0")
                self.end_headers()

            def log_message(self, format: str, *args: Any) -> None:
                """Quiet."""

        server = http.server.ThreadingHTTPServer(("127.0.0.1", port), Handler)
        server.daemon_threads = True
        self._server = server
        self.port = server.server_address[1]
        threading.Thread(target=server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        """Stop listening (a hung request is let go first)."""
        self.gate.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def delivered(self) -> list[dict[str, Any]]:
        """The events of every upload answered with a 2xx, in order."""
        with self._lock:
            uploads = [r for r in self.received if 200 <= r.status < 300]
        return [event for upload in uploads for event in upload.events]
