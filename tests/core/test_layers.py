"""The house rules, checked on the source: the core never imports Airflow, light modules stay
light, and no module reaches into another's private names."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
PACKAGE = REPO / "include" / "dynamo_lake"
SOURCES = sorted([*PACKAGE.rglob("*.py"), *(REPO / "dags").glob("*.py")])


def _module(path: Path) -> str:
    if path.is_relative_to(PACKAGE):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)
    return f"dags.{path.stem}"


def _imports(path: Path) -> list[tuple[str, list[str]]]:
    found = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.ImportFrom) and node.module:
            found.append((node.module, [alias.name for alias in node.names]))
        elif isinstance(node, ast.Import):
            found += [(alias.name, []) for alias in node.names]
    return found


# A private module and the one module that owns it: the compiled codec is codec.py's
# implementation (everyone else goes through dynamo_lake.codec).
PRIVATE_MODULE_OWNERS = {("dynamo_lake.codec", "dynamo_lake", "_fastcodec")}


@pytest.mark.parametrize("path", SOURCES, ids=lambda path: _module(path))
def test_no_module_imports_another_modules_private_names(path: Path) -> None:
    here = _module(path)
    for module, names in _imports(path):
        if not module.startswith("dynamo_lake") or module == here:
            continue
        private = [
            name
            for name in names
            if name.startswith("_") and (here, module, name) not in PRIVATE_MODULE_OWNERS
        ]
        assert not private, f"{here} imports {private} from {module}"


@pytest.mark.parametrize(
    "path",
    [path for path in SOURCES if path.is_relative_to(PACKAGE) and "airflow" not in path.parts],
    ids=lambda path: _module(path),
)
def test_the_core_never_imports_airflow(path: Path) -> None:
    for module, _ in _imports(path):
        assert not module.startswith(("airflow", "dynamo_lake.airflow")), (
            f"{_module(path)} imports {module}: only dynamo_lake.airflow may"
        )


@pytest.mark.parametrize(
    ("module", "forbidden"),
    [
        # DAG files parse these; the Lambda zip holds the stream side's.
        ("dynamo_lake.contract", ("pyarrow", "yaml", "boto3", "duckdb")),
        ("dynamo_lake.config", ("pyarrow", "boto3", "duckdb")),
        ("dynamo_lake.records", ("pyarrow", "yaml", "boto3", "duckdb")),
        ("dynamo_lake.exports.api", ("pyarrow", "yaml", "duckdb")),
        ("dynamo_lake.firehose_lambda", ("pyarrow", "yaml", "boto3", "botocore", "duckdb")),
        ("dynamo_lake.airflow.params", ("pyarrow", "duckdb", "dynamo_lake.storage")),
    ],
)
def test_light_modules_stay_light(module: str, forbidden: tuple[str, ...]) -> None:
    script = (
        f"import sys, {module}\n"
        f"print(sorted(name for name in sys.modules if name.split('.')[0] in {forbidden!r} "
        f"or name in {forbidden!r}))"
    )
    done = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, check=True, timeout=120
    )
    assert done.stdout.strip() == "[]", f"{module} loads {done.stdout.strip()}"
