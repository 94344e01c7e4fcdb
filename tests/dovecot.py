"""A throwaway Dovecot IMAP server for tests and benchmarks: its own config, maildir,
passwd-file user and self-signed certificate in a temporary folder, on free ports.

    with Dovecot.start() as server:
        server.imaps_port, server.imap_port, server.user, server.password, server.ca_file

    with Dovecot.start(oauth2_introspection_url="http://127.0.0.1:8123/introspect") as server:
        # XOAUTH2 / OAUTHBEARER logins are checked by POSTing the token to that URL
        # (RFC 7662 introspection: `{"active": true, "username": "kefu@bank.example"}`)

Needs /usr/sbin/dovecot (Debian: `apt-get install -y dovecot-imapd`). The mail
processes run as the `dovecot` system user when the tests run as root (Dovecot refuses
uid 0 for mail access), so the temporary folder is made traversable for it.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import re
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
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
auth_mechanisms = {mechanisms}
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
{oauth2_passdb}passdb {{
  driver = passwd-file
  mechanisms = plain login
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

OAUTH2_PASSDB = """\
passdb {{
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = {root}/dovecot-oauth2.conf.ext
}}
"""

OAUTH2_CONF = """\
introspection_mode = post
introspection_url = {url}
username_attribute = username
active_attribute = active
active_value = true
"""
"""Dovecot's oauth2 passdb (doc.dovecot.org, "Open Authentication v2.0 database"): the
token of every XOAUTH2 / OAUTHBEARER login is POSTed as `token=…` to the URL; the
answer must say `"active": true` and name the login user in `username`."""


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
    def start(cls, oauth2_introspection_url: str = "") -> Iterator[Dovecot]:
        root = Path(tempfile.mkdtemp(prefix="feedback-dovecot-"))
        root.chmod(0o755)
        try:
            server = cls._launch(root, oauth2_introspection_url)
            try:
                yield server
            finally:
                server.stop()
        finally:
            shutil.rmtree(root, ignore_errors=True)

    @classmethod
    def _launch(cls, root: Path, oauth2_introspection_url: str = "") -> Dovecot:
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
        mechanisms, oauth2_passdb = "plain login", ""
        if oauth2_introspection_url:
            mechanisms += " xoauth2 oauthbearer"
            oauth2_passdb = OAUTH2_PASSDB.format(root=root)
            (root / "dovecot-oauth2.conf.ext").write_text(
                OAUTH2_CONF.format(url=oauth2_introspection_url)
            )
        conf = root / "dovecot.conf"
        conf.write_text(
            CONFIG.format(
                root=root,
                mechanisms=mechanisms,
                oauth2_passdb=oauth2_passdb,
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

    def deliver(self, mails: Sequence[tuple[bytes, float]]) -> None:
        """(raw mail, received at as Unix time) straight into INBOX's maildir `new/`:
        Dovecot gives them UIDs when it next scans the folder and takes each file's mtime
        as its INTERNALDATE. Thousands of mails in well under a second (APPENDing them
        would time the setup, not the code under test)."""
        maildir = self.root / "mail" / self.user.split("@")[0]
        for sub in ("new", "cur", "tmp"):
            (maildir / sub).mkdir(parents=True, exist_ok=True)
        owner = pwd.getpwnam("dovecot") if os.getuid() == 0 else pwd.getpwuid(os.getuid())
        start = len(os.listdir(maildir / "new")) + len(os.listdir(maildir / "cur"))
        for i, (raw, received) in enumerate(mails, start):
            path = maildir / "new" / f"{int(received)}.M{i:07d}P1.feedback-test"
            path.write_bytes(raw)
            os.utime(path, (received, received))
        for root, dirs, files in os.walk(self.root / "mail"):
            for entry in (root, *[os.path.join(root, f) for f in files + dirs]):
                os.chown(entry, owner.pw_uid, owner.pw_gid)

    def kick(self) -> None:
        """Disconnect every session of the user (`doveadm kick`), as a server does when
        a session's token expires or it restarts."""
        doveadm = shutil.which("doveadm") or "/usr/bin/doveadm"
        subprocess.run(
            [doveadm, "-c", str(self.root / "dovecot.conf"), "kick", self.user],
            check=True,
            capture_output=True,
            timeout=10,
        )

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


FIXTURE_MAILS = Path(__file__).resolve().parent / "fixtures" / "email"
MACHINE_MAILS = ("auto_reply.eml", "dsn_bounce.eml")
"""Fixtures the connector counts and skips (an auto-reply, a bounce): not customer mail."""


def fixture_mails(count: int, prefix: str = "bench") -> list[tuple[bytes, bool]]:
    """`count` real-shaped mails cycling through tests/fixtures/email (GB charsets, QP,
    base64, HTML-only, attachments, quoted replies, an auto-reply, a bounce), each with
    the unique Message-ID `<{prefix}-{i:06d}@bench.example>`; with each, whether it is
    customer mail (an event) rather than machine mail (skipped)."""
    templates = [(p.name, p.read_bytes()) for p in sorted(FIXTURE_MAILS.glob("*.eml"))]
    mails = []
    for i in range(count):
        name, raw = templates[i % len(templates)]
        mid = f"<{prefix}-{i:06d}@bench.example>".encode()
        if re.search(rb"(?im)^message-id:", raw):
            raw = re.sub(rb"(?im)^message-id:[^\r\n]*", b"Message-ID: " + mid, raw, count=1)
        else:
            raw = b"Message-ID: " + mid + b"\r\n" + raw
        mails.append((raw, name not in MACHINE_MAILS))
    return mails


def _listening(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.2):
            return True
    except OSError:
        return False
