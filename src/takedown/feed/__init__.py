"""The directive feed: file format, TUF repository (publisher) and client."""

from takedown.feed.client import FeedClient, FeedError
from takedown.feed.directives import TARGET_NAME, dumps, loads
from takedown.feed.repository import RepoInfo, Repository, init_repository, publish

__all__ = [
    "TARGET_NAME",
    "FeedClient",
    "FeedError",
    "RepoInfo",
    "Repository",
    "dumps",
    "init_repository",
    "loads",
    "publish",
]
