from typing import Literal

from pydantic import Field

from alize.protocol.common import Metadata, Request, Response, UsageInfo


class EmbeddingRequest(Request):
    model: str
    input: str | list[str]
    encoding_format: Literal["float", "base64"] = "float"
    output_dimension: int | None = Field(default=None, gt=0)
    dimensions: int | None = Field(default=None, gt=0)
    output_dtype: Literal["float", "int8", "uint8", "binary", "ubinary"] = "float"
    metadata: Metadata = None


class EmbeddingData(Response):
    object: Literal["embedding"] = "embedding"
    embedding: list[float] | list[int] | str
    index: int


class EmbeddingResponse(Response):
    id: str
    object: Literal["list"] = "list"
    model: str
    data: list[EmbeddingData]
    usage: UsageInfo
