"""Step kinds: the engine's side of the plan's ``steps:`` (see ``base.py`` for the contract)."""
