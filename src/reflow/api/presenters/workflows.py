"""A workflow as one user sees it (W1, W2, and the workflows of I1 and I2)."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from reflow.domain.definitions import BlockDef
from reflow.services.logs import iso
from reflow.services.workflows import Detail, Installed


def workflow_item(installed: Installed) -> dict[str, Any]:
    """The reference's workflow item (W2's keys) plus ``installationId``."""
    workflow, installation = installed.workflow, installed.installation
    return {
        "workflowId": workflow.id,
        "installationId": installation.id if installation else None,
        "name": workflow.name,
        "createdAt": iso(workflow.created_at),
        "updatedAt": iso(workflow.updated_at),
        "installed": installation is not None,
        "active": installation is not None and installation.active,
        "version": workflow.latest_version,
        "installedVersion": installation.installed_version if installation else None,
        "integrationId": installed.integration.id if installed.integration else None,
    }


def workflow_detail(detail: Detail) -> dict[str, Any]:
    """The item with the blocks of the version the user runs, as connectors."""
    icon = detail.item.integration.icon if detail.item.integration else None
    return {**workflow_item(detail.item), "connectors": connectors(detail.blocks, icon)}


def connectors(blocks: Iterable[BlockDef], app_icon: str | None) -> list[dict[str, Any]]:
    """Blocks in both of the reference's connector shapes: W2's ``connectorId`` and
    ``connectorName``, I1's ``id``, ``name`` and ``subtitle`` (reflow blocks have no
    display name: the block id is the name). An ``http`` block calls the integration's
    app, so it shows the integration's icon."""
    return [
        {"id": b.id, "name": b.id, "connectorId": b.id, "connectorName": b.id,
         "connector": b.type, "icon": app_icon if b.type == "http" else None,
         "subtitle": _subtitle(b)}
        for b in blocks
    ]


def _subtitle(block: BlockDef) -> str:
    """What the block does, in a line: an http block's method and URL as written."""
    method, url = block.params.get("method"), block.params.get("url")
    if block.type == "http" and isinstance(method, str) and isinstance(url, str):
        return f"{method.upper()} {url}"
    return block.type
