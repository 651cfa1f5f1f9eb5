"""Comparing models: side-by-side streams, blind arena battles, leaderboards and evaluation runs. No gradio here."""
