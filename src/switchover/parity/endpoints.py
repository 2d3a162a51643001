"""Endpoints: method + templated path, so that ``GET /orders/123`` and ``GET /orders/124`` count together.

Numeric, UUID and long hex segments collapse to ``{id}`` automatically; explicit templates from the
plan (``/orders/{id}/items/{line}``) win over the automatic rule. The query string is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

_NUMERIC = re.compile(r"-?\d+")
_UUID = re.compile(r"[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}")
# Hex ids (object ids, hashes): 8+ hex characters with at least one digit, so words like "deadbeef"
# written as path names in a real API are rare enough to accept.
_HEX = re.compile(r"(?=[0-9a-fA-F]*\d)[0-9a-fA-F]{8,}")
_PARAM = re.compile(r"\{[^{}/]+\}")


@dataclass(frozen=True)
class Template:
    text: str
    segments: tuple[str | None, ...]  # None matches any one segment


def compile_template(text: str) -> Template:
    if not text.startswith("/"):
        raise ValueError(f"{text!r}: an endpoint template starts with / (e.g. /orders/{{id}})")
    segments = tuple(None if _PARAM.fullmatch(s) else s for s in text.strip("/").split("/"))
    return Template(text, segments)


def _segments(path: str) -> list[str]:
    return path.split("?", 1)[0].split("#", 1)[0].strip("/").split("/")


def auto_template(path: str) -> str:
    out = []
    for seg in _segments(path):
        if _NUMERIC.fullmatch(seg) or _UUID.fullmatch(seg) or _HEX.fullmatch(seg):
            out.append("{id}")
        else:
            out.append(seg)
    return "/" + "/".join(out)


def endpoint(method: str, path: str, templates: tuple[Template, ...] = ()) -> str:
    """``("GET", "/orders/123?x=1")`` -> ``"GET /orders/{id}"``."""
    segs = _segments(path)
    for tpl in templates:
        if len(tpl.segments) == len(segs) and all(t is None or t == s for t, s in zip(tpl.segments, segs, strict=True)):
            return f"{method.upper()} {tpl.text}"
    return f"{method.upper()} {auto_template(path)}"
