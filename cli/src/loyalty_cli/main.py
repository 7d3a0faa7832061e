"""The ``loyalty`` command. Each subcommand lives in its own module with a ``register`` function."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from loyalty_cli import chaos, dev, dlq, schemas, simulate


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="loyalty", description="Event-driven loyalty platform: run it, feed it, inspect it."
    )
    sub = parser.add_subparsers(dest="command", required=True)
    for module in (dev, simulate, chaos, dlq, schemas):
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    result: int = args.func(args)
    return result


if __name__ == "__main__":
    sys.exit(main())
