"""Remote engines (vLLM, SGLang, llama-server, Ollama, TGI, another Alizé) behind the
platform: which replica answers (router.py), which replicas are fit to (health.py), and the
HTTP client that talks to one and moves to the next when a request fails before its first
byte (client.py)."""
