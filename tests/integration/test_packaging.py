"""Packaging: what `cmake --install` lays out (binaries, systemd units naming the installed
binary, the sysusers.d entry, man pages, docs, the example config in /etc) and the .deb
`cpack -G DEB` builds from it (its files, control fields with the dependencies
dpkg-shlibdeps computed, the conffile and the maintainer scripts). Works on the build
folder the binaries under test come from (FLEECE_BIN_DIR's parent); skips when that is
not a CMake build folder."""

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from fleece_harness import BIN_DIR

BUILD_DIR = BIN_DIR.parent
SOURCE_DIR = Path(__file__).resolve().parents[2]

LAYOUT = [
    "usr/bin/fleeced",
    "usr/bin/fleecectl",
    "usr/lib/systemd/system/fleeced.service",
    "usr/lib/systemd/system/fleeced.socket",
    "usr/lib/systemd/system/fleeced-control.socket",
    "usr/lib/sysusers.d/fleeced.conf",
    "usr/share/man/man8/fleeced.8",
    "usr/share/man/man1/fleecectl.1",
    "usr/share/doc/fleece/README.md",
    "usr/share/doc/fleece/configuration.md",
    "usr/share/doc/fleece/operations.md",
    "usr/share/doc/fleece/examples/fleeced.yaml",
    "etc/fleeced/fleeced.yaml",
]


def build_dir():
    if not (BUILD_DIR / "CMakeCache.txt").exists():
        pytest.skip(f"{BUILD_DIR} is not a CMake build folder (FLEECE_BIN_DIR={BIN_DIR})")
    return BUILD_DIR


def install(tmp_path, prefix):
    root = tmp_path / "root"
    r = subprocess.run(["cmake", "--install", str(build_dir()), "--prefix", prefix],
                       env=dict(os.environ, DESTDIR=str(root)), capture_output=True, text=True,
                       timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    return root


def unit_value(text, key):
    return [l.split("=", 1)[1] for l in text.splitlines() if l.startswith(key + "=")]


def test_install_layout_under_usr(tmp_path):
    root = install(tmp_path, "/usr")
    missing = [p for p in LAYOUT if not (root / p).is_file()]
    assert not missing, f"not installed: {missing}"
    for binary in ("usr/bin/fleeced", "usr/bin/fleecectl"):
        assert os.access(root / binary, os.X_OK), binary
    r = subprocess.run([str(root / "usr/bin/fleeced"), "--version"], capture_output=True,
                       text=True, timeout=10)
    assert r.returncode == 0 and r.stdout.startswith("fleeced "), r
    service = (root / "usr/lib/systemd/system/fleeced.service").read_text()
    assert unit_value(service, "ExecStart") == [
        "/usr/bin/fleeced --config /etc/fleeced/fleeced.yaml"]
    # Every doc of the tree is there, and the config is the example one.
    for md in (SOURCE_DIR / "docs").glob("*.md"):
        assert (root / "usr/share/doc/fleece" / md.name).is_file(), md.name
    assert ((root / "etc/fleeced/fleeced.yaml").read_text()
            == (SOURCE_DIR / "systemd/fleeced.yaml").read_text())
    # Nothing outside the places above.
    top = sorted(p.name for p in root.iterdir())
    assert top == ["etc", "usr"], top


def test_man_pages_render(tmp_path):
    groff = shutil.which("groff")
    if groff is None:
        pytest.skip("groff missing")
    for page, title in (("fleeced.8", "FLEECED"), ("fleecectl.1", "FLEECECTL")):
        r = subprocess.run([groff, "-man", "-Tutf8", "-ww", str(SOURCE_DIR / "docs/man" / page)],
                           capture_output=True, text=True, timeout=30)
        assert r.returncode == 0 and not r.stderr, r.stderr
        text = re.sub(".\x08", "", r.stdout)  # overstrike bold
        assert title in text and "SYNOPSIS" in text and "SEE ALSO" in text, text


def test_install_elsewhere_names_that_binary(tmp_path):
    root = install(tmp_path, "/opt/fleece")
    service = (root / "opt/fleece/lib/systemd/system/fleeced.service").read_text()
    assert unit_value(service, "ExecStart") == [
        "/opt/fleece/bin/fleeced --config /opt/fleece/etc/fleeced/fleeced.yaml"]
    assert (root / "opt/fleece/etc/fleeced/fleeced.yaml").is_file()
    assert (root / "opt/fleece/bin/fleeced").is_file()
    assert not (root / "etc").exists()


def dpkg_deb(*args):
    r = subprocess.run(["dpkg-deb"] + list(args), capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_deb_package(tmp_path):
    build = build_dir()
    for tool in ("cpack", "dpkg-deb", "dpkg-shlibdeps"):
        if shutil.which(tool) is None:
            pytest.skip(f"{tool} missing (packages cmake, dpkg-dev)")
    out = tmp_path / "pkg"
    r = subprocess.run(["cpack", "-G", "DEB", "--config", str(build / "CPackConfig.cmake"),
                        "-B", str(out)], capture_output=True, text=True, timeout=300, cwd=build)
    assert r.returncode == 0, r.stdout + r.stderr
    debs = list(out.glob("fleece_*.deb"))
    assert len(debs) == 1, list(out.iterdir())
    deb = str(debs[0])

    assert dpkg_deb("-f", deb, "Package").strip() == "fleece"
    version = subprocess.run([str(BIN_DIR / "fleeced"), "--version"], capture_output=True,
                             text=True, timeout=10).stdout.split()[1]
    assert dpkg_deb("-f", deb, "Version").strip() == version
    arch = subprocess.run(["dpkg", "--print-architecture"], capture_output=True, text=True,
                          timeout=10).stdout.strip()
    assert dpkg_deb("-f", deb, "Architecture").strip() == arch
    depends = dpkg_deb("-f", deb, "Depends")
    # Computed by dpkg-shlibdeps from what the binaries link, plus systemd for the scripts.
    for lib in ("libc6", "libsystemd0", "libyaml-cpp", "libstdc++6"):
        assert lib in depends, depends
    assert "systemd" in depends.replace("libsystemd0", "")

    listing = dpkg_deb("-c", deb)
    files = {line.split()[-1].lstrip(".") for line in listing.splitlines()}
    for p in LAYOUT:
        assert "/" + p in files, f"/{p} not in the package:\n{listing}"

    control = tmp_path / "control"
    dpkg_deb("-e", deb, str(control))
    assert (control / "conffiles").read_text().split() == ["/etc/fleeced/fleeced.yaml"]
    for script in ("postinst", "prerm", "postrm"):
        assert os.access(control / script, os.X_OK), script
        r = subprocess.run(["sh", "-n", str(control / script)], capture_output=True, text=True)
        assert r.returncode == 0, r.stderr
    postinst = (control / "postinst").read_text()
    assert "systemd-sysusers" in postinst and "systemctl enable" in postinst
    assert "systemctl stop" in (control / "prerm").read_text()
