"""The ``latest.json`` pointer on S3 (the local emulator over HTTP): written with a condition,
so a run never replaces what a newer run wrote between its read and its write, and rewritten
from the run's own report when it cannot be read."""

from __future__ import annotations

import uuid

import orjson

from dynamo_lake.reconciliation.report import (
    LATEST,
    ReconciliationReport,
    latest_report,
    list_reports,
    write_report,
)
from dynamo_lake.storage import S3Options, resolve
from local_aws.server import LocalAwsControl


def _lake(local_aws: LocalAwsControl) -> tuple[str, S3Options]:
    bucket = f"pointer-{uuid.uuid4().hex[:8]}"
    local_aws.client("s3").create_bucket(Bucket=bucket)
    options = S3Options(local_aws.endpoint_url, "us-east-1", "testing", "testing")
    return f"s3://{bucket}/dynamo-cdc/shop/orders", options


def _report(as_of: str, run_id: str, status: str = "ok") -> ReconciliationReport:
    return ReconciliationReport(
        table="orders", as_of=as_of, method="export", status=status, run_id=run_id
    )  # type: ignore[arg-type]


def test_an_update_lost_between_read_and_write_is_read_again(local_aws: LocalAwsControl) -> None:
    """A writer that read the pointer, then lost the race to a newer run's write, sees that
    write on its next try (its conditional PUT fails) and leaves it in place."""
    lake, options = _lake(local_aws)
    pointer = resolve(lake, options).child("_reconciliation", LATEST)
    pointer.write_bytes(b'{"as_of": "1"}')
    seen: list[bytes | None] = []

    def decide(current: bytes | None) -> bytes | None:
        seen.append(current)
        if len(seen) == 1:  # another run writes between this one's read and its write
            pointer.write_bytes(b'{"as_of": "3"}')
            return b'{"as_of": "2"}'
        return None if current == b'{"as_of": "3"}' else b'{"as_of": "2"}'

    assert pointer.update(decide) is False
    assert seen == [b'{"as_of": "1"}', b'{"as_of": "3"}']
    assert pointer.read_bytes() == b'{"as_of": "3"}'


def test_a_pointer_created_meanwhile_is_not_overwritten(local_aws: LocalAwsControl) -> None:
    lake, options = _lake(local_aws)
    pointer = resolve(lake, options).child("_reconciliation", LATEST)
    calls = []

    def decide(current: bytes | None) -> bytes | None:
        calls.append(current)
        if current is None:
            pointer.write_bytes(b"newer")  # If-None-Match: * must now fail
            return b"older"
        return None

    assert pointer.update(decide) is False and pointer.read_bytes() == b"newer"
    assert calls == [None, b"newer"]


def test_reports_and_the_pointer_on_s3(local_aws: LocalAwsControl) -> None:
    lake, options = _lake(local_aws)
    newer = _report("2024-06-02T12:00:00.000000Z", "run-2", "drift")
    older = _report("2024-06-01T12:00:00.000000Z", "run-1")
    write_report(lake, newer, options)
    write_report(lake, older, options)  # a late re-run of an older day
    assert latest_report(lake, options) == newer
    assert [item.run_id for item in list_reports(lake, options)] == ["run-1", "run-2"]

    pointer = resolve(lake, options).child("_reconciliation", LATEST)
    pointer.write_bytes(b"\x00 not json")
    write_report(lake, older, options)  # an unreadable pointer is rewritten from the run
    assert orjson.loads(pointer.read_bytes())["run_id"] == "run-1"
    write_report(lake, newer, options)
    assert latest_report(lake, options) == newer
