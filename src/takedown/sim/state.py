"""The simulated platform's state: a sans-IO core over notices, ``now`` and the behaviour.

``receive`` takes a verified notice; ``tick(now)`` decides what the platform does by
``now`` and returns the actions to report. Deterministic: the same notices and the same
sequence of ticks give the same actions, whatever order the notices arrived in, because
every per-item choice is a seeded draw keyed by the item id.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from datetime import datetime
from urllib.parse import urlsplit

from takedown.errors import Conflict, InputError
from takedown.sim.behaviour import Behaviour


@dataclass
class SimItem:
    id: int
    target: str
    first_noticed: datetime
    prompt: bool
    fate: str | None = None  # removed / withheld / rejected, once acted on
    acted_at: datetime | None = None


@dataclass
class NoticeReceipt:
    key: str
    digest: str
    received_at: datetime
    items: list[int]
    receipts: int = 1  # deliveries seen; the notice was acted on at the first only


@dataclass(frozen=True)
class Action:
    item_id: int
    response: str  # removed / restricted / rejected (the platform API's words)
    reason: str | None = None
    policy: str | None = None


@dataclass
class Stats:
    received: int = 0
    accepted: int = 0
    duplicates: int = 0
    conflicts: int = 0
    bad_signature: int = 0
    stale: int = 0
    malformed: int = 0
    faulted: int = 0
    acks_sent: int = 0
    ack_errors: int = 0
    responses_sent: int = 0
    response_errors: int = 0
    ticks: int = 0

    def as_json(self) -> dict[str, int]:
        return dict(self.__dict__)


_RESPONSE = {"removed": "removed", "withheld": "restricted", "rejected": "rejected"}


def _path_key(target: str) -> tuple[str, str] | None:
    if "://" not in target:
        return None
    parts = urlsplit(target)
    if not parts.hostname:
        return None
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return parts.hostname.lower(), path


@dataclass
class SimState:
    behaviour: Behaviour
    items: dict[int, SimItem] = field(default_factory=dict)
    notices: dict[str, NoticeReceipt] = field(default_factory=dict)
    by_path: dict[tuple[str, str], int] = field(default_factory=dict)
    stats: Stats = field(default_factory=Stats)
    _order: list[int] | None = None

    def receive(self, key: str, body: bytes, doc: dict, now: datetime) -> str:
        """Store a verified notice. Return ``accepted`` or ``duplicate``; a reused key with
        other content raises Conflict. A notice is acted on once, however often it comes."""
        digest = hashlib.sha256(body).hexdigest()
        prior = self.notices.get(key)
        if prior is not None:
            if prior.digest != digest:
                self.stats.conflicts += 1
                raise Conflict(
                    "Idempotency-Key reused for a different notice", where="Idempotency-Key"
                )
            prior.receipts += 1
            self.stats.duplicates += 1
            return "duplicate"
        items = doc.get("items")
        if str(doc.get("notice_id")) != key or not isinstance(items, list):
            self.stats.malformed += 1
            raise InputError("notice_id does not match Idempotency-Key, or no items", where="body")
        ids: list[int] = []
        for entry in items:
            if not isinstance(entry, dict) or not isinstance(entry.get("id"), int):
                self.stats.malformed += 1
                raise InputError("each item needs an integer id", where="body.items")
            ids.append(entry["id"])
        for entry in items:
            iid = entry["id"]
            if iid not in self.items:
                target = str(entry.get("target", ""))
                self.items[iid] = SimItem(iid, target, now, self.behaviour.is_prompt(now))
                key_path = _path_key(target)
                if key_path is not None:
                    self.by_path[key_path] = iid
                self._order = None
        self.notices[key] = NoticeReceipt(key, digest, now, ids)
        self.stats.accepted += 1
        return "accepted"

    def _act(self, item: SimItem, now: datetime) -> Action:
        b = self.behaviour
        item.fate = b.fate(item.id)
        item.acted_at = now
        if item.fate == "rejected":
            return Action(item.id, "rejected", b.reject_reason, b.reject_policy)
        return Action(item.id, _RESPONSE[item.fate])

    def tick(self, now: datetime) -> list[Action]:
        """Do what the behaviour says is due by ``now``; return the actions taken.

        Backlog progress counts every item acted on (removed, withheld or rejected).
        """
        self.stats.ticks += 1
        b = self.behaviour
        actions: list[Action] = []
        backlog: list[SimItem] = []
        for item in self.items.values():
            if item.prompt:
                if item.fate is None and item.first_noticed + b.prompt_delay(item.id) <= now:
                    actions.append(self._act(item, now))
            else:
                backlog.append(item)
        share = b.backlog_share(now)
        if backlog and share > 0:
            target = math.floor(share * len(backlog) + 1e-9)
            need = target - sum(1 for i in backlog if i.fate is not None)
            if need > 0:
                if self._order is None:
                    self._order = sorted(
                        (i.id for i in self.items.values() if not i.prompt),
                        key=lambda iid: (b.draw(iid, "order"), iid),
                    )
                for iid in self._order:
                    if need <= 0:
                        break
                    item = self.items[iid]
                    if item.fate is None:
                        actions.append(self._act(item, now))
                        need -= 1
        actions.sort(key=lambda a: a.item_id)
        return actions

    def status(self, host: str, path: str, *, abroad: bool) -> int:
        """HTTP status a visitor gets for a post: 200, 404 (removed) or 451 (withheld)."""
        iid = self.by_path.get((host.lower(), path))
        if iid is None:
            return 200
        fate = self.items[iid].fate
        if fate == "removed":
            return 404
        if fate == "withheld" and not abroad:
            return 451
        return 200

    def counts(self) -> dict[str, int]:
        out = {"items": len(self.items), "removed": 0, "withheld": 0, "rejected": 0}
        for item in self.items.values():
            if item.fate is not None:
                out[item.fate] += 1
        return out
