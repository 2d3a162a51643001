"""Routers: what moves users between stable and candidate (``base.Router``) and their registry."""
