"""`make lambda-zip`: the Firehose transformation Lambda's deployable zip, with its dependencies.

The zip holds the handler and the part of the core it imports (``dynamo_lake/__init__``,
``cdc``, ``codec``, ``errors``, ``firehose_lambda``) and orjson, the one third-party package
they need, copied from the project's virtualenv so the version is the lock's. orjson is a
compiled extension: the copy is usable only on the platform it was built for, so the build
refuses unless the installed wheel is CPython 3.11 manylinux for the target architecture
(Lambda runtime ``python3.11``; ``x86_64`` by default, ``arm64`` when asked and installed).

The zip is reproducible: entries sorted, fixed timestamps and permissions, so the same
sources give the same bytes (and CloudFormation sees a change only when there is one).
Handler: ``dynamo_lake.firehose_lambda.handler``.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import zipfile
from importlib import metadata
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "include" / "dynamo_lake"
#: What the handler imports from the core; nothing else of the product goes in.
CORE_MODULES = (
    "__init__.py",
    "cdc.py",
    "codec.py",
    "contract.py",
    "errors.py",
    "firehose_lambda.py",
)
DEPENDENCIES = ("orjson",)
HANDLER = "dynamo_lake.firehose_lambda.handler"
_FIXED_TIME = (1980, 1, 1, 0, 0, 0)
_WHEEL_ARCH = {"x86_64": "x86_64", "arm64": "aarch64"}


class BuildError(RuntimeError):
    """The zip cannot be built as asked; the message says why and what to do."""


def _check_wheel_tags(distribution: metadata.Distribution, architecture: str) -> None:
    wheel = distribution.read_text("WHEEL") or ""
    tags = [line.split(":", 1)[1].strip() for line in wheel.splitlines() if line.startswith("Tag:")]
    wanted = _WHEEL_ARCH[architecture]
    if tags and not any(
        tag.startswith("cp311-") and "manylinux" in tag and tag.endswith(wanted) for tag in tags
    ):
        raise BuildError(
            f"{distribution.metadata['Name']} {distribution.version} is installed for {tags}, "
            f"but Lambda python3.11 on {architecture} needs a cp311 manylinux {wanted} wheel: "
            f"build on such a machine, or install one with `pip install --target <dir> "
            f"--platform manylinux2014_{wanted} --only-binary=:all: --python-version 3.11 "
            f"{distribution.metadata['Name']}=={distribution.version}`"
        )


def _dependency_files(name: str, architecture: str) -> list[tuple[str, Path]]:
    try:
        distribution = metadata.distribution(name)
    except metadata.PackageNotFoundError:
        raise BuildError(f"{name} is not installed: run `make venv` first") from None
    _check_wheel_tags(distribution, architecture)
    files: list[tuple[str, Path]] = []
    for entry in distribution.files or []:
        path = Path(str(distribution.locate_file(entry)))
        relative = entry.as_posix()
        if relative.startswith("..") or "__pycache__" in relative or not path.is_file():
            continue  # console scripts outside site-packages, bytecode caches
        files.append((relative, path))
    if not files:
        raise BuildError(f"{name}'s installed files cannot be listed (no RECORD)")
    return files


def lambda_files(architecture: str = "x86_64") -> list[tuple[str, Path]]:
    """(name in the zip, source file) for everything the Lambda needs, sorted by name."""
    files = [(f"dynamo_lake/{module}", PACKAGE / module) for module in CORE_MODULES]
    for name in DEPENDENCIES:
        files.extend(_dependency_files(name, architecture))
    return sorted(files)


def build(output: Path, architecture: str = "x86_64") -> str:
    """Write the zip to ``output``; return its SHA-256 (hex)."""
    if architecture not in _WHEEL_ARCH:
        raise BuildError(f"architecture must be one of {', '.join(_WHEEL_ARCH)}")
    output.parent.mkdir(parents=True, exist_ok=True)
    temporary = output.with_name(f".{output.name}.tmp")
    with zipfile.ZipFile(temporary, "w", compression=zipfile.ZIP_DEFLATED) as archive:
        for name, source in lambda_files(architecture):
            info = zipfile.ZipInfo(name, date_time=_FIXED_TIME)
            info.compress_type = zipfile.ZIP_DEFLATED
            executable = source.suffix == ".so"
            info.external_attr = (0o755 if executable else 0o644) << 16
            archive.writestr(info, source.read_bytes())
    temporary.replace(output)
    return hashlib.sha256(output.read_bytes()).hexdigest()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="build_lambda_zip.py", description=__doc__)
    parser.add_argument("--output", type=Path, default=ROOT / "build" / "lambda.zip")
    parser.add_argument("--architecture", choices=sorted(_WHEEL_ARCH), default="x86_64")
    options = parser.parse_args(argv)
    try:
        digest = build(options.output, options.architecture)
    except BuildError as exc:
        print(f"build_lambda_zip: {exc}", file=sys.stderr)
        return 1
    size = options.output.stat().st_size
    print(f"{options.output} ({size:,} bytes, sha256 {digest}); handler {HANDLER}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
