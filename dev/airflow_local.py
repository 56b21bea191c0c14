"""`make airflow`: a local Airflow 3.3 against the local AWS stack, on 127.0.0.1 only.

Starts the local AWS stack, creates the demo buckets and seeds the sample table, keeps the
stream relay delivering (with a few changes to the table now and then, so stream rows keep
arriving), and runs Airflow as separate processes: ``api-server``, ``scheduler``,
``dag-processor`` and ``triggerer`` (a real triggerer: the export wait really defers), with
LocalExecutor and low parallelism for 2 cores. The login is SimpleAuthManager with a fixed
local user (never "all admins"). Ctrl-C stops everything it started, by process group.

The table has a past: it is created two days and a bit back on the emulator's clock, with
PITR on, and changed every half hour since (its stream's records delivered into the lake at
their own times, as if the pipeline had run all along), so every form default works at once:
a `changes` reconciliation needs the day before T inside the PITR window, and the daily
schedule's last interval too. The AWS stack lives in memory and is built again on every
start, so Airflow's database and task logs (in ``var/airflow/``) are reset with it: runs
the lake no longer holds would contradict it. The JWT secret and the login stay.

:class:`LocalAirflow` is also what the browser test starts.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(REPO / "dev"), str(REPO / "include")]

from dynamo_lake.config import load_tables  # noqa: E402
from dynamo_lake.storage import S3Options  # noqa: E402
from local_aws import EmulatorSettings, LocalAwsProcess, client_environment  # noqa: E402
from local_aws.fault_proxy import FaultProxy  # noqa: E402
from local_aws.seed import apply_churn, seed_history  # noqa: E402
from stream_relay import KinesisRecord, StreamRelay, kinesis_record  # noqa: E402

USER, PASSWORD = "engineer", "lake-health-local"
#: How far back the local table's history starts, and how often it changed since.
HISTORY = timedelta(hours=50)
HISTORY_STEP = timedelta(minutes=30)
TABLES_FILE = REPO / "include" / "config" / "tables.yaml"
COMPONENTS = ("api-server", "scheduler", "dag-processor", "triggerer")
AIRFLOW = str(Path(sys.executable).parent / "airflow")


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class AirflowApi:
    """A running Airflow's REST API with a token (what tests and the load run ask of it)."""

    def __init__(self, url: str, token: str) -> None:
        self.url = url
        self.token = token

    def send(
        self, path: str, token: str | None, body: dict[str, Any] | None = None
    ) -> tuple[int, bytes]:
        headers = {"Authorization": f"Bearer {token}"} if token else {}
        if body is not None:
            headers["Content-Type"] = "application/json"
        request = urllib.request.Request(
            f"{self.url}{path}",
            data=None if body is None else json.dumps(body).encode(),
            method="GET" if body is None else "POST",
            headers=headers,
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:
                return response.status, response.read()
        except urllib.error.HTTPError as error:
            return error.code, error.read()

    def api(self, path: str) -> Any:
        status, payload = self.send(f"/api/v2/{path}", self.token)
        if status != 200:
            raise RuntimeError(f"GET /api/v2/{path}: {status} {payload[:300]!r}")
        return json.loads(payload)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        status, payload = self.send(f"/api/v2/{path}", self.token, body)
        if status not in (200, 201):
            raise RuntimeError(f"POST /api/v2/{path}: {status} {payload[:300]!r}")
        return json.loads(payload)

    def get(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        """GET a path of the api-server as-is (``token``: a Bearer token, or none)."""
        return self.send(path, token)

    def trigger(self, dag_id: str, conf: dict[str, Any]) -> str:
        """Trigger a run now; its run id."""
        run = self.post(f"dags/{dag_id}/dagRuns", {"logical_date": None, "conf": conf})
        return str(run["dag_run_id"])

    def wait_for_run(self, dag_id: str, run_id: str, timeout: float = 300) -> Any:
        """The run once it ended (success or failed)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            run = self.api(f"dags/{dag_id}/dagRuns/{run_id}")
            if run["state"] in ("success", "failed"):
                return run
            time.sleep(2)
        raise TimeoutError(f"{dag_id} run {run_id} did not finish in {timeout:.0f} s")

    def task_instances(self, dag_id: str, run_id: str) -> list[dict[str, Any]]:
        path = f"dags/{dag_id}/dagRuns/{run_id}/taskInstances?limit=1000"
        return list(self.api(path)["task_instances"])


class LocalAirflow:
    """The local AWS stack, the seeded table and relay, and Airflow's four processes."""

    def __init__(
        self,
        home: Path,
        *,
        port: int = 8080,
        items: int = 500,
        churn_every: float | None = 30.0,
        export_delay: float = 5.0,
        extra_environment: dict[str, str] | None = None,
        tables_file: Path = TABLES_FILE,
        emulator: EmulatorSettings | None = None,
        demo_table: bool = True,
        fault_proxy: bool = False,
    ) -> None:
        """``demo_table`` False: no seeded `orders` and no relay (the caller brings its own
        tables, in ``tables_file``); ``emulator`` replaces the emulator settings;
        ``fault_proxy``: Airflow reaches AWS through a :class:`FaultProxy` (``self.proxy``)
        that a test can make fail or hold requests."""
        self.fault_proxy = fault_proxy
        self.proxy: FaultProxy | None = None
        self.home = home
        self.tables_file = tables_file
        self.emulator = emulator or EmulatorSettings(
            export_delay_seconds=export_delay, pitr_lag_seconds=1.0
        )
        self.demo_table = demo_table
        self.port = port
        self.items = items
        self.churn_every = churn_every
        self.extra_environment = extra_environment or {}
        self.url = f"http://127.0.0.1:{port}"
        self.stack: LocalAwsProcess | None = None
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self._stop = threading.Event()
        self._relay_thread: threading.Thread | None = None
        self._environment: dict[str, str] = {}
        self.relay: StreamRelay | None = None
        self.started_at = 0.0

    # -- environment --------------------------------------------------------------------------

    def _secret(self) -> str:
        path = self.home / "jwt-secret"
        if not path.exists():
            path.write_text(secrets.token_hex(32))
        return path.read_text().strip()

    def environment(self) -> dict[str, str]:
        assert self.stack is not None
        passwords = self.home / "passwords.json"
        passwords.write_text(json.dumps({USER: PASSWORD}))
        environment = {
            name: value
            for name, value in os.environ.items()
            if not name.startswith(("AIRFLOW", "AWS_", "DYNAMO_LAKE_"))
        }
        aws = self.proxy.endpoint_url if self.proxy else self.stack.endpoint_url
        environment.update(client_environment(aws))
        environment.update(
            {
                "AIRFLOW_HOME": str(self.home),
                "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{self.home / 'airflow.db'}",
                "DYNAMO_LAKE_TABLES_FILE": str(self.tables_file),
                "AIRFLOW__CORE__DAGS_FOLDER": str(REPO / "dags"),
                "AIRFLOW__CORE__PLUGINS_FOLDER": str(REPO / "plugins"),
                "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
                "AIRFLOW__CORE__EXECUTOR": "LocalExecutor",
                "AIRFLOW__CORE__PARALLELISM": "2",
                "AIRFLOW__CORE__MAX_ACTIVE_TASKS_PER_DAG": "2",
                "AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION": "False",
                "AIRFLOW__CORE__EXECUTION_API_SERVER_URL": f"{self.url}/execution/",
                "AIRFLOW__CORE__AUTH_MANAGER": (
                    "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager"
                ),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": f"{USER}:admin",
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(passwords),
                "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS": "False",
                "AIRFLOW__API__HOST": "127.0.0.1",
                "AIRFLOW__API__PORT": str(self.port),
                "AIRFLOW__API__WORKERS": "1",
                "AIRFLOW__API__BASE_URL": self.url,
                "AIRFLOW__API_AUTH__JWT_SECRET": self._secret(),
                "AIRFLOW__DAG_PROCESSOR__REFRESH_INTERVAL": "30",
                "AIRFLOW__LOGGING__BASE_LOG_FOLDER": str(self.home / "logs"),
                "DYNAMO_LAKE_EXPORT_POLL_SECONDS": "3",
            }
        )
        environment.update(self.extra_environment)
        return environment

    # -- start and stop -------------------------------------------------------------------------

    def start(self) -> LocalAirflow:
        self.home.mkdir(parents=True, exist_ok=True)
        self._stop.clear()  # a stopped stack can be started again (a restart)
        self._reset_database()
        self.stack = LocalAwsProcess(settings=self.emulator, log_path=self.home / "local_aws.log")
        self.stack.start()
        if self.fault_proxy:
            self.proxy = FaultProxy(self.stack.endpoint_url).start()
        environment = self.environment()
        migrate = subprocess.run(
            [AIRFLOW, "db", "migrate"],
            env=environment,
            stdout=(self.home / "db-migrate.log").open("wb"),
            stderr=subprocess.STDOUT,
            check=False,
        )
        if migrate.returncode != 0:
            raise SystemExit(f"airflow db migrate failed; see {self.home / 'db-migrate.log'}")
        if self.demo_table:
            self._seed()
        (self.home / "logs").mkdir(exist_ok=True)
        self._environment = environment
        for component in COMPONENTS:
            self._launch(component)
        self._wait_healthy()
        self.started_at = time.monotonic()  # when a person could start clicking
        return self

    def _reset_database(self) -> None:
        """Drop Airflow's runs and task logs: the AWS stack they happened against is gone
        (it lives in memory), and a UI listing them over an empty lake would contradict it."""
        for name in ("airflow.db", "airflow.db-journal", "airflow.db-wal", "airflow.db-shm"):
            with contextlib.suppress(FileNotFoundError):
                (self.home / name).unlink()
        shutil.rmtree(self.home / "logs", ignore_errors=True)

    def _launch(self, component: str) -> None:
        command = [AIRFLOW, component]
        if component in ("scheduler", "triggerer"):
            command.append("--skip-serve-logs")  # their log servers bind every interface
        self.processes[component] = subprocess.Popen(
            command,
            env=self._environment,
            stdout=(self.home / f"{component}.log").open("ab"),
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group: stopped with its children
        )

    def kill(self, component: str) -> None:
        """SIGKILL one component and its children (what a crash or an OOM kill does)."""
        process = self.processes.pop(component)
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, signal.SIGKILL)
        process.wait(timeout=30)

    def restart(self, component: str) -> None:
        """Kill one component and start it again (a crashed process brought back)."""
        self.kill(component)
        self._launch(component)

    def _seed(self) -> None:
        assert self.stack is not None
        config = load_tables(TABLES_FILE).table("orders")
        s3 = self.stack.client("s3", max_attempts=3)
        for bucket in (config.export_bucket, config.lake_bucket):
            s3.create_bucket(Bucket=bucket)
        dynamodb = self.stack.client("dynamodb", max_attempts=3)
        now = datetime.now(UTC)
        history = seed_history(
            dynamodb,
            config.dynamodb_table,
            self.items,
            start=now - HISTORY,
            end=now - timedelta(minutes=5),
            steps=int(HISTORY / HISTORY_STEP),
            changes_per_step=5,
            set_clock=self.stack.set_clock,
        )
        self.stack.release_clock()
        options = S3Options(self.stack.endpoint_url, "us-east-1", "testing", "testing")
        # The emulator's stream stamps the seeded writes with the wall clock: read from what
        # comes next, and deliver the history at its own times through the same Lambda.
        self.relay = StreamRelay(
            self.stack.endpoint_url,
            config.dynamodb_table,
            config.lake_uri,
            s3=options,
            start="LATEST",
        )
        records = [
            KinesisRecord(
                "shardId-seed",
                f"{number:021d}",
                kinesis_record(change.record, config.dynamodb_table, change.micros),
                str(number % 16),
            )
            for number, change in enumerate(history, start=1)
        ]
        for first in range(0, len(records), 500):
            self.relay.delivery.deliver(records[first : first + 500])
        self._relay_thread = threading.Thread(
            target=self._stream, args=(dynamodb, config.dynamodb_table), daemon=True
        )
        self._relay_thread.start()

    def _stream(self, dynamodb: Any, table: str) -> None:
        """Deliver the stream every few seconds; change the table now and then."""
        assert self.relay is not None
        last_churn = time.monotonic()
        step = 0
        while not self._stop.wait(3.0):
            with contextlib.suppress(Exception):  # a hiccup must not end the stream
                if self.churn_every and time.monotonic() - last_churn > self.churn_every:
                    apply_churn(dynamodb, table, 5, seed=step)
                    step += 1
                    last_churn = time.monotonic()
                self.relay.drain()

    def _wait_healthy(self, timeout: float = 180.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for component, process in self.processes.items():
                if process.poll() is not None:
                    self.stop()
                    raise SystemExit(
                        f"airflow {component} exited ({process.returncode}); see "
                        f"{self.home / (component + '.log')}"
                    )
            health_url = f"{self.url}/api/v2/monitor/health"
            with (
                contextlib.suppress(urllib.error.URLError, OSError),
                urllib.request.urlopen(health_url, timeout=5) as answer,
            ):
                if json.loads(answer.read()).get("scheduler", {}).get("status") == "healthy":
                    return
            time.sleep(1.0)
        self.stop()
        raise SystemExit(f"Airflow did not become healthy in {timeout:.0f} s; see {self.home}")

    def api(self) -> AirflowApi:
        """The REST API, logged in as the local user."""
        return AirflowApi(self.url, self.token())

    def token(self) -> str:
        request = urllib.request.Request(
            f"{self.url}/auth/token",
            data=json.dumps({"username": USER, "password": PASSWORD}).encode(),
            headers={"Content-Type": "application/json"},
            method="POST",
        )
        with urllib.request.urlopen(request, timeout=30) as response:
            return str(json.loads(response.read())["access_token"])

    def stop(self) -> None:
        self._stop.set()
        for process in self.processes.values():
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 30
        for process in self.processes.values():
            with contextlib.suppress(subprocess.TimeoutExpired):
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
            # Children (task runners, the api-server's workers) go with the group.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(process.pid, signal.SIGKILL)
            _wait_group_gone(process.pid, seconds=10)
        self.processes.clear()
        if self._relay_thread is not None:
            self._relay_thread.join(timeout=10)
        if self.proxy is not None:
            self.proxy.release()
            self.proxy.stop()
            self.proxy = None
        if self.stack is not None:
            self.stack.stop()
            self.stack = None

    def __enter__(self) -> LocalAirflow:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


def _wait_group_gone(group: int, seconds: float) -> None:
    """Until no process of ``group`` is left, at most ``seconds``: a process killed with
    SIGKILL lingers a moment (until it is reaped), and stop() returns with none left."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            os.killpg(group, 0)
        except ProcessLookupError:
            return
        time.sleep(0.1)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, default=int(os.environ.get("AIRFLOW_PORT", "8080")))
    parser.add_argument("--items", type=int, default=500)
    args = parser.parse_args()
    home = REPO / "var" / "airflow"
    airflow = LocalAirflow(home, port=args.port, items=args.items)
    stopping = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stopping.set())
    print("starting the local AWS stack and Airflow (about a minute)...", flush=True)
    airflow.start()
    print(
        f"\nAirflow is up: {airflow.url}\n"
        f"  login: {USER} / {PASSWORD}   (SimpleAuthManager, state in {home.relative_to(REPO)}/)\n"
        f"  Lake health: {airflow.url}/plugin/lake-health\n"
        "  the table 'orders' has two days of history (PITR and the lake's stream rows), and\n"
        "  its stream is relayed into the lake every few seconds; trigger dynamodb_backfill,\n"
        "  then dynamodb_reconciliation, from the DAGs page (the untouched forms work).\n"
        "  The AWS stack lives in memory: Airflow's runs and logs were reset with it.\n"
        "Ctrl-C stops everything.",
        flush=True,
    )
    try:
        while not stopping.is_set():
            for component, process in airflow.processes.items():
                if process.poll() is not None:
                    print(f"airflow {component} exited; see {home / (component + '.log')}")
                    stopping.set()
            stopping.wait(2.0)
    except KeyboardInterrupt:
        pass
    finally:
        print("\nstopping...", flush=True)
        airflow.stop()
        print("stopped.")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
