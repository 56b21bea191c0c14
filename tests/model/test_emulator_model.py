"""The emulator's export model stays honest inside the scenarios: a history written to its
table (each write at its own moment on the emulator's clock) exports, at a moment T, exactly
the model at T, and over a window, exactly the model's compacted changes. Read back through
the product's own export reader."""

from __future__ import annotations

import random
import time
from datetime import timedelta
from typing import Any

import pytest
from table_model import SECOND, History

from dynamo_lake.cdc import micros_to_datetime, row_from_incremental_export_line
from dynamo_lake.exports.manifest import read_manifest, read_rows
from dynamo_lake.storage import S3Options
from local_aws.seed import create_small_table
from local_aws.server import LocalAwsControl

SEEDS = range(4)


def _export(dynamodb: Any, **request: Any) -> str:
    started = dynamodb.export_table_to_point_in_time(**request)["ExportDescription"]
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        described = dynamodb.describe_export(ExportArn=started["ExportArn"])["ExportDescription"]
        if described["ExportStatus"] != "IN_PROGRESS":
            assert described["ExportStatus"] == "COMPLETED", described
            return f"s3://{request['S3Bucket']}/{described['ExportManifest']}"
        time.sleep(0.2)
    raise AssertionError("the export did not complete")


def _rows(summary_uri: str, options: S3Options) -> set[tuple[str, int, str]]:
    manifest = read_manifest(summary_uri, options)
    found = set()
    for data_file in manifest.data_files:
        for batch in read_rows(manifest, data_file):
            found.update((row.op, row.time_stamp, row.data) for row in batch)
    return found


@pytest.mark.parametrize("seed", SEEDS)
def test_exports_of_the_emulator_equal_the_model(seed: int, emulator: LocalAwsControl) -> None:
    rng = random.Random(seed)
    history = History(rng, keys=40, changes=60, max_gap_ms=60_000)
    dynamodb, s3 = emulator.client("dynamodb"), emulator.client("s3")
    bucket = f"model-{seed}-{rng.randrange(10**9)}"
    s3.create_bucket(Bucket=bucket)
    emulator.set_clock(micros_to_datetime(history.changes[0].time) - timedelta(minutes=5))
    table, arn = create_small_table(dynamodb)
    for change in history.changes:
        emulator.set_clock(micros_to_datetime(change.time))
        if change.new is None:
            dynamodb.delete_item(TableName=table, Key=change.stream_record()["dynamodb"]["Keys"])
        else:
            dynamodb.put_item(TableName=table, Item=change.new)
    emulator.set_clock(micros_to_datetime(history.end) + timedelta(minutes=10))
    options = S3Options(emulator.endpoint_url, "us-east-1", "testing", "testing")

    for moment in history.quiet_moments(rng, 3, margin=3 * SECOND):
        at = moment // SECOND * SECOND  # a whole second, still inside the quiet gap
        summary = _export(
            dynamodb,
            TableArn=arn,
            S3Bucket=bucket,
            S3Prefix="full",
            ExportTime=micros_to_datetime(at),
        )
        exported = {data for _, _, data in _rows(summary, options)}
        assert exported == set(history.data_at(at).values()), f"seed {seed}: full export at {at}"

    start = history.changes[0].time // SECOND * SECOND
    end = max(history.end + SECOND, start + 15 * 60 * SECOND) // SECOND * SECOND
    summary = _export(
        dynamodb,
        TableArn=arn,
        S3Bucket=bucket,
        S3Prefix="incremental",
        ExportType="INCREMENTAL_EXPORT",
        IncrementalExportSpecification={
            "ExportFromTime": micros_to_datetime(start),
            "ExportToTime": micros_to_datetime(end),
            "ExportViewType": "NEW_AND_OLD_IMAGES",
        },
    )
    expected = {
        (row.op, row.time_stamp, row.data)
        for row in (
            row_from_incremental_export_line(line, window=(start, end))
            for line in history.incremental_export_lines(start, end)
        )
    }
    assert _rows(summary, options) == expected, f"seed {seed}: incremental [{start}, {end})"
