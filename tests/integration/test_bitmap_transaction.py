"""`transaction` with dirty-bitmap actions, end to end through the real fleeced: a
transaction whose last (or middle) action fails in its checks, after earlier actions
already added, removed, cleared, merged, enabled and disabled bitmaps, leaves every
bitmap exactly as it was — query-dirty-bitmaps identical, content identical (read as
qemu:dirty-bitmap:NAME with nbdinfo), recording state identical (later writes land in
the same bitmaps) — and the persistent ones are stored unchanged (after a clean stop
`qemu-img info` and `qemu-nbd -B` show what they showed before). A successful
transaction of the same actions takes effect as a whole."""

import signal
import subprocess
import time

import nbd
import pytest

from fleece_harness import (Daemon, Qmp, dirty_bitmap_context, nbdinfo_extents,
                            qemu_img_bitmaps, qemu_nbd_bitmap_map, query_dirty_bitmaps)

KiB = 1 << 10
MiB = 1 << 20
SIZE = 32 * MiB


def run(cmd):
    r = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, f"{cmd}: {r.stdout}{r.stderr}"
    return r


CONFIG = """listen:
  - unix: {{nbd_sock}}
control:
  unix: {{control_sock}}
nodes:
  - node-name: d
    driver: qcow2
    file:
      driver: file
      filename: "{img}"
exports:
  - name: live
    node: d
    writable: true
  - name: busyx
    node: d
    bitmaps: [e]
"""


def write(uri, ranges):
    h = nbd.NBD()
    h.connect_uri(uri)
    for off, length in ranges:
        h.pwrite(b"\x5a" * length, off)
    h.flush()
    h.shutdown()


def peek(q, d, name):
    """The content of bitmap `name` through a short-lived export (an exported bitmap is
    busy, so it cannot stay exported while transactions change it)."""
    r = q.cmd("block-export-add", {"type": "nbd", "id": "peek", "node-name": "d",
                                   "name": "peek", "bitmaps": [name]})
    assert r == {"return": {}}, r
    try:
        return nbdinfo_extents(d.uri("peek"), dirty_bitmap_context(name))
    finally:
        assert q.cmd("block-export-del", {"id": "peek", "mode": "hard"}) == {"return": {}}
        deadline = time.monotonic() + 10
        while any(e["id"] == "peek" for e in q.cmd("query-block-exports")["return"]):
            assert time.monotonic() < deadline, "export peek still listed"
            time.sleep(0.02)


def state(q, d):
    """Everything a client can see of the node's bitmaps: query-dirty-bitmaps and the
    content of each (the busy one read through its own export)."""
    info = query_dirty_bitmaps(q, "d")
    maps = {}
    for name, b in info.items():
        if b.get("busy"):
            maps[name] = nbdinfo_extents(d.uri("busyx"), dirty_bitmap_context(name))
        else:
            maps[name] = peek(q, d, name)
    return info, maps


def action(type_, **data):
    return {"type": f"block-dirty-bitmap-{type_}", "data": {"node": "d", **data}}


# Each: the actions, then the error's text. Every action before the failing
# one is valid and changes something; the failing one fails in its checks (not in
# argument parsing), so the earlier ones must be undone.
FAILING = {
    "add-existing-last": (
        [action("clear", name="a"), action("disable", name="a"), action("enable", name="b"),
         action("merge", target="b", bitmaps=["a", "t"]),
         action("add", name="n", persistent=True, granularity=4096),
         action("remove", name="t"), action("add", name="a")],
        "Bitmap already exists: a"),
    "busy-in-the-middle": (
        [action("add", name="n2", persistent=True, granularity=4096),
         action("merge", target="n2", bitmaps=["a", {"node": "d", "name": "b"}]),
         action("clear", name="e"), action("clear", name="b")],
        "Bitmap 'e' is currently in use by another operation"),
    "missing-merge-source": (
        [action("remove", name="a"), action("remove", name="b"),
         action("merge", target="t", bitmaps=["nope"])],
        "Dirty bitmap 'nope' not found"),
    "missing-remove": (
        [action("disable", name="t"), action("clear", name="t"), action("merge", target="a",
                                                                         bitmaps=["b"]),
         action("remove", name="nope")],
        "Dirty bitmap 'nope' not found"),
    "same-name-twice": (
        [action("add", name="dup", persistent=True), action("clear", name="b"),
         action("add", name="dup")],
        "Bitmap already exists: dup"),
    "disable-remove-then-fail": (
        [action("disable", name="t"), action("remove", name="t"), action("disable", name="a"),
         action("add", name="b", granularity=512)],
        "Bitmap already exists: b"),
}


@pytest.fixture
def daemon(tmp_path):
    img = tmp_path / "t.qcow2"
    run(["qemu-img", "create", "-q", "-f", "qcow2", img, SIZE])
    run(["qemu-img", "bitmap", "--add", img, "a"])
    run(["qemu-img", "bitmap", "--add", "-g", 4096, img, "b"])
    run(["qemu-img", "bitmap", "--add", "-g", 1 * MiB, img, "e"])
    run(["qemu-io", "-f", "qcow2", "-c", "write 100 1000", "-c", "write 5M 70000", img])
    run(["qemu-img", "bitmap", "--disable", img, "b"])
    run(["qemu-io", "-f", "qcow2", "-c", "write 9M 1", img])  # a and e only
    d = Daemon(tmp_path, config=CONFIG.format(img=img))
    d.start(wait_control=True)
    with Qmp(d.control_sock) as q:
        r = q.cmd("block-dirty-bitmap-add", {"node": "d", "name": "t", "granularity": 16384})
        assert r == {"return": {}}, r
    write(d.uri("live"), [(12 * MiB + 5, 10), (20 * MiB, 65536)])  # a, e, t record
    yield d, img
    d.stop()


@pytest.mark.parametrize("case", sorted(FAILING))
def test_failing_transaction_changes_nothing(tmp_path, daemon, case):
    d, img = daemon
    actions, message = FAILING[case]
    with Qmp(d.control_sock) as q:
        before = state(q, d)
        assert set(before[0]) == {"a", "b", "e", "t"}
        assert before[0]["e"]["busy"] is True and before[0]["a"]["count"] > 0
        r = q.cmd("transaction", {"actions": actions})
        assert "error" in r, r
        assert message in r["error"]["desc"], r
        after = state(q, d)
        assert after[0] == before[0], "query-dirty-bitmaps changed"
        assert after[1] == before[1], "bitmap content changed"
        # Recording is as before too: a new write lands in a, e, t and not in b.
        write(d.uri("live"), [(30 * MiB, 1)])
        now = query_dirty_bitmaps(q, "d")
        for name, b in before[0].items():
            grew = now[name]["count"] > b["count"]
            assert grew == b["recording"], (name, b, now[name])
        stored = {n: peek(q, d, n) for n in ("a", "b")}
    stored["e"] = nbdinfo_extents(d.uri("busyx"), dirty_bitmap_context("e"))
    d.signal(signal.SIGTERM)
    assert d.proc.wait(20) == 0, d.log_text()
    # The image holds exactly the persistent bitmaps it held, with their content.
    bitmaps = qemu_img_bitmaps(img)
    assert sorted(bitmaps) == ["a", "b", "e"]
    assert bitmaps["a"]["flags"] == ["auto"] and bitmaps["b"]["flags"] == []
    for name in ("a", "b", "e"):
        assert qemu_nbd_bitmap_map(tmp_path, img, name) == stored[name], name
    run(["qemu-img", "check", img])


def test_successful_transaction_takes_effect(tmp_path, daemon):
    d, img = daemon
    with Qmp(d.control_sock) as q:
        info, maps = state(q, d)
        r = q.cmd("transaction", {"actions": [
            action("add", name="n", persistent=True, granularity=4096, disabled=True),
            action("merge", target="n", bitmaps=["b"]),
            action("clear", name="a"),
            action("enable", name="b"),
            action("remove", name="t")]})
        assert r == {"return": {}}, r
        now, now_maps = state(q, d)
        assert set(now) == {"a", "b", "e", "n"}
        assert now["a"]["count"] == 0 and now["a"]["recording"] is True
        assert now["b"]["recording"] is True
        assert now["n"]["recording"] is False and now["n"]["persistent"] is True
        assert now_maps["n"] == maps["b"]
    d.signal(signal.SIGTERM)
    assert d.proc.wait(20) == 0, d.log_text()
    bitmaps = qemu_img_bitmaps(img)
    assert sorted(bitmaps) == ["a", "b", "e", "n"]
    assert bitmaps["n"]["flags"] == [] and bitmaps["b"]["flags"] == ["auto"]
    assert qemu_nbd_bitmap_map(tmp_path, img, "n") == maps["b"]
    assert qemu_nbd_bitmap_map(tmp_path, img, "a") == [(0, SIZE, 0)]


def test_disable_then_remove(tmp_path, daemon):
    """QEMU accepts disabling and removing one bitmap in one transaction; either way the
    transaction must not report an error after it took effect."""
    d, img = daemon
    with Qmp(d.control_sock) as q:
        r = q.cmd("transaction", {"actions": [action("disable", name="t"),
                                              action("remove", name="t")]})
        gone = "t" not in query_dirty_bitmaps(q, "d")
        assert ("return" in r) == gone, f"{r}, bitmap removed: {gone}"
        assert r == {"return": {}}, r
