"""The fuzz targets without the fuzzer: every seed runs clean, the corpus stays small, and the
targets do check what they say (a property that breaks is reported, not swallowed)."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tests.fuzz import targets

DOCS = Path(__file__).resolve().parents[2] / "docs" / "fuzzing.md"
SEEDS = [(t.name, path) for t in targets.TARGETS.values() for path in sorted(t.corpus.iterdir())]


@pytest.mark.parametrize(("name", "path"), SEEDS, ids=[f"{n}/{p.name}" for n, p in SEEDS])
def test_every_seed_runs_clean(name: str, path: Path) -> None:
    target = targets.TARGETS[name]
    data = path.read_bytes()
    assert len(data) <= target.max_len, "a seed longer than -max_len would be cut by libFuzzer"
    target(data)


def test_every_target_has_seeds_and_the_corpus_stays_small() -> None:
    for target in targets.TARGETS.values():
        assert len(list(target.corpus.iterdir())) >= 2, target.name
    total = sum(p.stat().st_size for p in targets.CORPUS.rglob("*") if p.is_file())
    assert total < 256 * 1024
    assert {p.name for p in targets.CORPUS.iterdir()} == set(targets.TARGETS)


def test_every_target_is_documented() -> None:
    text = DOCS.read_text()
    for name in targets.TARGETS:
        assert f"`{name}`" in text, name


def test_only_the_parsers_own_errors_are_normal_outcomes() -> None:
    def foreign(data: bytes) -> None:
        raise KeyError(data)

    with pytest.raises(KeyError):
        dataclasses.replace(targets.TARGETS["imap_fetchspec"], run=foreign)(b"x")
    targets.TARGETS["imap_fetchspec"](b"(FLAGS")  # ParseError: the parser's own


def test_a_broken_property_is_a_finding(monkeypatch: pytest.MonkeyPatch) -> None:
    """With a string_value that forgets an escape, the boot_settings target fails."""
    targets.TARGETS["boot_settings"](b"privacy_mail=a@b\tc\n")
    targets.TARGETS["boot_settings"](b"privacy_mail=a\\@b\n")
    setup = targets.load_setup_script()
    monkeypatch.setattr(targets, "_setup", setup)
    monkeypatch.setattr(setup, "string_value", lambda v: '"' + v.replace('"', '\\"') + '"')
    with pytest.raises(AssertionError, match="privacy_mail"):
        targets.TARGETS["boot_settings"](b"privacy_mail=a\\@b\n")
