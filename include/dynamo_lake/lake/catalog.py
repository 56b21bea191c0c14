"""The Glue catalog entry of a lake table, defined once.

:func:`glue_table_input` is the lake contract as Glue sees it (the seed's columns and
SerDe, ``year``/``month``/``day`` string partition keys, EXTERNAL_TABLE) with partition
projection, so Athena finds new days without anyone registering partitions. The backfill
creates or repairs the table through :func:`ensure_glue_table`; the CloudFormation
template declares the same table, and a test keeps the two equal.
"""

from __future__ import annotations

import logging
from typing import Any

from dynamo_lake import contract
from dynamo_lake.contract import END_YEAR, FIRST_YEAR
from dynamo_lake.errors import CatalogError, CatalogUnavailableError, aws_error_code

__all__ = [
    "COLUMNS",
    "PARTITION_KEYS",
    "ensure_glue_table",
    "glue_table_input",
    "projection_parameters",
]

log = logging.getLogger(__name__)

#: The contract's columns and partition keys as Glue (Hive) types.
COLUMNS = [{"Name": column.name, "Type": column.kind} for column in contract.COLUMNS]
PARTITION_KEYS = [{"Name": key, "Type": "string"} for key in contract.PARTITION_KEYS]


def projection_parameters(location: str) -> dict[str, str]:
    """Athena partition projection for ``year=YYYY/month=MM/day=DD`` below ``location``."""
    base = location.rstrip("/")
    return {
        "projection.enabled": "true",
        "projection.year.type": "integer",
        "projection.year.range": f"{FIRST_YEAR},{END_YEAR}",
        "projection.year.digits": "4",
        "projection.month.type": "integer",
        "projection.month.range": "1,12",
        "projection.month.digits": "2",
        "projection.day.type": "integer",
        "projection.day.range": "1,31",
        "projection.day.digits": "2",
        "storage.location.template": f"{base}/year=${{year}}/month=${{month}}/day=${{day}}",
    }


def glue_table_input(table: str, location: str, description: str = "") -> dict[str, Any]:
    """The ``TableInput`` of Glue's CreateTable/UpdateTable for a lake table at ``location``."""
    location = location.rstrip("/") + "/"
    return {
        "Name": table,
        "Description": description or "DynamoDB CDC rows (uuid, op, time_stamp, data)",
        "TableType": "EXTERNAL_TABLE",
        "Parameters": {
            "classification": "parquet",
            "EXTERNAL": "TRUE",
            **projection_parameters(location),
        },
        "PartitionKeys": PARTITION_KEYS,
        "StorageDescriptor": {
            "Columns": COLUMNS,
            "Location": location,
            "InputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat",
            "OutputFormat": "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat",
            "Compressed": False,
            "SerdeInfo": {
                "SerializationLibrary": (
                    "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
                ),
                "Parameters": {"serialization.format": "1"},
            },
            "StoredAsSubDirectories": False,
        },
    }


#: The lake's rows since a current-state snapshot, staged for Athena by this project's own
#: reader: each row's exact key ``k``, whether the stream wrote it, and its time as a bigint
#: of microseconds (exact on every engine; Athena reads a Hive table's timestamps at ms).
STAGED_EVENT_COLUMNS = [
    {"Name": "uuid", "Type": "string"},
    {"Name": "op", "Type": "string"},
    {"Name": "data", "Type": "string"},
    {"Name": "k", "Type": "string"},
    {"Name": "stream", "Type": "boolean"},
    {"Name": "time_stamp_us", "Type": "bigint"},
]


def staged_events_table_input(table: str, location: str) -> dict[str, Any]:
    """The ``TableInput`` of a temporary table over staged events (unpartitioned Parquet)."""
    wanted = glue_table_input(table, location, "reconciliation work: lake rows since a snapshot")
    wanted["Parameters"] = {"classification": "parquet", "EXTERNAL": "TRUE"}
    wanted["PartitionKeys"] = []
    wanted["StorageDescriptor"]["Columns"] = STAGED_EVENT_COLUMNS
    return wanted


def _matches(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    descriptor = existing.get("StorageDescriptor", {})
    return bool(
        [(c["Name"], c["Type"]) for c in descriptor.get("Columns", [])]
        == [(c["Name"], c["Type"]) for c in COLUMNS]
        and [(k["Name"], k["Type"]) for k in existing.get("PartitionKeys", [])]
        == [(k["Name"], k["Type"]) for k in PARTITION_KEYS]
        and descriptor.get("Location", "").rstrip("/")
        == wanted["StorageDescriptor"]["Location"].rstrip("/")
        and all(
            existing.get("Parameters", {}).get(name) == value
            for name, value in wanted["Parameters"].items()
        )
    )


#: Glue's answers that mean "not now" rather than "no".
_THROTTLED = frozenset({"ThrottlingException", "ConcurrentModificationException"})


def ensure_glue_table(glue: Any, database: str, table: str, location: str) -> str:
    """Create the database and table if missing; bring a drifted table back to the contract.

    Returns ``"created"``, ``"updated"`` or ``"unchanged"``. Glue errors surface as
    :class:`CatalogError` naming the database, table and AWS's reason.
    """
    from botocore.exceptions import ClientError

    wanted = glue_table_input(table, location)
    try:
        try:
            glue.get_database(Name=database)
        except ClientError as exc:
            if aws_error_code(exc) != "EntityNotFoundException":
                raise
            glue.create_database(DatabaseInput={"Name": database})
            log.info("created Glue database %s", database)
        try:
            existing = glue.get_table(DatabaseName=database, Name=table)["Table"]
        except ClientError as exc:
            if aws_error_code(exc) != "EntityNotFoundException":
                raise
            glue.create_table(DatabaseName=database, TableInput=wanted)
            log.info("created Glue table %s.%s at %s", database, table, location)
            return "created"
        if _matches(existing, wanted):
            return "unchanged"
        glue.update_table(DatabaseName=database, TableInput=wanted)
        log.warning("Glue table %s.%s differed from the lake contract; updated", database, table)
        return "updated"
    except ClientError as exc:
        error = exc.response["Error"]
        status = exc.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 0)
        unavailable = status >= 500 or error.get("Code") in _THROTTLED
        raise (CatalogUnavailableError if unavailable else CatalogError)(
            f"Glue table {database}.{table}: {error.get('Code')}: {error.get('Message')}"
            + (
                "; Glue did not answer after retries, the task's retries will ask again"
                if unavailable
                else ""
            )
        ) from None
