"""End-to-end qemu:allocation-depth through the real daemon: offered only on exports with
`allocation-depth: true`, listed like QEMU's, and for a raw image depth 1 everywhere (as
qemu-nbd -A reports for raw), read with nbdinfo and libnbd, alone and together with
base:allocation. qcow2 chains are covered once the qcow2 driver is in."""

import json
import subprocess

import nbd
import pytest

from fleece_harness import Daemon, make_image

MiB = 1 << 20
SIZE = 8 * MiB
DEPTH = "qemu:allocation-depth"
BASE = "base:allocation"

CONFIG = """
listen:
  - unix: {nbd_sock}
nodes:
  - node-name: disk0
    driver: raw
    file: {{ driver: file, filename: {dir}/disk.raw }}
exports:
  - {{ name: depth, node: disk0, allocation-depth: true }}
  - {{ name: plain, node: disk0 }}
"""


@pytest.fixture
def daemon(tmp_path):
    # Data at [1 MiB, 2 MiB); the rest is a hole, which is still depth 1 for raw.
    make_image(tmp_path / "disk.raw", SIZE, pattern=[(0x33, MiB, MiB)])
    with Daemon(tmp_path, config=CONFIG) as d:
        yield d
        assert d.alive(), "fleeced died:\n" + d.log_text()


def list_contexts(uri, queries=None):
    # libnbd 1.14: the queries of LIST are the contexts added with add_meta_context.
    h = nbd.NBD()
    h.set_opt_mode(True)
    for q in queries or []:
        h.add_meta_context(q)
    h.connect_uri(uri)
    found = []
    h.opt_list_meta_context(lambda name: found.append(name))
    h.opt_abort()
    return found


def test_listed_only_where_enabled(daemon):
    assert list_contexts(daemon.uri("depth")) == [BASE, DEPTH]
    assert list_contexts(daemon.uri("depth"), ["qemu:"]) == [DEPTH]
    assert list_contexts(daemon.uri("depth"), [DEPTH]) == [DEPTH]
    assert list_contexts(daemon.uri("depth"), ["qemu:dirty-bitmap:"]) == []
    assert list_contexts(daemon.uri("plain")) == [BASE]
    assert list_contexts(daemon.uri("plain"), ["qemu:"]) == []


def test_nbdinfo_map_reports_depth_one_for_raw(daemon):
    out = subprocess.run(["nbdinfo", "--json", f"--map={DEPTH}", daemon.uri("depth")],
                         check=True, capture_output=True, text=True, timeout=30).stdout
    extents = json.loads(out)
    assert sum(e["length"] for e in extents) == SIZE
    assert {e["type"] for e in extents} == {1}
    assert extents[0]["offset"] == 0
    # Equal depths are merged into runs, so the whole raw image is one extent.
    assert len(extents) == 1


def test_both_contexts_and_req_one(daemon):
    h = nbd.NBD()
    h.add_meta_context(BASE)
    h.add_meta_context(DEPTH)
    h.connect_uri(daemon.uri("depth"))
    assert h.can_meta_context(BASE) and h.can_meta_context(DEPTH)
    seen = {}

    def collect(metacontext, offset, entries, err):
        pairs = list(zip(entries[0::2], entries[1::2]))
        seen[metacontext] = pairs
        return 0

    h.block_status(SIZE, 0, collect)
    assert seen[DEPTH] == [(SIZE, 1)]
    assert sum(length for length, _ in seen[BASE]) <= SIZE
    assert any(flags == 0 for _, flags in seen[BASE])  # the written MiB is data

    seen.clear()
    h.block_status(4096, MiB + 512, collect, flags=nbd.CMD_FLAG_REQ_ONE)
    assert seen[DEPTH] == [(4096, 1)]
    assert len(seen[BASE]) == 1 and seen[BASE][0][0] <= 4096
    h.shutdown()


def test_not_selectable_where_disabled(daemon):
    h = nbd.NBD()
    h.add_meta_context(DEPTH)
    h.connect_uri(daemon.uri("plain"))
    assert not h.can_meta_context(DEPTH)
    h.shutdown()
