"""Request and response schemas; field names are the reference's, exactly."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reflow.domain.executions import ExecutionStatus, StepStatus, TriggerMode


class Strict(BaseModel):
    """Request bodies refuse unknown fields (a typo must not pass silently)."""

    model_config = ConfigDict(extra="forbid")


class Message(BaseModel):
    """Every error, and some successes."""

    message: str


class ProblemItem(BaseModel):
    """One thing wrong with a request: where (``blocks[1].with.url``) and why."""

    path: str
    reason: str


class BatchProblemItem(ProblemItem):
    """One refused item of ``POST /users/batch``: also its place in ``users`` and its
    username."""

    index: int
    username: str


class Invalid(Message):
    """A 422: the message, and each problem by path when there are several to list (a
    batch's refused items also by index)."""

    problems: list[BatchProblemItem | ProblemItem] | None = None


class ExecutionError(BaseModel):
    """Why an execution failed, and in which block (none when it failed before one)."""

    message: str
    blockId: str | None


# -- users ---------------------------------------------------------------------------------

class UserCreate(Strict):
    """``POST /users``."""

    username: str = Field(min_length=1, max_length=200)
    fullName: str | None = Field(default=None, max_length=200)


class UserCreated(BaseModel):
    """The new user's id."""

    userId: str


class UserPublic(BaseModel):
    """A user as the reference shows one."""

    userId: str
    username: str
    fullName: str | None


class UserList(BaseModel):
    """``GET /users``: the team's users, oldest first."""

    data: list[UserPublic]


class UserUpdate(Strict):
    """``PUT /users/{userId}``: a field left out is kept; ``fullName: null`` clears it."""

    username: str | None = Field(default=None, min_length=1, max_length=200)
    fullName: str | None = Field(default=None, max_length=200)


class UserBatchItem(Strict):
    """One user of a batch; its values are checked with the others' (each refused one is
    listed by index), so only their types are checked here."""

    username: str
    fullName: str | None = None


class UserBatch(Strict):
    """``POST /users/batch``: ``{"users": [{"username", "fullName"?}, ...]}``, created all
    or none (at most 1,000)."""

    users: list[UserBatchItem] = Field(max_length=1000)


class Success(BaseModel):
    """``DELETE /users/{userId}``."""

    success: bool


# -- teams ---------------------------------------------------------------------------------

class TeamEnv(Strict):
    """``GET`` and ``PUT /env``: what the calling key's team sets as its expression ``env``
    (its expressions see it over the deployment's defaults, the team's keys winning)."""

    env: dict[str, Any] = Field(
        description="a JSON object of at most 64 KiB as JSON and 32 levels deep")


# -- workflows -----------------------------------------------------------------------------

class WorkflowRef(Strict):
    """A user plus a workflow by id or by name (one of the two is enough)."""

    # The document says what _one_workflow checks.
    model_config = ConfigDict(extra="forbid", json_schema_extra={
        "anyOf": [{"required": ["workflowId"]}, {"required": ["workflowName"]}],
    })

    userId: str = Field(min_length=1)
    workflowId: str | None = Field(default=None, min_length=1)
    workflowName: str | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_workflow(self) -> WorkflowRef:
        if self.workflowId is None and self.workflowName is None:
            raise ValueError("workflowId or workflowName is required")
        return self

    @property
    def workflow(self) -> str:
        """The reference to resolve (the id wins when both are given)."""
        return self.workflowId or self.workflowName or ""


class Activated(BaseModel):
    """``PUT /workflows/activate``."""

    activated: bool


class VersionCreated(BaseModel):
    """A stored definition: the workflow and the version it is now at."""

    workflowId: str
    version: int
    created: bool = Field(description="false when the definition equals the latest version")


class VersionItem(BaseModel):
    """One immutable version of a workflow."""

    version: int
    createdAt: str
    digest: str
    definition: dict[str, Any]


class Versions(BaseModel):
    """``GET /workflows/{workflowId}/versions``."""

    workflowId: str
    name: str
    version: int = Field(description="the latest version")
    installedVersion: int | None = Field(default=None, description="when userId is given")
    data: list[VersionItem]


# -- runs ----------------------------------------------------------------------------------

class RunWorkflow(WorkflowRef):
    """``POST /run/workflow``: the workflow, the user, and the trigger's ``data``."""

    data: dict[str, Any]


class RerunBody(Strict):
    """Optional body of a rerun (beyond the reference; an empty body is a plain rerun)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(
        default="start", alias="from", min_length=1,
        description="'start', 'failed' (the source's failed block) or a block id: steps "
                    "before it are copied from the source (reused) instead of running again",
    )
    version: Literal["original", "installed", "latest"] = Field(
        default="original",
        description="the source's version, the user's installed one, or the latest",
    )
    data: dict[str, Any] | None = Field(default=None, description="replaces the trigger data")
    wait: float | None = Field(default=None, gt=0, le=300,
                               description="seconds to wait for the new execution to finish")


class RunStarted(BaseModel):
    """A run or rerun was committed: its new execution's id; with ``wait``, how it ended."""

    message: Literal["success"] = "success"
    executionId: str
    status: ExecutionStatus | None = Field(
        default=None, description="with wait only: 'running' (202) or how it ended")
    output: Any = Field(default=None, description="with wait only: the respond block's body")
    error: ExecutionError | None = Field(default=None, description="with wait only")


class Cancelled(BaseModel):
    """A cancel was taken: the execution as it is now."""

    message: Literal["success"] = "success"
    executionId: str
    status: ExecutionStatus = Field(
        description="'cancelled' once stopped; 'running' until its current block ends")
    cancelRequested: bool = Field(
        description="true while a running execution has yet to reach its next block")


# -- logs ----------------------------------------------------------------------------------

class ResultItem(BaseModel):
    """One block's result (``connectorId`` is the block id)."""

    connectorId: str
    startedAt: str
    stoppedAt: str
    data: list[list[dict[str, Any]]]
    status: StepStatus
    attempts: int
    reused: bool
    error: str | None = None
    truncated: bool | None = None


class InputItem(BaseModel):
    """One block's resolved input."""

    connectorId: str
    data: Any


class LogItem(BaseModel):
    """One execution, as the reference's log item plus reflow's additions."""

    executionId: str
    startedAt: str
    stoppedAt: str | None
    finished: bool
    status: ExecutionStatus
    workflowVersion: int
    userId: str
    mode: TriggerMode
    rerunOf: str | None
    reruns: list[str]
    error: ExecutionError | None
    results: list[ResultItem]
    inputs: list[InputItem]


class Logs(BaseModel):
    """``GET /workflows/{workflowId}/logs``."""

    data: list[LogItem]


class StepDetail(BaseModel):
    """One step in full."""

    seq: int
    blockId: str
    status: StepStatus
    attempts: int
    startedAt: str
    stoppedAt: str
    input: Any
    output: Any
    error: str | None
    reused: bool
    truncated: bool


class ExecutionDetail(LogItem):
    """``GET /logs/{executionId}``: the log item plus the trigger, output and every step."""

    id: str = Field(alias="_id", description="the execution's id (the reference's L4 key)")
    executionUuid: str = Field(description="the execution's id again: reflow has one")
    executionMode: Literal["manual", "retry", "trigger", "webhook"] = Field(
        description="the reference's name for `mode`: webhook (run by API or webhook), "
                    "trigger (event or schedule), manual (`reflow run`), retry (a rerun)")
    workflowId: str
    installationId: str
    createdAt: str
    trigger: dict[str, Any]
    output: Any
    responseStatus: int | None
    steps: list[StepDetail]


class Execution(BaseModel):
    """The envelope of ``GET /logs/{executionId}``."""

    data: ExecutionDetail


# -- workflows as a user sees them (W1, W2, W5, W7, W8, W10) -------------------------------

class Connector(BaseModel):
    """One block of the version a user runs, in the reference's connector keys."""

    connectorId: str  # the block's id
    connectorName: str  # reflow blocks have no display name: the block's id again
    connector: str  # the block's type


class WorkflowItem(BaseModel):
    """A workflow as one user sees it (the reference's W2 fields plus ``installationId``)."""

    workflowId: str  # the parent workflow's id
    installationId: str | None  # the user's copy (any workflowId parameter takes it too)
    name: str
    createdAt: str
    updatedAt: str
    installed: bool
    active: bool
    version: int  # the parent's latest version
    installedVersion: int | None
    integrationId: str | None


class UserWorkflows(BaseModel):
    """``GET /workflows?userId=``."""

    data: list[WorkflowItem]


class WorkflowDetail(WorkflowItem):
    """A workflow item with the blocks of the version the user runs."""

    connectors: list[Connector]


class OneWorkflow(BaseModel):
    """``GET /workflows/{workflowId}?userId=``."""

    data: WorkflowDetail


class Deactivated(BaseModel):
    """``PUT /workflows/deactivate``."""

    deactivated: bool


class Upgraded(BaseModel):
    """``PUT /workflows/{workflowId}/upgrade``: false when it already ran the latest."""

    upgraded: bool
    previousVersion: int
    installedVersion: int


class WorkflowUser(BaseModel):
    """A user with an installation of a parent workflow."""

    userId: str
    username: str
    fullName: str | None
    workflowActive: bool
    installedVersion: int
    installedAt: str


class WorkflowUsers(BaseModel):
    """``GET /workflows/{workflowId}/users``."""

    data: list[WorkflowUser]


class WorkflowError(BaseModel):
    """One failed execution, in the legacy reference's error-log keys."""

    executionId: str
    workflowId: str
    installationId: str
    blockId: str | None
    blockType: str | None
    error: str
    createdAt: str


class WorkflowErrors(BaseModel):
    """``GET /workflows/{workflowId}/errors``: newest first."""

    errors: list[WorkflowError]


# -- events --------------------------------------------------------------------------------

class EventItem(BaseModel):
    """A custom event some workflow's latest version declares (the reference's keys)."""

    name: str
    description: str | None = Field(description="the declaring workflow's description")
    body: dict[str, Any] = Field(description="the trigger's example data (schema), or {}")


class Events(BaseModel):
    """``GET /events``: every declared event once, by name."""

    data: list[EventItem]


class FireEvent(Strict):
    """``POST /run/event``: the event's name, the user, and the trigger's ``data``."""

    event: str = Field(min_length=1)
    userId: str = Field(min_length=1)
    data: dict[str, Any]


class EventFired(BaseModel):
    """The executions an event started, committed (none when nothing subscribes)."""

    message: Literal["Event successfully triggered"] = "Event successfully triggered"
    executionIds: list[str]


class Analytics(BaseModel):
    """``GET /workflows/{workflowId}/analytics``, over the executions still kept."""

    totalAppActions: int  # http steps run
    totalWorkflowRuns: int
    totalErrors: int  # failed runs
