"""``reflow workflows webhook-url``: a user's copy's secret URL, shown and rotated."""

from __future__ import annotations

from test_cli import ORDER_SUMMARY_YAML, Cli
from test_cli import ready as ready  # the fixture
from test_cli import reflow_cli as reflow_cli  # the fixture

HOOK_YAML = ORDER_SUMMARY_YAML.replace("name: Order summary", "name: Order hook").replace(
    "type: api", "type: webhook")


def test_webhook_url_is_stable_under_the_public_url_and_rotates(ready: Cli) -> None:
    ready("workflows", "apply", str(ready.write("hook.yaml", HOOK_YAML)))
    ready("workflows", "activate", "Order hook", "--user", "demo")
    public = ("--public-url", "https://hooks.example.com/")

    first = ready("workflows", "webhook-url", "Order hook", "--user", "demo", *public)
    again = ready.json("workflows", "webhook-url", "Order hook", "--user", "demo", *public)
    rotated = ready("workflows", "webhook-url", "Order hook", "--user", "demo", "--rotate")

    url = first.stdout.strip()
    assert url.startswith("https://hooks.example.com/webhooks/wh_")
    assert again == {"webhookUrl": url}
    # Without the flag (or REFLOW_PUBLIC_URL) the URL starts with the serve address.
    assert rotated.stdout.startswith("http://127.0.0.1:8080/webhooks/wh_")
    assert rotated.stdout.rsplit("/", 1)[1] != url.rsplit("/", 1)[1]


def test_webhook_url_of_a_workflow_not_triggered_by_a_webhook_exits_5(ready: Cli) -> None:
    refused = ready("workflows", "webhook-url", "Order summary", "--user", "demo", code=5)
    assert "not triggered by a webhook" in refused.stderr


def test_webhook_url_of_a_copy_not_installed_exits_4(ready: Cli) -> None:
    ready("workflows", "apply", str(ready.write("hook.yaml", HOOK_YAML)))
    refused = ready("workflows", "webhook-url", "Order hook", "--user", "demo", code=4)
    assert "not installed" in refused.stderr
