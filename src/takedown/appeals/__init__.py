"""Appeals: anyone affected contests a measure or an item; staff decide it in time.

A platform, an author, a user or anyone else files an appeal against a measure that has
taken effect or a listed item: from the public pages (``web.appeals``) or, for a
platform, through its API (only its own measures and items). Filing answers with a
**receipt**: random text shown once, stored only as its SHA-256 and looked up by that hash
(the final comparison constant-time, as for tokens), which opens the appeal's status page.
The appellant's contact is for staff only: never on a public page, never in the audit log.

Staff decide within the deadline of the jurisdiction profile of the subject's platform
(``appeal_deadline``, default 30 days): upheld or reversed, with reasons, by an account
with the ``decide`` permission that neither proposed the measure nor listed the item (the
local bootstrap never decides). A reversal lifts the measure (and any measure that
replaced it) or delists the item through the normal paths, in the same transaction as
the decision, so the next feed publication carries it. Filing and deciding each record an
audit event in their transaction.

The checks are plain functions over their inputs (``check_filing``, ``check_decision``,
``due_at``, ``check_impartial``); the rest is a thin shell over the database.

Example::

    record, receipt = file_appeal(
        db, measure_id=3, appellant="user", grounds="I run a school site …",
        contact="a@example.org", now=now,
    )
    assert get_by_receipt(db, receipt).id == record.id
    decide(db, record.id, outcome="reversed", reasons="…", actor=analyst, now=later)
"""

from takedown.appeals.rules import (
    APPELLANTS,
    MAX_CONTACT,
    MAX_GROUNDS,
    MAX_PAGE,
    MAX_REASONS,
    MAX_RECEIPT,
    OUTCOMES,
    AppealRecord,
    AppealState,
    Filing,
    check_decision,
    check_filing,
    check_impartial,
    due_at,
    new_receipt,
    receipt_digest,
    row_id,
)
from takedown.appeals.store import (
    Subject,
    check_subject,
    counts,
    counts_for_measure,
    deadline_of,
    decide,
    file_appeal,
    get_appeal,
    get_by_receipt,
    list_appeals,
    overdue_count,
    public_summary,
)

__all__ = [
    "APPELLANTS",
    "MAX_CONTACT",
    "MAX_GROUNDS",
    "MAX_PAGE",
    "MAX_REASONS",
    "MAX_RECEIPT",
    "OUTCOMES",
    "AppealRecord",
    "AppealState",
    "Filing",
    "Subject",
    "check_decision",
    "check_filing",
    "check_impartial",
    "check_subject",
    "counts",
    "counts_for_measure",
    "deadline_of",
    "decide",
    "due_at",
    "file_appeal",
    "get_appeal",
    "get_by_receipt",
    "list_appeals",
    "new_receipt",
    "overdue_count",
    "public_summary",
    "receipt_digest",
    "row_id",
]
