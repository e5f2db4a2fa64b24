"""What the APIs answer, as pydantic models: the response half of the OpenAPI contract.

Each route names its model (``response_model=``), so the document says what is sent and
FastAPI checks each answer against it (an answer with a field the model does not know is
an error, never silently dropped: ``extra="forbid"``). Closed sets are ``Literal``s or the
enums of ``takedown.model``. Times are ISO 8601 strings (``Timestamp``), sent as the
library formats them.

The public pages' JSON twins are here too (``Public*``); their HTML is not modelled.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, WithJsonSchema

from takedown.model import ItemState, MeasureAction, MeasureState, NoticeKind, ResponseAction

# A time, ISO 8601 with its offset. Library documents hold datetimes or strings already
# formatted: both go out as they come (a datetime as pydantic writes it).
Timestamp = Annotated[
    datetime | str, WithJsonSchema({"type": "string", "format": "date-time"}, mode="serialization")
]
AppellantKind = Literal["platform", "author", "user", "other"]
AppealStateName = Literal["open", "upheld", "reversed"]
TargetKindName = Literal["url", "domain", "wildcard", "ip", "cidr"]


class Out(BaseModel):
    """A response document: exactly these fields."""

    model_config = ConfigDict(extra="forbid")


class ErrorBody(Out):
    """Every error: what is wrong and where (the request field, query parameter, header or
    path segment to look at; None when the request as a whole is refused)."""

    error: str
    where: str | None

    model_config = ConfigDict(
        extra="forbid",
        json_schema_extra={"examples": [{"error": "unknown state 'open'", "where": "state"}]},
    )


# --- platform API ---------------------------------------------------------------------------


class NoticeItem(Out):
    id: int
    target: str
    category: str
    state: ItemState


class PlatformNotice(Out):
    id: int
    kind: NoticeKind
    issued_at: Timestamp
    deadline_at: Timestamp
    acknowledged_at: Timestamp | None
    items: list[NoticeItem]


class NoticePage(Out):
    notices: list[PlatformNotice]
    next_after: int | None  # pass as ?after= for the next page; None: this was the last


class Acknowledged(Out):
    notice_id: int
    acknowledged_at: Timestamp


class ResponseRecorded(Out):
    id: int
    item_id: int
    action: ResponseAction
    item_state: ItemState  # the item's state afterwards
    duplicate: bool  # a repeat of a stored response (same key): nothing new was stored
    key: str | None


class ResponsesRecorded(Out):
    responses: list[ResponseRecorded]
    stored: int


class SharedHash(Out):
    """A hash of a listed item's media, as ThreatExchange tooling reads a signal."""

    id: int  # the cursor: pass the last one as ?since=
    signal_type: Literal["pdq"]
    signal_value: str  # 64 hex digits
    quality: int | None
    item_id: int
    item_target: str
    category: str
    recorded_at: Timestamp


class HashPage(Out):
    hashes: list[SharedHash]
    next_since: int | None  # pass as ?since= for the next page; None: this was the last


class MatchRecorded(Out):
    id: int
    item_id: int
    url: str | None
    found_by: Literal["verify", "probe", "platform"]
    removed_at: Timestamp | None
    duplicate: bool


class MatchesRecorded(Out):
    matches: list[MatchRecorded]
    stored: int


class PublicAppeal(Out):
    """An appeal as its status page shows it: never its grounds or contact."""

    id: int
    subject: str
    measure_id: int | None
    item_id: int | None
    appellant: AppellantKind
    filed_at: Timestamp
    due_at: Timestamp
    state: AppealStateName
    decided_at: Timestamp | None
    decided_by: str | None
    reasons: str | None


class AppealFiled(Out):
    receipt: str  # shown once: the only key to the status page
    status_url: str
    appeal: PublicAppeal


# --- regulator API --------------------------------------------------------------------------


class Figures(Out):
    platform: str
    as_of: Timestamp
    flagged: int
    removed: int
    restricted: int
    claimed: int
    remaining: int
    overdue: int
    removed_share: float | None
    on_time_share: float | None
    ttr_median_h: float | None
    ttr_p90_h: float | None
    category: str | None = None
    reuploads_found: int = 0
    reuploads_removed: int = 0
    reuploads_open: int = 0


class Measure(Out):
    id: int
    platform: str
    action: MeasureAction
    rate_kbps: int | None
    classes: list[str]
    scope: dict[str, float]  # subscriber class -> percent
    state: MeasureState
    proposed_at: Timestamp
    starts_at: Timestamp | None
    review_at: Timestamp | None
    expires_at: Timestamp | None
    lifted_at: Timestamp | None
    rule: str | None
    ladder: str | None
    reason: str
    decision_ref: str | None
    lift_decision: str | None
    needs_approval: bool
    created_by: str
    supersedes_id: int | None


class DecisionBasis(Out):
    decision: str
    authority: str | None
    date: str | None
    items: int
    by_category: dict[str, int]


class LegalBasis(Out):
    items: int
    by_category: dict[str, int]
    decisions_total: int
    decisions: list[DecisionBasis]


class Obligation(Out):
    kind: str
    state: str
    decision: str
    at: Timestamp


class Approval(Out):
    by: str
    at: Timestamp


class Superseded(Out):
    id: int
    scope: dict[str, float]
    proposed_at: Timestamp
    lifted_at: Timestamp | None
    reason: str


class AuditEvent(Out):
    seq: int
    at: Timestamp
    actor: str
    type: str
    payload: dict[str, Any]


class MeasureExplained(Measure):
    figures: dict[str, Any]  # what fired a ladder rule: the rule's reading of the figures
    legal_basis: LegalBasis
    obligations: list[Obligation]
    approvals: list[Approval]
    supersedes: list[Superseded]
    superseded_by: int | None
    events: list[AuditEvent]


class RegisterItem(Out):
    id: int
    target: str
    kind: TargetKindName
    category: str
    basis: str
    decision: str
    authority: str
    decision_date: str
    platform: str | None
    listed_at: Timestamp | None
    delisted_at: Timestamp | None
    state: ItemState
    source: str | None
    flags: list[str]
    deadline_at: Timestamp | None
    verified_at: Timestamp | None
    delist_decision: str | None


class HostRule(Out):
    pattern: str
    content_class: str


class Directive(Out):
    id: str
    action: MeasureAction
    hosts: list[HostRule]
    ip_ranges: list[str]
    rate_kbps: int | None
    scope: dict[str, float]
    valid_from: Timestamp | None
    expires: Timestamp | None
    measure_id: int | None
    decisions: list[str]
    reference_url: str | None


class DirectiveSet(Out):
    schema_version: int
    sequence: int
    generated_at: Timestamp
    directives: list[Directive]
    refused: list[str]  # register items that cannot become rules, and why


# --- public JSON twins ----------------------------------------------------------------------


class PlatformName(Out):
    slug: str
    name: str | None


class PublicMeasureHead(Out):
    id: int
    platform: PlatformName
    action: MeasureAction
    rate_kbps: int | None
    describe: str
    content_classes: list[str]  # ["*"]: every class
    scope_percent: dict[str, float]
    since: Timestamp | None
    review_at: Timestamp | None
    expires_at: Timestamp | None
    url: str
    appeal_form: str


class PublicMeasureInForce(PublicMeasureHead):
    rule: str | None
    decision: str | None


class AuditHead(Out):
    seq: int
    hash: str


class PublicIndex(Out):
    as_of: Timestamp
    measures_in_force: list[PublicMeasureInForce]
    register_decisions: int
    audit_head: AuditHead | None


class PublicWhy(Out):
    rule: str | None
    ladder: str | None
    fired: str | None
    figures_read: dict[str, Any]
    figures: dict[str, Any]
    reason: str
    decision: str | None


class PublicDecisionBasis(Out):
    decision: str | None
    authority: str | None
    date: str | None
    items: int | None
    by_category: dict[str, int] | None


class PublicLegalBasis(Out):
    items: int
    by_category: dict[str, int]
    decisions_total: int
    decisions: list[PublicDecisionBasis]


class PublicObligation(Out):
    kind: str
    state: str
    decision: str
    at: Timestamp | None


class PublicActor(Out):
    name: str
    role: Literal["ladder", "regulator", "approver"]
    at: Timestamp | None = None


class PublicAppealWay(Out):
    text: str
    url: str | None
    form: str


class AppealDecision(Out):
    outcome: Literal["upheld", "reversed"]
    decided_at: Timestamp | None
    decided_by: str | None
    reasons: str | None


class AppealsSummary(Out):
    filed: int
    open: int
    upheld: int
    reversed: int
    decisions: list[AppealDecision]


class PublicMeasure(PublicMeasureHead):
    hosts: list[HostRule]
    state: MeasureState
    in_force: bool
    lifted_at: Timestamp | None
    lift_decision: str | None
    why: PublicWhy
    legal_basis: PublicLegalBasis
    obligations: list[PublicObligation]
    applied_by: PublicActor
    approvals: list[PublicActor]
    supersedes: list[int]
    superseded_by: int | None
    appeal: PublicAppealWay
    appeals: AppealsSummary


class LookupMatch(Out):
    rule: str
    content_class: str | None = None


class MeasureWhy(Out):
    platform: str
    platform_name: str | None
    rule: str | None
    reason: str
    decision: str | None
    review_at: Timestamp | None  # the measure's own dates, not the feed's rolling expiry
    expires_at: Timestamp | None


class RegisterDecisionWhy(Out):
    decision: str
    items_by_category: dict[str, int]


class RegisterWhy(Out):
    decisions: list[RegisterDecisionWhy]


class NoWhy(Out):
    """A measure's directive whose measure is gone from the record: nothing to say."""


class PublicDirective(Out):
    id: str
    action: MeasureAction
    rate_kbps: int | None
    describe: str
    scope_percent: dict[str, float]
    in_force: bool
    valid_from: Timestamp | None
    expires: Timestamp | None
    decisions: list[str]
    measure_id: int | None
    appeal_form: str | None
    url: str | None
    applies: bool
    matched: list[LookupMatch]
    why: MeasureWhy | RegisterWhy | NoWhy


class LookupQuery(Out):
    host: str | None = None
    normalised: str | None = None
    decision: str | None = None


class PublicLookup(Out):
    as_of: Timestamp
    query: LookupQuery
    restricted: bool
    directives: list[PublicDirective]
    register_items_by_category: dict[str, int] | None = None


class AppealSubject(Out):
    kind: Literal["measure", "item"]
    id: int
    describe: str | None


class AppealFormFields(Out):
    measure_id: int | None = None
    item_id: int | None = None
    appellant: list[AppellantKind]
    grounds: str
    contact: str


class AppealForm(Out):
    subject: AppealSubject
    post_to: str
    content_type: Literal["application/x-www-form-urlencoded"]
    fields: AppealFormFields
    decision_within_days: int


# --- operators' reports (takedown.fleet) ------------------------------------------------------


class ReportStored(Out):
    id: int
    operator: str
    point_id: str
    sent_at: Timestamp
    sequence: int | None


class PointStatus(Out):
    operator: str
    point_id: str
    sequence: int | None
    lag: int
    last_report_at: Timestamp
    last_report_age_seconds: float
    fail_open: bool
    fail_open_reason: str | None
    silent: bool
    lagging: bool
    throughput_bps: dict[str, float]


class OperatorStatus(Out):
    operator: str
    flagged: bool
    flags: list[Literal["never-reported", "lagging", "silent", "fail-open"]]
    latest_sequence: int | None
    points: int
    sequence_min: int | None
    lag_max: int | None
    fail_open_points: list[str]
    silent_points: list[str]
    throughput_bps: dict[str, float]
    point_status: list[PointStatus]
