"""Test credentials for NBD over TLS, made with the openssl command line: a CA, a server
certificate for localhost/127.0.0.1, client certificates (QEMU's and libnbd's folder
layout: ca-cert.pem, client-cert.pem, client-key.pem), and PSK files (identity:hexkey)."""

import shutil
import subprocess
from pathlib import Path

HAVE_OPENSSL = shutil.which("openssl") is not None


def _run(*args, cwd):
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def make_ca(d, name):
    """A self-signed CA in d: ca-cert.pem and ca-key.pem."""
    d = Path(d)
    d.mkdir(parents=True, exist_ok=True)
    _run("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", "ca-key.pem", "-out", "ca-cert.pem", "-days", "2", "-subj", f"/CN={name}",
         "-addext", "basicConstraints=critical,CA:TRUE",
         "-addext", "keyUsage=critical,keyCertSign,cRLSign", cwd=d)
    return d


def make_cert(ca_dir, out_dir, prefix, subject, server):
    """Signs PREFIX-cert.pem / PREFIX-key.pem in out_dir with the CA in ca_dir and copies
    the CA certificate next to them (as ca-cert.pem)."""
    ca_dir, out_dir = Path(ca_dir).resolve(), Path(out_dir).resolve()
    out_dir.mkdir(parents=True, exist_ok=True)
    ext = out_dir / f"{prefix}.ext"
    if server:
        ext.write_text("subjectAltName=DNS:localhost,IP:127.0.0.1,IP:::1\n"
                       "extendedKeyUsage=serverAuth\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n")
    else:
        ext.write_text("extendedKeyUsage=clientAuth\n"
                       "keyUsage=critical,digitalSignature,keyEncipherment\n")
    _run("req", "-new", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes",
         "-keyout", f"{prefix}-key.pem", "-out", f"{prefix}.csr", "-subj", subject, cwd=out_dir)
    _run("x509", "-req", "-in", f"{prefix}.csr", "-CA", str(ca_dir / "ca-cert.pem"),
         "-CAkey", str(ca_dir / "ca-key.pem"), "-CAcreateserial", "-days", "2",
         "-out", f"{prefix}-cert.pem", "-extfile", str(ext), cwd=out_dir)
    shutil.copy(ca_dir / "ca-cert.pem", out_dir / "ca-cert.pem")
    (out_dir / f"{prefix}.csr").unlink()
    ext.unlink()
    return out_dir


def make_pki(root):
    """Everything the TLS tests use, under root:
    ca/        the CA            server/   fleeced's x509-dir (ca, server cert and key)
    client/    a client signed by the CA (CN=backup1,O=Example)
    nocert/    only the CA certificate (a client without a certificate)
    rogue/     a client whose CA is a different one (trusts the wrong CA too)."""
    root = Path(root).resolve()
    ca = make_ca(root / "ca", "fleece test CA")
    make_cert(ca, root / "server", "server", "/O=Example/CN=localhost", server=True)
    make_cert(ca, root / "client", "client", "/O=Example/CN=backup1", server=False)
    nocert = root / "nocert"
    nocert.mkdir()
    shutil.copy(ca / "ca-cert.pem", nocert / "ca-cert.pem")
    rogue_ca = make_ca(root / "rogue-ca", "rogue CA")
    make_cert(rogue_ca, root / "rogue", "client", "/O=Example/CN=backup1", server=False)
    return root


def write_psk(path, entries):
    """A PSK file of identity -> hex key."""
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    Path(path).write_text("".join(f"{i}:{k}\n" for i, k in entries.items()))
    return Path(path)
