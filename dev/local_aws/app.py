"""The WSGI application: moto's server, with DynamoDB's export surface answered by our model.

Requests pass to moto unchanged except DynamoDB JSON-protocol calls named by `X-Amz-Target`:
- writes (PutItem, UpdateItem, DeleteItem, BatchWriteItem, TransactWriteItems, PartiQL) go to
  moto, and then the items' new images are read back from moto and recorded in the history with
  the emulator clock's time;
- CreateTable/DeleteTable/UpdateContinuousBackups go to moto and update the history's tables;
- ExportTableToPointInTime, DescribeExport, ListExports and DescribeContinuousBackups are
  answered from the history by `ExportService`.
Paths under `/_local_aws/` are the control API (clock, settings, reset, health, bulk-load).
"""

from __future__ import annotations

import io
import json
import logging
import re
import threading
from collections.abc import Callable, Iterable
from typing import Any

from local_aws.bulk import bulk_load
from local_aws.clock import EmulatorClock, iso_from_micros, micros_from_datetime
from local_aws.exports import ExportService, ObjectStore, restorable_window
from local_aws.history import Image, TableHistory, key_identity
from local_aws.protocol import JSON_CONTENT_TYPE, ApiError, epoch_seconds
from local_aws.settings import EmulatorSettings, SettingsError

logger = logging.getLogger(__name__)

WsgiApp = Callable[[dict[str, Any], Callable[..., Any]], Iterable[bytes]]
StartResponse = Callable[..., Any]

CONTROL_PREFIX = "/_local_aws/"
DYNAMODB_TARGET_PREFIX = "DynamoDB_20120810."
DEFAULT_REGION = "us-east-1"
ITEM_WRITES = frozenset(
    {"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"}
)
PARTIQL_CALLS = frozenset({"ExecuteStatement", "BatchExecuteStatement", "ExecuteTransaction"})
_REGION_IN_AUTHORIZATION = re.compile(r"(Credential=[^/,]+/\d{8}/)([^/,]+)(/)")
_TABLE_ARN = re.compile(r"^arn:[^:]+:dynamodb:([^:]+):[^:]*:table/([^/]+)")


class _InnerResponse:
    """A response from moto, held so it can be inspected before it is returned."""

    def __init__(self, status: str, headers: list[tuple[str, str]], body: bytes) -> None:
        self.status = status
        self.headers = headers
        self.body = body

    @property
    def ok(self) -> bool:
        return self.status.startswith("200")

    def json(self) -> dict[str, Any]:
        parsed: dict[str, Any] = json.loads(self.body or b"{}")
        return parsed


def _json_response(
    start_response: StartResponse, payload: Any, status: str = "200 OK"
) -> list[bytes]:
    body = json.dumps(payload).encode()
    start_response(
        status, [("Content-Type", JSON_CONTENT_TYPE), ("Content-Length", str(len(body)))]
    )
    return [body]


def _parse_time(value: Any) -> int:
    """Control-API instants: epoch seconds or ISO 8601 (naive means UTC)."""
    from datetime import datetime

    if isinstance(value, int | float) and not isinstance(value, bool):
        return round(value * 1_000_000)
    if isinstance(value, str):
        return micros_from_datetime(datetime.fromisoformat(value.replace("Z", "+00:00")))
    raise ValueError(f"expected epoch seconds or an ISO 8601 string, got {value!r}")


class LocalAwsApp:
    """moto's WSGI app wrapped with the item history, the export model and the control API."""

    def __init__(
        self,
        inner: WsgiApp,
        store: ObjectStore,
        settings: EmulatorSettings | None = None,
        clock: EmulatorClock | None = None,
    ) -> None:
        self.inner = inner
        self.settings = settings or EmulatorSettings()
        self.default_settings = self.settings.copy()
        self.clock = clock or EmulatorClock()
        self._tables: dict[tuple[str, str], TableHistory] = {}
        self._tables_lock = threading.RLock()
        self._write_lock = threading.RLock()
        self._conditional_writes = threading.Lock()
        self._request = threading.local()
        self.exports = ExportService(self.settings, self.clock, store, self._table_by_arn)

    # -- WSGI entry -------------------------------------------------------------------------

    def __call__(self, environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if path.startswith(CONTROL_PREFIX):
            return self._control(environ, start_response, path[len(CONTROL_PREFIX) :])
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target.startswith(DYNAMODB_TARGET_PREFIX):
            if "HTTP_IF_NONE_MATCH" in environ or "HTTP_IF_MATCH" in environ:
                # S3 decides a conditional write atomically; moto checks, then writes, on
                # a threaded server: serialise them so two can never both succeed.
                with self._conditional_writes:
                    return list(self.inner(environ, start_response))
            return self.inner(environ, start_response)
        operation = target[len(DYNAMODB_TARGET_PREFIX) :]
        body = self._read_body(environ)
        self._request.environ = environ
        try:
            request = json.loads(body or b"{}")
            return self._dynamodb(operation, request, environ, start_response)
        except ApiError as error:
            error_body = error.body()
            start_response(
                f"{error.status} Bad Request",
                [("Content-Type", JSON_CONTENT_TYPE), ("Content-Length", str(len(error_body)))],
            )
            return [error_body]
        finally:
            self._request.environ = None

    def _dynamodb(
        self,
        operation: str,
        request: dict[str, Any],
        environ: dict[str, Any],
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        region = self._region(environ)
        if operation == "ExportTableToPointInTime":
            return _json_response(start_response, self.exports.export_table(request))
        if operation == "DescribeExport":
            return _json_response(start_response, self.exports.describe_export(request))
        if operation == "ListExports":
            return _json_response(start_response, self.exports.list_exports(request))
        if operation == "DescribeContinuousBackups":
            table = self._table(region, str(request.get("TableName", "")))
            if table is None:
                raise ApiError(
                    "TableNotFoundException", f"Table not found: {request.get('TableName')}"
                )
            return _json_response(start_response, self._continuous_backups(table))
        if operation in ITEM_WRITES or operation in PARTIQL_CALLS:
            with self._write_lock:
                response = self._call_inner(environ)
                if response.ok:
                    self._record_writes(operation, request, region)
            return self._relay(response, start_response)
        if operation == "UpdateContinuousBackups":
            return self._update_continuous_backups(request, region, environ, start_response)
        if operation in ("CreateTable", "DeleteTable"):
            with self._write_lock:
                response = self._call_inner(environ)
                if response.ok:
                    self._on_table_lifecycle(operation, response.json(), region)
            return self._relay(response, start_response)
        return self.inner(environ, start_response)

    # -- Tables and their history ------------------------------------------------------------

    def _table_by_arn(self, table_arn: str) -> TableHistory | None:
        match = _TABLE_ARN.match(table_arn)
        if match is None:
            return None
        table = self._table(match.group(1), match.group(2))
        return table if table is not None and table.table_arn == table_arn else None

    def _table(self, region: str, table_name: str) -> TableHistory | None:
        """The history of a live table, registering (and syncing) one moto already has."""
        match = _TABLE_ARN.match(table_name)
        if match:
            region, table_name = match.group(1), match.group(2)
        with self._tables_lock:
            known = self._tables.get((region, table_name))
            if known is not None:
                return known
            described = self._internal(region, "DescribeTable", {"TableName": table_name})
            if not described.ok:
                return None
            description = described.json()["Table"]
            table = self._register(region, description)
            self._sync(region, table)
            backups = self._internal(region, "DescribeContinuousBackups", {"TableName": table_name})
            if backups.ok:
                pitr = backups.json()["ContinuousBackupsDescription"].get(
                    "PointInTimeRecoveryDescription", {}
                )
                if pitr.get("PointInTimeRecoveryStatus") == "ENABLED":
                    table.pitr_enabled_micros = self.clock.now_micros()
            return table

    def _register(self, region: str, description: dict[str, Any]) -> TableHistory:
        key_schema = sorted(description["KeySchema"], key=lambda k: k["KeyType"] != "HASH")
        table = TableHistory(
            table_arn=description["TableArn"],
            table_name=description["TableName"],
            key_names=tuple(k["AttributeName"] for k in key_schema),
        )
        with self._tables_lock:
            self._tables[(region, table.table_name)] = table
        return table

    def _on_table_lifecycle(self, operation: str, response: dict[str, Any], region: str) -> None:
        description = response["TableDescription"]
        if operation == "CreateTable":
            self._register(region, description)
        else:
            with self._tables_lock:
                self._tables.pop((region, description["TableName"]), None)

    def _sync(self, region: str, table: TableHistory) -> None:
        """Make the history's current state equal moto's table (for writes we could not see)."""
        now = self.clock.now_micros()
        live: dict[str, Image] = {}
        request: dict[str, Any] = {"TableName": table.table_name, "ConsistentRead": True}
        while True:
            page = self._internal(region, "Scan", request)
            if not page.ok:
                return
            scanned = page.json()
            for item in scanned.get("Items", []):
                live[key_identity(table.key_of(item))] = item
            if "LastEvaluatedKey" not in scanned:
                break
            request["ExclusiveStartKey"] = scanned["LastEvaluatedKey"]
        recorded = table.current_images()
        for identity in recorded.keys() - live.keys():
            table.record(table.key_for_identity(identity), None, now)
        for item in live.values():
            table.record(table.key_of(item), item, now)

    def _record_writes(self, operation: str, request: dict[str, Any], region: str) -> None:
        now = self.clock.now_micros()
        if operation in PARTIQL_CALLS:
            statements = [request.get("Statement", "")]
            statements += [s.get("Statement", "") for s in request.get("Statements", [])]
            statements += [s.get("Statement", "") for s in request.get("TransactStatements", [])]
            if all(s.strip().upper().startswith("SELECT") for s in statements if s):
                return
            with self._tables_lock:
                regional = [t for (r, _), t in self._tables.items() if r == region]
            for known in regional:
                self._sync(region, known)
            return
        written: list[tuple[str, dict[str, Any]]] = []  # (table name, item or key)
        if operation in ("PutItem", "UpdateItem", "DeleteItem"):
            attributes = request.get("Item") if operation == "PutItem" else request.get("Key")
            written.append((request["TableName"], attributes or {}))
        elif operation == "BatchWriteItem":
            for table_name, writes in request.get("RequestItems", {}).items():
                for write in writes:
                    if "PutRequest" in write:
                        written.append((table_name, write["PutRequest"]["Item"]))
                    elif "DeleteRequest" in write:
                        written.append((table_name, write["DeleteRequest"]["Key"]))
        elif operation == "TransactWriteItems":
            for entry in request.get("TransactItems", []):
                for kind, attribute in (("Put", "Item"), ("Update", "Key"), ("Delete", "Key")):
                    if kind in entry:
                        written.append((entry[kind]["TableName"], entry[kind][attribute]))
        keys_by_table: dict[str, dict[str, Image]] = {}
        tables: dict[str, TableHistory] = {}
        for table_name, attributes in written:
            table = self._table(region, table_name)
            if table is None:
                continue
            tables[table_name] = table
            key = table.key_of(attributes)
            keys_by_table.setdefault(table_name, {})[key_identity(key)] = key
        for table_name, keys in keys_by_table.items():
            table = tables[table_name]
            images = self._read_items(region, table_name, list(keys.values()), table)
            for identity, key in keys.items():
                table.record(key, images.get(identity), now)

    def _read_items(
        self, region: str, table_name: str, keys: list[Image], table: TableHistory
    ) -> dict[str, Image]:
        found: dict[str, Image] = {}
        for start in range(0, len(keys), 100):
            pending: dict[str, Any] = {
                table_name: {"Keys": keys[start : start + 100], "ConsistentRead": True}
            }
            while pending:
                response = self._internal(region, "BatchGetItem", {"RequestItems": pending})
                if not response.ok:
                    logger.warning("could not read back written items: %s", response.body)
                    return found
                result = response.json()
                for item in result.get("Responses", {}).get(table_name, []):
                    found[key_identity(table.key_of(item))] = item
                pending = result.get("UnprocessedKeys") or {}
        return found

    # -- Point-in-time recovery ---------------------------------------------------------------

    def _continuous_backups(self, table: TableHistory) -> dict[str, Any]:
        if table.pitr_enabled_micros is None:
            pitr: dict[str, Any] = {"PointInTimeRecoveryStatus": "DISABLED"}
        else:
            window = restorable_window(table, self.clock.now_micros(), self.settings)
            pitr = {
                "PointInTimeRecoveryStatus": "ENABLED",
                "RecoveryPeriodInDays": table.recovery_period_days,
                "EarliestRestorableDateTime": epoch_seconds(window.earliest_micros),
                "LatestRestorableDateTime": epoch_seconds(window.latest_micros),
            }
        return {
            "ContinuousBackupsDescription": {
                "ContinuousBackupsStatus": "ENABLED",
                "PointInTimeRecoveryDescription": pitr,
            }
        }

    def _update_continuous_backups(
        self,
        request: dict[str, Any],
        region: str,
        environ: dict[str, Any],
        start_response: StartResponse,
    ) -> Iterable[bytes]:
        with self._write_lock:
            response = self._call_inner(environ)
            if not response.ok:
                return self._relay(response, start_response)
            table = self._table(region, str(request.get("TableName", "")))
            if table is None:
                return self._relay(response, start_response)
            spec = request.get("PointInTimeRecoverySpecification", {})
            if spec.get("PointInTimeRecoveryEnabled"):
                if table.pitr_enabled_micros is None:
                    table.pitr_enabled_micros = self.clock.now_micros()
                if "RecoveryPeriodInDays" in spec:
                    table.recovery_period_days = int(spec["RecoveryPeriodInDays"])
            else:
                table.pitr_enabled_micros = None
            return _json_response(start_response, self._continuous_backups(table))

    # -- Talking to moto ---------------------------------------------------------------------

    @staticmethod
    def _read_body(environ: dict[str, Any]) -> bytes:
        length = int(environ.get("CONTENT_LENGTH") or 0)
        body: bytes = environ["wsgi.input"].read(length) if length else b""
        environ["wsgi.input"] = io.BytesIO(body)
        environ["CONTENT_LENGTH"] = str(len(body))
        return body

    @staticmethod
    def _region(environ: dict[str, Any]) -> str:
        match = _REGION_IN_AUTHORIZATION.search(environ.get("HTTP_AUTHORIZATION", ""))
        return match.group(2) if match else DEFAULT_REGION

    def _call_inner(self, environ: dict[str, Any]) -> _InnerResponse:
        captured: dict[str, Any] = {}
        chunks: list[bytes] = []

        def start_response(
            status: str, headers: list[tuple[str, str]], exc_info: Any = None
        ) -> Callable[[bytes], None]:
            captured["status"], captured["headers"] = status, headers
            return chunks.append

        result = self.inner(environ, start_response)
        try:
            chunks.extend(result)
        finally:
            close = getattr(result, "close", None)
            if close is not None:
                close()
        return _InnerResponse(captured["status"], captured["headers"], b"".join(chunks))

    @staticmethod
    def _relay(response: _InnerResponse, start_response: StartResponse) -> list[bytes]:
        start_response(response.status, response.headers)
        return [response.body]

    def _internal(self, region: str, operation: str, payload: dict[str, Any]) -> _InnerResponse:
        """Call moto's DynamoDB directly (no HTTP), shaped like the request being served."""
        template: dict[str, Any] | None = getattr(self._request, "environ", None)
        body = json.dumps(payload).encode()
        environ = {
            key: value
            for key, value in (template or {}).items()
            if not key.startswith("HTTP_") or key in ("HTTP_HOST", "HTTP_AUTHORIZATION")
        }
        if not template:
            environ.update(
                {
                    "SERVER_NAME": "127.0.0.1",
                    "SERVER_PORT": "0",
                    "wsgi.url_scheme": "http",
                    "SERVER_PROTOCOL": "HTTP/1.1",
                    "HTTP_HOST": "127.0.0.1",
                }
            )
        authorization = environ.get("HTTP_AUTHORIZATION") or (
            "AWS4-HMAC-SHA256 Credential=testing/20240101/us-east-1/dynamodb/aws4_request, "
            "SignedHeaders=host, Signature=0"
        )
        environ.update(
            {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/",
                "QUERY_STRING": "",
                "CONTENT_TYPE": JSON_CONTENT_TYPE,
                "CONTENT_LENGTH": str(len(body)),
                "HTTP_X_AMZ_TARGET": DYNAMODB_TARGET_PREFIX + operation,
                "HTTP_AUTHORIZATION": _REGION_IN_AUTHORIZATION.sub(
                    lambda m: m.group(1) + region + m.group(3), authorization
                ),
                "wsgi.input": io.BytesIO(body),
            }
        )
        return self._call_inner(environ)

    # -- Control API -------------------------------------------------------------------------

    def _control(
        self, environ: dict[str, Any], start_response: StartResponse, route: str
    ) -> list[bytes]:
        method = environ.get("REQUEST_METHOD", "GET")
        try:
            body = json.loads(self._read_body(environ) or b"{}")
            if route == "health":
                return _json_response(start_response, {"status": "ok"})
            if route == "clock":
                if method == "POST":
                    self._change_clock(body)
                return _json_response(start_response, self._clock_state())
            if route == "settings":
                if method == "POST":
                    self.settings.update(body)
                elif method == "DELETE":
                    self.settings.update(self.default_settings.to_json())
                return _json_response(start_response, self.settings.to_json())
            if route == "reset" and method == "POST":
                self.reset()
                return _json_response(start_response, {"status": "reset"})
            if route == "bulk-load" and method == "POST":
                return _json_response(start_response, self._bulk_load(body))
        except (SettingsError, ValueError, TypeError, LookupError) as error:
            return _json_response(start_response, {"error": str(error)}, "400 Bad Request")
        return _json_response(
            start_response, {"error": f"no control route {method} {route}"}, "404 Not Found"
        )

    def _bulk_load(self, body: dict[str, Any]) -> dict[str, Any]:
        name = str(body["table"])
        first, count = int(body.get("first", 0)), int(body["count"])
        if first < 0 or not 0 < count <= 1_000_000:
            raise ValueError("bulk-load takes first >= 0 and 1 <= count <= 1000000 per call")
        table = self._table(str(body.get("region") or DEFAULT_REGION), name)
        if table is None:
            raise LookupError(f"no table {name!r}: create it first (CreateTable)")
        recorded = bulk_load(table, first, count, self.clock.now_micros(), int(body.get("seed", 0)))
        return {"table": name, "first": first, "count": count, "recorded": recorded}

    def _change_clock(self, body: dict[str, Any]) -> None:
        if body.get("release"):
            self.clock.release()
        if "set" in body:
            self.clock.set(_parse_time(body["set"]), frozen=bool(body.get("frozen", True)))
        if "advance_seconds" in body:
            self.clock.advance(float(body["advance_seconds"]))

    def _clock_state(self) -> dict[str, Any]:
        now = self.clock.now_micros()
        return {"now": iso_from_micros(now), "now_micros": now, "frozen": self.clock.frozen}

    def reset(self) -> None:
        """Forget everything: moto's state, the histories, the exports; settings to defaults."""
        with self._write_lock, self._tables_lock:
            self.exports.reset()
            self._tables.clear()
            self.clock.release()
            self.settings.update(self.default_settings.to_json())
            environ = {
                "REQUEST_METHOD": "POST",
                "PATH_INFO": "/moto-api/reset",
                "QUERY_STRING": "",
                "SERVER_NAME": "127.0.0.1",
                "SERVER_PORT": "0",
                "HTTP_HOST": "127.0.0.1",
                "SERVER_PROTOCOL": "HTTP/1.1",
                "wsgi.url_scheme": "http",
                "CONTENT_LENGTH": "0",
                "wsgi.input": io.BytesIO(b""),
            }
            self._call_inner(environ)
