"""``python -m tiers_service migrate|serve``."""

from __future__ import annotations

import argparse
import os
import sys

from tiers_service.migrate import upgrade


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="tiers_service")
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("migrate", help="apply the database migrations (alembic upgrade head)")
    serve = sub.add_parser("serve", help="serve REST and consume events")
    serve.add_argument("--host", default="0.0.0.0")
    serve.add_argument("--port", type=int, default=8002)
    serve.add_argument(
        "--workers",
        type=int,
        default=int(os.environ.get("LOYALTY_WORKERS", "1")),
        help="processes; each consumes its share of the partitions (default: LOYALTY_WORKERS or 1)",
    )
    args = parser.parse_args(argv)
    if args.command == "migrate":
        upgrade()
        return 0
    import uvicorn

    uvicorn.run(
        "tiers_service.app:build_app",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        log_config=None,
        access_log=False,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
