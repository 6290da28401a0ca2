"""End users of a team's product."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace

from reflow.domain.records import Team, User
from reflow.errors import Conflict, InvalidRequest, NotFound
from reflow.ids import new_object_id, now_ms
from reflow.store.base import Store

_USERNAME = re.compile(r"\S(.{0,198}\S)?")
_USERNAME_RULE = "must be 1 to 200 characters without leading or trailing spaces"
# A batch is one transaction: this bounds how long it holds the database's write lock.
MAX_BATCH = 1000


def username_problem(username: str) -> str | None:
    """Why a username cannot be used (None when it can)."""
    # NUL: PostgreSQL's text refuses it, so it is refused on both backends alike.
    if not _USERNAME.fullmatch(username) or "\x00" in username:
        return f"username: {_USERNAME_RULE}"
    return None


def _full_name_problem(full_name: str) -> str | None:
    """Why a batch item's full name cannot be stored (as ``POST /users`` checks it)."""
    if len(full_name) > 200:
        return "fullName: must be at most 200 characters"
    if "\x00" in full_name:
        return "fullName: may not contain the NUL character"
    return None


def _check_username(username: str) -> None:
    problem = username_problem(username)
    if problem is not None:
        raise InvalidRequest(problem)


@dataclass(frozen=True, slots=True)
class NewUser:
    """One item of a batch."""

    username: str
    full_name: str | None = None


@dataclass(frozen=True, slots=True)
class BatchProblem:
    """Why one item of a batch was refused."""

    index: int
    username: str
    reason: str
    field: str = "username"  # the item's field the reason is about


class BatchRefused(InvalidRequest):
    """A batch that created nothing, with every refused item."""

    def __init__(self, problems: Sequence[BatchProblem]) -> None:
        super().__init__(f"{len(problems)} user(s) of the batch were refused; "
                         "none was created")
        self.problems = list(problems)


@dataclass(frozen=True, slots=True)
class UserChanges:
    """What ``PUT /users/{userId}`` changes: a None username keeps it; the full name
    changes only when ``full_name_given`` (so it can be cleared with null)."""

    username: str | None = None
    full_name: str | None = None
    full_name_given: bool = False


class UserService:
    """Create, look up, change and delete users (by id or username)."""

    def __init__(self, store: Store) -> None:
        self.store = store
        # Called after a user's installations changed (deleted, deactivated): caches of
        # installation lookups must drop them at once.
        self._on_installations_changed: list[Callable[[], None]] = []

    def on_installations_changed(self, callback: Callable[[], None]) -> None:
        """Have ``callback`` called whenever this service deactivates installations."""
        self._on_installations_changed.append(callback)

    def _installations_changed(self) -> None:
        for callback in self._on_installations_changed:
            callback()

    async def create(self, team: Team, username: str, full_name: str | None) -> User:
        """A new user; a taken username is a Conflict."""
        _check_username(username)
        user = User(new_object_id(), team.id, username, full_name, now_ms())
        await self.store.create_user(user)
        return user

    async def create_many(self, team: Team, items: Sequence[NewUser]) -> list[User]:
        """Every user of the batch, or none: BatchRefused lists each refused item."""
        if len(items) > MAX_BATCH:
            raise InvalidRequest(f"users: at most {MAX_BATCH} users per batch, "
                                 f"not {len(items)}")
        now = now_ms()
        # One creation time for all, and ids in the batch's order: users are listed by
        # (created_at, id), so they list in the order they were sent.
        ids = sorted(new_object_id() for _ in items)
        users = [User(user_id, team.id, item.username, item.full_name, now)
                 for user_id, item in zip(ids, items, strict=True)]
        if not items:
            return []
        problems = await self._batch_problems(team, items)
        if problems:
            raise BatchRefused(problems)
        try:
            await self.store.create_users(users)
        except Conflict:
            # Another request took a username meanwhile: say which, as for any other.
            problems = await self._batch_problems(team, items)
            if not problems:
                raise
            raise BatchRefused(problems) from None
        return users

    async def _batch_problems(self, team: Team, items: Sequence[NewUser]) -> list[BatchProblem]:
        taken = await self.store.taken_usernames(
            team.id, [i.username for i in items if username_problem(i.username) is None])
        counts = Counter(item.username for item in items)
        problems = []
        for index, item in enumerate(items):
            reason = username_problem(item.username)
            if reason is None and item.username in taken:
                reason = "username: taken by another user"
            if reason is None and counts[item.username] > 1:
                reason = "username: appears more than once in the batch"
            if reason is not None:
                problems.append(BatchProblem(index, item.username, reason))
            elif item.full_name is not None and (reason := _full_name_problem(item.full_name)):
                problems.append(BatchProblem(index, item.username, reason, "fullName"))
        return problems

    async def get(self, team: Team, id_or_username: str) -> User:
        """A user by id or username; NotFound otherwise."""
        user = await self.store.get_user(team.id, id_or_username)
        if user is None:
            raise NotFound(f"user {id_or_username!r} not found")
        return user

    async def all(self, team: Team, parent_workflow_ref: str | None = None) -> list[User]:
        """A team's users, oldest first; given a workflow (id or name), only the users
        with an installation of it (NotFound for an unknown workflow)."""
        if parent_workflow_ref is None:
            return await self.store.list_users(team.id)
        workflow = await self.store.get_workflow(team.id, parent_workflow_ref)
        if workflow is None:
            raise NotFound(f"workflow {parent_workflow_ref!r} not found")
        return await self.store.list_users(team.id, workflow.id)

    async def update(self, team: Team, id_or_username: str, changes: UserChanges) -> User:
        """The user with its username and full name changed (Conflict: username taken)."""
        user = await self.get(team, id_or_username)
        if changes.username is not None:
            _check_username(changes.username)
            user = replace(user, username=changes.username)
        if changes.full_name_given:
            user = replace(user, full_name=changes.full_name)
        if not await self.store.update_user(user):
            raise NotFound(f"user {id_or_username!r} not found")  # deleted meanwhile
        return user

    async def delete(self, team: Team, id_or_username: str) -> None:
        """Delete a user: its installations are deactivated, its logs kept (U8 deletes
        them), and its username may be taken again."""
        user = await self.get(team, id_or_username)
        deleted = await self.store.delete_user(team.id, user.id, now_ms())
        self._installations_changed()
        if not deleted:
            raise NotFound(f"user {id_or_username!r} not found")

    async def deactivate_workflows(self, team: Team, id_or_username: str) -> int:
        """Deactivate every active installation of the user; how many."""
        user = await self.get(team, id_or_username)
        count = await self.store.deactivate_user_installations(team.id, user.id, now_ms())
        self._installations_changed()
        return count

    async def delete_logs(self, team: Team, id_or_username: str) -> int:
        """Delete every execution of the user (a deleted user's too, by id); how many.
        Conflict while any of them is unfinished."""
        user = await self.store.get_user(team.id, id_or_username)
        if user is None:
            user = await self.store.get_user_any(team.id, id_or_username)
        if user is None:
            raise NotFound(f"user {id_or_username!r} not found")
        return await self.store.delete_user_executions(team.id, user.id)
