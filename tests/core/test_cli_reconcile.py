"""``dynamo-lake state`` and ``dynamo-lake reconcile`` as real processes on local lakes.

The hostile inputs below (out-of-range tolerances, a T the export does not show or the
stream has not settled, a lake that is missing or holds foreign files or keyless rows, key
names that are typos or hold quotes and backslashes) each end in one line on stderr naming
the problem and the fix, and write nothing: no report under the lake's ``_reconciliation/``,
no work folder left in the command's TMPDIR."""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import orjson
import pytest

from dynamo_lake.cdc import CdcRow, datetime_to_micros, row_from_canonical, row_uuid
from dynamo_lake.codec import item_to_data
from dynamo_lake.exports.manifest import read_manifest
from dynamo_lake.lake.writer import LakeTable, Stage, StagedWriter, publish
from dynamo_lake.storage import resolve

CLI = Path(sys.executable).parent / "dynamo-lake"
T = 1_717_243_200_000_000  # the sample exports' time, 2024-06-01T12:00:00Z


def _run(*args: str, tmpdir: Path | None = None) -> Any:
    env = {**os.environ, "TMPDIR": str(tmpdir)} if tmpdir else os.environ
    return subprocess.run(
        [str(CLI), *args], capture_output=True, text=True, timeout=300, env=env, check=False
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


# --- hostile inputs: one line on stderr, nothing written ------------------------------------


@pytest.fixture
def command_tmp(tmp_path: Path) -> Path:
    """The command's TMPDIR: a local lake's reconcile converts the export into a temporary
    work folder (a copy of the table) beside its findings and DuckDB's spill; none may stay."""
    folder = tmp_path / "command-tmp"
    folder.mkdir()
    return folder


def _refused(result: Any, code: int = 1) -> str:
    """The one line a refused command prints: exit ``code``, nothing on stdout."""
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert "Traceback" not in result.stderr, result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith("dynamo-lake: "), result.stderr
    assert result.stdout == "", result.stdout
    return str(lines[0])


def _files(lake: Path) -> list[tuple[str, int, int]]:
    return sorted(
        (path.relative_to(lake).as_posix(), path.stat().st_size, path.stat().st_mtime_ns)
        for path in lake.rglob("*")
        if path.is_file()
    )


def _nothing_written(lake: Path, tmpdir: Path, before: list[tuple[str, int, int]]) -> None:
    assert not (lake / "_reconciliation").exists()
    assert _files(lake) == before
    assert list(tmpdir.iterdir()) == []


def _accepted(result: Any, code: int = 0) -> dict[str, Any]:
    assert result.returncode == code, (result.returncode, result.stdout, result.stderr)
    assert result.stderr == "", result.stderr
    report: dict[str, Any] = orjson.loads(result.stdout)
    return report


def _reconcile(
    lake: Path, summary: Path, *arguments: str, keys: str = "pk,sk", tmpdir: Path | None = None
) -> Any:
    return _run(
        "reconcile",
        "--lake",
        str(lake),
        "--export",
        str(summary),
        "--keys",
        keys,
        *arguments,
        tmpdir=tmpdir,
    )


@pytest.mark.parametrize("epsilon", ["-3600000", "3600000", "300001", "-1"])
def test_an_epsilon_outside_0_to_300000_ms_is_refused(
    lake_and_export: tuple[Path, Path, list[dict[str, Any]]], command_tmp: Path, epsilon: str
) -> None:
    lake, summary, _ = lake_and_export
    before = _files(lake)
    result = _reconcile(lake, summary, "--epsilon-ms", epsilon, tmpdir=command_tmp)
    line = _refused(result)
    assert f"--epsilon-ms {epsilon} is out of range" in line, line
    assert "between 0 and 300000 ms" in line, line
    _nothing_written(lake, command_tmp, before)


@pytest.mark.parametrize("epsilon", [300_000, 0])
def test_an_epsilon_at_either_limit_is_accepted(
    lake_and_export: tuple[Path, Path, list[dict[str, Any]]], command_tmp: Path, epsilon: int
) -> None:
    lake, summary, _ = lake_and_export
    before = _files(lake)
    result = _reconcile(lake, summary, "--epsilon-ms", str(epsilon), tmpdir=command_tmp)
    report = _accepted(result)
    assert (report["status"], report["tolerance"]["epsilon_ms"]) == ("ok", epsilon)
    _nothing_written(lake, command_tmp, before)


@pytest.mark.parametrize("as_of", ["2024-06-01T12:00:01Z", "2024-06-01T11:59:59.999Z"])
def test_an_as_of_that_is_not_a_full_exports_time_is_refused(
    lake_and_export: tuple[Path, Path, list[dict[str, Any]]], command_tmp: Path, as_of: str
) -> None:
    lake, summary, _ = lake_and_export
    before = _files(lake)
    result = _reconcile(lake, summary, "--as-of", as_of, tmpdir=command_tmp)
    line = _refused(result)
    assert "is not the export's exportTime 2024-06-01T12:00:00.000000Z" in line, line
    assert "leave --as-of out" in line, line
    _nothing_written(lake, command_tmp, before)


@pytest.mark.parametrize("as_of", ["2024-06-01T12:00:00Z", "2024-06-01T14:00:00+02:00"])
def test_an_as_of_equal_to_a_full_exports_time_is_accepted(
    lake_and_export: tuple[Path, Path, list[dict[str, Any]]], command_tmp: Path, as_of: str
) -> None:
    lake, summary, _ = lake_and_export
    before = _files(lake)
    result = _reconcile(lake, summary, "--as-of", as_of, tmpdir=command_tmp)
    report = _accepted(result)
    assert (report["status"], report["as_of"]) == ("ok", "2024-06-01T12:00:00.000000Z")
    _nothing_written(lake, command_tmp, before)


def test_an_as_of_inside_an_incremental_window_is_refused_naming_its_end(
    make_export: Any, tmp_path: Path, command_tmp: Path
) -> None:
    # The default window is the hour before 2024-06-01T12:00:00Z.
    summary = make_export(kind="incremental", items=50, files=1, prefix="incremental")
    lake = tmp_path / "lake"
    assert _run("convert", str(summary), "--lake", str(lake)).returncode == 0
    before = _files(lake)
    inside = _reconcile(lake, summary, "--as-of", "2024-06-01T11:20:00Z", tmpdir=command_tmp)
    line = _refused(inside)
    assert (
        "--as-of 2024-06-01T11:20:00.000000Z is not the export's window's end (exportToTime) "
        "2024-06-01T12:00:00.000000Z" in line
    ), line
    _nothing_written(lake, command_tmp, before)

    at_end = _reconcile(lake, summary, "--as-of", "2024-06-01T12:00:00Z", tmpdir=command_tmp)
    report = _accepted(at_end)
    assert (report["status"], report["method"]) == ("ok", "changes")
    assert report["window"] == ["2024-06-01T11:00:00.000000Z", "2024-06-01T12:00:00.000000Z"]
    _nothing_written(lake, command_tmp, before)


def _streamed_lake(lake: Path, summary: Path, hours_before: int = 1) -> list[dict[str, Any]]:
    """A lake that streamed every item of ``summary``'s full export before its time."""
    items = _items(summary)
    moment = orjson.loads(summary.read_bytes())["exportTime"]
    stamp = datetime.fromisoformat(moment.replace("Z", "+00:00")) - timedelta(hours=hours_before)
    micros = datetime_to_micros(stamp)
    _add_rows(
        lake, [row_from_canonical("I", micros, item_to_data(item)) for item in items], "streamed"
    )
    return items


def test_an_export_inside_the_settle_margin_is_refused_unless_the_margin_is_shorter(
    make_export: Any, tmp_path: Path, command_tmp: Path
) -> None:
    ten_minutes_ago = datetime.now(UTC) - timedelta(minutes=10)
    summary = make_export(items=40, files=1, export_time=ten_minutes_ago, prefix="recent")
    lake = tmp_path / "lake"
    items = _streamed_lake(lake, summary)
    before = _files(lake)

    line = _refused(_reconcile(lake, summary, tmpdir=command_tmp))
    assert "is less than the settle margin of 30 minutes before now" in line, line
    assert "(--settle-margin-minutes)" in line, line
    _nothing_written(lake, command_tmp, before)

    shorter = _reconcile(lake, summary, "--settle-margin-minutes", "5", tmpdir=command_tmp)
    report = _accepted(shorter)
    assert (report["status"], report["table_count"]) == ("ok", len(items))
    _nothing_written(lake, command_tmp, before)

    negative = _reconcile(lake, summary, "--settle-margin-minutes", "-1", tmpdir=command_tmp)
    usage = _refused(negative, code=2)
    assert usage == "dynamo-lake: --settle-margin-minutes must be >= 0", usage
    _nothing_written(lake, command_tmp, before)


@pytest.mark.parametrize("margin", [None, "0"])
def test_an_export_in_the_future_is_refused(
    make_export: Any, tmp_path: Path, command_tmp: Path, margin: str | None
) -> None:
    in_an_hour = datetime.now(UTC) + timedelta(hours=1)
    summary = make_export(items=20, files=1, export_time=in_an_hour, prefix="future")
    lake = tmp_path / "lake"
    _streamed_lake(lake, summary)
    before = _files(lake)
    margin_arguments = ["--settle-margin-minutes", margin] if margin else []
    result = _reconcile(lake, summary, *margin_arguments, tmpdir=command_tmp)
    line = _refused(result)
    assert "is in the future" in line and "this machine's clock is" in line, line
    _nothing_written(lake, command_tmp, before)


def test_a_lake_never_written_is_empty_and_every_item_missing(
    make_export: Any, tmp_path: Path, command_tmp: Path
) -> None:
    summary = make_export(items=120, files=2)
    lake = tmp_path / "never" / "written"
    state = _accepted(_run("state", "--lake", str(lake), "--keys", "pk,sk", tmpdir=command_tmp))
    assert state["live"] == 0
    drift = _reconcile(lake, summary, tmpdir=command_tmp)
    report = _accepted(drift, code=3)
    assert report["status"] == "drift"
    assert (report["missing"], report["extra"], report["different"]) == (120, 0, 0)
    assert (report["table_count"], report["lake_count"]) == (120, 0)
    assert not (tmp_path / "never").exists()
    assert list(command_tmp.iterdir()) == []


def _not_json_row(lake: Path) -> None:
    moment = T - 3_600_000_000
    _add_rows(lake, [CdcRow(row_uuid("I", moment, "not json"), "I", moment, "not json")], "odd")


@pytest.mark.parametrize("beside_items", [True, False], ids=["beside-items", "alone"])
def test_reconcile_refuses_a_lake_row_whose_data_is_not_json(
    lake_and_export: tuple[Path, Path, list[dict[str, Any]]],
    tmp_path: Path,
    command_tmp: Path,
    beside_items: bool,
) -> None:
    lake, summary, _ = lake_and_export
    if not beside_items:
        lake = tmp_path / "odd-lake"
    _not_json_row(lake)
    before = _files(lake)
    result = _reconcile(lake, summary, tmpdir=command_tmp)
    line = _refused(result)
    assert "the lake holds 1 row without a key (e.g. the row with uuid " in line, line
    assert "('pk', 'sk')" in line and "find them by uuid and move their files out" in line, line
    assert "JSONDecodeError" not in result.stderr
    _nothing_written(lake, command_tmp, before)


def test_state_refuses_a_lake_row_whose_data_is_not_json(
    lake_and_export: tuple[Path, Path, list[dict[str, Any]]], command_tmp: Path
) -> None:
    lake, _, _ = lake_and_export
    _not_json_row(lake)
    result = _run("state", "--lake", str(lake), "--keys", "pk,sk", tmpdir=command_tmp)
    line = _refused(result)
    assert "the lake holds 1 row without a key" in line, line


def _foreign_parquet(path: Path) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"a": [1]}), path)


@pytest.mark.parametrize(
    ("name", "write"),
    [
        ("README.txt", lambda path: path.write_text("# About this lake\n\nCDC rows by day.\n")),
        ("x.parquet", lambda path: path.write_bytes(b"")),
        ("other.parquet", _foreign_parquet),
    ],
    ids=["readme", "empty-parquet", "other-columns-parquet"],
)
def test_a_foreign_file_in_a_partition_is_named_with_the_fix(
    lake_and_export: tuple[Path, Path, list[dict[str, Any]]],
    command_tmp: Path,
    name: str,
    write: Any,
) -> None:
    lake, summary, _ = lake_and_export
    foreign = lake / "year=2024" / "month=06" / "day=01" / name
    write(foreign)
    before = _files(lake)
    for arguments in (
        ["state", "--lake", str(lake), "--keys", "pk,sk"],
        ["reconcile", "--lake", str(lake), "--export", str(summary), "--keys", "pk,sk"],
    ):
        line = _refused(_run(*arguments, tmpdir=command_tmp))
        assert line.startswith(f"dynamo-lake: {foreign}: not a Parquet file"), line
        assert line.endswith("move it out of the lake table's folder"), line
        _nothing_written(lake, command_tmp, before)


@pytest.mark.parametrize(("keys", "typo"), [("pk,sK", "sK"), ("nope", "nope")])
def test_a_key_attribute_typo_is_named(
    lake_and_export: tuple[Path, Path, list[dict[str, Any]]],
    command_tmp: Path,
    keys: str,
    typo: str,
) -> None:
    lake, summary, _ = lake_and_export
    before = _files(lake)
    reconciled = _reconcile(lake, summary, keys=keys, tmpdir=command_tmp)
    line = _refused(reconciled)
    assert f"--keys names {typo!r}, which the export's items do not have" in line, line
    assert "'pk', 'sk'" in line, line  # what an item does have
    _nothing_written(lake, command_tmp, before)

    state = _refused(_run("state", "--lake", str(lake), "--keys", keys, tmpdir=command_tmp))
    assert f"--keys {keys!r}: no row of the lake has these key attributes" in state, state
    _nothing_written(lake, command_tmp, before)


def test_key_types_are_s_n_or_b_and_a_correct_one_is_accepted(
    lake_and_export: tuple[Path, Path, list[dict[str, Any]]], command_tmp: Path
) -> None:
    lake, summary, items = lake_and_export
    before = _files(lake)
    line = _refused(_reconcile(lake, summary, keys="pk:X", tmpdir=command_tmp))
    assert line == "dynamo-lake: --keys 'pk:X': a key attribute's type is S, N or B", line
    _nothing_written(lake, command_tmp, before)

    assert {tuple(item["sk"]) for item in items} == {("S",)}  # the sample's sort key is S
    report = _accepted(_reconcile(lake, summary, keys="pk:S,sk:S", tmpdir=command_tmp))
    assert (report["status"], report["table_count"]) == ("ok", len(items))
    _nothing_written(lake, command_tmp, before)


def test_state_refuses_a_key_type_that_is_not_s_n_or_b(
    lake_and_export: tuple[Path, Path, list[dict[str, Any]]], command_tmp: Path
) -> None:
    lake, _, _ = lake_and_export
    line = _refused(_run("state", "--lake", str(lake), "--keys", "pk:X", tmpdir=command_tmp))
    assert "a key attribute's type is S, N or B" in line, line


def _rename_key_attributes(summary: Path, bucket_root: Path, names: dict[str, str]) -> None:
    """Rename the export's attributes (the sample writer's keys are pk and sk), keeping its
    manifests' checksums true, as AWS would have written them."""
    raw = orjson.loads(summary.read_bytes())
    listing = bucket_root / raw["manifestFilesS3Key"]
    entries = [orjson.loads(line) for line in listing.read_bytes().splitlines() if line]
    for entry in entries:
        data = bucket_root / entry["dataFileS3Key"]
        lines = []
        for line in gzip.decompress(data.read_bytes()).splitlines():
            item = orjson.loads(line)["Item"]
            lines.append(orjson.dumps({"Item": {names.get(k, k): v for k, v in item.items()}}))
        body = gzip.compress(b"".join(line + b"\n" for line in lines), mtime=0)
        data.write_bytes(body)
        entry["md5Checksum"] = base64.b64encode(hashlib.md5(body).digest()).decode()
        entry.pop("etag", None)
    text = b"".join(orjson.dumps(entry) + b"\n" for entry in entries)
    listing.write_bytes(text)
    listing.with_suffix(".md5").write_bytes(base64.b64encode(hashlib.md5(text).digest()))


def test_key_names_with_a_quote_and_a_backslash_find_exactly_the_extra_key(
    make_export: Any, bucket_root: Path, tmp_path: Path, command_tmp: Path
) -> None:
    summary = make_export(items=30, files=1, sort_key_type="N")
    _rename_key_attributes(summary, bucket_root, {"pk": 'a"b', "sk": "c\\d"})
    items = _items(summary)
    assert {tuple(item['a"b']) + tuple(item["c\\d"]) for item in items} == {("S", "N")}
    extra = {
        'a"b': {"S": 'zz "extra" \\ key'},
        "c\\d": {"N": "12345678901234567890123456789012345678"},
    }
    lake = tmp_path / "lake"
    _add_rows(
        lake,
        [row_from_canonical("I", T - 3_600_000_000, item_to_data(i)) for i in [*items, extra]],
        "streamed",
    )
    before = _files(lake)
    result = _reconcile(lake, summary, keys='a"b,c\\d', tmpdir=command_tmp)
    report = _accepted(result, code=3)
    assert (report["missing"], report["extra"], report["different"]) == (0, 1, 0)
    assert (report["table_count"], report["lake_count"]) == (30, 31)
    # The key as the codec renders a key-only item: canonical JSON, N as its exact digits.
    assert report["samples"]["extra"] == [item_to_data(extra)]
    assert report["samples"]["extra"] == [
        '{"a\\"b":"zz \\"extra\\" \\\\ key","c\\\\d":12345678901234567890123456789012345678}'
    ]
    _nothing_written(lake, command_tmp, before)


def test_a_window_no_longer_than_two_epsilons_is_refused(
    make_export: Any, tmp_path: Path, command_tmp: Path
) -> None:
    """Phantoms are judged in [start + ε, end - ε): a (forged) window of 2 s with ε 1 s
    would leave nothing to judge, silently. AWS's shortest window is 15 minutes."""
    end = datetime(2024, 6, 1, 12, tzinfo=UTC)
    summary = make_export(
        kind="incremental",
        items=5,
        files=1,
        prefix="short",
        window=(end - timedelta(seconds=2), end),
    )
    lake = tmp_path / "lake"
    line = _refused(_reconcile(lake, summary, "--epsilon-ms", "1000", tmpdir=command_tmp))
    assert "is no longer than 2 x --epsilon-ms 1000" in line and "which would be empty" in line
    report = _accepted(_reconcile(lake, summary, "--epsilon-ms", "999", tmpdir=command_tmp), 3)
    assert report["method"] == "changes"
