"""The export operator and its trigger, branch by branch, against the local AWS stack over
HTTP. Faults AWS causes (throttling, expired or unknown credentials, a malformed request, a
dead endpoint) come from a fault-injecting proxy in front of the stack: real HTTP answers
that botocore parses, not patched functions."""

from __future__ import annotations

import asyncio
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from datetime import timedelta
from typing import Any

import pytest
from airflow.configuration import conf
from airflow.sdk.exceptions import AirflowException, AirflowFailException, TaskDeferred
from botocore.exceptions import (
    ClientError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

from dynamo_lake.airflow.operators import DynamoDBExportOperator, ExportFailed, ExportWaitError
from dynamo_lake.airflow.tasks import fails_fast
from dynamo_lake.airflow.triggers import ExportCompletionTrigger, classify_poll_error
from dynamo_lake.errors import DynamoLakeError, StorageError
from dynamo_lake.exports.api import ExportRequest, start_export
from local_aws.fault_proxy import FaultProxy, FaultRule
from local_aws.seed import create_small_table
from local_aws.server import LocalAwsControl

CONN_ID = "export_wait_test"


def _connection(monkeypatch: pytest.MonkeyPatch, endpoint_url: str) -> None:
    extra = {
        "region_name": "us-east-1",
        "endpoint_url": endpoint_url,
        "config_kwargs": {
            "retries": {"total_max_attempts": 1, "mode": "standard"}
        },  # no SDK retries
    }
    monkeypatch.setenv(
        f"AIRFLOW_CONN_{CONN_ID.upper()}",
        json.dumps({"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}),
    )


def _request(emulator: LocalAwsControl, bucket: str | None = None) -> ExportRequest:
    dynamodb = emulator.client("dynamodb")
    _, arn = create_small_table(dynamodb)
    name = bucket or f"exports-{uuid.uuid4().hex[:8]}"
    if bucket is None:
        emulator.client("s3").create_bucket(Bucket=name)
    token = uuid.uuid4().hex
    return ExportRequest(
        table="orders",
        table_arn=arn,
        aws_conn_id=CONN_ID,
        region="us-east-1",
        bucket=name,
        prefix="exports/orders",
        mode="full",
        client_token=token,
    )


def _started(emulator: LocalAwsControl, request: ExportRequest) -> str:
    return start_export(emulator.client("dynamodb"), request)


def _first_event(trigger: ExportCompletionTrigger, timeout: float = 60) -> dict[str, Any]:
    async def first() -> dict[str, Any]:
        async for event in trigger.run():
            return dict(event.payload)
        raise AssertionError("the trigger ended without an event")

    return asyncio.run(asyncio.wait_for(first(), timeout))


def _trigger(arn: str, **options: Any) -> ExportCompletionTrigger:
    """A trigger that polls fast and holds no event back (unless ``options`` say otherwise)."""
    settings: dict[str, Any] = {"poll_interval": 0.05, "min_wait": 0.0, **options}
    return ExportCompletionTrigger(
        export_arn=arn, aws_conn_id=CONN_ID, region_name="us-east-1", **settings
    )


def _asked(proxy: FaultProxy) -> int:
    """How many requests the trigger sent (the tests start exports around the proxy)."""
    return proxy.counts["forwarded"] + proxy.counts["failed"]


def _logged(capfd: pytest.CaptureFixture[str]) -> str:
    """What the trigger logged (Airflow's structlog writes to the process's stdout/stderr)."""
    captured = capfd.readouterr()
    return captured.out + captured.err


def _operator(request: ExportRequest) -> DynamoDBExportOperator:
    return DynamoDBExportOperator(task_id="export", export_request=request.to_json())


@pytest.fixture
def proxy(emulator: LocalAwsControl, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    with FaultProxy(emulator.endpoint_url) as running:
        _connection(monkeypatch, running.endpoint_url)
        yield running


# --- the trigger ----------------------------------------------------------------------------


def test_the_trigger_serializes_to_what_rebuilds_it() -> None:
    trigger = _trigger("arn:aws:dynamodb:us-east-1:1:table/t/export/01-a", max_transient_failures=4)
    classpath, kwargs = trigger.serialize()
    module, name = classpath.rsplit(".", 1)
    rebuilt = getattr(__import__(module, fromlist=[name]), name)(**kwargs)
    assert rebuilt.serialize() == (classpath, kwargs)
    assert kwargs["max_transient_failures"] == 4 and kwargs["poll_interval"] == 0.05
    assert kwargs["min_wait"] == 0.0


def test_the_trigger_asks_only_after_its_first_interval(
    emulator: LocalAwsControl, proxy: FaultProxy
) -> None:
    """The operator asked just before it deferred; a trigger that asks again at once finds an
    export that ended meanwhile and resumes the task within seconds of its deferral."""
    arn = _started(emulator, _request(emulator))  # COMPLETED already: any question ends the wait
    trigger = ExportCompletionTrigger(
        export_arn=arn, aws_conn_id=CONN_ID, region_name="us-east-1", poll_interval=1.0
    )

    async def first_event() -> None:
        async for _ in trigger.run():
            return

    async def watch() -> tuple[int, float]:
        begun = time.monotonic()
        waiting = asyncio.create_task(first_event())
        try:
            await asyncio.sleep(0.8)
            asked_early = _asked(proxy)
            while not _asked(proxy):
                assert time.monotonic() - begun < 30, "the trigger never asked"
                await asyncio.sleep(0.01)
            return asked_early, time.monotonic() - begun
        finally:
            waiting.cancel()

    asked_early, first_asked_after = asyncio.run(watch())
    assert asked_early == 0, "DescribeExport before the first interval had passed"
    assert first_asked_after >= 1.0


@pytest.mark.parametrize("fault", [None, "ExpiredTokenException"], ids=["completed", "error"])
def test_no_event_comes_sooner_than_min_wait_after_the_trigger_started(
    emulator: LocalAwsControl,
    proxy: FaultProxy,
    capfd: pytest.CaptureFixture[str],
    fault: str | None,
) -> None:
    arn = _started(emulator, _request(emulator))  # COMPLETED already
    if fault:
        proxy.rule = FaultRule(rate=1.0, error=fault, target_contains="DescribeExport")
    begun = time.monotonic()
    event = _first_event(_trigger(arn, min_wait=1.5))  # known after 0.05 s, held to 1.5 s
    waited = time.monotonic() - begun
    assert event["status"] == ("error" if fault else "COMPLETED")
    assert waited >= 1.5
    assert _asked(proxy) == 1  # held, not asked again
    assert "resuming the task in" in _logged(capfd)


def test_the_operator_defers_to_a_trigger_that_waits_out_airflows_exit_report(
    emulator: LocalAwsControl, proxy: FaultProxy
) -> None:
    """apache/airflow#71580: the scheduler may read the deferring process's exit up to one
    supervisor select ([workers] min_heartbeat_interval) and one scheduler loop late; the
    task must not be resumed before then."""
    emulator.update_settings(export_delay_seconds=60.0)
    request = _request(emulator)
    operator = DynamoDBExportOperator(
        task_id="export", export_request=request.to_json(), poll_interval=3.0
    )
    with pytest.raises(TaskDeferred) as deferred:
        operator.execute({})
    trigger = deferred.value.trigger
    assert isinstance(trigger, ExportCompletionTrigger)
    assert (deferred.value.method_name, deferred.value.timeout) == (
        "execute_complete",
        timedelta(hours=24),
    )
    assert trigger.export_arn.startswith(f"{request.table_arn}/export/")
    assert trigger.poll_interval == 3.0
    exit_reported_within = conf.getfloat("workers", "min_heartbeat_interval") + conf.getfloat(
        "scheduler", "scheduler_idle_sleep_time"
    )
    assert trigger.min_wait > exit_reported_within


def test_a_running_export_is_polled_until_it_completes(
    emulator: LocalAwsControl, proxy: FaultProxy, capfd: pytest.CaptureFixture[str]
) -> None:
    emulator.update_settings(export_delay_seconds=3.0)  # polled running, even when busy
    request = _request(emulator)
    arn = _started(emulator, request)
    event = _first_event(_trigger(arn))
    assert event["status"] == "COMPLETED"
    assert "is IN_PROGRESS" in _logged(capfd)
    result = _operator(request).execute_complete({}, event)
    assert result["export_arn"] == arn and result["manifest_uri"].endswith("manifest-summary.json")


def test_a_failed_export_fails_the_task_without_retries(
    emulator: LocalAwsControl, proxy: FaultProxy
) -> None:
    request = _request(emulator, bucket="no-such-bucket-for-exports")
    arn = _started(emulator, request)
    event = _first_event(_trigger(arn))
    assert event["status"] == "FAILED"
    with pytest.raises(ExportFailed, match="S3NoSuchBucket"):
        _operator(request).execute_complete({}, event)


def test_throttling_is_waited_out_and_counted(
    emulator: LocalAwsControl, proxy: FaultProxy, capfd: pytest.CaptureFixture[str]
) -> None:
    request = _request(emulator)
    arn = _started(emulator, request)
    proxy.rule = FaultRule(rate=1.0, error="ThrottlingException", target_contains="DescribeExport")

    async def lift_after_two_faults() -> dict[str, Any]:
        async def lift() -> None:
            while proxy.counts["failed"] < 2:
                await asyncio.sleep(0.01)
            proxy.rule = FaultRule()

        lifting = asyncio.create_task(lift())
        async for event in _trigger(arn).run():
            await lifting
            return dict(event.payload)
        raise AssertionError("no event")

    event = asyncio.run(asyncio.wait_for(lift_after_two_faults(), 60))
    assert event["status"] == "COMPLETED"
    logged = _logged(capfd)
    assert "ThrottlingException, 1 of 10 in a row" in logged
    assert "ThrottlingException, 2 of 10 in a row" in logged


def test_throttling_that_does_not_end_fails_the_task_for_its_retries(
    emulator: LocalAwsControl, proxy: FaultProxy
) -> None:
    request = _request(emulator)
    arn = _started(emulator, request)
    proxy.rule = FaultRule(rate=1.0, error="ThrottlingException", target_contains="DescribeExport")
    event = _first_event(_trigger(arn, max_transient_failures=3))
    assert (event["status"], event["retryable"]) == ("error", True)
    assert "after 3 failed polls in a row" in event["message"]
    assert proxy.counts["failed"] == 3
    with pytest.raises(ExportWaitError, match="ThrottlingException") as caught:
        _operator(request).execute_complete({}, event)
    assert not isinstance(caught.value, AirflowFailException)  # the task's retries apply


@pytest.mark.parametrize("error", ["UnrecognizedClientException", "ExpiredTokenException"])
def test_a_credential_error_ends_the_wait_at_once_for_the_tasks_retries(
    emulator: LocalAwsControl, proxy: FaultProxy, error: str
) -> None:
    request = _request(emulator)
    arn = _started(emulator, request)
    proxy.rule = FaultRule(rate=1.0, error=error, target_contains="DescribeExport")
    event = _first_event(_trigger(arn))
    assert (event["status"], event["retryable"]) == ("error", True)
    assert error in event["message"]
    assert proxy.counts["failed"] == 1  # not polled on for 24 hours
    with pytest.raises(ExportWaitError):
        _operator(request).execute_complete({}, event)


def test_a_request_no_retry_can_fix_fails_without_retries(
    emulator: LocalAwsControl, proxy: FaultProxy
) -> None:
    request = _request(emulator)
    arn = _started(emulator, request)
    proxy.rule = FaultRule(rate=1.0, error="ValidationException", target_contains="DescribeExport")
    event = _first_event(_trigger(arn))
    assert (event["status"], event["retryable"]) == ("error", False)
    with pytest.raises(ExportFailed, match="ValidationException"):
        _operator(request).execute_complete({}, event)


def test_an_endpoint_that_is_gone_is_retried_then_handed_to_the_tasks_retries(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    with socket.socket() as unused:  # a port nothing listens on
        unused.bind(("127.0.0.1", 0))
        port = unused.getsockname()[1]
    _connection(monkeypatch, f"http://127.0.0.1:{port}")
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/t/export/01700000000000-a1b2c3d4"
    event = _first_event(_trigger(arn, max_transient_failures=2))
    assert (event["status"], event["retryable"]) == ("error", True)
    assert "EndpointConnectionError" in event["message"]


@pytest.mark.parametrize(
    ("error", "verdict"),
    [
        (ClientError({"Error": {"Code": "ThrottlingException"}}, "DescribeExport"), "transient"),
        (
            ClientError(
                {"Error": {"Code": "Whatever"}, "ResponseMetadata": {"HTTPStatusCode": 503}},
                "DescribeExport",
            ),
            "transient",
        ),
        (ClientError({"Error": {"Code": "ExpiredTokenException"}}, "DescribeExport"), "retry_task"),
        (ClientError({"Error": {"Code": "AccessDeniedException"}}, "DescribeExport"), "retry_task"),
        (
            ClientError({"Error": {"Code": "ExportNotFoundException"}}, "DescribeExport"),
            "retry_task",
        ),
        (ClientError({"Error": {"Code": "ValidationException"}}, "DescribeExport"), "permanent"),
        (EndpointConnectionError(endpoint_url="http://x"), "transient"),
        (ReadTimeoutError(endpoint_url="http://x"), "transient"),
        (NoCredentialsError(), "retry_task"),
        (RuntimeError("anything else"), "retry_task"),
    ],
    ids=lambda value: type(value).__name__ if isinstance(value, Exception) else value,
)
def test_poll_errors_are_sorted_by_what_helps(error: Exception, verdict: str) -> None:
    assert classify_poll_error(error) == verdict


def test_the_trigger_module_loads_neither_pyarrow_nor_the_tables_file_reader() -> None:
    script = """
import sys
import airflow.triggers.base  # what any trigger loads
before = set(sys.modules)
from dynamo_lake.airflow.triggers import ExportCompletionTrigger
ExportCompletionTrigger("arn", "aws_default", "us-east-1")._client()
print(sorted(set(sys.modules) - before))
"""
    environment = {**os.environ, "AWS_ACCESS_KEY_ID": "testing", "AWS_SECRET_ACCESS_KEY": "x"}
    done = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env=environment,
    )
    loaded = eval(done.stdout.strip().splitlines()[-1])
    heavy = [name for name in loaded if name.split(".")[0] in ("pyarrow", "yaml", "duckdb")]
    assert heavy == []
    ours = {name for name in loaded if name.startswith("dynamo_lake")}
    assert not ours & {"dynamo_lake.config", "dynamo_lake.storage", "dynamo_lake.backfill"}, ours


# --- the operator ----------------------------------------------------------------------------


def test_a_resume_without_an_event_is_retried(emulator: LocalAwsControl) -> None:
    with pytest.raises(ExportWaitError, match="without word from the triggerer"):
        _operator(_request(emulator)).execute_complete({}, None)


def test_too_many_concurrent_exports_waits_for_the_tasks_retries(
    emulator: LocalAwsControl, proxy: FaultProxy
) -> None:
    proxy.rule = FaultRule(
        rate=1.0, error="LimitExceededException", target_contains="ExportTableToPointInTime"
    )
    with pytest.raises(ExportWaitError, match="too many exports at once") as caught:
        _operator(_request(emulator)).execute({})
    assert not isinstance(caught.value, AirflowFailException)


def test_a_completed_export_is_returned_without_deferring(
    emulator: LocalAwsControl, proxy: FaultProxy
) -> None:
    request = _request(emulator)
    result = _operator(request).execute({})
    assert result["client_token"] == request.client_token
    assert result["manifest_uri"].startswith(f"s3://{request.bucket}/")


# --- every task body: permanent errors skip retries ---------------------------------------


@pytest.mark.parametrize(
    ("error", "fails_at_once"),
    [(DynamoLakeError("batch limit"), True), (StorageError("S3 said SlowDown"), False)],
)
def test_only_errors_no_retry_can_fix_skip_the_retries(
    error: DynamoLakeError, fails_at_once: bool
) -> None:
    @fails_fast
    def body() -> None:
        raise error

    with pytest.raises(AirflowException) if fails_at_once else pytest.raises(type(error)) as caught:
        body()
    assert isinstance(caught.value, AirflowFailException) == fails_at_once


@pytest.mark.parametrize("fails", [False, True])
def test_every_task_body_ends_its_log_with_the_process_peak_memory(
    fails: bool, caplog: pytest.LogCaptureFixture
) -> None:
    @fails_fast
    def body() -> int:
        if fails:
            raise StorageError("S3 said SlowDown")
        return 7

    caplog.set_level("INFO", logger="dynamo_lake.airflow.tasks")
    if fails:
        with pytest.raises(StorageError):
            body()
    else:
        assert body() == 7
    assert re.fullmatch(r"peak memory of this task process: [1-9]\d* MB", caplog.messages[-1])
