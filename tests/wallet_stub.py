"""A small, real wallet service for tests and benchmarks: the wire protocol over an OfflineWallet.

`StubWallet` answers protocol requests (``handle``), and is also an httpx handler
(``stub(request)``) for `respx` and `httpx.MockTransport`. `StubServer` serves it over real HTTP
on 127.0.0.1 with an ephemeral port. Scripted `Fault`s make it misbehave on demand.

    python tests/wallet_stub.py [--port 0] [--api-key KEY] [--accept-all]
    # prints the URL, serves until killed
"""

from __future__ import annotations

import argparse
import gc
import gzip
import json
import sys
import threading
from collections import deque
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from json.encoder import encode_basestring as _quote
from typing import Any
from urllib.parse import parse_qs, urlsplit

import httpx
from pydantic import ValidationError

from flexcredits_sdk import OfflineWallet
from flexcredits_sdk._exceptions import FlexCreditsError
from flexcredits_sdk._models import UsageRecordModel
from flexcredits_sdk._records import UsageRecord
from flexcredits_sdk._wire import (
    ErrorDetail,
    ErrorResponse,
    GrantRequest,
    GrantsResponse,
    IngestRequest,
    IngestResponse,
    RecordResult,
    RecordsQuery,
    RecordsResponse,
    UsageQuery,
    UsageResponse,
)

_JSON = {"Content-Type": "application/json"}

Answer = tuple[int, dict[str, str], bytes]


@dataclass
class Fault:
    """One scripted misbehaviour, used for the next ingestion request.

    Attributes:
        status: Answer with this status and `body` instead of the real answer.
        headers: Extra answer headers (e.g. ``Retry-After``).
        body: The answer's body.
        book: Book the batch first (the answer is then lost or replaced).
        drop: Close the connection without any answer (real server only).
    """

    status: int | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: bytes = b""
    book: bool = False
    drop: bool = False


def _error(status: int, code: str, message: str) -> Answer:
    body = ErrorResponse(error=ErrorDetail(code=code, message=message)).model_dump_json()
    return status, dict(_JSON), body.encode()


class StubWallet:
    """The protocol's answers, computed by an `OfflineWallet`.

    Args:
        api_key: The bearer token requests must carry (``None``: no auth).
        wallet: The wallet that books records (a fresh `OfflineWallet` by default).
    """

    def __init__(self, api_key: str | None = "test-key", wallet: OfflineWallet | None = None):
        self.api_key = api_key
        self.wallet = wallet or OfflineWallet()
        self.faults: deque[Fault] = deque()
        self.batches: list[tuple[str | None, int]] = []
        self.headers_seen: list[dict[str, str]] = []
        self._lock = threading.Lock()
        self._seen: set[str] = set()

    def fail(self, *faults: Fault) -> None:
        """Script faults for the next ingestion requests, in order."""
        self.faults.extend(faults)

    @property
    def booked(self) -> int:
        """How many records were booked."""
        return len(list(self.wallet.records()))

    def __call__(self, request: httpx.Request) -> httpx.Response:
        """Answer an httpx request (for respx and `httpx.MockTransport`)."""
        status, headers, body = self.handle(
            request.method,
            request.url.path,
            parse_qs(request.url.query.decode()),
            request.headers,
            request.read(),
        )
        return httpx.Response(status, headers=headers, content=body)

    def next_fault(self, method: str, path: str) -> Fault | None:
        """Pop the next scripted fault if this is an ingestion request."""
        if method == "POST" and path.endswith("/v1/records") and self.faults:
            return self.faults.popleft()
        return None

    def handle(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
        fault: Fault | None = None,
    ) -> Answer:
        """Answer one request of the wire protocol."""
        if fault is None:
            fault = self.next_fault(method, path)
        if self.api_key is not None and headers.get("authorization") != f"Bearer {self.api_key}":
            return _error(401, "unauthorized", "missing or wrong API key")
        if fault is not None and not fault.book:
            return fault.status or 500, fault.headers, fault.body
        try:
            answer = self._route(method, path, query, headers, body)
        except (ValidationError, FlexCreditsError, ValueError) as exc:
            return _error(400, "bad_request", str(exc).splitlines()[0])
        if fault is not None and fault.status is not None:
            return fault.status, fault.headers, fault.body
        return answer

    def _route(
        self,
        method: str,
        path: str,
        query: Mapping[str, list[str]],
        headers: Mapping[str, str],
        body: bytes,
    ) -> Answer:
        single = {key: values[-1] for key, values in query.items()}
        wallet = self.wallet
        if (method, path) == ("POST", "/v1/records"):
            if headers.get("content-encoding") == "gzip":
                body = gzip.decompress(body)
            self.headers_seen.append(dict(headers))
            minimal = "return=minimal" in headers.get("prefer", "")
            return self._ingest(body, headers.get("idempotency-key"), minimal)
        if (method, path) == ("GET", "/v1/balance"):
            return 200, dict(_JSON), wallet.balance().model_dump_json().encode()
        if (method, path) == ("GET", "/v1/grants"):
            answer = GrantsResponse(grants=wallet.grants())
            return 200, dict(_JSON), answer.model_dump_json().encode()
        if (method, path) == ("POST", "/v1/grants"):
            grant = GrantRequest.model_validate_json(body)
            info = wallet.grant(
                grant.credits,
                source=grant.source,
                expires_at=grant.expires_at,
                priority=grant.priority,
            )
            return 200, dict(_JSON), info.model_dump_json().encode()
        if (method, path) == ("GET", "/v1/usage"):
            usage = UsageQuery.model_validate({**single, "group_by": query.get("group_by", [])})
            rows = wallet.usage(
                usage.group_by,
                environment=usage.environment,
                since=usage.since,
                until=usage.until,
                bucket=usage.bucket,
            )
            return 200, dict(_JSON), UsageResponse(rows=rows).model_dump_json().encode()
        if (method, path) == ("GET", "/v1/records"):
            where = RecordsQuery.model_validate(single)
            stream = wallet.records(**where.model_dump())
            found = list(stream)
            models = [UsageRecordModel.model_validate(record.to_dict()) for record in found]
            more = len(found) == where.limit
            listed = RecordsResponse(records=models, next_cursor=stream.cursor if more else None)
            return 200, dict(_JSON), listed.model_dump_json().encode()
        return _error(404, "not_found", f"no route {method} {path}")

    def _ingest(self, body: bytes, batch_id: str | None, minimal: bool = False) -> Answer:
        try:
            records = [
                UsageRecord.from_model(model)
                for model in IngestRequest.model_validate_json(body).records
            ]
        except ValidationError:
            records = []
        if not records:  # find the invalid ones
            items = json.loads(body)["records"]
            results: list[RecordResult] = []
            bad = 0
            for item in items:
                record_id = str(item.get("id")) if isinstance(item, dict) else "?"
                try:
                    UsageRecord.from_dict(item)
                except FlexCreditsError as exc:
                    bad += 1
                    results.append(RecordResult(id=record_id, status="rejected", reason=str(exc)))
                else:
                    results.append(RecordResult(id=record_id, status="not_booked"))
            refused = IngestResponse(results=results, accepted=0, duplicates=0, rejected=bad)
            return 422, dict(_JSON), refused.model_dump_json().encode()
        with self._lock:
            self.batches.append((batch_id, len(records)))
            seen = self._seen
            statuses = []
            for record in records:
                if record.id in seen:
                    statuses.append("duplicate")
                else:
                    seen.add(record.id)
                    self.wallet.submit(record)  # books each id once
                    statuses.append("accepted")
        accepted = statuses.count("accepted")
        listed_results = ",".join(
            f'{{"id":{_quote(record.id)},"status":"{status}"}}'
            for record, status in zip(records, statuses, strict=True)
        )
        text = (
            f'{{"results":[{listed_results}],"accepted":{accepted},'
            f'"duplicates":{len(records) - accepted},"rejected":0}}'
        )
        return _minimal(text.encode()) if minimal else (200, dict(_JSON), text.encode())


def _minimal(answer: bytes) -> Answer:
    """The ``Prefer: return=minimal`` form of an answer: only the unsettled records listed."""
    data = json.loads(answer)
    data["results"] = [r for r in data["results"] if r["status"] not in ("accepted", "duplicate")]
    headers = {**_JSON, "Preference-Applied": "return=minimal"}
    return 200, headers, json.dumps(data).encode()


class AcceptAll(StubWallet):
    """A stub that acknowledges every record without validating or booking it (benchmarks)."""

    def _ingest(self, body: bytes, batch_id: str | None, minimal: bool = False) -> Answer:
        ids = [item["id"] for item in json.loads(body)["records"]]
        listed = [] if minimal else ids
        results = ",".join(f'{{"id":{_quote(i)},"status":"accepted"}}' for i in listed)
        answer = f'{{"results":[{results}],"accepted":{len(ids)},"duplicates":0,"rejected":0}}'
        headers = {**_JSON, "Preference-Applied": "return=minimal"} if minimal else dict(_JSON)
        return 200, headers, answer.encode()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    disable_nagle_algorithm = True
    server: _Server

    def log_message(self, format: str, *args: Any) -> None:
        return None

    def _serve(self) -> None:
        stub = self.server.stub
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length)
        parts = urlsplit(self.path)
        headers = {key.lower(): value for key, value in self.headers.items()}
        fault = stub.next_fault(self.command, parts.path)
        status, answer_headers, answer = stub.handle(
            self.command, parts.path, parse_qs(parts.query), headers, body, fault
        )
        if fault is not None and fault.drop:
            self.close_connection = True
            return
        self.send_response(status)
        for key, value in answer_headers.items():
            self.send_header(key, value)
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = _serve


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    stub: StubWallet


class StubServer:
    """Serves a `StubWallet` over HTTP on 127.0.0.1, in a background thread.

    Args:
        stub: What to serve (a new `StubWallet` by default).
        port: The port; 0 picks a free one.
    """

    def __init__(self, stub: StubWallet | None = None, port: int = 0) -> None:
        self.stub = stub or StubWallet()
        self._httpd = _Server(("127.0.0.1", port), _Handler)
        self._httpd.stub = self.stub
        self.port = self._httpd.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}"
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )

    def start(self) -> StubServer:
        """Start serving."""
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving and close the socket."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> StubServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()


def serve(stub: StubWallet | None = None) -> Iterator[StubServer]:
    """Yield a started server and stop it afterwards (for fixtures)."""
    server = StubServer(stub).start()
    try:
        yield server
    finally:
        server.stop()


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--api-key", default="test-key")
    parser.add_argument("--accept-all", action="store_true", help="acknowledge, never book")
    args = parser.parse_args(argv)
    gc.freeze()  # a long-lived server holding every record: keep collections cheap
    gc.set_threshold(50_000, 20, 100)
    kind = AcceptAll if args.accept_all else StubWallet
    server = StubServer(kind(api_key=args.api_key), port=args.port)
    print(server.url, flush=True)
    try:
        server._httpd.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server._httpd.server_close()
    sys.exit(0)


if __name__ == "__main__":
    main()
