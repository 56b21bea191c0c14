"""An ``export`` or ``changes`` check from the current state, bucket by bucket, on many workers.

A key's bucket is the same wherever it is computed (:func:`dynamo_lake.state.merge.bucket_of`:
md5 bits), so a table's findings are its buckets' findings together, and each bucket can be
compared on its own, from rows that are its own, in one DuckDB of bounded memory:

1. :func:`plan_split`: the basis is chosen once (the snapshot and the lake files read beside
   it: :mod:`~dynamo_lake.reconciliation.state_basis`); the run's converted export and those
   lake files are dealt into parts of about :data:`PART_BYTES`, and the buckets into at most
   :data:`MAX_COMPARE_TASKS` tasks.
2. :func:`split_part`: a part's rows, keyed, into one Parquet file per bucket under
   ``<work>-buckets/{table,lake}/bucket=NNNN/`` (of a merged lake file, only its rows after the
   watermark). Rows without a key go to bucket 0, which refuses them. A retry writes the same
   files.
3. :func:`compare_buckets`: some buckets, one at a time: a bucket's split rows and the
   snapshot's rows of that bucket (the state is partitioned by bucket, so only its files are
   read) through the same SQL as a whole-table check; the findings into
   ``<work>-buckets/findings/part-TTTTT.parquet``.
4. :func:`gather`: the counts added, the samples merged in the engine's key order, the
   findings files read back into the one findings file of the report.

Together the split tasks read the export and the day's lake rows once, and the compare
tasks read the snapshot once, whatever the number of buckets; a compare task's memory is
one bucket's. The folder is removed with the work location. The DAG maps the steps across
workers; elsewhere (the CLI, a repair's re-check) ``run.check_by_bucket`` runs them one
after the other in one process.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator, Sequence
from dataclasses import asdict
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.dataset as ds
import pyarrow.parquet as pq

from dynamo_lake.errors import StateError
from dynamo_lake.lake.conversion import peak_memory_mb
from dynamo_lake.lake.keys import KeyAttribute
from dynamo_lake.lake.query import KEYED_SCHEMA, LakeDatabase, keyed_batches, time_literal
from dynamo_lake.lake.writer import CDC_SCHEMA
from dynamo_lake.reconciliation.compare import SAMPLES, Comparison, FindingsFile
from dynamo_lake.reconciliation.engines import DuckDBEngine
from dynamo_lake.reconciliation.run import compare_with_export
from dynamo_lake.reconciliation.state_basis import StateBasis, open_snapshot
from dynamo_lake.records import ReconciliationPlan
from dynamo_lake.state.merge import bucket_sql, deal_buckets
from dynamo_lake.storage import Location, S3Options, resolve

__all__ = [
    "MAX_COMPARE_TASKS",
    "PART_BYTES",
    "compare_buckets",
    "gather",
    "plan_split",
    "split_part",
    "split_uri",
    "without_parts",
]

#: About this many bytes of Parquet (the export's and the lake's) per split task.
PART_BYTES = 512 << 20
#: At most this many split tasks per table (larger parts past it).
MAX_PARTS = 256
#: At most this many compare tasks per table; more buckets share a task, one at a time.
MAX_COMPARE_TASKS = 128
SIDES = ("table", "lake")


def split_uri(work_uri: str) -> str:
    """Where a run's rows split into buckets live: beside its work location."""
    return f"{work_uri}-buckets"


def without_parts(split: dict[str, Any]) -> dict[str, Any]:
    """A split without its file lists: what each compare task and the check need (a
    table's parts can list thousands of files, which the tasks' arguments need not carry)."""
    return {key: value for key, value in split.items() if key != "parts"}


def plan_split(
    plan: ReconciliationPlan,
    basis: StateBasis,
    s3: S3Options | None,
    *,
    part_bytes: int = PART_BYTES,
    max_tasks: int = MAX_COMPARE_TASKS,
) -> dict[str, Any]:
    """What the split and compare tasks of one table do, as JSON: the snapshot, the bucket
    count, the parts (files of each side: ``table``, ``whole``, ``after``), each compare
    task's buckets, and what the check read (the report's ``cost``). An earlier attempt's
    split rows are removed first: this plan's parts may differ (new lake files since), and a
    part's files left from another plan would be read twice."""
    resolve(split_uri(plan.work_uri), s3).delete_tree()
    work_sizes = resolve(plan.work_uri, s3).file_sizes()
    lake_sizes = resolve(plan.lake_uri, s3).file_sizes()
    files = [("table", path, size) for path, size in sorted(work_sizes.items())]
    files += [("whole", f.path, lake_sizes.get(f.path, 0)) for f in basis.unmerged]
    files += [("after", f.path, lake_sizes.get(f.path, 0)) for f in basis.after]
    total = sum(size for _, _, size in files)
    target = max(part_bytes, -(-total // MAX_PARTS))
    parts: list[dict[str, list[str]]] = []
    current: dict[str, list[str]] = {"table": [], "whole": [], "after": []}
    current_bytes = 0
    for side, path, size in files:
        if current_bytes and current_bytes + size > target:
            parts.append(current)
            current, current_bytes = {"table": [], "whole": [], "after": []}, 0
        current[side].append(path)
        current_bytes += size
    parts.append(current)  # one part at least: a bucket with no rows still has its snapshot
    cost = basis.describe()
    cost["lake_bytes"] = basis.lake_bytes(lake_sizes)
    cost["export_bytes"] = sum(work_sizes.values())
    return {
        "table": plan.table,
        "snapshot_id": basis.snapshot.snapshot_id,
        "watermark_us": basis.snapshot.watermark_us,
        "buckets": basis.buckets,
        "parts": [{"part": index, **part} for index, part in enumerate(parts)],
        "tasks": deal_buckets(range(basis.buckets), max_tasks),
        "cost": cost,
    }


def split_part(
    plan: ReconciliationPlan,
    split: dict[str, Any],
    part: dict[str, Any],
    s3: S3Options | None,
) -> dict[str, int]:
    """Write one part's rows into the buckets' folders; the rows written, by side."""
    key_names = [name for name, _ in plan.keys]
    buckets = int(split["buckets"])
    target = resolve(split_uri(plan.work_uri), s3)
    sources = {
        "table": (resolve(plan.work_uri, s3), part["table"], "TRUE"),
        "whole": (resolve(plan.lake_uri, s3), part["whole"], "TRUE"),
        "after": (
            resolve(plan.lake_uri, s3),
            part["after"],
            f"time_stamp > {time_literal(int(split['watermark_us']))}",
        ),
    }
    written = {"table": 0, "lake": 0}
    with tempfile.TemporaryDirectory(prefix="reconcile-split-") as scratch:
        database = LakeDatabase(memory_limit_mb=plan.duckdb_memory_limit_mb)
        try:
            for source, (location, paths, where) in sources.items():
                if not paths:
                    continue
                dataset = ds.FileSystemDataset.from_paths(
                    list(paths),
                    schema=CDC_SCHEMA,
                    format=ds.ParquetFileFormat(),
                    filesystem=location.filesystem,
                )
                side = "table" if source == "table" else "lake"
                local = Path(scratch, source)
                # Streamed from the files into the buckets' files: no table in between.
                written[side] += database.copy_keyed(
                    keyed_batches(dataset, key_names),
                    f"SELECT *, coalesce({bucket_sql('k', buckets)}, 0) AS bucket "
                    f"FROM {LakeDatabase.INCOMING} WHERE {where}",
                    f"'{local}' (FORMAT parquet, PARTITION_BY (bucket), COMPRESSION zstd)",
                )
                _upload(local, target.child(side), f"{int(part['part']):05d}-{source}")
        finally:
            database.close()
    return written


def _upload(local: Path, side: Location, name: str) -> None:
    """``local/bucket=N/*.parquet`` -> ``side/bucket=NNNN/part-<name>-i.parquet``."""
    if not local.exists():
        return
    for folder in sorted(local.iterdir()):
        bucket = int(folder.name.split("=", 1)[1])
        for index, file in enumerate(sorted(folder.glob("*.parquet"))):
            side.child(f"bucket={bucket:04d}", f"part-{name}-{index}.parquet").write_file(file)


def _bucket_rows(split: Location, side: str, bucket: int) -> Iterator[pa.RecordBatch]:
    """One bucket's split rows of ``side`` in the keyed form."""
    folder = split.child(side, f"bucket={bucket:04d}")
    if not folder.exists():
        return
    dataset = ds.dataset(folder.path, filesystem=folder.filesystem, format="parquet")
    for batch in dataset.to_batches(
        columns=KEYED_SCHEMA.names, batch_size=65_536, batch_readahead=2, fragment_readahead=1
    ):
        yield pa.RecordBatch.from_arrays(
            [batch.column(index).cast(field.type) for index, field in enumerate(KEYED_SCHEMA)],
            schema=KEYED_SCHEMA,
        )


def compare_buckets(
    plan: ReconciliationPlan,
    split: dict[str, Any],
    task: int,
    *,
    s3: S3Options | None,
    catalog: Any = None,
    glue: Any = None,
) -> dict[str, Any]:
    """Compare the buckets of compare task ``task``, one at a time; what they found, as
    JSON (the findings in a file under the split folder)."""
    buckets = split["tasks"][task]
    basis = open_snapshot(
        plan.lake_uri,
        plan.glue_database,
        plan.glue_table,
        int(split["snapshot_id"]),
        s3=s3,
        catalog=catalog,
        glue_client=glue,
    )
    if basis.buckets != int(split["buckets"]):
        raise StateError(
            f"the current state of {plan.table} has {basis.buckets} buckets now, where this "
            f"run split its rows into {split['buckets']}: run the check again"
        )
    keys = [KeyAttribute(name, kind) for name, kind in plan.keys]
    folder = resolve(split_uri(plan.work_uri), s3)
    target = folder.child("findings", f"part-{task:05d}.parquet")
    found: list[Comparison] = []
    rows_read = 0
    with tempfile.TemporaryDirectory(prefix="reconcile-bucket-") as scratch:
        findings = FindingsFile(Path(scratch, "findings.parquet"))
        for bucket in buckets:
            engine = DuckDBEngine(
                None,
                key_names=[key.name for key in keys],
                memory_limit_mb=plan.duckdb_memory_limit_mb,
                basis=basis,
                changed_keys_only=plan.method == "changes",
                bucket=(bucket, basis.buckets),
                prepared=(
                    _bucket_rows(folder, "table", bucket),
                    _bucket_rows(folder, "lake", bucket),
                ),
            )
            try:
                found.append(compare_with_export(plan, engine, keys, findings))
            finally:
                engine.close()
            rows_read += basis.rows_read
        if findings.close():
            target.write_file(findings.path)
        elif target.exists():
            target.delete()  # an earlier attempt's
    return {
        "table": plan.table,
        "task": task,
        "of": len(split["tasks"]),
        "buckets": list(buckets),
        "comparison": asdict(merge_comparisons(plan.method, found)),
        "findings": target.uri if findings.rows else None,
        "rows_read": rows_read,
        "peak_memory_mb": round(peak_memory_mb(), 1),
    }


def merge_comparisons(method: str, parts: Sequence[Comparison]) -> Comparison:
    """Disjoint buckets' comparisons as one: counts added, samples the first in key order."""
    merged = Comparison(method=method, table_count=0, lake_count=0)
    for part in parts:
        merged.table_count = (merged.table_count or 0) + (part.table_count or 0)
        merged.lake_count = (merged.lake_count or 0) + (part.lake_count or 0)
        for kind, count in part.counts.items():
            merged.counts[kind] = merged.counts.get(kind, 0) + count
    for kind in {kind for part in parts for kind in part.samples}:
        chosen = sorted(
            (k, key)
            for part in parts
            for k, key in zip(
                part.sample_keys.get(kind, []), part.samples.get(kind, []), strict=True
            )
        )[:SAMPLES]
        merged.sample_keys[kind] = [k for k, _ in chosen]
        merged.samples[kind] = [key for _, key in chosen]
    return merged


def gather(
    plan: ReconciliationPlan,
    compared: Sequence[dict[str, Any]],
    findings: FindingsFile | None,
    s3: S3Options | None,
) -> Comparison:
    """The compare tasks' results as the table's comparison; their findings appended to
    ``findings`` (in task order; None: not read). Every task of the split must be there."""
    tasks = sorted(compared, key=lambda item: int(item["task"]))
    numbers = [int(item["task"]) for item in tasks]
    expected = int(tasks[0]["of"]) if tasks else 1
    if numbers != list(range(expected)):
        raise StateError(
            f"{plan.table}: bucket comparisons {numbers} are not the whole table: run the "
            "check again"
        )
    for item in tasks:
        if findings is not None and item.get("findings"):
            location = resolve(item["findings"], s3)
            with location.filesystem.open_input_file(location.path) as handle:
                findings.append(pq.ParquetFile(handle))
    return merge_comparisons(plan.method, [Comparison(**item["comparison"]) for item in tasks])
