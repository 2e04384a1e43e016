"""The rendered content chunks of a stream: byte for byte what the chunk model serializes."""

import pytest

from alize.protocol.chat import ChatCompletionChunk, ChunkChoice, DeltaMessage
from alize.services.chat import ContentChunks

TEXTS = ["", " Hello", 'quote " and \\ backslash', "line\nbreak\ttab\r", "\x00\x01\x1f control", "é à ç",
         "🎉 emoji", "</script><b>", "\u2028\u2029 separators", "\ue000alize-content\ue000", "\x7f del"]


@pytest.mark.parametrize("index", [0, 3])
def test_content_chunks_are_the_models_json(index):
    def chunk(choices: list[ChunkChoice]) -> ChatCompletionChunk:
        return ChatCompletionChunk(id="c1", created=1796220288, model="mistral-small-latest", choices=choices)

    chunks = ContentChunks(chunk, index)
    for text in TEXTS:
        expected = chunk([ChunkChoice(index=index, delta=DeltaMessage(content=text))]).model_dump_json().encode()
        assert chunks.render(text) == expected, text
