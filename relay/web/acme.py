"""tls.mode = "acme": certificates from an ACME CA, answered with http-01 by our own server.

Files under `<data_dir>/acme/`: `account-key.pem` and `account.json` (the CA's account URL),
`cert.pem`/`key.pem` (the newest issued chain and its key) and `http-01/<token>` while a
challenge is open. The `acme` library is synchronous (requests), so one issuance runs in a
worker thread; the keeper task decides when, retries with backoff, and hands each new
certificate to `app.tls.install()`, which changes what new connections get.
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import random
import re
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import josepy as jose
import requests
import trio
from acme import challenges, client, crypto_util, errors, messages
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from relay.config import Config
from relay.durable import write_atomically
from relay.tls import acme_state_dir, write_pair
from relay.web.types import Request, Response, text_response

if TYPE_CHECKING:
    from relay.app import App

CHALLENGE_PREFIX = "/.well-known/acme-challenge/"
TOKEN_RE = re.compile(r"^[A-Za-z0-9_-]{1,256}$")
ISSUE_TIMEOUT = datetime.timedelta(minutes=3)  # validation plus finalisation at the CA
FIRST_RETRY = 60.0  # seconds after a failure; doubles up to MAX_RETRY
MAX_RETRY = 6 * 3600.0
MAX_SLEEP = 3600.0  # re-check hourly: the wall clock may jump (a Pi has no battery clock)
CLUSTER_CHECK = 300.0  # a cluster node looks for the leader's new certificate this often
SHARED_PAIR = ("acme/cert.pem", "acme/key.pem")  # names in the PostgreSQL shared_files table
SERVED_PAIR = ("tls/cert.pem", "tls/key.pem")  # config.cert_path/key_path in acme mode
USER_AGENT = "chatmail-relay-appliance"


class AcmeError(Exception):
    """An issuance failed; the message says what to check."""


def challenge_dir(config: Config) -> Path:
    return acme_state_dir(config) / "http-01"


def domains(config: Config) -> list[str]:
    """The relay's name, and mta-sts.<domain> which sending relays fetch the policy from."""
    return [config.mail_domain, f"mta-sts.{config.mail_domain}"]


def renewal_time(cert: x509.Certificate) -> datetime.datetime:
    """Two thirds into the certificate's lifetime."""
    start, end = cert.not_valid_before_utc, cert.not_valid_after_utc
    return start + (end - start) * 2 / 3


async def challenge(request: Request, app: App) -> Response:
    token = request.path[len(CHALLENGE_PREFIX) :]
    if not TOKEN_RE.match(token):
        return text_response(404, "no such challenge\n")
    try:
        answer = await trio.Path(challenge_dir(app.config) / token).read_bytes()
    except FileNotFoundError:
        shared = getattr(app.store, "shared_file", None)  # another node of the cluster issues
        found = await shared(shared_challenge(token)) if shared is not None else None
        if found is None:
            return text_response(404, "no such challenge\n")
        answer = found
    return Response(200, answer, "application/octet-stream")


def shared_challenge(token: str) -> str:
    return f"acme/http-01/{token}"


@dataclass(frozen=True)
class Settings:
    directory: str
    email: str
    ca_file: str  # trust for the directory's HTTPS (a private CA); "" = system roots
    domains: list[str]
    state: Path
    challenges: Path
    # In a cluster: publish(name, answer or None) shares an open challenge with the other nodes
    # (the CA's requests reach any of them); called from the issuing thread.
    publish: Callable[[str, bytes | None], None] | None = None

    @classmethod
    def from_config(cls, config: Config) -> Settings:
        tls = config.tls
        return cls(
            directory=tls.acme_directory,
            email=tls.acme_email,
            ca_file=getattr(tls, "acme_ca_file", ""),
            domains=domains(config),
            state=acme_state_dir(config),
            challenges=challenge_dir(config),
        )


def _account_key(settings: Settings) -> jose.JWKEC:
    path = settings.state / "account-key.pem"
    if path.exists():
        key = serialization.load_pem_private_key(path.read_bytes(), password=None)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
        pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        write_atomically(path, pem)
    return jose.JWKEC(key=key)


def _connect(settings: Settings) -> tuple[client.ClientNetwork, client.ClientV2]:
    net = client.ClientNetwork(_account_key(settings), alg=jose.ES256, user_agent=USER_AGENT)
    if settings.ca_file:
        # ClientNetwork passes verify=verify_ssl with every request, which overrides the
        # session's own verify; requests takes a CA bundle's path there as well as a bool.
        net.verify_ssl = settings.ca_file  # type: ignore[assignment]
    directory = client.ClientV2.get_directory(settings.directory, net)
    acme = client.ClientV2(directory, net)
    account_file = settings.state / "account.json"
    try:
        uri = json.loads(account_file.read_text())["uri"]
    except (OSError, ValueError, KeyError):
        uri = None
    if uri is None:
        if settings.email:
            registration = messages.NewRegistration.from_data(
                terms_of_service_agreed=True, email=settings.email
            )
        else:
            registration = messages.NewRegistration.from_data(terms_of_service_agreed=True)
        try:
            uri = acme.new_account(registration).uri
        except errors.ConflictError as e:  # the CA already knows this key
            uri = e.location
        write_atomically(account_file, json.dumps({"uri": uri}).encode())
    net.account = messages.RegistrationResource(uri=uri, body=messages.Registration())
    return net, acme


def issue(settings: Settings) -> tuple[bytes, bytes]:
    """One complete issuance (blocking): returns (fullchain PEM, private key PEM)."""
    try:
        net, acme = _connect(settings)
        key = ec.generate_private_key(ec.SECP256R1())
        key_pem = key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        order = acme.new_order(crypto_util.make_csr(key_pem, settings.domains))
        opened: list[Path] = []
        try:
            for authz in order.authorizations:
                if authz.body.status == messages.STATUS_VALID:
                    continue  # the CA remembers a recent validation
                challb = _http01(authz)
                response, validation = challb.response_and_validation(net.key)
                settings.challenges.mkdir(parents=True, exist_ok=True)
                token_file = settings.challenges / challb.chall.encode("token")
                token_file.write_text(validation)
                opened.append(token_file)
                if settings.publish is not None:
                    settings.publish(shared_challenge(token_file.name), validation.encode())
                acme.answer_challenge(challb, response)
            deadline = datetime.datetime.now() + ISSUE_TIMEOUT
            order = acme.poll_and_finalize(order, deadline)
        finally:
            for token_file in opened:
                token_file.unlink(missing_ok=True)
                if settings.publish is not None:
                    settings.publish(shared_challenge(token_file.name), None)
    except requests.RequestException as e:
        raise AcmeError(f"cannot reach the ACME directory {settings.directory}: {e}") from None
    except errors.ValidationError as e:
        raise AcmeError(
            f"the CA could not validate {', '.join(settings.domains)} over http-01: {e} "
            "(do these names resolve to this relay, and is its port 80 reachable?)"
        ) from None
    except errors.TimeoutError:
        raise AcmeError("the CA did not finish the order in time") from None
    except (messages.Error, errors.Error) as e:
        raise AcmeError(f"the CA refused: {e}") from None
    return order.fullchain_pem.encode(), key_pem


def _http01(authz: messages.AuthorizationResource) -> messages.ChallengeBody:
    for challb in authz.body.challenges:
        if isinstance(challb.chall, challenges.HTTP01):
            return challb
    name = authz.body.identifier.value
    raise AcmeError(f"the CA offers no http-01 challenge for {name}")


class CertificateKeeper:
    """Keeps a valid ACME certificate installed; run it in the server's nursery."""

    def __init__(self, app: App):
        self.app = app
        self._lock = trio.Lock()
        self._wake = trio.Event()

    def stored(self) -> tuple[bytes, bytes] | None:
        folder = acme_state_dir(self.app.config)
        try:
            return (folder / "cert.pem").read_bytes(), (folder / "key.pem").read_bytes()
        except OSError:
            return None

    def stored_certificate(self) -> x509.Certificate | None:
        pair = self.stored()
        return x509.load_pem_x509_certificate(pair[0]) if pair else None

    async def obtain(self) -> x509.Certificate:
        """Issue a certificate now and install it; raises AcmeError."""
        async with self._lock:
            settings = Settings.from_config(self.app.config)
            if hasattr(self.app.store, "put_shared_file"):
                settings = dataclasses.replace(settings, publish=self._publish)
            cert_pem, key_pem = await trio.to_thread.run_sync(
                issue, settings, abandon_on_cancel=True
            )
            write_pair(settings.state / "cert.pem", settings.state / "key.pem", cert_pem, key_pem)
            self.app.tls.install(cert_pem, key_pem)
        cert = x509.load_pem_x509_certificate(cert_pem)
        self.app.log.info(
            "acme-certificate-installed",
            names=",".join(settings.domains),
            not_after=cert.not_valid_after_utc.isoformat(),
        )
        return cert

    def renew_now(self) -> None:
        """Wake the keeper to renew at once (e.g. from the admin API)."""
        self._wake.set()

    async def run(self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED) -> None:
        if hasattr(self.app.store, "acme_leader"):  # PostgreSQL: nodes behind one name
            await self.run_in_cluster(task_status=task_status)
            return
        pair = self.stored()
        if (
            pair
            and self.app.config.cert_path.exists()
            and pair[0] != self.app.config.cert_path.read_bytes()
        ):
            self.app.tls.install(*pair)  # e.g. the listeners started with a placeholder
        task_status.started()
        retry = FIRST_RETRY
        while True:
            cert = self.stored_certificate()
            now = datetime.datetime.now(datetime.UTC)
            wait = (renewal_time(cert) - now).total_seconds() if cert else 0.0
            if wait > 0:
                await self._sleep(min(wait, MAX_SLEEP))
                if not self._woken():
                    continue
            try:
                await self.obtain()
                retry = FIRST_RETRY
            except Exception as e:  # never let certificate trouble stop the mail service
                if isinstance(e, AcmeError):  # the CA's own words say it all
                    self.app.log.error("acme-failed", error=str(e), retry_in_s=round(retry))
                else:
                    self.app.log.exception("acme-failed", e, retry_in_s=round(retry))
                await self._sleep(retry * random.uniform(0.8, 1.2))
                retry = min(retry * 2, MAX_RETRY)
            self._woken()

    async def run_in_cluster(
        self, *, task_status: trio.TaskStatus[None] = trio.TASK_STATUS_IGNORED
    ) -> None:
        """Only the leader (an advisory lock, relay/store/postgres/shared_files.py) talks to the
        CA and shares what it gets; every node installs the shared certificate when it differs
        from its own, at start and every CLUSTER_CHECK seconds."""
        store = self.app.store
        try:
            await self.adopt_shared()
        except Exception as e:
            self.app.log.exception("acme-cluster-check-failed", e)
        task_status.started()
        retry = FIRST_RETRY
        while True:
            wait = CLUSTER_CHECK
            woken = self._woken()
            try:
                if await store.acme_leader():  # type: ignore[attr-defined]
                    await self.adopt_shared()  # a former leader's newer one, if any
                    cert = self.stored_certificate()
                    now = datetime.datetime.now(datetime.UTC)
                    due = (renewal_time(cert) - now).total_seconds() if cert else 0.0
                    if woken or due <= 0:
                        await self.obtain()
                        await self.share()
                        retry = FIRST_RETRY
                    else:
                        wait = min(wait, due)
                else:
                    await self.adopt_shared()
            except Exception as e:  # never let certificate trouble stop the mail service
                if isinstance(e, AcmeError):
                    self.app.log.error("acme-failed", error=str(e), retry_in_s=round(retry))
                else:
                    self.app.log.exception("acme-failed", e, retry_in_s=round(retry))
                wait = min(retry * random.uniform(0.8, 1.2), wait)
                retry = min(retry * 2, MAX_RETRY)
            await self._sleep(wait)

    def _publish(self, name: str, content: bytes | None) -> None:
        """Settings.publish in a cluster: from the issuing thread, into shared_files."""
        store = self.app.store
        if content is None:
            trio.from_thread.run(store.delete_shared_file, name)  # type: ignore[attr-defined]
        else:
            trio.from_thread.run(store.put_shared_file, name, content)  # type: ignore[attr-defined]

    async def share(self) -> None:
        """Put the stored certificate and key where the other nodes look for them."""
        pair = self.stored()
        if pair is None:
            return
        store = self.app.store
        # The served pair too: a node that starts takes that before its keeper runs.
        for names in (SHARED_PAIR, SERVED_PAIR):
            for name, content in zip(names, pair, strict=True):
                await store.put_shared_file(name, content)  # type: ignore[attr-defined]

    async def adopt_shared(self) -> bool:
        """Install the shared certificate when it differs from ours; whether it did."""
        store = self.app.store
        cert_pem = await store.shared_file(SHARED_PAIR[0])  # type: ignore[attr-defined]
        key_pem = await store.shared_file(SHARED_PAIR[1])  # type: ignore[attr-defined]
        if cert_pem is None or key_pem is None or (cert_pem, key_pem) == self.stored():
            return False
        x509.load_pem_x509_certificate(cert_pem)  # a broken one must not replace ours
        async with self._lock:
            state = acme_state_dir(self.app.config)
            write_pair(state / "cert.pem", state / "key.pem", cert_pem, key_pem)
            self.app.tls.install(cert_pem, key_pem)
        self.app.log.info("acme-certificate-adopted")
        return True

    async def _sleep(self, seconds: float) -> None:
        with trio.move_on_after(seconds):
            await self._wake.wait()

    def _woken(self) -> bool:
        """Whether renew_now() was called; clears the request."""
        woken = self._wake.is_set()
        if woken:
            self._wake = trio.Event()
        return woken
