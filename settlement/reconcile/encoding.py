"""Text encodings of the files reconciliation reads (journals, statements): UTF-8 by default, GBK and GB 18030
(GBK's superset, what Chinese Windows and many HIS and bank systems write) on request.

A file that does not decode is refused naming the row whose bytes are wrong (found again from the file's
bytes: a text reader decodes ahead in blocks, so its position says nothing about the row) and the option that
reads it otherwise.
"""

from __future__ import annotations

import codecs
import csv
import io
from pathlib import Path

from settlement.errors import InvalidRequest

ENCODINGS = {"utf-8": "utf-8", "gbk": "gbk", "gb18030": "gb18030"}
"""Accepted encodings by Python codec name (aliases such as "utf8", "cp936", "GB2312" resolve to these)."""
DEFAULT = "utf-8"


def check_encoding(name: str) -> str:
    """The codec name of an accepted encoding; InvalidRequest naming the accepted ones otherwise."""
    try:
        codec = codecs.lookup(name).name
    except (LookupError, TypeError):
        codec = ""
    codec = {"gb2312": "gbk", "cp936": "gbk"}.get(codec, codec)
    if codec not in ENCODINGS:
        raise InvalidRequest(f"encoding {name!r} is not accepted: use one of {', '.join(ENCODINGS)}",
                             field="encoding")
    return ENCODINGS[codec]


def undecodable(path: str | Path, encoding: str, *, header: bool) -> tuple[int, str]:
    """(row, what is wrong) of the first row of `path` that does not decode: a CSV record number (1 = the first
    data row after the header, 0 = the header) when `header`, else a line number (1 = the first line)."""
    data = Path(path).read_bytes()
    lines = data.splitlines(keepends=True)  # a multi-byte GBK or UTF-8 character never holds a newline byte
    start = 0
    for n, raw in enumerate(lines):
        try:
            raw.decode(encoding)
        except UnicodeDecodeError as e:
            what = f"not {encoding.upper()} text (byte 0x{raw[e.start]:02x} at byte {e.start + 1} of the line)"
            if not header:
                return n + 1, what
            # the CSV record the bad line starts (or continues: a quoted field may run over lines) comes after
            # the records complete before it, the header among them
            records = 0
            try:
                for _ in csv.reader(io.StringIO(data[:start].decode(encoding), newline=""), strict=True):
                    records += 1
            except csv.Error:
                pass
            return records, what
        start += len(raw)
    return 0, f"not {encoding.upper()} text"


def hint(encoding: str) -> str:
    """What to try when a file does not decode in `encoding`."""
    if encoding == "utf-8":
        return "if the file is GBK (Chinese Windows, many HIS and bank exports), read it with encoding gbk " \
               "(sscard: --encoding gbk)"
    return f"the file is not {encoding.upper()}: check the encoding it was written in"
