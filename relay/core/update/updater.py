"""Updates: a signed RAUC bundle from a file (a USB stick through hwctl, the admin socket) or
from the update manifest at `[update] url`, installed into the inactive root slot, then a reboot
into it (docs/updates.md).

One worker task (the "update" service) runs one update at a time; `submit()` hands it a source
and answers at once, and the state (idle, downloading, installing, installed, failed) with its
progress and message is what the admin status shows, so the display can follow. Each update:

1. the bundle is copied or downloaded into `<data_dir>/update/bundle.raucb` (RAUC leases the file,
   which only its owner may; the size is bounded by `max_bundle_size`, a download's SHA-256 must
   be the manifest's); one already in that folder (hwctl's copy from a stick) is moved;
2. `rauc info` checks the signature against the system's keyring and reads the manifest; the
   bundle is refused unless its compatible is the system's and its version newer than the one
   running (the booted slot's bundle, or the relay's own version on a freshly flashed card);
3. `rauc install` writes the inactive slot and makes it the next boot; the update is recorded
   (relay.core.update.trial), then `reboot_command` runs. The relay started after that reboot
   says whether the update runs or was rolled back.

The "update-poll" service (only while url is set) asks the manifest at start and then every
check_interval; a manifest offering nothing newer costs no download. A failure is retried at
the next check. The copy is deleted after the attempt: the SD card keeps no second root image.
"""

from __future__ import annotations

import contextlib
import json
import os
import shlex
import subprocess
from dataclasses import asdict, dataclass
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urljoin

import trio

from relay.core.update import rauc, trial
from relay.core.update.rauc import RaucError
from relay.outbound.download import DownloadError, fetch_bytes, fetch_to_file

if TYPE_CHECKING:
    from relay.app import App

MAX_MANIFEST = 64 * 1024
COPY_CHUNK = 1 << 20
REBOOT_TIMEOUT = 60.0
OUTCOME_TIMEOUT = 30.0
BUSY = ("downloading", "installing")


class UpdateError(Exception):
    """Why an update was refused or failed, said for the admin."""


class UpdateBusy(Exception):
    """Another update runs."""


@dataclass
class UpdateState:
    # idle | downloading | installing | installed | failed; after a reboot: updated | rolled-back
    state: str = "idle"
    progress: int = 0  # percent of the current step (download, install)
    step: str = ""  # what rauc is doing now
    version: str = ""  # the bundle's (or the manifest's) version
    message: str = ""  # the outcome, or why it failed


@dataclass(frozen=True)
class FromFile:
    path: Path


@dataclass(frozen=True)
class FromManifest:
    url: str


Source = FromFile | FromManifest


class Updater:
    def __init__(self) -> None:
        self.state = UpdateState()
        self._send, self._receive = trio.open_memory_channel[Source](1)

    def status(self) -> dict[str, Any]:
        return asdict(self.state)

    @property
    def busy(self) -> bool:
        return self.state.state in BUSY

    def submit(self, source: Source) -> None:
        """Queue an update for the worker; raises UpdateBusy if one runs or waits."""
        if self.busy:
            raise UpdateBusy(f"an update is {self.state.state} already")
        try:
            self._send.send_nowait(source)
        except trio.WouldBlock:
            raise UpdateBusy("an update is waiting to start already") from None
        self.state = UpdateState(
            state="downloading" if isinstance(source, FromManifest) else "installing"
        )

    async def run(self, app: App, *, task_status: trio.TaskStatus[None]) -> None:
        """The worker: one update after the other, for as long as the relay runs."""
        with trio.move_on_after(OUTCOME_TIMEOUT):  # a hung RAUC must not hold the relay back
            await self._report_last_install(app)
        task_status.started()
        async for source in self._receive:
            try:
                await self._update(app, source)
            except (UpdateError, RaucError, DownloadError, ValueError) as e:
                self._failed(app, str(e))
            except OSError as e:  # the data disk: full, read-only, gone
                self._failed(app, f"{e.filename or 'data disk'}: {e.strerror or e}")
            except Exception as e:  # the worker must outlive any one update
                app.log.exception("update-crashed", e)
                self._failed(app, f"internal error: {e}")
            finally:
                _remove(_bundle_path(app))

    async def _report_last_install(self, app: App) -> None:
        """After a reboot, what became of the update installed before it (trial.py)."""
        directory = _bundle_path(app).parent
        tried = trial.load(directory)
        if tried is None:
            return
        try:
            system = await rauc.system_status(app.config.update.rauc)
        except RaucError as e:
            app.log.warning("update-outcome-unknown", error=str(e))
            return
        found = trial.outcome(tried, running_version(system), trial.current_boot_id())
        self.state = UpdateState(state=found.state, version=tried.version, message=found.message)
        if found.state == "rolled-back":
            app.log.warning("update-rolled-back", version=tried.version)
            trial.remove(directory)

    def _failed(self, app: App, message: str) -> None:
        self.state.state, self.state.message = "failed", message
        app.log.warning("update-failed", error=message)

    async def _update(self, app: App, source: Source) -> None:
        config = app.config.update
        bundle = _bundle_path(app)
        bundle.parent.mkdir(mode=0o700, exist_ok=True)
        if isinstance(source, FromManifest):
            wanted = await self._check_manifest(app, source)
            if wanted is None:
                return
            await self._download(app, *wanted, bundle)
        else:
            await _take(source.path, bundle, config.max_bundle_size)
        await self._install(app, bundle)

    async def _check_manifest(self, app: App, source: FromManifest) -> tuple[str, str] | None:
        """(bundle URL, sha256) if the manifest offers a newer version, else None (idle)."""
        config = app.config.update
        body = await fetch_bytes(source.url, config.ca_file, MAX_MANIFEST)
        offered, bundle_url, sha256 = parse_manifest(source.url, body)
        self.state.version = offered
        running = running_version(await rauc.system_status(config.rauc))
        if rauc.parse_version(offered) <= rauc.parse_version(running):
            self.state.state = "idle"
            self.state.message = f"up to date: {running} runs, the server offers {offered}"
            return None
        app.log.info("update-download", version=offered)
        return bundle_url, sha256

    async def _download(self, app: App, url: str, sha256: str, bundle: Path) -> None:
        config = app.config.update

        def progress(done: int, total: int | None) -> None:
            self.state.progress = 100 * done // total if total else 0

        got = await fetch_to_file(url, config.ca_file, config.max_bundle_size, bundle, progress)
        if got != sha256:
            raise UpdateError(f"{url}: wrong SHA-256 {got}, the manifest says {sha256}")

    async def _install(self, app: App, bundle: Path) -> None:
        config = app.config.update
        self.state.state, self.state.progress, self.state.step = "installing", 0, "checking"
        info = await rauc.bundle_info(config.rauc, bundle)
        self.state.version = info.version
        system = await rauc.system_status(config.rauc)
        refusal = refuse(info, system)
        if refusal:
            raise UpdateError(refusal)
        app.log.warning("update-install", version=info.version)

        def progress(percent: int, step: str) -> None:
            self.state.progress, self.state.step = percent, step

        await rauc.install(config.rauc, bundle, progress)
        with contextlib.suppress(OSError):  # a disk that cannot take it costs only the report
            trial.record(bundle.parent, info.version, running_version(system))
        self.state.state, self.state.progress = "installed", 100
        self.state.message = f"{info.version} installed, rebooting into it"
        app.log.warning("update-installed", version=info.version)
        await _reboot(config.reboot_command)


def refuse(bundle: rauc.Bundle, system: rauc.System) -> str:
    """Why this bundle must not be installed on this system; "" if it may."""
    if bundle.compatible != system.compatible:
        return (
            f"bundle refused: it is for {bundle.compatible!r}, this system is {system.compatible!r}"
        )
    running = running_version(system)
    try:
        newer = rauc.parse_version(bundle.version) > rauc.parse_version(running)
    except ValueError as e:
        return f"bundle refused: {e}"
    if not newer:
        return f"bundle refused: version {bundle.version} is not newer than {running}, which runs"
    return ""


def running_version(system: rauc.System) -> str:
    """The booted slot's bundle version; on a card as flashed, the relay's own."""
    if system.booted_version:
        return system.booted_version
    try:
        return version("chatmail-relay-appliance")
    except PackageNotFoundError:
        return "0"


def parse_manifest(url: str, body: bytes) -> tuple[str, str, str]:
    """(version, bundle URL, sha256) of a manifest {"version", "bundle", "sha256"}."""
    try:
        manifest = json.loads(body)
    except ValueError:
        raise UpdateError(f"{url}: the manifest is not JSON") from None
    if not isinstance(manifest, dict):
        raise UpdateError(f"{url}: the manifest is not a JSON object")
    offered, bundle, sha256 = (manifest.get(key) for key in ("version", "bundle", "sha256"))
    if not (isinstance(offered, str) and isinstance(bundle, str) and isinstance(sha256, str)):
        raise UpdateError(f"{url}: the manifest needs version, bundle and sha256 strings")
    try:
        rauc.parse_version(offered)
    except ValueError as e:
        raise UpdateError(f"{url}: {e}") from None
    sha256 = sha256.lower()
    if len(sha256) != 64 or any(c not in "0123456789abcdef" for c in sha256):
        raise UpdateError(f"{url}: sha256 must be 64 hex digits")
    return offered, urljoin(url, bundle), sha256


async def run_update_poll(
    app: App, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
) -> None:
    """Ask `[update] url` now and every check_interval (the "update-poll" service)."""
    task_status.started()
    while True:
        config = app.config.update
        if app.update.state.state != "installed":  # a reboot is pending: nothing to fetch
            # If an install from a stick or the admin runs, the next check comes.
            with contextlib.suppress(UpdateBusy):
                app.update.submit(FromManifest(config.url))
        await trio.sleep(config.check_interval)


def _bundle_path(app: App) -> Path:
    return app.config.data_dir / "update" / "bundle.raucb"


async def _take(source: Path, target: Path, max_size: int) -> None:
    """Make `target` the bundle: one hwctl put into the update folder is moved there, one
    anywhere else copied (bounded, in a worker thread)."""

    def take() -> None:
        try:
            if source.parent == target.parent:
                if source.stat().st_size > max_size:
                    raise UpdateError(f"{source}: bigger than {max_size} bytes")
                os.replace(source, target)
                return
            with open(source, "rb") as src, open(target, "wb") as dst:
                copied = 0
                while chunk := src.read(COPY_CHUNK):
                    copied += len(chunk)
                    if copied > max_size:
                        raise UpdateError(f"{source}: bigger than {max_size} bytes")
                    dst.write(chunk)
        except OSError as e:
            raise UpdateError(f"{source}: cannot be read: {e.strerror or e}") from None

    await trio.to_thread.run_sync(take)


async def _reboot(command: str) -> None:
    try:
        with trio.fail_after(REBOOT_TIMEOUT):
            done = await trio.run_process(
                shlex.split(command), stdin=subprocess.DEVNULL, capture_stderr=True, check=False
            )
    except (OSError, trio.TooSlowError) as e:
        raise UpdateError(f"installed, but the reboot command failed: {e}") from None
    if done.returncode != 0:
        reason = done.stderr.decode("utf-8", "replace").strip()[-200:]
        raise UpdateError(f"installed, but the reboot command failed: {reason or done.returncode}")


def _remove(path: Path) -> None:
    with contextlib.suppress(FileNotFoundError):
        path.unlink()
