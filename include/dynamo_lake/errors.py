"""Narrow exception classes for the whole product, in one module.

Every error says which thing is wrong (an attribute path, a file and line, a table) and,
where there is one, what fixes it. Callers catch the narrowest class they can handle.
"""

from __future__ import annotations


class DynamoLakeError(Exception):
    """Base class of every error this package raises on purpose."""


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


class LakeWriteError(DynamoLakeError):
    """Rows could not be written to, or published in, the lake."""


class StorageError(DynamoLakeError):
    """A local path or S3 URI cannot be resolved or read."""


class DuplicateEventsError(DynamoLakeError):
    """The lake already holds the events an export would add (the same moment or window)."""
