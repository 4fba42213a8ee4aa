"""Textual terminal UI for the technologist (see issue: live scan status)."""
