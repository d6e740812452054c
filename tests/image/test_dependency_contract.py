"""What the code needs at run time is on every image: each import of relay/ and hwctl/ (and each
optional library feature they use, such as Pillow's FreeType fonts) maps to a Buildroot option
that every defconfig selects, and the pinned Buildroot release ships every Python package needed
at a version pyproject.toml accepts. All offline; contract.py holds the maps."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest
from packaging.specifiers import SpecifierSet
from packaging.version import Version

sys.path.insert(0, str(Path(__file__).parent))

import contract  # noqa: E402

DEFCONFIGS = sorted((contract.TREE / "configs").glob("*_defconfig"))
PI_DEFCONFIGS = [d for d in DEFCONFIGS if contract.is_pi(d)]


def test_every_runtime_import_maps_to_a_buildroot_option_or_the_standard_library() -> None:
    unknown = []
    for use in contract.imports():
        try:
            contract.option_for(use.what)
        except LookupError as e:
            unknown.append(f"{use.where}: {e}")
    assert not unknown, "\n".join(unknown)


def test_the_contract_sees_the_imports_and_features_it_is_about() -> None:
    # The walk must find what the appliance is known to need, or it checks nothing.
    relay, hwctl = contract.required_options("relay"), contract.required_options("hwctl")
    for option in ("BR2_PACKAGE_PYTHON3_SSL", "BR2_PACKAGE_PYTHON3_SQLITE",
                   "BR2_PACKAGE_PYTHON3_ZLIB", "BR2_PACKAGE_PYTHON_TRIO",
                   "BR2_PACKAGE_PYTHON_QRCODE_SVG", "BR2_PACKAGE_PYTHON3"):  # fmt: skip
        assert option in relay, option
    for option in ("BR2_PACKAGE_PYTHON_PILLOW", "BR2_PACKAGE_FREETYPE",
                   "BR2_PACKAGE_PYTHON_ZEROCONF", "BR2_PACKAGE_PYTHON_GPIOD"):  # fmt: skip
        assert option in hwctl, option
    # Imports only the type checker runs are not runtime needs.
    assert not any(u.what.startswith("relay.app") and "TYPE" in u.what for u in contract.imports())


@pytest.mark.parametrize("defconfig", DEFCONFIGS, ids=lambda p: p.name)
def test_every_runtime_need_is_selected(defconfig: Path) -> None:
    on = contract.selected(defconfig)
    missing = []
    for package in contract.packages_for(defconfig):
        for option, places in sorted(contract.required_options(package).items()):
            if option not in on:
                missing.append(f"{option} for {package}: {', '.join(places[:3])}")
    assert not missing, f"{defconfig.name} does not select:\n" + "\n".join(missing)


def test_every_pi_board_runs_the_hardware_process() -> None:
    assert len(PI_DEFCONFIGS) == 4
    for defconfig in PI_DEFCONFIGS:
        assert "BR2_PACKAGE_CHATMAIL_HWCTL" in contract.selected(defconfig), defconfig.name


# RAUC with its D-Bus service (the relay's update code and `rauc status mark-good` talk to it)
# and JSON output (the relay reads `rauc info` and `rauc status`), unsquashfs (RAUC reads a
# bundle's manifest with it); the host tool signs bundles.
UPDATE_OPTIONS = ("BR2_PACKAGE_RAUC", "BR2_PACKAGE_RAUC_DBUS", "BR2_PACKAGE_RAUC_JSON",
                  "BR2_PACKAGE_SQUASHFS", "BR2_PACKAGE_HOST_RAUC")  # fmt: skip


def test_every_pi_board_can_update_and_try_the_new_slot_once() -> None:
    for defconfig in PI_DEFCONFIGS:
        on = contract.selected(defconfig)
        assert [o for o in UPDATE_OPTIONS if o not in on] == [], defconfig.name
    board = contract.TREE / "board" / "rpi"
    assert "CONFIG_BLK_DEV_LOOP=y" in (board / "linux.fragment").read_text().split()
    # The firmware's try-once switch: config.txt's [tryboot] section names the new slot.
    lines = [line.strip() for line in (board / "config.txt").read_text().splitlines()]
    tryboot = lines.index("[tryboot]")
    assert lines[tryboot + 1] == "include chatmail-tryboot.txt"
    assert "include chatmail-slot.txt" in lines[:tryboot]
    cmdline = (board / "cmdline.txt").read_text().split()
    assert "root=PARTUUID=43484154-02" in cmdline and "rauc.slot=A" in cmdline


@pytest.mark.parametrize("defconfig", DEFCONFIGS, ids=lambda p: p.name)
def test_defconfigs_use_the_toolchain_the_offline_facts_describe(defconfig: Path) -> None:
    on, _ = contract.defconfig_symbols(defconfig)
    assert contract.TOOLCHAIN in on, f"{defconfig.name}: contract.TOOLCHAIN_FACTS assume it"


def test_nothing_the_image_does_not_need_is_shipped() -> None:
    # PGPy is an independent OpenPGP implementation for the tests; the relay never imports it.
    assert not (contract.TREE / "package" / "python-pgpy").exists()
    assert "pgpy" not in contract.runtime_dependencies()
    for symbol, selects in contract.own_selects().items():
        assert "BR2_PACKAGE_PYTHON_PGPY" not in [s for s, _ in selects], symbol


def test_a_buildroot_release_is_pinned_with_its_python_packages() -> None:
    release = contract.pinned_release()
    assert release.split(".")[:2] == ["2026", "02"], "the pinned release is the 2026.02 LTS"
    packages = contract.release_packages()
    assert Version(packages["python3"]) >= Version("3.11")
    assert len(packages) > 400  # the whole list, not a hand-picked excerpt
    listed = (contract.TREE / "buildroot-python-packages.txt").read_text()
    assert f"Buildroot {release}," in listed


def needed_packages() -> dict[str, list[str]]:
    """Buildroot package -> why: every Python package the images need, with the selects of this
    tree's own packages."""
    needed: dict[str, list[str]] = {}
    for package in contract.OWN_PACKAGES:
        for option, places in contract.required_options(package).items():
            needed.setdefault(option, []).extend(places[:1])
    for symbol, selects in contract.own_selects().items():
        for target, _ in selects:
            needed.setdefault(target, []).append(f"selected by {symbol}")
    out: dict[str, list[str]] = {}
    for option, why in needed.items():
        if option.startswith("BR2_PACKAGE_PYTHON3_") or option == "BR2_PACKAGE_PYTHON3":
            name: str | None = "python3"
        elif option in contract.SUBMODULES.values():
            name = contract.package_of(option.rsplit("_", 1)[0])
        else:
            name = contract.package_of(option)
        if name and name.startswith("python"):
            out.setdefault(name, []).extend(why)
    return out


def test_the_pinned_release_ships_every_python_package_needed() -> None:
    shipped = contract.release_packages()
    own = contract.external_packages()
    missing = [f"{name} ({'; '.join(why[:2])})" for name, why in sorted(needed_packages().items())
               if name not in shipped and name not in own]  # fmt: skip
    assert not missing, f"not in Buildroot {contract.pinned_release()}: " + ", ".join(missing)
    overlap = sorted(set(own) & set(shipped))
    assert not overlap, f"Buildroot {contract.pinned_release()} has these itself: {overlap}"


def test_the_pinned_versions_satisfy_pyproject() -> None:
    shipped = {**contract.release_packages(), **contract.external_packages()}
    wrong = []
    for dist, specifier in contract.runtime_dependencies().items():
        package = f"python-{dist}"
        version = shipped.get(package)
        assert version, f"{dist}: no {package} in Buildroot {contract.pinned_release()} or here"
        if Version(version) not in SpecifierSet(specifier):
            wrong.append(f"{dist}{specifier}: the image has {version}")
    assert not wrong, "\n".join(wrong)
