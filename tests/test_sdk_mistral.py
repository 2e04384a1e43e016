"""The official `mistralai` Python SDK, unchanged, pointed at Alizé."""

import pytest
from mistralai.client import Mistral
from mistralai.client import errors as mistral_errors


@pytest.fixture
def client(server):
    return Mistral(api_key=server.key, server_url=server.url)


def test_chat_complete(client):
    res = client.chat.complete(model="mistral-small-latest", max_tokens=12,
                               messages=[{"role": "user", "content": "Bonjour Mistral !"}])
    assert res.object == "chat.completion"
    assert res.choices[0].message.content
    assert res.choices[0].finish_reason in ("stop", "length")
    assert res.usage.completion_tokens <= 12 and res.usage.prompt_tokens > 0


def test_chat_stream(client):
    text, finish, usage = "", None, None
    with client.chat.stream(model="mistral-large-latest", max_tokens=12,
                            messages=[{"role": "user", "content": "Tell me a joke."}]) as events:
        for event in events:
            choice = event.data.choices[0]
            text += choice.delta.content or ""
            finish = choice.finish_reason or finish
            usage = event.data.usage or usage
    assert text and finish in ("stop", "length")
    assert usage.completion_tokens <= 12


def test_chat_with_history_and_sdk_defaults(client):
    # The SDK sends "prefix": false on assistant messages and nulls for unset fields.
    res = client.chat.complete(model="open-mistral-7b", max_tokens=6, temperature=0.2, random_seed=3,
                               messages=[{"role": "system", "content": "Be brief."},
                                         {"role": "user", "content": "Hi"},
                                         {"role": "assistant", "content": "Hello!"},
                                         {"role": "user", "content": "How are you?"}])
    assert res.choices[0].message.content


def test_fim_complete_and_stream(client):
    res = client.fim.complete(model="codestral-latest", prompt="def add(a, b):\n    return",
                              suffix="\n\nprint(add(1, 2))", max_tokens=10, temperature=0)
    assert res.choices[0].message.content is not None
    assert res.usage.completion_tokens <= 10
    pieces = []
    with client.fim.stream(model="codestral-latest", prompt="for i in range(10):", max_tokens=8) as events:
        for event in events:
            pieces.append(event.data.choices[0].delta.content or "")
    assert "".join(pieces)


def test_embeddings_create(client):
    res = client.embeddings.create(model="mistral-embed", inputs=["Bonjour", "Hello world"])
    assert res.id and len(res.data) == 2
    assert len(res.data[0].embedding) == 384
    assert res.usage.prompt_tokens > 0


def test_models_list_and_retrieve(client):
    models = client.models.list()
    ids = {m.id for m in models.data}
    assert {"mistral-small-latest", "mistral-embed", "codestral-latest", "mistral-tiny"} <= ids
    card = client.models.retrieve(model_id="mistral-small-latest")
    assert card.capabilities.completion_chat
    assert "smollm2" in (card.description or "").lower()


def test_bad_key_is_an_sdk_error_401(server):
    bad = Mistral(api_key="nope", server_url=server.url)
    with pytest.raises(mistral_errors.SDKError) as info:
        bad.chat.complete(model="mistral-small-latest", messages=[{"role": "user", "content": "x"}])
    assert info.value.status_code == 401
