"""`python -m local_aws --port N`: run the local AWS stack in the foreground until Ctrl-C."""

from __future__ import annotations

import argparse
import dataclasses
import os
import signal
import sys
import threading
from types import FrameType

from local_aws.server import LocalAws, connection_help
from local_aws.settings import EmulatorSettings

DEFAULT_PORT = 4566


def parse_arguments(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m local_aws",
        description="Local AWS (moto server + AWS-faithful DynamoDB exports) on 127.0.0.1.",
    )
    parser.add_argument(
        "--port",
        type=int,
        default=int(os.environ.get("PORT", DEFAULT_PORT)),
        help=f"port on 127.0.0.1 (default: $PORT or {DEFAULT_PORT}; 0 picks a free one)",
    )
    parser.add_argument("--verbose", action="store_true", help="log every request")
    defaults = EmulatorSettings()
    for field in dataclasses.fields(EmulatorSettings):
        default = getattr(defaults, field.name)
        parser.add_argument(
            f"--{field.name.replace('_', '-')}",
            dest=field.name,
            type=type(default),
            default=default,
            help=f"emulator setting (default: {default})",
        )
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    arguments = parse_arguments(argv)
    settings = EmulatorSettings(
        **{f.name: getattr(arguments, f.name) for f in dataclasses.fields(EmulatorSettings)}
    )
    stack = LocalAws(port=arguments.port, settings=settings, quiet=not arguments.verbose)
    try:
        stack.start()
    except OSError as error:
        print(f"local_aws: cannot listen on 127.0.0.1:{arguments.port}: {error}", file=sys.stderr)
        return 1
    stopping = threading.Event()

    def request_stop(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, request_stop)
    signal.signal(signal.SIGTERM, request_stop)
    print(connection_help(stack.endpoint_url), flush=True)
    while not stopping.wait(timeout=1.0):
        pass
    stack.stop()
    print("local_aws stopped", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
