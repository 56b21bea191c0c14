"""Starting and stopping the local AWS stack, and the control client tests and tools use.

`LocalAws` runs the stack in this process (a werkzeug server thread); `LocalAwsProcess` runs it
in a child process (`python -m local_aws`), which keeps moto's global state away from any
`moto.mock_aws` used elsewhere in the same process. Both are `LocalAwsControl`s: an endpoint URL
plus the clock/settings/reset control API over HTTP, and ready-made boto3 clients.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.parse
import urllib.request
from datetime import datetime
from pathlib import Path
from typing import Any

from local_aws.clock import datetime_from_micros, micros_from_datetime
from local_aws.settings import EmulatorSettings

REGION = "us-east-1"
ACCESS_KEY_ID = "testing"
SECRET_ACCESS_KEY = "testing"
_READY_LINE = re.compile(r"^local_aws listening on (http://\S+)$")


class LocalAwsError(RuntimeError):
    """The stack did not start, or a control call was refused."""


def airflow_connection_uri(endpoint_url: str, region: str = REGION) -> str:
    """`AIRFLOW_CONN_AWS_DEFAULT` value: the Amazon provider reads query params as extras."""
    query = urllib.parse.urlencode({"region_name": region, "endpoint_url": endpoint_url})
    return f"aws://{ACCESS_KEY_ID}:{SECRET_ACCESS_KEY}@/?{query}"


def client_environment(endpoint_url: str, region: str = REGION) -> dict[str, str]:
    """Environment variables that point boto3 (and Airflow's default connection) at the stack."""
    return {
        "AWS_ENDPOINT_URL": endpoint_url,
        "AWS_DEFAULT_REGION": region,
        "AWS_REGION": region,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY_ID,
        "AWS_SECRET_ACCESS_KEY": SECRET_ACCESS_KEY,
        "AIRFLOW_CONN_AWS_DEFAULT": airflow_connection_uri(endpoint_url, region),
    }


def connection_help(endpoint_url: str, region: str = REGION) -> str:
    """What `make local-aws` prints: how to point boto3 and Airflow at the stack."""
    exports = "\n".join(
        f"  export {name}='{value}'"
        for name, value in client_environment(endpoint_url, region).items()
    )
    return (
        f"local_aws listening on {endpoint_url}\n"
        f"DynamoDB (exports emulated), DynamoDB Streams, S3, Glue: moto {_moto_version()}\n"
        f"Region {region}, dummy credentials {ACCESS_KEY_ID}/{SECRET_ACCESS_KEY}.\n\n"
        f"Shell / boto3 >= 1.28 (AWS_ENDPOINT_URL is honoured by boto3 and the AWS CLI):\n"
        f"{exports}\n\n"
        f"boto3 in code:\n"
        f"  boto3.client('dynamodb', endpoint_url='{endpoint_url}', region_name='{region}',\n"
        f"               aws_access_key_id='{ACCESS_KEY_ID}', "
        f"aws_secret_access_key='{SECRET_ACCESS_KEY}')\n\n"
        f"Control API: GET/POST {endpoint_url}/_local_aws/clock, "
        f"GET/POST/DELETE {endpoint_url}/_local_aws/settings, "
        f"POST {endpoint_url}/_local_aws/reset\n"
        f"Stop with Ctrl-C."
    )


def _moto_version() -> str:
    from importlib.metadata import version

    return version("moto")


class LocalAwsControl:
    """A running stack seen from outside: its endpoint and its control API."""

    def __init__(self, endpoint_url: str | None = None, region: str = REGION) -> None:
        self._endpoint_url = endpoint_url
        self.region = region

    @property
    def endpoint_url(self) -> str:
        if self._endpoint_url is None:
            raise LocalAwsError("the local AWS stack is not started")
        return self._endpoint_url

    def client(self, service_name: str, *, max_attempts: int = 1, **kwargs: Any) -> Any:
        """A boto3 client for the stack; no retries by default so errors surface at once."""
        import boto3
        from botocore.config import Config

        return boto3.client(
            service_name,  # type: ignore[call-overload]
            endpoint_url=self.endpoint_url,
            region_name=self.region,
            aws_access_key_id=ACCESS_KEY_ID,
            aws_secret_access_key=SECRET_ACCESS_KEY,
            config=Config(retries={"max_attempts": max_attempts, "mode": "standard"}),
            **kwargs,
        )

    def environment(self) -> dict[str, str]:
        return client_environment(self.endpoint_url, self.region)

    def airflow_connection_uri(self) -> str:
        return airflow_connection_uri(self.endpoint_url, self.region)

    # -- control API ------------------------------------------------------------------------

    def _control(
        self, method: str, route: str, payload: dict[str, Any] | None = None, timeout: float = 30
    ) -> Any:
        data = json.dumps(payload).encode() if payload is not None else None
        request = urllib.request.Request(
            f"{self.endpoint_url}/_local_aws/{route}",
            data=data,
            method=method,
            headers={"Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=timeout) as response:
                return json.loads(response.read())
        except urllib.error.HTTPError as error:
            raise LocalAwsError(f"{method} /_local_aws/{route}: {error.read().decode()}") from error

    def now(self) -> datetime:
        """The emulator's "now" (aware UTC)."""
        return datetime_from_micros(int(self._control("GET", "clock")["now_micros"]))

    def set_clock(self, moment: datetime, *, frozen: bool = True) -> datetime:
        """Make "now" `moment`; frozen (default) stays there until moved, else it ticks on."""
        state = self._control(
            "POST", "clock", {"set": micros_from_datetime(moment) / 1e6, "frozen": frozen}
        )
        return datetime_from_micros(int(state["now_micros"]))

    def advance_clock(self, seconds: float) -> datetime:
        state = self._control("POST", "clock", {"advance_seconds": seconds})
        return datetime_from_micros(int(state["now_micros"]))

    def release_clock(self) -> None:
        """Back to real time."""
        self._control("POST", "clock", {"release": True})

    def settings(self) -> dict[str, Any]:
        settings: dict[str, Any] = self._control("GET", "settings")
        return settings

    def update_settings(self, **changes: float) -> dict[str, Any]:
        """Change emulator settings (see `EmulatorSettings`) until restored."""
        settings: dict[str, Any] = self._control("POST", "settings", dict(changes))
        return settings

    def restore_settings(self) -> dict[str, Any]:
        """Back to the settings the stack was started with."""
        settings: dict[str, Any] = self._control("DELETE", "settings")
        return settings

    def reset(self) -> None:
        """Forget all tables, buckets, histories and exports; release the clock."""
        self._control("POST", "reset", {})

    def bulk_load(self, table: str, first: int, count: int, *, seed: int = 0) -> int:
        """Record items `first`.. in the table's history directly (see `local_aws.bulk`)."""
        payload = {"table": table, "first": first, "count": count, "seed": seed}
        return int(self._control("POST", "bulk-load", payload, timeout=600)["recorded"])


class LocalAws(LocalAwsControl):
    """The stack running in this process, on a werkzeug server thread bound to loopback."""

    def __init__(
        self,
        port: int = 0,
        host: str = "127.0.0.1",
        settings: EmulatorSettings | None = None,
        *,
        quiet: bool = True,
    ) -> None:
        super().__init__()
        self.host = host
        self.port = port
        self.quiet = quiet
        self._settings = settings or EmulatorSettings()
        self._server: Any = None
        self._thread: threading.Thread | None = None
        self.app: Any = None

    def start(self) -> LocalAws:
        from moto.moto_server.werkzeug_app import (
            DomainDispatcherApplication,
            MotoRequestHandler,
            create_backend_app,
        )
        from werkzeug.serving import make_server

        from local_aws.app import LocalAwsApp
        from local_aws.store import Boto3ObjectStore

        quiet = self.quiet

        class RequestHandler(MotoRequestHandler):
            def log_request(self, *args: Any, **kwargs: Any) -> None:
                if not quiet:
                    super().log_request(*args, **kwargs)

        store = Boto3ObjectStore()
        self.app = LocalAwsApp(
            DomainDispatcherApplication(create_backend_app), store, self._settings
        )
        self._server = make_server(
            self.host, self.port, self.app, threaded=True, request_handler=RequestHandler
        )
        self.port = int(self._server.server_address[1])
        self._endpoint_url = f"http://{self.host}:{self.port}"
        store.endpoint_url = self._endpoint_url
        self._thread = threading.Thread(
            target=self._server.serve_forever, name="local-aws", daemon=True
        )
        self._thread.start()
        return self

    def serve_forever(self) -> None:
        """Serve in the calling thread (the CLI's foreground mode) until shut down."""
        if self._thread is not None:
            self._thread.join()

    def stop(self) -> None:
        if self.app is not None:
            self.app.exports.shutdown()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=10)
            self._thread = None

    def __enter__(self) -> LocalAws:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()


class LocalAwsProcess(LocalAwsControl):
    """The stack in a child process (`python -m local_aws`), stopped with SIGINT like Ctrl-C."""

    def __init__(
        self,
        port: int = 0,
        settings: EmulatorSettings | None = None,
        log_path: Path | None = None,
        startup_timeout: float = 60.0,
    ) -> None:
        super().__init__()
        self.port = port
        self._settings = settings or EmulatorSettings()
        self._log_path = log_path
        self._startup_timeout = startup_timeout
        self._process: subprocess.Popen[str] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> LocalAwsProcess:
        package_parent = str(Path(__file__).resolve().parent.parent)
        env = dict(os.environ)
        env["PYTHONPATH"] = os.pathsep.join(p for p in (package_parent, env.get("PYTHONPATH")) if p)
        command = [sys.executable, "-m", "local_aws", "--port", str(self.port)]
        for name, value in self._settings.to_json().items():
            command += [f"--{name.replace('_', '-')}", str(value)]
        log = open(self._log_path, "a") if self._log_path else subprocess.DEVNULL  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                command, stdout=subprocess.PIPE, stderr=log, text=True, env=env
            )
        finally:
            if self._log_path:
                log.close()  # type: ignore[union-attr]
        assert self._process.stdout is not None
        deadline = time.monotonic() + self._startup_timeout
        endpoint: str | None = None
        while time.monotonic() < deadline:
            line = self._process.stdout.readline()
            if not line:
                break
            match = _READY_LINE.match(line.strip())
            if match:
                endpoint = match.group(1)
                break
        if endpoint is None:
            self.stop()
            raise LocalAwsError("local_aws did not report its endpoint; see its log")
        self._endpoint_url = endpoint
        self.port = int(endpoint.rsplit(":", 1)[1])
        # Keep reading stdout so the child never blocks on a full pipe.
        threading.Thread(target=self._drain, daemon=True).start()
        return self

    def _drain(self) -> None:
        process = self._process
        if process is not None and process.stdout is not None:
            for _ in process.stdout:
                pass

    def stop(self) -> None:
        process = self._process
        if process is None:
            return
        if process.poll() is None:
            process.send_signal(signal.SIGINT)
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=5)
        self._process = None

    def __enter__(self) -> LocalAwsProcess:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.stop()
