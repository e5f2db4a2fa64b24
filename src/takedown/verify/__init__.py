"""Verification: probes (probe.py), verdicts (verdict.py), vantage points, rounds (runner.py)."""
