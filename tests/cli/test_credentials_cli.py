"""``reflow apps`` and ``reflow credentials``: apps applied from files, credentials listed
and deleted without a value, and every sealed value re-encrypted under a new key."""

from __future__ import annotations

import asyncio
import base64
from collections.abc import Callable
from typing import Any

import orjson
from cryptography.fernet import Fernet
from test_cli import Cli
from test_cli import reflow_cli as reflow_cli  # the fixture

from reflow.services import Reflow
from reflow.settings import load_settings

OLD_KEY = base64.urlsafe_b64encode(b"o" * 32).decode()
NEW_KEY = base64.urlsafe_b64encode(b"n" * 32).decode()
SECRET = "sk-cli-3f8e1d2c9b"
# The issue's example, as written (no `kind`: `reflow apps apply` reads every file as an app).
SHOP_APP = """\
name: shop
displayName: Example Shop
auth: {type: api_key, header: X-Api-Key}   # the value sent is the secret field's
fields:
  - {name: apiKey, displayName: API key, secret: true, required: true}
"""


def with_reflow(cli: Cli, key: str, work: Callable[[Reflow], Any]) -> Any:
    """Run ``work`` on a Reflow over the CLI's database, with REFLOW_SECRET_KEY ``key``."""

    async def go() -> Any:
        reflow = Reflow.open(load_settings(database_url=cli.env["REFLOW_DATABASE_URL"],
                                           secret_key=key))
        try:
            return await work(reflow)
        finally:
            await reflow.close()

    return asyncio.run(go())


def make_credential(cli: Cli, key: str) -> tuple[str, str]:
    """A user "jane" with a shop credential sealed with ``key``: (userId, credentialId)."""

    async def work(reflow: Reflow) -> tuple[str, str]:
        team = await reflow.keys.team(None)
        user = await reflow.users.create(team, "jane", None)
        created = await reflow.credentials.create(team, "jane", "shop", {"apiKey": SECRET})
        return user.id, created.id

    result: tuple[str, str] = with_reflow(cli, key, work)
    return result


def sealed_values(cli: Cli) -> list[bytes]:
    """Every credential's sealed value, as stored."""

    async def work(reflow: Reflow) -> list[bytes]:
        return [v for _, v in await reflow.store.sealed_batch("credentials", "", 100)]

    result: list[bytes] = with_reflow(cli, NEW_KEY, work)
    return result


def test_apps_apply_takes_the_issues_example_as_written_and_lists_it(reflow_cli: Cli) -> None:
    reflow_cli("db", "upgrade")
    path = reflow_cli.write("shop.yaml", SHOP_APP)
    [applied] = reflow_cli.json("apps", "apply", str(path))
    again = reflow_cli("apps", "apply", str(path)).stdout
    [listed] = reflow_cli.json("apps", "list")
    assert (applied["name"], applied["created"], applied["changed"]) == ("shop", True, True)
    assert again.splitlines()[1].split()[-1] == "unchanged"
    assert (listed["displayName"], listed["auth"], listed["fields"]) == (
        "Example Shop", "api_key", ["apiKey"])


def test_apps_apply_lists_each_problem_by_file_and_path_and_exits_2(reflow_cli: Cli) -> None:
    reflow_cli("db", "upgrade")
    bad = reflow_cli.write("bad.yaml", "name: shop\nauth: {type: api_key}\n"
                                       "fields: [{name: apiKey, secret: true}]\n")
    result = reflow_cli("apps", "apply", str(bad), code=2)
    assert f"{bad}: auth: give header or query" in result.stderr


def test_credentials_list_and_delete_never_show_the_value(reflow_cli: Cli) -> None:
    reflow_cli("db", "upgrade")
    reflow_cli.env["REFLOW_SECRET_KEY"] = OLD_KEY
    reflow_cli("apps", "apply", str(reflow_cli.write("shop.yaml", SHOP_APP)))
    _, credential_id = make_credential(reflow_cli, OLD_KEY)
    text = reflow_cli("credentials", "list", "--user", "jane").stdout
    [listed] = reflow_cli.json("credentials", "list", "--user", "jane")
    assert SECRET not in text and SECRET not in orjson.dumps(listed).decode()
    assert (listed["credentialId"], listed["app"], listed["health"]) == (
        credential_id, "shop", "ok")
    reflow_cli("credentials", "delete", credential_id, "--user", "jane")
    assert reflow_cli.json("credentials", "list", "--user", "jane") == []
    missing = reflow_cli("credentials", "delete", credential_id, "--user", "jane", code=4)
    assert credential_id in missing.stderr


def test_rotate_key_reencrypts_everything_under_the_newest_key_and_resumes(
    reflow_cli: Cli,
) -> None:
    reflow_cli("db", "upgrade")
    reflow_cli.env["REFLOW_SECRET_KEY"] = OLD_KEY
    reflow_cli("apps", "apply", str(reflow_cli.write("shop.yaml", SHOP_APP)))
    make_credential(reflow_cli, OLD_KEY)

    async def add_sealed_stream_secret(reflow: Reflow) -> None:
        team = await reflow.keys.team(None)
        old = Fernet(OLD_KEY).encrypt(b"whsec_cli").decode()
        await reflow.store.set_error_stream(team.id, "https://errors.example/x", old)

    with_reflow(reflow_cli, OLD_KEY, add_sealed_stream_secret)
    reflow_cli.env["REFLOW_SECRET_KEY"] = f"{NEW_KEY},{OLD_KEY}"

    first = {r["kind"]: r for r in reflow_cli.json("credentials", "rotate-key", "--batch",
                                                   "1")}
    second = {r["kind"]: r for r in reflow_cli.json("credentials", "rotate-key")}

    assert (first["credentials"]["rotated"], first["error_stream"]["rotated"]) == (1, 1)
    assert (second["credentials"]["rotated"], second["credentials"]["current"]) == (0, 1)
    assert second["error_stream"]["current"] == 1
    [stored] = sealed_values(reflow_cli)
    assert orjson.loads(Fernet(NEW_KEY).decrypt(stored)) == {"apiKey": SECRET}


def test_rotate_key_reports_values_no_key_opens_and_exits_2(reflow_cli: Cli) -> None:
    reflow_cli("db", "upgrade")
    reflow_cli.env["REFLOW_SECRET_KEY"] = OLD_KEY
    reflow_cli("apps", "apply", str(reflow_cli.write("shop.yaml", SHOP_APP)))
    _, credential_id = make_credential(reflow_cli, OLD_KEY)
    reflow_cli.env["REFLOW_SECRET_KEY"] = NEW_KEY
    result = reflow_cli("credentials", "rotate-key", code=2)
    assert credential_id in result.stderr
    assert "credentials" in result.stdout
