"""Trigger-form params that several DAGs share, defined once so they read the same.

Light on purpose: DAG files import it at parse time.
"""

from __future__ import annotations

from collections.abc import Iterable

from airflow.sdk import Param

__all__ = ["TIME_FORMAT_HINT", "table_param", "time_param"]

TIME_FORMAT_HINT = "UTC, ISO-8601, e.g. 2024-06-01T12:00:00Z"


def table_param(names: Iterable[str], *, allow_all: bool = False) -> Param:
    """The configured table to work on (``allow_all``: empty means every table)."""
    choices = sorted(names)
    if allow_all:
        return Param(
            "",
            type="string",
            enum=["", *choices],
            title="Table",
            description="A table configured in include/config/tables.yaml; empty: all of them.",
        )
    return Param(
        choices[0],
        type="string",
        enum=choices,
        title="Table",
        description="A table configured in include/config/tables.yaml.",
    )


def time_param(title: str, description: str) -> Param:
    """An optional UTC moment, shown with the form's date-time picker (say the format in
    ``description``: :data:`TIME_FORMAT_HINT`)."""
    return Param(
        None, type=["null", "string"], format="date-time", title=title, description=description
    )
