"""The `image-gateway` command (also `python -m app`).

Only light modules are imported at module level, here and in the command modules. With
`serve --workers N` this process is uvicorn's supervisor, which never handles a request: importing
the services, models, SQLAlchemy and the app would cost it ~100 MB RSS for nothing (and the
spawned workers re-import this package too). Each command imports what it needs when it runs.

- `processes.py`: serve, worker, migrate (`health.py`: `worker --check`, a container healthcheck);
- `accounts.py`: accounts and keys; `catalog.py`: models and channels (`channel_test.py`);
- `operators.py`: operators and the audit log; `requests.py`: the request log;
- `finance.py`: usage report and exports, provider reconciliation, ledger check and export;
- `secrets.py`: checking and rotating the encryption of channel secrets;
- `alerts.py`: the alerts sent to GATEWAY_ALERT_URL; `config.py`: config as code (apply, export);
- `config.py`: config as code, `config apply FILE` and `config export`;
- `running.py`: what they share (settings, the database and its check, printing after the commit);
  `output.py` (tables and JSON), `lookup.py` (names or ids), `options.py` (option values).

Exit status: 0 done; 1 the gateway refused (`error: …`: unknown name, conflict, a failed check);
2 a usage error (a wrong option, a value the admin API's schema refuses); 141 stdout was closed
before everything was printed (as for any program killed by SIGPIPE, `yes | head`) — a change is
committed before anything is printed, so it stands.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from app.cli import accounts, alerts, catalog, config, finance, operators, processes, requests, secrets
from app.cli.options import validation_message
from app.cli.running import Run, Stop
from app.errors import GatewayError

CLOSED_PIPE = 141  # 128 + SIGPIPE: what a shell reports for a writer whose reader went away


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # a usage error (printed by argparse, exit 2) or --help (exit 0)
        return exc.code if isinstance(exc.code, int) else 2
    if not hasattr(args, "run"):
        parser.print_help(sys.stderr)
        return 2
    try:
        status: int = args.run(args)
        sys.stdout.flush()  # inside the try: a closed pipe must surface here, not at exit
        return status
    except BrokenPipeError:
        _quiet_stdout()
        return CLOSED_PIPE
    except Stop as exc:
        print(exc.message, file=sys.stderr)
        return exc.status
    except GatewayError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 1
    except ValidationError as exc:
        print(f"error: {validation_message(exc.errors())}", file=sys.stderr)
        return 2
    except ValueError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2


def _quiet_stdout() -> None:
    """The reader went away: point stdout at /dev/null, so that flushing it again at exit cannot
    fail a second time and print a traceback (the recipe of the `signal` module's docs)."""
    try:
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a file (in-process callers)
        pass


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="image-gateway", description="Image Gateway server and operator tools.")
    parser.add_argument("--json", action="store_true", help="print JSON, also on a terminal (the default elsewhere)")
    commands = parser.add_subparsers(title="commands")
    processes.add_commands(commands)
    accounts.add_commands(commands)
    catalog.add_commands(commands)
    operators.add_commands(commands)
    requests.add_commands(commands)
    finance.add_commands(commands)
    secrets.add_commands(commands)
    alerts.add_commands(commands)
    config.add_commands(commands)
    _everywhere(parser)
    return parser


def _everywhere(parser: argparse.ArgumentParser) -> None:
    """`--json` after any command too (it sets the global flag; absent, it leaves it alone), and a
    group named without its command (`image-gateway keys`) prints that group's help."""
    groups = [action for action in parser._actions if isinstance(action, argparse._SubParsersAction)]
    for group in groups:
        for sub in set(group.choices.values()):
            if any(isinstance(a, argparse._SubParsersAction) for a in sub._actions):
                sub.set_defaults(run=_help_of(sub))
                _everywhere(sub)
            elif "--json" in sub._option_string_actions:
                sub._option_string_actions["--json"].default = argparse.SUPPRESS  # keeps a global --json
            else:
                sub.add_argument("--json", action="store_true", default=argparse.SUPPRESS, help="print JSON")


def _help_of(parser: argparse.ArgumentParser) -> Run:
    def show(_: argparse.Namespace) -> int:
        parser.print_help(sys.stderr)
        return 2

    return show
