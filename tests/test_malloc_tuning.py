"""The relay's malloc tuning (big buffers back to the OS) on a system without ldconfig, as on the
appliance image, where ctypes.util.find_library("c") finds nothing."""

from __future__ import annotations

import ctypes.util
import platform

import pytest

from relay import server

glibc_only = pytest.mark.skipif(platform.libc_ver()[0] != "glibc", reason="mallopt is glibc's")


@glibc_only
def test_malloc_tuning_takes_effect(monkeypatch: pytest.MonkeyPatch) -> None:
    assert server.return_big_buffers_to_the_os()


@glibc_only
def test_malloc_tuning_takes_effect_without_ldconfig(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    libc = server.c_library()
    assert libc is not None and hasattr(libc, "mallopt")
    assert server.return_big_buffers_to_the_os()


@glibc_only
def test_malloc_tuning_falls_back_to_the_soname(monkeypatch: pytest.MonkeyPatch) -> None:
    real = ctypes.CDLL
    opened: list[str | None] = []

    def cdll(name: str | None, *args: object, **kwargs: object) -> ctypes.CDLL:
        opened.append(name)
        if name is None:
            raise OSError("dlopen(NULL) refused")
        return real(name, *args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ctypes.util, "find_library", lambda name: None)
    monkeypatch.setattr(ctypes, "CDLL", cdll)
    assert server.return_big_buffers_to_the_os()
    assert opened == [None, "libc.so.6"]
