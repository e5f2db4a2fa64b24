"""Target patterns compiled to a fast matcher, and collateral analysis of rule sets."""

from takedown.match.matcher import (
    MIN_PREFIX_V4,
    MIN_PREFIX_V6,
    IPRule,
    Matcher,
    parse_host_rule,
    parse_ip_rule,
)
from takedown.match.reference import ReferenceMatcher

__all__ = [
    "MIN_PREFIX_V4",
    "MIN_PREFIX_V6",
    "IPRule",
    "Matcher",
    "ReferenceMatcher",
    "parse_host_rule",
    "parse_ip_rule",
]
