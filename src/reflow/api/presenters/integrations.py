"""Integrations as a user sees them (I1, I2) and installations as groups (I3)."""

from __future__ import annotations

from typing import Any

from reflow.api.presenters.headless import form_block
from reflow.api.presenters.workflows import workflow_detail
from reflow.services.headless import InstallationView
from reflow.services.integrations import UserIntegration
from reflow.services.logs import iso


def integration_item(seen: UserIntegration) -> dict[str, Any]:
    """The reference's I1 item (both versions' keys) plus ``name``."""
    integration = seen.integration
    return {
        "integrationId": integration.id,
        "name": integration.name,
        "app": integration.app,
        "primaryConnector": integration.app,
        "description": integration.description,
        "icon": integration.icon,
        "installed": seen.installed,
        "workflows": [workflow_detail(d) for d in seen.workflows],
        "credentials": seen.credentials,
    }


def installation_item(view: InstallationView) -> dict[str, Any]:
    """The reference's I3 item for a user's installations of one integration."""
    group = view.group
    return {
        "installationId": group.id,
        "integrationId": group.integration.id if group.integration else None,
        "userId": group.user_id,
        "workflowIds": [workflow.id for _, workflow in group.installations],
        "credentialIds": view.credential_ids,
        "formData": [form_block(b) for b in view.form],
        "installedAt": iso(group.installed_at),
        "enabled": group.enabled,
        "workflows": [
            {"workflowId": workflow.id, "installationId": installation.id,
             "name": workflow.name, "installedVersion": installation.installed_version,
             "active": installation.active, "installedAt": iso(installation.installed_at)}
            for installation, workflow in group.installations
        ],
    }
