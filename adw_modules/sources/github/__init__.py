"""GitHub issues as a task source: safe triggers, lifecycle labels, one live progress comment."""
