"""Use cases: framework-free; they raise AlizeError and know nothing of HTTP."""
