"""Throughput of a real transfer through a path, against a control."""

from takedown.measure.transfer import (
    Comparison,
    TransferResult,
    compare,
    measure_transfer,
)
from takedown.names import parse_resolve

__all__ = ["Comparison", "TransferResult", "compare", "measure_transfer", "parse_resolve"]
