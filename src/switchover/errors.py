"""Errors meant for people. The CLI maps them to exit codes (DESIGN.md, "Contracts")."""

from __future__ import annotations


class UserError(Exception):
    """Bad input or an unreachable system: the command could not do its work (exit 2).

    The message says what was wrong and where (file:line, field, URL) and, when useful, what to do.
    """

    exit_code = 2


class CheckFailed(Exception):
    """The thing checked is not good (exit 1): a gate failed, differences found, a rollback."""

    exit_code = 1
