"""The deferrable export operator: start a DynamoDB export idempotently, wait in the triggerer.

Unlike the provider's DynamoDBToS3Operator it sends a deterministic ClientToken (a retried
task attaches to the export it already started), never holds a worker slot while the
export runs, and returns the export's ARN and manifest for the tasks after it.

Failures: an export that ended FAILED, or a request DynamoDB refuses for good, fails the
task without retries (:class:`ExportFailed`); anything a retry may fix (throttling, too
many concurrent exports, expired credentials, a lost connection, a trigger that ended
without an event) raises :class:`ExportWaitError`, so the task's retries apply.
"""

from __future__ import annotations

from datetime import timedelta
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseOperator
from airflow.sdk.exceptions import AirflowException

from dynamo_lake.airflow.task_errors import ProblemToFix

if TYPE_CHECKING:  # the core's AWS side is imported when a task runs, not at DAG parsing
    from dynamo_lake.exports.api import ExportRequest, ExportState

__all__ = ["DynamoDBExportOperator", "ExportFailed", "ExportWaitError", "LakeSettleOperator"]


class ExportFailed(ProblemToFix):
    """The export ended FAILED, or cannot be started: a retry would not help (its log line
    is the message alone)."""


class ExportWaitError(AirflowException):
    """Starting or waiting for the export failed in a way a retry may fix."""


class DynamoDBExportOperator(BaseOperator):
    """Run one planned :class:`~dynamo_lake.exports.api.ExportRequest` (given as its JSON).

    :param export_request: the request, as planned by the DAG's plan task
    :param poll_interval: seconds between DescribeExport calls while waiting
    :param max_wait: how long the export may take before the task fails (AWS has no SLA)
    """

    template_fields = ("export_request",)
    ui_color = "#f0e4ff"

    def __init__(
        self,
        *,
        export_request: dict[str, Any],
        poll_interval: float = 30.0,
        max_wait: timedelta = timedelta(hours=24),
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.export_request = export_request
        self.poll_interval = poll_interval
        self.max_wait = max_wait

    def _request(self) -> ExportRequest:
        from dynamo_lake.exports.api import ExportRequest

        return ExportRequest.from_json(dict(self.export_request))

    def _client(self, request: ExportRequest) -> Any:
        from dynamo_lake.airflow.connections import aws_client

        return aws_client("dynamodb", request.aws_conn_id, request.region)

    def execute(self, context: Any) -> dict[str, Any]:
        from dynamo_lake.airflow.triggers import ExportCompletionTrigger
        from dynamo_lake.errors import DynamoLakeError
        from dynamo_lake.exports.api import describe_export, start_export

        request = self._request()
        client = self._client(request)
        try:
            arn = start_export(client, request)
        except DynamoLakeError as exc:
            if exc.retryable:
                raise ExportWaitError(str(exc)) from exc
            raise ExportFailed(str(exc)) from exc
        state = describe_export(client, arn)
        if state.done:
            return self._finish(request, state)
        self.log.info(
            "%s: %s is %s; waiting in the triggerer", request.describe(), arn, state.status
        )
        self.defer(
            trigger=ExportCompletionTrigger(
                export_arn=arn,
                aws_conn_id=request.aws_conn_id,
                region_name=request.region,
                poll_interval=self.poll_interval,
            ),
            method_name="execute_complete",
            timeout=self.max_wait,
        )
        raise AssertionError("defer() returns only by raising")  # pragma: no cover

    def execute_complete(self, context: Any, event: dict[str, Any] | None = None) -> dict[str, Any]:
        from dynamo_lake.exports.api import ExportState

        request = self._request()
        if not event:
            raise ExportWaitError(
                f"{request.describe()}: the wait ended without word from the triggerer; "
                "the retry attaches to the same export"
            )
        if event.get("status") == "error":
            message = f"{request.describe()}: {event.get('message')}"
            if event.get("retryable", True):
                raise ExportWaitError(message)
            raise ExportFailed(message)
        return self._finish(request, ExportState.from_json(event["state"]))

    def _finish(self, request: ExportRequest, state: ExportState) -> dict[str, Any]:
        from dynamo_lake.records import ExportResult

        if state.status != "COMPLETED" or not state.manifest_uri:
            raise ExportFailed(f"{request.describe()}: {state.failure_reason()}")
        self.log.info(
            "%s: %s completed with %s items", request.describe(), state.export_arn, state.item_count
        )
        return ExportResult(
            sequence=request.sequence,
            export_arn=state.export_arn,
            manifest_uri=state.manifest_uri,
            item_count=state.item_count,
            mode=request.mode,
            client_token=request.client_token,
            export_time=request.export_time,
            export_from=request.export_from,
            export_to=request.export_to,
        ).to_json()


class LakeSettleOperator(BaseOperator):
    """Wait, deferred, until a moment has passed (the lake has settled past it).

    Firehose delivers a change minutes after it happened, so a count taken at a moment is
    compared with the lake only once that moment is a settle margin behind. ``until``
    (µs since the epoch, or None: nothing to wait for) may come from an upstream task.
    """

    template_fields = ("until",)
    ui_color = "#e8f4ff"

    def __init__(self, *, until: Any, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.until = until

    def execute(self, context: Any) -> None:
        from datetime import UTC, datetime

        from airflow.providers.standard.triggers.temporal import DateTimeTrigger

        from dynamo_lake.cdc import micros_to_datetime

        if not self.until:
            return None
        moment = micros_to_datetime(int(self.until))
        if moment <= datetime.now(UTC):
            return None
        self.log.info("waiting until %s for the lake to settle", moment.isoformat())
        self.defer(trigger=DateTimeTrigger(moment=moment), method_name="execute_complete")
        raise AssertionError("defer() returns only by raising")  # pragma: no cover

    def execute_complete(self, context: Any, event: Any = None) -> None:
        return None
