"""What a command prints: a compact aligned table for a person at a terminal, JSON for everyone else.

JSON is printed when stdout is not a terminal (a pipe, a file, a test) or with `--json`; it is the
document the matching admin route answers (a list command prints the list itself). A table never
shows a secret, except one that exists only now (a new key's `key`, a new operator's `token`),
which is printed below the table and said to be shown once.

Commands do not print: they return an `Output`, which the runner prints once the command's unit of
work is over (app/cli/running.py), so a reader that goes away early cannot undo a change.
"""

from __future__ import annotations

import json
import re
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

# Fields a table leaves out: readable with --json by whoever may read them, never on a screen.
SECRET_FIELDS = frozenset({"webhook_secret", "previous_webhook_secret"})
_INSTANT = re.compile(r"^(\d{4}-\d\d-\d\d)T(\d\d:\d\d:\d\d)(?:\.\d+)?(?:Z|[+-]00:?00)$")
_NUMBER = re.compile(r"^-?\d+(?:\.\d+)?$")

Column = str | tuple[str, str]  # a field (dotted for nested ones), or (heading, field)


@dataclass(frozen=True)
class Output:
    """A command's result: `document` is the JSON; `rows` (a list) or the document (an object) make
    the table. `once` names secret fields shown this one time; `status` is the exit status."""

    document: Any
    columns: Sequence[Column] = ()
    rows: Sequence[Mapping[str, Any]] | None = None
    once: Sequence[str] = ()
    status: int = 0
    table: Callable[[], str] | None = None  # a table of its own (e.g. the reconciliation's)
    empty: str = "(none)"
    raw: str | None = None  # printed as it is, wherever stdout goes (CSV asked for by name)
    force_json: bool = False  # JSON asked for by the command's own option (`--format json`)


def jsonable(value: Any) -> Any:
    """A pydantic model (or a list of them) as the admin API renders it."""
    if isinstance(value, BaseModel):
        return value.model_dump(mode="json")
    if isinstance(value, list):
        return [jsonable(item) for item in value]
    return value


def emit(output: Output, *, as_json: bool) -> None:
    if output.raw is not None:
        sys.stdout.write(output.raw)
    elif as_json or output.force_json or not sys.stdout.isatty():
        print(json.dumps(jsonable(output.document), indent=2, default=str))
    elif output.table is not None:
        print(output.table())
    elif output.rows is not None or isinstance(output.document, list):
        rows = output.rows if output.rows is not None else jsonable(output.document)
        print(rows_table(rows, output.columns) if rows else output.empty)
    else:
        print(record_table(jsonable(output.document), output.once))


def rows_table(rows: Sequence[Mapping[str, Any]], columns: Sequence[Column]) -> str:
    """One line per row under a heading line; numbers right-aligned, everything else left."""
    named = [(c, c) if isinstance(c, str) else c for c in columns] or [
        (k, k) for k in rows[0] if k not in SECRET_FIELDS
    ]
    lines = [[heading.upper() for heading, _ in named]]
    lines += [[cell(pick(row, path)) for _, path in named] for row in rows]
    widths = [max(len(line[i]) for line in lines) for i in range(len(named))]
    numeric = [all(_NUMBER.match(line[i]) or line[i] == "-" for line in lines[1:]) for i in range(len(named))]
    return "\n".join(
        "  ".join(
            text.rjust(width) if numeric[i] and n else text.ljust(width)
            for i, (text, width) in enumerate(zip(line, widths, strict=True))
        ).rstrip()
        for n, line in enumerate(lines)
    )


def record_table(record: Mapping[str, Any], once: Sequence[str] = ()) -> str:
    """One object as `field  value` lines; secrets left out, those shown once set apart below."""
    shown = [(name, value) for name, value in record.items() if name not in SECRET_FIELDS and name not in once]
    width = max([len(name) for name, _ in shown] + [len(name) for name in once] + [1])
    lines = [f"{name.ljust(width)}  {cell(value)}" for name, value in shown]
    hidden = [name for name in record if name in SECRET_FIELDS]
    if hidden:
        lines.append(f"({', '.join(hidden)}: not shown on a terminal; --json prints it)")
    for name in once:
        lines += [
            "",
            f"{name.ljust(width)}  {record[name]}",
            f"{' ' * width}  ^ shown once: store it now, it cannot be shown again",
        ]
    return "\n".join(lines)


def pick(row: Mapping[str, Any], path: str) -> Any:
    value: Any = row
    for part in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(part)
    return value


def cell(value: Any) -> str:
    """A value in one short line: '-' for nothing, lists joined, objects as k=v pairs."""
    if value is None or value == "":
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, str):
        instant = _INSTANT.match(value)
        return f"{instant[1]} {instant[2]}" if instant else value
    if isinstance(value, list):
        return ",".join(cell(item) for item in value) if value else "-"
    if isinstance(value, Mapping):
        return " ".join(f"{k}={cell(v)}" for k, v in value.items()) if value else "-"
    return str(value)
