"""Target patterns compiled to a fast matcher, and collateral analysis of rule sets."""

from takedown.match.collateral import (
    HostHit,
    IPHit,
    broad_ip_rules,
    host_collateral,
    hosts_from_citizenlab,
    ip_collateral,
    parse_citizenlab_hosts,
    parse_resolved,
    read_resolved,
    substring_rule_hits,
)
from takedown.match.host_patterns import parse_host_rule
from takedown.match.matcher import (
    MIN_PREFIX_V4,
    MIN_PREFIX_V6,
    IPRule,
    Matcher,
    parse_ip_rule,
)
from takedown.match.reference import ReferenceMatcher

__all__ = [
    "MIN_PREFIX_V4",
    "MIN_PREFIX_V6",
    "HostHit",
    "IPHit",
    "IPRule",
    "Matcher",
    "ReferenceMatcher",
    "broad_ip_rules",
    "host_collateral",
    "hosts_from_citizenlab",
    "ip_collateral",
    "parse_citizenlab_hosts",
    "parse_host_rule",
    "parse_ip_rule",
    "parse_resolved",
    "read_resolved",
    "substring_rule_hits",
]
