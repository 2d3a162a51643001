"""The kinds of difference the diff reports (``Difference.kind``)."""

from __future__ import annotations

from enum import StrEnum


class DiffKind(StrEnum):
    CHANGED = "changed"  # same type, other value
    MISSING = "missing"  # in stable's answer, not in the candidate's
    EXTRA = "extra"  # in the candidate's answer only
    TYPE = "type"  # JSON types differ (string vs number, JSON vs not JSON)
    ORDER = "order"  # same elements, other order
    STATUS = "status"
    HEADER = "header"
    ERROR = "error"  # the candidate gave no answer (connect, reset, timeout)
