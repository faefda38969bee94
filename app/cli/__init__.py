"""The `image-gateway` command (also `python -m app`).

Only light modules are imported at module level, here and in the command modules. With
`serve --workers N` this process is uvicorn's supervisor, which never handles a request: importing
the services, models, SQLAlchemy and the app would cost it ~100 MB RSS for nothing (and the
spawned workers re-import this package too). Each command imports what it needs when it runs.

- `processes.py`: serve, worker, migrate (`health.py`: `worker --check`, a container healthcheck);
- `operators.py`: accounts, keys, channels;
- `finance.py`: usage report and exports, provider reconciliation, ledger check and export;
- `secrets.py`: checking and rotating the encryption of channel secrets;
- `alerts.py`: the alerts sent to GATEWAY_ALERT_URL;
- `running.py`: what they share (settings, database units of work, output).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from app.cli import alerts, finance, operators, processes, secrets
from app.errors import GatewayError


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "run"):
        parser.print_help()
        return 2
    try:
        result: int = args.run(args)
        return result
    except GatewayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="image-gateway", description="Image Gateway server and operator tools.")
    commands = parser.add_subparsers(title="commands")
    processes.add_commands(commands)
    operators.add_commands(commands)
    finance.add_commands(commands)
    secrets.add_commands(commands)
    alerts.add_commands(commands)
    return parser
