"""The Lake health app behind Airflow's login, mounted as the api-server mounts it: every
path under its prefix (its routes, FastAPI's turned-off /docs, /redoc and /openapi.json, a
path it does not serve) refuses an anonymous or forged caller, a logged-in one gets the page
and a plain 404, and the page refers to nothing outside Airflow's own origin.

The smallest real setup: the metadata DB (the auth manager looks tokens up in it),
SimpleAuthManager with a known password and its ``/auth`` app (``POST /auth/token`` is the
real login), the plugin's app under the plugin's own prefix, and the local AWS stack's S3
holding a lake with a report of every status.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from html.parser import HTMLParser
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import orjson
import pytest
import yaml

from dynamo_lake.storage import S3Options, resolve
from local_aws.server import LocalAwsControl

pytestmark = pytest.mark.slow

USER, PASSWORD = "engineer", "lake-health-test"
LAKE_BUCKET = "lake-health-app"
T = datetime(2026, 6, 29, 12, 0, tzinfo=UTC)
STATUSES: dict[str, dict[str, Any]] = {
    "ok": {},
    "repaired": {
        "missing": 2,
        "repair": {"rows": 2, "recheck": {"status": "ok"}},
        "findings": {"uri": f"s3://{LAKE_BUCKET}/findings.parquet", "rows": 2},
    },
    "inconclusive": {"ambiguous": 3},
    "drift": {"missing": 1, "lake_count": 99},
    "error": {"table_count": None, "lake_count": None, "message": "the export failed"},
}


@pytest.fixture(scope="module")
def airflow_login(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    """Airflow's login in front of the plugin's app: a TestClient on an app that holds the
    auth manager (and its /auth app) and mounts the plugin's app at its url_prefix."""
    passwords = tmp_path_factory.mktemp("auth") / "passwords.json"
    passwords.write_bytes(orjson.dumps({USER: PASSWORD}))
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv(
            "AIRFLOW__CORE__AUTH_MANAGER",
            "airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager",
        )
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS", f"{USER}:admin")
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE", str(passwords))
        patch.setenv("AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS", "False")
        patch.setenv("AIRFLOW__API_AUTH__JWT_SECRET", "lake-health-test-" + "0" * 64)
        subprocess.run(
            [sys.executable, "-m", "airflow", "db", "migrate"],
            check=True,
            capture_output=True,
            env=os.environ.copy(),
        )
        from airflow.api_fastapi.app import init_auth_manager
        from fastapi import FastAPI
        from fastapi.testclient import TestClient

        from plugins.lake_health import LakeHealthPlugin

        server = FastAPI()
        init_auth_manager(server)
        for mounted in LakeHealthPlugin.fastapi_apps:
            server.mount(mounted["url_prefix"], mounted["app"])
        with TestClient(server) as client:
            yield client


@pytest.fixture(scope="module")
def token(airflow_login: Any) -> str:
    answer = airflow_login.post("/auth/token", json={"username": USER, "password": PASSWORD})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["access_token"])


@pytest.fixture
def lake_of_every_status(
    local_aws: LocalAwsControl,
    local_aws_env: dict[str, str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> list[str]:
    """A configured table per report status, each lake holding its report (written by hand
    as the JSON contract documents it)."""
    s3 = local_aws.client("s3")
    if LAKE_BUCKET not in {bucket["Name"] for bucket in s3.list_buckets()["Buckets"]}:
        s3.create_bucket(Bucket=LAKE_BUCKET)
    options = S3Options(local_aws.endpoint_url, "us-east-1", "testing", "testing")
    tables: dict[str, Any] = {}
    for status, fields in STATUSES.items():
        tables[f"orders_{status}"] = {
            "dynamodb_table": "orders",
            "export_bucket": "exports",
            "lake_bucket": LAKE_BUCKET,
            "glue_database": "shop",
            "glue_table": f"orders_{status}",
        }
        document: dict[str, Any] = {
            "table": f"orders_{status}",
            "as_of": f"{T:%Y-%m-%dT%H:%M:%S.%f}Z",
            "method": "export",
            "status": status,
            "table_count": 100,
            "lake_count": 100,
            "missing": 0,
            "extra": 0,
            "different": 0,
            "ambiguous": None,
            "findings": None,
            "repair": None,
            "run_id": f"scheduled__{status}",
            "engine": "athena",
            "message": "",
            **fields,
        }
        folder = resolve(f"s3://{LAKE_BUCKET}/dynamo-cdc/shop/orders_{status}", options).child(
            "_reconciliation"
        )
        payload = orjson.dumps(document)
        folder.child(f"20260629T120000000000Z--scheduled__{status}.json").write_bytes(payload)
        folder.child("latest.json").write_bytes(payload)
    tables_file = tmp_path / "tables.yaml"
    tables_file.write_text(yaml.safe_dump({"defaults": {"region": "us-east-1"}, "tables": tables}))
    monkeypatch.setenv("DYNAMO_LAKE_TABLES_FILE", str(tables_file))
    return list(tables)


def prefix() -> str:
    from plugins.lake_health import LakeHealthPlugin

    (mounted,) = LakeHealthPlugin.fastapi_apps
    return str(mounted["url_prefix"])


def every_request() -> list[tuple[str, str]]:
    """Every (method, path) the app serves, walked from its routes, then FastAPI's own
    documentation paths and a path nothing serves."""
    from fastapi.routing import APIRoute

    from plugins.lake_health import app

    login = app.router.dependencies
    assert login, "the app has no dependencies: nothing asks for the login"
    found = []
    for route in app.routes:
        # A plain Starlette route (what /docs and /openapi.json are) skips the app's
        # dependencies: every route must be an API route that carries them.
        assert isinstance(route, APIRoute), f"{route} is outside the app's dependencies"
        assert all(any(mine is theirs for mine in route.dependencies) for theirs in login)
        path = route.path.replace("{path:path}", "no/such/path")
        found += [(method, prefix() + path) for method in sorted(route.methods)]
    assert {path for _, path in found} >= {f"{prefix()}/", f"{prefix()}/api/tables"}
    extra = ("/docs", "/docs/oauth2-redirect", "/redoc", "/openapi.json")
    return found + [("GET", prefix() + path) for path in extra]


def test_every_path_refuses_an_anonymous_or_forged_caller(airflow_login: Any) -> None:
    for method, path in every_request():
        anonymous = airflow_login.request(method, path)
        assert anonymous.status_code == 401, f"{method} {path}: {anonymous.status_code}"
        if method != "HEAD":
            assert anonymous.json() == {"detail": "Not authenticated"}, f"{method} {path}"
        for credentials in ({"Authorization": "Bearer not-a-token"}, {"Cookie": "_token=x.y.z"}):
            forged = airflow_login.request(method, path, headers=credentials)
            assert forged.status_code in (401, 403), f"{method} {path} with {credentials}"


def test_a_logged_in_caller_gets_the_page_and_a_plain_404_elsewhere(
    airflow_login: Any, token: str, lake_of_every_status: list[str]
) -> None:
    bearer = {"Authorization": f"Bearer {token}"}
    for path in ("/docs", "/redoc", "/openapi.json", "/no/such/path"):
        answer = airflow_login.get(prefix() + path, headers=bearer)
        assert (answer.status_code, answer.json()) == (404, {"detail": "Not Found"}), path

    figures = airflow_login.get(f"{prefix()}/api/tables", headers=bearer)
    assert figures.status_code == 200, figures.text
    shown = {table["table"]: table for table in figures.json()}
    assert {name: shown[name]["report"]["status"] for name in lake_of_every_status} == {
        f"orders_{status}": status for status in STATUSES
    }
    assert {name: shown[name]["drift"] for name in lake_of_every_status} == {
        f"orders_{status}": status in ("drift", "error") for status in STATUSES
    }

    # The UI's session cookie is a login too.
    page = airflow_login.get(f"{prefix()}/", headers={"Cookie": f"_token={token}"})
    assert page.status_code == 200
    for status in STATUSES:
        assert f'<span class="status {status}">{status.upper()}</span>' in page.text
    assert_refers_to_nothing_outside(page.text)


class _References(HTMLParser):
    """Every tag and every attribute that makes a browser fetch or navigate."""

    ATTRIBUTES = frozenset({"src", "href", "xlink:href", "action", "srcset", "poster", "data"})

    def __init__(self) -> None:
        super().__init__()
        self.tags: list[str] = []
        self.references: list[tuple[str, str, str]] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.tags.append(tag)
        for name, value in attrs:
            if name in self.ATTRIBUTES:
                self.references.append((tag, name, value or ""))


def assert_refers_to_nothing_outside(page: str) -> None:
    parsed = _References()
    parsed.feed(page)
    assert "link" not in parsed.tags and "iframe" not in parsed.tags
    assert not [ref for ref in parsed.references if ref[0] == "script"]  # inline scripts only
    hrefs = [value for _, _, value in parsed.references]
    assert any(value.startswith("/dags/") for value in hrefs)  # the run links were checked
    for tag, name, value in parsed.references:
        parts = urlsplit(value)
        assert not parts.scheme and not parts.netloc, f"<{tag} {name}={value!r}> leaves Airflow"
        assert value.startswith("/"), f"<{tag} {name}={value!r}> is not a path on Airflow"
    lowered = page.lower()
    assert "http://" not in lowered and "https://" not in lowered
    assert "@import" not in lowered and "url(" not in lowered
