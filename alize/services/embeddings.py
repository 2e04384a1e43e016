"""POST /v1/embeddings: strings in, unit vectors out (float lists or base64 float32)."""

import asyncio
import base64
from typing import Any

import numpy as np

from alize.engine.embedder import unit_rows
from alize.errors import ContextOverflow, InvalidRequest, Unsupported, UpstreamError
from alize.protocol.common import UsageInfo
from alize.protocol.embeddings import EmbeddingData, EmbeddingRequest, EmbeddingResponse
from alize.services.metering import Call
from alize.services.models import ModelHub
from alize.services.prompts import one_or_many
from alize.upstream.router import affinity_key

MAX_INPUTS = 512


class EmbeddingService:
    def __init__(self, hub: ModelHub):
        self.hub = hub

    async def create(self, request: EmbeddingRequest, call: Call) -> EmbeddingResponse:
        texts = _inputs(request)
        if self.hub.registry.get(request.model).is_upstream:
            return await self._upstream(request, texts, call)
        entry, embedder = self.hub.embedder(request.model)
        dimension = request.output_dimension or request.dimensions
        if dimension is not None and dimension > embedder.dimension:
            raise InvalidRequest(f"output_dimension must be at most {embedder.dimension} for {entry.id}",
                                 param="output_dimension")
        tokens = await asyncio.to_thread(lambda: [embedder.tokenize(t) for t in texts])
        for i, one in enumerate(tokens):
            if len(one) > embedder.max_tokens:
                raise ContextOverflow(f"Input {i} has {len(one)} tokens, more than the {embedder.max_tokens} "
                                      f"that {entry.id} accepts", param="input")
        total = sum(map(len, tokens))
        await call.admit(entry, total, 0)
        vectors = await asyncio.wrap_future(embedder.submit(tokens))  # batched with other requests
        if dimension is not None:
            vectors = truncate(vectors, dimension)
        data = [EmbeddingData(embedding=_encode(v, request.encoding_format), index=i)
                for i, v in enumerate(vectors)]
        await call.succeed()
        return EmbeddingResponse(id=call.id, model=entry.id, data=data,
                                 usage=UsageInfo(prompt_tokens=total, completion_tokens=0, total_tokens=total))


    async def _upstream(self, request: EmbeddingRequest, texts: list[str], call: Call) -> EmbeddingResponse:
        """Embeddings by a remote engine (its /embeddings), billed from its usage figures."""
        entry = self.hub.registry.get(request.model)
        count = self.hub.counter(entry)
        await call.admit(entry, sum(count.text(t) for t in texts), 0)  # settled to the upstream's count
        dimension = request.output_dimension or request.dimensions

        def body(replica: str) -> dict[str, Any]:
            backend = entry.replica(replica)
            out: dict[str, Any] = {"model": backend.model, "input": texts, "encoding_format": request.encoding_format}
            name = "output_dimension" if backend.wire == "mistral" else "dimensions"
            return out | ({name: dimension} if dimension is not None else {})

        assert call.key is not None  # the same texts from the same workspace meet the same replica's cache
        key = affinity_key(call.key.workspace.id, texts[0])
        replica, answer = await self.hub.pool(entry).complete(key, "/embeddings", body, call.trace_headers())
        call.upstream(replica)
        call.upstream()
        data = [EmbeddingData(embedding=item["embedding"], index=item.get("index", i))
                for i, item in enumerate(answer.get("data") or [])]
        if len(data) != len(texts):
            raise UpstreamError(f"backend of {entry.id} answered {len(data)} embeddings for {len(texts)} inputs")
        prompt = int((answer.get("usage") or {}).get("prompt_tokens") or call.prompt_tokens)
        call.settle_usage(prompt, 0, 0)
        await call.succeed()
        return EmbeddingResponse(id=call.id, model=request.model, data=data,
                                 usage=UsageInfo(prompt_tokens=prompt, completion_tokens=0, total_tokens=prompt))


def _inputs(request: EmbeddingRequest) -> list[str]:
    texts = one_or_many(request.input, "input", MAX_INPUTS, "inputs", "input must not be empty")
    if request.output_dtype != "float":
        raise Unsupported(f"output_dtype {request.output_dtype!r} is not supported; use 'float'",
                          param="output_dtype")
    return texts


def truncate(vectors: np.ndarray, dimension: int) -> np.ndarray:
    """The first `dimension` components of each vector, made unit length again (a cut
    unit vector is shorter than 1, and cosine-by-dot-product clients rely on unit length)."""
    return unit_rows(vectors[:, :dimension])


def _encode(vector: np.ndarray, encoding: str) -> list[float] | str:
    if encoding == "base64":
        return base64.b64encode(vector.astype("<f4").tobytes()).decode("ascii")
    return [float(x) for x in vector]
