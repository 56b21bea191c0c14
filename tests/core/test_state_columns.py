"""Typed columns of the current state: exact values from the canonical data, or an error
naming the key and the attribute; the tables file's spelling checked; a state that gains
or loses a column rewrites every bucket."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pytest
from test_current_state import KEY_NAMES, live_data
from test_reconciliation import HOUR, T, row, write

from dynamo_lake.codec import item_to_data
from dynamo_lake.errors import ConfigError, StateError
from dynamo_lake.lake.query import latest_state
from dynamo_lake.state.columns import TypedColumn, typed_columns, with_typed_columns
from dynamo_lake.state.current import (
    StateTarget,
    merge_state,
    open_catalog,
    open_state_table,
    state_snapshots,
)
from dynamo_lake.state.merge import STATE_SCHEMA

COLUMNS = typed_columns({"status": "string", "total": "decimal(38,9)", "count": "bigint"})


def order(pk: str, **attributes: dict[str, object]) -> str:
    return item_to_data({"pk": {"S": pk}, "sk": {"N": "1"}, **attributes})


def values(*datas: tuple[str, str | None]) -> dict[str, list[object]]:
    rows = with_typed_columns(_rows(*datas), COLUMNS)
    return {column.name: rows.column(column.name).to_pylist() for column in COLUMNS}


def _rows(*datas: tuple[str, str | None]) -> pa.Table:
    count = len(datas)
    return pa.table(
        {
            "key": [f'["k{index}"]' for index in range(count)],
            "bucket": pa.array([0] * count, pa.int32()),
            "op": [op for op, _ in datas],
            "time_stamp": pa.array([T] * count, pa.int64()).cast(pa.timestamp("us", tz="UTC")),
            "time_stamp_us": pa.array([T] * count, pa.int64()),
            "uuid": ["u"] * count,
            "data": [data for _, data in datas],
        }
    ).cast(STATE_SCHEMA)


def test_values_are_exact_and_missing_ones_null() -> None:
    digits = "12345678901234567890123456789.123456789"  # 38 digits: beyond any double
    found = values(
        (
            "I",
            order(
                "a", status={"S": "paid"}, total={"N": digits}, count={"N": "9223372036854775807"}
            ),
        ),
        ("U", order("b", total={"N": "1E+2"}, count={"N": "-5"})),
        ("I", order("c")),
        ("D", None),  # a tombstone
    )
    assert found["status"] == ["paid", None, None, None]
    assert found["total"] == [Decimal(digits), Decimal("100.000000000"), None, None]
    assert found["count"] == [9223372036854775807, -5, None, None]


@pytest.mark.parametrize(
    ("attributes", "message"),
    [
        (
            {"status": {"N": "5"}},
            r"key \[\"k0\"\]: attribute 'status' = 5 is a number, not a string",
        ),
        ({"total": {"S": "5"}}, r"attribute 'total' = 5 is a string, not a number"),
        ({"total": {"N": "0.0000000001"}}, r"has more than 9 digits after the point"),
        ({"total": {"N": "1" + "0" * 29}}, r"has more than 29 digits before the point"),
        ({"count": {"N": "1.5"}}, r"'count' = 1.5 has a fraction"),
        ({"count": {"N": "9223372036854775808"}}, r"is beyond 64 bits"),
        ({"status": {"M": {"a": {"S": "b"}}}}, r"is a map, not a string"),
        ({"count": {"BOOL": True}}, r"is a boolean, not a number"),
    ],
)
def test_a_value_that_does_not_fit_names_the_key_the_attribute_and_the_fix(
    attributes: dict[str, object], message: str
) -> None:
    with pytest.raises(StateError, match=message) as raised:
        values(("I", order("a", **attributes)))
    assert "widen the type in the tables file, or remove the column" in str(raised.value)


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"key": "string"}, "cannot be a column"),
        ({"Status": "string"}, "cannot be a column"),
        ({"total": "decimal(39,2)"}, r"needs 1 <= p <= 38"),
        ({"total": "decimal(5,6)"}, r"s <= p"),
        ({"total": "float"}, "is not one of string, bigint, decimal"),
        (["status"], "must map attribute names to types"),
    ],
)
def test_the_tables_file_spelling_is_checked(spec: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        typed_columns(spec)  # type: ignore[arg-type]
    assert typed_columns({"t": " DECIMAL( 10 , 2 ) "}) == (TypedColumn("t", "decimal(10,2)"),)


def test_a_state_gains_a_column_fills_it_everywhere_and_refuses_a_value_that_does_not_fit(
    tmp_path: Path,
) -> None:
    lake = tmp_path / "lake"
    write(lake, [row("I", T - HOUR, order(f"k{n}", total={"N": f"{n}.5"})) for n in range(20)])
    plain = StateTarget(str(lake), "lake_db", "orders", KEY_NAMES, 4)
    merge_state(plain, T)
    typed = StateTarget(str(lake), "lake_db", "orders", KEY_NAMES, 4, COLUMNS)

    result = merge_state(typed, T)  # nothing new: the new columns alone rewrite every bucket
    assert result.snapshot is not None and result.buckets_rewritten == 4
    table = open_state_table(open_catalog(str(lake)), typed)
    rows = table.scan().to_arrow()
    assert rows.schema.field("total").type == pa.decimal128(38, 9)
    assert sorted(rows.column("total").to_pylist()) == sorted(Decimal(f"{n}.5") for n in range(20))
    assert merge_state(typed, T).snapshot is None, "a state with its columns merged again"

    write(lake, [row("U", T - 5, order("k3", total={"N": "0.0000000001"}))])
    with pytest.raises(StateError, match=r"key \[\"k3\",\"1\"\]: attribute 'total'"):
        merge_state(typed, T + 1)
    assert len(state_snapshots(open_state_table(open_catalog(str(lake)), typed))) == 2
    assert order("k3", total={"N": "3.5"}) in live_data(typed), "the refused merge wrote"

    write(lake, [row("U", T - 4, order("k3", total={"N": "7"}))])  # the fix: a fitting value
    dropped = merge_state(plain, T + 1)  # the column left out of the tables file: gone
    assert dropped.buckets_rewritten == 4
    table = open_state_table(open_catalog(str(lake)), plain)
    assert "total" not in table.scan().to_arrow().schema.names
    assert live_data(plain) == latest_state(str(lake), list(KEY_NAMES), as_of=T + 1)


@pytest.mark.usefixtures("local_aws_env")
def test_athena_sees_the_typed_columns_in_glue_with_their_types(local_aws: object) -> None:
    import uuid

    from test_current_state import write_s3

    from dynamo_lake.storage import S3Options

    client = local_aws.client("s3")  # type: ignore[attr-defined]
    bucket = f"lake-{uuid.uuid4().hex[:10]}"
    client.create_bucket(Bucket=bucket)
    database = f"db_{uuid.uuid4().hex[:8]}"
    lake = f"s3://{bucket}/dynamo-cdc/{database}/orders"
    write_s3(lake, [row("I", T - HOUR, order("a", total={"N": "-0.5"}, status={"S": "new"}))])
    target = StateTarget(lake, database, "orders", KEY_NAMES, 2, COLUMNS)
    assert merge_state(target, T, s3=S3Options.from_env()).snapshot is not None
    glue = local_aws.client("glue")  # type: ignore[attr-defined]
    entry = glue.get_table(DatabaseName=database, Name="orders_current")["Table"]
    types = {c["Name"]: c["Type"] for c in entry["StorageDescriptor"]["Columns"]}
    assert {name: types[name] for name in ("count", "status", "total")} == {
        "count": "bigint",
        "status": "string",
        "total": "decimal(38,9)",
    }
