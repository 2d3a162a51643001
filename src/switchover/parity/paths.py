"""JSON paths as plans write them: ``$.generated_at``, ``$.items[*].etag``, ``$..etag``, ``$.items``.

A concrete location inside a document is a tuple of keys (str) and indexes (int). Field names in
reports collapse indexes to ``[*]`` so that ``$.items[3].price`` and ``$.items[7].price`` count as
one field, as Diffy does.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import lru_cache

Location = tuple[str | int, ...]

# Tokens of a pattern: a key, "*" (any key or index), an int index, or ".." (any depth).
ANY = "\x00*"
DEEP = "\x00.."
Token = str | int

_TOKEN = re.compile(r"""\.\.(?P<deep>[A-Za-z_$][\w$-]*|\*)?|\.(?P<key>[A-Za-z_$][\w$-]*|\*)|\[(?P<idx>\*|\d+)\]|\[['"](?P<qkey>[^'"]*)['"]\]""")


class PathError(ValueError):
    pass


@dataclass(frozen=True)
class PathPattern:
    text: str
    tokens: tuple[Token, ...]

    def matches(self, loc: Location) -> bool:
        return _match(self.tokens, 0, loc, 0)


def compile_path(text: str) -> PathPattern:
    """Parse a JSON path pattern; raises PathError with the offending position."""
    if not text.startswith("$"):
        raise PathError(f"{text!r}: a JSON path starts with $ (e.g. $.items[*].etag)")
    tokens: list[Token] = []
    pos = 1
    while pos < len(text):
        m = _TOKEN.match(text, pos)
        if m is None:
            raise PathError(f"{text!r}: cannot read the path at position {pos} ({text[pos:]!r})")
        if m.group(0).startswith(".."):
            tokens.append(DEEP)
            deep = m.group("deep")
            if deep:
                tokens.append(ANY if deep == "*" else deep)
        elif m.group("key") is not None:
            key = m.group("key")
            tokens.append(ANY if key == "*" else key)
        elif m.group("idx") is not None:
            idx = m.group("idx")
            tokens.append(ANY if idx == "*" else int(idx))
        else:
            tokens.append(m.group("qkey"))
        pos = m.end()
    return PathPattern(text, tuple(tokens))


def _match(tokens: tuple[Token, ...], ti: int, loc: Location, li: int) -> bool:
    while ti < len(tokens):
        tok = tokens[ti]
        if tok == DEEP:
            # ".." matches zero or more steps.
            return any(_match(tokens, ti + 1, loc, j) for j in range(li, len(loc) + 1))
        if li >= len(loc):
            return False
        part = loc[li]
        if tok != ANY and tok != part:
            return False
        # "[*]"/".*" match keys and indexes; a named key never matches an index.
        if tok != ANY and isinstance(tok, str) and not isinstance(part, str):
            return False
        ti += 1
        li += 1
    return li == len(loc)


def _below(tokens: tuple[Token, ...], loc: Location) -> bool:
    """Whether the pattern may match some location strictly below ``loc`` (``..`` may: always)."""
    for ti, tok in enumerate(tokens):
        if tok == DEEP:
            return True
        if ti >= len(loc):
            return True  # loc is used up and the pattern goes on
        part = loc[ti]
        if tok != ANY and (tok != part or (isinstance(tok, str) and not isinstance(part, str))):
            return False
    return False


@lru_cache(maxsize=8192)  # the same few fields differ again and again
def field_name(loc: Location) -> str:
    """``("items", 3, "price")`` -> ``$.items[*].price`` (indexes collapsed for counting)."""
    out = ["$"]
    for part in loc:
        if isinstance(part, int):
            out.append("[*]")
        elif _PLAIN.fullmatch(part):
            out.append("." + part)
        else:
            out.append("[" + repr(part).replace("'", '"') + "]")
    return "".join(out)


def concrete_name(loc: Location) -> str:
    """``("items", 3, "price")`` -> ``$.items[3].price`` (for samples)."""
    out = ["$"]
    for part in loc:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _PLAIN.fullmatch(part):
            out.append("." + part)
        else:
            out.append("[" + repr(part).replace("'", '"') + "]")
    return "".join(out)


_PLAIN = re.compile(r"[A-Za-z_$][\w$-]*")


class PathSet:
    """Several patterns, matched against concrete locations."""

    def __init__(self, patterns: list[PathPattern]) -> None:
        self.patterns = patterns
        self._seen: dict[Location, bool] = {}  # the diff asks about the same places for every answer
        self._below: dict[Location, bool] = {}

    def __bool__(self) -> bool:
        return bool(self.patterns)

    def matches(self, loc: Location) -> bool:
        hit = self._seen.get(loc)
        if hit is None:
            hit = any(p.matches(loc) for p in self.patterns)
            if len(self._seen) < _SEEN_MAX:
                self._seen[loc] = hit
        return hit

    def reaches_below(self, loc: Location) -> bool:
        """Whether a pattern may match a location strictly below ``loc``."""
        hit = self._below.get(loc)
        if hit is None:
            hit = any(_below(p.tokens, loc) for p in self.patterns)
            if len(self._below) < _SEEN_MAX:
                self._below[loc] = hit
        return hit


_SEEN_MAX = 4096
