"""Text from outside bytes that are UTF-8 but for a few bad bytes: a cp1252 byte pasted
in, a character cut at the end of a buffer. Such bytes must stay UTF-8, with U+FFFD
where the bad bytes were: read as GB18030 instead (the usual fallback for Chinese
text) every word turns into mojibake, or the whole input is refused.

Shared by every connector that decodes text it did not write (mail, call transcripts,
dropped exports) so they agree on what "mostly UTF-8" means. It names no channel.
"""

from __future__ import annotations

UTF8_GOOD_PER_BAD = 5
"""Multi-byte characters that must decode for each bad sequence."""
_REPLACEMENT = "\ufffd"
_REPLACEMENT_UTF8 = _REPLACEMENT.encode()


def mostly_utf8(data: bytes) -> bool:
    """Valid UTF-8 but for a few bytes: at least `UTF8_GOOD_PER_BAD` multi-byte
    characters decode for each bad sequence (a U+FFFD already in the text counts as
    one). GBK/GB18030 text read as UTF-8 gives far more bad sequences than good ones
    (about 1 good per 4 bad on real text; 5 random hanzi pass 1 time in 10 000), so it
    is not taken for UTF-8."""
    return _judge(data)[0]


def mostly_utf8_text(data: bytes) -> tuple[str, int] | None:
    """`data` as UTF-8 with U+FFFD in place of each bad sequence, and how many were put
    in (U+FFFD the sender wrote are not counted), if it is mostly UTF-8; else None."""
    ok, text, put_in = _judge(data)
    return (text, put_in) if ok else None


def _judge(data: bytes) -> tuple[bool, str, int]:
    """(mostly UTF-8?, the text with replacements, replacements put in)."""
    text = data.decode("utf-8", errors="replace")
    replacements = text.count(_REPLACEMENT)
    good = len(text) - len(text.encode("ascii", errors="ignore")) - replacements
    # EF BF BD is always one complete, valid sequence: each one in the bytes is a U+FFFD
    # the sender wrote, every other U+FFFD in the text stands for a bad sequence. The
    # judgement counts both as bad (as the mail connector always has): stricter.
    put_in = replacements - data.count(_REPLACEMENT_UTF8)
    return good >= UTF8_GOOD_PER_BAD * replacements, text, put_in
