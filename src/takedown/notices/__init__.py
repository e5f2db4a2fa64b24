"""Notices to platforms: deadlines, the outbox, signed webhook delivery with retries."""
