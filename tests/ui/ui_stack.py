"""What the UI tests ask of a running ``make airflow`` stack: its REST API with a token, plain
GETs, and the lake's S3."""

from __future__ import annotations

from pathlib import Path

from airflow_local import AirflowApi, LocalAirflow

from dynamo_lake.storage import S3Options

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "var" / "test-artifacts" / "ui"


class RunningAirflow(AirflowApi):
    """The stack, and what a test asks of it: the REST API with a token, the lake's S3."""

    def __init__(self, airflow: LocalAirflow) -> None:
        super().__init__(airflow.url, airflow.token())
        self.airflow = airflow

    def s3(self) -> S3Options:
        assert self.airflow.stack is not None
        return S3Options(self.airflow.stack.endpoint_url, "us-east-1", "testing", "testing")
