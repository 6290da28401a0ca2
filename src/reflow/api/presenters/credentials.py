"""Apps and credentials as the API shows them: never a credential's value."""

from __future__ import annotations

from typing import Any

from reflow.domain.apps import CredentialRecord
from reflow.services.apps import App
from reflow.services.logs import iso


def app_item(app: App) -> dict[str, Any]:
    """An app of ``GET /apps`` and ``/metadata/apps``."""
    d = app.declaration
    return {"name": d.name, "displayName": d.display_name, "icon": d.icon,
            "type": d.auth.kind.value, "isOauth": d.auth.kind.is_oauth}


def metadata_item(app: App) -> dict[str, Any]:
    """How to connect an app (``GET /metadata/credentials``)."""
    d = app.declaration
    return {
        "connector": d.name, "name": d.name, "displayName": d.display_name, "icon": d.icon,
        "isOauth": d.auth.kind.is_oauth, "authType": d.auth.kind.value,
        "properties": [{"name": f.name, "displayName": f.display_name,
                        "description": f.description, "secret": f.secret,
                        "required": f.required} for f in d.fields],
    }


def credential_item(credential: CredentialRecord) -> dict[str, Any]:
    """A user's credential as listed: its app, health and times."""
    return {
        "credentialId": credential.id, "type": credential.app,
        "name": credential.app_display_name or credential.app, "app": credential.app,
        "health": credential.health.value, "healthReason": credential.health_reason,
        "createdAt": iso(credential.created_at), "updatedAt": iso(credential.updated_at),
        "expiresAt": iso(credential.expires_at),
    }
