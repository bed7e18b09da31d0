"""Serving a model to people: the shared engine, the Gradio plan-editing demo and the HTTP API."""
