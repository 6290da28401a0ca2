"""Each team's expressions see their own ``env``: set by ``PUT /env`` (or the CLI), over
the deployment's shared defaults (``REFLOW_EXPRESSION_ENV``), the team's keys winning."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from fastapi.testclient import TestClient

from reflow.services import Reflow
from reflow.services.teams import ENV_MAX_BYTES, TeamService
from reflow.settings import Settings

SHOP_URL_WORKFLOW: dict[str, Any] = {
    "name": "Shop URL",
    "trigger": {"type": "api"},
    "blocks": [{"id": "done", "type": "respond",
                "with": {"body": {"shopUrl": "{{ env.shopUrl }}", "env": "{{ env }}"}}}],
}


@pytest.fixture
def deployment_env() -> dict[str, Any]:
    """REFLOW_EXPRESSION_ENV of the server under test (none unless a test parametrizes it)."""
    return {}


@pytest.fixture
def settings(make_settings: Callable[..., Settings], deployment_env: dict[str, Any]) -> Settings:
    """Test settings with the deployment env of the test."""
    return make_settings(expression_env=deployment_env)


@dataclass
class TeamClient:
    """One team's view of the API: its key on every call, and its own workflow to run."""

    client: TestClient
    key: str
    workflow_id: str = ""
    user_id: str = ""

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"bearer {self.key}"}

    def put_env(self, body: Any) -> Any:
        return self.client.put("/env", json=body, headers=self.headers)

    def get_env(self) -> dict[str, Any]:
        response = self.client.get("/env", headers=self.headers)
        assert response.status_code == 200, response.text
        env: dict[str, Any] = response.json()["env"]
        return env

    def install(self) -> TeamClient:
        created = self.client.post("/workflows", json=SHOP_URL_WORKFLOW, headers=self.headers)
        user = self.client.post("/users", json={"username": "ann"}, headers=self.headers)
        assert created.status_code == user.status_code == 200, (created.text, user.text)
        self.workflow_id, self.user_id = created.json()["workflowId"], user.json()["userId"]
        activated = self.client.put("/workflows/activate", headers=self.headers,
                                    json={"userId": self.user_id, "workflowId": self.workflow_id})
        assert activated.status_code == 200, activated.text
        return self

    def run(self) -> dict[str, Any]:
        """Run the workflow to its end; the respond body (what ``env`` looked like)."""
        response = self.client.post(
            "/run/workflow", params={"wait": 10}, headers=self.headers,
            json={"workflowId": self.workflow_id, "userId": self.user_id, "data": {}},
        )
        assert response.status_code == 200, response.text
        output: dict[str, Any] = response.json()["output"]
        return output


@pytest.fixture
def make_team(client: TestClient, reflow: Reflow) -> Callable[[str], TeamClient]:
    """A new team made as ``reflow teams create`` makes it, with the workflow installed."""

    def make(name: str) -> TeamClient:
        assert client.portal is not None
        created = client.portal.call(reflow.teams.create, name)
        return TeamClient(client, created.key.raw).install()

    return make


def test_each_team_runs_with_its_own_env(make_team: Callable[[str], TeamClient]) -> None:
    a, b = make_team("team a"), make_team("team b")
    assert a.put_env({"env": {"shopUrl": "https://a.example"}}).json() == {
        "env": {"shopUrl": "https://a.example"}}
    b.put_env({"env": {"shopUrl": "https://b.example", "region": "eu"}})

    assert a.run()["shopUrl"] == "https://a.example"
    assert b.run() == {"shopUrl": "https://b.example",
                       "env": {"shopUrl": "https://b.example", "region": "eu"}}
    assert a.get_env() == {"shopUrl": "https://a.example"}


def test_put_env_replaces_the_whole_env_and_the_next_run_sees_it_at_once(
    make_team: Callable[[str], TeamClient],
) -> None:
    team = make_team("team a")
    team.put_env({"env": {"shopUrl": "https://old.example", "region": "eu"}})
    assert team.run()["shopUrl"] == "https://old.example"  # now cached in this process

    team.put_env({"env": {"shopUrl": "https://new.example"}})

    assert team.run()["env"] == {"shopUrl": "https://new.example"}
    assert team.get_env() == {"shopUrl": "https://new.example"}


def test_without_a_deployment_env_a_team_sees_only_its_own(
    make_team: Callable[[str], TeamClient],
) -> None:
    unset, own = make_team("no env"), make_team("own env")
    own.put_env({"env": {"region": "eu"}})
    assert unset.get_env() == {}
    assert unset.run() == {"shopUrl": None, "env": {}}
    assert own.run() == {"shopUrl": None, "env": {"region": "eu"}}


@pytest.mark.parametrize(
    "deployment_env", [{"shopUrl": "https://shared.example", "region": "us"}])
def test_the_deployment_env_is_a_default_under_each_teams_keys(
    make_team: Callable[[str], TeamClient],
) -> None:
    defaults, overriding = make_team("defaults"), make_team("overriding")
    overriding.put_env({"env": {"shopUrl": "https://mine.example", "plan": "pro"}})

    assert defaults.run()["env"] == {"shopUrl": "https://shared.example", "region": "us"}
    assert overriding.run()["env"] == {"shopUrl": "https://mine.example", "region": "us",
                                       "plan": "pro"}
    assert overriding.get_env() == {"shopUrl": "https://mine.example", "plan": "pro"}


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"env": ["not", "an", "object"]}, "env: Input should be a valid dictionary"),
        ({"env": "text"}, "env: Input should be a valid dictionary"),
        ({}, "env: Field required"),
        ({"env": {}, "extra": 1}, "extra: unknown field"),
        ({"env": {"big": "x" * ENV_MAX_BYTES}}, f"over the limit of {ENV_MAX_BYTES} bytes"),
        ({"env": {"deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[1]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]}},
         "nested deeper than 32 levels"),
    ],
    ids=["array", "string", "missing", "unknown field", "oversized", "too deep"],
)
def test_put_env_that_is_not_a_small_object_answers_422_and_keeps_the_env(
    make_team: Callable[[str], TeamClient], body: dict[str, Any], message: str,
) -> None:
    team = make_team("team a")
    team.put_env({"env": {"kept": True}})
    response = team.put_env(body)
    assert response.status_code == 422
    assert message in response.json()["message"]
    assert team.get_env() == {"kept": True}


def test_env_needs_an_api_key(client: TestClient) -> None:
    assert client.get("/env", headers={"authorization": ""}).status_code == 401
    response = client.put("/env", json={"env": {}}, headers={"authorization": "bearer nope"})
    assert response.status_code == 401 and response.json() == {"message": "Unauthorized"}


def test_env_is_in_the_openapi_document(client: TestClient) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    assert set(paths["/env"]) == {"get", "put"}


def test_another_process_change_is_seen_once_the_cache_expires(
    client: TestClient, reflow: Reflow,
) -> None:
    now = [0.0]
    server = TeamService(reflow.store, reflow.keys, {}, clock=lambda: now[0])
    cli = TeamService(reflow.store, reflow.keys, {})  # as `reflow teams env` would be
    portal = client.portal
    assert portal is not None
    team = portal.call(reflow.keys.team, None)
    portal.call(cli.replace_env, team, {"shopUrl": "https://old.example"})
    assert portal.call(server.expression_env, team.id) == {"shopUrl": "https://old.example"}

    portal.call(cli.replace_env, team, {"shopUrl": "https://new.example"})
    now[0] += 4.9
    assert portal.call(server.expression_env, team.id) == {"shopUrl": "https://old.example"}
    now[0] += 0.2
    assert portal.call(server.expression_env, team.id) == {"shopUrl": "https://new.example"}
