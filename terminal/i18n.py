"""Chinese and English for the people at the counter: the language a request asks for, and error messages.

Messages are data (`messages.toml`, keyed by error code); labels of amounts and kinds are data too
(`labels.toml`). The language comes from `Accept-Language` (RFC 9110 quality values): Chinese when the
client prefers it, English otherwise (the API's default, for HIS tools that send no header).
"""

from __future__ import annotations

import string
import tomllib
from functools import cache
from importlib import resources
from typing import Any, Literal

Lang = Literal["zh", "en"]
LANGS: tuple[Lang, ...] = ("zh", "en")
DEFAULT: Lang = "en"


def language(accept_language: str | None) -> Lang:
    """The language to answer in, from an Accept-Language header ("zh-CN,zh;q=0.9,en;q=0.8" -> "zh")."""
    best: tuple[float, int, Lang] | None = None
    for i, part in enumerate((accept_language or "").split(",")):
        tag, _, params = part.strip().partition(";")
        primary = tag.strip().lower().split("-")[0]
        if primary not in LANGS:
            continue
        q = 1.0
        for p in params.split(";"):
            name, _, value = p.strip().partition("=")
            if name.strip() == "q":
                try:
                    q = float(value)
                except ValueError:
                    q = 0.0
        if q > 0 and (best is None or (q, -i) > (best[0], best[1])):
            best = (q, -i, primary)  # type: ignore[assignment]
    return best[2] if best else DEFAULT


@cache
def _table(name: str) -> dict[str, dict[str, str]]:
    return tomllib.loads(resources.files("terminal").joinpath(name).read_text(encoding="utf-8"))


def messages() -> dict[str, dict[str, str]]:
    return _table("messages.toml")


def labels() -> dict[str, dict[str, str]]:
    return _table("labels.toml")


class _Details(dict):
    def __missing__(self, key: str) -> str:
        raise KeyError(key)


def _fill(template: str, details: dict[str, Any]) -> str | None:
    try:
        return string.Formatter().vformat(template, (), _Details(details))
    except (KeyError, IndexError, ValueError):
        return None


def message(code: str, lang: Lang, details: dict[str, Any], fallback: str) -> str:
    """The clerk's sentence for `code`; `fallback` (the source's own message) when the table has none or
    the details lack what the sentence names."""
    table = messages()
    keys = ([f"{code}.reversed"] if "reversal_key" in details else []) + [code]
    for key in keys:
        if key in table:
            text = _fill(table[key][lang], details)
            if text is not None:
                return text
    return fallback


def label(name: str, lang: Lang, default: str | None = None) -> str:
    """The label of an amount field, a kind, a state or a reason (`labels.toml`); else `default`, else `name`."""
    entry = labels().get(name)
    return entry[lang] if entry else name if default is None else default
