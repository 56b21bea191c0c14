"""`make lambda-zip`: the zip alone (no virtualenv) runs the handler on the seed's event."""

from __future__ import annotations

import json
import subprocess
import sys
import zipfile
from pathlib import Path

from build_lambda_zip import HANDLER, build
from test_firehose_lambda import SEED_EVENT

RUN_HANDLER = """
import importlib, json, sys
module, _, name = sys.argv[1].rpartition(".")
handler = getattr(importlib.import_module(module), name)
print(json.dumps(handler(json.loads(sys.stdin.read()), None)))
"""


def test_the_zip_is_self_contained_and_reproducible(tmp_path: Path) -> None:
    first = build(tmp_path / "a" / "lambda.zip")
    second = build(tmp_path / "b" / "lambda.zip")
    assert first == second
    names = zipfile.ZipFile(tmp_path / "a" / "lambda.zip").namelist()
    assert "dynamo_lake/firehose_lambda.py" in names
    assert not any(
        name.startswith(("dynamo_lake/lake/", "dynamo_lake/exports/", "pyarrow", "boto"))
        for name in names
    )
    # The Lambda stays pure Python: the compiled codec (built in place for development) is
    # never packed, and the handler selects the pure codec without it.
    assert not [name for name in names if name.startswith("dynamo_lake/_fastcodec")]
    unpacked = tmp_path / "task"  # what Lambda puts in /var/task
    zipfile.ZipFile(tmp_path / "a" / "lambda.zip").extractall(unpacked)
    # -I -S: no site-packages, no user paths, no PYTHONPATH: only the zip's content.
    completed = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            "-c",
            f"import sys; sys.path.insert(0, {str(unpacked)!r})\n" + RUN_HANDLER,
            HANDLER,
        ],
        input=json.dumps(SEED_EVENT),
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )
    assert completed.returncode == 0, completed.stderr
    (answer,) = json.loads(completed.stdout)["records"]
    assert (answer["recordId"], answer["result"]) == ("496200", "Ok")
