#!/usr/bin/env python3
"""llama_dense.py - the test of `needle --dump DIR` run by llama.cpp
with its own dense attention, on the same token ids: each
DIR/depth-NN.txt holds what a right answer holds (the passkey, or the
fact's words joined by '|'), then the sequence.  Greedy answer of up to
16 tokens, right when it holds each of them (any case), as needle counts
it.  Through llama-cpp-python (--model), or a running llama-server
(--server URL: the ids go as the prompt, as they are; its own context
and threads are its command line's):

    needle --model GGUF --length 32768 --depths 20 --haystack filler \
        --dense-only --sparse-only --dump /tmp/nd     # dump, run nothing
    bench/needle/llama_dense.py --model GGUF /tmp/nd/depth-04.txt ...
    llama-server -m GGUF -c 33024 -np 1 -t 2 -fa on --swa-full \
        --override-kv gemma3.context_length=int:33024 --port 8090 &
    bench/needle/llama_dense.py --server http://127.0.0.1:8090 /tmp/nd/*.txt
"""
import argparse
import json
import sys
import time
import urllib.error
import urllib.request


def run(llm, ids):
    """llama-cpp-python in process: the answer's text."""
    llm.reset()
    llm.eval(ids)
    out = []
    eos = {llm.token_eos(), 106}        # 106: gemma's <end_of_turn>
    for _ in range(16):
        t = llm.sample(top_k=1, temp=0)
        if t in eos:
            break
        out.append(t)
        llm.eval([t])
    return llm.detokenize(out).decode("utf-8", "replace")


def run_file(answer, path):
    """One dump file through answer(ids) -> text: right?, text, s, n."""
    with open(path) as f:
        words = f.readline().strip().lower().split("|")
        ids = [int(x) for x in f if x.strip()]
    t0 = time.time()
    text = answer(ids)
    hit = all(w in text.lower() for w in words)
    return hit, text, time.time() - t0, len(ids)


class Server:
    """llama-server's /completion, greedy, the prompt as token ids."""

    def __init__(self, url):
        self.url = url.rstrip("/") + "/completion"

    def answer(self, ids):
        body = json.dumps({"prompt": ids, "n_predict": 16, "temperature": 0,
                           "top_k": 1, "cache_prompt": True}).encode()
        rq = urllib.request.Request(self.url, body,
                                    {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(rq, timeout=3600) as r:
                res = json.load(r)
        except urllib.error.HTTPError as e:
            sys.exit("llama_dense.py: %s: %s %s" % (
                self.url, e.code, e.read().decode("utf-8", "replace")))
        except (urllib.error.URLError, OSError, ValueError) as e:
            sys.exit("llama_dense.py: %s: %s" % (self.url, e))
        n = res.get("tokens_evaluated")
        # A BOS added in front would make this another sequence.
        if n is not None and n != len(ids):
            sys.exit("llama_dense.py: llama-server evaluated %d tokens, "
                     "not the %d given" % (n, len(ids)))
        return res["content"]


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model")
    ap.add_argument("--server", help="a llama-server's URL")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("files", nargs="+")
    a = ap.parse_args()
    if bool(a.model) == bool(a.server):
        ap.error("give --model GGUF or --server URL")
    for p in a.files:
        try:
            with open(p) as f:
                if not f.readline().strip():
                    raise ValueError("no answer on the first line")
                int(f.readline())
        except (OSError, ValueError) as e:
            sys.exit("llama_dense.py: %s: not a needle --dump file (%s)"
                     % (p, e))
    answer = Server(a.server).answer if a.server else local(a)
    ok = 0
    for p in a.files:
        hit, text, secs, n = run_file(answer, p)
        ok += hit
        print("%s (%d tokens): llama.cpp dense %s [%s] %.0f s" % (
            p, n, "ok" if hit else "MISS", text.replace("\n", " "), secs))
        sys.stdout.flush()
    print("llama.cpp dense: %d/%d" % (ok, len(a.files)))


def local(a):
    import llama_cpp
    n_ctx = 0
    for p in a.files:
        with open(p) as f:
            n_ctx = max(n_ctx, sum(1 for _ in f) + 16)
    llm = llama_cpp.Llama(model_path=a.model, n_ctx=n_ctx, n_batch=512,
                          n_threads=a.threads, logits_all=False,
                          verbose=False)
    return lambda ids: run(llm, ids)


if __name__ == "__main__":
    main()
