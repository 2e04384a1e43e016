"""A tiny GGUF model with Mistral's own vocabulary (the v3 SentencePiece tokenizer that
mistral-common ships), for the tests of Mistral-family prompt handling: no Mistral model
can be downloaded here. Its weights are random, so it says nothing sensible; what it proves
is that Alizé recognises the vocabulary, writes prompts with Mistral's library, and that
grammars over Mistral's control tokens ([TOOL_CALLS]) hold."""

from pathlib import Path

import numpy as np

V3_TOKENIZER = "mistral_instruct_tokenizer_240323.model.v3"
# llama.cpp's token types
NORMAL, UNKNOWN, CONTROL, UNUSED, BYTE = 1, 2, 3, 5, 6


def _vocabulary(tokenizer_file: Path) -> tuple[list[str], list[float], list[int]]:
    import sentencepiece

    sp = sentencepiece.SentencePieceProcessor(model_file=str(tokenizer_file))
    tokens, scores, types = [], [], []
    for i in range(sp.vocab_size()):
        tokens.append(sp.id_to_piece(i))
        scores.append(sp.get_score(i))
        types.append(UNKNOWN if sp.is_unknown(i) else CONTROL if sp.is_control(i) else BYTE if sp.is_byte(i)
                     else UNUSED if sp.is_unused(i) else NORMAL)
    return tokens, scores, types


def write_mistral_toy(path: Path, context: int = 1024, embd: int = 32, ff: int = 64, heads: int = 2) -> Path:
    """Writes a one-layer llama-architecture model with Mistral's v3 vocabulary to `path`."""
    import gguf
    import mistral_common

    tokens, scores, types = _vocabulary(Path(mistral_common.__file__).parent / "data" / V3_TOKENIZER)
    rng = np.random.default_rng(7)

    def weights(*shape: int) -> np.ndarray:
        return (rng.standard_normal(shape) * 0.05).astype(np.float32)

    writer = gguf.GGUFWriter(str(path), "llama")
    writer.add_name("Mistral-v3-toy")
    writer.add_context_length(context)
    writer.add_embedding_length(embd)
    writer.add_block_count(1)
    writer.add_feed_forward_length(ff)
    writer.add_head_count(heads)
    writer.add_head_count_kv(heads)
    writer.add_layer_norm_rms_eps(1e-5)
    writer.add_rope_dimension_count(embd // heads)
    writer.add_tokenizer_model("llama")
    writer.add_token_list(tokens)
    writer.add_token_scores(scores)
    writer.add_token_types(types)
    writer.add_bos_token_id(1)
    writer.add_eos_token_id(2)
    writer.add_unk_token_id(0)
    writer.add_add_bos_token(True)
    writer.add_add_eos_token(False)
    n_vocab = len(tokens)
    writer.add_tensor("token_embd.weight", weights(n_vocab, embd))
    writer.add_tensor("output_norm.weight", np.ones(embd, dtype=np.float32))
    writer.add_tensor("output.weight", weights(n_vocab, embd))
    writer.add_tensor("blk.0.attn_norm.weight", np.ones(embd, dtype=np.float32))
    for name in ("attn_q", "attn_k", "attn_v", "attn_output"):
        writer.add_tensor(f"blk.0.{name}.weight", weights(embd, embd))
    writer.add_tensor("blk.0.ffn_norm.weight", np.ones(embd, dtype=np.float32))
    writer.add_tensor("blk.0.ffn_gate.weight", weights(ff, embd))
    writer.add_tensor("blk.0.ffn_up.weight", weights(ff, embd))
    writer.add_tensor("blk.0.ffn_down.weight", weights(embd, ff))
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
    return path
