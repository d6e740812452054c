"""hwctl's main logic: keep the invite on the panel, LEDs in step with health, act on the button.

Everything about the relay comes from its admin socket. When the relay is down, the panel keeps
its last image (e-paper needs no power for that) and the LEDs say so; hwctl reconnects by itself.
"""

from __future__ import annotations

import math
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import trio

from hwctl import button, netinfo, screens
from hwctl.admin_client import AdminClient, AdminError, connect
from hwctl.display import Display
from hwctl.leds import Leds

INFO_SECONDS = 30.0  # how long the info (or proxy) page stays before the invite comes back
STATUS_EVERY = 60.0  # health poll for the LEDs and the status line
UPDATE_EVERY = 2.0  # the poll while an update downloads or installs, for its progress
UPDATE_RUNNING = ("downloading", "installing")
UPDATE_OUTCOMES = ("installed", "failed", "rolled-back")
UPDATE_LEDS = {"installed": "busy", "failed": "error", "rolled-back": "degraded"}
RECONNECT_MAX = 10.0
UNREACHABLE_AFTER = 30.0  # only then tell it on the panel: a restart should not cost a refresh
START_REFUSED = "start-refused.txt"  # in the relay's data directory, beside admin.sock
MAX_NOTE_LINES, MAX_NOTE_LINE = 4, 60
RESET_WAITS_FOR_RELAY = 60.0  # a reset asked for while the relay is (re)starting waits for it


@dataclass
class State:
    status: dict[str, Any] = field(default_factory=dict)
    invite_url: str | None = None
    invite_addr: str | None = None
    proxy_url: str | None = None  # the relay's ss:// link while its Shadowsocks port is on
    screen: str = "none"  # invite | info | proxy | countdown | message | update
    resetting: bool = False
    rollback_shown: bool = False  # the relay's news of a rolled-back update, shown once


class Controller:
    def __init__(self, admin_path: Path, display: Display, leds: Leds) -> None:
        self.admin_path = admin_path
        self.display = display
        self.leds = leds
        self.state = State()
        self.client: AdminClient | None = None
        self.connected = trio.Event()
        self.info_scope = trio.CancelScope()
        self.status_wanted = trio.Event()  # set: poll the status now, not at the next interval

    # -- running ---------------------------------------------------------------------------------

    async def run(self, levels: trio.MemoryReceiveChannel[bool]) -> None:
        send, events = trio.open_memory_channel[button.Event](16)
        await self.leds.show("booting")
        async with trio.open_nursery() as nursery:
            self.nursery = nursery
            nursery.start_soon(self.leds.run)
            nursery.start_soon(self.display.maintain)
            nursery.start_soon(button.run_logic, levels, send, button.PressLogic())
            nursery.start_soon(self._button_events, events)
            await self._relay_sessions()

    async def _relay_sessions(self) -> None:
        backoff = 0.2
        down_since = time.monotonic()
        while True:
            try:
                async with connect(self.admin_path) as client:
                    self.client = client
                    backoff = 0.2
                    await client.call("subscribe")
                    await self._refresh_status()
                    self.state.resetting = False
                    await self._new_invite()
                    self.connected.set()
                    async with trio.open_nursery() as nursery:
                        nursery.start_soon(self._poll_status)
                        async for event in client.events:
                            await self._relay_event(event)
                        nursery.cancel_scope.cancel()
            except AdminError:
                pass
            self.client = None
            self.connected = trio.Event()
            if self.state.status:
                down_since = time.monotonic()
                self.state.status = {}
            if not self.state.resetting:
                await self.leds.show("error")
                if time.monotonic() - down_since > UNREACHABLE_AFTER:
                    await self._show_relay_down()
            await trio.sleep(backoff)
            backoff = min(RECONNECT_MAX, backoff * 2)

    async def _poll_status(self) -> None:
        while True:
            with trio.move_on_after(UPDATE_EVERY if self.updating else STATUS_EVERY):
                await self.status_wanted.wait()
            self.status_wanted = trio.Event()
            await self._refresh_status()
            if self.state.screen == "invite":
                await self._show_invite()

    async def _refresh_status(self) -> None:
        assert self.client is not None
        self.state.status = await self.client.call("status")
        await self._leds_for_health()
        await self._follow_update()

    @property
    def updating(self) -> bool:
        return (self.state.status.get("update") or {}).get("state") in UPDATE_RUNNING

    def update_started(self) -> None:
        """An update was handed to the relay (USB): follow it from the next status on."""
        self.status_wanted.set()

    async def _follow_update(self) -> None:
        """While an update runs the update screen shows its progress; its outcome stays until
        the next button press (or the reboot into the new version). An update the relay found
        rolled back at its start is shown the same way, once."""
        update = self.state.status.get("update") or {}
        phase = update.get("state")
        news = phase == "rolled-back" and not self.state.rollback_shown
        if phase in UPDATE_RUNNING or (
            phase in UPDATE_OUTCOMES and (self.state.screen == "update" or news)
        ):
            self.state.rollback_shown |= news
            self.state.screen = "update"
            await self.leds.show(UPDATE_LEDS.get(phase, "updating"))
            await self.display.show(screens.render_update(self.display.size, update), "update")

    async def _leds_for_health(self) -> None:
        if self.state.screen in ("countdown", "update") or self.state.resetting:
            return
        health = self.state.status.get("health", {}).get("state", "error")
        if health == "ok" and not netinfo.has_network():
            health = "degraded"
        await self.leds.show({"ok": "healthy", "degraded": "degraded"}.get(health, "error"))

    async def _relay_event(self, event: dict[str, Any]) -> None:
        if event.get("type") == "account_created":
            await self._refresh_status()
            if event.get("addr") and event.get("addr") == self.state.invite_addr:
                # The single-use LAN invite was just used: never show it to a second person.
                await self._new_invite()
            elif self.state.screen == "invite":
                await self._show_invite()
        elif event.get("type") == "factory_reset":
            self.state.resetting = True
            await self.leds.show("booting")
            await self._show_message(
                "Factory reset", ["Erasing accounts and mail...", "The relay restarts empty."]
            )

    # -- screens ---------------------------------------------------------------------------------

    async def _new_invite(self) -> None:
        assert self.client is not None
        invite = await self.client.call("new_onboarding")
        self.state.invite_url = invite["url"]
        self.state.invite_addr = invite.get("addr")
        self.state.proxy_url = invite.get("proxy_url")
        if self.state.screen in ("invite", "none", "message"):
            await self._show_invite()

    def invite_content(self) -> screens.InviteContent:
        status = self.state.status
        accounts = status.get("accounts", 0)
        people = "1 person" if accounts == 1 else f"{accounts} people"
        problems = status.get("health", {}).get("problems", [])
        line = f"{people} · {problems[0] if problems else 'healthy'}"
        return screens.InviteContent(
            qr_payload=self.state.invite_url or "",
            name=status.get("name", "chatmail relay"),
            address=status.get("domain", ""),
            status=line,
        )

    async def _show_invite(self, *, forced: bool = False) -> None:
        if not self.state.invite_url:
            return
        self.state.screen = "invite"
        image = screens.render_invite(self.display.size, self.invite_content())
        await self.display.show(image, "invite", forced=forced)

    async def _show_info(self) -> None:
        status = self.state.status
        if self.client is not None:
            await self._refresh_status()
            status = self.state.status
        rows = [
            ("IP", netinfo.primary_ipv4() or "-"),
            ("Domain", status.get("domain", "-")),
            ("Accounts", str(status.get("accounts", "-"))),
            ("Uptime", format_uptime(status.get("uptime"))),
            ("Health", ", ".join(status.get("health", {}).get("problems", [])) or "ok"),
        ]
        if not status:
            rows[-1] = ("Health", "relay not reachable")
        self._for_a_while("info")
        title = status.get("name", "chatmail relay")
        # A button press is the one moment a full refresh is always allowed.
        await self.display.show(
            screens.render_info(self.display.size, rows, title), "info", forced=True
        )

    async def _show_proxy(self, url: str) -> None:
        self._for_a_while("proxy")
        address = self.state.status.get("domain", "")
        image = screens.render_proxy(self.display.size, url, address)
        await self.display.show(image, "proxy", forced=True)

    def _for_a_while(self, screen: str) -> None:
        """Show `screen` for INFO_SECONDS, then the invite (a new press restarts the time)."""
        self.state.screen = screen
        self.info_scope.cancel()
        self.info_scope = trio.CancelScope()
        self.nursery.start_soon(self._back_to_invite, self.info_scope)

    async def _show_message(self, title: str, lines: list[str]) -> None:
        self.state.screen = "message"
        await self.display.show(screens.render_message(self.display.size, title, lines), "message")

    async def notice(self, led: str, title: str, lines: list[str]) -> None:
        """A message from another part of hwctl (USB); it stays until the next button press."""
        await self.leds.show(led)
        await self._show_message(title, lines)

    async def admin_call(self, method: str, **params: Any) -> Any:
        if self.client is None:
            raise AdminError("relay not connected")
        return await self.client.call(method, **params)

    async def _show_relay_down(self) -> None:
        """Why mail is not served: the relay's own words when it refused to start (its
        start-refused.txt, relay/start_refusal.py), else that it is being retried."""
        try:
            note = (self.admin_path.parent / START_REFUSED).read_text(errors="replace")
        except OSError:
            await self._show_message(
                "Relay not running", ["Mail is not being served.", "Retrying..."]
            )
            return
        lines = [line[:MAX_NOTE_LINE] for line in note.splitlines()[:MAX_NOTE_LINES]]
        await self._show_message("Relay stopped", lines)

    async def _back_to_invite(self, scope: trio.CancelScope) -> None:
        with scope:
            await trio.sleep(INFO_SECONDS)
            if self.state.screen in ("info", "proxy"):
                await self._show_invite()

    # -- button ----------------------------------------------------------------------------------

    async def _button_events(self, events: trio.MemoryReceiveChannel[button.Event]) -> None:
        async for event in events:
            if self.state.resetting:
                continue
            if isinstance(event, button.ShortPress):
                # A press on the info page shows the ss:// link, where there is one.
                if self.state.screen == "info" and self.state.proxy_url:
                    await self._show_proxy(self.state.proxy_url)
                else:
                    await self._show_info()
            elif isinstance(event, button.Countdown):
                await self.leds.show("reset_countdown")
                self.state.screen = "countdown"
                image = screens.render_countdown(self.display.size, event.remaining)
                await self.display.show(image, "countdown")
            elif isinstance(event, button.Cancelled):
                self.state.screen = "invite"
                await self._leds_for_health()
                await self._show_invite()
            elif isinstance(event, button.LongPress):
                await self._factory_reset()

    async def _factory_reset(self) -> None:
        self.state.resetting = True
        await self.leds.show("booting")
        await self._show_message(
            "Factory reset", ["Erasing accounts and mail...", "The relay restarts empty."]
        )
        try:
            with trio.move_on_after(RESET_WAITS_FOR_RELAY):
                await self.connected.wait()
            if self.client is None:
                raise AdminError("relay not connected")
            await self.client.call("factory_reset")
        except AdminError:
            self.state.resetting = False
            await self.leds.show("error")
            await self._show_message(
                "Reset failed", ["The relay did not answer.", "Hold the button again."]
            )


def format_uptime(seconds: Any) -> str:
    if not isinstance(seconds, int | float) or seconds < 0:
        return "-"
    minutes = math.floor(seconds / 60)
    days, rest = divmod(minutes, 24 * 60)
    hours, mins = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h"
    if hours:
        return f"{hours} h {mins} min"
    return f"{mins} min"
