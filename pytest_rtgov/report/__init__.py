"""Rendering: terminal summaries (HTML and exports come later)."""
