"""Sentence embeddings with sentence-transformers, on the CPU, from a local folder."""

import os
import threading
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # never reach for a hub: the weights are local
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

import numpy as np
from sentence_transformers import SentenceTransformer


class Embedder:
    def __init__(self, name: str, path: Path, threads: int | None = None):
        import torch

        if threads:
            torch.set_num_threads(threads)
        self.name = name
        self._model = SentenceTransformer(str(path), device="cpu", local_files_only=True)
        self.max_tokens = int(self._model.max_seq_length or 0)
        self.dimension = int(self._model.get_embedding_dimension() or 0)
        self._lock = threading.Lock()

    def count_tokens(self, texts: list[str]) -> list[int]:
        encoded = self._model.tokenizer(texts, add_special_tokens=True, truncation=False)
        return [len(ids) for ids in encoded["input_ids"]]

    def embed(self, texts: list[str]) -> np.ndarray:
        with self._lock:
            vectors = self._model.encode(
                texts, batch_size=32, normalize_embeddings=True, convert_to_numpy=True
            )
        return np.asarray(vectors, dtype=np.float32)
