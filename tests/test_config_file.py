"""Config as code: models, channels and operators kept in a YAML file under review, applied by
`image-gateway config apply` or at start (GATEWAY_CONFIG_FILE), exported back by `config export`."""

from __future__ import annotations

import asyncio
import json
import subprocess
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy import update

from app.admin.config_apply import apply_to_database
from app.admin.config_file import ConfigError, load_config
from app.catalog.models import Channel
from app.settings import Settings
from tests.support.harness import Harness, running_app
from tests.support.processes import cli as run_cli
from tests.support.processes import gateway_env

GOOD = """
models:
  - id: imagen4
    credits_per_image: "9"
    multiplier: 1.25
  - id: flux-pro
    credits_per_image: "2.5"
    aliases: [flux]
    aspect_ratios: [1:1, 16:9]     # unquoted: read as ratios, not YAML 1.1 base-60 numbers
    parameters: [seed]
channels:
  - name: google-a
    provider: google-imagen
    base_url: https://generativelanguage.googleapis.com/v1beta/
    auth: {api_key_env: GOOGLE_API_KEY}
    models: {imagen4: imagen-4.0-generate-001}
    costs: {imagen-4.0-generate-001: "0.04"}
    priority: 10
operators:
  - name: alice
    role: finance
"""


def write(tmp_path: Path, text: str, name: str = "gateway.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


async def apply(gw: Harness, path: Path, **options: Any) -> dict[str, Any]:
    report = await apply_to_database(gw.gateway.db, gw.gateway.secrets, load_config(path), str(path), **options)
    gw.gateway.invalidate_caches()
    return report.document()


def actions(report: dict[str, Any]) -> dict[tuple[str, str], str]:
    return {(r["kind"], r["name"]): r["action"] for r in report["results"]}


async def listed(gw: Harness, what: str, **params: Any) -> dict[str, dict[str, Any]]:
    response = await gw.admin("GET", f"/admin/{what}", params=params)
    assert response.status_code == 200, response.text
    return {row.get("name", row.get("id")) if what != "models" else row["id"]: row for row in response.json()["data"]}


async def audit_count(gw: Harness) -> int:
    return len((await gw.admin("GET", "/admin/audit", params={"limit": 1000})).json()["data"])


async def test_apply_creates_and_updates_then_a_second_apply_changes_nothing(gw: Harness, tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    first = await apply(gw, path)
    assert actions(first) == {
        ("model", "imagen4"): "updated",
        ("model", "flux-pro"): "created",
        ("channel", "google-a"): "created",
        ("operator", "alice"): "created",
    }
    assert first["changed"] == 4
    models = await listed(gw, "models")
    assert (models["imagen4"]["credits_per_image"], models["imagen4"]["multiplier"]) == ("9", "1.25")
    assert models["imagen4"]["aliases"] == ["imagen-4.0-generate-001"]  # left out of the file: kept
    assert models["imagen4"]["image_sizes"] == ["1K", "2K"]
    assert models["flux-pro"]["aspect_ratios"] == ["1:1", "16:9"]
    channel = (await listed(gw, "channels"))["google-a"]
    assert channel["auth"] == {"api_key_env": "GOOGLE_API_KEY", "api_key_set": False}
    assert channel["base_url"] == "https://generativelanguage.googleapis.com/v1beta"
    assert channel["costs"] == {"imagen-4.0-generate-001": "0.04"}
    assert (await listed(gw, "operators"))["alice"]["role"] == "finance"
    audit = (await gw.admin("GET", "/admin/audit", params={"actor": "config"})).json()["data"]
    assert {entry["entity"] for entry in audit} == {"model", "channel", "operator"}

    stamps = {m["id"]: m["updated_at"] for m in (await listed(gw, "models")).values()}
    entries = await audit_count(gw)
    second = await apply(gw, path)
    assert second["changed"] == 0
    assert set(actions(second).values()) == {"unchanged"}
    assert all("token" not in r for r in second["results"])
    assert {m["id"]: m["updated_at"] for m in (await listed(gw, "models")).values()} == stamps
    assert await audit_count(gw) == entries  # nothing written, so nothing audited


async def test_a_dry_run_reports_what_would_change_and_writes_nothing(gw: Harness, tmp_path: Path) -> None:
    report = await apply(gw, write(tmp_path, GOOD), dry_run=True)
    assert report["dry_run"] is True and report["changed"] == 4
    assert all("token" not in r for r in report["results"])
    assert "flux-pro" not in await listed(gw, "models")
    assert "alice" not in await listed(gw, "operators")
    assert (await listed(gw, "models"))["imagen4"]["credits_per_image"] == "8"


async def test_the_file_changes_only_what_it_says_and_matches_channels_by_name(gw: Harness, tmp_path: Path) -> None:
    await apply(gw, write(tmp_path, GOOD))
    # An operator changes the channel's weight by hand; the file then changes its priority only.
    channel = (await listed(gw, "channels"))["google-a"]
    assert (await gw.admin("PATCH", f"/admin/channels/{channel['id']}", json={"weight": 5})).status_code == 200
    again = await apply(gw, write(tmp_path, GOOD.replace("priority: 10", "priority: 20")))
    assert actions(again)[("channel", "google-a")] == "updated"
    assert next(r for r in again["results"] if r["name"] == "google-a")["fields"] == ["priority"]
    after = (await listed(gw, "channels"))["google-a"]
    assert (after["id"], after["priority"], after["weight"]) == (channel["id"], 20, 5)
    # A role changes in place.
    promoted = await apply(gw, write(tmp_path, GOOD.replace("role: finance", "role: admin")))
    assert actions(promoted)[("operator", "alice")] == "updated"
    assert all("token" not in r for r in promoted["results"])
    assert (await listed(gw, "operators"))["alice"]["role"] == "admin"


async def test_prune_disables_what_the_file_no_longer_lists_and_deletes_nothing(gw: Harness, tmp_path: Path) -> None:
    await apply(gw, write(tmp_path, GOOD))
    bob = await gw.admin("POST", "/admin/operators", json={"name": "bob", "role": "viewer"})
    assert bob.status_code == 201
    models_before = await listed(gw, "models")

    pruned = await apply(gw, write(tmp_path, GOOD), prune=True)
    disabled = {(r["kind"], r["name"]) for r in pruned["results"] if r["action"] == "disabled"}
    others = {("model", m) for m in models_before if m not in ("imagen4", "flux-pro")}
    assert disabled == others | {("channel", "local"), ("operator", "bob")}

    models = await listed(gw, "models")
    assert set(models) == set(models_before)  # disabled, never deleted
    assert {m for m, row in models.items() if row["enabled"]} == {"imagen4", "flux-pro"}
    assert (await listed(gw, "channels"))["local"]["enabled"] is False
    assert "bob" not in await listed(gw, "operators")
    assert (await listed(gw, "operators", include_revoked="true"))["bob"]["revoked_at"] is not None
    refused = await gw.http.get("/admin/models", headers={"authorization": f"Bearer {bob.json()['token']}"})
    assert refused.status_code == 401
    assert (await apply(gw, write(tmp_path, GOOD), prune=True))["changed"] == 0


async def test_prune_leaves_sections_the_file_does_not_have(gw: Harness, tmp_path: Path) -> None:
    only_models = write(tmp_path, "models:\n  - id: imagen4\n    credits_per_image: 8\n")
    report = await apply(gw, only_models, prune=True)
    assert {r["kind"] for r in report["results"]} == {"model"}
    assert (await listed(gw, "channels"))["local"]["enabled"] is True


async def test_a_literal_api_key_is_refused_and_nothing_is_applied(gw: Harness, tmp_path: Path) -> None:
    canary = "sk-live-canary-4a1b"
    text = GOOD.replace("auth: {api_key_env: GOOGLE_API_KEY}", f"auth: {{api_key: {canary}}}")
    path = write(tmp_path, text)
    with pytest.raises(ConfigError) as refused:
        await apply(gw, path)
    message = refused.value.message
    assert f"{path}: channels[0] (google-a).auth.api_key: a literal key is refused" in message
    assert "api_key_env" in message
    assert canary not in message
    assert (await listed(gw, "models"))["imagen4"]["credits_per_image"] == "8"  # the good entries neither
    assert "flux-pro" not in await listed(gw, "models")


async def test_every_bad_entry_is_named_with_the_file_and_field(tmp_path: Path) -> None:
    path = write(
        tmp_path,
        """
models:
  - id: imagen4
    image_sizes: [3K]
    colour: red
channels:
  - name: relay
    provider: dall-e
    priority: high
operators:
  - name: carol
    role: owner
secrets: {}
""",
    )
    with pytest.raises(ConfigError) as refused:
        load_config(path)
    problems = refused.value.problems
    for expected in (
        "secrets: unknown section",
        "models[0] (imagen4).image_sizes: unknown value(s) 3K",
        "models[0] (imagen4).colour: unknown field",
        "channels[0] (relay).provider: unknown provider 'dall-e'",
        "channels[0] (relay).priority:",
        "operators[0] (carol).role:",
    ):
        assert any(p.startswith(f"{path}: {expected}") for p in problems), (expected, problems)
    with pytest.raises(ConfigError, match=r"broken\.yaml: not valid YAML: line \d+, column \d+"):
        load_config(write(tmp_path, "models:\n  - id: [unclosed\n", "broken.yaml"))
    with pytest.raises(ConfigError, match=r"models\[1\] \(imagen4\)\.id: also used by models\[0\]"):
        load_config(write(tmp_path, "models:\n- {id: imagen4}\n- {id: imagen4}\n", "twice.yaml"))


async def test_an_entry_refused_while_applying_rolls_back_the_whole_file(gw: Harness, tmp_path: Path) -> None:
    bad = GOOD.replace(
        "  - id: flux-pro\n",
        "  - id: sdxl\n    aliases: [imagen-4.0-ultra-generate-001]\n    credits_per_image: 1\n  - id: flux-pro\n",
    )
    with pytest.raises(ConfigError) as refused:
        await apply(gw, write(tmp_path, bad))
    assert "models[1] (sdxl).aliases: 'imagen-4.0-ultra-generate-001' already names the model 'imagen4-ultra'" in (
        refused.value.message
    )
    models = await listed(gw, "models")
    assert models["imagen4"]["credits_per_image"] == "8"  # applied before the bad entry, rolled back
    assert "sdxl" not in models and "google-a" not in await listed(gw, "channels")
    assert "alice" not in await listed(gw, "operators")

    new_without_price = write(tmp_path, "models:\n  - id: sdxl\n    max_images: 2\n", "new.yaml")
    with pytest.raises(ConfigError, match=r"models\[0\] \(sdxl\)\.credits_per_image: required for a new model"):
        await apply(gw, new_without_price)


async def test_export_round_trips_and_keeps_secrets_out(gw: Harness, tmp_path: Path) -> None:
    from app.admin.config_export import export_config

    canary = "sk-stored-canary-77"
    await gw.add_channel(
        name="relay", provider="openai-images", base_url="https://relay.example/v1", auth={"api_key": canary}
    )
    await apply(gw, write(tmp_path, GOOD))
    patched = await gw.admin(
        "PATCH", "/admin/models/flux-pro", json={"description": "Line one: 'quoted'\n# not a comment"}
    )
    assert patched.status_code == 200
    async with gw.gateway.db.sessions() as session:
        exported = await export_config(session)
    assert canary not in exported
    assert "# api_key set in the database; move it to api_key_env" in exported
    assert "api_key_env: GOOGLE_API_KEY" in exported

    report = await apply(gw, write(tmp_path, exported, "exported.yaml"), prune=True)
    assert report["changed"] == 0, report
    relay = (await listed(gw, "channels"))["relay"]
    assert relay["auth"]["api_key_set"] is True  # the stored key stays

    moved = "channels:\n  - name: relay\n    auth: {api_key_env: RELAY_KEY, api_key: null}\n"
    assert (await apply(gw, write(tmp_path, moved, "moved.yaml")))["changed"] == 1
    relay = (await listed(gw, "channels"))["relay"]
    assert relay["auth"] == {"api_key_env": "RELAY_KEY", "api_key_set": False}


async def test_the_gateway_keeps_a_channel_it_disabled_itself_disabled(gw: Harness, tmp_path: Path) -> None:
    await apply(gw, write(tmp_path, GOOD))
    async with gw.gateway.db.transaction() as session:
        await session.execute(
            update(Channel)
            .where(Channel.name == "google-a")
            .values(enabled=False, disabled_reason="upstream answered 403")
        )
    report = await apply(gw, write(tmp_path, GOOD.replace("priority: 10", "priority: 10\n    enabled: true")))
    outcome = next(r for r in report["results"] if r["name"] == "google-a")
    assert outcome["action"] == "unchanged" and "kept disabled: upstream answered 403" in outcome["note"]
    assert (await listed(gw, "channels"))["google-a"]["enabled"] is False


async def test_concurrent_applies_of_the_same_file_both_succeed(gw: Harness, tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    first, second = await asyncio.gather(apply(gw, path), apply(gw, path))
    assert sorted([first["changed"], second["changed"]]) == [0, 4]
    assert len([c for c in (await listed(gw, "channels")) if c == "google-a"]) == 1


async def test_the_command_prints_a_new_operators_token_once_and_exports_what_it_applied(
    gw: Harness, database_url: str, tmp_path: Path
) -> None:
    env = gateway_env(database_url, tmp_path / "data")

    async def cli(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        # In a thread: the app under test keeps serving (and releasing SQLite's lock) meanwhile.
        return await asyncio.to_thread(run_cli, env, *args, check=check)

    path = write(tmp_path, GOOD)
    first = json.loads((await cli("config", "apply", str(path))).stdout)
    created = next(r for r in first["results"] if r["kind"] == "operator")
    assert created["action"] == "created" and created["token"].startswith("igwop_")
    reads = await gw.http.get("/admin/models", headers={"authorization": f"Bearer {created['token']}"})
    assert reads.status_code == 200  # the printed token is alice's

    exported = tmp_path / "exported.yaml"
    await cli("config", "export", "-o", str(exported))
    assert "alice" in exported.read_text() and "google-a" in exported.read_text()
    again = await cli("config", "apply", str(exported), "--prune")
    assert json.loads(again.stdout)["changed"] == 0
    assert "igwop_" not in again.stdout  # the token was shown once

    refused = await cli("config", "apply", str(write(tmp_path, "models: 3\n", "bad.yaml")), check=False)
    assert refused.returncode == 1
    assert "bad.yaml: models: must be a list of entries" in refused.stderr


async def test_gateway_config_file_is_applied_at_start(settings: Settings, tmp_path: Path) -> None:
    path = write(tmp_path, GOOD)
    configured = settings.model_copy(update={"config_file": path})
    async with running_app(configured) as gw:
        models = await listed(gw, "models")
        assert models["imagen4"]["credits_per_image"] == "9" and "flux-pro" in models
        assert "google-a" in await listed(gw, "channels")
        # No token is minted at start (it would end in the logs): `config apply` creates operators.
        assert "alice" not in await listed(gw, "operators")
        stamps = {m: row["updated_at"] for m, row in models.items()}
        entries = await audit_count(gw)
    async with running_app(configured) as gw:  # a restart, or another replica: nothing changes
        assert {m: row["updated_at"] for m, row in (await listed(gw, "models")).items()} == stamps
        assert await audit_count(gw) == entries

    bad = settings.model_copy(
        update={"config_file": write(tmp_path, GOOD.replace("role: finance", "role: boss"), "bad.yaml")}
    )
    with pytest.raises(ConfigError, match=r"bad\.yaml: operators\[0\] \(alice\)\.role"):
        async with running_app(bad):
            pass
