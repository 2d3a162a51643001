"""Recorded requests for ``parity replay``: JSON lines ``{method, path, headers?, body?}`` or HAR."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from switchover.errors import UserError
from switchover.parity.compare import Request


def load_requests(path: Path) -> list[Request]:
    """Every request in the file, in order. Bad input names the file and line (or HAR entry)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UserError(f"{path}: no such file of recorded requests") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UserError(f"{path}: cannot read: {exc}") from None
    if path.suffix.lower() == ".har" or text.lstrip().startswith('{"log"') or _is_har(text):
        return _from_har(path, text)
    out = []
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip() or line.lstrip().startswith("#"):
            continue
        try:
            item = json.loads(line)
        except ValueError as exc:
            raise UserError(f"{path}:{number}: not JSON: {exc}") from None
        out.append(_from_json_line(path, number, item))
    return out


def _is_har(text: str) -> bool:
    try:
        doc = json.loads(text)
    except ValueError:
        return False
    return isinstance(doc, dict) and "log" in doc


def _headers(where: str, raw: Any) -> tuple[tuple[str, str], ...]:
    if raw is None:
        return ()
    if isinstance(raw, dict) and all(isinstance(v, str) for v in raw.values()):
        return tuple((str(k).lower(), v) for k, v in raw.items())
    raise UserError(f"{where}: headers: expected a mapping of header names to strings")


def _from_json_line(path: Path, number: int, item: Any) -> Request:
    where = f"{path}:{number}"
    if not isinstance(item, dict):
        raise UserError(f"{where}: expected an object {{method, path, headers?, body?}}")
    unknown = set(item) - {"method", "path", "headers", "body"}
    if unknown:
        raise UserError(f"{where}: unknown key {sorted(unknown)[0]!r} (expected method, path, headers, body)")
    method, target = item.get("method"), item.get("path")
    if not isinstance(method, str) or not method.isalpha():
        raise UserError(f"{where}: method: expected an HTTP method such as GET")
    if not isinstance(target, str) or not target.startswith("/"):
        raise UserError(f"{where}: path: expected a path starting with /, got {target!r}")
    body = item.get("body")
    if body is not None and not isinstance(body, str):
        body = json.dumps(body)  # a JSON body written as an object
    return Request(method.upper(), target, _headers(where, item.get("headers")), (body or "").encode())


def _from_har(path: Path, text: str) -> list[Request]:
    try:
        doc = json.loads(text)
        entries = doc["log"]["entries"]
    except (ValueError, KeyError, TypeError):
        raise UserError(f"{path}: not a HAR file (expected log.entries)") from None
    out = []
    for i, entry in enumerate(entries):
        where = f"{path}: log.entries[{i}]"
        try:
            req = entry["request"]
            method, url = str(req["method"]).upper(), str(req["url"])
            headers = tuple((str(h["name"]).lower(), str(h["value"])) for h in req.get("headers", [])
                            if not str(h["name"]).startswith(":"))  # HTTP/2 pseudo-headers
            body = str((req.get("postData") or {}).get("text") or "")
        except (KeyError, TypeError):
            raise UserError(f"{where}: expected request.method, request.url and request.headers") from None
        parts = urlsplit(url)
        target = (parts.path or "/") + (f"?{parts.query}" if parts.query else "")
        out.append(Request(method, target, headers, body.encode()))
    return out
