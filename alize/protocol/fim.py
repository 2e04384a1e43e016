from pydantic import Field

from alize.protocol.common import MaxTokens, Metadata, Request, Seed, Stop, StreamOptions, Temperature, TopP


class FIMCompletionRequest(Request):
    model: str
    prompt: str
    suffix: str | None = ""
    min_tokens: int | None = Field(default=None, ge=0)
    temperature: Temperature = None
    top_p: TopP = None
    max_tokens: MaxTokens = None
    stream: bool = False
    stream_options: StreamOptions | None = None
    stop: Stop = None
    random_seed: Seed = None
    seed: int | None = None
    metadata: Metadata = None
