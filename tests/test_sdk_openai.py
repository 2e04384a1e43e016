"""The `openai` Python SDK, pointed at Alizé's /v1."""

import numpy as np
import openai
import pytest


@pytest.fixture
def client(server):
    return openai.OpenAI(api_key=server.key, base_url=server.v1, max_retries=0)


def test_chat(client):
    res = client.chat.completions.create(model="mistral-small-latest", max_completion_tokens=8,
                                         messages=[{"role": "developer", "content": "Be brief."},
                                                   {"role": "user", "content": "Say hi"}], seed=1)
    assert res.choices[0].message.content
    assert res.usage.completion_tokens <= 8


def test_chat_stream_with_usage(client):
    stream = client.chat.completions.create(model="mistral-small-latest", max_tokens=8, stream=True,
                                            stream_options={"include_usage": True},
                                            messages=[{"role": "user", "content": "Say hi"}])
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert chunks[-1].choices == [] and chunks[-1].usage.completion_tokens <= 8
    assert sum(1 for c in chunks if c.usage is not None) == 1


def test_completions(client):
    res = client.completions.create(model="mistral-small-latest", prompt="Once upon a time", max_tokens=8)
    assert res.object == "text_completion" and res.choices[0].text
    assert res.usage.completion_tokens <= 8
    stream = client.completions.create(model="mistral-small-latest", prompt="The sky is", max_tokens=5,
                                       stream=True)
    assert "".join(c.choices[0].text for c in stream if c.choices)


def test_embeddings_base64_default(client):
    # The openai SDK asks for base64 by default and decodes it itself.
    res = client.embeddings.create(model="mistral-embed", input=["Bonjour le monde"])
    vec = np.array(res.data[0].embedding)
    assert vec.shape == (384,) and abs(np.linalg.norm(vec) - 1) < 1e-4
    floats = client.embeddings.create(model="mistral-embed", input="Bonjour le monde",
                                      encoding_format="float")
    assert np.allclose(vec, floats.data[0].embedding, atol=1e-6)


def test_models(client):
    ids = [m.id for m in client.models.list()]
    assert "mistral-small-latest" in ids


def test_errors_are_parsed(client):
    with pytest.raises(openai.NotFoundError) as info:
        client.chat.completions.create(model="no-such-model", messages=[{"role": "user", "content": "x"}])
    assert "no-such-model" in str(info.value)
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key="bad", base_url=client.base_url, max_retries=0).models.list()
