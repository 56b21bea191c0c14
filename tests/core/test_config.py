"""The tables file: real YAML files on disk through load_tables, and the shipped file."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from dynamo_lake.config import ENGINES, RECONCILE_METHODS, ReconcileConfig, TableConfig, load_tables
from dynamo_lake.errors import ConfigError

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
    path = _write(tmp_path, {"tables": {"orders": _entry(), "users": _entry(glue_table="users")}})

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
    ("text", "tag", "line"),
    [
        (
            'tables:\n  x: !!python/object/apply:os.system ["touch {marker}"]\n',
            "!!python/object/apply:os.system",
            2,
        ),
        ("tables:\n  x:\n    description: !!python/name:os.system\n", "!!python/name:os.system", 3),
        ("defaults: !custom {{a: 1}}\ntables: {{}}\n", "!custom", 1),
    ],
    ids=["python-object", "python-name", "custom-tag"],
)
def test_yaml_tags_are_refused_by_name_and_never_run(
    tmp_path: Path, text: str, tag: str, line: int
) -> None:
    marker = tmp_path / "ran"
    path = _write(tmp_path, text.format(marker=marker))

    message = _config_error(path)

    assert message.startswith(f"{path}:{line}: the YAML tag {tag!r} is not allowed")
    assert message.endswith("remove the tag")
    assert not marker.exists()


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


@pytest.mark.parametrize("buckets", [0, 6, 8192, -4])
def test_state_buckets_must_be_a_power_of_two_engines_agree_on(
    tmp_path: Path, buckets: int
) -> None:
    path = _write(tmp_path, {"tables": {"orders": _entry(state_buckets=buckets)}})

    message = _config_error(path)

    assert "table 'orders'" in message
    assert f"state_buckets' = {buckets} is not a power of two from 1 to 4096" in message


def test_state_buckets_is_kept_when_valid_and_absent_by_default(tmp_path: Path) -> None:
    from dynamo_lake.config import load_tables

    chosen = load_tables(_write(tmp_path, {"tables": {"orders": _entry(state_buckets=64)}}))
    assert chosen.table("orders").state_buckets == 64
    default = load_tables(_write(tmp_path, {"tables": {"orders": _entry()}}))
    assert default.table("orders").state_buckets is None


def test_state_columns_are_read_typed_and_a_wrong_one_names_its_line(tmp_path: Path) -> None:
    from dynamo_lake.config import load_tables
    from dynamo_lake.state.columns import TypedColumn

    spec = {"total": "decimal(38,9)", "status": "string"}
    chosen = load_tables(_write(tmp_path, {"tables": {"orders": _entry(state_columns=spec)}}))
    assert chosen.table("orders").state_columns == (
        TypedColumn("status", "string"),
        TypedColumn("total", "decimal(38,9)"),
    )
    assert (
        load_tables(_write(tmp_path, {"tables": {"orders": _entry()}}))
        .table("orders")
        .state_columns
        == ()
    )
    path = _write(tmp_path, {"tables": {"orders": _entry(state_columns={"total": "float"})}})
    message = _config_error(path)
    assert "table 'orders': field 'state_columns' is wrong" in message
    assert "type 'float' is not one of string, bigint, decimal(p,s)" in message


@pytest.mark.parametrize(
    ("field", "value", "expected"),
    [
        ("state_buckets", "8", "must be a whole number"),
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
    # The reconciliation DAG's settings for the demo table.
    assert orders.reconcile.method == "changes"
    assert orders.reconcile.repair is False
    assert config.reconciliation_schedule == "@daily"


def test_a_yaml_boolean_is_not_a_number(tmp_path: Path) -> None:
    path = _write(tmp_path, {"tables": {"orders": _entry(max_bad_lines=True)}})

    assert "'max_bad_lines' must be a whole number" in _config_error(path)


# -- Hostile tables files, written as raw text so that line numbers mean something ---------

# Line 1 `tables:`, 2 `orders:`, 3 dynamodb_table ... 8 glue_table; a line appended is line 9.
ORDERS = """\
tables:
  orders:
    dynamodb_table: orders-prod
    export_bucket: acme-ddb-exports
    export_prefix: exports/orders
    lake_bucket: acme-lake
    glue_database: shop
    glue_table: orders
"""


def _error_at(path: Path, line: int) -> str:
    """The ConfigError message, checked to start with ``<path>:<line>: ``."""
    message = _config_error(path)
    assert message.startswith(f"{path}:{line}: "), message
    return message


def test_a_table_defined_twice_is_refused_naming_both_lines(tmp_path: Path) -> None:
    path = _write(tmp_path, ORDERS + "  orders:\n    dynamodb_table: orders-staging\n")

    message = _error_at(path, 9)

    assert "table 'orders' is defined twice under 'tables:'" in message
    assert "first at line 2" in message
    assert "remove or rename one" in message


@pytest.mark.parametrize(
    ("text", "line", "first", "words"),
    [
        pytest.param(
            ORDERS + "    glue_table: orders_v2\n",
            9,
            8,
            "table 'orders': field 'glue_table' appears twice",
            id="field-in-a-table",
        ),
        pytest.param(
            "defaults:\n  region: us-east-1\n  region: eu-west-1\n" + ORDERS,
            3,
            2,
            "defaults: field 'region' appears twice",
            id="field-in-defaults",
        ),
        pytest.param(
            ORDERS + "tables:\n  users: {}\n",
            9,
            1,
            "top-level key 'tables' appears twice",
            id="top-level-key",
        ),
        pytest.param(
            "tables:\n  orders: {dynamodb_table: a-b-c, dynamodb_table: orders}\n",
            2,
            2,
            "table 'orders': field 'dynamodb_table' appears twice",
            id="flow-mapping",
        ),
    ],
)
def test_a_key_repeated_in_one_mapping_is_refused(
    tmp_path: Path, text: str, line: int, first: int, words: str
) -> None:
    path = _write(tmp_path, text)

    message = _error_at(path, line)

    assert words in message
    assert f"first at line {first}" in message


def test_a_field_may_override_one_merged_from_an_anchor(tmp_path: Path) -> None:
    # `<<: *orders` then `glue_table:` is an override, not a repeated key.
    path = _write(
        tmp_path,
        ORDERS.replace("  orders:\n", "  orders: &orders\n")
        + "  users:\n    <<: *orders\n    dynamodb_table: users\n    glue_table: users\n",
    )

    users = load_tables(path).table("users")

    assert (users.dynamodb_table, users.glue_table, users.lake_bucket) == (
        "users",
        "users",
        "acme-lake",
    )


def test_a_misspelt_top_level_key_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, "defualts:\n  region: eu-west-1\n" + ORDERS)

    message = _error_at(path, 1)

    assert "unknown top-level key 'defualts'" in message
    assert "did you mean 'defaults'?" in message
    assert "known: defaults, tables" in message


def test_the_top_level_keys_are_one_constant() -> None:
    from dynamo_lake.config import TOP_LEVEL_KEYS

    assert TOP_LEVEL_KEYS == ("defaults", "tables", "reconciliation")


def test_a_misspelt_tables_key_is_named(tmp_path: Path) -> None:
    path = _write(tmp_path, "# the tables\nTables:\n  orders: {}\n")

    message = _error_at(path, 2)

    assert "'tables:' mapping" in message
    assert "unknown top-level key 'Tables'" in message
    assert "did you mean 'tables'?" in message


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("lake_prefix", "''", "it is empty"),
        ("export_prefix", "''", "it is empty"),
        ("lake_prefix", "/", "it is empty"),
        ("lake_prefix", "cdc/../other", "'..' path segment"),
        ("export_prefix", "./exports", "'.' path segment"),
        ("lake_prefix", "warehouse//cdc", "empty path segment"),
        ("lake_prefix", "'my lake'", "contains ' '"),
        ("export_prefix", "exports/café", "contains 'é'"),
        ("lake_prefix", "cdc?v=1", "contains '=', '?'"),
        ("lake_prefix", "'a\\b'", "contains '\\\\'"),
    ],
)
def test_bad_prefix(tmp_path: Path, field: str, value: str, problem: str) -> None:
    if field == "export_prefix":  # ORDERS sets it on line 5
        text, line = ORDERS.replace("exports/orders", value), 5
    else:
        text, line = ORDERS + f"    {field}: {value}\n", 9
    path = _write(tmp_path, text)

    message = _error_at(path, line)

    assert f"table 'orders': field {field!r} = " in message
    assert "is not a valid S3 prefix" in message
    assert problem in message
    assert "separated by single slashes, e.g. 'dynamo-cdc'" in message


def test_a_prefix_of_every_safe_character_is_accepted(tmp_path: Path) -> None:
    path = _write(tmp_path, ORDERS + '    lake_prefix: "/Lake-9!_.*\'()/cdc/"\n')

    table = load_tables(path).table("orders")

    assert table.lake_uri == "s3://acme-lake/Lake-9!_.*'()/cdc/shop/orders"


def test_a_null_prefix_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, ORDERS + "    lake_prefix:\n")

    message = _error_at(path, 9)

    assert "table 'orders': field 'lake_prefix' is empty (null)" in message
    assert "leave the field out to use 'dynamo-cdc'" in message


@pytest.mark.parametrize(
    "value",
    [
        "ab",
        "x" * 256,
        "'orders prod'",
        "orders/prod",
        "arn:aws:dynamodb:us-east-1:123456789012:table/orders",
        "commandes-été",
    ],
)
def test_bad_dynamodb_table_name(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, ORDERS.replace("orders-prod", value))

    message = _error_at(path, 3)

    assert "table 'orders': field 'dynamodb_table' = " in message
    assert "is not a DynamoDB table name" in message
    assert "3-255 letters, digits, underscores, dots and hyphens" in message


@pytest.mark.parametrize("value", ["a.b", "x" * 255, "Orders_2024-v1.0"])
def test_valid_dynamodb_table_names_are_accepted(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, ORDERS.replace("orders-prod", value))

    assert load_tables(path).table("orders").dynamodb_table == value


@pytest.mark.parametrize("value", ["''", "'  '", "", "null"])
def test_an_empty_aws_conn_id_is_refused(tmp_path: Path, value: str) -> None:
    path = _write(tmp_path, ORDERS + f"    aws_conn_id: {value}\n")

    message = _error_at(path, 9)

    assert "table 'orders': field 'aws_conn_id' is empty" in message
    assert "leave the field out to use 'aws_default'" in message


def test_an_empty_aws_conn_id_in_defaults_points_at_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, "defaults:\n  aws_conn_id:\n" + ORDERS)

    message = _error_at(path, 2)

    assert "table 'orders': field 'aws_conn_id' (set under 'defaults:') is empty" in message


USERS = """\
  users:
    dynamodb_table: users
    export_bucket: acme-ddb-exports
    lake_bucket: {lake_bucket}
    lake_prefix: {lake_prefix}
    glue_database: {glue_database}
    glue_table: {glue_table}
"""


@pytest.mark.parametrize(
    ("users", "words"),
    [
        pytest.param(
            {"lake_prefix": "/dynamo-cdc/"},
            "same lake location s3://acme-lake/dynamo-cdc/shop/orders as table 'orders' (line 2)",
            id="same-lake-location",
        ),
        pytest.param(
            {"lake_bucket": "other-lake"},
            "same Glue table shop.orders as table 'orders' (line 2)",
            id="same-glue-table",
        ),
        pytest.param(
            {
                "lake_prefix": "dynamo-cdc/shop/orders",
                "glue_database": "cdc",
                "glue_table": "users",
            },
            "that of table 'orders' (line 2), s3://acme-lake/dynamo-cdc/shop/orders, lie one "
            "inside the other",
            id="lake-inside-another",
        ),
    ],
)
def test_two_tables_may_not_share_a_lake(tmp_path: Path, users: dict[str, str], words: str) -> None:
    fields = {
        "lake_bucket": "acme-lake",
        "lake_prefix": "dynamo-cdc",
        "glue_database": "shop",
        "glue_table": "orders",
        **users,
    }
    path = _write(tmp_path, ORDERS + USERS.format(**fields))

    message = _error_at(path, 9)

    assert "table 'users': " in message
    assert words in message
    assert "give each table its own glue_database/glue_table" in message


def test_a_tables_file_that_is_not_utf8_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "tables.yaml"
    path.write_bytes(ORDERS.encode() + "    description: café\n".encode("latin-1"))

    message = _error_at(path, 9)

    assert "not UTF-8" in message
    assert "byte 0xe9" in message
    assert "save it as UTF-8" in message


def test_a_directory_is_not_a_tables_file(tmp_path: Path) -> None:
    message = _config_error(tmp_path)

    assert message.startswith(f"{tmp_path}: ")
    assert "is a directory" in message
    assert "DYNAMO_LAKE_TABLES_FILE" in message


def test_an_unreadable_tables_file_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    path = _write(tmp_path, ORDERS)
    path.chmod(0)
    if os.access(path, os.R_OK):  # root reads anyway: let the OS refusal be simulated

        def refuse(self: Path) -> bytes:
            raise PermissionError(13, "Permission denied", str(self))

        monkeypatch.setattr(Path, "read_bytes", refuse)
        monkeypatch.setattr(Path, "read_text", refuse)
    try:
        message = _config_error(path)
    finally:
        path.chmod(0o644)

    assert message.startswith(f"{path}: ")
    assert "permission denied" in message
    assert "make it readable" in message


def test_an_unknown_field_carries_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, ORDERS + "    lake_bukcet: acme-lake\n")

    message = _error_at(path, 9)

    assert "table 'orders': unknown field 'lake_bukcet'" in message
    assert "did you mean 'lake_bucket'?" in message


def test_an_unknown_field_in_defaults_carries_the_defaults_line(tmp_path: Path) -> None:
    path = _write(tmp_path, "defaults:\n  region: eu-west-1\n  retries: 3\n" + ORDERS)

    message = _error_at(path, 3)

    assert "table 'orders': unknown field 'retries' under 'defaults:'" in message


@pytest.mark.parametrize(
    ("line", "words"),
    [
        ("max_bad_lines: ten", "field 'max_bad_lines' must be a whole number, not a string"),
        ("batch_size_mb: 1.5", "field 'batch_size_mb' must be a whole number, not a number"),
        ("region: 5", "field 'region' must be a string, not a number"),
        ("description: [a, b]", "field 'description' must be a string, not a list"),
        ("compression: lz4", "field 'compression' = 'lz4'"),
        ("max_bad_lines: -1", "field 'max_bad_lines' = -1 is out of range"),
    ],
)
def test_a_wrong_value_carries_its_line(tmp_path: Path, line: str, words: str) -> None:
    path = _write(tmp_path, ORDERS + f"    {line}\n")

    message = _error_at(path, 9)

    assert f"table 'orders': {words}" in message


def test_a_missing_field_points_at_its_table(tmp_path: Path) -> None:
    path = _write(tmp_path, "# tables\n\n" + ORDERS.replace("    glue_table: orders\n", ""))

    message = _error_at(path, 4)

    assert "table 'orders': field 'glue_table' is required" in message


def test_a_table_that_is_not_a_mapping_carries_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, ORDERS + "  users: acme-lake\n")

    message = _error_at(path, 9)

    assert "table 'users' must be a mapping of fields, not a string" in message


# -- Table names: DynamoDB's own rule, and the reconciliation form's reserved word --------

NAME_RULE = (
    "table names follow DynamoDB's rule (3-255 letters, digits, underscores, dots and "
    "hyphens); rename it, e.g. 'orders'"
)


@pytest.mark.parametrize(
    ("key", "shown", "problem"),
    [
        pytest.param("'../../etc'", "'../../etc'", "contains '/'", id="path-traversal"),
        pytest.param("a/b", "'a/b'", "contains '/'", id="slash"),
        pytest.param("ab", "'ab'", "is 2 characters long (at least 3)", id="too-short"),
        pytest.param(
            "x" * 256, f"'{'x' * 32}'...", "is 256 characters long (at most 255)", id="too-long"
        ),
        pytest.param('"orders\\nprod"', "'orders\\nprod'", "contains '\\n'", id="newline"),
        pytest.param('"orders\\n"', "'orders\\n'", "contains '\\n'", id="trailing-newline"),
        pytest.param('"orders\\0"', "'orders\\x00'", "contains '\\x00'", id="nul"),
        pytest.param(
            '"orders\\u202eprod"', "'orders\\u202eprod'", "contains '\\u202e'", id="bidi-override"
        ),
        pytest.param("'<b>x</b>'", "'<b>x</b>'", "contains '/', '<', '>'", id="html"),
        pytest.param("' '", "' '", "is 1 character long (at least 3) and contains ' '", id="blank"),
        pytest.param("''", "''", "is empty", id="empty"),
        pytest.param("commandes-été", "'commandes-été'", "contains 'é'", id="accented"),
    ],
)
def test_a_bad_table_name_is_refused_naming_the_rule(
    tmp_path: Path, key: str, shown: str, problem: str
) -> None:
    path = _write(tmp_path, ORDERS.replace("  orders:\n", f"  {key}:\n"))

    message = _error_at(path, 2)

    assert f"table name {shown} {problem}: {NAME_RULE}" in message
    # A control character is shown escaped, never written raw into a log line or a page.
    assert "\n" not in message
    assert "\x00" not in message
    assert "\u202e" not in message


def test_the_form_s_every_table_choice_is_not_a_table_name(tmp_path: Path) -> None:
    path = _write(tmp_path, ORDERS.replace("  orders:\n", "  all tables:\n"))

    message = _error_at(path, 2)

    assert "table name 'all tables' is reserved: the reconciliation form offers it as the " in (
        message
    )
    assert "could never be reconciled alone; rename it, e.g. 'orders'" in message


@pytest.mark.parametrize(
    ("good", "bad"),
    [
        pytest.param("abc", "ab", id="3-characters"),
        pytest.param("x" * 255, "x" * 256, id="255-characters"),
        pytest.param("orders.v2-prod_EU", "orders.v2 prod_EU", id="dots-dashes-underscores"),
        pytest.param("all-tables", "all tables", id="all-tables"),
    ],
)
def test_the_table_name_rule_has_exact_edges(tmp_path: Path, good: str, bad: str) -> None:
    """Each good name loads; its neighbour just across the rule does not."""
    good_path = _write(tmp_path, ORDERS.replace("  orders:\n", f"  '{good}':\n"), "good.yaml")
    bad_path = _write(tmp_path, ORDERS.replace("  orders:\n", f"  '{bad}':\n"), "bad.yaml")

    assert list(load_tables(good_path).tables) == [good]
    assert load_tables(good_path).table(good).dynamodb_table == "orders-prod"
    assert "rename it, e.g. 'orders'" in _error_at(bad_path, 2)


def test_a_bad_table_name_is_named_before_its_fields(tmp_path: Path) -> None:
    # The entry's lake_bucket (line 6) is wrong too; the name is reported first.
    path = _write(tmp_path, ORDERS.replace("  orders:\n", "  a/b:\n").replace("acme-lake", "A"))

    message = _error_at(path, 2)

    assert "table name 'a/b' contains '/'" in message


def test_the_default_tables_file_is_the_shipped_one_and_loads(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("DYNAMO_LAKE_TABLES_FILE", raising=False)

    config = load_tables()

    assert config.path.resolve() == SHIPPED.resolve()
    assert "orders" in config.tables


# -- The reconciliation DAG's settings: `reconcile:` per table, `reconciliation:` on top ----

# ORDERS then `    reconcile:` on line 9: the first setting written under it is line 10.
RECONCILE = ORDERS + "    reconcile:\n"


def test_the_reconcile_names_are_exported() -> None:
    import dynamo_lake.config as config

    assert {"ReconcileConfig", "RECONCILE_METHODS", "ENGINES"} <= set(config.__all__)
    assert RECONCILE_METHODS == ("count", "scan", "export", "changes")
    assert ENGINES == ("duckdb", "athena")


def test_the_reserved_table_name_and_the_epsilon_limit_are_exported() -> None:
    import dynamo_lake.config as config

    assert {"ALL_TABLES", "MAX_EPSILON_MS"} <= set(config.__all__)
    assert config.ALL_TABLES == "all tables"
    assert config.MAX_EPSILON_MS == 300_000  # 5 minutes


@pytest.mark.parametrize(
    "text",
    [
        pytest.param(ORDERS, id="no-reconcile"),
        pytest.param(RECONCILE, id="empty-reconcile"),
        pytest.param("defaults:\n  reconcile:\n" + RECONCILE, id="empty-both"),
    ],
)
def test_reconcile_defaults_when_nothing_is_given(tmp_path: Path, text: str) -> None:
    path = _write(tmp_path, text)

    config = load_tables(path)

    reconcile = config.table("orders").reconcile
    assert reconcile == ReconcileConfig()
    assert (reconcile.method, reconcile.engine, reconcile.repair) == ("count", "duckdb", False)
    assert (
        reconcile.settle_margin_minutes,
        reconcile.epsilon_ms,
        reconcile.count_staleness_hours,
        reconcile.count_slack,
    ) == (30, 1000, 6, 0)
    assert (reconcile.sns_topic_arn, reconcile.athena_output_location) == (None, None)
    assert (reconcile.duckdb_memory_limit_mb, reconcile.scan_segments) == (1024, 4)
    assert reconcile.scan_pages_per_second == 0
    assert reconcile.athena_workgroup == "primary"
    assert config.reconciliation_schedule == "@daily"


def test_reconcile_values_are_read_back(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        RECONCILE
        + "      method: export\n"
        + "      settle_margin_minutes: 0\n"
        + "      epsilon_ms: 250\n"
        + "      count_staleness_hours: 12\n"
        + "      count_slack: 3\n"
        + "      repair: true\n"
        + "      sns_topic_arn: arn:aws:sns:eu-west-1:123456789012:lake-alerts\n"
        + "      engine: athena\n"
        + "      duckdb_memory_limit_mb: 64\n"
        + "      scan_segments: 1000000\n"
        + "      scan_pages_per_second: 2.5\n"
        + "      athena_workgroup: reconcile.v2\n"
        + "      athena_output_location: s3://acme-athena/results/\n",
    )

    assert load_tables(path).table("orders").reconcile == ReconcileConfig(
        method="export",
        settle_margin_minutes=0,
        epsilon_ms=250,
        count_staleness_hours=12,
        count_slack=3,
        repair=True,
        sns_topic_arn="arn:aws:sns:eu-west-1:123456789012:lake-alerts",
        engine="athena",
        duckdb_memory_limit_mb=64,
        scan_segments=1_000_000,
        scan_pages_per_second=2.5,
        athena_workgroup="reconcile.v2",
        athena_output_location="s3://acme-athena/results/",
    )


def test_reconcile_under_defaults_is_merged_key_by_key(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "defaults:\n"
        "  reconcile:\n"
        "    method: scan\n"
        "    count_slack: 5\n"
        "    scan_segments: 8\n"
        + RECONCILE
        + "      method: changes\n"
        + "      repair: true\n"
        + "      scan_segments: 2\n"
        + "  users:\n"
        + "    dynamodb_table: users\n"
        + "    export_bucket: acme-ddb-exports\n"
        + "    lake_bucket: acme-lake\n"
        + "    glue_database: shop\n"
        + "    glue_table: users\n",
    )

    config = load_tables(path)

    orders, users = config.table("orders").reconcile, config.table("users").reconcile
    # The table's keys win; the keys it leaves out come from the defaults, then the dataclass.
    assert (orders.method, orders.repair, orders.scan_segments) == ("changes", True, 2)
    assert orders.count_slack == 5
    assert orders.epsilon_ms == 1000
    # A table without `reconcile:` takes the defaults' as they are.
    assert (users.method, users.repair, users.count_slack, users.scan_segments) == (
        "scan",
        False,
        5,
        8,
    )


@pytest.mark.parametrize(
    ("setting", "words"),
    [
        pytest.param(
            "method: exprot",
            "field 'reconcile.method' = 'exprot' is not one of count, scan, export, changes; "
            "did you mean 'export'?",
            id="method-typo",
        ),
        pytest.param(
            "method: 5",
            "field 'reconcile.method' = 5 is not one of count, scan, export, changes",
            id="method-number",
        ),
        pytest.param(
            "method:",
            "field 'reconcile.method' is empty (null); give a value, or leave it out to use "
            "'count'",
            id="method-null",
        ),
        pytest.param(
            "settle_margin_minutes: -1",
            "field 'reconcile.settle_margin_minutes' = -1 is out of range: it must be >= 0 "
            "(minutes)",
            id="negative-minutes",
        ),
        pytest.param(
            "epsilon_ms: true",
            "field 'reconcile.epsilon_ms' must be a whole number of milliseconds, not true/false",
            id="boolean-ms",
        ),
        pytest.param(
            "epsilon_ms: 3600000",
            "field 'reconcile.epsilon_ms' = 3600000 is out of range: it must be between 0 and "
            "300000 (milliseconds)",
            id="hour-long-epsilon",
        ),
        pytest.param(
            "count_staleness_hours: -6",
            "field 'reconcile.count_staleness_hours' = -6 is out of range: it must be >= 0",
            id="negative-hours",
        ),
        pytest.param(
            "count_slack: 1.5",
            "field 'reconcile.count_slack' must be a whole number of items, not a number",
            id="fractional-slack",
        ),
        pytest.param(
            "count_slack: '3'",
            "field 'reconcile.count_slack' must be a whole number of items, not a string",
            id="quoted-slack",
        ),
        pytest.param(
            "duckdb_memory_limit_mb: 63",
            "field 'reconcile.duckdb_memory_limit_mb' = 63 is out of range: it must be >= 64",
            id="duckdb-memory-too-small",
        ),
        pytest.param(
            "scan_segments: 0",
            "field 'reconcile.scan_segments' = 0 is out of range: it must be between 1 and 1000000",
            id="zero-segments",
        ),
        pytest.param(
            "scan_segments: 1000001",
            "field 'reconcile.scan_segments' = 1000001 is out of range",
            id="too-many-segments",
        ),
        pytest.param(
            "scan_segments: yes",
            "field 'reconcile.scan_segments' must be a whole number of segments, not true/false",
            id="boolean-segments",
        ),
        pytest.param(
            "scan_pages_per_second: -0.5",
            "field 'reconcile.scan_pages_per_second' = -0.5 is out of range: it must be >= 0 "
            "(0 means no limit)",
            id="negative-rate",
        ),
        pytest.param(
            "scan_pages_per_second: .inf",
            "field 'reconcile.scan_pages_per_second' = inf is out of range",
            id="infinite-rate",
        ),
        pytest.param(
            "scan_pages_per_second: false",
            "field 'reconcile.scan_pages_per_second' must be a number, not true/false",
            id="boolean-rate",
        ),
        pytest.param(
            "repair: 'yes'",
            "field 'reconcile.repair' must be true or false, not a string ('yes'); write true "
            "or false without quotes",
            id="repair-string",
        ),
        pytest.param(
            "repair: 1",
            "field 'reconcile.repair' must be true or false, not a number",
            id="repair-number",
        ),
        pytest.param(
            "sns_topic_arn: arn:aws:sqs:us-east-1:123456789012:alerts",
            "field 'reconcile.sns_topic_arn' = 'arn:aws:sqs:us-east-1:123456789012:alerts' is "
            "not an SNS topic ARN (arn:aws:sns:<region>:<12-digit account>:<topic>",
            id="sqs-arn",
        ),
        pytest.param(
            "sns_topic_arn: arn:aws:sns:us-east-1:12345:alerts",
            "field 'reconcile.sns_topic_arn' = 'arn:aws:sns:us-east-1:12345:alerts' is not an "
            "SNS topic ARN",
            id="short-account",
        ),
        pytest.param(
            "sns_topic_arn: lake-alerts",
            "field 'reconcile.sns_topic_arn' = 'lake-alerts' is not an SNS topic ARN",
            id="topic-name-only",
        ),
        pytest.param(
            "sns_topic_arn: 123456789012",
            "field 'reconcile.sns_topic_arn' must be a string, not a number",
            id="arn-number",
        ),
        pytest.param(
            "engine: athens",
            "field 'reconcile.engine' = 'athens' is not one of duckdb, athena; did you mean "
            "'athena'?",
            id="engine-typo",
        ),
        pytest.param(
            "athena_workgroup: 'my group'",
            "field 'reconcile.athena_workgroup' = 'my group' is not an Athena workgroup name",
            id="workgroup-with-space",
        ),
        pytest.param(
            "athena_output_location: acme-athena/results",
            "field 'reconcile.athena_output_location' = 'acme-athena/results' is not an S3 "
            "location: it does not start with 's3://'",
            id="output-without-scheme",
        ),
        pytest.param(
            "athena_output_location: s3://Acme_Athena/results",
            "field 'reconcile.athena_output_location' = 's3://Acme_Athena/results' is not an "
            "S3 location: it names 'Acme_Athena', which is not an S3 bucket name",
            id="output-bad-bucket",
        ),
    ],
)
def test_a_wrong_reconcile_value_carries_its_line(tmp_path: Path, setting: str, words: str) -> None:
    path = _write(tmp_path, RECONCILE + f"      {setting}\n")

    message = _error_at(path, 10)

    assert f"table 'orders': {words}" in message


@pytest.mark.parametrize(
    "arn",
    [
        "arn:aws:sns:us-east-1:123456789012:lake-alerts",
        "arn:aws-us-gov:sns:us-gov-west-1:123456789012:Lake_Alerts",
        "arn:aws-cn:sns:cn-north-1:123456789012:alerts.fifo",
    ],
)
def test_sns_topic_arns_of_every_partition_are_accepted(tmp_path: Path, arn: str) -> None:
    path = _write(tmp_path, RECONCILE + f"      sns_topic_arn: {arn}\n")

    assert load_tables(path).table("orders").reconcile.sns_topic_arn == arn


def test_reconcile_must_be_a_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, ORDERS + "    reconcile: changes\n")

    message = _error_at(path, 9)

    assert "table 'orders': field 'reconcile' must be a mapping" in message
    assert "not a string" in message


def test_an_unknown_reconcile_field_carries_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, RECONCILE + "      method: scan\n      metod: export\n")

    message = _error_at(path, 11)

    assert "table 'orders': unknown field 'reconcile.metod'" in message
    assert "did you mean 'reconcile.method'?" in message
    assert "settle_margin_minutes" in message.split("known:", 1)[1]


def test_a_wrong_reconcile_value_under_defaults_points_at_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, "defaults:\n  reconcile:\n    epsilon_ms: -1\n" + ORDERS)

    message = _error_at(path, 3)

    assert "table 'orders': field 'reconcile.epsilon_ms' (set under 'defaults:') = -1" in message


@pytest.mark.parametrize(
    ("prefix", "suffix", "line", "origin"),
    [
        pytest.param("", "    reconcile:\n      epsilon_ms: {value}\n", 10, "", id="in-a-table"),
        pytest.param(
            "defaults:\n  reconcile:\n    epsilon_ms: {value}\n",
            "",
            3,
            " (set under 'defaults:')",
            id="under-defaults",
        ),
    ],
)
def test_epsilon_ms_is_bounded_on_both_ends(
    tmp_path: Path, prefix: str, suffix: str, line: int, origin: str
) -> None:
    def written(value: int) -> Path:
        text = prefix.format(value=value) + ORDERS + suffix.format(value=value)
        return _write(tmp_path, text, f"epsilon_{value}.yaml")

    for value in (0, 300_000):
        assert load_tables(written(value)).table("orders").reconcile.epsilon_ms == value
    for value in (-1, 300_001):
        message = _error_at(written(value), line)
        assert (
            f"table 'orders': field 'reconcile.epsilon_ms'{origin} = {value} is out of range: "
            "it must be between 0 and 300000 (milliseconds)"
        ) in message


@pytest.mark.parametrize(
    ("text", "line", "words"),
    [
        pytest.param(
            ORDERS.replace("orders-prod", '"orders-prod\\n"'),
            3,
            "field 'dynamodb_table' = 'orders-prod\\n' is not a DynamoDB table name",
            id="dynamodb-table",
        ),
        pytest.param(
            ORDERS.replace("glue_database: shop", 'glue_database: "shop\\n"'),
            7,
            "field 'glue_database' = 'shop\\n' must be lowercase letters",
            id="glue-database",
        ),
        pytest.param(
            RECONCILE + '      athena_workgroup: "primary\\n"\n',
            10,
            "field 'reconcile.athena_workgroup' = 'primary\\n' is not an Athena workgroup name",
            id="athena-workgroup",
        ),
        pytest.param(
            RECONCILE + '      sns_topic_arn: "arn:aws:sns:us-east-1:123456789012:alerts\\n"\n',
            10,
            "field 'reconcile.sns_topic_arn' = 'arn:aws:sns:us-east-1:123456789012:alerts\\n' "
            "is not an SNS topic ARN",
            id="sns-topic-arn",
        ),
    ],
)
def test_a_final_newline_does_not_slip_past_a_name_rule(
    tmp_path: Path, text: str, line: int, words: str
) -> None:
    # A regex ending in '$' also matches just before a final newline.
    path = _write(tmp_path, text)

    assert f"table 'orders': {words}" in _error_at(path, line)


def test_an_unknown_reconcile_field_under_defaults_points_at_defaults(tmp_path: Path) -> None:
    path = _write(tmp_path, "defaults:\n  reconcile:\n    scan_segmnts: 8\n" + ORDERS)

    message = _error_at(path, 3)

    assert "unknown field 'reconcile.scan_segmnts' under 'defaults:'" in message
    assert "did you mean 'reconcile.scan_segments'?" in message


@pytest.mark.parametrize(
    ("settings", "line", "method"),
    [
        pytest.param("      repair: true\n", 10, "'count' (the default)", id="default-count"),
        pytest.param(
            "      method: count\n      repair: true\n", 11, "'count'", id="explicit-count"
        ),
        pytest.param("      repair: true\n      method: scan\n", 10, "'scan'", id="scan"),
    ],
)
def test_repair_needs_the_export_or_changes_method(
    tmp_path: Path, settings: str, line: int, method: str
) -> None:
    path = _write(tmp_path, RECONCILE + settings)

    message = _error_at(path, line)

    assert "table 'orders': field 'reconcile.repair' = true needs the export or changes " in (
        message
    )
    assert f"but method is {method}:" in message
    assert "set method to export or changes, or repair to false" in message


@pytest.mark.parametrize("method", ["export", "changes"])
def test_repair_is_accepted_with_export_or_changes(tmp_path: Path, method: str) -> None:
    path = _write(tmp_path, RECONCILE + f"      method: {method}\n      repair: true\n")

    reconcile = load_tables(path).table("orders").reconcile

    assert (reconcile.method, reconcile.repair) == (method, True)


def test_the_athena_engine_needs_an_output_location(tmp_path: Path) -> None:
    path = _write(tmp_path, RECONCILE + "      method: scan\n      engine: athena\n")

    message = _error_at(path, 11)

    assert (
        "table 'orders': field 'reconcile.engine' = 'athena' needs field "
        "'reconcile.athena_output_location'"
    ) in message
    assert "set it, or use engine duckdb" in message


def test_a_null_athena_output_location_is_refused_with_its_line(tmp_path: Path) -> None:
    path = _write(tmp_path, RECONCILE + "      engine: athena\n      athena_output_location:\n")

    message = _error_at(path, 11)

    assert (
        "table 'orders': field 'reconcile.athena_output_location' is empty (null) but engine "
        "is athena"
    ) in message


def test_the_athena_engine_with_an_output_location_is_accepted(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        "defaults:\n  reconcile:\n    athena_output_location: s3://acme-athena\n"
        + RECONCILE
        + "      engine: athena\n",
    )

    reconcile = load_tables(path).table("orders").reconcile

    assert (reconcile.engine, reconcile.athena_output_location) == ("athena", "s3://acme-athena")


@pytest.mark.parametrize(
    ("text", "line", "first", "words"),
    [
        pytest.param(
            RECONCILE + "      method: scan\n      count_slack: 1\n      method: export\n",
            12,
            10,
            "table 'orders': field 'reconcile.method' appears twice",
            id="in-a-table",
        ),
        pytest.param(
            "defaults:\n  reconcile:\n    repair: false\n    repair: true\n" + ORDERS,
            4,
            3,
            "defaults: field 'reconcile.repair' appears twice",
            id="in-defaults",
        ),
        pytest.param(
            RECONCILE.replace("    reconcile:\n", "    reconcile: {engine: duckdb, engine: x}\n"),
            9,
            9,
            "table 'orders': field 'reconcile.engine' appears twice",
            id="flow-mapping",
        ),
        pytest.param(
            "reconciliation:\n  schedule: '@daily'\n  schedule: '@hourly'\n" + ORDERS,
            3,
            2,
            "reconciliation: field 'schedule' appears twice",
            id="in-reconciliation",
        ),
    ],
)
def test_a_key_repeated_in_a_reconcile_mapping_is_refused(
    tmp_path: Path, text: str, line: int, first: int, words: str
) -> None:
    path = _write(tmp_path, text)

    message = _error_at(path, line)

    assert words in message
    assert f"first at line {first}" in message
    assert "remove or rename one" in message


@pytest.mark.parametrize(
    ("section", "schedule"),
    [
        pytest.param("", "@daily", id="no-section"),
        pytest.param("reconciliation:\n", "@daily", id="empty-section"),
        pytest.param("reconciliation:\n  schedule: '@hourly'\n", "@hourly", id="preset"),
        pytest.param("reconciliation:\n  schedule: '@yearly'\n", "@yearly", id="yearly"),
        pytest.param("reconciliation:\n  schedule: '30 2 * * *'\n", "30 2 * * *", id="cron"),
        pytest.param(
            "reconciliation:\n  schedule: '*/15 0-6,22 1,15 jan-JUN/2 mon-fri'\n",
            "*/15 0-6,22 1,15 jan-JUN/2 mon-fri",
            id="cron-lists-ranges-steps-names",
        ),
        pytest.param("reconciliation:\n  schedule: 0 4 * * 7\n", "0 4 * * 7", id="cron-unquoted"),
        pytest.param("reconciliation:\n  schedule:\n", None, id="null-is-manual-only"),
        pytest.param("reconciliation:\n  schedule: null\n", None, id="explicit-null"),
    ],
)
def test_the_reconciliation_schedule(tmp_path: Path, section: str, schedule: str | None) -> None:
    path = _write(tmp_path, section + ORDERS)

    assert load_tables(path).reconciliation_schedule == schedule


@pytest.mark.parametrize(
    ("schedule", "words"),
    [
        pytest.param("'@once'", "= '@once' would run the DAG a single time", id="once"),
        pytest.param(
            "'@dialy'",
            "= '@dialy' is not an Airflow preset this DAG accepts (did you mean '@daily'?)",
            id="preset-typo",
        ),
        pytest.param("'@quarterly'", "= '@quarterly' is not an Airflow preset", id="quarterly"),
        pytest.param("daily", "= 'daily' is not a cron expression: it has 1 field;", id="word"),
        pytest.param(
            "'0 2 * *'",
            "= '0 2 * *' is not a cron expression: it has 4 fields; a cron expression has 5",
            id="four-fields",
        ),
        pytest.param("'0 0 2 * * *'", "it has 6 fields; a cron expression has 5", id="six-fields"),
        pytest.param(
            "'0 25 * * *'", "it has hour value '25' (allowed: 0-23)", id="hour-out-of-range"
        ),
        pytest.param(
            "'0 2 L * *'", "it has day-of-month value 'L' (allowed: 1-31)", id="unsupported-L"
        ),
        pytest.param(
            "'0 2 * foo *'", "it has month value 'foo' (allowed: 1-12 or jan..dec)", id="bad-name"
        ),
        pytest.param("'0 2 ? * *'", "it has day-of-month field '?'", id="question-mark"),
        pytest.param("'*/0 2 * * *'", "it has a step of 0 in minute field '*/0'", id="zero-step"),
        pytest.param("5", "must be a string or null, not a number", id="number"),
    ],
)
def test_a_bad_reconciliation_schedule_is_refused(
    tmp_path: Path, schedule: str, words: str
) -> None:
    path = _write(tmp_path, f"reconciliation:\n  schedule: {schedule}\n" + ORDERS)

    message = _error_at(path, 2)

    assert f"{path}:2: reconciliation: field 'schedule' " in message
    assert words in message
    assert "use one of @hourly, @daily, @weekly, @monthly, @yearly, a 5-field cron" in message
    assert "or null for manual runs only" in message


def test_an_unquoted_preset_schedule_is_told_to_be_quoted(tmp_path: Path) -> None:
    path = _write(tmp_path, "reconciliation:\n  schedule: @daily\n" + ORDERS)

    message = _error_at(path, 2)

    assert "not valid YAML" in message
    assert "a value that starts with '@' must be quoted" in message


def test_an_unknown_key_under_reconciliation_carries_its_line(tmp_path: Path) -> None:
    path = _write(
        tmp_path, "reconciliation:\n  schedule: '@daily'\n  schedul: '@hourly'\n" + ORDERS
    )

    message = _error_at(path, 3)

    assert "reconciliation: unknown field 'schedul'; did you mean 'schedule'?" in message
    assert "(known: schedule)" in message


def test_the_reconciliation_section_must_be_a_mapping(tmp_path: Path) -> None:
    path = _write(tmp_path, ORDERS + "reconciliation: '@daily'\n")

    message = _error_at(path, 9)

    assert "'reconciliation' must be a mapping" in message
    assert "not a string" in message


def test_a_misspelt_reconciliation_section_is_refused(tmp_path: Path) -> None:
    path = _write(tmp_path, ORDERS + "reconciliaton:\n  schedule: '@daily'\n")

    message = _error_at(path, 9)

    assert "unknown top-level key 'reconciliaton'; did you mean 'reconciliation'?" in message
    assert "known: defaults, tables, reconciliation" in message


def test_configs_built_in_code_keep_the_reconcile_defaults() -> None:
    from dynamo_lake.config import TablesConfig

    table = TableConfig("orders", "orders", "exports", "lake", "shop", "orders")
    tables = TablesConfig(Path("tables.yaml"), {"orders": table})

    assert table.reconcile == ReconcileConfig()
    assert tables.reconciliation_schedule == "@daily"
