"""A throwaway Dovecot IMAP server for tests and benchmarks: its own config, maildir,
passwd-file user and self-signed certificate in a temporary folder, on free ports.

    with Dovecot.start() as server:
        server.imaps_port, server.imap_port, server.user, server.password, server.ca_file

Needs /usr/sbin/dovecot (Debian: `apt-get install -y dovecot-imapd`). The mail
processes run as the `dovecot` system user when the tests run as root (Dovecot refuses
uid 0 for mail access), so the temporary folder is made traversable for it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

DOVECOT = shutil.which("dovecot") or "/usr/sbin/dovecot"
USER = "kefu@bank.example"
PASSWORD = "qq-auth-code-x7k2"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def self_signed_cert(folder: Path) -> tuple[Path, Path]:
    """A certificate for 127.0.0.1 / localhost, made with `cryptography`."""
    import ipaddress

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.now(UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - timedelta(days=1))
        .not_valid_after(now + timedelta(days=30))
        .add_extension(
            x509.SubjectAlternativeName(
                [x509.DNSName("localhost"), x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]
            ),
            critical=False,
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    cert_file, key_file = folder / "cert.pem", folder / "key.pem"
    cert_file.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_file.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption(),
        )
    )
    key_file.chmod(0o600)
    return cert_file, key_file


CONFIG = """\
base_dir = {root}/run
state_dir = {root}/state
instance_name = feedback-test-{port}
log_path = {root}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = yes
ssl_cert = <{cert}
ssl_key = <{key}
disable_plaintext_auth = no
auth_mechanisms = plain login
mail_location = maildir:{root}/mail/%n
mail_uid = {uid}
mail_gid = {gid}
first_valid_uid = {uid}
last_valid_uid = 0
first_valid_gid = {gid}
default_internal_user = {internal}
default_login_user = {login}
shutdown_clients = yes
mailbox_idle_check_interval = 1 secs
auth_failure_delay = 0
passdb {{
  driver = passwd-file
  args = scheme=PLAIN username_format=%u {root}/passwd
}}
userdb {{
  driver = static
  args = home={root}/mail/%n
}}
service imap-login {{
  inet_listener imap {{
    address = 127.0.0.1
    port = {imap_port}
  }}
  inet_listener imaps {{
    address = 127.0.0.1
    port = {port}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
service imap-login {{
  chroot =
}}
protocol imap {{
  mail_max_userip_connections = 100
}}
"""


@dataclass
class Dovecot:
    root: Path
    imaps_port: int
    imap_port: int
    ca_file: Path
    process: subprocess.Popen[bytes]
    user: str = USER
    password: str = PASSWORD

    @classmethod
    @contextlib.contextmanager
    def start(cls) -> Iterator[Dovecot]:
        root = Path(tempfile.mkdtemp(prefix="feedback-dovecot-"))
        root.chmod(0o755)
        try:
            server = cls._launch(root)
            try:
                yield server
            finally:
                server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)

    @classmethod
    def _launch(cls, root: Path) -> Dovecot:
        if os.getuid() == 0:
            mail_user = pwd.getpwnam("dovecot")
            internal, login = "dovecot", "dovenull"
        else:
            mail_user = pwd.getpwuid(os.getuid())
            internal = login = mail_user.pw_name
        (root / "mail").mkdir()
        os.chown(root / "mail", mail_user.pw_uid, mail_user.pw_gid)
        cert, key = self_signed_cert(root)
        (root / "passwd").write_text(f"{USER}:{{PLAIN}}{PASSWORD}\n")
        imaps_port, imap_port = free_port(), free_port()
        conf = root / "dovecot.conf"
        conf.write_text(
            CONFIG.format(
                root=root,
                cert=cert,
                key=key,
                uid=mail_user.pw_uid,
                gid=mail_user.pw_gid,
                internal=internal,
                login=login,
                port=imaps_port,
                imap_port=imap_port,
            )
        )
        process = subprocess.Popen(
            [DOVECOT, "-F", "-c", str(conf)], stdout=subprocess.PIPE, stderr=subprocess.STDOUT
        )
        server = cls(root, imaps_port, imap_port, cert, process)
        deadline = time.monotonic() + 15
        while not _listening(imaps_port) or not _listening(imap_port):
            if process.poll() is not None or time.monotonic() > deadline:
                out = process.stdout.read().decode(errors="replace") if process.stdout else ""
                log = (root / "dovecot.log").read_text() if (root / "dovecot.log").exists() else ""
                server.stop()
                raise RuntimeError(f"dovecot did not start: {out}\n{log}")
            time.sleep(0.05)
        return server

    def log(self) -> str:
        path = self.root / "dovecot.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        if self.process.poll() is None:
            # SIGQUIT: the master exits at once and its children follow when its pipes
            # close (SIGTERM waits about 6 s for a graceful client shutdown).
            self.process.send_signal(signal.SIGQUIT)
            try:
                self.process.wait(10)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(5)
        if self.process.stdout:
            self.process.stdout.close()


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
