"""cmlxc's relay_minitest, the implementation-independent chatmail suite, against our relay.

The suite runs once per session (in its own network namespace, see minitest_runner.py); each of
its tests is then reported here: the runnable ones must pass, the others are skipped saying why.
"""

from __future__ import annotations

import importlib.util
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SUITE_TIMEOUT = 1200

NOT_RUNNABLE = {
    "test_hide_senders_ip_address": (
        "asks icanhazip.com for the client's public IP (needs the internet); on loopback the "
        "client's IP is 127.0.0.1, which every address user@[127.0.0.1] contains anyway"
    ),
}
SINGLE_RELAY = [
    "test_login_basic_functioning",
    "TestSingleRelay::test_one_on_one_send_and_receive",
    "TestSingleRelay::test_send_dot",
    "test_unencrypted_rejection",
    "test_login_domain_validation",
]
TWO_RELAYS = ["TestMultiRelay::test_one_on_one", "TestMultiRelay::test_securejoin"]
# These drive a relay's host over ssh: nft rules that close its ports, its journal. The runner
# answers `ssh` locally inside the namespace (see minitest_runner.py); nft must be installed.
FIREWALL = [
    "TestMultiRelay::test_delivery_port_blocked",
    "TestMultiRelay::test_one_on_one_http_only",
    "TestMultiRelay::test_one_on_one_smtp_only",
]


# Tests that fail for a known relay gap, with the gap; strict: a pass means remove the entry.
RELAY_GAPS: dict[str, str] = {}


def _skip_reason() -> str | None:
    if importlib.util.find_spec("relay_minitest") is None:
        return "cmlxc (relay_minitest) is not installed (pip install -e '.[test]')"
    if shutil.which("unshare") is None:
        return "unshare (util-linux) is missing"
    probe = subprocess.run(["unshare", "--net", "true"], capture_output=True, timeout=10)
    if probe.returncode != 0:
        return (
            "cannot create a network namespace (needs root): the suite hardcodes ports 993/465/443"
        )
    return None


def _outcomes(junit: Path) -> dict[str, tuple[str, str]]:
    """test id (Class::name or name) -> (passed|failed|skipped, message)."""
    results = {}
    for case in ET.parse(junit).iter("testcase"):
        cls = case.get("classname", "").rpartition(".")[2]
        name = case.get("name", "")
        test_id = name if cls in ("", "test_relay") else f"{cls}::{name}"
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            node = case.find(tag)
            if node is not None:
                outcome = "skipped" if tag == "skipped" else "failed"
                message = (node.get("message") or "") + "\n" + (node.text or "")
                break
        results[test_id] = (outcome, message)
    return results


@pytest.fixture(scope="module")
def minitest(tmp_path_factory: pytest.TempPathFactory) -> dict[str, tuple[str, str]]:
    reason = _skip_reason()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("minitest")
    deselect = []
    unavailable = [*NOT_RUNNABLE, *(FIREWALL if shutil.which("nft") is None else [])]
    for test_id in unavailable:
        deselect += ["--deselect", f"test_relay.py::{test_id}"]
    command = ["unshare", "--net", "--", sys.executable, "-m", "tests.conformance.minitest_runner"]
    command += ["--out", str(out), "--relay2", "--", *deselect]
    subprocess.run(command, cwd=REPO, timeout=SUITE_TIMEOUT, check=False)
    junit = out / "junit.xml"
    log = out / "minitest.log"
    assert junit.exists(), (
        f"the suite produced no report:\n{log.read_text() if log.exists() else ''}"
    )
    print((out / "minitest.log").read_text(errors="replace")[-6000:])
    return _outcomes(junit)


@pytest.mark.parametrize("test_id", SINGLE_RELAY + TWO_RELAYS + FIREWALL + list(NOT_RUNNABLE))
def test_minitest(minitest: dict[str, tuple[str, str]], test_id: str) -> None:
    if test_id in NOT_RUNNABLE:
        pytest.skip(f"cannot run here: {NOT_RUNNABLE[test_id]}")
    if test_id in FIREWALL and shutil.which("nft") is None:
        pytest.skip("nft (Debian nftables) is not installed: it closes a relay's ports")
    assert test_id in minitest, f"relay_minitest did not run {test_id}"
    outcome, message = minitest[test_id]
    if test_id in RELAY_GAPS:
        assert outcome == "failed", f"{test_id} {outcome} now: remove it from RELAY_GAPS"
        pytest.xfail(RELAY_GAPS[test_id])
    assert outcome == "passed", f"{test_id} {outcome}: {message[-3000:]}"


def test_minitest_has_no_unknown_failures(minitest: dict[str, tuple[str, str]]) -> None:
    """A newer cmlxc may add tests: they must pass too, or be listed above with a reason."""
    known = set(SINGLE_RELAY + TWO_RELAYS + FIREWALL + list(NOT_RUNNABLE))
    failed = {t: o for t, (o, _) in minitest.items() if t not in known and o == "failed"}
    assert not failed
