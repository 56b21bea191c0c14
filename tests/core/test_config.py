"""The tables file: real YAML files on disk through load_tables, and the shipped file."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from dynamo_lake.config import ConfigError, TableConfig, load_tables

REPO = Path(__file__).resolve().parents[2]
SHIPPED = REPO / "include" / "config" / "tables.yaml"


def _entry(**changes: Any) -> dict[str, Any]:
    entry: dict[str, Any] = {
        "dynamodb_table": "orders-prod",
        "export_bucket": "acme-ddb-exports",
        "export_prefix": "exports/orders",
        "lake_bucket": "acme-lake",
        "glue_database": "shop",
        "glue_table": "orders",
    }
    entry.update(changes)
    return {name: value for name, value in entry.items() if value is not ...}


def _write(tmp_path: Path, document: Any, name: str = "tables.yaml") -> Path:
    path = tmp_path / name
    text = document if isinstance(document, str) else yaml.safe_dump(document)
    path.write_text(text, encoding="utf-8")
    return path


def _config_error(path: Path) -> str:
    with pytest.raises(ConfigError) as caught:
        load_tables(path)
    return str(caught.value)


def test_defaults_merge_into_every_table_and_tables_override_them(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {
            "defaults": {"region": "eu-west-1", "aws_conn_id": "aws_lake", "compression": "gzip"},
            "tables": {
                "orders": _entry(),
                "users": _entry(dynamodb_table="users", glue_table="users", compression="snappy"),
            },
        },
    )

    config = load_tables(path)

    assert config.path == path
    assert sorted(config.tables) == ["orders", "users"]
    orders, users = config.table("orders"), config.table("users")
    assert (orders.region, orders.aws_conn_id, orders.compression) == (
        "eu-west-1",
        "aws_lake",
        "gzip",
    )
    assert (users.region, users.aws_conn_id, users.compression) == (
        "eu-west-1",
        "aws_lake",
        "snappy",
    )
    assert orders.name == "orders"
    assert orders.dynamodb_table == "orders-prod"
    # Fields neither the table nor the defaults set keep the dataclass defaults.
    assert orders.max_bad_lines == 0
    assert orders.batch_size_mb == 1024
    assert orders.kms_key_id is None


def test_lake_uri_follows_the_lake_contract(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {
            "tables": {
                "plain": _entry(),
                "custom": _entry(lake_prefix="/warehouse/cdc/", glue_table="orders_v2"),
            }
        },
    )

    config = load_tables(path)

    assert config.table("plain").lake_uri == "s3://acme-lake/dynamo-cdc/shop/orders"
    # Slashes around a configured prefix do not produce empty path segments.
    assert config.table("custom").lake_uri == "s3://acme-lake/warehouse/cdc/shop/orders_v2"


def test_unknown_table_name_lists_the_configured_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, {"tables": {"orders": _entry(), "users": _entry()}})

    with pytest.raises(ConfigError) as caught:
        load_tables(path).table("invoices")

    message = str(caught.value)
    assert str(path) in message
    assert "'invoices'" in message
    assert "orders, users" in message


def test_missing_file_names_the_variable_that_points_elsewhere(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere" / "tables.yaml"

    message = _config_error(missing)

    assert str(missing) in message
    assert "DYNAMO_LAKE_TABLES_FILE" in message


def test_the_variable_chooses_the_file_when_no_path_is_given(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, {"tables": {"from_env": _entry()}})
    monkeypatch.setenv("DYNAMO_LAKE_TABLES_FILE", str(path))

    assert sorted(load_tables().tables) == ["from_env"]


def test_invalid_yaml_is_reported_with_the_file(tmp_path: Path) -> None:
    path = _write(tmp_path, "tables:\n  orders: {dynamodb_table: [unclosed\n")

    message = _config_error(path)

    assert str(path) in message
    assert "not valid YAML" in message


@pytest.mark.parametrize(
    "document",
    [
        pytest.param({"tables": ["orders"]}, id="tables-is-a-list"),
        pytest.param({"tables": "orders"}, id="tables-is-a-string"),
        pytest.param(["orders"], id="document-is-a-list"),
        pytest.param({"table": {"orders": {}}}, id="no-tables-key"),
    ],
)
def test_tables_must_be_a_mapping(tmp_path: Path, document: Any) -> None:
    path = _write(tmp_path, document)

    message = _config_error(path)

    assert str(path) in message
    assert "'tables:' mapping" in message


def test_a_table_entry_must_be_a_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, {"tables": {"orders": "acme-lake"}})

    message = _config_error(path)

    assert str(path) in message
    assert "table 'orders'" in message
    assert "mapping" in message


def test_an_empty_tables_mapping_is_an_error(tmp_path: Path) -> None:
    path = _write(tmp_path, {"tables": {}})

    assert "no tables configured" in _config_error(path)


@pytest.mark.parametrize(
    "field", ["dynamodb_table", "export_bucket", "lake_bucket", "glue_database", "glue_table"]
)
def test_missing_required_field(tmp_path: Path, field: str) -> None:
    path = _write(tmp_path, {"tables": {"orders": _entry(**{field: ...})}})

    message = _config_error(path)

    assert str(path) in message
    assert "table 'orders'" in message
    assert f"field {field!r} is required" in message


def test_a_required_field_may_come_from_defaults(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        {"defaults": {"lake_bucket": "shared-lake"}, "tables": {"orders": _entry(lake_bucket=...)}},
    )

    assert load_tables(path).table("orders").lake_uri == "s3://shared-lake/dynamo-cdc/shop/orders"


def test_unknown_field_is_named_with_the_known_ones(tmp_path: Path) -> None:
    path = _write(tmp_path, {"tables": {"orders": _entry(lake_bukcet="acme-lake")}})

    message = _config_error(path)

    assert str(path) in message
    assert "table 'orders'" in message
    assert "unknown field 'lake_bukcet'" in message
    assert "lake_bucket" in message.split("known:", 1)[1]


def test_unknown_field_in_defaults_is_reported_per_table(tmp_path: Path) -> None:
    path = _write(tmp_path, {"defaults": {"retries": 3}, "tables": {"orders": _entry()}})

    message = _config_error(path)

    assert "table 'orders'" in message
    assert "unknown field 'retries'" in message


@pytest.mark.parametrize(
    ("field", "value"),
    [
        ("export_bucket", "Acme_Exports"),
        ("lake_bucket", "ab"),
        ("lake_bucket", "-acme-lake"),
        ("lake_bucket", "x" * 64),
        ("lake_bucket", "a..b"),
        ("lake_bucket", "192.168.1.10"),
    ],
)
def test_bad_bucket_name(tmp_path: Path, field: str, value: str) -> None:
    path = _write(tmp_path, {"tables": {"orders": _entry(**{field: value})}})

    message = _config_error(path)

    assert str(path) in message
    assert "table 'orders'" in message
    assert f"field {field!r}" in message
    assert "not an S3 bucket name" in message


def test_longest_and_shortest_bucket_names_are_accepted(tmp_path: Path) -> None:
    path = _write(
        tmp_path, {"tables": {"orders": _entry(export_bucket="a" * 63, lake_bucket="a.b")}}
    )

    table = load_tables(path).table("orders")

    assert (table.export_bucket, table.lake_bucket) == ("a" * 63, "a.b")


@pytest.mark.parametrize(
    ("field", "value"),
    [("glue_table", "order-items"), ("glue_database", "Shop"), ("glue_table", "orders v2")],
)
def test_glue_names_must_be_athena_friendly(tmp_path: Path, field: str, value: str) -> None:
    path = _write(tmp_path, {"tables": {"orders": _entry(**{field: value})}})

    message = _config_error(path)

    assert str(path) in message
    assert "table 'orders'" in message
    assert f"field {field!r} = {value!r}" in message
    assert "underscores" in message


def test_bad_compression(tmp_path: Path) -> None:
    path = _write(tmp_path, {"tables": {"orders": _entry(compression="lz4")}})

    message = _config_error(path)

    assert str(path) in message
    assert "table 'orders'" in message
    assert "field 'compression'" in message
    assert "zstd, gzip, snappy" in message


def test_negative_max_bad_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, {"tables": {"orders": _entry(max_bad_lines=-1)}})

    message = _config_error(path)

    assert str(path) in message
    assert "table 'orders'" in message
    assert "max_bad_lines must be >= 0" in message


def test_zero_batch_size_is_rejected(tmp_path: Path) -> None:
    path = _write(tmp_path, {"tables": {"orders": _entry(batch_size_mb=0)}})

    message = _config_error(path)

    assert "table 'orders'" in message
    assert "batch_size_mb >= 1" in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("max_bad_lines", "ten", "must be a whole number"),
        ("batch_size_mb", 1.5, "must be a whole number"),
        ("region", 5, "must be a string"),
        ("dynamodb_table", 42, "must be a string"),
    ],
)
def test_field_types(tmp_path: Path, field: str, value: Any, expected: str) -> None:
    path = _write(tmp_path, {"tables": {"orders": _entry(**{field: value})}})

    message = _config_error(path)

    assert str(path) in message
    assert "table 'orders'" in message
    assert f"field {field!r} {expected}" in message


def test_defaults_must_be_a_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, {"defaults": ["region"], "tables": {"orders": _entry()}})

    message = _config_error(path)

    assert str(path) in message
    assert "'defaults' must be a mapping" in message


def test_the_shipped_tables_file_loads() -> None:
    config = load_tables(SHIPPED)

    assert config.tables, "the shipped tables file configures no table"
    for name, table in config.tables.items():
        assert isinstance(table, TableConfig)
        assert table.name == name
        assert table.lake_uri.startswith(f"s3://{table.lake_bucket}/")
        assert table.lake_uri.endswith(f"/{table.glue_database}/{table.glue_table}")
    # The demo entry that `make demo` relies on.
    orders = config.table("orders")
    assert orders.lake_uri == "s3://demo-lake/dynamo-cdc/shop/orders"
    assert orders.region == "us-east-1"


def test_a_yaml_boolean_is_not_a_number(tmp_path: Path) -> None:
    path = _write(tmp_path, {"tables": {"orders": _entry(max_bad_lines=True)}})

    assert "'max_bad_lines' must be a whole number" in _config_error(path)
