"""Pure text helpers of the imap parser: charsets, HTML to text, and stripping the quoted
history and signatures a reply drags along (in Chinese and English forms).

Kept apart from `parse.py` (the MIME walk) so each stays readable in one sitting.
"""

from __future__ import annotations

import codecs
import re
from html.parser import HTMLParser

from charset_normalizer import from_bytes

from ingest.text_bytes import mostly_utf8_text

# --- charsets -----------------------------------------------------------------

CHARSET_ALIASES = {
    "gb2312": "gb18030",
    "gbk": "gb18030",
    "x-gbk": "gb18030",
    "cp936": "gb18030",
    "ms936": "gb18030",
    "windows-936": "gb18030",
    "euc-cn": "gb18030",
    "gb_2312-80": "gb18030",
    "gb2312-80": "gb18030",
    "csgb2312": "gb18030",
    "x-euc-cn": "gb18030",
    "chinese": "gb18030",
    "big5": "big5hkscs",
    "x-big5": "big5hkscs",
    "cp950": "big5hkscs",
    "ks_c_5601-1987": "cp949",
    "unicode-1-1-utf-7": "utf-7",
    "utf8": "utf-8",
    "x-unknown": "",
    "unknown-8bit": "",
    "us-ascii": "utf-8",
    "ascii": "utf-8",
}
"""Labels as mail clients write them → the codec to decode with. GB2312/GBK labels
routinely carry GBK/GB18030-only characters (祐, 慶, 讀): GB18030 is a superset, so it is
always used. US-ASCII labels are read as UTF-8 (a superset; mislabelled 8-bit text is
common). An empty codec means "no usable label"."""

_META_CHARSET = re.compile(
    rb"""<meta[^>]{0,200}?charset\s*=\s*["']?\s*([A-Za-z0-9_:.\-]{1,40})""", re.I
)
_DETECT_SAMPLE_BYTES = 64 * 1024
_SHORT_NON_ASCII = 24
_DETECT_AMONG = ["gb18030", "big5", "utf_8", "shift_jis", "euc_kr", "cp1252", "utf_16"]
"""What undeclared mail to a Chinese bank is written in; a short list keeps
charset-normalizer from guessing exotic code pages on short texts."""


def codec_for(label: str | None) -> str:
    """The Python codec for a charset label, or "" if the label is missing or unknown."""
    if not label:
        return ""
    name = label.strip().strip("\"'").lower()
    name = CHARSET_ALIASES.get(name, name)
    if not name:
        return ""
    try:
        codec = codecs.lookup(name).name
    except LookupError:
        return ""
    return CHARSET_ALIASES.get(codec, codec)


def html_meta_charset(data: bytes) -> str:
    match = _META_CHARSET.search(data[:4096])
    return codec_for(match.group(1).decode("ascii")) if match else ""


def decode_bytes(data: bytes, label: str | None = None, *, html: bool = False) -> tuple[str, str]:
    """Text of `data` and the codec used. Order (channels.md §3): the MIME label, the
    HTML `<meta>` charset, detection (charset-normalizer), GB18030 with replacement.
    A label is only trusted if the bytes decode strictly with it. UTF-8 with a few bad
    bytes stays UTF-8, with U+FFFD where they were: read as GB18030 every word is lost."""
    if data.isascii():
        return data.decode("ascii"), "ascii"
    candidates = [codec_for(label)]
    if html:
        candidates.append(html_meta_charset(data))
    candidates.append("utf-8")
    for codec in candidates:
        if not codec:
            continue
        try:
            return data.decode(codec), codec
        except (UnicodeDecodeError, LookupError):
            continue
    lenient = mostly_utf8_text(data)  # ingest/text_bytes.py: the rule all connectors share
    if lenient is not None:
        return lenient[0], "utf-8"
    if sum(b > 0x7F for b in data[:256]) < _SHORT_NON_ASCII:
        try:  # too little to detect reliably; Chinese mail that is not UTF-8 is GB
            return data.decode("gb18030"), "gb18030"
        except UnicodeDecodeError:
            pass
    detected = _detect(data)
    if detected:
        try:
            return data.decode(detected), detected
        except (UnicodeDecodeError, LookupError):
            pass
    return data.decode("gb18030", errors="replace"), "gb18030"


def _detect(data: bytes) -> str:
    """charset-normalizer's guess on a sample; Chinese mail that is not UTF-8 is almost
    always GB18030 family, so a GB-compatible guess is widened to gb18030."""
    best = from_bytes(data[:_DETECT_SAMPLE_BYTES], cp_isolation=_DETECT_AMONG).best()
    if best is None:
        return ""
    return codec_for(best.encoding)


# --- HTML → text ----------------------------------------------------------------

_BLOCK_TAGS = frozenset(
    {
        *("address", "article", "aside", "blockquote", "br", "dd", "div", "dl", "dt"),
        *("fieldset", "figcaption", "figure", "footer", "form", "header", "hr", "li"),
        *("h1", "h2", "h3", "h4", "h5", "h6", "main", "nav", "ol", "p", "pre"),
        *("section", "table", "td", "th", "tr", "ul"),
    }
)
_SKIP_TAGS = frozenset({"script", "style", "head", "title", "template", "noscript"})
_QUOTE_CLASSES = ("gmail_quote", "yahoo_quoted", "moz-cite-prefix", "protonmail_quote")
_QUOTE_IDS = ("divrplyfwdmsg", "appendonsend", "reply-content", "isreplycontent", "origbody")


class _TextExtractor(HTMLParser):
    """HTML → plain text: drops script/style/head and quoted-history containers
    (`blockquote`, Gmail/Outlook/QQ quote blocks), keeps line breaks at block elements."""

    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skip_tag = ""
        self._skip_depth = 0
        self._at_eof = False

    def close(self) -> None:
        self._at_eof = True
        super().close()

    # At the end of the input, html.parser without the gh-135462 fix (CVE-2025-6069; our
    # Python is 3.11.7) searched again from every `<` of an unterminated tag, comment or
    # declaration to the end of the input: quadratic (128 KB of `<a x` took 100 s). As
    # HTML5 and the fixed stdlib do, an unterminated construct runs to the end of the
    # input instead, and is not text.

    def parse_starttag(self, i: int) -> int:
        return self._to_eof(super().parse_starttag(i))

    def parse_endtag(self, i: int) -> int:
        return self._to_eof(super().parse_endtag(i))

    def parse_comment(self, i: int, report: bool = True) -> int:
        return self._to_eof(super().parse_comment(i, report))

    def parse_html_declaration(self, i: int) -> int:
        return self._to_eof(super().parse_html_declaration(i))

    def parse_pi(self, i: int) -> int:
        return self._to_eof(super().parse_pi(i))

    def _to_eof(self, end: int) -> int:
        """Where an html.parser construct ends: -1 ("wait for more input") is the end of
        the input once `close()` said no more comes."""
        return len(self.rawdata) if end < 0 and self._at_eof else end

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if self._skip_depth:
            if tag == self._skip_tag:
                self._skip_depth += 1
            return
        if tag in _SKIP_TAGS or tag == "blockquote" or _is_quote_container(attrs):
            if tag not in ("br", "hr", "img", "meta", "link", "input"):
                self._skip_tag, self._skip_depth = tag, 1
            return
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if not self._skip_depth and tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if self._skip_depth:
            if tag == self._skip_tag:
                self._skip_depth -= 1
            return
        if tag in _BLOCK_TAGS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skip_depth:
            self.parts.append(data)


def _is_quote_container(attrs: list[tuple[str, str | None]]) -> bool:
    for name, value in attrs:
        value = (value or "").lower()
        if name == "class" and any(c in value for c in _QUOTE_CLASSES):
            return True
        if name == "id" and any(value.startswith(i) for i in _QUOTE_IDS):
            return True
    return False


def html_to_text(html: str) -> str:
    parser = _TextExtractor()
    try:
        parser.feed(html)
        parser.close()
    except (AssertionError, ValueError):  # html.parser gives up on some broken markup
        pass
    text = "".join(parser.parts).replace("\xa0", " ").replace("\u3000", " ")
    lines = [re.sub(r"[ \t\r\f\v]+", " ", line).strip() for line in text.split("\n")]
    return re.sub(r"\n{3,}", "\n\n", "\n".join(lines)).strip()


# --- quoted history and signatures ---------------------------------------------

_C = r"\s*[:：]"
# Never two runs that can both match spaces with only optional text between them
# (`\s*[>*]*\s*`): on a long line of spaces the engine tries every split between them
# (200 000 spaces took 8 min). `\s*(?:[>*]+\s*)?` matches the same lines in linear time.
_SPLITTERS = [
    re.compile(r"^\s*-{2,}\s*(原始邮件|原始郵件|Original Message|Original)\s*-{2,}\s*$", re.I),
    re.compile(r"^\s*_{10,}\s*$"),  # Outlook's rule above its From:/Sent: block
    re.compile(r"^.{0,120}(写道|寫道)\s*[:：]\s*$"),  # 在 2024年3月1日 …，张三 <a@b> 写道：
    re.compile(r"^\s*On\b.{0,200}\bwrote:\s*$", re.I),
    re.compile(r"^\s*(Le|Am|El)\b.{0,200}(a écrit|schrieb|escribió)\s*:\s*$", re.I),
]
_HEADER_FROM = re.compile(rf"^\s*(?:[>*]+\s*)?(发件人|發件人|寄件者|From){_C}", re.I)
_HEADER_NEXT = re.compile(
    rf"^\s*(?:[>*]+\s*)?(发送时间|發送時間|时间|日期|寄件日期|收件人|抄送|主题|主旨|Sent|Date|To|Cc|Subject)\*?{_C}",
    re.I,
)
_SIGNATURE = re.compile(r"^-- ?$")
_MOBILE_FOOTER = re.compile(
    r"^\s*(发自我的\S{1,20}|發自我的\S{1,20}"
    r"|(?:[-—]+\s*)?(来自|發自|发自)\S{0,12}(邮箱|郵箱|邮件|Mail)\S{0,12}"
    r"|Sent from my .{1,40}|Get Outlook for (iOS|Android))\s*$",
    re.I,
)
SUBJECT_PREFIX = re.compile(
    r"^\s*((回复|回覆|答复|答覆|转发|轉寄|转寄|Re|Fw|Fwd|AW|WG|SV|VS|RIF|R)\s*(?:\[\d+\]\s*)?[:：]\s*)+",
    re.I,
)


def strip_subject_prefixes(subject: str) -> str:
    return SUBJECT_PREFIX.sub("", subject).strip()


def _is_header_block(lines: list[str], i: int) -> bool:
    """`发件人:` / `From:` followed within a few lines by another header of the quoted mail
    (Outlook, Outlook-CN, Foxmail, QQMail forms)."""
    if not _HEADER_FROM.match(lines[i]):
        return False
    following = [line for line in lines[i + 1 : i + 7] if line.strip()][:4]
    return any(_HEADER_NEXT.match(line) for line in following)


def _splitter_at(lines: list[str], i: int) -> bool:
    line = lines[i]
    if any(p.match(line) for p in _SPLITTERS) or _is_header_block(lines, i):
        return True
    # Gmail wraps a long "On … wrote:" over two lines
    if i + 1 < len(lines) and re.match(r"^\s*On\b", line, re.I):
        return bool(_SPLITTERS[3].match(f"{line} {lines[i + 1]}"))
    return False


def strip_quotes(text: str) -> str:
    """The new part of a reply: everything before the first reply splitter, without
    `>`-quoted lines and without a trailing signature or "sent from my phone" line. If that
    leaves nothing (a reply written below the quote), the unquoted lines are kept."""
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    cut = len(lines)
    for i in range(len(lines)):
        if _splitter_at(lines, i):
            cut = i
            break
    kept = _drop_signature([line for line in lines[:cut] if not line.lstrip().startswith(">")])
    result = _tidy(kept)
    if not result:
        result = _tidy(_drop_signature([ln for ln in lines if not ln.lstrip().startswith(">")]))
    return result


def _drop_signature(lines: list[str]) -> list[str]:
    """The lines before a `-- ` signature line, without trailing blank and "sent from my
    phone" lines; a signature or footer line with no text above it is kept. One pass by
    index (copying the list per dropped line was quadratic in the footer lines)."""
    first_text = next((i for i, line in enumerate(lines) if line.strip()), len(lines))
    end = next(
        (i for i in range(first_text + 1, len(lines)) if _SIGNATURE.match(lines[i])),
        len(lines),
    )
    while end > 0 and (
        not lines[end - 1].strip()
        or (end - 1 > first_text and _MOBILE_FOOTER.match(lines[end - 1]))
    ):
        end -= 1
    return lines[:end]


def _tidy(lines: list[str]) -> str:
    text = "\n".join(line.rstrip() for line in lines)
    return re.sub(r"\n{3,}", "\n\n", text).strip()
