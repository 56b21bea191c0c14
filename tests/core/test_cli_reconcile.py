"""``dynamo-lake state`` and ``dynamo-lake reconcile`` as real processes on local lakes."""

from __future__ import annotations

import gzip
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import orjson
import pytest

from dynamo_lake.cdc import row_from_canonical
from dynamo_lake.codec import item_to_data
from dynamo_lake.exports.manifest import read_manifest
from dynamo_lake.lake.writer import LakeTable, Stage, StagedWriter, publish
from dynamo_lake.storage import resolve

CLI = Path(sys.executable).parent / "dynamo-lake"
T = 1_717_243_200_000_000  # the sample exports' time, 2024-06-01T12:00:00Z


def _run(*args: str) -> Any:
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=300, env=os.environ, check=False
    )


def _items(summary: Path) -> list[dict[str, Any]]:
    manifest = read_manifest(str(summary))
    items = []
    for data_file in manifest.data_files:
        path = Path(manifest.data_file_location(data_file).path)
        items += [
            json.loads(line)["Item"]
            for line in gzip.decompress(path.read_bytes()).split(b"\n")
            if line
        ]
    return items


def _key(item: dict[str, Any]) -> tuple[str, str]:
    sk = item["sk"]
    return item["pk"]["S"], str(sk.get("S", sk.get("N")))


def _add_rows(lake: Path, rows: list[Any], group: str = "injected") -> None:
    table = LakeTable(resolve(str(lake)))
    stage = Stage(group, "test")
    with StagedWriter(table, stage, "rows") as writer:
        writer.write(rows)
    publish(table, stage, writer.staged)


@pytest.fixture
def lake_and_export(make_export: Any, tmp_path: Path) -> tuple[Path, Path, list[dict[str, Any]]]:
    """A lake that streamed every item of the table an hour before the export at T."""
    summary = make_export(items=200, files=2)
    lake = tmp_path / "lake"
    items = _items(summary)
    hour_before = T - 3_600_000_000
    _add_rows(
        lake,
        [row_from_canonical("I", hour_before, item_to_data(item)) for item in items],
        "streamed",
    )
    return lake, summary, items


def test_state_counts_and_lists_the_live_items_sorted_by_key(
    lake_and_export: tuple[Path, Path, list[dict[str, Any]]],
) -> None:
    lake, _, items = lake_and_export
    counted = _run("state", "--lake", str(lake), "--keys", "pk,sk")
    assert counted.returncode == 0, counted.stderr
    assert orjson.loads(counted.stdout)["live"] == len(items)

    listed = _run("state", "--lake", str(lake), "--keys", "pk,sk", "--jsonl")
    assert listed.returncode == 0, listed.stderr
    expected = [item_to_data(item) for item in sorted(items, key=_key)]
    assert listed.stdout.splitlines() == expected

    before = _run(
        "state", "--lake", str(lake), "--keys", "pk,sk", "--as-of", "2024-06-01T10:59:59Z"
    )
    assert orjson.loads(before.stdout)["live"] == 0


def test_reconcile_exits_0_when_consistent_and_3_on_drift_then_repairs(
    lake_and_export: tuple[Path, Path, list[dict[str, Any]]], tmp_path: Path
) -> None:
    lake, summary, items = lake_and_export
    clean = _run("reconcile", "--lake", str(lake), "--export", str(summary), "--keys", "pk,sk")
    assert clean.returncode == 0, clean.stderr
    report = orjson.loads(clean.stdout)
    assert (report["status"], report["method"], report["as_of"]) == (
        "ok",
        "export",
        "2024-06-01T12:00:00.000000Z",
    )
    assert report["table_count"] == report["lake_count"] == len(items)

    # The stream "deleted" one item, "changed" another, and "invented" a third, just before T.
    gone, changed = items[0], items[1]
    changed_data = item_to_data({**changed, "status": {"S": "changed by the stream"}})
    invented = item_to_data({"pk": {"S": "zz-invented"}, "sk": gone["sk"], "n": {"N": "1"}})
    _add_rows(
        lake,
        [
            row_from_canonical("D", T - 5_000_000, item_to_data(gone)),
            row_from_canonical("U", T - 5_000_000, changed_data),
            row_from_canonical("I", T - 5_000_000, invented),
        ],
    )
    report_path = tmp_path / "report.json"
    drift = _run(
        "reconcile",
        "--lake",
        str(lake),
        "--export",
        str(summary),
        "--keys",
        "pk,sk",
        "--report",
        str(report_path),
        "--repair",
    )
    assert drift.returncode == 4, drift.stderr  # drift found, repaired, re-checked clean
    report = orjson.loads(drift.stdout)
    assert report["status"] == "repaired" and report["findings"]["rows"] == 3
    assert orjson.loads(report_path.read_bytes()) == report
    assert (report["missing"], report["extra"], report["different"]) == (1, 1, 1)
    assert report["samples"]["missing"] == [
        json.dumps(
            {"pk": gone["pk"]["S"], "sk": json.loads(item_to_data({"v": gone["sk"]}))["v"]},
            separators=(",", ":"),
            sort_keys=True,
        )
    ]
    assert report["samples"]["extra"][0].startswith('{"pk":"zz-invented"')
    assert report["repair"]["rows"] == 3 and report["repair"]["recheck"]["status"] == "ok"

    after = _run("reconcile", "--lake", str(lake), "--export", str(summary), "--keys", "pk,sk")
    assert after.returncode == 0, after.stdout


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--keys", ""], "--keys ''"),
        (["--keys", "a,b,c"], "partition key, or partition,sort key"),
        (["--keys", "pk", "--as-of", "yesterday"], "is not an ISO-8601 time"),
    ],
)
def test_bad_arguments_exit_1_with_one_line(
    lake_and_export: tuple[Path, Path, list[dict[str, Any]]], arguments: list[str], message: str
) -> None:
    lake, summary, _ = lake_and_export
    result = _run("reconcile", "--lake", str(lake), "--export", str(summary), *arguments)
    assert result.returncode == 1
    assert "Traceback" not in result.stderr and message in result.stderr, result.stderr
