"""Every exception the product raises on purpose, in one module, and how to read AWS's.

Every error says which thing is wrong (an attribute path, a file and line, a table) and,
where there is one, what fixes it. Callers catch the narrowest class they can handle.

Each class says whether trying again can help (:attr:`DynamoLakeError.retryable`): a
store that throttled or a lease another run holds may be gone on the next attempt; a bad
configuration, a corrupt export or a failed AWS export will not be. The Airflow layer turns
the permanent ones into failures that skip the task's retries.
"""

from __future__ import annotations

from typing import Any, ClassVar

__all__ = [
    "CatalogError",
    "CatalogUnavailableError",
    "ConfigError",
    "DuplicateEventsError",
    "DynamoLakeError",
    "ExportFailedError",
    "ExportFormatError",
    "ExportIntegrityError",
    "ExportLimitError",
    "ExportWindowError",
    "InvalidItemError",
    "InvalidRecordError",
    "LakeReadError",
    "LakeWriteError",
    "LeaseHeldError",
    "PitrUnavailableError",
    "PublishFailedError",
    "SourceError",
    "StateConflictError",
    "StateError",
    "StorageError",
    "UnreadableRecordError",
    "aws_error_code",
    "aws_error_message",
]


def aws_error_code(exc: BaseException) -> str:
    """The error code of a botocore ``ClientError`` (``""`` for anything else)."""
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Code", ""))


def aws_error_message(exc: BaseException) -> str:
    """The message AWS gave with a ``ClientError`` (``""`` for anything else)."""
    response: Any = getattr(exc, "response", None)
    if not isinstance(response, dict):
        return ""
    return str(response.get("Error", {}).get("Message", ""))


class DynamoLakeError(Exception):
    """Base class of every error this package raises on purpose. Permanent by default."""

    #: Whether running the same step again may succeed.
    retryable: ClassVar[bool] = False


# --- items and export content ------------------------------------------------------------


class InvalidItemError(DynamoLakeError, ValueError):
    """A DynamoDB JSON item (or attribute value) cannot be decoded.

    ``path`` names the attribute, e.g. ``$.Authors.SS[1]`` or ``$.info.M.tags.L[0]``.
    """

    def __init__(self, path: str, reason: str) -> None:
        self.path = path
        self.reason = reason
        super().__init__(f"invalid DynamoDB attribute at {path}: {reason}")

    def __reduce__(self) -> tuple[type[InvalidItemError], tuple[str, str]]:
        # Errors cross process boundaries (conversion workers); pickle rebuilds them with
        # the constructor's arguments, not with ``args`` (the formatted message).
        return type(self), (self.path, self.reason)


class InvalidRecordError(DynamoLakeError, ValueError):
    """An export line or stream record lacks what a CDC row needs (keys, images, times)."""


class ExportFormatError(DynamoLakeError):
    """An export's manifests are missing, malformed or of a format we do not read."""


class ExportIntegrityError(DynamoLakeError):
    """An export's content does not match its manifests (md5, item count, gzip, a line).

    ``location`` names the file and, where known, the line: ``s3://b/k/data/x.json.gz:17``.
    """

    def __init__(self, location: str, reason: str) -> None:
        self.location = location
        self.reason = reason
        super().__init__(f"{location}: {reason}")

    def __reduce__(self) -> tuple[type[ExportIntegrityError], tuple[str, str]]:
        return type(self), (self.location, self.reason)


# --- configuration and the source table --------------------------------------------------


class ConfigError(DynamoLakeError):
    """The tables file is missing, malformed, or names something impossible."""


class SourceError(DynamoLakeError):
    """The table or a bucket named in the configuration cannot be used."""


class PitrUnavailableError(SourceError):
    """Point-in-time recovery is off for the table."""


class ExportWindowError(DynamoLakeError):
    """Requested export times lie outside what PITR can export, or are malformed."""


class ExportFailedError(DynamoLakeError):
    """DynamoDB reported the export FAILED, or refused to start it for good."""


class ExportLimitError(DynamoLakeError):
    """DynamoDB refused to start an export for now (too many concurrent exports)."""

    retryable = True


# --- the lake and its stores ---------------------------------------------------------------


class StorageError(DynamoLakeError):
    """A local path or S3 object cannot be resolved, read or written (after retries)."""

    retryable = True


class LeaseHeldError(StorageError):
    """Another writer holds the lease (and it has not expired): try again after it."""


class LakeReadError(DynamoLakeError):
    """A file in a lake table's folders is not the contract's Parquet (a foreign or broken
    file), or its rows lack what a reader needs (a key attribute): no retry can fix it."""


class LakeWriteError(DynamoLakeError):
    """Rows cannot be written to, or published in, the lake as asked (a wrong request)."""


class PublishFailedError(LakeWriteError):
    """A publish failed on the store and was undone: running it again may succeed."""

    retryable = True


class DuplicateEventsError(DynamoLakeError):
    """The lake already holds the events an export would add (the same moment or window)."""


class UnreadableRecordError(DynamoLakeError):
    """A backfill record or reconciliation report in the lake is not what its contract says
    (not JSON, or a field missing or of the wrong type)."""


class CatalogError(DynamoLakeError):
    """The Glue catalog cannot hold the lake table as the contract says."""


class CatalogUnavailableError(CatalogError):
    """Glue did not answer (throttled, or a 5xx): running the step again may succeed."""

    retryable = True


# --- the current state ---------------------------------------------------------------------


class StateError(DynamoLakeError):
    """The current-state table cannot be created, merged or read as asked (a watermark
    before the state's, a table of another shape at its name, a lake file out of place)."""


class StateConflictError(StateError):
    """Another merge committed to the current-state table first: running again merges on
    top of it."""

    retryable = True
