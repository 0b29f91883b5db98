"""Turning an HTML body into text: pick the encoding the way browsers do, then decode safely.

Order: byte-order mark, HTTP charset, ``<meta charset>`` / http-equiv in the first bytes,
then detection (strict UTF-8 first, charset_normalizer otherwise), then windows-1252, the
WHATWG default for unlabelled documents. Decoding never fails (errors are replaced) and
NUL characters are removed because PostgreSQL text and JSONB reject them.
"""

import codecs
import re

import charset_normalizer

FALLBACK_ENCODING = "cp1252"
META_PRESCAN_BYTES = 4096
DETECTION_SAMPLE_BYTES = 64 * 1024

_META_CHARSET = re.compile(rb"""<meta[^>]*?charset\s*=\s*["']?\s*([a-z0-9_:.+-]+)""", re.I)
_BOMS = (
    (codecs.BOM_UTF8, "utf-8"),
    (codecs.BOM_UTF16_LE, "utf-16-le"),
    (codecs.BOM_UTF16_BE, "utf-16-be"),
)
# WHATWG Encoding Standard: what browsers actually decode when a page names these codecs
# (e.g. ISO-8859-1 and ASCII mean windows-1252, so 0x80-0x9F are printable).
_WEB_ALIASES = {
    "iso8859-1": "cp1252",
    "ascii": "cp1252",
    "utf-16": "utf-16-le",
    "gb2312": "gbk",
    "big5": "big5hkscs",
    "shift_jis": "cp932",
    "euc_kr": "cp949",
}
# Only encodings the web uses: Python also has codecs such as "undefined", "idna" or
# "unicode_escape" that fail or rewrite the text if a page names them.
_WEB_ENCODINGS = frozenset(
    codecs.lookup(label).name
    for label in ["utf-8", "utf-16-le", "utf-16-be", "ibm866", "koi8-r", "koi8-u", "mac-roman", "mac-cyrillic", "cp874", "cp1250", "cp1251", "cp1252", "cp1253", "cp1254", "cp1255", "cp1256", "cp1257", "cp1258", "iso8859-2", "iso8859-3", "iso8859-4", "iso8859-5", "iso8859-6", "iso8859-7", "iso8859-8", "iso8859-10", "iso8859-13", "iso8859-14", "iso8859-15", "iso8859-16", "gbk", "gb18030", "big5hkscs", "euc-jp", "iso2022-jp", "cp932", "cp949"]
)


def decode_html(body: bytes | bytearray, http_charset: str | None) -> tuple[str, str]:
    """Decode an HTML body; return the text (without NULs) and the codec name used."""
    encoding, offset = _bom_encoding(body)
    encoding = encoding or _known(http_charset) or _meta_encoding(body)
    if encoding is None:
        return _detect_and_decode(body)
    return strip_nul(body[offset:].decode(encoding, errors="replace")), encoding


def strip_nul(text: str) -> str:
    """Remove NUL characters, which PostgreSQL rejects in text and JSONB."""
    return text.replace("\x00", "")


def _bom_encoding(body: bytes | bytearray) -> tuple[str | None, int]:
    for bom, encoding in _BOMS:
        if body.startswith(bom):
            return encoding, len(bom)
    return None, 0


def _known(label: str | None) -> str | None:
    """Python codec name for a web charset label, or None if unknown or not a web encoding."""
    if not label:
        return None
    try:
        name = codecs.lookup(label.strip().strip("\"'")).name
    except (LookupError, ValueError):  # ValueError: labels with NUL or unencodable characters
        return None
    name = _WEB_ALIASES.get(name, name)
    return name if name in _WEB_ENCODINGS else None


def _meta_encoding(body: bytes | bytearray) -> str | None:
    match = _META_CHARSET.search(body[:META_PRESCAN_BYTES])
    if match is None:
        return None
    encoding = _known(match.group(1).decode("ascii"))
    # A meta tag readable as ASCII cannot be in UTF-16; browsers read it as UTF-8.
    return "utf-8" if encoding and encoding.startswith("utf-16") else encoding


def _detect_and_decode(body: bytes | bytearray) -> tuple[str, str]:
    """Strict UTF-8 if the body is that (kept: decoding a large page twice would hold two copies), else
    the encoding charset_normalizer finds in a sample, else windows-1252."""
    try:
        return strip_nul(body.decode("utf-8")), "utf-8"
    except UnicodeDecodeError:
        best = charset_normalizer.from_bytes(bytes(body[:DETECTION_SAMPLE_BYTES])).best()
        encoding = _known(best.encoding if best else None) or FALLBACK_ENCODING
    return strip_nul(body.decode(encoding, errors="replace")), encoding
