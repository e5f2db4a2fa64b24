"""What the published directives order for a measured flow, for the report's target line.

The enforcement point decides on its own; this answers with the same ranking
(``enforce.decide.strictest``), so the report's target is what the network should do.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from takedown.enforce.decide import strictest
from takedown.enforce.subscribers import Subscribers
from takedown.model import Directive, MeasureAction


def expected_restriction(
    directives: Sequence[Directive],
    now: datetime,
    subscribers: Subscribers,
    subscriber_class: str,
    source: str,
    content: str,
) -> tuple[str | None, float | None]:
    """What the published directives order for this flow: (action, rate) or (None, None).

    For the report's target line only; the enforcement point decides on its own, with the
    same ranking (``enforce.decide.strictest``).
    """
    applying = [
        d
        for d in directives
        if d.in_force(now)
        and any(h.content_class in (content, "any") for h in d.hosts)
        and subscribers.in_share(source, d.share_for(subscriber_class), salt=d.id)
    ]
    winners = strictest(applying)
    if not winners:
        return None, None
    won = winners[0]
    if won.action == MeasureAction.BLOCK:
        return won.action.value, None
    return won.action.value, float(won.rate_kbps or 0)
