"""A GGUF's weight matrices rewritten as Q8_0 where llama.cpp's CPU backend has no kernel
that multiplies them by several tokens at once.

A step that decodes several tokens (a prompt chunk, 16 sequences together, a draft to
verify) multiplies each weight matrix by several activation columns. For Q8_0, Q4_0, Q5_0
and the K-quants llama.cpp has such kernels (tinyBLAS, repacked layouts), which read a
block of weights once for several columns; Q4_1 and Q5_1, the type of the built-in
SmolLM2 file, get a dot product per weight row and column, so a step of 17 tokens costs
nearly 17 one-token steps. Rewritten as Q8_0 (measured in docs/benchmarks.md, built-in
model, 2 cores): prompts about 2x faster, 16 sequences' steps 1.4x, a one-token step the
same within 3%, for a file 1.5 times the size. Q8_0 keeps the one-pass guarantee the
engine relies on: a position's logits are bit-identical whether it is decoded alone or
with others (its one-column path and its tinyBLAS path sum in the same order), which
Q4_1 has and float16 and bfloat16 rewrites do not.

The values are the same weights up to Q8_0's rounding (at most 1/254 of each block of 32's
largest value); the logits' KL divergence to the exactly dequantized model is 0.005,
against 0.004 for the Q4_1 file itself (whose activations llama.cpp rounds to 8 bits).
The result is cached (`rewritten(...)`), named by the source file's content and this
module's version: written once (about 5 s for the built-in model) and shared by every
install of the same file; rewrites of earlier versions are removed when one is written."""

import hashlib
import logging
import time
from pathlib import Path

import gguf
import numpy as np
from gguf import GGMLQuantizationType as Q

from alize.engine.gguf_cache import cached

log = logging.getLogger(__name__)

VERSION = 2  # bump when the output changes: cached files of other versions are removed
# weight types without a many-column CPU kernel in llama.cpp (tinyBLAS or repack), as of 0.3.36
UNBATCHED = (Q.Q4_1, Q.Q5_1)
SOURCE_TYPE_KEY = "alize.requantized_from"


def needs_rewrite(path: Path) -> bool:
    reader = gguf.GGUFReader(path)
    return any(t.tensor_type in UNBATCHED for t in reader.tensors)


def rewritten(path: Path, cache_dir: Path) -> Path:
    """The GGUF file at `path` with its Q4_1 and Q5_1 tensors as Q8_0, written on first use
    under `cache_dir`; `path` itself when it has none."""
    target = cache_dir / f"{path.stem}-q8_0-v{VERSION}-{content_digest(path, cache_dir)}.gguf"
    if target.is_file():
        return target
    if not needs_rewrite(path):
        return path
    started = time.monotonic()
    cached(target, lambda out: write_q8_0(path, out))
    log.info("rewrote %s with its Q4_1/Q5_1 weights as Q8_0 in %.1f s (once): %s", path.name,
             time.monotonic() - started, target)
    for stale in cache_dir.glob("*-q8_0-*.gguf"):
        if f"-q8_0-v{VERSION}-" not in stale.name:  # an earlier version's (a server still
            stale.unlink(missing_ok=True)           # running on it keeps its mapping)
    return target


def content_digest(path: Path, cache_dir: Path) -> str:
    """The file's SHA-256 (16 hex digits), remembered under `cache_dir` by path, size and
    time so that a start reads the file again only when it is new or changed."""
    stat = path.stat()
    where = f"{path.resolve()}:{stat.st_size}:{stat.st_mtime_ns}"
    memo = cache_dir / "digests" / hashlib.sha256(where.encode()).hexdigest()[:32]
    if memo.is_file():
        return memo.read_text().strip()
    with path.open("rb") as f:
        digest = hashlib.file_digest(f, "sha256").hexdigest()[:16]
    cached(memo, lambda out: out.write_text(digest))
    return digest


def write_q8_0(src: Path, out: Path) -> None:
    """Copies `src` to `out`, metadata and tensors in order, rewriting UNBATCHED tensors as
    Q8_0 one at a time (memory bounded by the largest tensor)."""
    reader = gguf.GGUFReader(src)
    writer = gguf.GGUFWriter(out, str(reader.fields[gguf.Keys.General.ARCHITECTURE].contents()))
    source_type = ""
    for field in reader.fields.values():
        if field.name == gguf.Keys.General.ARCHITECTURE or field.name.startswith("GGUF."):
            continue  # the writer writes these itself
        if field.name == gguf.Keys.General.ALIGNMENT:
            writer.data_alignment = int(field.contents())
        if field.name == gguf.Keys.General.FILE_TYPE:
            source_type = gguf.LlamaFileType(int(field.contents())).name
            writer.add_file_type(gguf.LlamaFileType.MOSTLY_Q8_0)
            continue
        sub_type = field.types[-1] if field.types[0] == gguf.GGUFValueType.ARRAY else None
        writer.add_key_value(field.name, field.contents(), field.types[0], sub_type=sub_type)
    writer.add_string(SOURCE_TYPE_KEY, source_type or "unknown")
    for tensor in reader.tensors:
        if tensor.tensor_type in UNBATCHED:
            shape = gguf.quant_shape_to_byte_shape(tuple(int(n) for n in reversed(tensor.shape)), Q.Q8_0)
            writer.add_tensor_info(tensor.name, shape, np.dtype(np.uint8), int(np.prod(shape)), Q.Q8_0)
        else:
            writer.add_tensor_info(tensor.name, tensor.data.shape, tensor.data.dtype, tensor.data.nbytes,
                                   tensor.tensor_type)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_ti_data_to_file()
    for tensor in reader.tensors:
        data = tensor.data
        if tensor.tensor_type in UNBATCHED:
            data = gguf.quants.quantize(gguf.quants.dequantize(data, tensor.tensor_type), Q.Q8_0)
        writer.write_tensor_data(np.ascontiguousarray(data))
    writer.close()
