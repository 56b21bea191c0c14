"""One table's reconciliation, start to report: compare, repair if asked, check again.

The table side is ready before this runs: a converted export in the plan's work location
(``export``, ``changes``), an exact scan (``scan``), or DescribeTable (``count``, asked
here). Every finding goes to a Parquet file beside the report (the repair reads its work
from there). A repair holds the table's repair lease from its comparison to its re-check,
so two runs never correct the same drift twice. The report is written under the lake's
``_reconciliation/`` whatever the outcome; an error is reported too, then raised.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dynamo_lake.cdc import datetime_to_micros, micros_to_datetime
from dynamo_lake.config import MAX_EPSILON_MS
from dynamo_lake.contract import RECONCILIATION
from dynamo_lake.errors import ConfigError, DynamoLakeError, ExportWindowError
from dynamo_lake.lake.conversion import run_attempt
from dynamo_lake.lake.keys import KeyAttribute
from dynamo_lake.lake.query import lake_dataset
from dynamo_lake.lake.writer import LakeTable, Stage
from dynamo_lake.reconciliation.compare import (
    HOUR_MICROS,
    Comparison,
    FindingsFile,
    ScanResult,
    compare_changes,
    compare_count,
    compare_export,
)
from dynamo_lake.reconciliation.engines import AthenaEngine, DuckDBEngine, Engine
from dynamo_lake.reconciliation.plan import as_of_text
from dynamo_lake.reconciliation.repair import RepairWriter, repair_group
from dynamo_lake.reconciliation.report import ReconciliationReport, Status, write_report
from dynamo_lake.records import ReconciliationPlan
from dynamo_lake.storage import Location, S3Options, acquire_lease, resolve

__all__ = [
    "WORK_TTL",
    "check_by_bucket",
    "cleanup_work",
    "compare_with_export",
    "open_engine",
    "plan_buckets",
    "reconcile_export",
    "reconcile_table",
    "sweep_work",
]

log = logging.getLogger(__name__)

#: Work folders (converted exports: copies of a table) older than this are removed at the
#: start of a run: what a killed run left behind.
WORK_TTL = timedelta(days=1)
_REPAIR_LEASE = "repair.lease"


def open_engine(
    plan: ReconciliationPlan,
    s3: S3Options | None,
    *,
    athena: Any = None,
    glue: Any = None,
    with_snapshot: bool = True,
    from_state: bool = True,
    catalog: Any = None,
) -> Engine:
    """The engine the table is configured for, over the lake (and the work location), to
    compare the whole table in one go.

    Athena compares an ``export`` or ``changes`` check with the lake's current state (the
    Iceberg table at a snapshot and the log since it, staged:
    :mod:`~dynamo_lake.reconciliation.state_basis`) when the table has one early enough and
    ``from_state``. DuckDB reads the whole log: its checks from the state run bucket by
    bucket instead (:func:`plan_buckets`), never as one comparison of the whole table."""
    key_names = [name for name, _ in plan.keys]
    basis = None
    if (
        plan.engine == "athena"
        and from_state
        and with_snapshot
        and plan.method in ("export", "changes")
    ):
        basis = _state_basis(plan, s3, catalog, glue)
    if plan.engine == "athena":
        state = events = None
        if basis is not None:
            from dynamo_lake.reconciliation.state_basis import stage_events
            from dynamo_lake.state.current import SUFFIX

            events = _events_uri(plan)
            resolve(events, s3).delete_tree()  # an earlier attempt's
            stage_events(basis, events, key_names, s3)
            state = (f"{plan.glue_table}{SUFFIX}", basis.snapshot.snapshot_id)
        return AthenaEngine(
            athena,
            glue,
            database=plan.glue_database,
            lake_table=plan.glue_table,
            key_names=key_names,
            snapshot_location=plan.work_uri if with_snapshot else None,
            workgroup=plan.athena_workgroup,
            output_location=str(plan.athena_output_location),
            state=state,
            events_location=events,
            basis=basis,
        )
    return DuckDBEngine(
        lake_dataset(plan.lake_uri, s3),
        lake_dataset(plan.work_uri, s3) if with_snapshot else None,
        key_names=key_names,
        memory_limit_mb=plan.duckdb_memory_limit_mb,
    )


def plan_buckets(
    plan: ReconciliationPlan,
    s3: S3Options | None,
    *,
    glue: Any = None,
    catalog: Any = None,
    max_tasks: int | None = None,
) -> dict[str, Any] | None:
    """How a check from the current state is split into buckets across workers
    (:func:`~dynamo_lake.reconciliation.buckets.plan_split`), or None when the check compares
    whole: not ``export``/``changes`` on DuckDB, or no state early enough (the log)."""
    if plan.engine != "duckdb" or plan.method not in ("export", "changes"):
        return None
    basis = _state_basis(plan, s3, catalog, glue)
    if basis is None:
        return None
    from dynamo_lake.reconciliation.buckets import MAX_COMPARE_TASKS, plan_split

    return plan_split(plan, basis, s3, max_tasks=max_tasks or MAX_COMPARE_TASKS)


def check_by_bucket(
    plan: ReconciliationPlan, s3: S3Options | None, glue: Any
) -> dict[str, Any] | None:
    """The bucket check run in this process (the DAG maps it across workers): every part
    split, then every bucket compared, one at a time, so that memory and spill stay one
    part's and one bucket's whatever the table's size; None when the check compares whole
    (see :func:`plan_buckets`)."""
    from dynamo_lake.reconciliation.buckets import compare_buckets, split_part, without_parts

    split = plan_buckets(plan, s3, glue=glue, max_tasks=1)
    if split is None:
        return None
    for part in split["parts"]:
        split_part(plan, split, part, s3)
    light = without_parts(split)
    return {"split": light, "compared": [compare_buckets(plan, light, 0, s3=s3, glue=glue)]}


def _state_basis(plan: ReconciliationPlan, s3: S3Options | None, catalog: Any, glue: Any) -> Any:
    """The current-state basis of the comparison, or None (no state, no snapshot early
    enough, or a state that cannot be read: the log is then read, which is always right)."""
    from dynamo_lake.reconciliation.state_basis import choose_basis, snapshot_bound

    bound = snapshot_bound(plan.method, plan.as_of, plan.epsilon_ms * 1000, plan.window_start)
    try:
        basis = choose_basis(
            plan.lake_uri,
            plan.glue_database,
            plan.glue_table,
            bound=bound,
            s3=s3,
            key_names=[name for name, _ in plan.keys],
            catalog=catalog,
            glue_client=glue,
        )
    except Exception as exc:  # any failure of the state: the log gives the same verdict
        log.warning(
            "%s: the current state cannot be read (%s: %s); comparing with the whole log",
            plan.table,
            type(exc).__name__,
            " ".join(str(exc).split())[:300],
        )
        return None
    if basis is None:
        log.info(
            "%s: no current-state snapshot at or before %s; comparing with the log",
            plan.table,
            _iso(bound),
        )
    else:
        log.info(
            "%s: comparing with the current state at %s and the log since",
            plan.table,
            basis.snapshot.watermark,
        )
    return basis


def _cost(plan: ReconciliationPlan, s3: S3Options | None, engine: Engine) -> dict[str, Any]:
    """What a key-by-key comparison read: its basis and bytes (the bytes are listed after
    the verdict: a listing that fails leaves them out, never the verdict)."""
    basis = getattr(engine, "basis", None)
    cost: dict[str, Any] = basis.describe() if basis is not None else {"basis": "log"}
    if plan.engine == "athena":
        cost["athena_bytes_scanned"] = getattr(engine, "bytes_scanned", None)
    try:
        sizes = resolve(plan.lake_uri, s3).file_sizes()
        cost["lake_bytes"] = basis.lake_bytes(sizes) if basis is not None else sum(sizes.values())
        cost["export_bytes"] = sum(resolve(plan.work_uri, s3).file_sizes().values())
    except (DynamoLakeError, OSError) as exc:
        log.warning("%s: could not add up the bytes read: %s", plan.table, exc)
        cost["note"] = f"bytes not known: {exc}"
    return cost


def _iso(micros: int) -> str:
    return f"{micros_to_datetime(micros):%Y-%m-%dT%H:%M:%S.%fZ}"


def compare_with_export(
    plan: ReconciliationPlan,
    engine: Engine,
    keys: Sequence[KeyAttribute],
    findings: FindingsFile | None = None,
) -> Comparison:
    """The ``export`` or ``changes`` comparison of ``plan`` over the rows ``engine`` holds
    (the whole table's, or some buckets')."""
    epsilon = plan.epsilon_ms * 1000
    if plan.method == "changes":
        assert plan.window_start is not None
        return compare_changes(engine, keys, plan.as_of, epsilon, plan.window_start, findings)
    return compare_export(engine, keys, plan.as_of, epsilon, findings)


def _compare(
    plan: ReconciliationPlan,
    engine: Engine,
    keys: list[KeyAttribute],
    *,
    dynamodb: Any,
    scan: ScanResult | None,
    now: datetime,
    findings: FindingsFile | None = None,
) -> Comparison:
    if plan.method in ("export", "changes"):
        return compare_with_export(plan, engine, keys, findings)
    if plan.method == "scan":
        assert scan is not None
        return compare_count(
            engine,
            keys,
            method="scan",
            table_count=scan.count,
            lake_moment=scan.ended,
            events_from=scan.started,
            events_to=scan.ended,
            slack=plan.count_slack,
            reasoning=(
                f"an exact scan from {_iso(scan.started)} to {_iso(scan.ended)} is not a "
                "snapshot: each change during it may have been counted or not"
            ),
        )
    table_count = int(dynamodb.describe_table(TableName=plan.dynamodb_table)["Table"]["ItemCount"])
    now_micros = datetime_to_micros(now)
    stale_from = now_micros - plan.count_staleness_hours * HOUR_MICROS
    start, end = min(plan.as_of, stale_from), max(plan.as_of, now_micros)
    return compare_count(
        engine,
        keys,
        method="count",
        table_count=table_count,
        lake_moment=plan.as_of,
        events_from=start,
        events_to=end,
        slack=plan.count_slack,
        reasoning=(
            f"DescribeTable.ItemCount is refreshed about every {plan.count_staleness_hours} h, "
            f"so it describes the table at some moment from {_iso(stale_from)} to "
            f"{_iso(now_micros)}; the lake is counted at T={_iso(plan.as_of)}; they may differ "
            f"by the changes from {_iso(start)} to {_iso(end)}"
        ),
    )


def _status(comparison: Comparison) -> Status:
    if comparison.drifted:
        return "drift"
    return "inconclusive" if comparison.unsure else "ok"


def _summary(comparison: Comparison) -> dict[str, Any]:
    by_method = comparison.method in ("export", "changes")
    return {
        "status": _status(comparison),
        "missing": comparison.counts.get("missing", 0) if by_method else None,
        "extra": comparison.counts.get("extra", 0) if by_method else None,
        "different": comparison.counts.get("different", 0) if by_method else None,
        "phantoms": comparison.counts.get("phantom", 0) if comparison.method == "changes" else None,
    }


@contextmanager
def _repair_lease(plan: ReconciliationPlan, s3: S3Options | None) -> Iterator[None]:
    """One repair per table at a time: from the comparison to the re-check. Another run
    repairing the same table raises :class:`~dynamo_lake.errors.LeaseHeldError` (a retry
    then compares again, after that repair)."""
    location = resolve(plan.lake_uri, s3).child(RECONCILIATION, _REPAIR_LEASE)
    lease = acquire_lease(location, owner=plan.run_id, ttl=3600.0)
    try:
        yield
    finally:
        try:
            lease.release()
        except DynamoLakeError as exc:  # the lease expires on its own
            log.warning("could not release %s: %s", location.uri, exc)


def _base(plan: ReconciliationPlan, export_arn: str | None) -> dict[str, Any]:
    return {
        "table": plan.table,
        "as_of": as_of_text(plan),
        "method": plan.method,
        "run_id": plan.run_id,
        "export_arn": export_arn,
        "engine": plan.engine,
        "window": (
            [_iso(plan.window_start), as_of_text(plan)] if plan.window_start is not None else None
        ),
    }


def reconcile_table(
    plan: ReconciliationPlan,
    *,
    s3: S3Options | None,
    dynamodb: Any = None,
    athena: Any = None,
    glue: Any = None,
    export_arn: str | None = None,
    scan: ScanResult | None = None,
    now: datetime | None = None,
    write: bool = True,
    from_state: bool = True,
    by_bucket: dict[str, Any] | None = None,
) -> ReconciliationReport:
    """Compare, repair if the plan says so, check again; write and return the report.

    ``from_state`` False compares with the whole log even when the table has a current
    state (the oracle the state-based comparison is tested against). ``by_bucket``: the
    comparison was made bucket by bucket (``{"split": ..., "compared": [...]}``, see
    :mod:`~dynamo_lake.reconciliation.buckets`); its results are gathered here."""
    started = time.monotonic()
    now = now or datetime.now(UTC)
    base = _base(plan, export_arn)
    by_key = plan.method in ("export", "changes")
    try:
        lease = _repair_lease(plan, s3) if plan.repair and by_key else contextlib.nullcontext()
        with tempfile.TemporaryDirectory(prefix="reconcile-findings-") as scratch, lease:
            report = _reconcile(
                plan,
                base,
                s3,
                Path(scratch),
                dynamodb,
                athena,
                glue,
                scan,
                now,
                started,
                write,
                from_state,
                by_bucket,
            )
    except DynamoLakeError as exc:
        report = ReconciliationReport(
            **base, status="error", message=str(exc), seconds=round(time.monotonic() - started, 3)
        )
        if write:
            write_report(plan.lake_uri, report, s3)
        raise
    if write:
        write_report(plan.lake_uri, report, s3)
    log.info("%s", report.table_text())
    return report


def _reconcile(
    plan: ReconciliationPlan,
    base: dict[str, Any],
    s3: S3Options | None,
    scratch: Path,
    dynamodb: Any,
    athena: Any,
    glue: Any,
    scan: ScanResult | None,
    now: datetime,
    started: float,
    write: bool,
    from_state: bool,
    by_bucket: dict[str, Any] | None,
) -> ReconciliationReport:
    keys = [KeyAttribute(name, kind) for name, kind in plan.keys]
    by_key = plan.method in ("export", "changes")
    findings = FindingsFile(scratch / "findings.parquet") if by_key else None
    cost: dict[str, Any] | None
    if by_bucket is None and findings is not None and from_state:
        by_bucket = check_by_bucket(plan, s3, glue)
    if by_bucket is not None and findings is not None:
        from dynamo_lake.reconciliation.buckets import gather

        compared = by_bucket["compared"]
        comparison = gather(plan, compared, findings, s3)
        cost = {
            **by_bucket["split"]["cost"],
            "rows_read": sum(int(item["rows_read"]) for item in compared),
            "buckets": by_bucket["split"]["buckets"],
            "bucket_tasks": len(compared),
            "bucket_task_peak_memory_mb": max(item["peak_memory_mb"] for item in compared),
        }
    else:
        engine = open_engine(
            plan,
            s3,
            athena=athena,
            glue=glue,
            with_snapshot=by_key,
            from_state=from_state,
        )
        try:
            comparison = _compare(
                plan, engine, keys, dynamodb=dynamodb, scan=scan, now=now, findings=findings
            )
            cost = _cost(plan, s3, engine) if by_key else None
        finally:
            engine.close()
    summary = _summary(comparison)
    found: dict[str, Any] | None = None
    if findings is not None:
        target = resolve(plan.lake_uri, s3).child(
            RECONCILIATION,
            ReconciliationReport(**base, status="ok").file_name(".findings.parquet"),
        )
        if findings.close():
            if write:
                target.write_file(findings.path)
            found = {"uri": target.uri if write else None, "rows": findings.rows}
        elif write and target.exists():
            target.delete()  # an earlier attempt's: this run's report says there are none
    repair: dict[str, Any] | None = None
    if plan.repair and findings is not None:
        repair = _repair(
            plan, s3, comparison, findings, keys, dynamodb, athena, glue, scan, now, from_state
        )
        if repair["rows"] and comparison.drifted:
            recheck = repair["recheck"] or {}
            summary["status"] = "repaired" if recheck.get("status") == "ok" else "drift"
    return ReconciliationReport(
        **base,
        **summary,
        ambiguous=comparison.unsure if plan.engine == "athena" else None,
        table_count=comparison.table_count,
        lake_count=comparison.lake_count,
        tolerance={
            "epsilon_ms": plan.epsilon_ms,
            "count_bound": comparison.bound,
            "reasoning": comparison.reasoning
            or (
                f"a key is drift only if the lake differs from the table both at T - "
                f"{plan.epsilon_ms} ms and at T + {plan.epsilon_ms} ms"
            ),
        },
        samples={
            "missing": comparison.samples.get("missing", []),
            "extra": comparison.samples.get("extra", []),
            "different": comparison.samples.get("different", []),
            "phantoms": comparison.samples.get("phantom", []),
            "ambiguous": comparison.samples.get("ambiguous", []),
        },
        findings=found,
        repair=repair,
        consumed_read_capacity=scan.consumed_read_capacity if scan else None,
        seconds=round(time.monotonic() - started, 3),
        cost=cost,
    )


def _repair(
    plan: ReconciliationPlan,
    s3: S3Options | None,
    comparison: Comparison,
    findings: FindingsFile,
    keys: list[KeyAttribute],
    dynamodb: Any,
    athena: Any,
    glue: Any,
    scan: ScanResult | None,
    now: datetime,
    from_state: bool,
) -> dict[str, Any]:
    """Corrective rows for the findings (read back from their file), published as their own
    group, then the comparison again."""
    lake = LakeTable(resolve(plan.lake_uri, s3))
    group = repair_group(lake, plan.run_id, plan.table, plan.as_of)
    writer = RepairWriter(lake, Stage(group, run_attempt(plan.run_id)), plan.method, plan.as_of)
    try:
        if comparison.drifted:
            for finding in findings:
                writer.add(finding)
        paths = writer.publish() if comparison.drifted else []
    except BaseException:
        writer.abort()
        raise
    if not paths:
        writer.abort()
    repair: dict[str, Any] = {
        "group": group if paths else None,
        "rows": writer.rows if paths else 0,
        "by_kind": writer.by_kind if paths else {},
        "files": len(paths),
        "recheck": None,
    }
    if paths:
        # The comparison again: bucket by bucket in this process where the first one could
        # be, whole otherwise.
        by_bucket = check_by_bucket(plan, s3, glue) if from_state else None
        if by_bucket is not None:
            from dynamo_lake.reconciliation.buckets import gather

            recheck = gather(plan, by_bucket["compared"], None, s3)
        else:
            again = open_engine(plan, s3, athena=athena, glue=glue, from_state=from_state)
            try:
                recheck = _compare(plan, again, keys, dynamodb=dynamodb, scan=scan, now=now)
            finally:
                again.close()
        repair["recheck"] = _summary(recheck)
    return repair


def _events_uri(plan: ReconciliationPlan) -> str:
    """Where an Athena comparison from the current state stages the lake rows since the
    snapshot: beside the work location, in the same ``work/`` folder."""
    return f"{plan.work_uri}-events"


def cleanup_work(plan: ReconciliationPlan, s3: S3Options | None) -> None:
    """Remove the run's work location (the converted export: a copy of the table), its
    staged events and its rows split into buckets, and the ``work/`` folder itself once it
    is empty, leaving no empty marker behind."""
    from dynamo_lake.reconciliation.buckets import split_uri

    resolve(plan.work_uri, s3).delete_tree()
    resolve(_events_uri(plan), s3).delete_tree()
    resolve(split_uri(plan.work_uri), s3).delete_tree()
    _drop_if_empty(resolve(plan.work_uri.rsplit("/", 1)[0], s3))


def _drop_if_empty(work: Location) -> None:
    """Remove the ``work/`` folder once nothing is in it. On S3, deleting a folder makes its
    parent exist with an empty marker object, which would stay there forever."""
    if work.exists() and not work.list_files() and not work.list_folders():
        work.delete_tree()


def sweep_work(
    lake_uri: str, s3: S3Options | None, now: datetime, keep: str | None = None
) -> list[str]:
    """Remove work folders under the lake's ``_reconciliation/work/`` whose newest file is
    older than :data:`WORK_TTL` (what killed runs left: copies of the table); ``keep`` is
    the current run's. Returns the folders removed."""
    work = resolve(lake_uri, s3).child(RECONCILIATION, "work")
    removed = []
    for folder in work.list_folders():
        if keep is not None and folder.name == keep:
            continue
        newest = _newest_write(folder)
        if newest is None or now - newest > WORK_TTL:
            folder.delete_tree()
            removed.append(folder.uri)
            log.info("removed %s, a work folder left by an earlier run", folder.uri)
    if removed:
        _drop_if_empty(work)
    return removed


def _newest_write(folder: Location) -> datetime | None:
    from pyarrow import fs as pafs

    selector = pafs.FileSelector(folder.path, allow_not_found=True, recursive=True)
    moments = [
        info.mtime
        for info in folder.filesystem.get_file_info(selector)
        if info.type == pafs.FileType.File and info.mtime is not None
    ]
    if not moments:
        return None
    newest: datetime = max(moments)
    return newest if newest.tzinfo else newest.replace(tzinfo=UTC)


# --- outside Airflow: the dynamo-lake command ------------------------------------------


def _key_attributes(manifest: Any, keys: list[str]) -> tuple[tuple[str, str], ...]:
    """The key attributes' DynamoDB types, as the table's own items give them (``name:TYPE``
    in ``keys`` overrides)."""
    from dynamo_lake.exports.manifest import first_item

    given = {}
    names = []
    for text in keys:
        name, _, kind = text.partition(":")
        if kind and kind not in ("S", "N", "B"):
            raise ConfigError(f"--keys {text!r}: a key attribute's type is S, N or B")
        names.append(name)
        if kind:
            given[name] = kind
    item = first_item(manifest) if len(given) < len(names) else None
    types = []
    for name in names:
        if name in given:
            types.append((name, given[name]))
            continue
        if item is None:
            log.warning("the export holds no item: key %r is taken as type S", name)
            types.append((name, "S"))
            continue
        typed = item.get(name)
        tag = next(iter(typed), None) if isinstance(typed, dict) and len(typed) == 1 else None
        if tag not in ("S", "N", "B"):
            present = ", ".join(repr(attribute) for attribute in sorted(item)[:10])
            raise ConfigError(
                f"--keys names {name!r}, which the export's items do not have as a key "
                f"attribute (S, N or B); an item has {present}: give the table's key "
                "attributes, partition key first"
            )
        types.append((name, str(tag)))
    return tuple(types)


def reconcile_export(
    *,
    lake: str,
    export: str,
    keys: list[str],
    as_of: str | None = None,
    epsilon_ms: int = 1000,
    repair: bool = False,
    s3: S3Options | None = None,
    now: datetime | None = None,
    settle_margin_minutes: int = 30,
) -> ReconciliationReport:
    """Compare an export (its manifest-summary.json) with a lake table, outside Airflow.

    A full export is compared key by key (``export``); an incremental one as the day's
    changes (``changes``). T is the export's time (a full export's ``exportTime``, an
    incremental one's window end): an export shows the table at that moment only, so an
    ``as_of`` that differs is refused. T must also lie ``settle_margin_minutes`` before
    ``now``: the stream's latest changes may not be in the lake yet. The export is converted
    into a work location beside the lake (a temporary folder for a local lake), removed
    afterwards. The report is returned, not written to the lake.
    """
    from dynamo_lake.exports.manifest import read_manifest
    from dynamo_lake.exports.planning import parse_time, safe_name
    from dynamo_lake.lake.conversion import convert_export, new_attempt

    if not 0 <= epsilon_ms <= MAX_EPSILON_MS:
        raise ConfigError(
            f"--epsilon-ms {epsilon_ms} is out of range: it must be between 0 and "
            f"{MAX_EPSILON_MS} ms (a larger tolerance around T hides real drift)"
        )
    manifest = read_manifest(export, s3)
    summary = manifest.summary
    moment = summary.export_to_time if summary.is_incremental else summary.export_time
    if moment is None:
        raise ExportWindowError(f"{export}: the export names no time to compare at")
    asked = parse_time(as_of, "--as-of") if as_of else None
    if asked is not None and datetime_to_micros(asked) != moment:
        if summary.is_incremental:
            what = "window's end (exportToTime)"
            why = "an incremental export holds each changed key's state at its window's end"
        else:
            what, why = "exportTime", "a full export shows the table at that moment only"
        raise ExportWindowError(
            f"--as-of {_iso(datetime_to_micros(asked))} is not the export's {what} "
            f"{_iso(moment)}: {why}; leave --as-of out, or export the table at the moment "
            "you want to check"
        )
    now = now or datetime.now(UTC)
    settled = datetime_to_micros(now) - settle_margin_minutes * 60_000_000
    if moment > datetime_to_micros(now):
        raise ExportWindowError(
            f"T {_iso(moment)} is in the future (now {_iso(datetime_to_micros(now))}): the "
            "export's time is wrong, or this machine's clock is"
        )
    if moment > settled:
        raise ExportWindowError(
            f"T {_iso(moment)} is less than the settle margin of {settle_margin_minutes} "
            f"minutes before now ({_iso(datetime_to_micros(now))}): the stream's latest "
            "changes may not have reached the lake yet, so keys would look missing; compare "
            "an export at least that old, or after that time (--settle-margin-minutes)"
        )
    if summary.is_incremental and summary.export_from_time is not None:
        span = moment - summary.export_from_time
        if span <= 2 * epsilon_ms * 1000:
            raise ExportWindowError(
                f"the export's window [{_iso(summary.export_from_time)}, {_iso(moment)}) is "
                f"no longer than 2 x --epsilon-ms {epsilon_ms}: phantoms are judged in "
                "[start + ε, end - ε), which would be empty; choose a smaller --epsilon-ms, or "
                "export a longer window (AWS's shortest is 15 minutes)"
            )
    types = _key_attributes(manifest, keys)
    attempt = new_attempt()
    target = resolve(lake, s3)
    scratch = None
    if target.is_s3:
        work_uri = f"{target.uri}/_reconciliation/work/{safe_name(attempt)}"
    else:
        scratch = tempfile.TemporaryDirectory(prefix="reconcile-work-")
        work_uri = scratch.name
    plan = ReconciliationPlan(
        table=summary.table_arn.rsplit("/", 1)[-1] if summary.table_arn else "table",
        dynamodb_table=summary.table_arn.rsplit("/", 1)[-1] if summary.table_arn else "",
        table_arn=summary.table_arn or "",
        lake_uri=target.uri,
        work_uri=work_uri,
        method="changes" if summary.is_incremental else "export",
        as_of=moment,
        epsilon_ms=epsilon_ms,
        repair=repair,
        engine="duckdb",
        keys=types,
        run_id=attempt,
        aws_conn_id="",
        region=None,
        glue_database="",
        glue_table="",
        window_start=summary.export_from_time if summary.is_incremental else None,
    )
    try:
        convert_export(export, work_uri, s3=s3, force=True, attempt=attempt)
        return reconcile_table(plan, s3=s3, export_arn=summary.export_arn, write=False)
    finally:
        if scratch is not None:
            scratch.cleanup()
        else:
            cleanup_work(plan, s3)
