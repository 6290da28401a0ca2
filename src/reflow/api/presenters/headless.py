"""Headless installation answers: the fields a user still has to give, per workflow and
block (startInstallation, the install URL, and I3's formData), and what was completed."""

from __future__ import annotations

from typing import Any

from reflow.domain.configuration import ConfigField
from reflow.services.headless import Completed, FormBlock, StartedInstallation
from reflow.services.logs import iso


def form_field(field: ConfigField) -> dict[str, Any]:
    """One field as a form shows it (never a value the user gave)."""
    item: dict[str, Any] = {
        "name": field.name, "displayName": field.display_name, "type": field.type.value,
        "required": field.required and not field.has_default, "secret": field.secret,
        "description": field.description,
    }
    if field.options:
        item["options"] = [{"displayName": o.display_name, "value": o.value}
                           for o in field.options]
    if field.has_default:
        item["default"] = field.default
    return item


def form_block(block: FormBlock) -> dict[str, Any]:
    """The reference's formData item: a block's fields still without a value."""
    return {"workflowId": block.workflow_id, "blockId": block.block_id, "app": block.app,
            "fields": [form_field(f) for f in block.fields]}


def started_item(started: StartedInstallation) -> dict[str, Any]:
    """startInstallation's answer."""
    return {
        "installationId": started.id,
        "integrationId": started.integration.id,
        "userId": started.user.id,
        "workflowIds": [w.id for w in started.workflows],
        "data": [form_block(b) for b in started.form],
        "credentials": [{"app": c.app, "connected": c.credential_id is not None,
                         "credentialId": c.credential_id} for c in started.credentials],
    }


def completed_item(done: Completed) -> dict[str, Any]:
    """completeInstallation's answer."""
    return {
        "message": "Installation completed",
        "installationId": done.id,
        "workflows": [{"workflowId": i.workflow_id, "installationId": i.id,
                       "installedVersion": i.installed_version, "active": i.active}
                      for i in done.installations],
    }


def install_url_item(url: str, expires_at: int) -> dict[str, Any]:
    """K1's answer."""
    return {"url": url, "expiresAt": iso(expires_at)}
