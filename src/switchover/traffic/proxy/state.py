"""The split on disk (``--state-file``), so that a restarted proxy never moves users.

Written atomically: a temporary file in the same folder, fsync, then rename over the old one.
"""

from __future__ import annotations

import json
import os
import tempfile
import time
from pathlib import Path

from switchover.errors import UserError
from switchover.traffic.proxy.routing import Split, parse_split_update


def load_split(path: Path) -> Split | None:
    """The split saved in ``path``, None when there is no file yet; UserError when it is unreadable."""
    try:
        text = path.read_text()
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UserError(f"{path}: cannot read the proxy state file: {exc.strerror}") from None
    try:
        data = json.loads(text)
        if not isinstance(data, dict):
            raise ValueError("expected a JSON object")
        fields = {k: data[k] for k in ("candidate_weight", "mirror_percent") if k in data}
        return parse_split_update(Split(), fields)
    except ValueError as exc:
        raise UserError(f"{path}: not a valid proxy state file ({exc}); fix or remove it "
                        "(removing it restarts the split from --weight/--mirror)") from None


def save_split(path: Path, split: Split, app: str, now: float | None = None) -> None:
    """Write the split atomically; OSError propagates (the caller keeps the old split)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    payload = {**split.to_json(), "app": app, "updated_at": time.time() if now is None else now}
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as out:
            json.dump(payload, out)
            out.flush()
            os.fsync(out.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
