"""The BR2_EXTERNAL tree, checked offline: its shape (rules in the spirit of Buildroot's
check-package that need no network), and, when a Buildroot source tree is given in
BUILDROOT_DIR, that every defconfig line survives `make <defconfig>` (Kconfig silently drops
what it cannot apply)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))

import contract  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
TREE = REPO / "buildroot-config"
PACKAGES = sorted(p for p in (TREE / "package").iterdir() if p.is_dir())
DEFCONFIGS = sorted((TREE / "configs").glob("*_defconfig"))
BOARDS = ("rpi4_64", "rpi5_64", "zero2w_64", "rpi3_64", "qemu_aarch64_virt")
HEADER_RULE = "#" * 80
SYMBOL_LINE = re.compile(r'^(BR2_[A-Za-z0-9_]+)=(y|"[^"]*"|[0-9]+)$')
UNSET_LINE = re.compile(r"^# (BR2_[A-Za-z0-9_]+) is not set$")
EXTERNAL_PATH = "$(BR2_EXTERNAL_CHATMAIL_PATH)"


def upper(name: str) -> str:
    return name.upper().replace("-", "_")


def test_external_tree_declares_name_and_includes_every_package() -> None:
    desc = dict(
        line.split(": ", 1) for line in (TREE / "external.desc").read_text().splitlines() if line
    )
    assert re.fullmatch(r"[A-Za-z0-9_]+", desc["name"]) and desc["name"] == "CHATMAIL"
    assert len(desc["desc"]) <= 40
    sourced = re.findall(r'source "\$BR2_EXTERNAL_CHATMAIL_PATH/package/([^/]+)/Config.in"',
                         (TREE / "Config.in").read_text())  # fmt: skip
    assert sourced == [p.name for p in PACKAGES]  # all of them, alphabetically
    mk = (TREE / "external.mk").read_text()
    assert "$(BR2_EXTERNAL_CHATMAIL_PATH)/package/*/*.mk" in mk


def test_a_defconfig_for_every_supported_board() -> None:
    assert [p.name for p in DEFCONFIGS] == sorted(f"chatmail_{b}_defconfig" for b in BOARDS)


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_package_config_in(package: Path) -> None:
    lines = (package / "Config.in").read_text().splitlines()
    assert lines[0] == f"config BR2_PACKAGE_{upper(package.name)}"
    assert lines[1] == f'\tbool "{package.name}"'
    in_help = False
    for number, line in enumerate(lines[1:], 2):
        where = f"{package.name}/Config.in:{number}"
        assert line == line.rstrip(), f"{where}: trailing whitespace"
        if line.startswith("comment ") or line.startswith("config "):
            in_help = False
            continue
        if line == "\thelp":
            in_help = True
            continue
        if not line:
            continue
        if in_help:
            assert line.startswith("\t  "), f"{where}: help text is indented with tab + 2 spaces"
            text = line[3:]
            assert len(text) <= 62 or text.startswith("http"), f"{where}: help line too long"
        else:
            assert line.startswith("\t") and not line.startswith("\t "), f"{where}: indent"
    assert "\thelp" in lines, f"{package.name}: Config.in needs a help text"


@pytest.mark.parametrize("package", PACKAGES, ids=lambda p: p.name)
def test_package_makefile(package: Path) -> None:
    mk = (package / f"{package.name}.mk").read_text()
    lines = mk.splitlines()
    assert lines[:6] == [HEADER_RULE, "#", f"# {package.name}", "#", HEADER_RULE, ""]
    prefix = upper(package.name)
    for number, line in enumerate(lines, 1):
        assert line == line.rstrip(), f"{package.name}.mk:{number}: trailing whitespace"
        m = re.match(r"^([A-Z0-9_]+)\s*[+:?]?=", line)
        if m:
            assert m.group(1).startswith(prefix + "_"), f"{package.name}.mk:{number}: prefix"
    assert re.search(r"^\$\(eval \$\((python|generic)-package\)\)$", mk, re.M), "eval line"
    variables = dict(re.findall(r"^([A-Z0-9_]+) = (.*)$", mk, re.M))
    if f"{prefix}_SITE" in variables and variables.get(f"{prefix}_SITE_METHOD") != "local":
        # A downloaded package: pinned, licensed, and every download and licence file hashed.
        for key in ("VERSION", "SOURCE", "SITE", "LICENSE", "LICENSE_FILES"):
            assert f"{prefix}_{key}" in variables, f"{package.name}: {prefix}_{key} missing"
        hashes = {}
        for line in (package / f"{package.name}.hash").read_text().splitlines():
            if line.startswith("#") or not line:
                continue
            m = re.fullmatch(r"sha256  ([0-9a-f]{64})  (\S+)", line)
            assert m, f"{package.name}.hash: bad line {line!r}"
            hashes[m.group(2)] = m.group(1)
        version = variables[f"{prefix}_VERSION"]
        source = variables[f"{prefix}_SOURCE"].replace(f"$({prefix}_VERSION)", version)
        assert source in hashes
        for license_file in variables[f"{prefix}_LICENSE_FILES"].split():
            assert license_file in hashes


@pytest.mark.parametrize("defconfig", DEFCONFIGS, ids=lambda p: p.name)
def test_defconfig_lines_are_well_formed_and_point_at_files_that_exist(defconfig: Path) -> None:
    seen: set[str] = set()
    for line in defconfig.read_text().splitlines():
        if not line or (line.startswith("# ") and not UNSET_LINE.match(line)):
            continue
        m = SYMBOL_LINE.match(line) or UNSET_LINE.match(line)
        assert m, f"{defconfig.name}: not a Kconfig line: {line!r}"
        assert m.group(1) not in seen, f"{defconfig.name}: {m.group(1)} twice"
        seen.add(m.group(1))
        for ref in re.findall(re.escape(EXTERNAL_PATH) + r"/([^\" ]+)", line):
            target = (TREE / ref).resolve()
            assert target.exists(), f"{defconfig.name}: {ref} does not exist"
            if "SCRIPT" in m.group(1):
                assert os.access(target, os.X_OK), f"{ref} is not executable"
    for required in ("BR2_INIT_SYSTEMD", "BR2_ROOTFS_OVERLAY", "BR2_TARGET_ROOTFS_SQUASHFS",
                     "BR2_PACKAGE_CHATMAIL_RELAY", "BR2_PACKAGE_PYTHON3_SSL",
                     "BR2_ROOTFS_POST_IMAGE_SCRIPT"):  # fmt: skip
        assert required in seen, f"{defconfig.name}: {required} missing"


def test_overlay_fits_a_merged_usr_root() -> None:
    # With BR2_ROOTFS_MERGED_USR (implied by systemd) /bin, /lib and /sbin are symlinks.
    overlay = REPO / "overlay"
    assert not any((overlay / d).exists() for d in ("bin", "lib", "sbin", "lib64"))


def buildroot_dir() -> Path:
    path = os.environ.get("BUILDROOT_DIR")
    if not path or not (Path(path) / "Config.in").exists():
        pytest.skip(
            f"BUILDROOT_DIR is not set to a Buildroot {contract.pinned_release()} source tree: "
            "the defconfig application and utils/check-package checks did not run (the "
            "dependency contract checks the pinned release's package list offline)"
        )
    return Path(path)


def test_buildroot_dir_is_the_pinned_release() -> None:
    br = buildroot_dir()
    version = re.search(r"^export BR2_VERSION := (\S+)$", (br / "Makefile").read_text(), re.M)
    assert version, f"{br}: no BR2_VERSION"
    assert version.group(1) == contract.pinned_release(), (
        f"BUILDROOT_DIR is Buildroot {version.group(1)}; buildroot-config/BUILDROOT_VERSION pins "
        f"{contract.pinned_release()}"
    )
    listed = subprocess.run(
        [sys.executable, str(REPO / "image" / "buildroot-python-packages.py"), str(br)],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    assert listed == (TREE / "buildroot-python-packages.txt").read_text(), (
        "buildroot-config/buildroot-python-packages.txt is not the list of this release: "
        "regenerate it with image/buildroot-python-packages.py"
    )


@pytest.mark.parametrize("defconfig", DEFCONFIGS, ids=lambda p: p.name)
def test_make_defconfig_applies_every_line(defconfig: Path, tmp_path: Path) -> None:
    br = buildroot_dir()
    out = tmp_path / "out"
    result = subprocess.run(
        ["make", "-s", f"BR2_EXTERNAL={TREE}", f"O={out}", defconfig.name],
        cwd=br, capture_output=True, text=True, timeout=300,
    )  # fmt: skip
    assert result.returncode == 0, result.stdout + result.stderr
    # A `select` of a symbol whose own dependencies fail is silently broken: forbid it.
    assert "unmet direct dependencies" not in result.stdout + result.stderr, result.stderr
    config = (out / ".config").read_text().splitlines()
    for line in defconfig.read_text().splitlines():
        unset = UNSET_LINE.match(line)
        if unset:
            assert f"{unset.group(1)}=y" not in config, f"{defconfig.name}: {line}"
        elif SYMBOL_LINE.match(line):
            assert line in config, f"{defconfig.name}: Kconfig dropped {line}"
    for selected in ("BR2_PACKAGE_PYTHON_ACME=y",
                     "BR2_PACKAGE_PYTHON_DKIMPY=y", "BR2_PACKAGE_PYTHON_TRIO=y",
                     "BR2_PACKAGE_PYTHON_SNIFFIO=y"):  # fmt: skip
        assert selected in config, f"{defconfig.name}: {selected} not selected"
    # The dependency contract, on the configuration Kconfig really made.
    for package in contract.packages_for(defconfig):
        for option, places in contract.required_options(package).items():
            assert f"{option}=y" in config, f"{defconfig.name}: {option} off; needed by {places[0]}"
    if "qemu" not in defconfig.name:  # the Pi boards: hwctl with GPIO for every Pi generation
        for selected in ("BR2_PACKAGE_CHATMAIL_HWCTL=y", "BR2_PACKAGE_PYTHON_GPIOD=y",
                         "BR2_PACKAGE_PYTHON_RPI_GPIO=y", "BR2_PACKAGE_PYTHON_SPIDEV=y"):  # fmt: skip
            assert selected in config, f"{defconfig.name}: {selected} not selected"


def test_buildroot_check_package_accepts_the_recipes() -> None:
    br = buildroot_dir()
    checker = br / "utils" / "check-package"
    probe = subprocess.run(["/usr/bin/python3", "-c", "import magic, flake8"], capture_output=True)
    if probe.returncode != 0:
        pytest.skip("utils/check-package needs python3-magic and flake8 for /usr/bin/python3")
    files = [str(p) for p in sorted(TREE.rglob("*")) if p.is_file() and "package" in p.parts]
    result = subprocess.run(
        ["/usr/bin/python3", str(checker), "-b", *files],
        cwd=TREE, capture_output=True, text=True, timeout=120,
    )  # fmt: skip
    output = result.stdout + result.stderr
    assert result.returncode == 0, output
    assert re.search(r"^0 warnings generated$", output, re.M), output
