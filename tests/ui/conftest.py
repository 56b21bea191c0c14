"""A running local Airflow (``make airflow``'s :class:`LocalAirflow`) and a headless browser.

The browser is Debian's ``chromium`` driven by Playwright (never a downloaded browser). The
stack starts once per session (about a minute); its state and the screenshots are kept under
``var/test-artifacts/ui/``.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from airflow_local import LocalAirflow, free_port
from ui_stack import ARTIFACTS, RunningAirflow

CHROMIUM = Path("/usr/bin/chromium")


@pytest.fixture(scope="session")
def local_airflow() -> Iterator[RunningAirflow]:
    home = ARTIFACTS / "airflow"
    shutil.rmtree(home, ignore_errors=True)  # a fresh metadata DB: the AWS stack is new too
    airflow = LocalAirflow(home, port=free_port(), items=200, churn_every=20.0, export_delay=2.0)
    airflow.start()
    groups = [process.pid for process in airflow.processes.values()]
    try:
        yield RunningAirflow(airflow)
    finally:
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
