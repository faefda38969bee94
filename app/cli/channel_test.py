"""`channels test NAME`: what `POST /admin/channels/{id}/test` does, from the command line. It
needs the adapters and their HTTP clients, so it opens the gateway's runtime for the one call."""

from __future__ import annotations

import argparse
import asyncio
import dataclasses

from app.cli.output import Output, emit
from app.cli.running import opened_settings


def run_channel_test(args: argparse.Namespace) -> int:
    from app.runtime import open_gateway

    async def test() -> Output:
        # A change: the call is recorded as a test attempt (and the provider bills it).
        settings = await opened_settings(changes=True)
        async with open_gateway(settings) as gateway:
            result = await gateway.channel_tests.test(args.channel, args.model)
        return Output(dataclasses.asdict(result), status=0 if result.ok else 1)

    output = asyncio.run(test())
    emit(output, as_json=bool(getattr(args, "json", False)))
    return output.status
