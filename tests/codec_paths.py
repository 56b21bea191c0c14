"""Which codec paths the tests can run: the pure one always, the compiled one where it is
built. A module of its own (not ``conftest``): test modules import it by a name no other
folder's ``conftest`` shadows."""

from __future__ import annotations

from types import ModuleType

NOT_BUILT = (
    "the compiled codec (dynamo_lake._fastcodec) is not built: `make build-ext` needs a C "
    "compiler and the headers of Python and OpenSSL; the pure codec is tested alone"
)


def compiled_codec_module() -> ModuleType | None:
    """The compiled codec if it is built (whatever DYNAMO_LAKE_PURE_CODEC says), else None."""
    try:
        from dynamo_lake import _fastcodec
    except ImportError:
        return None
    return _fastcodec
