"""takedown: a regulator's register, notices, ledger, ladder, feed and enforcement point."""

__version__ = "0.1.0"
