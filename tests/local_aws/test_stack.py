"""The stack: start/stop, printed instructions, control API, moto services, seeding."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

import pytest
from conftest import create_table, put

import local_aws
from local_aws.seed import SampleTable

DEV = str(Path(local_aws.__file__).resolve().parent.parent)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": os.pathsep.join([DEV, os.environ.get("PYTHONPATH", "")])}


def test_cli_prints_how_to_connect_and_stops_cleanly_on_ctrl_c():
    process = subprocess.Popen(
        [sys.executable, "-m", "local_aws", "--port", "0"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=_env(),
    )
    try:
        assert process.stdout is not None
        printed = []
        for line in process.stdout:
            printed.append(line)
            if line.startswith("Stop with Ctrl-C"):
                break
        text = "".join(printed)
        endpoint = printed[0].split()[-1]
        assert endpoint.startswith("http://127.0.0.1:")
        port = endpoint.rsplit(":", 1)[1]
        assert f"AWS_ENDPOINT_URL='{endpoint}'" in text
        assert "AWS_DEFAULT_REGION='us-east-1'" in text
        assert "AWS_ACCESS_KEY_ID='testing'" in text
        assert "AWS_SECRET_ACCESS_KEY='testing'" in text
        assert (
            "AIRFLOW_CONN_AWS_DEFAULT='aws://testing:testing@/?region_name=us-east-1"
            f"&endpoint_url=http%3A%2F%2F127.0.0.1%3A{port}'" in text
        )
        with urllib.request.urlopen(f"{endpoint}/_local_aws/health", timeout=5) as response:
            assert json.loads(response.read()) == {"status": "ok"}
        process.send_signal(signal.SIGINT)
        remaining, _ = process.communicate(timeout=15)
        assert process.returncode == 0
        assert "local_aws stopped" in remaining
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


@pytest.mark.slow
def test_airflow_reads_the_printed_connection(local_aws):
    """The Amazon provider's own parser gets endpoint, region and credentials from the URI."""
    script = (
        "import sys\n"
        "from airflow.models.connection import Connection\n"
        "from airflow.providers.amazon.aws.utils.connection_wrapper import AwsConnectionWrapper\n"
        "w = AwsConnectionWrapper(conn=Connection(conn_id='aws_default', uri=sys.argv[1]))\n"
        "print('PARSED', w.endpoint_url, w.region_name, w.aws_access_key_id,\n"
        "      w.aws_secret_access_key)\n"
    )
    result = subprocess.run(
        [sys.executable, "-c", script, local_aws.airflow_connection_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    parsed = next(line for line in result.stdout.splitlines() if line.startswith("PARSED "))
    assert parsed.split()[1:] == [local_aws.endpoint_url, "us-east-1", "testing", "testing"]


def test_control_api_refuses_unknown_routes_and_settings(local_aws):
    for route, payload in (("nothing", None), ("settings", {"no_such_setting": 1})):
        request = urllib.request.Request(
            f"{local_aws.endpoint_url}/_local_aws/{route}",
            data=json.dumps(payload).encode() if payload else None,
            method="POST" if payload else "GET",
        )
        with pytest.raises(urllib.error.HTTPError) as info:
            urllib.request.urlopen(request, timeout=5)
        assert info.value.code in (400, 404)


def test_clock_control_round_trip(emulator):
    from datetime import UTC, datetime

    moment = datetime(2024, 1, 2, 3, 4, 5, 678901, tzinfo=UTC)
    assert emulator.set_clock(moment) == moment
    assert emulator.now() == moment
    assert emulator.advance_clock(1.5).isoformat() == "2024-01-02T03:04:07.178901+00:00"
    emulator.release_clock()
    assert emulator.now().year >= 2025


def test_moto_services_still_answer(emulator):
    s3 = emulator.client("s3")
    s3.create_bucket(Bucket="plain-bucket-check")
    s3.put_object(Bucket="plain-bucket-check", Key="k", Body=b"v")
    assert s3.get_object(Bucket="plain-bucket-check", Key="k")["Body"].read() == b"v"
    glue = emulator.client("glue")
    glue.create_database(DatabaseInput={"Name": "lake_check"})
    assert glue.get_database(Name="lake_check")["Database"]["Name"] == "lake_check"


def test_sample_table_is_realistic(sample_table: SampleTable, emulator):
    dynamodb = emulator.client("dynamodb")
    described = dynamodb.describe_table(TableName=sample_table.table_name)["Table"]
    assert [k["KeyType"] for k in described["KeySchema"]] == ["HASH", "RANGE"]
    assert described["StreamSpecification"] == {
        "StreamEnabled": True,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    backups = dynamodb.describe_continuous_backups(TableName=sample_table.table_name)
    status = backups["ContinuousBackupsDescription"]["PointInTimeRecoveryDescription"]
    assert status["PointInTimeRecoveryStatus"] == "ENABLED"
    items = dynamodb.scan(TableName=sample_table.table_name)["Items"]
    assert (
        len(items) == sample_table.item_count == 40 - sample_table.deleted + sample_table.inserted
    )
    assert sample_table.updated + sample_table.deleted + sample_table.inserted == 10
    kinds = {kind for item in items for value in item.values() for kind in value}
    assert kinds == {"S", "N", "B", "BOOL", "NULL", "M", "L", "SS", "NS", "BS"}

    streams = emulator.client("dynamodbstreams")
    shard = streams.describe_stream(StreamArn=sample_table.stream_arn)["StreamDescription"][
        "Shards"
    ][0]
    iterator = streams.get_shard_iterator(
        StreamArn=sample_table.stream_arn,
        ShardId=shard["ShardId"],
        ShardIteratorType="TRIM_HORIZON",
    )["ShardIterator"]
    records = streams.get_records(ShardIterator=iterator, Limit=1000)["Records"]
    assert {r["eventName"] for r in records} >= {"INSERT", "MODIFY"}


def test_seed_command_creates_and_churns(local_aws):
    result = subprocess.run(
        [
            sys.executable, "-m", "local_aws.seed",
            "--endpoint-url", local_aws.endpoint_url,
            "--table", "seeded-by-cli", "--items", "30", "--churn", "6",
        ],
        capture_output=True, text=True, timeout=60, env=_env(), check=True,
    )  # fmt: skip
    assert "table seeded-by-cli:" in result.stdout
    count = local_aws.client("dynamodb").scan(TableName="seeded-by-cli", Select="COUNT")["Count"]
    assert f"table seeded-by-cli: {count} items" in result.stdout


def test_partiql_and_transaction_writes_enter_the_history(emulator, dynamodb, s3, bucket):
    from conftest import read_export, wait_for_export

    emulator.update_settings(pitr_lag_seconds=0)
    table, arn = create_table(dynamodb)
    put(dynamodb, table, "a", v="x")
    dynamodb.transact_write_items(
        TransactItems=[
            {"Put": {"TableName": table, "Item": {"pk": {"S": "t"}, "sk": {"N": "1"}}}},
            {"Delete": {"TableName": table, "Key": {"pk": {"S": "a"}, "sk": {"N": "1"}}}},
        ]
    )
    dynamodb.execute_statement(Statement=f"INSERT INTO \"{table}\" VALUE {{'pk': 'q', 'sk': 1}}")
    done = wait_for_export(
        dynamodb,
        dynamodb.export_table_to_point_in_time(TableArn=arn, S3Bucket=bucket, S3Prefix="p")[
            "ExportDescription"
        ]["ExportArn"],
    )
    lines = read_export(s3, bucket, done["ExportManifest"]).data_lines
    assert sorted(line["Item"]["pk"]["S"] for line in lines) == ["q", "t"]
