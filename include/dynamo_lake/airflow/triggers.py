"""The deferrable wait for a DynamoDB export, run by the triggerer.

Exports take 10 minutes to hours; this trigger polls DescribeExport (boto3 in a thread, so
the triggerer's event loop never blocks) and fires once the export leaves IN_PROGRESS. It
has no side effects, so the triggerer may run it twice. Each poll is logged with the
export's state and how long it has waited, which shows in the task's log while it waits.

Errors while polling are sorted by what helps (:func:`classify_poll_error`): throttling and
transport hiccups are waited out with backoff, counted, and give up after
``max_transient_failures`` in a row; credential and access errors, and anything unknown,
end the wait at once as *retryable* (the task's retries apply; the ClientToken makes the
retry attach to the same export); only a request no retry can fix ends it as permanent.

Imports only :mod:`dynamo_lake.exports.api` from the product: the triggerer runs many
triggers in one process, and neither pyarrow nor yaml may load with this module.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any, Literal

from airflow.triggers.base import BaseTrigger, TriggerEvent

from dynamo_lake.errors import aws_error_code
from dynamo_lake.exports.api import describe_export

__all__ = ["ExportCompletionTrigger", "PollVerdict", "classify_poll_error"]

PollVerdict = Literal["transient", "retry_task", "permanent"]

#: Codes that clear up by themselves: wait and ask again.
_TRANSIENT_CODES = {
    "ThrottlingException",
    "ProvisionedThroughputExceededException",
    "RequestLimitExceeded",
    "LimitExceededException",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "ServiceUnavailableException",
}
#: Codes no retry of the task can fix (the request itself is malformed).
_PERMANENT_CODES = {"ValidationException", "SerializationException"}
#: botocore transport errors: the network or the endpoint, not the request.
_TRANSPORT_ERRORS = (
    "EndpointConnectionError",
    "ConnectionClosedError",
    "ConnectTimeoutError",
    "ReadTimeoutError",
    "ConnectionError",
    "HTTPClientError",
)


def classify_poll_error(exc: BaseException) -> PollVerdict:
    """What to do about an error from DescribeExport."""
    code = aws_error_code(exc)
    if code:
        status = getattr(exc, "response", {}).get("ResponseMetadata", {}).get("HTTPStatusCode")
        if code in _TRANSIENT_CODES or (isinstance(status, int) and status >= 500):
            return "transient"
        if code in _PERMANENT_CODES:
            return "permanent"
        return "retry_task"  # credentials, access, or unknown: the task's retries decide
    names = {cls.__name__ for cls in type(exc).__mro__}
    if names & set(_TRANSPORT_ERRORS):
        return "transient"
    return "retry_task"  # NoCredentialsError and other client-side errors


class ExportCompletionTrigger(BaseTrigger):
    """Fires ``{"status": "COMPLETED"|"FAILED", "state": ...}`` once the export is done, or
    ``{"status": "error", "retryable": bool, "message": ...}`` when waiting failed."""

    def __init__(
        self,
        export_arn: str,
        aws_conn_id: str | None,
        region_name: str | None = None,
        poll_interval: float = 30.0,
        max_transient_failures: int = 10,
    ) -> None:
        super().__init__()
        self.export_arn = export_arn
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.poll_interval = poll_interval
        self.max_transient_failures = max_transient_failures

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "export_arn": self.export_arn,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "poll_interval": self.poll_interval,
                "max_transient_failures": self.max_transient_failures,
            },
        )

    def _client(self) -> Any:
        from dynamo_lake.airflow.connections import aws_client

        return aws_client("dynamodb", self.aws_conn_id, self.region_name)

    def _error(self, exc: BaseException, retryable: bool, failures: int) -> TriggerEvent:
        code = aws_error_code(exc) or type(exc).__name__
        after = f" after {failures} failed polls in a row" if failures > 1 else ""
        return TriggerEvent(
            {
                "status": "error",
                "retryable": retryable,
                "message": f"DescribeExport for {self.export_arn} failed{after}: {code}: {exc}",
            }
        )

    async def run(self) -> AsyncIterator[TriggerEvent]:
        started = time.monotonic()
        failures = 0
        client: Any = None
        while True:
            try:
                if client is None:
                    client = await asyncio.to_thread(self._client)
                state = await asyncio.to_thread(describe_export, client, self.export_arn)
            except Exception as exc:  # sorted below; nothing escapes the triggerer unnamed
                verdict = classify_poll_error(exc)
                failures += 1
                if verdict == "permanent":
                    yield self._error(exc, retryable=False, failures=failures)
                    return
                if verdict == "retry_task" or failures >= self.max_transient_failures:
                    yield self._error(exc, retryable=True, failures=failures)
                    return
                delay = min(self.poll_interval * 2 ** (failures - 1), 300.0)
                self.log.warning(
                    "DescribeExport for %s failed (%s, %d of %d in a row); asking again in %.0f s",
                    self.export_arn,
                    aws_error_code(exc) or type(exc).__name__,
                    failures,
                    self.max_transient_failures,
                    delay,
                )
                await asyncio.sleep(delay)
                continue
            failures = 0
            if state.done:
                yield TriggerEvent({"status": state.status, "state": state.to_json()})
                return
            self.log.info(
                "export %s is %s (started %s, waiting %.0f s)",
                self.export_arn,
                state.status,
                state.start_time,
                time.monotonic() - started,
            )
            await asyncio.sleep(self.poll_interval)
