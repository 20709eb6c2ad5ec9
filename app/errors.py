"""Errors of the app package: one root that carries its HTTP status; the API maps it in one place."""

from __future__ import annotations


class SettleError(Exception):
    """Root of every error raised by the app package."""

    status_code = 500
    title = "Internal error"


class ConfigError(SettleError):
    """The configuration file or environment is invalid. The message names the key and the problem."""

    title = "Invalid configuration"


class NotFound(SettleError):
    status_code = 404
    title = "Not found"


class BadRequest(SettleError):
    """Bad input; `field` names the offending parameter."""

    status_code = 400
    title = "Bad request"

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


class WatcherLocked(SettleError):
    """Another watcher already holds the lock for this chain."""

    status_code = 409
    title = "Watcher already running"
