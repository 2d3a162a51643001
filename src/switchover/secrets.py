"""Secrets: plans name them as ``env:NAME``; values are read from the environment and redacted
wherever they could be printed, logged, journaled or reported.

Every resolved secret value is remembered in a process-wide set so that :func:`redact` can scrub it
from any text (an error message that quotes a URL, a journal payload, a report).
"""

from __future__ import annotations

import os
import re
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from switchover.errors import UserError

MASK = "***"
_known: set[str] = set()


def is_ref(value: str) -> bool:
    return value.startswith("env:")


def resolve(value: str, *, where: str = "") -> str:
    """``env:NAME`` -> the value of NAME (remembered for redaction); anything else unchanged."""
    if not is_ref(value):
        return value
    name = value[4:]
    if not name:
        raise UserError(f"{where}: 'env:' needs a variable name, e.g. env:SLACK_WEBHOOK_URL".lstrip(": "))
    found = os.environ.get(name)
    if found is None:
        raise UserError(f"{where + ': ' if where else ''}environment variable {name} is not set (referenced as env:{name})")
    remember(found)
    return found


def remember(secret: str) -> None:
    """Register a secret value so that redact() masks it everywhere."""
    if secret and len(secret) >= 4:
        _known.add(secret)


_URL_PASSWORD = re.compile(r"(?P<scheme>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^:/@\s]*):(?P<pw>[^@/\s]+)@")
_BEARER = re.compile(r"(?i)(authorization:\s*bearer\s+|bearer\s+)[A-Za-z0-9._~+/=-]+")


def redact(text: str) -> str:
    """Mask known secret values, passwords in URLs, and bearer tokens in ``text``."""
    for secret in sorted(_known, key=len, reverse=True):
        text = text.replace(secret, MASK)
    text = _URL_PASSWORD.sub(lambda m: f"{m['scheme']}{m['user']}:{MASK}@", text)
    return _BEARER.sub(lambda m: m.group(1) + MASK, text)


def redact_url(url: str) -> str:
    """The URL with any password masked, and the path of webhook-like URLs (tokens live there) hidden."""
    parts = urlsplit(url)
    netloc = parts.netloc
    if parts.password:
        netloc = netloc.replace(f":{parts.password}@", f":{MASK}@")
    return redact(urlunsplit((parts.scheme, netloc, parts.path, parts.query, parts.fragment)))


def redact_obj(value: Any) -> Any:
    """Recursively redact strings inside dicts/lists (journal payloads, JSON reports)."""
    if isinstance(value, str):
        return redact(value)
    if isinstance(value, dict):
        return {k: redact_obj(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [redact_obj(v) for v in value]
    return value
