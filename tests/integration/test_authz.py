"""Per-export access rules (`allow:`) end to end: by PSK identity (two identities, two
exports), by Unix peer uid, by TCP address range. A client outside an export's list does
not see it in `nbdinfo --list` and gets the answer a missing export gets."""

import os
import json
import socket
import struct
import subprocess

import nbd
import pytest

from fleece_harness import Daemon, Qmp, make_image
from tls_pki import write_psk

MiB = 1 << 20
IHAVEOPT = 0x49484156454F5054
PSK = {"alice": "a1" * 32, "bob": "b0" * 32}
OTHER_UID = 0 if os.getuid() != 0 else 4242

CONFIG = """\
listen:
  - unix: {nbd_sock}
  - tcp: 127.0.0.1:PORT
control:
  unix: {control_sock}
nodes:
  - node-name: d
    driver: raw
    file:
      driver: file
      filename: {dir}/disk.raw
exports:
  - name: open
    node: d
  - name: alice-disk
    node: d
    allow:
      - psk-identity: alice
  - name: bob-disk
    node: d
    allow:
      - psk-identity: bob
  - name: mine
    node: d
    allow:
      - uid: MYUID
  - name: theirs
    node: d
    allow:
      - uid: OTHERUID
  - name: local-net
    node: d
    allow:
      - address: 127.0.0.0/8
      - address: "::1/128"
  - name: far-net
    node: d
    allow:
      - address: 10.0.0.0/8
      - address: "fd00::/8"
tls:
  psk-file: {dir}/keys.psk
  required: false
"""

ALL = {"open", "alice-disk", "bob-disk", "mine", "theirs", "local-net", "far-net"}


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("authz")
    write_psk(d / "keys.psk", PSK)
    for who, key in PSK.items():
        write_psk(d / f"{who}.psk", {who: key})
    make_image(d / "disk.raw", 4 * MiB, pattern=[(0x42, 0, MiB)])
    port = free_port()
    text = (CONFIG.replace("PORT", str(port)).replace("MYUID", str(os.getuid()))
            .replace("OTHERUID", str(OTHER_UID)))
    daemon = Daemon(d, config=text)
    daemon.start()
    daemon.port = port
    yield daemon
    assert daemon.alive(), "fleeced died:\n" + daemon.log_text()
    assert daemon.stop() == 0


def unix_uri(env, export="", user=None):
    if user:
        psk = env.dir / f"{user}.psk"
        return f"nbds+unix://{user}@/{export}?socket={env.nbd_sock}&tls-psk-file={psk}"
    return f"nbd+unix:///{export}?socket={env.nbd_sock}"


def tcp_uri(env, export=""):
    return f"nbd://127.0.0.1:{env.port}/{export}"


def listed(uri):
    r = subprocess.run(["nbdinfo", "--list", "--json", uri], capture_output=True, text=True,
                       timeout=30)
    assert r.returncode == 0, r.stderr
    return {e["export-name"] for e in json.loads(r.stdout)["exports"]}


def open_error(uri):
    """None if the export opens, else libnbd's error text."""
    h = nbd.NBD()
    h.set_uri_allow_local_file(True)
    try:
        h.connect_uri(uri)
    except nbd.Error as e:
        return str(e)
    assert h.pread(512, 0) == b"\x42" * 512
    h.shutdown()
    return None


def assert_same_answer_as_missing(hidden_uri, hidden_name, missing_uri, missing_name):
    """The refusal of a hidden export reads exactly as the one of a missing export."""
    hidden = open_error(hidden_uri)
    missing = open_error(missing_uri)
    assert hidden is not None and missing is not None
    assert hidden.replace(hidden_name, "X") == missing.replace(missing_name, "X")
    return hidden


def test_psk_identities_see_and_open_only_their_exports(env):
    # Over the Unix socket the peer uid rule ("mine") matches as well.
    assert listed(unix_uri(env, user="alice")) == {"open", "alice-disk", "mine"}
    assert listed(unix_uri(env, user="bob")) == {"open", "bob-disk", "mine"}
    assert open_error(unix_uri(env, "alice-disk", user="alice")) is None
    assert open_error(unix_uri(env, "bob-disk", user="bob")) is None
    assert open_error(unix_uri(env, "bob-disk", user="alice")) is not None
    assert open_error(unix_uri(env, "alice-disk", user="bob")) is not None
    # Without TLS there is no PSK identity: neither export.
    assert open_error(unix_uri(env, "alice-disk")) is not None
    assert not {"alice-disk", "bob-disk"} & listed(unix_uri(env))


def test_refusal_reads_like_a_missing_export(env):
    msg = assert_same_answer_as_missing(unix_uri(env, "bob-disk", user="alice"), "bob-disk",
                                        unix_uri(env, "no-such", user="alice"), "no-such")
    assert "has no export named" in msg, msg
    assert_same_answer_as_missing(tcp_uri(env, "far-net"), "far-net",
                                  tcp_uri(env, "no-such"), "no-such")


def test_unix_peer_uid(env):
    names = listed(unix_uri(env))
    assert "mine" in names and "open" in names
    assert "theirs" not in names
    assert open_error(unix_uri(env, "mine")) is None
    assert open_error(unix_uri(env, "theirs")) is not None
    # Address rules never match a Unix socket peer.
    assert "local-net" not in names


def test_tcp_address_ranges(env):
    names = listed(tcp_uri(env))
    assert names == {"open", "local-net"}
    assert open_error(tcp_uri(env, "local-net")) is None
    assert open_error(tcp_uri(env, "far-net")) is not None
    assert open_error(tcp_uri(env, "mine")) is not None  # uid rules need a Unix socket


def test_export_name_of_a_hidden_export_closes(env):
    """NBD_OPT_EXPORT_NAME cannot carry an error: the server hangs up, as for a missing
    export, and serves the allowed one."""
    def export_name(name):
        with socket.socket(socket.AF_UNIX) as s:
            s.settimeout(10)
            s.connect(str(env.nbd_sock))
            greeting = b""
            while len(greeting) < 18:
                greeting += s.recv(18 - len(greeting))
            s.sendall(struct.pack(">I", 3))  # FIXED_NEWSTYLE | NO_ZEROES
            s.sendall(struct.pack(">QII", IHAVEOPT, 1, len(name)) + name.encode())
            return s.recv(10)

    assert export_name("theirs") == b""
    assert export_name("no-such") == b""
    reply = export_name("mine")
    assert len(reply) == 10 and struct.unpack(">Q", reply[:8])[0] == 4 * MiB
    assert env.alive()


def test_block_export_add_with_allow(env):
    """An export added over QMP with `allow` is seen and opened only by its identity."""
    with Qmp(env.control_sock) as q:
        r = q.cmd("block-export-add", {"type": "nbd", "id": "qmp-alice", "node-name": "d",
                                       "name": "qmp-alice",
                                       "allow": [{"psk-identity": "alice"}, {"uid": OTHER_UID}]})
        assert r == {"return": {}}, r
        try:
            info = [e for e in q.cmd("query-block-exports")["return"] if e["id"] == "qmp-alice"]
            assert info[0]["allow"] == [{"psk-identity": "alice"}, {"uid": OTHER_UID}]
            assert "qmp-alice" in listed(unix_uri(env, user="alice"))
            assert "qmp-alice" not in listed(unix_uri(env, user="bob"))
            assert "qmp-alice" not in listed(unix_uri(env))
            assert open_error(unix_uri(env, "qmp-alice", user="alice")) is None
            assert open_error(unix_uri(env, "qmp-alice", user="bob")) is not None
        finally:
            assert q.cmd("block-export-del", {"id": "qmp-alice"}) == {"return": {}}
        r = q.cmd("block-export-add", {"type": "nbd", "id": "bad", "node-name": "d",
                                       "allow": [{"address": "10.0.0.0/99"}]})
        assert "prefix length" in r["error"]["desc"], r
        r = q.cmd("block-export-add", {"type": "nbd", "id": "bad", "node-name": "d",
                                       "allow": []})
        assert "empty" in r["error"]["desc"], r
