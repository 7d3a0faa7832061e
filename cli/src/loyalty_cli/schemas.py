"""``loyalty schemas``: export the event JSON Schemas and the AsyncAPI document, or check them.

``loyalty schemas`` (re)writes ``schemas/`` under the current directory; ``loyalty schemas --check``
exports to a temporary directory and exits 1, listing the files that differ or are missing, when
the committed files are stale (for CI).
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

from loyalty_shared.schemas import export_all

DEFAULT_OUT = Path("schemas")


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser(
        "schemas",
        help="export the event JSON Schemas and the AsyncAPI document",
        description=(
            "Write one JSON Schema (draft 2020-12) per event type and an AsyncAPI 3.0 document "
            "for the topics. With --check, write nothing and exit 1 if the files are stale."
        ),
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=DEFAULT_OUT,
        help="output directory (default: ./schemas)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="compare OUT with a fresh export; exit 1 listing files that differ or are missing",
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    out: Path = args.out
    if args.check:
        return check(out)
    for path in export_all(out):
        print(path)
    return 0


def stale_files(out: Path) -> list[str]:
    """Problems with ``out`` compared with a fresh export, one line each; empty when up to date."""
    problems: list[str] = []
    with tempfile.TemporaryDirectory(prefix="loyalty-schemas-") as tmp:
        fresh_root = Path(tmp)
        for fresh in export_all(fresh_root):
            relative = fresh.relative_to(fresh_root)
            committed = out / relative
            if not committed.is_file():
                problems.append(f"missing: {committed}")
            elif committed.read_bytes() != fresh.read_bytes():
                problems.append(f"differs: {committed}")
    return problems


def check(out: Path) -> int:
    problems = stale_files(out)
    if not problems:
        print(f"{out}: schemas are up to date")
        return 0
    for line in problems:
        print(line, file=sys.stderr)
    print(
        f"{len(problems)} schema file(s) out of date; run `loyalty schemas --out {out}` "
        "and commit the result",
        file=sys.stderr,
    )
    return 1
