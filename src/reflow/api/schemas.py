"""Request and response schemas; field names are the reference's, exactly."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from reflow.domain.executions import ExecutionStatus, StepStatus, TriggerMode
from reflow.domain.log_filters import MESSAGES


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


class ErrorStreamSet(Strict):
    """``PUT /settings/error-stream``: where to POST the team's failed executions."""

    url: str = Field(description="an http:// or https:// URL (at most 2,048 characters, "
                                 "no user name or password); a public address unless "
                                 "REFLOW_HTTP_ALLOW_NETWORKS allows it")
    rotateSecret: bool = Field(default=False, description=(
        "make a new signing secret (the old one signs nothing more); a first set always "
        "makes one, a later one keeps it otherwise"))


class ErrorStreamFailure(BaseModel):
    """The latest failed attempt of a notification not delivered."""

    executionId: str
    error: str  # "attempt <n>: <why>"
    at: str


class ErrorStreamState(BaseModel):
    """A team's error stream (``url`` null: none), its signing secret, and how its
    notifications fared (those still kept: the log retention)."""

    url: str | None
    secret: str | None
    signatureHeader: str  # the header carrying the signature: X-Reflow-Signature
    pending: int  # waiting for their first or next attempt
    delivered: int
    dead: int  # given up after REFLOW_ERROR_STREAM_MAX_AGE
    lastDeliveredAt: str | None
    lastFailure: ErrorStreamFailure | None


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


class WebhookUrl(BaseModel):
    """A user's copy's webhook URL (``POST /workflows/{workflowId}/webhook/rotate``)."""

    webhookUrl: str


class WebhookAccepted(BaseModel):
    """A webhook call was taken: the execution it started, or the one its delivery id
    started before (``duplicate``)."""

    message: str
    executionId: str
    duplicate: bool = Field(default=False, description="the delivery id was seen before: "
                                                       "nothing new started")


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
    item: str | None = Field(default=None, description=(
        "inside loops: the item's index in each enclosing loop, outermost first (\"3\", "
        "\"3.0\"); absent outside loops"))


class InputItem(BaseModel):
    """One block's resolved input."""

    connectorId: str
    data: Any
    item: str | None = None


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
    item: str | None = Field(description="inside loops: the item path (\"3\", \"3.0\")")
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


# -- the search over all workflows (GET /logs) ---------------------------------------------

class SearchUser(BaseModel):
    """The execution's user (a deleted user too: its logs are kept)."""

    email: str | None = Field(description="the username when it is an email address")
    username: str
    fullName: str | None


class SearchIntegration(BaseModel):
    """The integration the workflow belongs to."""

    id: str | None = Field(alias="_id")
    name: str
    icon: str | None


class SearchWorkflow(BaseModel):
    """The parent workflow."""

    name: str | None
    integrationId: SearchIntegration | None


class SearchIds(BaseModel):
    """The execution's ids (reflow has one: both are it)."""

    executionId: str
    executionUuid: str


class SearchItem(BaseModel):
    """One execution, in the reference's notification keys (plus ``status``,
    ``executionUuid`` and ``executionMode``)."""

    id: str = Field(alias="_id", description="the execution's id")
    message: str = Field(description="named after the status", json_schema_extra={
        "enum": list(MESSAGES.values())})
    data: SearchIds
    startedAt: str
    completedAt: str | None = Field(description="null until it finishes")
    createdAt: str
    customVersion: bool
    workflowVersion: int
    teamId: str
    forgeWorkflowId: str = Field(description="the parent workflow's id")
    workflowId: str = Field(description="the user's installation's id")
    userId: str
    user: SearchUser | None
    forgeWorkflow: SearchWorkflow
    status: ExecutionStatus
    executionUuid: str
    executionMode: Literal["manual", "retry", "trigger", "webhook"]


class Pagination(BaseModel):
    """Where the page is; ``totalItems`` counts up to 10,000."""

    totalItems: int
    totalPages: int
    currentPage: int
    pageSize: int
    totalItemsExact: bool = Field(description="false when more than totalItems match")


class LogSearchResults(BaseModel):
    """``GET /logs``: the page's items under ``notifications`` (the reference's key) and
    ``data`` (the same items)."""

    data: list[SearchItem]
    notifications: list[SearchItem]
    lastFetched: str
    pagination: Pagination


# -- workflows as a user sees them (W1, W2, W5, W7, W8, W10) -------------------------------

class Connector(BaseModel):
    """One block of the version a user runs, in both of the reference's connector shapes
    (W2: ``connectorId``, ``connectorName``; I1: ``id``, ``name``, ``subtitle``)."""

    id: str  # the block's id
    name: str  # reflow blocks have no display name: the block's id again
    connectorId: str  # the block's id
    connectorName: str  # the block's id
    connector: str  # the block's type
    icon: str | None  # an http block's: its integration's icon; null otherwise
    subtitle: str  # an http block's method and URL as written; the block's type otherwise


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
    webhookUrl: str | None = Field(
        default=None, description="the user's secret URL that starts their copy, when the "
                                  "version it runs is webhook-triggered (docs/api.md "
                                  "\"Webhooks\"); null otherwise")


class OneWorkflow(BaseModel):
    """``GET /workflows/{workflowId}?userId=``."""

    data: WorkflowDetail


class Deactivated(BaseModel):
    """``PUT /workflows/deactivate``."""

    deactivated: bool


class Deleted(BaseModel):
    """``DELETE /workflows/{workflowId}?userId=``: the user's installation is deleted."""

    deleted: bool


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


# -- integrations and installations (I1-I3) ------------------------------------------------

class IntegrationDeclaration(Strict):
    """``POST /integrations``, as JSON or YAML (a declaration file's body: docs/api.md)."""

    kind: Literal["integration"] | None = Field(
        default=None, description="required in a file (it tells a declaration from a "
                                  "workflow definition); optional here")
    name: str = Field(min_length=1, max_length=200,
                      description="what workflows' `integration` key names; the key it is "
                                  "created or updated by")
    app: str | None = Field(default=None, min_length=1, max_length=200,
                            description="the app it connects to (primaryConnector); the name "
                                        "when left out")
    description: str | None = Field(default=None, max_length=10_000)
    icon: str | None = Field(default=None, max_length=2_048,
                             description="an absolute http or https URL")


class IntegrationApplied(BaseModel):
    """A declaration stored: the integration's id, and what storing it did."""

    integrationId: str
    name: str
    created: bool = Field(description="false when an integration of that name existed")
    changed: bool = Field(description="false when the declaration equals what was stored")


class IntegrationItem(BaseModel):
    """An integration as one user sees it: the reference's I1 keys (2025-09's and
    2024-03's ``app``), its workflows as W2 shows them, and reflow's ``name``."""

    integrationId: str
    name: str
    app: str
    primaryConnector: str  # the app again, the 2025-09 key
    description: str
    icon: str | None
    installed: bool = Field(description="the user has installed any of its workflows")
    workflows: list[WorkflowDetail]
    credentials: list[str] = Field(
        description="the credentials its workflows' blocks name (`with.credential`)")


class Integrations(BaseModel):
    """``GET /integrations?userId=``: every integration of the team, by name."""

    data: list[IntegrationItem]


class OneIntegration(BaseModel):
    """``GET /integrations/{integrationId}?userId=``."""

    data: IntegrationItem


class InstalledWorkflow(BaseModel):
    """One of the user's installations in a group (reflow's installation, per workflow)."""

    workflowId: str  # the parent workflow
    installationId: str  # the user's copy: any workflowId parameter takes it
    name: str
    installedVersion: int
    active: bool
    installedAt: str


class InstallationItem(BaseModel):
    """The reference's installation: a user's installed workflows of one integration."""

    installationId: str = Field(description="stable for the user and integration (derived "
                                            "from both); completeInstallation takes it")
    integrationId: str | None = Field(description="null for workflows naming no integration")
    userId: str
    workflowIds: list[str] = Field(description="the parent workflows installed")
    credentialIds: dict[str, str] = Field(description="the credential pinned per app "
                                                      "(headless installation)")
    formData: list[FormBlock] = Field(description="the configurable fields still without "
                                                  "a value, per workflow and block")
    installedAt: str = Field(description="when the first of them was installed")
    enabled: bool = Field(description="any of them is active")
    workflows: list[InstalledWorkflow]


class Installations(BaseModel):
    """``GET /installations``: oldest first."""

    data: list[InstallationItem]


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


# -- apps and credentials (docs/api.md "Credentials and apps") -----------------------------

class AppApplied(BaseModel):
    """``POST /apps``: the app stored, and what storing it did."""

    appId: str
    name: str
    created: bool = Field(description="false when an app of that name existed")
    changed: bool = Field(description="false when the declaration equals what was stored")


class AppItem(BaseModel):
    """An app (``GET /apps``, ``/metadata/apps``): the SDKs read ``name``, ``icon``, ``type``."""

    name: str
    displayName: str
    icon: str | None
    type: str = Field(description="the auth kind: api_key, bearer, basic, oauth2, "
                                  "oauth2_client_credentials")
    isOauth: bool


class AppList(BaseModel):
    """The team's apps, by name."""

    data: list[AppItem]


class CredentialProperty(BaseModel):
    """A field a user fills in to connect an app (never a value)."""

    name: str
    displayName: str
    description: str
    secret: bool
    required: bool


class CredentialMetadataItem(BaseModel):
    """How to connect one app: the reference's C4 keys (``connector``; the node SDK's
    ``name``), the auth kind and the fields."""

    connector: str
    name: str
    displayName: str
    icon: str | None
    isOauth: bool
    authType: str
    properties: list[CredentialProperty]


class CredentialMetadata(BaseModel):
    """``GET /metadata/credentials`` (and ``/credentials?userId=``, ``/metadata/credentials/
    {app}`` with that app alone)."""

    data: list[CredentialMetadataItem]


class CredentialItem(BaseModel):
    """A user's credential as listed: never a value."""

    credentialId: str
    type: str = Field(description="the app's name")
    name: str = Field(description="the app's display name")
    app: str
    health: Literal["ok", "needs_reconnect"]
    healthReason: str | None
    createdAt: str | None
    updatedAt: str | None
    expiresAt: str | None = Field(description="an OAuth access token's expiry, else null")


class CredentialList(BaseModel):
    """A user's credentials, oldest first."""

    data: list[CredentialItem]


class CredentialValues(Strict):
    """The app a credential is for and its values (checked against the app's fields)."""

    type: str = Field(min_length=1, description="the app's name")
    data: dict[str, Any] = Field(description="field name -> value (OAuth apps: accessToken, "
                                             "refreshToken, expiresAt)")


class CredentialCreate(Strict):
    """``POST /headless/credentials``."""

    userId: str = Field(min_length=1)
    credential: CredentialValues


class UserCredentialCreate(Strict):
    """``POST /users/{userId}/credentials`` (alloy-python): the user is the path's."""

    credential: CredentialValues
    userId: str | None = Field(default=None, description="ignored: the path names the user")


class CredentialCreated(BaseModel):
    """A credential stored."""

    success: Literal[True] = True
    credentialId: str


# -- headless installation (docs/api.md "Headless installation") ---------------------------

class StartInstallation(Strict):
    """``POST /headless/startInstallation``."""

    userId: str = Field(min_length=1, description="the user's id or username")
    integrationId: str = Field(min_length=1, description="the integration's id or name")
    workflowIds: list[str] | None = Field(default=None, description="the integration's "
                                          "workflows to install (parent id or name); all "
                                          "when absent")
    credentialIds: dict[str, str] | list[str] | None = Field(
        default=None, description="credentials to pin: the user's credential ids, or app "
                                  "name -> credential id")


class FormFieldOption(BaseModel):
    """One value a field may take."""

    displayName: str
    value: Any


class FormField(BaseModel):
    """A configurable field that still needs a value."""

    name: str
    displayName: str
    type: str = Field(description="string, number, integer, boolean or json")
    required: bool
    secret: bool = Field(description="stored encrypted, never shown again")
    description: str | None = None
    options: list[FormFieldOption] | None = Field(default=None, description="the values "
                                                  "allowed, when the definition lists them")
    default: Any = Field(default=None, description="used while no value is set (present "
                                                   "only when the definition gives one)")


class FormBlock(BaseModel):
    """The fields one block of a workflow asks for (the reference's formData item)."""

    workflowId: str
    blockId: str
    app: str = Field(description="the app the block's credential names, else its type")
    fields: list[FormField]


class NeededCredential(BaseModel):
    """An app the workflows' blocks use, and the user's credential for it."""

    app: str
    connected: bool = Field(description="the user has a credential for it")
    credentialId: str | None = Field(description="the one runs will use (pinned, else the "
                                                 "newest)")


class InstallationStarted(BaseModel):
    """``startInstallation``'s answer: what ``completeInstallation`` needs."""

    installationId: str
    integrationId: str
    userId: str
    workflowIds: list[str]
    data: list[FormBlock] = Field(description="the fields without a value, per workflow "
                                              "and block")
    credentials: list[NeededCredential]


class CompleteInstallation(Strict):
    """``POST /headless/completeInstallation``."""

    installationId: str = Field(min_length=1)
    data: list[Any] | None = Field(default=None, description="[{workflowId, blockId?, "
                                   "fields: [{name, value}]}]")
    credentialIds: dict[str, str] | list[str] | None = Field(
        default=None, description="credentials to pin (replaces startInstallation's)")


class CompletedWorkflow(BaseModel):
    """One installation a completion wrote."""

    workflowId: str
    installationId: str
    installedVersion: int
    active: bool


class InstallationCompleted(BaseModel):
    """``completeInstallation``'s answer."""

    message: str
    installationId: str
    workflows: list[CompletedWorkflow]


class InstallUrl(BaseModel):
    """An install URL (K1)."""

    url: str = Field(description="GET it for the form (no API key), POST {data, "
                                 "credentialIds} to it to complete")
    expiresAt: str


class RetentionSet(Strict):
    """``PUT /settings/retention``: the calling team's retention window."""

    window: str | float | None = Field(description=(
        "how long the team's finished executions are kept: a duration such as 30d, 12h "
        "or a number of seconds (1 second to 10 years); null: the deployment's "
        "REFLOW_LOG_RETENTION"))


class RetentionState(BaseModel):
    """The team's retention window (docs/operations.md "Retention")."""

    window: str = Field(description="for people: '7 days', '12 hours'")
    windowSeconds: float
    inherited: bool = Field(description="true: the deployment's REFLOW_LOG_RETENTION, "
                                        "the team has none of its own")
