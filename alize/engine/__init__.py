"""Inference: knows nothing of HTTP, SQL or the Mistral wire format.

Only runner.py imports llama_cpp; the rest is plain Python and testable without a model."""
