"""Faults during a backfill's commit, caused for real: AWS answers through a fault-injecting
proxy on loopback (nothing in the code is patched). Whatever failed, running the same run
again ends in a correct lake: every item once, the record written, no duplicate rows and
nothing left in staging."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Any

import pytest
from airflow.utils.state import DagRunState
from airflow_scenario import Scenario
from test_backfill_dag import _lake, _options, _visible_files, lake_rows, run, states, table_items

from dynamo_lake.backfill import read_backfill_record
from dynamo_lake.config import load_tables
from local_aws.fault_proxy import FaultProxy, FaultRule

pytestmark = pytest.mark.usefixtures("scenario")


@pytest.fixture
def proxy(scenario: Scenario, monkeypatch: pytest.MonkeyPatch) -> Iterator[FaultProxy]:
    """Airflow's aws_default (hooks and the lake's S3) through the proxy; no faults yet."""
    with FaultProxy(scenario.aws.endpoint_url) as running:
        extra = {"region_name": "us-east-1", "endpoint_url": running.endpoint_url}
        monkeypatch.setenv(
            "AIRFLOW_CONN_AWS_DEFAULT",
            json.dumps(
                {"conn_type": "aws", "login": "testing", "password": "testing", "extra": extra}
            ),
        )
        monkeypatch.setenv("DYNAMO_LAKE_S3_MAX_ATTEMPTS", "2")
        yield running


@pytest.fixture
def no_retries(backfill_dag: Any, monkeypatch: pytest.MonkeyPatch) -> Any:
    """The failure is asserted, not retried after a minute; the re-run is the retry."""
    for task in backfill_dag.tasks:
        monkeypatch.setattr(task, "retries", 0)
    return backfill_dag


def _fail_then_heal(
    dag: Any,
    scenario: Scenario,
    proxy: FaultProxy,
    entry: str,
    rule: FaultRule,
    between: Callable[[Any], None],
) -> tuple[dict[str, list[str]], Any]:
    """Run with the fault, look (``between``), then the same run again without it: the
    failed run's task states (read before the re-run replaces them) and the re-run."""
    moment = datetime.now().astimezone() - timedelta(minutes=1)
    conf = {"table": entry, "mode": "full", "export_time": scenario.changes_to.isoformat()}
    proxy.rule = rule
    failed = run(dag, conf, logical_date=moment, run_after=moment)
    assert failed.state == DagRunState.FAILED
    failed_states = states(failed)
    assert proxy.counts["failed"] >= 1
    between(failed)
    proxy.rule = FaultRule()
    healed = run(dag, conf, logical_date=moment, run_after=moment)
    assert healed.run_id == failed.run_id
    assert healed.state == DagRunState.SUCCESS, states(healed)
    return failed_states, healed


def _assert_correct_lake(scenario: Scenario, entry: str, run_id: str) -> None:
    rows = lake_rows(scenario, entry)
    assert sorted(data for _, _, _, data in rows) == sorted(table_items(scenario))
    assert len({uuid for uuid, _, _, _ in rows}) == len(rows), "a row is in the lake twice"
    record = read_backfill_record(load_tables().table(entry).lake_uri, run_id, _options(scenario))
    assert record is not None and record.rows == len(rows)
    files = _visible_files(scenario, entry)
    assert len(files) == record.files
    staging = _lake(scenario, entry).child("_staging")
    assert not staging.exists() or staging.list_files() == []


def test_glue_failing_after_the_files_are_published_then_the_run_again(
    no_retries: Any, scenario: Scenario, proxy: FaultProxy
) -> None:
    lake_uri = load_tables().table("gluefault").lake_uri

    def published_whole_and_unrecorded(failed: Any) -> None:
        # The export was published whole before Glue was asked (never a part of it), and
        # no record claims it yet.
        rows = lake_rows(scenario, "gluefault")
        assert sorted(data for _, _, _, data in rows) == sorted(table_items(scenario))
        assert read_backfill_record(lake_uri, failed.run_id, _options(scenario)) is None

    rule = FaultRule(rate=1.0, target_contains="AWSGlue.", error="InternalServerError")
    failed, healed = _fail_then_heal(
        no_retries, scenario, proxy, "gluefault", rule, published_whole_and_unrecorded
    )
    assert failed["commit"] == ["failed"], failed
    _assert_correct_lake(scenario, "gluefault", healed.run_id)
    glue = scenario.client("glue").get_table(DatabaseName="it_shop", Name="orders_gluefault")
    assert glue["Table"]["StorageDescriptor"]["Location"].rstrip("/") == lake_uri


def test_the_record_failing_to_write_after_publish_and_glue_then_the_run_again(
    no_retries: Any, scenario: Scenario, proxy: FaultProxy
) -> None:
    rule = FaultRule(
        rate=1.0, methods=frozenset({"PUT"}), path_contains="/_backfills/", error="InternalError"
    )
    files: list[list[str]] = []
    failed, healed = _fail_then_heal(
        no_retries,
        scenario,
        proxy,
        "recordfault",
        rule,
        lambda _: files.append(_visible_files(scenario, "recordfault")),
    )
    assert failed["commit"] == ["failed"], failed
    _assert_correct_lake(scenario, "recordfault", healed.run_id)
    assert files[0] and _visible_files(scenario, "recordfault") == files[0]  # the same files


@pytest.mark.parametrize(
    ("error", "retryable"),
    [
        ("InternalServerError", True),
        ("ThrottlingException", True),
        ("AccessDeniedException", False),
    ],
)
def test_glue_not_answering_is_retried_by_the_task_and_a_refusal_is_not(
    scenario: Scenario, error: str, retryable: bool
) -> None:
    import boto3
    from botocore.config import Config

    from dynamo_lake.errors import CatalogError
    from dynamo_lake.lake.catalog import ensure_glue_table

    rule = FaultRule(rate=1.0, target_contains="AWSGlue.", error=error)
    with FaultProxy(scenario.aws.endpoint_url, rule) as running:
        glue = boto3.client(
            "glue",
            endpoint_url=running.endpoint_url,
            region_name="us-east-1",
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
            config=Config(retries={"total_max_attempts": 2, "mode": "standard"}),
        )
        with pytest.raises(CatalogError, match=f"it_shop.orders_x: {error}") as raised:
            ensure_glue_table(glue, "it_shop", "orders_x", "s3://it-lake/x")
    assert raised.value.retryable is retryable
