"""An API access token kept until shortly before it expires: what every channel API
with OAuth-style `expires_in` tokens needs (WeCom, Google Play, AppGallery)."""

from __future__ import annotations

from dataclasses import dataclass

TOKEN_MARGIN_SECS = 300.0
"""Renew this long before the stated expiry (but never later than half its lifetime)."""


@dataclass
class AccessToken:
    default_lifetime_secs: float = 3600.0
    """The lifetime assumed when the answer states none (or no number)."""
    value: str = ""
    expires_at: float = 0.0

    def current(self, now: float) -> str | None:
        """The kept token while it is still good, else None (fetch a new one)."""
        return self.value if self.value and now < self.expires_at else None

    def keep(self, token: str, expires_in: object, now: float) -> str:
        lifetime = (
            float(expires_in) if isinstance(expires_in, int | float) else self.default_lifetime_secs
        )
        self.value = token
        self.expires_at = now + max(lifetime - TOKEN_MARGIN_SECS, lifetime / 2)
        return token

    def forget(self) -> None:
        """Revoked or expired early: the next `current()` asks for a fresh one."""
        self.value = ""
