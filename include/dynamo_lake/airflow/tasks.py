"""Task bodies any DAG can use: from completed exports to their rows published in a target.

A *target* is a lake table, or a work location that readers never see; it is decided when
a run is planned and travels in the run's records, so editing the tables file mid-run cannot
redirect a run's writes. Values in and out are the JSON of :mod:`dynamo_lake.records`
(XCom carries pointers and counts, never rows).

:func:`fails_fast` is the one translation of the core's errors into Airflow's: errors no
retry can fix (``retryable`` false) fail the task at once, and the task's log ends with their
message as one line, without a traceback (:mod:`dynamo_lake.airflow.task_errors`); the rest
propagate with their tracebacks and the task's retries apply. Before that last line it logs
the task process's peak memory, the figure to size workers by.
"""

from __future__ import annotations

import functools
import logging
from collections.abc import Callable, Sequence
from typing import Any, ParamSpec, TypeVar

from dynamo_lake.airflow.connections import s3_options
from dynamo_lake.airflow.task_errors import ProblemToFix, quiet_problem_tracebacks
from dynamo_lake.errors import DynamoLakeError
from dynamo_lake.exports.manifest import read_manifest
from dynamo_lake.lake.conversion import (
    convert_batch,
    peak_memory_mb,
    plan_batches,
    publish_exports,
)
from dynamo_lake.records import ConversionBatch, ExportResult, PublishedExport

__all__ = [
    "MIB",
    "batch_name",
    "convert",
    "fails_fast",
    "materialize",
    "plan_conversion",
    "publish",
]

log = logging.getLogger(__name__)
MIB = 1024 * 1024
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


def fails_fast(function: Callable[P, R]) -> Callable[P, R]:
    """Run a task body; an error no retry can fix fails the task without retries, and its
    message is the task log's last line (its traceback only at DEBUG)."""

    @functools.wraps(function)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return function(*args, **kwargs)
        except DynamoLakeError as exc:
            if exc.retryable:
                raise
            log.debug("where the %s was raised", type(exc).__name__, exc_info=exc)
            quiet_problem_tracebacks()
            raise ProblemToFix(str(exc)) from exc
        finally:
            log.info("peak memory of this task process: %.0f MB", peak_memory_mb())

    return wrapper


def materialize(values: Sequence[T]) -> list[T]:
    """A mapped task's outputs as a list, read in one request.

    ``list()`` over Airflow's lazy XCom sequence reads item by item until one past the end,
    and that last read logs an "XCom not found" error in the scheduler for every run.
    """
    return list(values[:])


@fails_fast
def plan_conversion(
    exports: Sequence[dict[str, Any]],
    *,
    target: str,
    attempt: str,
    compression: str,
    batch_size_mb: int,
    aws_conn_id: str | None,
    region: str | None,
) -> list[dict[str, Any]]:
    """Read each export's verified manifest and cut its data files into batches."""
    options = s3_options(aws_conn_id, region)
    batches: list[dict[str, Any]] = []
    for export in sorted(map(ExportResult.from_json, exports), key=lambda item: item.sequence):
        manifest = read_manifest(export.manifest_uri, options)
        groups = plan_batches(manifest, batch_size_mb * MIB)
        log.info(
            "export %s: %d data files, %d items, %d batches into %s",
            manifest.summary.export_id,
            len(manifest.data_files),
            manifest.summary.item_count,
            len(groups),
            target,
        )
        batches += [
            ConversionBatch(
                target=target,
                manifest_uri=export.manifest_uri,
                export_id=manifest.summary.export_id,
                keys=tuple(keys),
                batch=number,
                compression=compression,
                attempt=attempt,
                aws_conn_id=aws_conn_id,
                region=region,
            ).to_json()
            for number, keys in enumerate(groups)
        ]
    return batches


@fails_fast
def convert(batch_json: dict[str, Any]) -> dict[str, Any]:
    """Convert one batch of data files into its target's staging area; return counts."""
    batch = ConversionBatch.from_json(batch_json)
    receipt = convert_batch(batch, s3_options(batch.aws_conn_id, batch.region))
    counts = {
        "export_id": receipt.export_id,
        "batch": receipt.batch,
        "data_files": len(receipt.files),
        "rows": receipt.rows,
        "bad_lines": receipt.bad_lines,
    }
    log.info("batch %s of %s into %s: %s", batch.batch, batch.export_id, batch.target, counts)
    return counts


def batch_name(batch_json: dict[str, Any]) -> str:
    """How a conversion batch is named in the UI: its export and its data files."""
    batch = ConversionBatch.from_json(batch_json)
    first = batch.keys[0].rsplit("/", 1)[-1] if batch.keys else "no files"
    more = f" +{len(batch.keys) - 1}" if len(batch.keys) > 1 else ""
    return f"{batch.export_id} #{batch.batch}: {first}{more}"


def batches_per_export(batches: Sequence[dict[str, Any]]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for batch in map(ConversionBatch.from_json, batches):
        counts[batch.export_id] = counts.get(batch.export_id, 0) + 1
    return counts


def publish(
    exports: Sequence[dict[str, Any]],
    batches: Sequence[dict[str, Any]],
    *,
    target: str,
    run_id: str,
    aws_conn_id: str | None,
    region: str | None,
    max_bad_lines: int = 0,
    force: bool = False,
) -> list[PublishedExport]:
    """Verify the batches' receipts against the manifests and publish each export."""
    return publish_exports(
        [ExportResult.from_json(item) for item in exports],
        target,
        batches_per_export(batches),
        s3_options(aws_conn_id, region),
        run_id=run_id,
        max_bad_lines=max_bad_lines,
        force=force,
    )
