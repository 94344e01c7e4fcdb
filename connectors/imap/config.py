"""Options of the imap connector (`[connectors.<name>]`, `type = "imap"`).

Validated once at start-up: a typo fails the worker with a message naming the option.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import date
from typing import Literal

from ingest.options import Secret

Security = Literal["tls", "starttls", "plain"]
Auth = Literal["password", "xoauth2"]
_AFTER_INGEST = re.compile(r"^(keep|seen|move:.+)$")
DEFAULT_PORTS = {"tls": 993, "starttls": 143, "plain": 143}


def _positive(name: str, value: float) -> None:
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")


@dataclass(frozen=True)
class ImapOptions:
    """Which server, which account, which folders, and what to do with a mail once it is
    safely on the bus."""

    host: str
    username: str
    """The login, usually the mailbox address (QQ/163: the full address)."""
    password: Secret = Secret("")  # noqa: RUF009 - an immutable str, safe as a default
    """The password or, for QQ/163/126, the app authorisation code (授权码); `auth =
    "password"` only."""
    port: int = 0
    """0: 993 for tls, 143 for starttls and plain."""
    security: Security = "tls"
    """`tls` (implicit TLS, the default), `starttls`, or `plain` (unencrypted: only for
    a server on the same host or a trusted network)."""
    tls_verify: bool = True
    """Check the server's certificate and host name; turn off only for testing."""
    ca_file: str = ""
    """PEM file of the CA that signed the server's certificate (a private CA)."""
    auth: Auth = "password"
    """`password` (LOGIN) or `xoauth2` (Gmail, Exchange Online: OAuth2 access token)."""
    oauth2_token_file: str = ""
    """xoauth2: a file holding the current access token, re-read on every (re)connect, so
    a refresher (cron, sidecar) can replace it."""
    oauth2_token_command: tuple[str, ...] = ()
    """xoauth2: a command (argv list) printing the current access token on stdout, run on
    every (re)connect."""
    folders: tuple[str, ...] = ("INBOX",)
    """Folders to read, as shown to users (Unicode: "客户投诉"; encoded to modified
    UTF-7 for the server)."""
    source: str = ""
    """`source` of every event; empty: the username (the service mailbox address)."""
    after_ingest: str = "keep"
    """`keep` (default: never touch the mail), `seen` (set \\Seen), or `move:<folder>`
    (move it there). Done only after the broker confirmed it and the cursor was saved."""
    since: str = ""
    """Backfill bound, YYYY-MM-DD: only mails the server received on or after that day
    (IMAP SEARCH SINCE). Empty: everything in the folder."""
    idle: bool = True
    """Use IMAP IDLE (when the server offers it) to read new mail as soon as it arrives;
    polling every `poll_interval_secs` continues either way."""
    poll_interval_secs: float = 60.0
    idle_renew_secs: float = 25 * 60.0
    """Re-issue IDLE at least this often (RFC 2177: servers may drop it after 30 min)."""
    batch_size: int = 100
    """Mails per batch handed to the runtime (one broker confirm and cursor commit each)."""
    batch_max_bytes: int = 32 * 1024 * 1024
    """A batch also ends once its mails add up to this many bytes (memory bound)."""
    max_message_bytes: int = 64 * 1024 * 1024
    """A larger mail is not parsed: it is dead-lettered (`oversized`) with its first
    512 KiB; a mail with a 20 MB attachment (about 27 MB encoded) is read normally."""
    timeout_secs: float = 60.0
    """Network timeout of one IMAP command."""
    send_id: bool = True
    """Send the RFC 2971 ID command after login (NetEase 163/126 refuse SELECT without it)."""

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise ValueError("host must name the IMAP server")
        if not self.username.strip():
            raise ValueError("username must be the login of the mailbox")
        if not 0 <= self.port <= 65535:
            raise ValueError(f"port must be 0..65535, got {self.port}")
        self._check_auth()
        if not self.folders or not all(f.strip() for f in self.folders):
            raise ValueError("folders must list at least one folder, e.g. ['INBOX']")
        if len(set(self.folders)) != len(self.folders):
            raise ValueError("folders lists a folder twice")
        if not _AFTER_INGEST.match(self.after_ingest):
            raise ValueError(
                f"after_ingest must be 'keep', 'seen' or 'move:<folder>', got {self.after_ingest!r}"
            )
        if self.move_to and self.move_to in self.folders:
            raise ValueError(f"after_ingest moves mail into {self.move_to!r}, a folder it reads")
        if self.since:
            try:
                date.fromisoformat(self.since)
            except ValueError:
                raise ValueError(f"since must be a date YYYY-MM-DD, got {self.since!r}") from None
        for name in ("poll_interval_secs", "idle_renew_secs", "timeout_secs"):
            _positive(name, getattr(self, name))
        _positive("batch_size", self.batch_size)
        if self.batch_size > 5000:
            raise ValueError("batch_size must be at most 5000 (a batch is held in memory)")
        _positive("batch_max_bytes", self.batch_max_bytes)
        _positive("max_message_bytes", self.max_message_bytes)
        if self.max_message_bytes > 512 * 1024 * 1024:
            raise ValueError("max_message_bytes must be at most 536870912 (512 MiB)")

    def _check_auth(self) -> None:
        if self.auth == "password":
            if not self.password:
                raise ValueError("password is required with auth = 'password'")
            if self.oauth2_token_file or self.oauth2_token_command:
                raise ValueError("oauth2_token_file/_command need auth = 'xoauth2'")
            return
        if bool(self.oauth2_token_file) == bool(self.oauth2_token_command):
            raise ValueError(
                "auth = 'xoauth2' needs exactly one of oauth2_token_file and oauth2_token_command"
            )
        if self.password:
            raise ValueError("password is not used with auth = 'xoauth2'; remove it")

    @property
    def effective_port(self) -> int:
        return self.port or DEFAULT_PORTS[self.security]

    @property
    def move_to(self) -> str:
        return self.after_ingest.partition(":")[2] if self.after_ingest.startswith("move:") else ""

    @property
    def effective_source(self) -> str:
        return self.source or self.username

    @classmethod
    def example(cls) -> ImapOptions:
        """A valid configuration for a bank's service mailbox on a QQ enterprise mailbox:
        the default of `feedback-ingest parse imap`, docs and contract tests."""
        return cls(
            host="imap.exmail.qq.com",
            username="kefu@bank.example",
            password=Secret("app-authorisation-code"),
            folders=("INBOX",),
            source="客服邮箱",
        )
