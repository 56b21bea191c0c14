"""Fixtures for Airflow against the local AWS stack (see airflow_scenario for the world)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import yaml
from airflow_scenario import (
    DDB_TABLE,
    EXPORT_BUCKET,
    ITEMS,
    LAKE_BUCKET,
    NO_PITR_TABLE,
    REPO,
    Scenario,
    tables_yaml,
)

from local_aws.seed import apply_churn, create_sample_table, load_items
from local_aws.server import LocalAwsControl


@pytest.fixture(scope="session")
def airflow_db() -> None:
    """Create the metadata DB in the test AIRFLOW_HOME (once per session, ~10 s)."""
    subprocess.run(
        [sys.executable, "-m", "airflow", "db", "migrate"],
        check=True,
        capture_output=True,
        env=os.environ.copy(),
    )


@pytest.fixture(scope="session")
def scenario(
    local_aws: LocalAwsControl, airflow_db: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Scenario]:
    for name, value in local_aws.environment().items():
        os.environ[name] = value
    tables_file = tmp_path_factory.mktemp("config") / "tables.yaml"
    tables_file.write_text(yaml.safe_dump(tables_yaml()))
    os.environ["DYNAMO_LAKE_TABLES_FILE"] = str(tables_file)

    dynamodb = local_aws.client("dynamodb", max_attempts=3)
    s3 = local_aws.client("s3", max_attempts=3)
    now = datetime.now(UTC).replace(minute=0, second=0, microsecond=0)
    t0 = now - timedelta(days=2)
    local_aws.set_clock(t0)
    for bucket in (EXPORT_BUCKET, LAKE_BUCKET):
        s3.create_bucket(Bucket=bucket)
    create_sample_table(dynamodb, DDB_TABLE)
    create_sample_table(dynamodb, NO_PITR_TABLE)
    dynamodb.update_continuous_backups(
        TableName=NO_PITR_TABLE,
        PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False},
    )
    local_aws.set_clock(t0 + timedelta(minutes=5))
    load_items(dynamodb, DDB_TABLE, ITEMS, seed=1)
    changes_from = t0 + timedelta(hours=1)
    for step in range(6):
        local_aws.set_clock(changes_from + timedelta(minutes=5 * step))
        apply_churn(dynamodb, DDB_TABLE, 5, seed=step)
    changes_to = changes_from + timedelta(minutes=30)
    local_aws.release_clock()
    yield Scenario(t0, changes_from, changes_to, tables_file, local_aws)


@pytest.fixture(scope="session")
def dag_bag(scenario: Scenario) -> Any:
    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=str(REPO / "dags"))
    assert not bag.import_errors, bag.import_errors
    return bag


@pytest.fixture(scope="session")
def backfill_dag(dag_bag: Any) -> Any:
    return dag_bag.get_dag("dynamodb_backfill")


@pytest.fixture(scope="session")
def reconciliation_dag(dag_bag: Any) -> Any:
    dag = dag_bag.get_dag("dynamodb_reconciliation")
    # Failures here are asserted, not retried (the retry paths have their own tests).
    for task in dag.tasks:
        task.retries = 0
    return dag
