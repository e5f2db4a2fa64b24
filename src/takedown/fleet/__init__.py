"""The fleet of enforcement points: operators, their points' signed reports, and status
(lag behind the feed, silences, fail-open, throughput under each measure)."""
