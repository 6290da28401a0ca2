"""Workflow and integration files named on the command line (paths, directories, globs)
and storing them.

A document with a ``kind`` key is a declaration: of an app (``kind: app``, the third-party
service users connect) or of an integration (``kind: integration``); any other is a
workflow definition. Declarations are stored first (apps, then integrations), so what the
workflows name is declared from the start.
"""

from __future__ import annotations

import glob
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

import click

from reflow.cli.common import _echo_json, _echo_table
from reflow.domain.apps import AppDeclaration, app_from_document, declares_app
from reflow.domain.definitions import WorkflowDefinition, parse_document
from reflow.domain.integrations import (
    IntegrationDeclaration,
    declares_integration,
    integration_from_document,
)
from reflow.domain.records import Team
from reflow.errors import DefinitionInvalid, InvalidRequest, Problem
from reflow.services import Reflow
from reflow.services.apps import AppliedApp
from reflow.services.integrations import AppliedIntegration
from reflow.services.workflows import Applied, definition_from_document

_WORKFLOW_SUFFIXES = (".yaml", ".yml", ".json")
T = TypeVar("T")


@dataclass(frozen=True, slots=True)
class AppliedFile:
    """One workflow file stored: its definition and what storing it did."""

    path: Path
    definition: WorkflowDefinition
    applied: Applied


@dataclass(frozen=True, slots=True)
class DeclaredFile:
    """One integration declaration stored: what storing it did."""

    path: Path
    applied: AppliedIntegration


@dataclass(frozen=True, slots=True)
class AppliedFiles:
    """What applying files did: each valid file stored, each invalid one's problems."""

    workflows: list[AppliedFile]
    integrations: list[DeclaredFile]
    problems: list[Problem]
    apps: list[tuple[Path, AppliedApp]] = field(default_factory=list)


def workflow_files(patterns: Sequence[str]) -> list[Path]:
    """The files named by paths, directories (their *.yaml/*.yml/*.json) and globs."""
    files: list[Path] = []
    for pattern in patterns:
        path = Path(pattern)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in _WORKFLOW_SUFFIXES)
        elif path.is_file():
            found = [path]
        else:
            found = sorted(Path(p) for p in glob.glob(pattern, recursive=True)
                           if Path(p).is_file())
        if not found:
            raise InvalidRequest(f"{pattern}: no workflow file matches")
        files.extend(p for p in found if p not in files)
    return files


def read_files(
    patterns: Sequence[str], read: Callable[[Any], T]
) -> tuple[list[tuple[Path, T]], list[Problem]]:
    """Every file named, parsed (YAML, or JSON by its suffix) and given to ``read``; the
    problems of the files that cannot be read or that ``read`` refuses, by path."""
    found: list[tuple[Path, T]] = []
    problems: list[Problem] = []
    for path in workflow_files(patterns):
        content_type = "application/json" if path.suffix == ".json" else None
        try:
            found.append((path, read(parse_document(path.read_bytes(), content_type))))
        except DefinitionInvalid as exc:
            problems.extend(
                Problem(f"{path}: {p.path}" if p.path else str(path), p.reason)
                for p in exc.problems
            )
        except OSError as exc:
            problems.append(Problem(str(path), f"cannot read it ({exc.strerror})"))
    return found, problems


_Read = AppDeclaration | IntegrationDeclaration | WorkflowDefinition


async def apply_files(
    reflow: Reflow, team: Team, patterns: Sequence[str], *, workflows: bool = True
) -> AppliedFiles:
    """Store every valid file (idempotent), declarations first; the others' problems are
    returned by path. Without ``workflows``, a workflow definition is a problem."""

    def read(doc: Any) -> _Read:
        if declares_app(doc):
            return app_from_document(doc)
        if declares_integration(doc):
            return integration_from_document(doc)
        if workflows:
            return definition_from_document(doc)
        raise DefinitionInvalid([Problem("", "not an integration declaration (it has no "
                                             "`kind: integration`); apply workflow "
                                             "definitions with `reflow workflows apply`")])

    found, problems = read_files(patterns, read)
    stored_apps = [(path, await reflow.apps.apply(team, doc)) for path, doc in found
                   if isinstance(doc, AppDeclaration)]
    declared = [DeclaredFile(path, await reflow.integrations.apply(team, doc))
                for path, doc in found if isinstance(doc, IntegrationDeclaration)]
    applied = [AppliedFile(path, doc, await reflow.workflows.apply(team, doc))
               for path, doc in found if isinstance(doc, WorkflowDefinition)]
    return AppliedFiles(applied, declared, problems, stored_apps)


def echo_applied(done: AppliedFiles, *, as_json: bool) -> None:
    """Print what applying files did: the declarations, then the workflows."""
    if as_json:
        _echo_json([
            *(applied_app_json(path, a) for path, a in done.apps),
            *({"file": str(d.path), "kind": "integration", "name": d.applied.integration.name,
               "integrationId": d.applied.integration.id, "created": d.applied.created,
               "changed": d.applied.changed} for d in done.integrations),
            *({"file": str(a.path), "kind": "workflow", "name": a.applied.workflow.name,
               "workflowId": a.applied.workflow.id, "version": a.applied.version,
               "created": a.applied.created} for a in done.workflows),
        ])
        return
    if not done.integrations and not done.workflows and not done.apps:
        click.echo("nothing applied")
        return
    if done.apps:
        echo_applied_apps(done.apps)
        if done.integrations or done.workflows:
            click.echo()
    if done.integrations:
        _echo_table(
            ("FILE", "INTEGRATION", "INTEGRATION ID", "RESULT"),
            [(str(d.path), d.applied.integration.name, d.applied.integration.id,
              "created" if d.applied.created else "updated" if d.applied.changed
              else "unchanged") for d in done.integrations],
            empty="",
        )
    if done.integrations and done.workflows:
        click.echo()
    if done.workflows:
        _echo_table(
            ("FILE", "NAME", "WORKFLOW ID", "VERSION", "RESULT"),
            [(str(a.path), a.applied.workflow.name, a.applied.workflow.id,
              str(a.applied.version), "created" if a.applied.created else "unchanged")
             for a in done.workflows],
            empty="",
        )


def applied_app_json(path: Path, applied: AppliedApp) -> dict[str, object]:
    """One app file applied, as ``--json`` shows it."""
    record = applied.app.record
    return {"file": str(path), "kind": "app", "name": record.name, "appId": record.id,
            "created": applied.created, "changed": applied.changed}


def echo_applied_apps(apps: Sequence[tuple[Path, AppliedApp]]) -> None:
    """The table of app files applied."""
    _echo_table(
        ("FILE", "APP", "APP ID", "AUTH", "RESULT"),
        [(str(path), a.app.record.name, a.app.record.id, a.app.record.auth_kind,
          "created" if a.created else "updated" if a.changed else "unchanged")
         for path, a in apps],
        empty="",
    )
