"""What the UI tests ask of a running ``make airflow`` stack: its REST API with a token, plain
GETs, and the lake's S3."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

from airflow_local import LocalAirflow

from dynamo_lake.storage import S3Options

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "test-artifacts" / "ui"


class RunningAirflow:
    """The stack, and what a test asks of it: the REST API with a token, the lake's S3."""

    def __init__(self, airflow: LocalAirflow) -> None:
        self.airflow = airflow
        self.url = airflow.url
        self._token = airflow.token()

    def _send(
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
        status, payload = self._send(f"/api/v2/{path}", self._token)
        assert status == 200, f"GET /api/v2/{path}: {status} {payload[:300]!r}"
        return json.loads(payload)

    def post(self, path: str, body: dict[str, Any]) -> Any:
        status, payload = self._send(f"/api/v2/{path}", self._token, body)
        assert status in (200, 201), f"POST /api/v2/{path}: {status} {payload[:300]!r}"
        return json.loads(payload)

    def get(self, path: str, token: str | None = None) -> tuple[int, bytes]:
        """GET a path of the api-server as-is (``token``: a Bearer token, or none)."""
        return self._send(path, token)

    @property
    def token(self) -> str:
        return self._token

    def s3(self) -> S3Options:
        assert self.airflow.stack is not None
        return S3Options(self.airflow.stack.endpoint_url, "us-east-1", "testing", "testing")
