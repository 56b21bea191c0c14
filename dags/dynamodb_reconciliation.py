"""
### DynamoDB reconciliation: the daily proof that the lake still matches the table

For every configured table (or the one chosen), compares the table with the lake's
**latest state as of a cut time T** and writes a report under the lake table's
`_reconciliation/` folder (`latest.json` is the newest). T is the run's data interval end
minus the table's settle margin (default 30 minutes, longer than Firehose's buffering), never
the wall clock: re-running a day checks the same moment. A key counts as drift only if the
lake differs from the table both at T − ε and at T + ε (default ε 1 s; stream times are
approximate).

**Methods** (per table in `tables.yaml`, `reconcile.method`; or chosen in the form):

* `count`: DescribeTable's ItemCount (AWS refreshes it about every 6 h). Free. Finds a count
  off by more than the changes in that time.
* `scan`: an exact parallel `Select=COUNT` scan. Costs read capacity for the whole table.
  Finds a count off by more than the changes during the scan.
* `export`: a full point-in-time export at T. About $0.10 per GB, no read capacity, 10+
  minutes. Finds every missing, extra and different key.
* `changes`: an incremental export of the 24 hours before T. Costs the day's changes (10 MB
  minimum). Finds every key changed that day, and phantom changes.

Daily `changes` plus a periodic `export` checks every key.

**Params**: `table` (`all tables`, or one); `method` (table default: each table's
`reconcile.method`); `as_of` (T as UTC text such as `2024-06-01T12:00:00Z`; empty: the
scheduled cut); `repair` (`on` writes corrective CDC rows for drift found by `export` or
`changes`, then checks again; table default: the table's `reconcile.repair`, off unless set).
Mapped tasks are named by table.

**What a run does**: plan (check the table, PITR, the times) → export (deferred) → convert
into a work location readers never see → scan (scan method) → settle (wait until the lake has
settled past the scan) → for a table with a current state: split (the export and the lake's
rows since the state's snapshot into its buckets) → compare (mapped, a few buckets per task,
each in bounded memory) → check (compare, or gather the buckets' findings; repair if asked;
report and a Parquet file of every finding; asset event) → judge (red on drift; an SNS
message when the table has `reconcile.sns_topic_arn`, also for a repaired or inconclusive
table) → clean_work (a teardown: removes the work location whatever happened).

**On drift**: read the report (`samples` names up to 20 keys of each kind). Missing keys and
phantoms usually mean the stream lost or invented records (Firehose errors in the
`processing-failed` prefix, a Lambda fault, a stream that was off): backfill the window with
`dynamodb_backfill` (incremental), or run this DAG with `method=export` and `repair` on, which
writes corrective CDC rows (its own group, idempotent) and checks again.

**When a task fails** (not drift: an error), its log ends with one line naming the problem
and the fix: a T outside the PITR window or in the future (choose another `as_of`), PITR off,
a missing table or bucket (fix `tables.yaml`), an export that ended FAILED (its message is in
the log). Clear the failed task to run it again: every step is idempotent.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import AssetAlias, Param, dag, get_current_context, task

from dynamo_lake.airflow.operators import DynamoDBExportOperator, LakeSettleOperator
from dynamo_lake.airflow.params import TIME_FORMAT_HINT, table_param, time_param
from dynamo_lake.config import RECONCILE_METHODS, load_tables
from dynamo_lake.errors import ConfigError

try:
    TABLES = load_tables()
except ConfigError as error:  # the import error shows this message, not our internals
    raise ConfigError(str(error)) from None

LAKE_TABLES = AssetAlias(name="dynamo_lake_tables")
# What "table default" and an empty T mean, table by table, for the form's help.
_DEFAULTS = ", ".join(f"{name}: {table.reconcile.method}" for name, table in TABLES.tables.items())
_MARGINS = ", ".join(
    f"{name}: {table.reconcile.settle_margin_minutes} min" for name, table in TABLES.tables.items()
)
EXPORT_POLL_SECONDS = float(os.environ.get("DYNAMO_LAKE_EXPORT_POLL_SECONDS", "30"))


def first_tick_ahead(schedule: str | None) -> Any:
    """The tables file's schedule, whose first run waits for its next tick. Airflow's
    default for a cron string runs the tick just past at once when it is less than a tenth
    of the interval old (before 02:24 UTC for @daily), so a deployment started just after
    midnight checked at once and one started later did not."""
    if schedule is None:
        return None
    from airflow.timetables.trigger import CronTriggerTimetable

    return CronTriggerTimetable(schedule, timezone="UTC", run_immediately=timedelta(0))


def _alert(context: Any) -> None:
    from dynamo_lake.airflow import reconciliation_tasks

    reconciliation_tasks.notify_drift(context)


@dag(
    dag_id="dynamodb_reconciliation",
    description="Prove daily that the S3 lake matches each DynamoDB table as of a cut time",
    doc_md=__doc__,
    schedule=first_tick_ahead(TABLES.reconciliation_schedule),
    catchup=False,
    max_active_runs=1,
    tags=["dynamodb", "data-lake", "reconciliation"],
    default_args={
        "owner": "data-platform",
        "retries": 2,
        "retry_delay": timedelta(minutes=2),
    },
    params={
        "table": table_param(TABLES.tables, allow_all=True),
        "method": Param(
            "table default",
            type="string",
            enum=["table default", *RECONCILE_METHODS],
            title="Method",
            description=f"table default: each table's reconcile.method ({_DEFAULTS}). count: "
            "free, approximate; scan: exact count, costs read capacity, and the run then "
            "waits the table's settle margin for the lake to catch up with the scan; export: "
            "every key, a full export; changes: every key changed in the 24 hours before T.",
        ),
        "as_of": time_param(
            "Cut time T",
            f"The moment to check ({TIME_FORMAT_HINT}). Empty: the run's data interval end "
            "minus the table's settle margin (a run triggered here: its trigger time minus "
            f"the margin; {_MARGINS}). A T you type must lie at least the margin before now.",
        ),
        "repair": Param(
            "table default",
            type="string",
            enum=["table default", "on", "off"],
            title="Repair",
            description="on: write corrective CDC rows for drift found by export or changes, "
            "then check again. table default: each table's reconcile.repair (off unless set).",
        ),
    },
)
def dynamodb_reconciliation() -> None:
    @task
    def plan(params: dict[str, Any], run_id: str, dag_run: Any = None) -> list[dict[str, Any]]:
        from dynamo_lake.airflow import reconciliation_tasks

        chosen = dict(params)
        chosen["repair"] = {"on": True, "off": False}.get(str(chosen.get("repair")))
        interval_end = dag_run.data_interval_end or dag_run.run_after
        return reconciliation_tasks.plan(chosen, run_id, interval_end)

    @task
    def exports_to_start(plans: list[dict[str, Any]]) -> list[dict[str, Any]]:
        from dynamo_lake.airflow import reconciliation_tasks

        return reconciliation_tasks.exports_to_start(plans)

    @task(trigger_rule="none_failed")
    def plan_conversion(plans: list[dict[str, Any]], exports: Any, run_id: str) -> Any:
        from dynamo_lake.airflow import reconciliation_tasks, tasks

        return reconciliation_tasks.plan_conversion(plans, tasks.materialize(exports), run_id)

    @task(max_active_tis_per_dagrun=8, map_index_template="{{ batch_name }}")
    def convert(batch: dict[str, Any]) -> dict[str, Any]:
        from dynamo_lake.airflow import tasks

        context = get_current_context()
        context["batch_name"] = tasks.batch_name(batch)  # type: ignore[typeddict-unknown-key]
        return tasks.convert(batch)

    @task(trigger_rule="none_failed")
    def publish_work(
        plans: list[dict[str, Any]], exports: Any, batches: Any, run_id: str
    ) -> dict[str, str]:
        from dynamo_lake.airflow import reconciliation_tasks, tasks

        return reconciliation_tasks.publish_work(
            plans, tasks.materialize(exports), list(batches or []), run_id
        )

    @task(trigger_rule="none_failed")
    def plan_split(plans: list[dict[str, Any]], published: Any) -> list[dict[str, Any]]:
        from dynamo_lake.airflow import reconciliation_tasks

        return reconciliation_tasks.plan_split(plans, published)

    @task
    def split_units(plans: list[dict[str, Any]], splits: list[dict[str, Any]]) -> Any:
        from dynamo_lake.airflow import reconciliation_tasks

        return reconciliation_tasks.bucket_units(plans, splits, "part")

    @task(max_active_tis_per_dagrun=8, map_index_template="{{ part_name }}")
    def split(
        plan_json: dict[str, Any], split: dict[str, Any], part: dict[str, Any]
    ) -> dict[str, Any]:
        from dynamo_lake.airflow import reconciliation_tasks

        context = get_current_context()
        context["part_name"] = f"{plan_json['table']} part {part['part']}"  # type: ignore[typeddict-unknown-key]
        return reconciliation_tasks.split(plan_json, split, part)

    @task(trigger_rule="none_failed")
    def compare_units(plans: list[dict[str, Any]], splits: list[dict[str, Any]]) -> Any:
        from dynamo_lake.airflow import reconciliation_tasks

        return reconciliation_tasks.bucket_units(plans, splits, "task")

    @task(max_active_tis_per_dagrun=8, map_index_template="{{ buckets_name }}")
    def compare(plan_json: dict[str, Any], split: dict[str, Any], task: int) -> dict[str, Any]:
        from dynamo_lake.airflow import reconciliation_tasks

        context = get_current_context()
        context["buckets_name"] = f"{plan_json['table']} buckets {split['tasks'][task]}"  # type: ignore[typeddict-unknown-key]
        return reconciliation_tasks.compare(plan_json, split, task)

    @task(map_index_template="{{ table_name }}")
    def scan(plan: dict[str, Any]) -> dict[str, Any]:
        from dynamo_lake.airflow import reconciliation_tasks

        get_current_context()["table_name"] = plan["table"]  # type: ignore[literal-required]
        return reconciliation_tasks.scan(plan)

    @task
    def settle_until(plans: list[dict[str, Any]], scans: Any) -> int | None:
        from dynamo_lake.airflow import reconciliation_tasks, tasks

        return reconciliation_tasks.settle_until(plans, tasks.materialize(scans))

    @task(trigger_rule="none_failed")
    def to_check(
        plans: list[dict[str, Any]], scans: Any, published: Any, splits: Any, compared: Any
    ) -> list[dict[str, Any]]:
        from dynamo_lake.airflow import reconciliation_tasks, tasks

        return reconciliation_tasks.check_inputs(
            plans,
            tasks.materialize(scans),
            published,
            splits,
            tasks.materialize(compared or []),
        )

    @task(outlets=[LAKE_TABLES], map_index_template="{{ table_name }}")
    def check(
        plan_json: dict[str, Any],
        scan_json: dict[str, Any] | None,
        published: dict[str, str],
        by_bucket: dict[str, Any] | None = None,
        outlet_events: Any = None,
    ) -> dict[str, Any]:
        from airflow.sdk import Asset

        from dynamo_lake.airflow import reconciliation_tasks

        get_current_context()["table_name"] = plan_json["table"]  # type: ignore[literal-required]
        checked = reconciliation_tasks.check(plan_json, published, scan_json, by_bucket)
        name, uri, extra = reconciliation_tasks.asset_event(checked)
        outlet_events[LAKE_TABLES].add(Asset(name=name, uri=uri), extra=extra)
        return checked

    @task(retries=1, retry_delay=timedelta(seconds=10))
    def clean_work(plans: list[dict[str, Any]] | None) -> None:
        from dynamo_lake.airflow import reconciliation_tasks

        reconciliation_tasks.clean_work(plans)

    @task(retries=0, on_failure_callback=_alert, map_index_template="{{ table_name }}")
    def judge(checked: dict[str, Any]) -> dict[str, Any]:
        from dynamo_lake.airflow import reconciliation_tasks

        get_current_context()["table_name"] = checked["report"]["table"]  # type: ignore[literal-required]
        return reconciliation_tasks.judge(checked)

    plans = plan()
    exports = DynamoDBExportOperator.partial(
        task_id="export",
        poll_interval=EXPORT_POLL_SECONDS,
        retries=3,
        map_index_template="{{ task.export_request['table'] }}",
    ).expand(export_request=exports_to_start(plans))
    batches = plan_conversion(plans, exports.output)
    converted = convert.expand(batch=batches)
    published = publish_work(plans, exports.output, batches)
    converted >> published
    scans = scan.expand(plan=plans)
    settle = LakeSettleOperator(
        task_id="settle", until=settle_until(plans, scans), trigger_rule="none_failed"
    )
    splits = plan_split(plans, published)
    parts = split.expand_kwargs(split_units(plans, splits))
    units = compare_units(plans, splits)
    parts >> units
    compared = compare.expand_kwargs(units)
    inputs = to_check(plans, scans, published, splits, compared)
    settle >> inputs
    checked = check.expand_kwargs(inputs)
    judge.expand(checked=checked)
    checked >> clean_work(plans).as_teardown()


dynamodb_reconciliation()
