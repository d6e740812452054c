"""`relay queue list|retry|delete`: look at and steer the outbound queue.

A running relay owns its store, so the command goes through its admin socket; only when no
relay answers there does it open the store itself.
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

import trio

from relay import admin_call
from relay.outbound.queue_ops import QueueCommandError, queue_command

ADMIN_TIMEOUT = 30.0


class RelayRunning(Exception):
    """The relay answered on its admin socket but could not run the command."""


async def _direct(config: Any, params: dict[str, Any]) -> dict[str, Any]:
    from relay.log import Logger
    from relay.store import open_store

    async with open_store(config, Logger(level="warning"), expiry_interval=None) as store:
        try:
            return await queue_command(store, params)
        except QueueCommandError as e:
            return {"error": str(e)}  # raised outside, not wrapped by the store's nursery


def run(config: Any, params: dict[str, Any]) -> dict[str, Any]:
    try:
        return admin_call.call(Path(config.data_dir), "queue", params, timeout=ADMIN_TIMEOUT)
    except admin_call.Refused as e:
        raise RelayRunning(str(e)) from None
    except admin_call.NotRunning:
        answer = trio.run(_direct, config, params)
    if "error" in answer:
        raise QueueCommandError(answer["error"])
    return answer


def _command(config: Any, params: dict[str, Any]) -> dict[str, Any] | None:
    from relay.store import StoreError

    try:
        return run(config, params)
    except (QueueCommandError, RelayRunning, StoreError) as e:
        print(f"relay queue: {e}", file=sys.stderr)
        return None


def format_entry(e: dict[str, Any]) -> str:
    rcpts = ", ".join(e["recipients"])
    lines = [
        f"{e['id']}  {e['size']} bytes  from <{e['sender']}>  queued {e['created']}",
        f"    to: {rcpts}",
        f"    attempts: {e['attempts']}  next: {e['next_attempt']}",
    ]
    if e["last_error"]:
        lines.append(f"    last error: {e['last_error']}")
    return "\n".join(lines)


def queue_list(config: Any, args: argparse.Namespace) -> int:
    answer = _command(config, {"action": "list"})
    if answer is None:
        return 1
    entries = answer["entries"]
    if getattr(args, "json", False):
        print(json.dumps(entries, indent=2))
    else:
        for e in entries:
            print(format_entry(e))
        print(f"{len(entries)} message(s) in the queue")
    return 0


def queue_retry(config: Any, args: argparse.Namespace) -> int:
    answer = _command(config, {"action": "retry", "ids": list(getattr(args, "ids", []))})
    if answer is None:
        return 1
    print(f"{answer['changed']} message(s) will be tried now")
    return 0


def queue_delete(config: Any, args: argparse.Namespace) -> int:
    answer = _command(config, {"action": "delete", "ids": list(getattr(args, "ids", []))})
    if answer is None:
        return 1
    print(f"{answer['changed']} message(s) deleted without a bounce")
    return 0
