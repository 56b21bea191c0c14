"""DescribeContinuousBackups: the PITR window follows the emulator clock and the history."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from conftest import create_table

T0 = datetime(2024, 7, 1, tzinfo=UTC)


def pitr(dynamodb, table: str) -> dict:
    return dynamodb.describe_continuous_backups(TableName=table)["ContinuousBackupsDescription"][
        "PointInTimeRecoveryDescription"
    ]


def test_window_runs_from_enabling_to_now_minus_lag(emulator, dynamodb):
    emulator.update_settings(pitr_lag_seconds=5)
    emulator.set_clock(T0)
    table, _ = create_table(dynamodb)
    emulator.advance_clock(100)
    described = pitr(dynamodb, table)
    assert described["PointInTimeRecoveryStatus"] == "ENABLED"
    assert described["EarliestRestorableDateTime"] == T0
    assert described["LatestRestorableDateTime"] == T0 + timedelta(seconds=95)
    assert described["RecoveryPeriodInDays"] == 35


def test_window_slides_with_the_recovery_period(emulator, dynamodb):
    emulator.update_settings(pitr_lag_seconds=0)
    emulator.set_clock(T0)
    table, _ = create_table(dynamodb)
    dynamodb.update_continuous_backups(
        TableName=table,
        PointInTimeRecoverySpecification={
            "PointInTimeRecoveryEnabled": True,
            "RecoveryPeriodInDays": 1,
        },
    )
    emulator.advance_clock(3 * 86_400)
    described = pitr(dynamodb, table)
    assert described["EarliestRestorableDateTime"] == T0 + timedelta(days=2)
    assert described["LatestRestorableDateTime"] == T0 + timedelta(days=3)


def test_disabled_and_reenabled_starts_a_new_window(emulator, dynamodb):
    emulator.set_clock(T0)
    table, _ = create_table(dynamodb)
    dynamodb.update_continuous_backups(
        TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": False}
    )
    assert pitr(dynamodb, table) == {"PointInTimeRecoveryStatus": "DISABLED"}
    emulator.advance_clock(600)
    dynamodb.update_continuous_backups(
        TableName=table, PointInTimeRecoverySpecification={"PointInTimeRecoveryEnabled": True}
    )
    assert pitr(dynamodb, table)["EarliestRestorableDateTime"] == T0 + timedelta(seconds=600)


def test_unknown_table_is_table_not_found(emulator, dynamodb):
    with pytest.raises(ClientError) as info:
        dynamodb.describe_continuous_backups(TableName="no-such-table")
    assert info.value.response["Error"]["Code"] == "TableNotFoundException"
