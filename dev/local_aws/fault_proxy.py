"""A fault-injecting HTTP proxy on loopback, in front of the local AWS stack.

Throttled or failing S3 cannot be caused in the emulator itself, so tests put this proxy
between the code and the stack: every request is forwarded unchanged, except those a
:class:`FaultRule` picks, which are answered as S3 answers under load (``503 SlowDown``,
``500 InternalError``) without reaching the stack. Clients see real HTTP errors and make
real retries; nothing in the code under test is patched.

    with FaultProxy(stack.endpoint_url, FaultRule(rate=1 / 3, seed=7)) as proxy:
        env["AWS_ENDPOINT_URL"] = proxy.endpoint_url

A *hold* keeps the requests a rule picks waiting (``proxy.hold(rule)``) until ``release()``:
a test knows the code is exactly there (mid-write, between two steps) and can kill the
process. Released requests are dropped unanswered by default, as a request in flight dies
with the process that sent it.
"""

from __future__ import annotations

import http.client
import random
import re
import threading
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import urlparse

__all__ = ["FaultProxy", "FaultRule"]

_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}
#: What AWS answers, by error code: (HTTP status, message, protocol). S3 speaks XML;
#: DynamoDB (and other JSON APIs) a JSON body with ``__type``.
ERRORS = {
    "SlowDown": (503, "Please reduce your request rate.", "xml"),
    "InternalError": (500, "We encountered an internal error. Please try again.", "xml"),
    "ExpiredToken": (400, "The provided token has expired.", "xml"),
    "ThrottlingException": (400, "Rate of requests exceeds the allowed throughput.", "json"),
    "InternalServerError": (500, "Internal server error", "json"),
    "UnrecognizedClientException": (
        400,
        "The security token included in the request is invalid.",
        "json",
    ),
    "ExpiredTokenException": (400, "The security token included in the request is expired", "json"),
    "AccessDeniedException": (400, "User is not authorized to perform this action", "json"),
    "ValidationException": (400, "Invalid ExportArn", "json"),
    "LimitExceededException": (400, "Too many concurrent exports", "json"),
}
_CREDENTIAL = re.compile(r"Credential=([^/,\s]+)/")


@dataclass
class FaultRule:
    """Which requests fail, and how: a share of those that match, reproducibly.

    ``rate`` is the probability a matching request fails (1.0: every one); ``methods``
    limits it (empty: all); ``path_contains`` limits it to paths holding that text;
    ``query_contains`` to query strings holding it (``uploadId`` picks multipart uploads);
    ``target_contains`` to JSON API operations (``X-Amz-Target``, e.g. ``DescribeExport``);
    ``access_keys`` to requests signed with one of those keys (an expired identity).
    ``error`` is the AWS error code answered (see :data:`ERRORS`).
    """

    rate: float = 0.0
    error: str = "SlowDown"
    methods: frozenset[str] = frozenset()
    path_contains: str = ""
    query_contains: str = ""
    target_contains: str = ""
    access_keys: frozenset[str] = frozenset()
    seed: int = 0
    _random: random.Random = field(init=False, repr=False)

    def __post_init__(self) -> None:
        self._random = random.Random(self.seed)

    def picks(self, method: str, path: str, query: str, headers: Any) -> bool:
        if self.methods and method not in self.methods:
            return False
        if self.path_contains not in path or self.query_contains not in query:
            return False
        if self.target_contains and self.target_contains not in headers.get("X-Amz-Target", ""):
            return False
        if self.access_keys:
            signed = _CREDENTIAL.search(headers.get("Authorization", ""))
            if not signed or signed.group(1) not in self.access_keys:
                return False
        return self._random.random() < self.rate


class FaultProxy:
    """The proxy: ``endpoint_url`` to give clients, ``counts`` of forwarded/failed requests."""

    def __init__(self, upstream: str, rule: FaultRule | None = None) -> None:
        parsed = urlparse(upstream)
        self.upstream = (parsed.hostname or "127.0.0.1", parsed.port or 80)
        self.rule = rule or FaultRule()
        self.counts = {"forwarded": 0, "failed": 0, "held": 0}
        self._hold: FaultRule | None = None
        self._released = threading.Event()
        self._forward_held = False
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self.endpoint_url = ""

    def hold(self, rule: FaultRule) -> None:
        """Keep the requests ``rule`` picks waiting until :meth:`release`."""
        with self._lock:
            self._released.clear()
            self._hold = rule

    def release(self, *, forward: bool = False) -> None:
        """Stop holding; the held requests are dropped unanswered, or forwarded late."""
        with self._lock:
            self._hold = None
            self._forward_held = forward
            self._released.set()

    def _held(self, method: str, path: str, query: str, headers: Any) -> bool:
        """Wait while a hold picks this request; False if it is to be dropped."""
        with self._lock:
            rule = self._hold
            if rule is None or not rule.picks(method, path, query, headers):
                return True
            self.counts["held"] += 1
        self._released.wait(timeout=600)
        return self._forward_held

    def _decide(self, method: str, path: str, query: str, headers: Any) -> bool:
        with self._lock:  # one random stream, so a seed replays the same faults in order
            failed = self.rule.picks(method, path, query, headers)
            self.counts["failed" if failed else "forwarded"] += 1
            return failed

    def start(self) -> FaultProxy:
        proxy = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, format: str, *args: Any) -> None:
                return

            def _body(self) -> bytes:
                if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                    chunks = []
                    while True:
                        size = int(self.rfile.readline().split(b";")[0].strip() or b"0", 16)
                        if size == 0:
                            while self.rfile.readline() not in (b"\r\n", b"\n", b""):
                                pass  # trailers
                            return b"".join(chunks)
                        chunks.append(self.rfile.read(size))
                        self.rfile.readline()
                length = int(self.headers.get("Content-Length") or 0)
                return self.rfile.read(length) if length else b""

            def _handle(self) -> None:
                body = self._body()
                path, _, query = self.path.partition("?")
                if not proxy._held(self.command, path, query, self.headers):
                    self.close_connection = True
                    return
                if proxy._decide(self.command, path, query, self.headers):
                    self._fail()
                    return
                headers = {
                    name: value
                    for name, value in self.headers.items()
                    if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length"
                }
                if body or self.command in ("PUT", "POST"):
                    headers["Content-Length"] = str(len(body))
                connection = http.client.HTTPConnection(*proxy.upstream, timeout=120)
                try:
                    connection.request(self.command, self.path, body=body, headers=headers)
                    response = connection.getresponse()
                    payload = response.read()
                    self.send_response(response.status, response.reason)
                    for name, value in response.getheaders():
                        if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                            self.send_header(name, value)
                    # A HEAD answer has no body but states the object's length: keep it.
                    length = (
                        response.getheader("Content-Length") if self.command == "HEAD" else None
                    )
                    self.send_header("Content-Length", length or str(len(payload)))
                    self.end_headers()
                    if self.command != "HEAD":
                        self.wfile.write(payload)
                finally:
                    connection.close()

            def _fail(self) -> None:
                code = proxy.rule.error
                status, message, protocol = ERRORS[code]
                if protocol == "json":
                    payload = (
                        f'{{"__type":"com.amazonaws.dynamodb.v20120810#{code}",'
                        f'"message":"{message}"}}'
                    ).encode()
                    content_type = "application/x-amz-json-1.0"
                else:
                    payload = (
                        f'<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>{code}</Code>'
                        f"<Message>{message}</Message><RequestId>fault-proxy</RequestId></Error>"
                    ).encode()
                    content_type = "application/xml"
                self.send_response(status)
                self.send_header("Content-Type", content_type)
                self.send_header("x-amzn-ErrorType", code)
                self.send_header(
                    "Content-Length", str(0 if self.command == "HEAD" else len(payload))
                )
                self.end_headers()
                if self.command != "HEAD":
                    self.wfile.write(payload)

            do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        self.endpoint_url = f"http://127.0.0.1:{self._server.server_address[1]}"
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="fault-proxy", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> FaultProxy:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
