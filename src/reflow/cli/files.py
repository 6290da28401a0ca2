"""Workflow files named on the command line (paths, directories, globs) and storing them."""

from __future__ import annotations

import glob
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from reflow.domain.definitions import WorkflowDefinition
from reflow.domain.records import Team
from reflow.errors import DefinitionInvalid, InvalidRequest, Problem
from reflow.services import Reflow
from reflow.services.workflows import Applied, definition_from_text

_WORKFLOW_SUFFIXES = (".yaml", ".yml", ".json")


@dataclass(frozen=True, slots=True)
class AppliedFile:
    """One workflow file stored: its definition and what storing it did."""

    path: Path
    definition: WorkflowDefinition
    applied: Applied


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


async def apply_files(
    reflow: Reflow, team: Team, patterns: Sequence[str]
) -> tuple[list[AppliedFile], list[Problem]]:
    """Store every valid file (idempotent); the others' problems are returned by path."""
    done: list[AppliedFile] = []
    problems: list[Problem] = []
    for path in workflow_files(patterns):
        content_type = "application/json" if path.suffix == ".json" else None
        try:
            definition = definition_from_text(path.read_bytes(), content_type)
        except DefinitionInvalid as exc:
            problems.extend(
                Problem(f"{path}: {p.path}" if p.path else str(path), p.reason)
                for p in exc.problems
            )
            continue
        except OSError as exc:
            problems.append(Problem(str(path), f"cannot read it ({exc.strerror})"))
            continue
        done.append(AppliedFile(path, definition, await reflow.workflows.apply(team, definition)))
    return done, problems
