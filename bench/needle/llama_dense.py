#!/usr/bin/env python3
"""llama_dense.py - the test of `needle --dump DIR` run by llama.cpp
(through llama-cpp-python) with its own dense attention, on the same
token ids: each DIR/depth-NN.txt holds what a right answer holds (the
passkey, or the fact's words joined by '|'), then the sequence.  Greedy
answer of up to 16 tokens, right when it holds each of them (any case),
as needle counts it.

    needle --model GGUF --length 32768 --depths 20 --haystack filler \
        --dense-only --sparse-only --dump /tmp/nd     # dump, run nothing
    bench/needle/llama_dense.py --model GGUF /tmp/nd/depth-04.txt ...
"""
import argparse
import sys
import time


def run(llm, path):
    with open(path) as f:
        words = f.readline().strip().lower().split("|")
        ids = [int(x) for x in f if x.strip()]
    llm.reset()
    t0 = time.time()
    llm.eval(ids)
    out = []
    eos = {llm.token_eos(), 106}        # 106: gemma's <end_of_turn>
    for _ in range(16):
        t = llm.sample(top_k=1, temp=0)
        if t in eos:
            break
        out.append(t)
        llm.eval([t])
    text = llm.detokenize(out).decode("utf-8", "replace")
    hit = all(w in text.lower() for w in words)
    return hit, text, time.time() - t0, len(ids)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", required=True)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    for p in a.files:
        try:
            with open(p) as f:
                if not f.readline().strip():
                    raise ValueError("no answer on the first line")
                int(f.readline())
        except (OSError, ValueError) as e:
            sys.exit("llama_dense.py: %s: not a needle --dump file (%s)"
                     % (p, e))
    import llama_cpp
    n_ctx = 0
    for p in a.files:
        with open(p) as f:
            n_ctx = max(n_ctx, sum(1 for _ in f) + 16)
    llm = llama_cpp.Llama(model_path=a.model, n_ctx=n_ctx, n_batch=512,
                          n_threads=a.threads, logits_all=False,
                          verbose=False)
    ok = 0
    for p in a.files:
        hit, text, secs, n = run(llm, p)
        ok += hit
        print("%s (%d tokens): llama.cpp dense %s [%s] %.0f s" % (
            p, n, "ok" if hit else "MISS", text.replace("\n", " "), secs))
        sys.stdout.flush()
    print("llama.cpp dense: %d/%d" % (ok, len(a.files)))


if __name__ == "__main__":
    main()
