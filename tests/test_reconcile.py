"""Reconciling a provider's own usage file against a channel's billable calls (issue 15, item 3):
real traffic through the gateway to fake upstreams (a failover, a timeout), then the provider's
file as finance would upload it, over the admin API and `image-gateway usage reconcile`."""

from __future__ import annotations

import asyncio
import csv
import io
import os
import pty
import subprocess
from collections.abc import AsyncIterator
from dataclasses import dataclass
from datetime import date, timedelta
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from app.billing.reconcile import OurUsage, ProviderUsage, compare, parse_provider_csv
from app.settings import Settings
from tests.support.fakes.channels import Upstreams, ok, status
from tests.support.fakes.upstream import FakeUpstream, Received, Reply
from tests.support.harness import Harness, running_app
from tests.support.processes import cli, gateway_command, gateway_env

STANDARD = "imagen-4.0-generate-001"
FAST = "imagen-4.0-fast-generate-001"


@dataclass
class Month:
    """The gateway after a day of traffic on channel `vendor` (and `flaky`, which always fails)."""

    gw: Harness
    day: date  # the UTC day the calls were made, as the attempt export records it
    env: dict[str, str]  # for `image-gateway` run against the same database


def vendor(received: Received) -> Reply:
    # A prompt "slow" outlasts the channel's timeout (1 s): the upstream may still make and bill
    # it. Its answer is done before the fake server's graceful shutdown (1 s) would cut it off.
    if received.json["instances"][0]["prompt"] == "slow":
        return Reply(json=ok(received).json, delay_s=1.5)
    return ok(received)


@pytest.fixture
async def month(settings: Settings, upstream: FakeUpstream, database_url: str, tmp_path: Path) -> AsyncIterator[Month]:
    async with running_app(settings) as gw:
        local = await gw.local_channel()
        await gw.admin("PATCH", f"/admin/channels/{local['id']}", json={"enabled": False})
        ups = Upstreams(upstream)
        await ups.channel(gw, "flaky", status(503), priority=10)
        ups.behaviour["vendor"] = vendor
        await gw.add_channel(
            name="vendor",
            provider="google-imagen",
            base_url=f"{upstream.url}/vendor/v1beta",
            auth={"api_key": "key-vendor"},
            models={"imagen4": STANDARD, "imagen4-fast": FAST},
            costs={STANDARD: "0.04", FAST: "0.02"},
            timeout_s=1,
        )
        _, key = await gw.account_with_key(credits=1000)
        for body, expected in (
            ({"prompt": "a", "n": 2}, 200),  # flaky 503 (not billed), then vendor: 2 images
            ({"prompt": "b"}, 200),  # the same: 1 image
            ({"prompt": "c", "n": 3, "model": "imagen4-fast"}, 200),
            ({"prompt": "slow", "n": 2, "model": "imagen4-fast"}, 504),  # ambiguous: may be billed
        ):
            response = await gw.generate(key, {"model": "imagen4", **body})
            assert response.status_code == expected, response.text
        exported = await gw.admin("GET", "/admin/attempts/export")
        days = {row["started_at"][:10] for row in csv.DictReader(io.StringIO(exported.text, newline=""))}
        assert len(days) == 1, days  # the traffic ran across midnight UTC: rerun
        env = gateway_env(database_url, tmp_path / "cli-data")
        yield Month(gw, date.fromisoformat(days.pop()), env)


async def reconcile(gw: Harness, body: str | bytes, channel: str = "vendor") -> dict[str, Any]:
    response = await gw.admin(
        "POST", "/admin/reconcile", params={"channel": channel}, content=body, headers={"content-type": "text/csv"}
    )
    assert response.status_code == 200, response.text
    result: dict[str, Any] = response.json()
    return result


def provider_file(*rows: tuple[object, ...], header: str = "date,upstream_model,images,cost") -> str:
    return "\n".join([header, *(",".join(str(cell) for cell in row) for row in rows)]) + "\n"


def summary(result: dict[str, Any]) -> list[tuple[str, str, int, int, bool]]:
    return [(r["date"], r["upstream_model"], r["ours"], r["theirs"], r["ok"]) for r in result["rows"]]


async def test_a_provider_file_that_matches_reconciles_clean(month: Month) -> None:
    gw, day = month.gw, month.day
    matching = provider_file((day, STANDARD, 3, "0.12"), (day, FAST, 3, "0.06"))

    result = await reconcile(gw, matching)
    assert result["ok"] is True
    assert (result["channel"], result["first_day"], result["last_day"]) == ("vendor", str(day), str(day))
    fast, standard = result["rows"]  # sorted by day, then upstream model
    assert (standard["upstream_model"], standard["ours"], standard["theirs"], standard["difference"]) == (
        STANDARD,
        3,
        3,
        0,
    )
    assert (standard["cost_ours"], standard["cost_theirs"], standard["cost_difference"]) == ("0.12", "0.12", "0")
    # The timed-out call is shown, not counted: finance sees why the provider may bill 2 more.
    assert (fast["ours"], fast["ambiguous"], fast["ambiguous_images"], fast["cost_ours"]) == (3, 1, 2, "0.06")

    # As a spreadsheet saves it: byte-order mark, CRLF, capitals, a blank line, an extra column,
    # one day and model over several rows (one per image size) that add up.
    body = (
        "\ufeffDate,Upstream_Model,Images,Cost,Size\r\n"
        f"{day},{STANDARD},2,0.08,1024x1024\r\n"
        f"{day},{STANDARD},1.0,0.04,2048x2048\r\n"
        "\r\n"
        f"{day},{FAST},3,0.06,1024x1024\r\n"
    )
    saved = await reconcile(gw, body.encode())
    assert saved["ok"] is True, saved
    assert saved["ignored_columns"] == ["Size"]
    assert saved["rows"] == result["rows"]

    # The failing channel's calls were all refused upstream: nothing there to bill.
    assert (await reconcile(gw, provider_file((day, STANDARD, 0, "0")), channel="flaky"))["ok"] is True

    # The same by channel id, and from the command line (exit 0, the same document as JSON).
    vendor_id = result["channel_id"]
    assert (await reconcile(gw, matching, channel=vendor_id))["rows"] == result["rows"]
    path = Path(month.env["GATEWAY_DATA_DIR"]).parent / "provider.csv"
    path.write_text(matching)
    # In a thread: the gateway's own loop must keep running (its background work holds SQLite's
    # write lock now and then, and the command must be able to wait for it).
    run = await asyncio.to_thread(cli, month.env, "usage", "reconcile", "--channel", "vendor", str(path), check=False)
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("{") and '"ok": true' in run.stdout
    # `usage attempts` writes what /admin/attempts/export answers: the calls behind these rows.
    attempts = path.with_name("attempts.csv")
    await asyncio.to_thread(cli, month.env, "usage", "attempts", "-o", str(attempts))
    assert attempts.read_bytes() == (await gw.admin("GET", "/admin/attempts/export")).content


async def test_a_missing_day_or_a_different_count_is_flagged_and_the_command_exits_1(month: Month) -> None:
    gw, day = month.gw, month.day
    before, after = day - timedelta(days=1), day + timedelta(days=1)

    # The provider's file covers the day before to the day after, but has nothing for our day.
    missing_day = provider_file((before, STANDARD, 0, "0"), (after, STANDARD, 0, "0"))
    result = await reconcile(gw, missing_day)
    assert result["ok"] is False
    assert summary(result) == [
        (str(before), STANDARD, 0, 0, True),
        (str(day), FAST, 3, 0, False),
        (str(day), STANDARD, 3, 0, False),
        (str(after), STANDARD, 0, 0, True),
    ]
    assert result["rows"][2]["cost_theirs"] is None and result["rows"][2]["difference"] == -3

    one_more = await reconcile(gw, provider_file((day, STANDARD, 4, "0.16"), (day, FAST, 3, "0.06")))
    assert [(r["upstream_model"], r["difference"], r["ok"]) for r in one_more["rows"]] == [
        (FAST, 0, True),
        (STANDARD, 1, False),
    ]
    one_less = await reconcile(gw, provider_file((day, STANDARD, 2, "0.08"), (day, FAST, 3, "0.06")))
    assert [r["ok"] for r in one_less["rows"]] == [True, False]
    a_model_we_never_called = await reconcile(
        gw, provider_file((day, STANDARD, 3, "0.12"), (day, FAST, 3, "0.06"), (day, "imagen-3.0", 1, "0.03"))
    )
    assert summary(a_model_we_never_called)[0] == (str(day), "imagen-3.0", 0, 1, False)

    # On a terminal the command prints a table with the differing rows marked, and exits 1.
    path = Path(month.env["GATEWAY_DATA_DIR"]).parent / "provider.csv"
    path.write_text(missing_day)
    code, table = await asyncio.to_thread(
        run_on_terminal, month.env, "usage", "reconcile", "--channel", "vendor", str(path)
    )
    assert code == 1, table
    lines = table.splitlines()
    assert lines[0].startswith("channel vendor") and "DIFFERS" in table
    (flagged,) = [line for line in lines if STANDARD in line and str(day) in line]
    assert flagged.split()[:5] == ["DIFFERS", str(day), STANDARD, "3", "0"]
    assert lines[-1] == "2 of 4 rows differ"


async def test_a_billed_timeout_is_explained_and_costs_count_only_when_both_sides_have_one(month: Month) -> None:
    gw, day = month.gw, month.day
    # The provider billed the 2 images of the call that timed out: explained, not flagged.
    billed_timeout = await reconcile(gw, provider_file((day, STANDARD, 3, "0.12"), (day, FAST, 5, "0.10")))
    assert billed_timeout["ok"] is True
    assert billed_timeout["rows"][0]["difference"] == 2

    # One more than even that: flagged.
    too_many = await reconcile(gw, provider_file((day, STANDARD, 3, "0.12"), (day, FAST, 6, "0.12")))
    assert summary(too_many)[0] == (str(day), FAST, 3, 6, False)
    assert too_many["ok"] is False

    dearer = await reconcile(gw, provider_file((day, STANDARD, 3, "0.13"), (day, FAST, 3, "0.06")))
    assert [(r["cost_difference"], r["ok"]) for r in dearer["rows"]] == [("0", True), ("0.01", False)]
    # Provider costs are rounded half-up to four places, our precision.
    rounded = await reconcile(gw, provider_file((day, STANDARD, 3, "0.120049"), (day, FAST, 3, "0.06")))
    assert rounded["ok"] is True and rounded["rows"][1]["cost_theirs"] == "0.12"
    # No cost column, or an empty cell: the counts alone decide.
    counts_only = provider_file((day, STANDARD, 3), (day, FAST, 3), header="date,upstream_model,images")
    result = await reconcile(gw, counts_only)
    assert result["ok"] is True and {r["cost_theirs"] for r in result["rows"]} == {None}
    assert (await reconcile(gw, provider_file((day, STANDARD, 3, ""), (day, FAST, 3, "0.06"))))["ok"] is True


BAD_FILES = [
    ("", "body", "header"),
    ("day,model,count\n2026-12-01,x,1\n", "date", "line 1"),
    ("date,upstream_model,images\n2026-13-01,m,1\n", "date", "line 2, column date"),
    ("date,upstream_model,images\n12/01/2026,m,1\n", "date", "line 2, column date"),
    ("date,upstream_model,images\n2026-12-01,m,-1\n", "images", "line 2, column images"),
    ("date,upstream_model,images\n2026-12-01,m,lots\n", "images", "line 2, column images"),
    ("date,upstream_model,images\n2026-12-01,m,1.5\n", "images", "line 2, column images"),
    ("date,upstream_model,images\n\n2026-12-01,m,\n", "images", "line 3, column images"),
    ("date,upstream_model,images,cost\n2026-12-01,m,1,1.2.3\n", "cost", "line 2, column cost"),
    ("date,upstream_model,images,cost\n2026-12-01,m,1,-0.5\n", "cost", "line 2, column cost"),
    ("date,upstream_model,images,cost\n2026-12-01,m,1,NaN\n", "cost", "line 2, column cost"),
    ("date,upstream_model,images\n2026-12-01,,1\n", "upstream_model", "line 2, column upstream_model"),
    ("date,upstream_model,images\n2026-12-01,m,1,extra\n", "body", "line 2"),
    ("date,upstream_model,images,images\n2026-12-01,m,1,1\n", "images", "twice"),
    ("date,upstream_model,images\n", "body", "no rows"),
    (b"date,upstream_model,images\n2026-12-01,\xff,1\n", "body", "UTF-8"),
]


async def test_a_malformed_file_is_a_400_naming_the_line_and_column(gw: Harness) -> None:
    local = await gw.local_channel()
    for body, param, names in BAD_FILES:
        response = await gw.admin("POST", "/admin/reconcile", params={"channel": local["name"]}, content=body)
        assert response.status_code == 400, (body, response.text)
        error = response.json()["error"]
        assert error["param"] == param and names in error["message"], (body, error)


async def test_unknown_channel_too_large_a_file_and_no_channel_are_refused(gw: Harness) -> None:
    local = (await gw.local_channel())["name"]
    good = provider_file(("2026-12-01", STANDARD, 1, "0.04"))
    unknown = await gw.admin("POST", "/admin/reconcile", params={"channel": "nobody"}, content=good)
    assert unknown.status_code == 404 and unknown.json()["error"]["param"] == "channel"
    huge = good + f"2026-12-01,{STANDARD},1,0.04\n" * 130_000  # > 5 MB
    too_large = await gw.admin("POST", "/admin/reconcile", params={"channel": local}, content=huge)
    assert too_large.status_code == 413, too_large.text
    missing = await gw.admin("POST", "/admin/reconcile", content=good)
    assert missing.status_code == 400 and missing.json()["error"]["param"] == "channel"


async def test_the_command_exits_2_when_nothing_could_be_compared(database_url: str, tmp_path: Path) -> None:
    env = gateway_env(database_url, tmp_path / "data")
    bad = tmp_path / "bad.csv"
    bad.write_text("date,upstream_model,images\n2026-12-01,m,-1\n")
    run = cli(env, "usage", "reconcile", "--channel", "local", str(bad), check=False)
    assert run.returncode == 2 and "line 2, column images" in run.stderr
    good = tmp_path / "good.csv"
    good.write_text("date,upstream_model,images\n2026-12-01,m,1\n")
    run = cli(env, "usage", "reconcile", "--channel", "nobody", str(good), check=False)
    assert run.returncode == 2 and "nobody" in run.stderr
    run = cli(env, "usage", "reconcile", "--channel", "local", str(tmp_path / "absent.csv"), check=False)
    assert run.returncode == 2 and "absent.csv" in run.stderr


def test_the_comparison_rules() -> None:
    day = date(2026, 12, 1)
    theirs = {(day, "m"): ProviderUsage(4, Decimal("0.16")), (day, "n"): ProviderUsage(1, Decimal("9"))}
    ours = {(day, "m"): OurUsage(3, ambiguous=1, ambiguous_images=1, cost=Decimal("0.12"))}
    # The provider billed the ambiguous call's image at the channel's price: explained.
    m, n = compare(theirs, ours, {"m": Decimal("0.04")})
    assert (m.ok, m.difference, m.cost_difference) == (True, 1, Decimal("0.04"))
    assert (n.ours, n.theirs, n.cost_ours, n.ok) == (0, 1, None, False)
    # Without a price for the model, the extra cost cannot be explained.
    assert not compare(theirs, ours, {})[0].ok
    # Our cost unknown (calls before the channel had a price): the counts alone decide.
    unpriced = {(day, "m"): OurUsage(4, cost=None)}
    assert compare({(day, "m"): ProviderUsage(4, Decimal("123"))}, unpriced, {})[0].ok


def run_on_terminal(env: dict[str, str], *args: str) -> tuple[int, str]:
    """Run `image-gateway` with its stdout on a pseudo-terminal, as a person at a shell would."""
    leader, follower = pty.openpty()
    try:
        process = subprocess.Popen([*gateway_command(), *args], env=env, stdout=follower, stderr=subprocess.PIPE)
        os.close(follower)
        chunks: list[bytes] = []
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # the terminal closed: the command is done
                break
            if not chunk:
                break
            chunks.append(chunk)
        code = process.wait(timeout=60)
    finally:
        os.close(leader)
    return code, b"".join(chunks).decode().replace("\r\n", "\n")


def test_the_shipped_sample_is_a_file_the_gateway_reads() -> None:
    sample = Path(__file__).resolve().parent.parent / "docs" / "samples" / "provider-usage.csv"
    parsed = parse_provider_csv(sample.read_bytes())
    assert (parsed.first_day, parsed.last_day, parsed.ignored_columns) == (date(2026, 11, 1), date(2026, 11, 3), [])
    assert parsed.usage[(date(2026, 11, 1), STANDARD)] == ProviderUsage(310, Decimal("12.4"))
