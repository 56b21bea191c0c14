"""The ``dynamo-lake`` command under hostile conditions, as real processes: bad lake
locations, lines that are not items, throttled S3 (a fault-injecting proxy in front of the
local AWS stack), signals, and two conversions of one export at once. Each case failed
before its fix (a traceback, a leftover process, or part of an export left visible)."""

from __future__ import annotations

import base64
import contextlib
import gzip
import hashlib
import io
import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import duckdb
import orjson
import pytest

from local_aws.fault_proxy import FaultProxy, FaultRule
from local_aws.server import LocalAwsControl
from sample_export import write_sample_export

CLI = Path(sys.executable).parent / "dynamo-lake"
GLOB = "year=*/month=*/day=*/*.parquet"


def _run(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> Any:
    return subprocess.run(
        [str(CLI), *args],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
        check=False,
        **kwargs,
    )


def _one_line_error(result: Any) -> str:
    assert result.returncode == 1, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = [line for line in result.stderr.splitlines() if line.startswith("dynamo-lake: ")]
    assert len(lines) == 1, result.stderr
    return lines[0]


def _visible_rows(lake: Path) -> tuple[int, int]:
    files = [str(path) for path in lake.glob(GLOB) if path.is_file()]
    if not files:
        return 0, 0
    ((rows, distinct),) = duckdb.sql(
        f"select count(*), count(distinct uuid) from read_parquet({files})"
    ).fetchall()
    return rows, distinct


@pytest.fixture(scope="module")
def big_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """240,000 items in 4 files: a few seconds of work for the conversions below."""
    return write_sample_export(tmp_path_factory.mktemp("bucket"), items=240_000, files=4)


# --- lake locations that cannot hold a lake -----------------------------------------------


def test_a_lake_that_is_a_file_or_below_one_is_refused(make_export: Any, tmp_path: Path) -> None:
    summary = make_export(items=20, files=1)
    a_file = tmp_path / "plain.txt"
    a_file.write_text("x")
    for lake, expected in ((a_file, "is a file"), (a_file / "below", "is below")):
        line = _one_line_error(_run("convert", str(summary), "--lake", str(lake)))
        assert expected in line and "give a folder path" in line, line
    assert a_file.read_text() == "x"


def test_a_read_only_lake_folder_is_refused(make_export: Any, tmp_path: Path) -> None:
    summary = make_export(items=20, files=1)
    lake = tmp_path / "lake"
    lake.mkdir()
    # Root writes through permission bits, so as root the folder is made immutable instead.
    if os.geteuid() == 0:
        locked = subprocess.run(["chattr", "+i", str(lake)], capture_output=True, check=False)
        if locked.returncode != 0:
            pytest.skip(f"cannot make a folder read-only for root here: {locked.stderr!r}")
        unlock = ["chattr", "-i", str(lake)]
    else:
        lake.chmod(0o555)
        unlock = ["chmod", "0755", str(lake)]
    try:
        line = _one_line_error(_run("convert", str(summary), "--lake", str(lake)))
    finally:
        subprocess.run(unlock, check=True)
    assert "is not writable" in line and str(lake) in line, line
    assert not list(lake.rglob("*"))


def test_an_empty_lake_is_refused(make_export: Any, tmp_path: Path) -> None:
    summary = make_export(items=20, files=1)
    line = _one_line_error(_run("convert", str(summary), "--lake", "", cwd=tmp_path))
    assert "empty location" in line
    assert not list(tmp_path.rglob("*.parquet"))


@pytest.mark.parametrize(
    ("lake", "expected"),
    [
        ("s3://no-such-bucket-{id}/dynamo-cdc/db/t", "does not exist"),
        ("s3://Bad_Bucket/dynamo-cdc/db/t", "is not a valid S3 bucket name"),
        ("s3://ok-bucket/dynamo-cdc/../t", "'..' are not allowed"),
    ],
)
def test_s3_lakes_that_cannot_be_used_are_refused(
    local_aws: LocalAwsControl, make_export: Any, lake: str, expected: str
) -> None:
    summary = make_export(items=20, files=1)
    result = _run(
        "convert",
        str(summary),
        "--lake",
        lake.format(id=uuid.uuid4().hex[:8]),
        env=local_aws.environment(),
    )
    assert expected in _one_line_error(result)


@pytest.mark.parametrize("line", [b"[1,2,3]", b'"hello"', b"null", b"5"])
def test_a_data_line_that_is_not_an_object_is_named(
    make_export: Any, bucket_root: Path, tmp_path: Path, line: bytes
) -> None:
    summary = make_export(items=10, files=1)
    raw = orjson.loads(summary.read_bytes())
    files = bucket_root / raw["manifestFilesS3Key"]
    (entry,) = [orjson.loads(text) for text in files.read_bytes().splitlines() if text]
    data = bucket_root / entry["dataFileS3Key"]
    lines = gzip.decompress(data.read_bytes()).splitlines()
    lines[6] = line
    body = gzip.compress(b"\n".join(lines) + b"\n", mtime=0)
    data.write_bytes(body)
    entry["md5Checksum"] = base64.b64encode(hashlib.md5(body).digest()).decode()
    files.write_bytes(orjson.dumps(entry) + b"\n")
    files.with_suffix(".md5").unlink()

    error = _one_line_error(_run("convert", str(summary), "--lake", str(tmp_path / "lake")))
    assert f"{data}:7" in error and "JSON object" in error, error


# --- throttled S3 --------------------------------------------------------------------------


@pytest.fixture
def lake_bucket(local_aws: LocalAwsControl) -> str:
    name = f"lake-{uuid.uuid4().hex[:10]}"
    local_aws.client("s3", max_attempts=3).create_bucket(Bucket=name)
    return name


def _s3_rows(local_aws: LocalAwsControl, bucket: str, prefix: str) -> list[tuple[str, str]]:
    import pyarrow.parquet as pq

    s3 = local_aws.client("s3", max_attempts=3)
    found = []
    for page in s3.get_paginator("list_objects_v2").paginate(Bucket=bucket, Prefix=prefix):
        for item in page.get("Contents", []):
            key = item["Key"]
            if key.endswith(".parquet") and "/_" not in key[len(prefix) :]:
                body = s3.get_object(Bucket=bucket, Key=key)["Body"].read()
                table = pq.read_table(io.BytesIO(body), columns=["uuid", "data"])
                found += list(zip(*table.to_pydict().values(), strict=True))
    return sorted(found)


def test_s3_that_keeps_refusing_writes_ends_in_one_line_naming_the_object(
    local_aws: LocalAwsControl, make_export: Any, lake_bucket: str
) -> None:
    summary = make_export(items=200, files=2)
    rule = FaultRule(rate=1.0, methods=frozenset({"PUT", "POST"}), path_contains=lake_bucket)
    with FaultProxy(local_aws.endpoint_url, rule) as proxy:
        environment = {
            **local_aws.environment(),
            "AWS_ENDPOINT_URL": proxy.endpoint_url,
            "DYNAMO_LAKE_S3_MAX_ATTEMPTS": "2",
        }
        lake = f"s3://{lake_bucket}/dynamo-cdc/db/t"
        line = _one_line_error(_run("convert", str(summary), "--lake", lake, env=environment))
    assert f"{lake_bucket}/dynamo-cdc/db/t/" in line, line
    assert "SlowDown" in line or "503" in line or "reduce your request rate" in line, line
    assert proxy.counts["failed"] >= 2
    assert _s3_rows(local_aws, lake_bucket, "dynamo-cdc/db/t/") == []


def test_a_conversion_completes_when_a_third_of_s3_requests_are_throttled(
    local_aws: LocalAwsControl, make_export: Any, bucket_root: Path, lake_bucket: str
) -> None:
    summary = make_export(items=3_000, files=3)
    exports = f"exports-{uuid.uuid4().hex[:8]}"
    s3 = local_aws.client("s3", max_attempts=3)
    s3.create_bucket(Bucket=exports)
    for path in (p for p in bucket_root.rglob("*") if p.is_file()):
        s3.put_object(
            Bucket=exports, Key=path.relative_to(bucket_root).as_posix(), Body=path.read_bytes()
        )
    source = f"s3://{exports}/{summary.relative_to(bucket_root).as_posix()}"
    clean = _run(
        "convert", source, "--lake", f"s3://{lake_bucket}/clean", env=local_aws.environment()
    )
    assert clean.returncode == 0, clean.stderr

    with FaultProxy(local_aws.endpoint_url, FaultRule(rate=1 / 3, seed=7)) as proxy:
        environment = {**local_aws.environment(), "AWS_ENDPOINT_URL": proxy.endpoint_url}
        result = _run("convert", source, "--lake", f"s3://{lake_bucket}/faulty", env=environment)
    assert result.returncode == 0, result.stderr
    assert proxy.counts["failed"] > 10, proxy.counts
    assert orjson.loads(result.stdout)["rows"] == 3_000
    assert _s3_rows(local_aws, lake_bucket, "faulty/") == _s3_rows(local_aws, lake_bucket, "clean/")


# --- signals: the workers die with the command ---------------------------------------------


def _children(pid: int) -> set[int]:
    found = set()
    for task in Path(f"/proc/{pid}/task").glob("*/children"):
        found |= {int(child) for child in task.read_text().split()}
    return found | {grandchild for child in found for grandchild in _children(child)}


def _alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (FileNotFoundError, ProcessLookupError):
        return False
    return state not in ("Z", "X")


@contextlib.contextmanager
def _converting(summary: Path, lake: Path) -> Iterator[tuple[subprocess.Popen[str], set[int]]]:
    process = subprocess.Popen(
        [str(CLI), "convert", str(summary), "--lake", str(lake), "--workers", "2"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.monotonic() + 120
        # Wait until both workers exist and one file is staged: mid-conversion.
        while True:
            assert process.poll() is None, process.communicate()
            assert time.monotonic() < deadline
            workers = _children(process.pid)
            if len(workers) >= 2 and list((lake / "_staging").rglob("*.parquet")):
                break
            time.sleep(0.01)
        yield process, workers
    finally:
        if process.poll() is None:
            process.kill()
        process.communicate()


def _wait_gone(pids: set[int], seconds: float) -> set[int]:
    deadline = time.monotonic() + seconds
    while (alive := {pid for pid in pids if _alive(pid)}) and time.monotonic() < deadline:
        time.sleep(0.05)
    return alive


def test_sigterm_stops_the_workers_and_leaves_nothing(big_export: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    with _converting(big_export, lake) as (process, workers):
        process.send_signal(signal.SIGTERM)
        process.wait(timeout=30)
        assert process.returncode == 128 + signal.SIGTERM
        assert _wait_gone(workers, 10) == set()
    assert _visible_rows(lake) == (0, 0)
    assert not list((lake / "_staging").rglob("*.parquet"))


def test_sigkill_takes_the_workers_down_too(big_export: Path, tmp_path: Path) -> None:
    lake = tmp_path / "lake"
    with _converting(big_export, lake) as (process, workers):
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=30)
        # Workers die with their parent (and the resource tracker once they are gone).
        assert _wait_gone(workers, 10) == set()
    assert _visible_rows(lake) == (0, 0)
    # The next run finishes the job and clears what the killed one left in staging.
    assert _run("convert", str(big_export), "--lake", str(lake)).returncode == 0
    assert _visible_rows(lake) == (240_000, 240_000)
    assert not list((lake / "_staging").rglob("*.parquet"))


# --- two conversions of one export at once --------------------------------------------------


def _race(summary: str, lake: str, env: dict[str, str] | None = None) -> list[Any]:
    command = [str(CLI), "convert", summary, "--lake", lake]
    first = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    time.sleep(0.6)
    second = subprocess.Popen(
        command,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, **(env or {})},
    )
    results = []
    for process in (first, second):
        out, err = process.communicate(timeout=300)
        results.append((process.returncode, out, err))
    return results


def _check_race(results: list[Any]) -> None:
    codes = [code for code, _, _ in results]
    assert 0 in codes, results
    for code, _, err in results:
        if code != 0:  # refused before it published anything, in one line
            assert code == 1 and "Traceback" not in err, err
            assert "held by" in err, err


def test_two_conversions_of_one_export_at_once_leave_it_whole(
    big_export: Path, tmp_path: Path
) -> None:
    lake = tmp_path / "lake"
    _check_race(_race(str(big_export), str(lake)))
    assert _visible_rows(lake) == (240_000, 240_000)
    record = next((lake / "_published").glob("*.json"))
    assert orjson.loads(record.read_bytes())["state"] == "published"
    assert not list((lake / "_staging").rglob("*.parquet"))


def test_two_conversions_of_one_export_into_s3_at_once_leave_it_whole(
    local_aws: LocalAwsControl, make_export: Any, lake_bucket: str
) -> None:
    summary = make_export(items=60_000, files=2)
    lake = f"s3://{lake_bucket}/dynamo-cdc/db/t"
    _check_race(_race(str(summary), lake, local_aws.environment()))
    rows = _s3_rows(local_aws, lake_bucket, "dynamo-cdc/db/t/")
    assert len(rows) == len({uuid for uuid, _ in rows}) == 60_000
