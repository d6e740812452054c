"""Ping-pong between two real Delta Chat profiles through a relay on 127.0.0.1.

Starts `relay serve` (LAN mode, free ports, a temporary data directory) and one
deltachat-rpc-server, onboards two profiles through /new, verifies them with SecureJoin, then
sends N messages alternating direction, each only after the previous one arrived. Prints the
median and p90 from the send call to the receiver's IncomingMsg event (goal: median <= 120 ms).

    .venv/bin/python bench/dc_pingpong.py [--messages 50] [--pause 5]

Pacing: the core has its own send rate limiter (about 6 messages a minute per profile); above
that rate its SMTP loop holds each new message for up to a second, which is the client's choice,
not the relay's latency. So by default the next ping goes out `--pause` seconds after the last
pong arrived, which keeps each profile at <= 6 a minute; `--pause 0` shows the back-to-back case.
The relay's per-user send limit is raised too, so `--pause 0` does not meet its 60 a minute.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.e2e.dclient import DCClient, LiveRelay, Profile, rpc_server_path  # noqa: E402
from tests.helpers import make_config  # noqa: E402

GOAL_MEDIAN_MS = 120.0


def percentile(values: list[float], fraction: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(fraction * (len(ordered) - 1)))]


def exists_seen(receiver: Profile, since: float) -> float | None:
    """When the receiver's IDLE got the relay's EXISTS for a message sent at `since`."""
    for seen, line in receiver.core_log:
        if seen >= since and "Idle has NewData" in line and "Exists" in line:
            return seen
    return None


def run(messages: int, pause: float, workdir: Path) -> tuple[list[float], list[float]]:
    config = make_config(workdir / "relay-data")
    limits = dataclasses.replace(
        config.limits, max_user_send_per_minute=100_000, max_user_send_burst_size=10_000
    )
    relay = LiveRelay(dataclasses.replace(config, limits=limits), workdir)
    server = rpc_server_path()
    if server is None:
        raise SystemExit("deltachat-rpc-server is not installed (pip install -e '.[test]')")
    client = DCClient(workdir / "accounts", server, workdir / "rpc-server.log")
    relay.start()
    try:
        client.start()
        started = time.monotonic()
        alice, bob = client.add_profile("alice", relay), client.add_profile("bob", relay)
        print(f"two profiles configured and idle in {time.monotonic() - started:.2f} s")
        started = time.monotonic()
        bob.securejoin(alice)
        print(f"SecureJoin done in {time.monotonic() - started:.2f} s")
        chats = {alice.name: alice.chat_with(bob), bob.name: bob.chat_with(alice)}
        latencies, to_exists = [], []
        for i in range(messages):
            sender, receiver = (alice, bob) if i % 2 == 0 else (bob, alice)
            text = f"ping {i}"
            time.sleep(pause)
            sent = time.monotonic()
            sender.call(chats[sender.name].send_text, text)
            event = receiver.wait_for("IncomingMsg", timeout=30)
            latencies.append((time.monotonic() - sent) * 1000)
            if (seen := exists_seen(receiver, sent)) is not None:
                to_exists.append((seen - sent) * 1000)
            got = receiver.call(receiver.account.get_message_by_id(event.msg_id).get_snapshot)
            if got.text != text:
                raise SystemExit(f"{receiver.name} got {got.text!r}, expected {text!r}")
        return latencies, to_exists
    finally:
        client.close()
        relay.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--messages", type=int, default=50)
    parser.add_argument("--pause", type=float, default=5.0, help="seconds before each ping")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="dc-pingpong-") as tmp:
        latencies, to_exists = run(args.messages, args.pause, Path(tmp))
    median = statistics.median(latencies)
    print(f"send -> IncomingMsg over {len(latencies)} messages, {args.pause} s apart:")
    print(f"  median {median:.1f} ms   p90 {percentile(latencies, 0.9):.1f} ms")
    print(f"  min {min(latencies):.1f} ms   max {max(latencies):.1f} ms")
    print(
        f"  goal median <= {GOAL_MEDIAN_MS:.0f} ms: {'met' if median <= GOAL_MEDIAN_MS else 'NOT met'}"
    )
    if to_exists:  # the relay's share: SMTP in, durable, IDLE woken; the rest is the client
        print(f"send -> receiver's IDLE sees EXISTS ({len(to_exists)} arrived while idling):")
        print(
            f"  median {statistics.median(to_exists):.1f} ms   p90 {percentile(to_exists, 0.9):.1f} ms"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
