"""The dependency contract between the code and the Buildroot image, read offline.

What relay/ and hwctl/ import at run time (and the optional library features they use) maps to
the Buildroot options that put it on the image; `selected()` computes what a defconfig selects,
directly or through the `select`s of this repository's own packages. The pinned Buildroot
release (buildroot-config/BUILDROOT_VERSION) and the Python packages it ships
(buildroot-config/buildroot-python-packages.txt) say what exists there, without the network.
"""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import tomllib
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from types import ModuleType

REPO = Path(__file__).resolve().parents[2]
TREE = REPO / "buildroot-config"


def _image_module(name: str) -> ModuleType:
    """A script of image/ as a module (image/ is not a package: it holds the build's scripts)."""
    spec = importlib.util.spec_from_file_location(name, REPO / "image" / f"{name}.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


buildroot_versions = _image_module("buildroot_versions")
release_packages = buildroot_versions.release_packages
external_packages = buildroot_versions.external_packages
OWN_PACKAGES = ("relay", "hwctl")
# For servers only: the PostgreSQL store needs the optional `postgresql` extra (psycopg 3, which
# Buildroot does not package); the image runs the embedded store, and the rest of the relay
# imports relay.store.postgres only inside the functions that open that backend.
SERVER_ONLY = ("relay/store/postgres",)

# Third-party import names: the Buildroot option that ships each, and its PyPI distribution.
THIRD_PARTY: dict[str, tuple[str, str | None]] = {
    "PIL": ("BR2_PACKAGE_PYTHON_PILLOW", "pillow"),
    "RPi": ("BR2_PACKAGE_PYTHON_RPI_GPIO", None),  # Pi hardware only: not a pyproject dependency
    "acme": ("BR2_PACKAGE_PYTHON_ACME", "acme"),
    "cryptography": ("BR2_PACKAGE_PYTHON_CRYPTOGRAPHY", "cryptography"),
    "dkim": ("BR2_PACKAGE_PYTHON_DKIMPY", "dkimpy"),
    "dns": ("BR2_PACKAGE_PYTHON_DNSPYTHON", "dnspython"),
    "gpiod": ("BR2_PACKAGE_PYTHON_GPIOD", None),
    "h11": ("BR2_PACKAGE_PYTHON_H11", "h11"),
    "ifaddr": ("BR2_PACKAGE_PYTHON_IFADDR", "ifaddr"),
    "josepy": ("BR2_PACKAGE_PYTHON_JOSEPY", "josepy"),
    "pyudev": ("BR2_PACKAGE_PYTHON_PYUDEV", "pyudev"),
    "qrcode": ("BR2_PACKAGE_PYTHON_QRCODE", "qrcode"),
    "requests": ("BR2_PACKAGE_PYTHON_REQUESTS", "requests"),
    "spidev": ("BR2_PACKAGE_PYTHON_SPIDEV", None),
    "tomlkit": ("BR2_PACKAGE_PYTHON_TOMLKIT", "tomlkit"),
    "trio": ("BR2_PACKAGE_PYTHON_TRIO", "trio"),
    "wsproto": ("BR2_PACKAGE_PYTHON_WSPROTO", "wsproto"),
    "zeroconf": ("BR2_PACKAGE_PYTHON_ZEROCONF", "zeroconf"),
}
# Parts of a package that Buildroot builds only when a sub-option is on.
SUBMODULES = {
    "qrcode.image.svg": "BR2_PACKAGE_PYTHON_QRCODE_SVG",
    "qrcode.image.pil": "BR2_PACKAGE_PYTHON_QRCODE_PIL",
}
# Standard-library modules that Buildroot's python3 builds or installs only when asked
# (package/python3/Config.in and python3.mk: the C extensions, and the xml package with expat).
STDLIB_OPTIONS = {
    "bz2": "BR2_PACKAGE_PYTHON3_BZIP2",
    "compression.zstd": "BR2_PACKAGE_PYTHON3_ZSTD",
    "ctypes": "BR2_PACKAGE_PYTHON3",  # _ctypes: python3 always selects libffi
    "curses": "BR2_PACKAGE_PYTHON3_CURSES",
    "dbm.berkeley": "BR2_PACKAGE_PYTHON3_BERKELEYDB",
    "decimal": "BR2_PACKAGE_PYTHON3_DECIMAL",
    "gzip": "BR2_PACKAGE_PYTHON3_ZLIB",
    "lzma": "BR2_PACKAGE_PYTHON3_XZ",
    "pyexpat": "BR2_PACKAGE_PYTHON3_PYEXPAT",
    "readline": "BR2_PACKAGE_PYTHON3_READLINE",
    "sqlite3": "BR2_PACKAGE_PYTHON3_SQLITE",
    "ssl": "BR2_PACKAGE_PYTHON3_SSL",
    "unicodedata": "BR2_PACKAGE_PYTHON3_UNICODEDATA",
    "xml": "BR2_PACKAGE_PYTHON3_PYEXPAT",
    "xmlrpc": "BR2_PACKAGE_PYTHON3_PYEXPAT",
    "zlib": "BR2_PACKAGE_PYTHON3_ZLIB",
}
# Never on the image, whatever the options (python3.mk disables them).
NOT_ON_IMAGE = {"tkinter", "idlelib", "test", "lib2to3", "pydoc", "ensurepip", "turtle"}
# Optional library features, found in the code by `features_used`.
FEATURES = {"Pillow FreeType": "BR2_PACKAGE_FREETYPE"}
# Options that are on unless a defconfig turns them off.
DEFAULT_ON = {"BR2_PACKAGE_PYTHON3_UNICODEDATA"}
# What the one toolchain of every defconfig provides (BR2_TOOLCHAIN_EXTERNAL_BOOTLIN_AARCH64_
# GLIBC_BLEEDING_EDGE: glibc, C++, recent kernel headers); conditions on anything else are false.
TOOLCHAIN = "BR2_TOOLCHAIN_EXTERNAL_BOOTLIN_AARCH64_GLIBC_BLEEDING_EDGE"
TOOLCHAIN_FACTS = {
    "BR2_INSTALL_LIBSTDCPP",
    "BR2_TOOLCHAIN_HEADERS_AT_LEAST_5_10",
    "BR2_TOOLCHAIN_USES_GLIBC",
    "BR2_USE_WCHAR",
    "BR2_TOOLCHAIN_HAS_THREADS",
}


@dataclass(frozen=True)
class Use:
    """One runtime import or feature use: what (a module name or a feature) and where."""

    what: str
    where: str  # path:line
    package: str  # relay or hwctl


def _type_checking_only(node: ast.If) -> bool:
    test = node.test
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or (
        isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING"
    )


def _walk_runtime(tree: ast.AST):
    """Every node except those under `if TYPE_CHECKING:` (imports for the type checker only)."""
    stack = [tree]
    while stack:
        node = stack.pop()
        yield node
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _type_checking_only(child):
                stack.extend(child.orelse)
                continue
            stack.append(child)


@cache
def _sources() -> list[tuple[str, Path, ast.AST]]:
    out = []
    for package in OWN_PACKAGES:
        for path in sorted((REPO / package).rglob("*.py")):
            if str(path.relative_to(REPO)).startswith(SERVER_ONLY):
                continue
            out.append((package, path, ast.parse(path.read_text(), str(path))))
    return out


@cache
def imports() -> list[Use]:
    """Absolute imports of relay/ and hwctl/ that run (not under TYPE_CHECKING), by full name."""
    uses = []
    for package, path, tree in _sources():
        rel = path.relative_to(REPO)
        for node in _walk_runtime(tree):
            names: list[str] = []
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names = [node.module] + [f"{node.module}.{a.name}" for a in node.names]
            for name in names:
                if name.split(".")[0] not in (*OWN_PACKAGES, "__future__"):
                    uses.append(Use(name, f"{rel}:{node.lineno}", package))
    return uses


@cache
def features_used() -> list[Use]:
    """Pillow's FreeType: ImageFont.truetype/FreeTypeFont, or load_default with a size."""
    uses = []
    for package, path, tree in _sources():
        rel = path.relative_to(REPO)
        for node in _walk_runtime(tree):
            if not (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)):
                continue
            attr = node.func.attr
            sized = bool(node.args) or any(k.arg == "size" for k in node.keywords)
            if attr in ("truetype", "FreeTypeFont") or (attr == "load_default" and sized):
                uses.append(Use("Pillow FreeType", f"{rel}:{node.lineno}", package))
    return uses


def option_for(module: str) -> str | None:
    """The Buildroot option a module needs; None for the always-built standard library.

    Raises LookupError for a module nothing here maps (a new dependency: add it above).
    """
    for name in sorted(SUBMODULES, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return SUBMODULES[name]
    top = module.split(".")[0]
    if top in THIRD_PARTY:
        return THIRD_PARTY[top][0]
    for name in sorted(STDLIB_OPTIONS, key=len, reverse=True):
        if module == name or module.startswith(name + "."):
            return STDLIB_OPTIONS[name]
    if top in NOT_ON_IMAGE:
        raise LookupError(f"{module} is never on the image")
    if top in sys.stdlib_module_names:
        return None
    raise LookupError(f"{module}: which Buildroot option ships it? (tests/image/contract.py)")


def required_options(package: str) -> dict[str, list[str]]:
    """option -> the places in `package` (relay or hwctl) that need it."""
    needed: dict[str, list[str]] = {}
    for use in imports():
        if use.package != package:
            continue
        option = option_for(use.what)
        if option:
            needed.setdefault(option, []).append(f"{use.where} ({use.what})")
    for use in features_used():
        if use.package == package:
            needed.setdefault(FEATURES[use.what], []).append(f"{use.where} ({use.what})")
    return needed


def own_selects() -> dict[str, list[tuple[str, str | None]]]:
    """This tree's packages: symbol -> [(selected symbol, condition or None)]."""
    selects: dict[str, list[tuple[str, str | None]]] = {}
    for config in sorted(TREE.glob("package/*/Config.in")):
        symbol = None
        for line in config.read_text().splitlines():
            m = re.match(r"^config (BR2_\w+)$", line)
            if m:
                symbol = m.group(1)
                selects.setdefault(symbol, [])
                continue
            m = re.match(r"^\tselect (BR2_\w+)(?: if ([^#]+?))?\s*(?:#.*)?$", line)
            if m and symbol:
                selects[symbol].append((m.group(1), m.group(2)))
    return selects


def _condition_holds(condition: str, on: set[str]) -> bool:
    expr = condition.replace("&&", " and ").replace("||", " or ").replace("!", " not ")
    expr = re.sub(r"BR2_\w+", lambda m: str(m.group(0) in on or m.group(0) in TOOLCHAIN_FACTS),
                  expr)  # fmt: skip
    if not re.fullmatch(r"[\sA-Za-z()]*", expr):
        raise ValueError(f"cannot evaluate {condition!r}")
    return bool(eval(expr, {"__builtins__": {}}))  # only True/False/and/or/not remain


def defconfig_symbols(defconfig: Path) -> tuple[set[str], set[str]]:
    on, off = set(), set()
    for line in defconfig.read_text().splitlines():
        m = re.match(r"^(BR2_\w+)=y$", line)
        if m:
            on.add(m.group(1))
        m = re.match(r"^# (BR2_\w+) is not set$", line)
        if m:
            off.add(m.group(1))
    return on, off


def selected(defconfig: Path) -> set[str]:
    """What the defconfig turns on: its own lines, the defaults it keeps, and this tree's selects."""
    on, off = defconfig_symbols(defconfig)
    on |= DEFAULT_ON - off
    selects = own_selects()
    changed = True
    while changed:
        changed = False
        for symbol in sorted(on):
            for target, condition in selects.get(symbol, []):
                if target not in on and (condition is None or _condition_holds(condition, on)):
                    on.add(target)
                    changed = True
    return on


def is_pi(defconfig: Path) -> bool:
    return "_rpi" in defconfig.name or "_zero" in defconfig.name


def packages_for(defconfig: Path) -> tuple[str, ...]:
    """relay everywhere; hwctl on the Pi boards (image/post-build.sh drops it elsewhere)."""
    return OWN_PACKAGES if is_pi(defconfig) else ("relay",)


def pinned_release() -> str:
    return (TREE / "BUILDROOT_VERSION").read_text().strip()


def package_of(option: str) -> str | None:
    """BR2_PACKAGE_PYTHON_TRIO -> python-trio; None for an option that is not a package."""
    if not option.startswith("BR2_PACKAGE_"):
        return None
    return option.removeprefix("BR2_PACKAGE_").lower().replace("_", "-")


def runtime_dependencies() -> dict[str, str]:
    """pyproject's runtime dependencies: distribution (lower case) -> specifier text."""
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    out = {}
    for requirement in project["dependencies"]:
        m = re.match(r"^([A-Za-z0-9_.\-]+)\s*(.*)$", requirement.split(";")[0].strip())
        assert m, requirement
        out[m.group(1).lower()] = m.group(2).strip()
    return out
