"""Long-running processes: the API server, standalone task workers, and migrating."""

from __future__ import annotations

import argparse
import asyncio
import logging.config
import math
import subprocess
import sys
from typing import TYPE_CHECKING

from app.cli.running import migrate, settings_with_data_dir
from app.observability.logs import log_config
from app.settings import Settings

if TYPE_CHECKING:
    from app.cli.running import Subcommands


def add_commands(commands: Subcommands) -> None:
    serve = commands.add_parser("serve", help="run the API (and an in-process task worker)")
    serve.add_argument("--host", default="127.0.0.1")
    serve.add_argument("--port", type=int, default=8000)
    serve.add_argument("--workers", type=int, default=1, help="API worker processes")
    serve.set_defaults(run=cmd_serve)
    commands.add_parser("migrate", help="apply database migrations").set_defaults(run=cmd_migrate)
    worker = commands.add_parser("worker", help="run task workers (no HTTP) until SIGTERM")
    worker.add_argument(
        "--check",
        action="store_true",
        help="only check that the database (and Redis, when configured) answer, exit 0 or 1: a worker's "
        "container healthcheck, since a worker serves no HTTP",
    )
    worker.set_defaults(run=cmd_worker)


def cmd_serve(args: argparse.Namespace) -> int:
    import uvicorn

    settings = settings_with_data_dir()
    if settings.auto_migrate:
        if args.workers > 1:
            # The supervisor only supervises: migrating in it would keep alembic and every model
            # in its memory (~36 MB) for its whole life, so a short-lived child does it.
            migrated = subprocess.run([sys.executable, "-m", "app", "migrate"], check=False)
            if migrated.returncode != 0:
                return migrated.returncode
        else:
            asyncio.run(migrate(settings))
    # The app is named by import string, so with workers > 1 only the workers import it.
    uvicorn.run(
        "app.main:create_app_from_env",
        factory=True,
        host=args.host,
        port=args.port,
        workers=args.workers,
        proxy_headers=True,
        log_config=log_config(settings.log_level),
        # SIGTERM: stop accepting, give in-flight requests this long, then run the lifespan's
        # shutdown (which puts running tasks back on the queue).
        timeout_graceful_shutdown=math.ceil(settings.shutdown_grace_s) or None,
    )
    return 0


def cmd_worker(args: argparse.Namespace) -> int:
    if args.check:
        from app.cli.health import dependencies_answer

        return asyncio.run(dependencies_answer(Settings()))
    from app.cli.worker import run_worker
    from app.memory import tune_malloc

    tune_malloc()
    settings = settings_with_data_dir()
    logging.config.dictConfig(log_config(settings.log_level))
    if settings.auto_migrate:
        asyncio.run(migrate(settings))
    asyncio.run(run_worker(settings))
    return 0


def cmd_migrate(args: argparse.Namespace) -> int:
    asyncio.run(migrate(settings_with_data_dir()))
    print("database is up to date")
    return 0
