"""The deferrable wait for a DynamoDB export, run by the triggerer.

Exports take 10 minutes to hours; this trigger polls DescribeExport (boto3 in a thread, so
the triggerer's event loop never blocks) and fires once the export leaves IN_PROGRESS. It
has no side effects, so the triggerer may run it twice. Each poll is logged with the
export's state and how long it has waited, which shows in the task's log while it waits.

It asks first one poll interval after it starts (the operator asked just before deferring),
and yields no event sooner than ``min_wait`` after it starts: an event that resumes the task
within seconds of its deferral can make Airflow 3.3's scheduler retry the task for nothing
(apache/airflow#71580; see :data:`MIN_WAIT_SECONDS`).

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

__all__ = ["MIN_WAIT_SECONDS", "ExportCompletionTrigger", "PollVerdict", "classify_poll_error"]

PollVerdict = Literal["transient", "retry_task", "permanent"]

#: The least time from the trigger's start (which is after the deferral) to its event.
#: apache/airflow#71580, in Airflow 3.3.2: the deferring task process exits, but its
#: supervisor may notice only after one ``select`` of up to ``[workers] min_heartbeat_interval``
#: (5 s), and the scheduler reads the executor's "success" for that exit on its next loop. If
#: the event has meanwhile resumed the task and the scheduler queued it again (same try
#: number), the scheduler takes that stale exit for the resumed try's and retries the task.
#: 10 s covers the 5 s and the scheduler's loop; a real export takes minutes, so this only
#: delays exports that end within seconds of the deferral (the local stack's).
MIN_WAIT_SECONDS = 10.0

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
    ``{"status": "error", "retryable": bool, "message": ...}`` when waiting failed; never
    sooner than ``min_wait`` seconds after it started."""

    def __init__(
        self,
        export_arn: str,
        aws_conn_id: str | None,
        region_name: str | None = None,
        poll_interval: float = 30.0,
        max_transient_failures: int = 10,
        min_wait: float = MIN_WAIT_SECONDS,
    ) -> None:
        super().__init__()
        self.export_arn = export_arn
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.poll_interval = poll_interval
        self.max_transient_failures = max_transient_failures
        self.min_wait = min_wait

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "export_arn": self.export_arn,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "poll_interval": self.poll_interval,
                "max_transient_failures": self.max_transient_failures,
                "min_wait": self.min_wait,
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
        event = await self._wait(started)
        early = started + self.min_wait - time.monotonic()
        if early > 0:  # see MIN_WAIT_SECONDS: resuming this soon can get the task retried
            self.log.info(
                "export %s: %s; resuming the task in %.1f s, not sooner after its deferral",
                self.export_arn,
                event.payload["status"],
                early,
            )
            await asyncio.sleep(early)
        yield event

    async def _wait(self, started: float) -> TriggerEvent:
        """Poll until the export is done or polling fails; the event that says which."""
        failures = 0
        client: Any = None
        # The operator asked just before it deferred: the first question waits an interval too.
        await asyncio.sleep(self.poll_interval)
        while True:
            try:
                if client is None:
                    client = await asyncio.to_thread(self._client)
                state = await asyncio.to_thread(describe_export, client, self.export_arn)
            except Exception as exc:  # sorted below; nothing escapes the triggerer unnamed
                verdict = classify_poll_error(exc)
                failures += 1
                if verdict == "permanent":
                    return self._error(exc, retryable=False, failures=failures)
                if verdict == "retry_task" or failures >= self.max_transient_failures:
                    return self._error(exc, retryable=True, failures=failures)
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
                return TriggerEvent({"status": state.status, "state": state.to_json()})
            self.log.info(
                "export %s is %s (started %s, waiting %.0f s)",
                self.export_arn,
                state.status,
                state.start_time,
                time.monotonic() - started,
            )
            await asyncio.sleep(self.poll_interval)
