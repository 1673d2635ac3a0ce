#!/usr/bin/env python3
"""bench/longctx/run.py - the cost of a session by its length, through a
running engramd: prefill tokens/s (over the whole run and over its last
chunks), decode ms/token of an answer, time to first token, the same after
a restart, peak RSS of engramd, bytes on disk per token.

    bench/longctx/run.py --build build/release --model GGUF \
        --corpus /usr/include --lengths 8192,32768,131072 [--dense]

Each length gets its own data dir and session, ingested from a copy of the
first files of --corpus (sorted by path) that give about that many tokens.
A prefill may be interrupted and run again with --resume DIR: it goes on
where it stopped (the point of the store); the figures of the last run are
then those of the resumed part.  --dense sets sparse_top_k=0 (attention over
everything) for comparison.  --reuse then measures what the store saves: the
same corpus ingested as a second session and prefilled (taken from the
first one's checkpoints), and the corpus grown by one file sorted last (the
prefix up to the last checkpoint taken over, the rest computed), each
beside the same prefill with --no-reuse.  --adopt measures only the
first of these (the same corpus as a second session, taken from the store)
and how long questions to the first session wait meanwhile: one-token
questions asked back to back while that prefill runs, their slowest wall
time beside that of the same question with the daemon idle.  Prints one
JSON line per length and a Markdown row for bench/RESULTS.md.
"""
import argparse, json, os, shutil, subprocess, sys, tempfile, time


def sh(*a, **kw):
    return subprocess.run(a, check=True, **kw)


class Daemon:
    def __init__(self, build, data, model, settings):
        self.build, self.data, self.model = build, data, model
        self.sock = os.path.join(data, "s.sock")
        self.settings = settings
        self.pid = None

    def ctl(self, *args, check=True):
        r = subprocess.run([os.path.join(self.build, "engramctl"), "-s", self.sock,
                            "--json"] + list(args), capture_output=True, text=True)
        if check and r.returncode != 0:
            raise RuntimeError("engramctl %s: %s" % (" ".join(args), r.stderr))
        return [json.loads(l) for l in r.stdout.splitlines() if l.strip()]

    def start(self):
        cmd = [os.path.join(self.build, "engramd"), "-s", self.sock, "-d", self.data,
               "-m", self.model, "--log-file", os.path.join(self.data, "log")]
        for kv in self.settings:
            cmd += ["--set", kv]
        sh(*cmd)
        self.pid = int(open(os.path.join(self.data, "engramd.lock")).read().split()[0])

    def stop(self):
        self.ctl("shutdown", check=False)
        for _ in range(300):
            if not os.path.exists("/proc/%d" % self.pid):
                return
            time.sleep(0.1)

    def mem(self):
        out = {}
        for line in open("/proc/%d/status" % self.pid):
            k, _, v = line.partition(":")
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssFile"):
                out[k] = int(v.split()[0]) // 1024   # MiB
        return out


def make_corpus(src, dst, want_tokens, bytes_per_token):
    """Copies files of src (sorted by path) until they hold about
    want_tokens tokens, skipping files that would overshoot by more than
    2%."""
    want = int(want_tokens * bytes_per_token)
    have = 0
    for root, dirs, files in os.walk(src):
        dirs.sort()
        for f in sorted(files):
            p = os.path.join(root, f)
            if not os.path.isfile(p) or os.path.islink(p):
                continue
            n = os.path.getsize(p)
            if have + n > want * 1.02:
                continue
            rel = os.path.relpath(p, src)
            os.makedirs(os.path.join(dst, os.path.dirname(rel)), exist_ok=True)
            shutil.copyfile(p, os.path.join(dst, rel))
            have += n
            if have >= want * 0.98:
                return


def drop_caches():
    try:
        os.sync()
        with open("/proc/sys/vm/drop_caches", "w") as f:
            f.write("3\n")
        return True
    except OSError:
        return False


def ask(d, q, n):
    evs = d.ctl("ask", "--max-tokens", str(n), "engram", q)
    return evs[-1]


def timed_prefill(d, name, *opts):
    t = time.time()
    ev = d.ctl("prefill", *opts, name)[-1]
    return ev, time.time() - t


def reuse(d, corpus, grow_from):
    """Second sessions of the same corpus, and of it grown by a file, each
    prefilled with and without reuse; the sessions are removed after."""
    out = {}
    extra = os.path.join(corpus, "zzzz_grown.h")
    try:
        for case in ("same", "grown"):
            if case == "grown":
                shutil.copyfile(grow_from, extra)
            for mode in ("reuse", "no_reuse"):
                name = "%s-%s" % (case, mode)
                d.ctl("ingest", "--name", name, corpus)
                ev, secs = timed_prefill(d, name, *(("--no-reuse",) if mode == "no_reuse" else ()))
                out["%s_%s" % (case, mode)] = {
                    "total": ev["total"], "reused": ev["reused"],
                    "computed": ev["computed"], "wall_s": round(secs, 3)}
                print(json.dumps({name: out["%s_%s" % (case, mode)]}), flush=True)
            for mode in ("reuse", "no_reuse"):
                d.ctl("session", "rm", "%s-%s" % (case, mode))
    finally:
        if os.path.exists(extra):
            os.remove(extra)
    store = d.ctl("store")[-1]
    out["checkpoints"] = store.get("checkpoints")
    out["checkpoint_bytes"] = store.get("checkpoint_bytes")
    return out


def adopt_stall(d, corpus, q):
    """The corpus as a second session, prefilled from the store, while
    one-token questions go to the first session back to back."""
    def one():
        t = time.time()
        ev = d.ctl("ask", "--max-tokens", "1", "engram", q)[-1]
        return (time.time() - t) * 1000, ev["ttft_ms"]
    idle = [one() for _ in range(3)]
    d.ctl("ingest", "--name", "adopted", corpus)
    t0 = time.time()
    p = subprocess.Popen([os.path.join(d.build, "engramctl"), "-s", d.sock, "--json",
                          "prefill", "adopted"], stdout=subprocess.PIPE, text=True)
    busy = []
    while p.poll() is None:
        busy.append(one())
    out = p.communicate()[0]
    secs = time.time() - t0
    ev = json.loads(out.splitlines()[-1])
    d.ctl("session", "rm", "adopted")
    res = {"total": ev.get("total"), "reused": ev.get("reused"),
           "computed": ev.get("computed"), "prefill_wall_s": round(secs, 3),
           "idle_ask_wall_ms": round(max(w for w, _ in idle), 1),
           "busy_asks": len(busy),
           "busy_ask_wall_ms_max": round(max((w for w, _ in busy), default=0), 1),
           "busy_ttft_ms_max": round(max((t for _, t in busy), default=0), 1)}
    print(json.dumps({"adopt": res}), flush=True)
    return res


def run(args, length):
    base = args.resume or tempfile.mkdtemp(prefix="longctx.", dir=args.tmp)
    data = os.path.join(base, "data-%d" % length)
    corpus = os.path.join(base, "corpus-%d" % length)
    os.makedirs(data, exist_ok=True)
    settings = ["threads=%d" % args.threads]
    if args.dense:
        settings.append("sparse_top_k=0")
    settings += args.set
    d = Daemon(args.build, data, args.model, settings)
    d.start()
    try:
        if not os.path.isdir(corpus):
            make_corpus(args.corpus, corpus, length, args.bytes_per_token)
            d.ctl("ingest", "--name", "engram", corpus)
        # Prefill, with progress events timed to get the rate at the end.
        t0 = time.time()
        p = subprocess.Popen([os.path.join(args.build, "engramctl"), "-s", d.sock, "--json",
                              "prefill", "engram"], stdout=subprocess.PIPE, text=True)
        marks = []
        last = prog = None
        job = None
        cut = False
        for line in p.stdout:
            ev = json.loads(line)
            if ev.get("event") == "job":
                job = ev["job"]
            if ev.get("event") == "progress":
                marks.append((time.time(), ev["done"]))
                prog = ev
                if args.budget_s and time.time() - t0 > args.budget_s and not cut:
                    # Out of time: stop here; what is saved stays, and
                    # the figures are taken at the length reached.
                    d.ctl("cancel", str(job))
                    cut = True
            last = ev
        p.wait()
        if p.returncode != 0 and not cut:
            raise RuntimeError("prefill failed: %s" % last)
        if cut:
            last = dict(prog)
            last["total"] = prog["done"]
            last["rate"] = prog["computed"] / max(prog["elapsed_s"], 1e-9)
            last["elapsed_s"] = prog["elapsed_s"]
        total = last["total"]
        # The rate over the last eighth of the context (at least 4 chunks).
        tail_rate = None
        if len(marks) > 2:
            lo = total - max(total // 8, 2048)
            pts = [m for m in marks if m[1] >= lo]
            if len(pts) >= 2 and pts[-1][1] > pts[0][1]:
                tail_rate = (pts[-1][1] - pts[0][1]) / (pts[-1][0] - pts[0][0])
        q = "Which header defines the structure with the most fields? Answer briefly."
        warm = ask(d, q, args.gen)
        mem = d.mem()
        store = d.ctl("store")[-1]
        reused = reuse(d, corpus, args.grow_from) if args.reuse else None
        adopted = adopt_stall(d, corpus, q) if args.adopt else None
        d.stop()
        cold = drop_caches()
        d.start()
        t1 = time.time()
        again = ask(d, q, args.gen)
        again_wall = (time.time() - t1) * 1000
        mem2 = d.mem()
        res = {
            "length": total, "dense": args.dense, "cut_short": cut,
            "prefill_tps": last.get("rate"), "prefill_computed": last.get("computed"),
            "prefill_s": last.get("elapsed_s"), "prefill_tail_tps": tail_rate,
            "decode_ms": warm["gen_ms"] / max(warm["n_gen"], 1),
            "ttft_ms": warm["ttft_ms"], "n_attended": warm.get("n_attended"),
            "restart_ttft_ms": again["ttft_ms"], "restart_ask_wall_ms": again_wall,
            "restart_caches_dropped": cold,
            "restart_decode_ms": again["gen_ms"] / max(again["n_gen"], 1),
            "peak_rss_mib": mem.get("VmHWM"), "rss_anon_mib": mem.get("RssAnon"),
            "rss_file_mib": mem.get("RssFile"), "restart_peak_rss_mib": mem2.get("VmHWM"),
            "bytes_on_disk": store["bytes_on_disk"],
            "disk_bytes_per_token": store["bytes_on_disk"] / max(total, 1),
            "record_bytes_per_token": store["bytes_per_token"],
            "data": base, "reuse": reused, "adopt": adopted,
        }
        print(json.dumps(res), flush=True)
        return res
    finally:
        d.stop()


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", default="build/release")
    ap.add_argument("--model", required=True)
    ap.add_argument("--corpus", default="/usr/include")
    ap.add_argument("--lengths", default="8192,32768,131072")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--gen", type=int, default=32)
    ap.add_argument("--bytes-per-token", type=float, default=3.4,
                    help="of the corpus, to size the copy (measure with one ingest)")
    ap.add_argument("--dense", action="store_true")
    ap.add_argument("--set", action="append", default=[], metavar="KEY=VALUE",
                    help="an engramd setting (engramd.conf(5)), repeatable")
    ap.add_argument("--resume", help="a data folder of an earlier run")
    ap.add_argument("--budget-s", type=float, default=0,
                    help="stop the prefill after this long and measure at the length reached")
    ap.add_argument("--tmp", default=None)
    ap.add_argument("--reuse", action="store_true",
                    help="also measure second sessions of the same (and a grown) corpus")
    ap.add_argument("--adopt", action="store_true",
                    help="also time a second session of the same corpus taken "
                    "from the store, and questions asked meanwhile")
    ap.add_argument("--grow-from", default="/usr/include/stdio.h",
                    help="the file added to grow the corpus (--reuse)")
    args = ap.parse_args()
    rows = [run(args, int(n)) for n in args.lengths.split(",")]
    print("| length | attention | prefill tok/s (all / last 1/8) | decode ms/token | ttft ms | "
          "ttft after restart ms | peak RSS MiB (anon + file) | disk B/token |")
    for r in rows:
        print("| %d | %s | %.0f / %s | %.1f | %.0f | %.0f | %d (%d + %d) | %.0f |" % (
            r["length"], "dense" if r["dense"] else "sparse", r["prefill_tps"] or 0,
            "%.0f" % r["prefill_tail_tps"] if r["prefill_tail_tps"] else "-",
            r["decode_ms"], r["ttft_ms"], r["restart_ttft_ms"], r["peak_rss_mib"] or 0,
            r["rss_anon_mib"] or 0, r["rss_file_mib"] or 0, r["disk_bytes_per_token"]))


if __name__ == "__main__":
    main()
