"""Zones and lines: who is where, who crossed what, counted once per confirmed track."""
