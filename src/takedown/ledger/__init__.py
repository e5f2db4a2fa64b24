"""The compliance ledger: figures from items, notices, responses and checks.

- ``figures``: the pure core (sans-IO): facts as plain rows, the item state machine, the
  figures as of an explicit ``now``, and their rendering (``statement``, ``figures_json``).
- ``queries``: database reads: the facts snapshot (``load_facts``) and ``status``, the one
  computation behind ``takedown status`` and ``GET /api/status``.
- ``projection``: the one writer of the ``items`` state projection (``apply_response``,
  ``apply_checks``, ``apply_delist``, ``set_deadline``, ``rebuild``), called inside the
  transaction that records the fact.

The names below are the ledger's public interface; import them from ``takedown.ledger``.
"""

from __future__ import annotations

from takedown.ledger.figures import (
    ALL,
    FAR_FUTURE,
    STATUS_KEYS,
    CheckFact,
    ItemFact,
    ItemStatus,
    LedgerFacts,
    LedgerIndex,
    ResponseFact,
    ReuploadFact,
    daily_series,
    figures_at,
    figures_by_category,
    figures_json,
    is_overdue,
    make_figures,
    on_check,
    on_response,
    quantile,
    reopened_count,
    statement,
    ttr_seconds,
    with_reuploads,
)
from takedown.ledger.projection import (
    NEW_ITEM_STATE,
    Transition,
    apply_checks,
    apply_delist,
    apply_response,
    rebuild,
    rebuild_db,
    set_deadline,
)
from takedown.ledger.queries import (
    Status,
    load_facts,
    reupload_facts,
    status,
    status_fast,
    status_from_facts,
)

__all__ = [
    "ALL",
    "FAR_FUTURE",
    "NEW_ITEM_STATE",
    "STATUS_KEYS",
    "CheckFact",
    "ItemFact",
    "ItemStatus",
    "LedgerFacts",
    "LedgerIndex",
    "ResponseFact",
    "ReuploadFact",
    "Status",
    "Transition",
    "apply_checks",
    "apply_delist",
    "apply_response",
    "daily_series",
    "figures_at",
    "figures_by_category",
    "figures_json",
    "is_overdue",
    "load_facts",
    "make_figures",
    "on_check",
    "on_response",
    "quantile",
    "rebuild",
    "rebuild_db",
    "reopened_count",
    "reupload_facts",
    "set_deadline",
    "statement",
    "status",
    "status_fast",
    "status_from_facts",
    "ttr_seconds",
    "with_reuploads",
]
