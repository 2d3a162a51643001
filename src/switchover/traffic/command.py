"""The command router: drive any other router through two commands (argv only, never a shell).

``set_weight`` gets ``{weight}`` and ``{mirror}`` substituted (0-100); ``get_weight`` prints the
candidate weight, optionally followed by the mirror percentage ("10" or "10 20").
"""

from __future__ import annotations

import subprocess
from typing import TYPE_CHECKING

from switchover import secrets
from switchover.errors import UserError
from switchover.traffic.base import clamp_percent

if TYPE_CHECKING:
    from switchover.plan import Plan


def substitute(argv: list[str], weight: int, mirror: int) -> list[str]:
    """Each argument with {weight}/{mirror} replaced; the argument count never changes (no shell)."""
    return [a.replace("{weight}", str(weight)).replace("{mirror}", str(mirror)) for a in argv]


def parse_weight_output(text: str, argv: list[str]) -> tuple[int, int]:
    parts = text.split()
    try:
        numbers = [int(p) for p in parts]
    except ValueError:
        numbers = []
    if len(numbers) not in (1, 2) or not all(0 <= n <= 100 for n in numbers):
        raise UserError(f"traffic.command.get_weight: {' '.join(argv)} printed {text.strip()[:80]!r}; "
                        "expected the candidate weight 0-100, optionally followed by the mirror percentage")
    return numbers[0], numbers[1] if len(numbers) == 2 else 0


class CommandRouter:
    name = "command"

    def __init__(self, plan: Plan) -> None:
        if plan.traffic.command is None:
            raise UserError("traffic.command: the command router needs set_weight and get_weight (argv lists)")
        self.settings = plan.traffic.command
        self.cwd = plan.base_dir()

    def _run(self, argv: list[str], field: str) -> str:
        try:
            done = subprocess.run(argv, capture_output=True, text=True, timeout=self.settings.timeout,
                                  cwd=self.cwd, check=False)
        except FileNotFoundError:
            raise UserError(f"traffic.command.{field}: command not found: {argv[0]}") from None
        except PermissionError:
            raise UserError(f"traffic.command.{field}: not executable: {argv[0]}") from None
        except subprocess.TimeoutExpired:
            raise UserError(f"traffic.command.{field}: {argv[0]} did not finish within "
                            f"{self.settings.timeout:g}s") from None
        if done.returncode != 0:
            detail = secrets.redact((done.stderr or done.stdout).strip())[-300:]
            raise UserError(f"traffic.command.{field}: {argv[0]} exited {done.returncode}: {detail}")
        return done.stdout

    def sync(self, plan: Plan) -> None:
        """Nothing to set up: the commands own their router."""

    def set_routes(self, weight: int, mirror_percent: int) -> None:
        clamp_percent(weight, "weight")
        clamp_percent(mirror_percent, "mirror_percent")
        self._run(substitute(self.settings.set_weight, weight, mirror_percent), "set_weight")

    def get_routes(self) -> tuple[int, int]:
        return parse_weight_output(self._run(self.settings.get_weight, "get_weight"), self.settings.get_weight)

    def is_online(self) -> bool:
        try:
            if self.settings.online:
                self._run(self.settings.online, "online")
            else:
                self.get_routes()
        except UserError:
            return False
        return True
