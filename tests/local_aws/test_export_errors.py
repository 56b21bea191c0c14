"""Export errors as AWS reports them, and ClientToken idempotency."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from botocore.exceptions import ClientError
from conftest import create_table, put, wait_for_export

T0 = datetime(2024, 5, 1, tzinfo=UTC)


def error_code(info: pytest.ExceptionInfo[ClientError]) -> str:
    assert info.value.response["ResponseMetadata"]["HTTPStatusCode"] == 400
    return str(info.value.response["Error"]["Code"])


def test_unknown_table_is_table_not_found(emulator, dynamodb, bucket):
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/no-such-table"
    with pytest.raises(ClientError) as info:
        dynamodb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, S3Prefix="x")
    assert error_code(info) == "TableNotFoundException"
    assert arn in info.value.response["Error"]["Message"]


def test_table_without_pitr_is_refused(emulator, dynamodb, bucket):
    table, arn = create_table(dynamodb, pitr=False)
    with pytest.raises(ClientError) as info:
        dynamodb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, S3Prefix="x")
    assert error_code(info) == "PointInTimeRecoveryUnavailableException"
    assert f"'{table}'" in info.value.response["Error"]["Message"]


def test_export_time_must_lie_in_the_restorable_window(emulator, dynamodb, bucket):
    emulator.update_settings(pitr_lag_seconds=5)
    emulator.set_clock(T0)
    _, arn = create_table(dynamodb)
    emulator.advance_clock(100)
    for outside in (T0 - timedelta(seconds=1), T0 + timedelta(seconds=96)):
        with pytest.raises(ClientError) as info:
            dynamodb.export_table_to_point_in_time(
                TableArn=arn, S3Bucket=bucket, S3Prefix="x", ExportTime=outside
            )
        assert error_code(info) == "InvalidExportTimeException"
    for inside in (T0, T0 + timedelta(seconds=95)):
        described = dynamodb.export_table_to_point_in_time(
            TableArn=arn, S3Bucket=bucket, S3Prefix="x", ExportTime=inside
        )["ExportDescription"]
        assert described["ExportTime"] == inside


def test_missing_bucket_fails_the_export_not_the_call(emulator, dynamodb):
    emulator.update_settings(pitr_lag_seconds=0)
    _, arn = create_table(dynamodb)
    started = dynamodb.export_table_to_point_in_time(
        TableArn=arn, S3Bucket="no-such-bucket-for-export", S3Prefix="x"
    )["ExportDescription"]
    assert started["ExportStatus"] == "IN_PROGRESS"
    done = wait_for_export(dynamodb, started["ExportArn"])
    assert done["ExportStatus"] == "FAILED"
    assert done["FailureCode"] == "S3NoSuchBucket"
    assert done["FailureMessage"]
    assert "ExportManifest" not in done
    assert "ItemCount" not in done


def test_unknown_export_arn_is_a_4xx_export_not_found(emulator, dynamodb):
    arn = "arn:aws:dynamodb:us-east-1:123456789012:table/t/export/01700000000000-00000000"
    with pytest.raises(ClientError) as info:
        dynamodb.describe_export(ExportArn=arn)
    assert error_code(info) == "ExportNotFoundException"


def test_same_client_token_same_parameters_is_the_same_export(emulator, dynamodb, bucket):
    emulator.update_settings(pitr_lag_seconds=0)
    table, arn = create_table(dynamodb)
    put(dynamodb, table, "a", v="x")
    request = {"TableArn": arn, "S3Bucket": bucket, "S3Prefix": "idem", "ClientToken": "run-1"}
    first = dynamodb.export_table_to_point_in_time(**request)["ExportDescription"]
    wait_for_export(dynamodb, first["ExportArn"])
    emulator.advance_clock(3600)
    again = dynamodb.export_table_to_point_in_time(**request)["ExportDescription"]
    assert again["ExportArn"] == first["ExportArn"]
    assert again["ExportTime"] == first["ExportTime"]
    assert again["ExportStatus"] == "COMPLETED"
    assert len(dynamodb.list_exports(TableArn=arn)["ExportSummaries"]) == 1

    with pytest.raises(ClientError) as info:
        dynamodb.export_table_to_point_in_time(**{**request, "S3Prefix": "other"})
    assert error_code(info) == "ExportConflictException"


def test_client_token_expires_after_eight_hours(emulator, dynamodb, bucket):
    emulator.update_settings(pitr_lag_seconds=0)
    _, arn = create_table(dynamodb)
    request = {"TableArn": arn, "S3Bucket": bucket, "S3Prefix": "ttl", "ClientToken": "run-2"}
    first = dynamodb.export_table_to_point_in_time(**request)["ExportDescription"]
    emulator.advance_clock(8 * 3600 + 1)
    later = dynamodb.export_table_to_point_in_time(**request)["ExportDescription"]
    assert later["ExportArn"] != first["ExportArn"]
