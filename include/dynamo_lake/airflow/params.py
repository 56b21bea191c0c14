"""Trigger-form params that several DAGs share, defined once so they read the same.

Light on purpose: DAG files import it at parse time.
"""

from __future__ import annotations

from collections.abc import Iterable

from airflow.sdk import Param

# The table choice that means every configured table. A visible choice, not "": the form
# treats an empty required field as missing and will not trigger. Defined in the core, which
# refuses it as a table name.
from dynamo_lake.config import ALL_TABLES

__all__ = ["ALL_TABLES", "TIME_FORMAT_HINT", "TIME_PATTERN", "table_param", "time_param"]

TIME_FORMAT_HINT = "UTC, typed as ISO-8601 text, e.g. 2024-06-01T12:00:00Z"


def table_param(names: Iterable[str], *, allow_all: bool = False) -> Param:
    """The configured table to work on (``allow_all``: :data:`ALL_TABLES`, the default,
    means every table)."""
    choices = sorted(names)
    if allow_all:
        return Param(
            ALL_TABLES,
            type="string",
            enum=[ALL_TABLES, *choices],
            title="Table",
            description=f"{ALL_TABLES}: every table configured in include/config/tables.yaml; "
            "or one of them.",
        )
    return Param(
        choices[0],
        type="string",
        enum=choices,
        title="Table",
        description="A table configured in include/config/tables.yaml.",
    )


#: ISO-8601 / RFC 3339 as typed: a date, a time, optional seconds and fraction, and Z or an
#: offset (none: UTC). An empty field is allowed (it means "not given").
TIME_PATTERN = (
    r"^$|^[0-9]{4}-[0-9]{2}-[0-9]{2}[Tt ][0-9]{2}:[0-9]{2}(:[0-9]{2}(\.[0-9]{1,6})?)?"
    r"([Zz]|[+-][0-9]{2}:?[0-9]{2})?$"
)


def time_param(title: str, description: str) -> Param:
    """An optional UTC moment, typed as text.

    Not the form's date-time picker: the picker works in the browser's time zone (01:35 typed
    in New York is sent as 06:35Z), so what a person types and what runs would differ. Text
    is sent as typed; a time without a zone is UTC. Say the format in ``description``
    (:data:`TIME_FORMAT_HINT`).
    """
    return Param(
        None,
        type=["null", "string"],
        pattern=TIME_PATTERN,
        title=title,
        description=description,
    )
