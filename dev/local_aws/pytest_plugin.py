"""pytest fixtures for the local AWS stack (register with `pytest_plugins`, or import them).

- `local_aws` (session): the stack in a child process on a free loopback port, exports complete
  at once (`export_delay_seconds=0`); set `LOCAL_AWS_ENDPOINT_URL` to use a running stack.
- `emulator` (function): the same stack, with its clock released and settings restored after
  the test, so a test may freeze time or change settings freely.
- `local_aws_env` (function): AWS_* and AIRFLOW_CONN_AWS_DEFAULT variables set for the test.
- `sample_table_factory` (function): make seeded sample tables with unique names.
- `sample_table` (function): one seeded sample table (40 items, 10 random changes).
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from local_aws.seed import SampleTable, seed_sample_table
from local_aws.server import LocalAwsControl, LocalAwsProcess
from local_aws.settings import EmulatorSettings

#: Test defaults: no waiting for exports; everything else as `make local-aws`.
TEST_SETTINGS = EmulatorSettings(export_delay_seconds=0.0)

SampleTableFactory = Callable[..., SampleTable]


@pytest.fixture(scope="session")
def local_aws(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalAwsControl]:
    """The running stack: `.endpoint_url`, `.client(name)`, clock and settings control."""
    external = os.environ.get("LOCAL_AWS_ENDPOINT_URL")
    if external:
        yield LocalAwsControl(external)
        return
    log_path = Path(tmp_path_factory.mktemp("local_aws")) / "local_aws.log"
    stack = LocalAwsProcess(settings=TEST_SETTINGS.copy(), log_path=log_path).start()
    stack.update_settings(**TEST_SETTINGS.to_json())
    try:
        yield stack
    finally:
        stack.stop()


@pytest.fixture
def emulator(local_aws: LocalAwsControl) -> Iterator[LocalAwsControl]:
    """The stack for one test; its clock and settings are put back afterwards."""
    try:
        yield local_aws
    finally:
        local_aws.release_clock()
        local_aws.update_settings(**TEST_SETTINGS.to_json())


@pytest.fixture
def local_aws_env(local_aws: LocalAwsControl, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """Point boto3 and Airflow's `aws_default` at the stack through the environment."""
    environment = local_aws.environment()
    for name, value in environment.items():
        monkeypatch.setenv(name, value)
    return environment


@pytest.fixture
def sample_table_factory(local_aws: LocalAwsControl) -> SampleTableFactory:
    """`make(items=40, churn=0, seed=0, name=None) -> SampleTable`, unique name per call."""
    client = local_aws.client("dynamodb", max_attempts=3)

    def make(
        items: int = 40, churn: int = 0, seed: int = 0, name: str | None = None
    ) -> SampleTable:
        table_name = name or f"sample-{uuid.uuid4().hex[:12]}"
        return seed_sample_table(client, table_name, items, churn=churn, seed=seed)

    return make


@pytest.fixture
def sample_table(sample_table_factory: SampleTableFactory) -> SampleTable:
    """A seeded sample table: 40 items, then 10 random updates, deletes and inserts."""
    return sample_table_factory(items=40, churn=10)
