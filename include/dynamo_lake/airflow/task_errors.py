"""How a problem the person must fix reads in a task's log: its message, one line, no traceback.

Airflow's task runner logs every exception a task raises with its traceback, an
``AirflowFailException`` included (``log.exception("Task failed with exception")`` in
``airflow/sdk/execution_time/task_runner.py``), so a message that already names the problem
and the fix sits inside a dozen of Airflow's frames, and twice when it has a cause. The runner
logs through structlog straight to the task log: a ``logging.Filter`` never sees that line.

:class:`ProblemToFix` is an ``AirflowFailException`` (the task fails at once, without
retries, and its failure callbacks run). :func:`quiet_problem_tracebacks` puts
:func:`plain_failure_line` into the task process's structlog processors; it turns a line
logged with a ``ProblemToFix`` as its exception into the problem's message alone. Every
other exception keeps its line and its traceback.
"""

from __future__ import annotations

import sys
from collections.abc import MutableMapping
from typing import Any

import structlog
from airflow.sdk.exceptions import AirflowFailException

__all__ = ["ProblemToFix", "plain_failure_line", "quiet_problem_tracebacks"]


class ProblemToFix(AirflowFailException):
    """A failure no retry can fix; its message names the problem and the fix.

    Raise it ``from`` the original error (callbacks find that as ``__cause__``). Making one
    puts :func:`plain_failure_line` in place, so its line in the log is the message alone.
    """

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        quiet_problem_tracebacks()


def _problem(exc_info: Any) -> ProblemToFix | None:
    """The ProblemToFix a log call's ``exc_info`` stands for, if it is one."""
    if exc_info is True:
        exc_info = sys.exc_info()[1]
    elif isinstance(exc_info, tuple) and len(exc_info) == 3:
        exc_info = exc_info[1]
    return exc_info if isinstance(exc_info, ProblemToFix) else None


def plain_failure_line(
    logger: Any, method_name: str, event_dict: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    """A structlog processor: a line logged with a :class:`ProblemToFix` becomes its message
    alone, without the traceback (the runner's "Task failed with exception")."""
    problem = _problem(event_dict.get("exc_info"))
    if problem is None:
        return event_dict
    del event_dict["exc_info"]
    event_dict.pop("positional_args", None)
    event_dict["event"] = str(problem)
    return event_dict


def quiet_problem_tracebacks() -> None:
    """Put :func:`plain_failure_line` first in structlog's processors (idempotent).

    The list is changed in place: structlog loggers already in use, the task runner's among
    them, hold that same list. If logging was configured some other way (not a list), nothing
    changes and the failure keeps Airflow's traceback.
    """
    processors = structlog.get_config()["processors"]
    if isinstance(processors, list) and plain_failure_line not in processors:
        processors.insert(0, plain_failure_line)
