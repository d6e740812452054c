"""Headless Chromium driven by selenium, with Debian's chromium and chromedriver (the executable
is named, so Selenium Manager never tries to download a driver)."""

from __future__ import annotations

from pathlib import Path

from selenium import webdriver
from selenium.webdriver.chrome.service import Service

from tests.helpers import require_tool


def headless_chromium(profile: Path, *extra: str) -> webdriver.Chrome:
    options = webdriver.ChromeOptions()
    options.binary_location = require_tool("chromium")
    for argument in (
        "--headless=new",
        "--no-sandbox",
        "--ignore-certificate-errors",  # the test relays' self-signed certificates
        "--disable-gpu",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={profile}",
        *extra,
    ):
        options.add_argument(argument)
    service = Service(executable_path=require_tool("chromedriver"))
    return webdriver.Chrome(service=service, options=options)
