"""The Airflow UI as a data engineer uses it: log in, trigger from the forms, watch Lake health.

Runs against ``make airflow``'s stack (api-server, scheduler, dag-processor, triggerer, the
local AWS stack, the stream relay) with a real Chromium in a non-UTC time zone, so a time
typed in a form must reach the run as typed. Screenshots: ``var/test-artifacts/ui/``.
"""

from __future__ import annotations

import os
import re
import shutil
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import unquote

import orjson
import pyarrow as pa
import pytest
from airflow_local import PASSWORD, USER, LocalAirflow, free_port
from ui_stack import ARTIFACTS, RunningAirflow

from dynamo_lake.backfill import latest_backfill_record
from dynamo_lake.cdc import CdcRow
from dynamo_lake.config import load_tables
from dynamo_lake.lake.query import lake_dataset
from dynamo_lake.reconciliation.report import latest_report
from dynamo_lake.storage import resolve
from local_aws.fault_proxy import FaultRule

pytestmark = [pytest.mark.slow, pytest.mark.browser]

# The fixtures live here, not in a conftest.py: a second module named ``conftest`` would
# shadow the one other tests import helpers from.
CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def local_airflow() -> Iterator[RunningAirflow]:
    home = ARTIFACTS / "airflow"
    shutil.rmtree(home, ignore_errors=True)  # a fresh metadata DB: the AWS stack is new too
    airflow = LocalAirflow(
        home, port=free_port(), items=200, churn_every=20.0, export_delay=2.0, fault_proxy=True
    )
    airflow.start()
    try:
        yield RunningAirflow(airflow)
    finally:
        groups = [process.pid for process in airflow.processes.values()]
        airflow.stop()
    left = [group for group in groups if _group_alive(group)]
    assert not left, f"processes left running in the process groups {left} after stop()"


def _group_alive(group: int) -> bool:
    try:
        os.killpg(group, 0)
    except ProcessLookupError:
        return False
    return True


@pytest.fixture(scope="session")
def browser() -> Iterator[Any]:
    if not CHROMIUM.exists():
        pytest.fail(
            f"{CHROMIUM} is missing: `make test` installs Debian's chromium package "
            "(apt-get install chromium)"
        )
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = playwright.chromium.launch(
            executable_path=str(CHROMIUM),
            args=[
                "--no-sandbox",
                "--disable-gpu",
                "--disable-background-networking",
                "--disable-component-update",
                "--no-first-run",
            ],
        )
        try:
            yield chromium
        finally:
            chromium.close()


TIME_ZONE = "America/New_York"  # the picker's zone would shift typed times by 5 hours here
LAKE_URI = load_tables().table("orders").lake_uri


def typed(moment: datetime) -> str:
    """A moment as a person types it: UTC text, whole seconds."""
    return f"{moment:%Y-%m-%dT%H:%M:%S}Z"


def moment(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


def same_moment(left: str, right: str) -> bool:
    return moment(left) == moment(right)


def shot(page: Any, name: str) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(ARTIFACTS / f"{name}.png"), full_page=True)


def log_in(page: Any, url: str) -> None:
    page.goto(url)
    page.wait_for_selector("input[name=username]", timeout=90_000)  # blank, then redirected
    page.fill("input[name=username]", USER)
    page.fill("input[name=password]", PASSWORD)
    page.keyboard.press("Enter")


def trigger_from_form(page: Any, stack: RunningAirflow, dag_id: str, fill: Any) -> str:
    """Open the DAG's trigger form, let ``fill`` fill it, trigger; return the run's id."""
    page.goto(f"{stack.url}/dags/{dag_id}")
    page.get_by_role("button", name="Trigger").first.click()
    dialog = page.get_by_role("dialog")
    dialog.get_by_text("Run Parameters").wait_for()
    fill(page, dialog)
    shot(page, f"{dag_id}-form")
    dialog.get_by_role("button", name="Trigger").click()
    page.wait_for_url(re.compile(rf"/dags/{dag_id}/runs/.+"), timeout=30_000)
    return unquote(page.url.rsplit("/runs/", 1)[1])


def choose(page: Any, dialog: Any, field: str, option: str) -> None:
    """Pick ``option`` in the form's select for param ``field``, as a person would."""
    hidden = dialog.locator(f"input[type=hidden][name=element_{field}]")
    hidden.locator("xpath=..").get_by_role("combobox").click()
    page.get_by_role("option", name=option, exact=True).click()
    assert hidden.input_value() == option


def lake_health_row(page: Any, stack: RunningAirflow, name: str) -> Any:
    """Lake health inside the UI (an external view in an iframe): the table's row."""
    page.goto(f"{stack.url}/plugin/lakes")
    frame = page.frame_locator("iframe")
    row = frame.locator(f'tr[data-table="{name}"]')
    row.wait_for(timeout=60_000)
    return frame, row


def test_a_request_without_the_airflow_login_is_refused(local_airflow: RunningAirflow) -> None:
    for path in (
        "/lake-health/",
        "/lake-health/api/tables",
        "/lake-health/docs",
        "/lake-health/redoc",
        "/lake-health/openapi.json",
        "/lake-health/no/such/path",
    ):
        status, _ = local_airflow.get(path)
        assert status in (401, 403), f"{path} answered {status} to an anonymous request"
        status, _ = local_airflow.get(path, token="not-a-token")
        assert status in (401, 403), f"{path} answered {status} to a forged token"
    status, body = local_airflow.get("/lake-health/api/tables", token=local_airflow.token)
    assert status == 200
    assert [table["table"] for table in orjson.loads(body)] == ["orders"]


def untouched(page: Any, dialog: Any) -> None:
    """A form left as it opens: its defaults are what runs."""


def test_the_first_hour_untouched_forms_then_lake_health_never_green_over_red(
    local_airflow: RunningAirflow, browser: Any
) -> None:
    """A newcomer's first minutes: each DAG triggered with its untouched form succeeds within
    five minutes of `make airflow` being up; a reconciliation at a T typed in a New York
    browser runs at that T; a count shows its bound; a run that fails before it writes a
    report turns Lake health amber with a link to it, and its log ends with the problem and
    the fix in one line; the page in both themes."""
    stack = local_airflow
    assert stack.airflow.stack is not None
    context = browser.new_context(timezone_id=TIME_ZONE, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        # 1. Log in; Lake health (the nav's "Lakes") first shows its empty states.
        log_in(page, f"{stack.url}/")
        page.get_by_role("link", name="Lakes").first.wait_for(timeout=60_000)
        frame, row = lake_health_row(page, stack, "orders")
        assert "never backfilled" in row.inner_text()
        assert "never reconciled" in row.inner_text()
        shot(page, "lake-health-empty")

        # 2. The backfill's form, untouched: a full export at the latest restorable moment.
        run_id = trigger_from_form(page, stack, "dynamodb_backfill", untouched)
        run = stack.wait_for_run("dynamodb_backfill", run_id)
        shot(page, "backfill-run")
        assert run["state"] == "success", f"backfill run {run_id} ended {run['state']}"
        record = latest_backfill_record(LAKE_URI, stack.s3())
        assert record is not None and record.run_id == run_id and record.mode == "full"
        names = {
            (ti["task_id"], ti.get("rendered_map_index"))
            for ti in stack.task_instances("dynamodb_backfill", run_id)
        }
        export_names = [name for task, name in names if task == "export"]
        assert export_names and all(str(name).startswith("orders 20") for name in export_names)
        convert_names = [name for task, name in names if task == "convert"]
        assert convert_names and all(".json.gz" in str(name) for name in convert_names)

        # 3. The reconciliation's form, untouched: the table's default method (changes, the
        # day before T) at T = now minus the local settle margin, against two days of history.
        run_id = trigger_from_form(page, stack, "dynamodb_reconciliation", untouched)
        run = stack.wait_for_run("dynamodb_reconciliation", run_id)
        assert run["state"] == "success", f"reconciliation run {run_id} ended {run['state']}"
        report = latest_report(LAKE_URI, stack.s3())
        assert report is not None and report.run_id == run_id
        assert (report.method, report.status) == ("changes", "ok"), report.table_text()
        checks = [
            ti
            for ti in stack.task_instances("dynamodb_reconciliation", run_id)
            if ti["task_id"] == "check"
        ]
        assert [ti.get("rendered_map_index") for ti in checks] == ["orders"]
        up_for = time.monotonic() - stack.airflow.started_at
        assert up_for < 300, f"the untouched forms took {up_for:.0f} s after start (goal: 5 min)"
        untouched_as_of = report.as_of

        # 4. An export at a T typed as UTC text in a New York browser: it runs at that T. The T
        # is the settle margin before now, as the form tells a person, so it is later than the
        # untouched run's and becomes the table's newest verdict (the page shows the newest T).
        margin = timedelta(minutes=load_tables().table("orders").reconcile.settle_margin_minutes)
        as_of = typed(datetime.now(UTC) - margin - timedelta(seconds=5))
        assert moment(as_of) > moment(untouched_as_of), (
            f"the untouched run's T {untouched_as_of} is not before {as_of}"
        )

        def reconciliation_form(page: Any, dialog: Any) -> None:
            choose(page, dialog, "method", "export")
            dialog.locator("input[name=element_as_of]").fill(as_of)

        run_id = trigger_from_form(page, stack, "dynamodb_reconciliation", reconciliation_form)
        run = stack.wait_for_run("dynamodb_reconciliation", run_id)
        shot(page, "reconciliation-run")
        assert run["conf"]["as_of"] == as_of
        assert run["state"] == "success", f"reconciliation run {run_id} ended {run['state']}"
        report = latest_report(LAKE_URI, stack.s3())
        assert report is not None and report.run_id == run_id
        assert same_moment(report.as_of, as_of)
        assert (report.method, report.status) == ("export", "ok"), report.table_text()

        # 5. Lake health shows the figures of the report and the record.
        frame, row = lake_health_row(page, stack, "orders")
        text = row.inner_text()
        shot(page, "lake-health")
        assert "OK" in text and "verdict " in text
        checked = datetime.fromisoformat(report.as_of.replace("Z", "+00:00"))
        assert f"as of {checked:%Y-%m-%d %H:%M:%S} UTC" in text
        assert f"export: table {report.table_count:,}, lake {report.lake_count:,}" in text
        assert f"missing {report.missing} extra {report.extra} different {report.different}" in (
            text
        )
        assert f"{record.rows:,} rows in {record.files} Parquet files" in text
        export_time = datetime.fromisoformat(str(record.exports[0].export_time))
        assert f"{export_time.astimezone(UTC):%Y-%m-%d %H:%M:%S} UTC" in text
        links = row.locator("a")
        hrefs = [links.nth(index).get_attribute("href") for index in range(links.count())]
        assert any("/dags/dynamodb_backfill/runs/" in str(href) for href in hrefs)
        assert any("/dags/dynamodb_reconciliation/runs/" in str(href) for href in hrefs)
        assert frame.locator("svg.chart circle.ok").count() == 2
        assert row.locator(".glance.ok").count() == 1
        newest = row.locator("td").nth(3).inner_text().split("\n", 1)[0]
        newest_moment = datetime.strptime(newest, "%Y-%m-%d %H:%M:%S UTC").replace(tzinfo=UTC)
        assert newest_moment <= datetime.now(UTC)
        assert page.url.endswith("/plugin/lakes/lake-health/"), page.url

        # 6. A count: the page says its bound and what the bound was made of.
        def count_form(page: Any, dialog: Any) -> None:
            choose(page, dialog, "method", "count")

        run_id = trigger_from_form(page, stack, "dynamodb_reconciliation", count_form)
        stack.wait_for_run("dynamodb_reconciliation", run_id)
        report = latest_report(LAKE_URI, stack.s3())
        assert report is not None and report.method == "count"
        frame, row = lake_health_row(page, stack, "orders")
        text = row.inner_text()
        assert f"within a bound of {report.tolerance['count_bound']:,}" in text
        assert "distinct stream events" in text

        # 7. A run that fails before it writes a report (a T in the future): the page turns
        # amber (never green over red) and links the failed run; the failed task's log ends
        # with one line naming the problem and the fix.
        future = typed(datetime.now(UTC) + timedelta(days=1))

        def future_form(page: Any, dialog: Any) -> None:
            dialog.locator("input[name=element_as_of]").fill(future)

        failed_id = trigger_from_form(page, stack, "dynamodb_reconciliation", future_form)
        assert stack.wait_for_run("dynamodb_reconciliation", failed_id)["state"] == "failed"
        frame, row = lake_health_row(page, stack, "orders")
        row.locator(".glance.stale").wait_for(timeout=30_000)
        text = row.inner_text()
        assert "a later run of the reconciliation failed" in text and failed_id in text
        hrefs = [
            row.locator("a").nth(index).get_attribute("href")
            for index in range(row.locator("a").count())
        ]
        assert any(f"/runs/{failed_id}" in unquote(str(href)) for href in hrefs)
        shot(page, "lake-health-amber")
        last = last_log_line(stack, "dynamodb_reconciliation", failed_id, "plan")
        assert "is in the future" in last and "Traceback" not in last, last

        # 8. The page follows the UI's theme: switched to dark in the user menu, it is dark too.
        frame, row = lake_health_row(page, stack, "orders")
        assert frame.locator("html.dark").count() == 0
        shot(page, "lake-health-light")
        page.get_by_role("button", name="User").click()
        page.get_by_role("menuitem", name="Appearance").click()
        page.get_by_role("menuitemradio", name="Dark Mode").click()
        frame.locator("html.dark").wait_for(state="attached", timeout=5_000)
        page.keyboard.press("Escape")  # close the user menu before the picture
        page.get_by_role("menuitemradio", name="Dark Mode").wait_for(state="hidden")
        shot(page, "lake-health-dark")

        # The asset events tell the story: the backfill's and the reconciliation's figures.
        events = stack.api("assets/events?order_by=-timestamp&limit=10")["asset_events"]
        kinds: dict[str, Any] = {}  # each kind's newest event (the list is newest first)
        for event in events:
            kinds.setdefault(event["extra"].get("kind"), event["extra"])
        assert kinds["backfill"]["rows"] == record.rows
        assert kinds["reconciliation"]["method"] == "count"
    finally:
        context.close()


def last_log_line(stack: RunningAirflow, dag_id: str, run_id: str, task_id: str) -> str:
    """The last line the task itself wrote to its log (what the UI's log view shows last),
    read through the REST API the UI uses."""
    from urllib.parse import quote

    path = (
        f"dags/{dag_id}/dagRuns/{quote(run_id, safe='')}/taskInstances/{task_id}/logs/1"
        "?full_content=true"
    )
    content = stack.api(path)["content"]
    events = [
        str(line.get("event", "")) if isinstance(line, dict) else str(line) for line in content
    ]
    ours = [event for event in events if event and not event.startswith("::")]
    return ours[-1] if ours else ""


def test_a_triggerer_killed_while_an_export_runs_hands_the_wait_to_its_successor(
    local_airflow: RunningAirflow,
) -> None:
    """SIGKILL the triggerer while the export task is deferred; a new triggerer takes the
    trigger over (once the dead one's heartbeat is stale) and the run completes."""
    stack = local_airflow
    assert stack.airflow.stack is not None
    emulator = stack.airflow.stack
    emulator.update_settings(export_delay_seconds=45.0)  # long enough to kill it mid-wait
    try:
        export_time = typed(emulator.now() - timedelta(seconds=5))
        run_id = stack.post(
            "dags/dynamodb_backfill/dagRuns",
            {"logical_date": None, "conf": {"table": "orders", "export_time": export_time}},
        )["dag_run_id"]
        # Each triggerer that runs the trigger writes its own ``<attempt>.log.trigger.<job>.log``.
        logs = stack.airflow.home / "logs" / "dag_id=dynamodb_backfill" / f"run_id={run_id}"

        def polling_triggerers() -> set[str]:
            return {
                path.name
                for path in logs.glob("task_id=export/map_index=0/*.trigger.*.log")
                if "is IN_PROGRESS" in path.read_text(errors="replace")
            }

        deadline = time.monotonic() + 120
        while not polling_triggerers():
            assert time.monotonic() < deadline, "no triggerer ever polled the export"
            time.sleep(1)
        first = polling_triggerers()
        stack.airflow.restart("triggerer")
        run = stack.wait_for_run("dynamodb_backfill", run_id, timeout=420)
        assert run["state"] == "success", f"backfill run {run_id} ended {run['state']}"
        assert polling_triggerers() - first, "the new triggerer never took the wait over"
    finally:
        emulator.update_settings(export_delay_seconds=2.0)
    record = latest_backfill_record(LAKE_URI, stack.s3())
    assert record is not None and record.run_id == run_id
    assert same_moment(str(record.exports[0].export_time), export_time)
    assert record.rows == record.exports[0].item_count > 0


# --- task processes SIGKILLed at chosen moments, then retried by Airflow ------------------
# The fault proxy holds the request that marks the moment (a staged Parquet write; the
# backfill record's write), so the process is known to be exactly there when it is killed.
# Airflow's LocalExecutor sees the task die and retries it after the DAG's retry_delay.


def _running_task_pid(
    stack: RunningAirflow, run_id: str, task_id: str, dag_id: str = "dynamodb_backfill"
) -> int:
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        for ti in stack.task_instances(dag_id, run_id):
            if ti["task_id"] == task_id and ti["state"] == "running" and ti["pid"]:
                return int(ti["pid"])
        time.sleep(1)
    raise AssertionError(f"no running {task_id} task with a pid in run {run_id}")


def _descends_from(pid: int, ancestor: int) -> bool:
    """Whether ``ancestor`` is ``pid``'s parent, grandparent, ... (read from /proc)."""
    while pid > 1:
        stat = Path(f"/proc/{pid}/stat").read_text()
        pid = int(stat.rpartition(")")[2].split()[1])  # the field after the state: ppid
        if pid == ancestor:
            return True
    return False


def _kill_while_held(stack: RunningAirflow, task_id: str, hold: FaultRule) -> str:
    """Trigger a backfill of `orders`; when the proxy holds a request of `task_id`, SIGKILL
    that task's process; return the run id."""
    proxy, emulator = stack.airflow.proxy, stack.airflow.stack
    assert proxy is not None and emulator is not None
    proxy.hold(hold)
    try:
        export_time = typed(emulator.now() - timedelta(seconds=5))
        run_id = stack.trigger("dynamodb_backfill", {"table": "orders", "export_time": export_time})
        deadline = time.monotonic() + 180
        while proxy.counts["held"] == 0:
            assert time.monotonic() < deadline, f"no request of {task_id} was ever held"
            time.sleep(0.5)
        pid = _running_task_pid(stack, run_id, task_id)
        scheduler = stack.airflow.processes["scheduler"].pid
        assert _descends_from(pid, scheduler), f"{pid} is not a task process of the scheduler"
        os.kill(pid, signal.SIGKILL)
    finally:
        proxy.release()  # the held request dies with its process: dropped unanswered
    return run_id


def _rows_of(stack: RunningAirflow, export_time: str) -> list[str]:
    """The uuids of the lake's rows stamped with a full export's time."""
    moment = datetime.fromisoformat(export_time.replace("Z", "+00:00"))
    micros = int(moment.timestamp()) * 1_000_000 + moment.microsecond
    table = lake_dataset(LAKE_URI, stack.s3()).to_table(columns=["uuid", "time_stamp"])
    stamps = table.column("time_stamp").cast(pa.int64()).to_pylist()
    return [u for u, t in zip(table.column("uuid").to_pylist(), stamps, strict=True) if t == micros]


def _assert_backfilled_once(stack: RunningAirflow, run_id: str) -> None:
    record = latest_backfill_record(LAKE_URI, stack.s3())
    assert record is not None and record.run_id == run_id
    (export,) = record.exports
    assert export.export_time is not None
    rows = _rows_of(stack, export.export_time)
    assert len(rows) == record.rows == export.item_count > 0
    assert len(set(rows)) == len(rows), "a row is in the lake twice"
    staging = resolve(LAKE_URI, stack.s3()).child("_staging")
    assert not staging.exists() or staging.list_files() == [], "files left in _staging/"


def _tries(
    stack: RunningAirflow, run_id: str, task_id: str, dag_id: str = "dynamodb_backfill"
) -> list[int]:
    return [
        ti["try_number"] for ti in stack.task_instances(dag_id, run_id) if ti["task_id"] == task_id
    ]


def test_a_conversion_task_killed_mid_write_is_retried_and_the_lake_holds_every_item_once(
    local_airflow: RunningAirflow,
) -> None:
    stack = local_airflow
    staged_write = FaultRule(
        rate=1.0, methods=frozenset({"PUT", "POST"}), path_contains="/_staging/"
    )
    run_id = _kill_while_held(stack, "convert", staged_write)

    run = stack.wait_for_run("dynamodb_backfill", run_id, timeout=420)

    assert run["state"] == "success", f"backfill run {run_id} ended {run['state']}"
    assert max(_tries(stack, run_id, "convert")) >= 2, "the killed conversion was not retried"
    _assert_backfilled_once(stack, run_id)


def test_a_commit_killed_between_publishing_and_its_record_is_retried_to_one_whole_export(
    local_airflow: RunningAirflow,
) -> None:
    stack = local_airflow
    record_write = FaultRule(rate=1.0, methods=frozenset({"PUT"}), path_contains="/_backfills/")
    run_id = _kill_while_held(stack, "commit", record_write)
    # Killed after publishing: readers see the export whole, and no record claims it yet.
    record = latest_backfill_record(LAKE_URI, stack.s3())
    assert record is None or record.run_id != run_id

    run = stack.wait_for_run("dynamodb_backfill", run_id, timeout=420)

    assert run["state"] == "success", f"backfill run {run_id} ended {run['state']}"
    assert _tries(stack, run_id, "commit") == [2], "the killed commit was not retried once"
    _assert_backfilled_once(stack, run_id)


# --- the current state's tasks killed the same way ---------------------------------------

STATE_DAG = "dynamodb_current_state"


def _state_table(stack: RunningAirflow) -> Any:
    import boto3

    from dynamo_lake.state.current import open_catalog

    assert stack.airflow.stack is not None
    config = load_tables().table("orders")
    glue = boto3.client(
        "glue",
        endpoint_url=stack.airflow.stack.endpoint_url,
        region_name="us-east-1",
        aws_access_key_id="testing",
        aws_secret_access_key="testing",
    )
    catalog = open_catalog(LAKE_URI, stack.s3(), glue_client=glue)
    return catalog.load_table((config.glue_database, f"{config.glue_table}_current"))


def _rewrite_an_old_lake_row(stack: RunningAirflow) -> None:
    """Publish again, as a new lake file, a row the state merged already (a late file that
    changes nothing, so the table and the lake still agree for the tests after): the next
    merge has a bucket to rewrite."""
    from dynamo_lake.lake.writer import LakeTable, Stage, StagedWriter, publish
    from dynamo_lake.state.current import current_snapshot

    head = current_snapshot(_state_table(stack))
    assert head is not None, "no current state yet: the asset-triggered runs did not merge"
    rows = lake_dataset(LAKE_URI, stack.s3()).to_table(columns=["uuid", "op", "time_stamp", "data"])
    stamps = rows.column("time_stamp").cast(pa.int64()).to_pylist()
    index = max(
        (i for i, stamp in enumerate(stamps) if stamp <= head.watermark_us),
        key=lambda i: stamps[i],
    )
    old = CdcRow(
        rows.column("uuid")[index].as_py(),
        rows.column("op")[index].as_py(),
        stamps[index],
        rows.column("data")[index].as_py(),
    )
    table = LakeTable(resolve(LAKE_URI, stack.s3()))
    stage = Stage(f"late-{os.getpid()}-{time.monotonic_ns()}", "test")
    with StagedWriter(table, stage, "rows") as writer:
        writer.write([old])
    publish(table, stage, writer.staged)


def _quiet(stack: RunningAirflow, dag_id: str) -> None:
    """Wait until no run of ``dag_id`` is queued or running (asset-triggered ones)."""
    deadline = time.monotonic() + 300
    while True:
        runs = stack.api(f"dags/{dag_id}/dagRuns?state=queued&state=running")["dag_runs"]
        if not runs:
            return
        assert time.monotonic() < deadline, f"{dag_id} runs never ended: {runs}"
        time.sleep(2)


def _kill_state_task_while_held(stack: RunningAirflow, task_id: str, hold: FaultRule) -> str:
    from pyiceberg.exceptions import NoSuchTableError

    proxy = stack.airflow.proxy
    assert proxy is not None
    _quiet(stack, STATE_DAG)
    try:
        merged = _state_table(stack).current_snapshot() is not None
    except NoSuchTableError:
        merged = False
    if not merged:  # run alone: no backfill has triggered a merge yet
        first = stack.trigger(STATE_DAG, {"table": "orders"})
        assert stack.wait_for_run(STATE_DAG, first, timeout=300)["state"] == "success"
    _rewrite_an_old_lake_row(stack)
    proxy.hold(hold)
    try:
        run_id = stack.trigger(STATE_DAG, {"table": "orders"})
        deadline = time.monotonic() + 240
        while proxy.counts["held"] == 0:
            assert time.monotonic() < deadline, f"no request of {task_id} was ever held"
            time.sleep(0.5)
        pid = _running_task_pid(stack, run_id, task_id, STATE_DAG)
        scheduler = stack.airflow.processes["scheduler"].pid
        assert _descends_from(pid, scheduler), f"{pid} is not a task process of the scheduler"
        os.kill(pid, signal.SIGKILL)
    finally:
        proxy.release()
    return run_id


def _assert_state_equals_the_lake(stack: RunningAirflow, run_id: str) -> None:
    from dynamo_lake.lake.query import latest_state
    from dynamo_lake.state.current import current_snapshot, read_state
    from dynamo_lake.state.merge import live

    run = stack.wait_for_run(STATE_DAG, run_id, timeout=420)
    assert run["state"] == "success", f"current-state run {run_id} ended {run['state']}"
    table = _state_table(stack)
    head = current_snapshot(table)
    assert head is not None
    state = set(live(read_state(table)).column("data").to_pylist())
    assert state == latest_state(LAKE_URI, ["pk", "sk"], as_of=head.watermark_us, s3=stack.s3())
    assert head.live_items == len(state)


def test_a_bucket_rewrite_killed_mid_write_is_retried_and_the_state_equals_the_lake(
    local_airflow: RunningAirflow,
) -> None:
    stack = local_airflow
    data_write = FaultRule(rate=1.0, methods=frozenset({"PUT"}), path_contains="/_current/data/")
    run_id = _kill_state_task_while_held(stack, "rewrite", data_write)
    _assert_state_equals_the_lake(stack, run_id)
    assert max(_tries(stack, run_id, "rewrite", STATE_DAG)) >= 2, (
        "the killed rewrite was not retried"
    )


def test_a_state_commit_killed_at_glue_is_retried_to_one_snapshot(
    local_airflow: RunningAirflow,
) -> None:
    stack = local_airflow
    before = len(_state_table(stack).snapshots())
    glue_commit = FaultRule(rate=1.0, target_contains="UpdateTable")
    run_id = _kill_state_task_while_held(stack, "commit", glue_commit)
    _assert_state_equals_the_lake(stack, run_id)
    assert _tries(stack, run_id, "commit", STATE_DAG) == [2], (
        "the killed commit was not retried once"
    )
    assert len(_state_table(stack).snapshots()) == before + 1, "not exactly one new snapshot"


def test_after_a_restart_lake_health_and_the_runs_agree(
    local_airflow: RunningAirflow, browser: Any
) -> None:
    """`make airflow` again: the AWS stack lives in memory and is built anew, so Airflow's
    runs are reset with it; the page and the DAGs' runs tell the same story (nothing yet),
    never a run list over an empty lake."""
    stack = local_airflow
    stack.airflow.stop()
    stack.airflow.start()
    stack.token = stack.airflow.token()
    for dag_id in ("dynamodb_backfill", "dynamodb_reconciliation"):
        assert stack.api(f"dags/{dag_id}/dagRuns")["dag_runs"] == [], dag_id
    assert latest_backfill_record(LAKE_URI, stack.s3()) is None
    assert latest_report(LAKE_URI, stack.s3()) is None
    context = browser.new_context(timezone_id=TIME_ZONE, viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(30_000)
    try:
        log_in(page, f"{stack.url}/")
        page.get_by_role("link", name="Lakes").first.wait_for(timeout=60_000)
        _, row = lake_health_row(page, stack, "orders")
        text = row.inner_text()
        assert "never backfilled" in text and "never reconciled" in text
        assert row.locator(".glance.none").count() == 1
        shot(page, "lake-health-after-restart")
    finally:
        context.close()
