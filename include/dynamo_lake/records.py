"""What passes between steps (and Airflow tasks): typed records with explicit JSON.

Each record is a frozen dataclass with ``to_json()`` (a dict of JSON types, what XCom and
the files under ``_staging``/``_backfills`` hold) and ``from_json()``. A module that needs
another step's output reads it through these classes, never by knowing its dict layout.
Plain data only: nothing heavy is imported here.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from typing import Any, Literal, TypeVar

from dynamo_lake.exports.api import ExportRequest

__all__ = [
    "BackfillPlan",
    "BackfillRecord",
    "BatchReceipt",
    "CommittedBackfill",
    "ConversionBatch",
    "ExportResult",
    "FileConversion",
    "PublishedExport",
    "ReconciliationPlan",
    "StagedFile",
]

Mode = Literal["full", "incremental"]
_Record = TypeVar("_Record")


def _from_fields(cls: type[_Record], raw: dict[str, Any]) -> _Record:
    """Build a flat record from its JSON, ignoring keys a newer version may have added."""
    names = {item.name for item in fields(cls)}  # type: ignore[arg-type]
    return cls(**{name: value for name, value in raw.items() if name in names})


@dataclass(frozen=True)
class StagedFile:
    """A complete Parquet file in staging, and where it goes when published."""

    partition: str
    name: str
    rows: int
    source: str
    #: sha256 of the file's uuids in order: two files with one digest hold the same rows
    #: (a republish may then replace one with the other without changing what readers see).
    digest: str = ""

    @property
    def final_path(self) -> str:
        return f"{self.partition}/{self.name}"

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> StagedFile:
        return _from_fields(cls, raw)


@dataclass(frozen=True)
class FileConversion:
    """What one export data file became: rows staged, lines diverted, files staged."""

    key: str
    rows: int
    bad_lines: int
    staged: tuple[StagedFile, ...]
    first_bad_line: str | None = None
    errors_uri: str | None = None

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["staged"] = [item.to_json() for item in self.staged]
        return raw

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> FileConversion:
        staged = tuple(StagedFile.from_json(item) for item in raw["staged"])
        return _from_fields(cls, {**raw, "staged": staged})


@dataclass(frozen=True)
class ExportResult:
    """A completed export, as the export step hands it on (its manifest, what was asked)."""

    sequence: int
    export_arn: str
    manifest_uri: str
    item_count: int | None
    mode: Mode
    client_token: str
    export_time: str | None = None  # as requested
    export_from: str | None = None
    export_to: str | None = None

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ExportResult:
        return _from_fields(cls, raw)


@dataclass(frozen=True)
class ConversionBatch:
    """Some data files of one export, converted by one task into ``target``'s staging.

    ``target`` is the lake table (or a work location readers never see), decided when the
    run was planned; ``attempt`` names the run's staging; the connection is the export's.
    """

    target: str
    manifest_uri: str
    export_id: str
    keys: tuple[str, ...]
    batch: int
    compression: str
    attempt: str
    aws_conn_id: str | None
    region: str | None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "keys": list(self.keys)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ConversionBatch:
        return _from_fields(cls, {**raw, "keys": tuple(raw["keys"])})


@dataclass(frozen=True)
class BatchReceipt:
    """What a batch left in staging, for the step that publishes the export."""

    export_id: str
    batch: int
    files: tuple[FileConversion, ...]

    @property
    def rows(self) -> int:
        return sum(item.rows for item in self.files)

    @property
    def bad_lines(self) -> int:
        return sum(item.bad_lines for item in self.files)

    def to_json(self) -> dict[str, Any]:
        return {
            "export_id": self.export_id,
            "batch": self.batch,
            "files": [item.to_json() for item in self.files],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BatchReceipt:
        files = tuple(FileConversion.from_json(item) for item in raw["files"])
        return cls(export_id=str(raw["export_id"]), batch=int(raw["batch"]), files=files)


@dataclass(frozen=True)
class PublishedExport:
    """One export made visible in a target: its own times (from its manifest, AWS's
    milliseconds) beside what was asked, and the counts of what readers now see."""

    sequence: int
    export_arn: str
    export_id: str
    export_type: str
    manifest_uri: str
    item_count: int
    rows: int
    bad_lines: int
    files: int
    partitions: tuple[str, ...]
    export_time: str | None = None
    export_from: str | None = None
    export_to: str | None = None
    requested_export_time: str | None = None
    client_token: str | None = None

    def to_json(self) -> dict[str, Any]:
        return {**asdict(self), "partitions": list(self.partitions)}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> PublishedExport:
        return _from_fields(cls, {**raw, "partitions": tuple(raw["partitions"])})


@dataclass(frozen=True)
class BackfillPlan:
    """What a backfill run will do: the exports in order, and whether it only looks.

    ``request`` is what the run asked for (its params); ``run_id`` the run. The plan of a
    run is stored and reused when any of its tasks is cleared, so the run exports the same
    moment however often it is re-run.
    """

    table: str
    mode: Mode
    lake_uri: str
    exports: tuple[ExportRequest, ...]
    pitr_window: str
    dry_run: bool = False
    compression: str = "zstd"
    notes: tuple[str, ...] = field(default=())
    force: bool = False
    run_id: str = ""
    request: dict[str, Any] = field(default_factory=dict)

    def to_json(self) -> dict[str, Any]:
        return {
            "table": self.table,
            "mode": self.mode,
            "lake_uri": self.lake_uri,
            "pitr_window": self.pitr_window,
            "dry_run": self.dry_run,
            "compression": self.compression,
            "notes": list(self.notes),
            "force": self.force,
            "run_id": self.run_id,
            "request": self.request,
            "exports": [request.to_json() for request in self.exports],
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BackfillPlan:
        return cls(
            table=str(raw["table"]),
            mode=raw["mode"],
            lake_uri=str(raw["lake_uri"]),
            exports=tuple(ExportRequest.from_json(item) for item in raw["exports"]),
            pitr_window=str(raw["pitr_window"]),
            dry_run=bool(raw.get("dry_run")),
            compression=str(raw.get("compression") or "zstd"),
            notes=tuple(raw.get("notes") or ()),
            force=bool(raw.get("force")),
            run_id=str(raw.get("run_id") or ""),
            request=dict(raw.get("request") or {}),
        )


@dataclass(frozen=True)
class BackfillRecord:
    """``_backfills/<run id>.json``: what a backfill run put in the lake (and its summary)."""

    run_id: str
    table: str
    dynamodb_table: str
    mode: Mode
    lake_uri: str
    glue_table: str
    exports: tuple[PublishedExport, ...]
    glue: str = ""  # what the run did to the Glue table: created, updated, unchanged
    committed_at: str = ""  # when the commit finished (ISO-8601 UTC)

    @property
    def rows(self) -> int:
        return sum(item.rows for item in self.exports)

    @property
    def bad_lines(self) -> int:
        return sum(item.bad_lines for item in self.exports)

    @property
    def files(self) -> int:
        return sum(item.files for item in self.exports)

    def to_json(self) -> dict[str, Any]:
        return {
            "run_id": self.run_id,
            "table": self.table,
            "dynamodb_table": self.dynamodb_table,
            "mode": self.mode,
            "lake_uri": self.lake_uri,
            "glue_table": self.glue_table,
            "glue": self.glue,
            "committed_at": self.committed_at,
            "exports": [item.to_json() for item in self.exports],
            "rows": self.rows,
            "bad_lines": self.bad_lines,
            "files": self.files,
        }

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> BackfillRecord:
        return cls(
            run_id=str(raw["run_id"]),
            table=str(raw["table"]),
            dynamodb_table=str(raw["dynamodb_table"]),
            mode=raw["mode"],
            lake_uri=str(raw["lake_uri"]),
            glue_table=str(raw["glue_table"]),
            exports=tuple(PublishedExport.from_json(item) for item in raw["exports"]),
            glue=str(raw.get("glue") or ""),
            committed_at=str(raw.get("committed_at") or ""),
        )


@dataclass(frozen=True)
class CommittedBackfill:
    """What a backfill's commit hands on: the run's record and where it was written."""

    record: BackfillRecord
    record_uri: str

    def to_json(self) -> dict[str, Any]:
        return {"record_uri": self.record_uri, **self.record.to_json()}

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> CommittedBackfill:
        return cls(record=BackfillRecord.from_json(raw), record_uri=str(raw["record_uri"]))

    def asset_extra(self) -> dict[str, Any]:
        """The figures an asset event on the lake table carries (what the Assets view shows)."""
        record = self.record
        return {
            "kind": "backfill",
            "run_id": record.run_id,
            "rows": record.rows,
            "files": record.files,
            "bad_lines": record.bad_lines,
            "record_uri": self.record_uri,
            "exports": [
                {
                    "export_arn": item.export_arn,
                    "rows": item.rows,
                    "export_time": item.export_time,
                    "requested_export_time": item.requested_export_time,
                    "export_from": item.export_from,
                    "export_to": item.export_to,
                }
                for item in record.exports
            ],
        }


@dataclass(frozen=True)
class ReconciliationPlan:
    """What one table's reconciliation in a run will do, decided when the run is planned.

    ``as_of`` is T (µs, whole milliseconds); ``keys`` the table's key attributes as
    ``(name, type)``; ``work_uri`` where the table side is converted (readers never look
    there); ``export_request`` the export the method needs, if any; ``lead_in_request``
    the ``changes`` method's second, short incremental export of the 15 minutes before its
    window (so that consecutive daily runs overlap: see ``reconciliation.plan``), and
    ``window_start`` where the two together begin.
    """

    table: str
    dynamodb_table: str
    table_arn: str
    lake_uri: str
    work_uri: str
    method: str
    as_of: int
    epsilon_ms: int
    repair: bool
    engine: str
    keys: tuple[tuple[str, str], ...]
    run_id: str
    aws_conn_id: str
    region: str | None
    glue_database: str
    glue_table: str
    export_request: ExportRequest | None = None
    window_start: int | None = None
    lead_in_request: ExportRequest | None = None
    settle_margin_minutes: int = 30
    count_staleness_hours: int = 6
    count_slack: int = 0
    scan_segments: int = 4
    scan_pages_per_second: float = 0.0
    duckdb_memory_limit_mb: int = 1024
    athena_workgroup: str = "primary"
    athena_output_location: str | None = None
    sns_topic_arn: str | None = None

    def to_json(self) -> dict[str, Any]:
        raw = asdict(self)
        raw["keys"] = [list(pair) for pair in self.keys]
        raw["export_request"] = self.export_request.to_json() if self.export_request else None
        raw["lead_in_request"] = self.lead_in_request.to_json() if self.lead_in_request else None
        return raw

    @property
    def export_requests(self) -> list[ExportRequest]:
        """Every export the plan needs (none for count and scan)."""
        return [request for request in (self.export_request, self.lead_in_request) if request]

    @classmethod
    def from_json(cls, raw: dict[str, Any]) -> ReconciliationPlan:
        request = raw.get("export_request")
        lead_in = raw.get("lead_in_request")
        return _from_fields(
            cls,
            {
                **raw,
                "keys": tuple((str(name), str(kind)) for name, kind in raw["keys"]),
                "export_request": ExportRequest.from_json(request) if request else None,
                "lead_in_request": ExportRequest.from_json(lead_in) if lead_in else None,
            },
        )
