"""Fixtures for the local AWS stack's own tests.

The stack's fixtures come from `local_aws.pytest_plugin`, registered in the root conftest;
helpers here read an export the way consumers must:
manifest-summary.json -> manifest-files.json -> data files, checking every checksum on the way.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import time
from dataclasses import dataclass
from typing import Any

import pytest

from local_aws.seed import create_small_table as create_table  # noqa: F401 (used by tests)
from local_aws.server import LocalAwsControl


@dataclass
class ExportFiles:
    summary: dict[str, Any]
    manifest_lines: list[dict[str, Any]]
    data_lines: list[dict[str, Any]]
    data_keys: list[str]
    empty_files: int


def b64_md5(body: bytes) -> str:
    return base64.b64encode(hashlib.md5(body).digest()).decode()


def read_export(s3: Any, bucket: str, manifest_key: str) -> ExportFiles:
    """Read an export through its manifests, asserting the checksums AWS documents."""

    def get(key: str) -> bytes:
        body: bytes = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
        return body

    summary_body = get(manifest_key)
    assert get(manifest_key.removesuffix(".json") + ".md5").decode() == b64_md5(summary_body)
    summary = json.loads(summary_body)
    files_key = summary["manifestFilesS3Key"]
    files_body = get(files_key)
    assert get(files_key.removesuffix(".json") + ".md5").decode() == b64_md5(files_body)
    manifest_lines = [json.loads(line) for line in files_body.splitlines()]
    data_lines: list[dict[str, Any]] = []
    empty_files = 0
    for entry in manifest_lines:
        compressed = get(entry["dataFileS3Key"])
        assert entry["md5Checksum"] == b64_md5(compressed)
        content = gzip.decompress(compressed)
        lines = [json.loads(line) for line in content.splitlines()]
        assert entry["itemCount"] == len(lines)
        empty_files += content == b""
        data_lines.extend(lines)
    return ExportFiles(
        summary,
        manifest_lines,
        data_lines,
        [e["dataFileS3Key"] for e in manifest_lines],
        empty_files,
    )


def wait_for_export(dynamodb: Any, export_arn: str, timeout: float = 20.0) -> dict[str, Any]:
    """Poll DescribeExport until it leaves IN_PROGRESS."""
    deadline = time.monotonic() + timeout
    while True:
        described: dict[str, Any] = dynamodb.describe_export(ExportArn=export_arn)[
            "ExportDescription"
        ]
        if described["ExportStatus"] != "IN_PROGRESS" or time.monotonic() > deadline:
            return described
        time.sleep(0.05)


@pytest.fixture
def dynamodb(emulator: LocalAwsControl) -> Any:
    return emulator.client("dynamodb")


@pytest.fixture
def s3(emulator: LocalAwsControl) -> Any:
    return emulator.client("s3")


@pytest.fixture
def bucket(s3: Any) -> str:
    import uuid

    name = f"exports-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=name)
    return name


def put(dynamodb: Any, table: str, pk: str, **attributes: str) -> None:
    item = {"pk": {"S": pk}, "sk": {"N": "1"}}
    item.update({name: {"S": value} for name, value in attributes.items()})
    dynamodb.put_item(TableName=table, Item=item)


def delete(dynamodb: Any, table: str, pk: str) -> None:
    dynamodb.delete_item(TableName=table, Key={"pk": {"S": pk}, "sk": {"N": "1"}})


def key(pk: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, "sk": {"N": "1"}}
