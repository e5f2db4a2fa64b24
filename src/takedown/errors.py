"""One exception hierarchy; each error carries the place the user must look at."""

from __future__ import annotations


class TakedownError(Exception):
    """Base of every error takedown reports to a person or a client.

    ``where`` names the place: ``file:line``, a field, a header, a rule.
    """

    exit_code = 1
    http_status = 400
    http_headers: tuple[tuple[str, str], ...] = ()  # (name, value) sent with the HTTP answer

    def __init__(self, message: str, *, where: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.where = where

    def __str__(self) -> str:
        return f"{self.where}: {self.message}" if self.where else self.message


class InputError(TakedownError):
    """Malformed input: a file row, a field, a header, a config entry."""

    http_status = 422


class UsageError(TakedownError):
    """Wrong command-line usage."""

    exit_code = 2


class NotFound(TakedownError):
    """A named object does not exist (or is not visible to the caller)."""

    http_status = 404


class Conflict(TakedownError):
    """The request contradicts the recorded state."""

    http_status = 409


class AuthError(TakedownError):
    """Missing or wrong credentials, or a bad signature."""

    http_status = 401
    http_headers = (("WWW-Authenticate", "Bearer"),)


class PatternError(InputError):
    """A host pattern or IP rule that must not be compiled (malformed, too broad)."""


class Forbidden(TakedownError):
    """An authenticated account may not do this (its role, or the four-eyes rule)."""

    http_status = 403


class Unavailable(TakedownError):
    """A service takedown needs cannot be reached: the database refuses the connection,
    its file cannot be opened. Not the same as a database without the schema."""

    http_status = 503
