"""How a failed task's log reads, in real dag.test() runs of the DAGs.

A problem the person must fix ends the task's log with its message, once, without a
traceback; an error a retry can fix keeps Airflow's traceback and the task's retries.

dag.test() runs each task in this process and writes no task log file: a task's log is
what this process writes between dag.test's "running task" and "end task" lines, without
the in-process API server's own lines (a worker's log file has neither).
"""

from __future__ import annotations

import json
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from airflow.sdk.exceptions import AirflowFailException
from airflow.utils.state import DagRunState
from airflow_scenario import EXPORT_BUCKET, Scenario
from test_backfill_dag import run
from test_reconciliation_dag import reconcile, tries

from dynamo_lake.errors import DynamoLakeError, StorageError
from local_aws.fault_proxy import FaultProxy, FaultRule

pytestmark = pytest.mark.usefixtures("scenario")

AFTER_THE_TASK = "::group::Post Execute"  # the runner's callbacks and bookkeeping follow
MEMORY_LINE = "peak memory of this task process:"
BEFORE_1970 = {"table": "badtime", "mode": "full", "export_time": "1970-01-01T00:00:00Z"}
BEFORE_1970_WORDS = "export_time '1970-01-01T00:00:00Z' is outside 2012-2099 (DynamoDB's lifetime)"


class _StdoutNow:
    """A stream that writes to ``sys.stdout`` as it is at each write."""

    def write(self, text: str) -> int:
        return sys.stdout.write(text)

    def flush(self) -> None:
        sys.stdout.flush()


@pytest.fixture
def output(capfd: pytest.CaptureFixture[str]) -> Iterator[Callable[[], str]]:
    """``read()``: what this process wrote since the last read, in order.

    Airflow's structlog lines go to ``sys.stdout`` as it is when they are written, but its
    stdlib handler kept the stream of the moment Airflow configured logging (a capture pytest
    has closed since, so those lines are lost): point it at ``sys.stdout`` too.
    """
    handlers = [h for h in logging.getLogger().handlers if type(h) is logging.StreamHandler]
    streams = [handler.stream for handler in handlers]
    for handler in handlers:
        handler.stream = _StdoutNow()  # not setStream(): it flushes the closed stream

    def read() -> str:
        captured = capfd.readouterr()
        return captured.out + captured.err

    read()
    yield read
    for handler, stream in zip(handlers, streams, strict=True):
        handler.stream = stream


def task_logs(output: str, dag_id: str, task_id: str) -> list[list[str]]:
    """Each try's log of ``task_id``, from the output of dag.test runs."""
    logs: list[list[str]] = []
    current: list[str] | None = None
    for line in output.splitlines():
        if f"[DAG TEST] running task <TaskInstance: {dag_id}.{task_id} " in line:
            current = []
            logs.append(current)
        elif f"[DAG TEST] end task task_id={task_id} " in line:
            current = None
        elif current is not None and "[airflow.api_fastapi." not in line:
            current.append(line)
    return logs


def written_by_the_task(log: list[str]) -> list[str]:
    """A try's lines before the runner's post-execute group (its callbacks and bookkeeping)."""
    marks = [number for number, line in enumerate(log) if AFTER_THE_TASK in line]
    assert len(marks) == 1, "\n".join(log)
    return log[: marks[0]]


def assert_ends_with_the_problem(log: list[str], words: str) -> None:
    """The task's last line is the problem (at ERROR, after the peak memory), and no line
    of the try holds a traceback or repeats the problem."""
    task_lines = written_by_the_task(log)
    shown = "\n".join(log)
    assert not [line for line in log if "Traceback" in line], shown
    assert [line for line in log if words in line] == [task_lines[-1]], shown
    assert "[error" in task_lines[-1], shown
    assert MEMORY_LINE in task_lines[-2], shown


@pytest.fixture
def failure_callbacks(monkeypatch: pytest.MonkeyPatch) -> Callable[[Any], list[BaseException]]:
    """``attach(task)`` gives the task an on_failure_callback; returns what the calls saw."""
    seen: list[BaseException] = []

    def record(context: Any) -> None:
        seen.append(context["exception"])

    def attach(task: Any) -> list[BaseException]:
        monkeypatch.setattr(task, "on_failure_callback", [record])
        return seen

    return attach


@pytest.mark.parametrize(
    ("dag_name", "conf", "words"),
    [
        ("backfill", BEFORE_1970, BEFORE_1970_WORDS),
        (
            "reconciliation",
            {"table": "rec_count", "method": "count", "repair": "on"},
            "repair needs the export or changes method",
        ),
    ],
)
def test_a_problem_to_fix_ends_the_task_log_with_its_message_once(
    backfill_dag: Any,
    reconciliation_dag: Any,
    output: Callable[[], str],
    failure_callbacks: Callable[[Any], list[BaseException]],
    dag_name: str,
    conf: dict[str, Any],
    words: str,
) -> None:
    dag = backfill_dag if dag_name == "backfill" else reconciliation_dag
    seen = failure_callbacks(dag.get_task("plan"))

    dag_run = run(dag, conf) if dag_name == "backfill" else reconcile(dag, **conf)

    assert dag_run.state == DagRunState.FAILED
    # Failed at once: the backfill's plan has 2 retries, and none was used.
    assert tries(dag_run, "plan") == [("failed", 1)]
    (log,) = task_logs(output(), dag.dag_id, "plan")
    assert_ends_with_the_problem(log, words)
    # The failure callback still ran, and finds the original error as the cause.
    (exception,) = seen
    assert isinstance(exception, AirflowFailException)
    assert isinstance(exception.__cause__, DynamoLakeError)
    assert words in str(exception)
    assert str(exception) == str(exception.__cause__)


@pytest.fixture
def plan_retried_at_once(backfill_dag: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The backfill's plan with one retry that starts at once (the DAG's waits a minute)."""
    plan = backfill_dag.get_task("plan")
    monkeypatch.setattr(plan, "retries", 1)
    monkeypatch.setattr(plan, "retry_delay", timedelta(0))
    return backfill_dag


@pytest.fixture
def plan_store_slowing_down(
    scenario: Scenario, monkeypatch: pytest.MonkeyPatch
) -> Iterator[FaultProxy]:
    """aws_default through a proxy that answers every store of a backfill plan SlowDown."""
    with FaultProxy(scenario.aws.endpoint_url) as proxy:
        extra = {"region_name": "us-east-1", "endpoint_url": proxy.endpoint_url}
        login = {"conn_type": "aws", "login": "testing", "password": "testing"}
        monkeypatch.setenv("AIRFLOW_CONN_AWS_DEFAULT", json.dumps({**login, "extra": extra}))
        monkeypatch.setenv("DYNAMO_LAKE_S3_MAX_ATTEMPTS", "2")
        proxy.rule = FaultRule(
            rate=1.0, methods=frozenset({"PUT"}), path_contains="backfill-plan.json"
        )
        yield proxy


def test_after_a_problem_to_fix_an_error_a_retry_can_fix_keeps_its_traceback_and_retries(
    plan_retried_at_once: Any,
    output: Callable[[], str],
    plan_store_slowing_down: FaultProxy,
) -> None:
    """One process runs both (as dag.test does): the problem's plain line must not make
    the error after it lose its traceback or its retries."""
    dag = plan_retried_at_once
    problem = run(dag, BEFORE_1970)
    assert tries(problem, "plan") == [("failed", 1)]
    (log,) = task_logs(output(), dag.dag_id, "plan")
    assert_ends_with_the_problem(log, BEFORE_1970_WORDS)

    retryable = run(dag, {"table": "badtime", "mode": "full"})

    assert retryable.state == DagRunState.FAILED
    assert tries(retryable, "plan") == [("failed", 2)]  # the retry was used
    assert plan_store_slowing_down.counts["failed"] >= 2
    logs = task_logs(output(), dag.dag_id, "plan")
    assert len(logs) == 2
    error = f"{StorageError.__module__}.StorageError: cannot write s3://{EXPORT_BUCKET}/"
    for log in logs:
        task_lines = written_by_the_task(log)
        shown = "\n".join(task_lines)
        (failed,) = [n for n, line in enumerate(task_lines) if "Task failed with exception" in line]
        assert MEMORY_LINE in task_lines[failed - 1], shown
        assert task_lines[failed + 1] == "Traceback (most recent call last):", shown
        assert task_lines[-1].startswith(error), shown
