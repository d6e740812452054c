"""The one error an admin operation raises: an HTTP-like status and a message for the admin."""

from __future__ import annotations


class AdminError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def require_str(body: dict, key: str) -> str:
    value = body.get(key)
    if not isinstance(value, str) or not value.strip():
        raise AdminError(400, f"{key} is required")
    return value.strip()


def action(body: dict, *choices: str) -> str:
    value = body.get("action")
    if value not in choices:
        raise AdminError(400, f"action must be one of {', '.join(choices)}")
    return value
