"""Serving many users: the OpenAI-compatible HTTP API beside the Gradio app, API keys, rate limits, time limits."""
