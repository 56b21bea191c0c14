"""The deferrable wait for a DynamoDB export, run by the triggerer.

Exports take 10 minutes to hours; this trigger polls DescribeExport (boto3 in a thread, so
the triggerer's event loop never blocks) and fires once the export leaves IN_PROGRESS. It
has no side effects, so the triggerer may run it twice. Each poll is logged with the
export's state, which shows in the task's log while it waits.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from typing import Any

from airflow.triggers.base import BaseTrigger, TriggerEvent
from botocore.exceptions import BotoCoreError, ClientError

from dynamo_lake.backfill import describe_export

_TRANSIENT = {"ThrottlingException", "InternalServerError", "RequestLimitExceeded"}


class ExportCompletionTrigger(BaseTrigger):
    def __init__(
        self,
        export_arn: str,
        aws_conn_id: str | None,
        region_name: str | None = None,
        poll_interval: float = 30.0,
    ) -> None:
        super().__init__()
        self.export_arn = export_arn
        self.aws_conn_id = aws_conn_id
        self.region_name = region_name
        self.poll_interval = poll_interval

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                "export_arn": self.export_arn,
                "aws_conn_id": self.aws_conn_id,
                "region_name": self.region_name,
                "poll_interval": self.poll_interval,
            },
        )

    def _client(self) -> Any:
        from dynamo_lake.airflow.hooks import aws_client

        return aws_client("dynamodb", self.aws_conn_id, self.region_name)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        client = await asyncio.to_thread(self._client)
        started = time.monotonic()
        while True:
            try:
                state = await asyncio.to_thread(describe_export, client, self.export_arn)
            except ClientError as exc:
                code = exc.response.get("Error", {}).get("Code", "")
                if code in _TRANSIENT:
                    self.log.warning("DescribeExport throttled (%s); trying again", code)
                    await asyncio.sleep(self.poll_interval)
                    continue
                yield TriggerEvent({"status": "error", "message": f"{code}: {exc}"})
                return
            except BotoCoreError as exc:
                self.log.warning("DescribeExport failed (%s); trying again", exc)
                await asyncio.sleep(self.poll_interval)
                continue
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
