"""NBD over TLS end to end: fleeced with `tls: required`, x509 (client certificates
verified) and PSK, against the GnuTLS clients users meet — nbdinfo, nbdcopy and
python libnbd (libnbd), qemu-img (QEMU's tls-creds-x509 / tls-creds-psk) — over TCP on
127.0.0.1 and over a Unix socket. Good credentials work, bad ones fail, a plaintext
client is refused with TLS_REQD, and the daemon survives all of it."""

import hashlib
import json
import socket
import struct
import subprocess

import nbd
import pytest

from fleece_harness import Daemon, FLEECED, make_image
from tls_pki import HAVE_OPENSSL, make_pki, write_psk

pytestmark = pytest.mark.skipif(not HAVE_OPENSSL, reason="needs the openssl command line")

MiB = 1 << 20
SIZE = 8 * MiB
PATTERN = [(0x5A, 0, MiB), (0xC3, 5 * MiB, 2 * MiB)]
PSK = {"backup1": "8f4ac4a3c4a8b1f0d1e2f3a4b5c6d7e8f9a0b1c2d3e4f5a6b7c8d9e0f1a2b3c4",
       "backup2": "00112233445566778899aabbccddeeff"}

IHAVEOPT = 0x49484156454F5054
OPT_EXPORT_NAME, OPT_LIST = 1, 3
REP_ERR_TLS_REQD = (1 << 31) | 5

CONFIG = """\
listen:
  - unix: {nbd_sock}
  - tcp: 127.0.0.1:PORT
log:
  level: debug
nodes:
  - node-name: disk0
    driver: raw
    file:
      driver: file
      filename: {dir}/disk.raw
exports:
  - name: disk0
    node: disk0
    description: the TLS test disk
  - name: cert-only
    node: disk0
    allow:
      - tls-dn: "CN=backup1,O=Example"
tls:
  x509-dir: {dir}/pki/server
  psk-file: {dir}/keys.psk
  verify-peer: true
  required: true
"""


def recv_exact(s, n):
    out = b""
    while len(out) < n:
        chunk = s.recv(n - len(out))
        assert chunk, "server closed the connection"
        out += chunk
    return out


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    d = tmp_path_factory.mktemp("tls")
    make_pki(d / "pki")
    write_psk(d / "keys.psk", PSK)
    # Client-side PSK files: QEMU reads DIR/keys.psk, libnbd any file.
    write_psk(d / "psk-good" / "keys.psk", {"backup1": PSK["backup1"]})
    write_psk(d / "psk-badkey" / "keys.psk", {"backup1": "ff" * 32})
    write_psk(d / "psk-unknown" / "keys.psk", {"mallory": PSK["backup1"]})
    image = make_image(d / "disk.raw", SIZE, pattern=PATTERN)
    port = free_port()
    daemon = Daemon(d, config=CONFIG.replace("PORT", str(port)))
    daemon.start()
    daemon.port = port
    daemon.image_sha = hashlib.sha256(image.read_bytes()).hexdigest()
    yield daemon
    assert daemon.alive(), "fleeced died:\n" + daemon.log_text()
    assert daemon.stop() == 0


def x509_uri(env, certs, tcp=True, export="disk0"):
    certs = env.dir / "pki" / certs
    if tcp:
        return f"nbds://127.0.0.1:{env.port}/{export}?tls-certificates={certs}"
    return f"nbds+unix:///{export}?socket={env.nbd_sock}&tls-certificates={certs}"


def psk_uri(env, user, pskdir="psk-good", tcp=False, export="disk0"):
    psk = env.dir / pskdir / "keys.psk"
    if tcp:
        return f"nbds://{user}@127.0.0.1:{env.port}/{export}?tls-psk-file={psk}"
    return f"nbds+unix://{user}@/{export}?socket={env.nbd_sock}&tls-psk-file={psk}"


def nbdinfo_size(uri):
    r = subprocess.run(["nbdinfo", "--size", uri], capture_output=True, text=True, timeout=30)
    return r.returncode, r.stdout.strip(), r.stderr


def assert_alive(env):
    assert env.alive(), "fleeced died:\n" + env.log_text()
    rc, out, err = nbdinfo_size(psk_uri(env, "backup1"))
    assert rc == 0, err
    assert out == str(SIZE)


@pytest.mark.parametrize("tcp", [True, False], ids=["tcp", "unix"])
def test_nbdinfo_with_a_client_certificate(env, tcp):
    rc, out, err = nbdinfo_size(x509_uri(env, "client", tcp=tcp))
    assert rc == 0, err
    assert out == str(SIZE)
    # The session is TLS and the daemon knows the verified subject.
    r = subprocess.run(["nbdinfo", "--json", x509_uri(env, "client", tcp=tcp)],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 0, r.stderr
    assert '"TLS": true' in r.stdout.replace('"TLS":true', '"TLS": true')


@pytest.mark.parametrize("tcp", [True, False], ids=["tcp", "unix"])
def test_nbdinfo_with_psk(env, tcp):
    rc, out, err = nbdinfo_size(psk_uri(env, "backup1", tcp=tcp))
    assert rc == 0, err
    assert out == str(SIZE)
    rc, out, err = nbdinfo_size(psk_uri(env, "backup2", pskdir="psk-good", tcp=tcp))
    assert rc != 0  # the file has no key for backup2


def test_nbdcopy_reads_the_whole_disk_over_tls(env, tmp_path):
    for uri, name in ((x509_uri(env, "client"), "x509.raw"),
                      (psk_uri(env, "backup1"), "psk.raw")):
        out = tmp_path / name
        r = subprocess.run(["nbdcopy", uri, str(out)], capture_output=True, text=True,
                           timeout=60)
        assert r.returncode == 0, r.stderr
        assert hashlib.sha256(out.read_bytes()).hexdigest() == env.image_sha


def qemu_img(*args):
    return subprocess.run(["qemu-img", *args], capture_output=True, text=True, timeout=60)


def test_qemu_img_with_x509_creds(env, tmp_path):
    creds = env.dir / "pki" / "client"
    obj = f"tls-creds-x509,id=tls0,endpoint=client,dir={creds}"
    opts = (f"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={env.port},"
            f"export=disk0,tls-creds=tls0")
    r = qemu_img("info", "--object", obj, "--image-opts", opts)
    assert r.returncode == 0, r.stderr
    assert f"virtual size: 8 MiB ({SIZE} bytes)" in r.stdout
    out = tmp_path / "copy.raw"
    r = qemu_img("convert", "--object", obj, "--image-opts", opts, "-O", "raw", str(out))
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == env.image_sha
    # Over the Unix socket QEMU checks the certificate against tls-hostname.
    unix_opts = (f"driver=nbd,server.type=unix,server.path={env.nbd_sock},export=disk0,"
                 f"tls-creds=tls0,tls-hostname=localhost")
    r = qemu_img("info", "--object", obj, "--image-opts", unix_opts)
    assert r.returncode == 0, r.stderr


def test_qemu_img_with_psk_creds(env, tmp_path):
    obj = f"tls-creds-psk,id=tls0,endpoint=client,dir={env.dir / 'psk-good'},username=backup1"
    opts = f"driver=nbd,server.type=unix,server.path={env.nbd_sock},export=disk0,tls-creds=tls0"
    out = tmp_path / "copy.raw"
    r = qemu_img("convert", "--object", obj, "--image-opts", opts, "-O", "raw", str(out))
    assert r.returncode == 0, r.stderr
    assert hashlib.sha256(out.read_bytes()).hexdigest() == env.image_sha
    bad = f"tls-creds-psk,id=tls0,endpoint=client,dir={env.dir / 'psk-badkey'},username=backup1"
    r = qemu_img("info", "--object", bad, "--image-opts", opts)
    assert r.returncode != 0
    assert_alive(env)


@pytest.mark.parametrize("uri_of", [
    pytest.param(lambda e: x509_uri(e, "rogue"), id="wrong-ca"),
    pytest.param(lambda e: x509_uri(e, "nocert"), id="no-client-cert"),
    pytest.param(lambda e: x509_uri(e, "nocert", tcp=False), id="no-client-cert-unix"),
    pytest.param(lambda e: psk_uri(e, "backup1", pskdir="psk-badkey"), id="wrong-psk-key"),
    pytest.param(lambda e: psk_uri(e, "mallory", pskdir="psk-unknown"), id="unknown-identity"),
    pytest.param(lambda e: psk_uri(e, "backup1", pskdir="psk-badkey", tcp=True),
                 id="wrong-psk-key-tcp"),
])
def test_bad_credentials_fail(env, uri_of):
    rc, out, err = nbdinfo_size(uri_of(env))
    assert rc != 0, f"connected with bad credentials: {out}"
    assert "tls" in err.lower() or "handshake" in err.lower() or "certificate" in err.lower(), err
    assert_alive(env)


def test_qemu_img_without_client_certificate_fails(env):
    obj = f"tls-creds-x509,id=tls0,endpoint=client,dir={env.dir / 'pki' / 'nocert'}"
    opts = (f"driver=nbd,server.type=inet,server.host=127.0.0.1,server.port={env.port},"
            f"export=disk0,tls-creds=tls0")
    r = qemu_img("info", "--object", obj, "--image-opts", opts)
    assert r.returncode != 0
    assert_alive(env)


def test_plaintext_client_is_refused_with_tls_required(env):
    h = nbd.NBD()
    h.set_tls(nbd.TLS_DISABLE)
    with pytest.raises(nbd.Error) as e:
        h.connect_uri(f"nbd+unix:///disk0?socket={env.nbd_sock}")
    assert "tls" in str(e.value).lower()
    # LIST before TLS gets TLS_REQD too, and no NBD_REP_SERVER: no export names leak.
    with socket.socket(socket.AF_UNIX) as s:
        s.settimeout(10)
        s.connect(str(env.nbd_sock))
        recv_exact(s, 18)
        s.sendall(struct.pack(">I", 3))
        s.sendall(struct.pack(">QII", IHAVEOPT, OPT_LIST, 0))
        magic, option, rep, length = struct.unpack(">QIII", recv_exact(s, 20))
        assert (option, rep) == (OPT_LIST, REP_ERR_TLS_REQD)
        assert b"STARTTLS" in recv_exact(s, length)
        # NBD_OPT_EXPORT_NAME before TLS: the server hangs up.
        s.sendall(struct.pack(">QII", IHAVEOPT, OPT_EXPORT_NAME, 5) + b"disk0")
        assert s.recv(100) == b""
    r = subprocess.run(["nbdinfo", "--list", f"nbd://127.0.0.1:{env.port}"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode != 0
    assert "disk0" not in r.stdout
    assert_alive(env)


def test_python_libnbd_negotiates_and_reads_over_tls(env):
    """Structured replies and a meta context are negotiated after STARTTLS."""
    h = nbd.NBD()
    h.set_uri_allow_local_file(True)
    h.add_meta_context("base:allocation")
    h.connect_uri(psk_uri(env, "backup1"))
    assert h.get_structured_replies_negotiated()
    assert h.can_meta_context("base:allocation")
    assert h.pread(MiB, 0) == bytes([0x5A]) * MiB
    assert h.pread(4096, 5 * MiB) == bytes([0xC3]) * 4096
    h.shutdown()


def test_check_config_reads_the_credentials(env, tmp_path):
    def check(extra_tls):
        cfg = tmp_path / "c.yaml"
        cfg.write_text(f"listen:\n  - unix: {tmp_path}/s\ntls:\n{extra_tls}")
        return subprocess.run([str(FLEECED), "--check-config", "--config", str(cfg)],
                              capture_output=True, text=True, timeout=30)

    pki = env.dir / "pki"
    r = check(f"  x509-dir: {pki / 'server'}\n  psk-file: {env.dir / 'keys.psk'}\n"
              "  verify-peer: true\n")
    assert r.returncode == 0, r.stderr
    # A folder without the server key: named, with the config's file:line.
    r = check(f"  x509-dir: {pki / 'client'}\n")
    assert r.returncode == 1
    assert f"c.yaml:4: tls.x509-dir: {pki / 'client' / 'server-cert.pem'}" in r.stderr
    assert "No such file or directory" in r.stderr
    # A key that does not belong to the certificate.
    mixed = tmp_path / "mixed"
    mixed.mkdir()
    (mixed / "server-cert.pem").write_bytes((pki / "server" / "server-cert.pem").read_bytes())
    (mixed / "server-key.pem").write_bytes((pki / "client" / "client-key.pem").read_bytes())
    r = check(f"  x509-dir: {mixed}\n")
    assert r.returncode == 1
    assert "does not match the certificate" in r.stderr
    # A bad PSK line, with its line number.
    bad = tmp_path / "bad.psk"
    bad.write_text("backup1:00ff\nbackup2 00ff\n")
    r = check(f"  psk-file: {bad}\n")
    assert r.returncode == 1
    assert f"c.yaml:4: tls.psk-file: {bad}: line 2: expected identity:hexkey" in r.stderr
    # The daemon refuses to start with them too.
    cfg = tmp_path / "c.yaml"
    p = subprocess.run([str(FLEECED), "--config", str(cfg)], capture_output=True, text=True,
                       timeout=30)
    assert p.returncode != 0
    assert "line 2: expected identity:hexkey" in p.stdout + p.stderr


def test_serve_with_tls_flags(env, tmp_path):
    """`fleeced serve` takes the credentials on the command line."""
    d = tmp_path / "serve"
    d.mkdir()
    image = make_image(d / "disk.raw", MiB, pattern=[(0x77, 0, 4096)])
    psk = env.dir / "keys.psk"
    with Daemon(d, serve=[str(image), "--name", "disk0", "--tls-psk-file", str(psk),
                          "--tls-creds-dir", str(env.dir / "pki" / "server"),
                          "--tls", "required"]) as s:
        h = nbd.NBD()
        h.set_uri_allow_local_file(True)
        h.connect_uri(f"nbds+unix://backup2@/disk0?socket={s.nbd_sock}"
                      f"&tls-psk-file={write_psk(d / 'b2.psk', {'backup2': PSK['backup2']})}")
        assert h.pread(4096, 0) == b"\x77" * 4096
        h.shutdown()
        h = nbd.NBD()
        h.set_tls(nbd.TLS_DISABLE)
        with pytest.raises(nbd.Error) as e:
            h.connect_uri(f"nbd+unix:///disk0?socket={s.nbd_sock}")
        assert "tls" in str(e.value).lower()
        assert s.alive()
    r = subprocess.run([str(FLEECED), "serve", str(image), "--tls", "required"],
                       capture_output=True, text=True, timeout=30)
    assert r.returncode == 2
    assert "--tls and --tls-verify-peer need --tls-creds-dir DIR or --tls-psk-file FILE" in r.stderr


def test_allow_by_certificate_subject(env):
    """`allow: [{tls-dn: ...}]` admits the verified client certificate, not a PSK client."""
    def names(uri):
        r = subprocess.run(["nbdinfo", "--list", "--json", uri], capture_output=True, text=True,
                           timeout=30)
        assert r.returncode == 0, r.stderr
        return {e["export-name"] for e in json.loads(r.stdout)["exports"]}

    assert names(x509_uri(env, "client", export="")) == {"disk0", "cert-only"}
    assert names(psk_uri(env, "backup1", export="")) == {"disk0"}
    rc, out, err = nbdinfo_size(x509_uri(env, "client", export="cert-only"))
    assert rc == 0, err
    rc, out, err = nbdinfo_size(psk_uri(env, "backup1", export="cert-only"))
    assert rc != 0
    assert "has no export named" in err
