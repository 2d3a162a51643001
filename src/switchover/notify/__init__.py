"""Notifications on step changes, rollbacks and the end of a run: Slack-compatible and generic webhooks."""
