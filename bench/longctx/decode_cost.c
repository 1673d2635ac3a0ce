/* decode_cost.c - what one decode step costs as the context grows, with
 * block-sparse attention, in memory: the cache is filled with synthetic
 * keys and values (no prefill: a 1M-token context in seconds), then a
 * question of 16 tokens, single tokens and one prefill chunk of 512 are
 * run at its end and timed (a question scores the blocks exactly up to
 * --scan-max candidate positions, decode by their summaries, a chunk by
 * Quest's bound).  What it isolates is the engine's part of decode and
 * prefill at length n (selecting blocks, attending); bench/longctx/run.py
 * measures the same through engramd and LMDB.
 *
 *     decode_cost --model GGUF --lengths 8192,131072,1048576 [--steps N]
 *         [--threads T] [--top-k K] [--question-top-k K]
 *         [--prefill-top-k K] [--sink S] [--local W] [--prefill-local P]
 *         [--dense-max M] [--scan-max P] [--reach R|--true-positions]
 *         [--dense] [--pack WHAT]
 *
 * Keys are drawn per block around a random centre (blocks differ, tokens
 * within a block are alike, as real text's are more than noise is), so
 * that scores are not all equal; the costs do not depend on the values.
 */
#include "config.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engine.h"
#include "../bench_flags.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static void die(const char *msg, int rc)
{
	fprintf(stderr, "decode_cost: %s (%s)\n", msg, rc ? eng_strerror(rc) :
	    "");
	exit(1);
}

static uint64_t rng = 88172645463325252ull;

#define QUESTION 16	/* tokens of the timed question step */
#define CHUNK 512	/* tokens of the timed prefill chunk */
#define BIG BENCH_BIG

static uint32_t num(const char *flag, const char *v, unsigned long max)
{
	return (uint32_t)bench_num("decode_cost", flag, v, max);
}

static float frand(void)	/* uniform in [-1, 1) */
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (float)((rng >> 40) * (2.0 / (1 << 24))) - 1.0f;
}

/* Fills kv with n positions of synthetic keys and values. */
static void fill(eng_kv *kv, const eng_hparams *hp, uint32_t n)
{
	const uint32_t chunk = 512, B = 64;
	size_t rk = (size_t)hp->n_head_kv * hp->head_dim_k;
	size_t rv = (size_t)hp->n_head_kv * hp->head_dim_v;
	float *k = malloc(chunk * rk * sizeof *k);
	float *v = malloc(chunk * rv * sizeof *v);
	float *centre = malloc(rk * sizeof *centre);
	int rc;

	if (!k || !v || !centre)
		die("out of memory", 0);
	for (uint32_t p0 = 0; p0 < n; p0 += chunk) {
		uint32_t m = n - p0 < chunk ? n - p0 : chunk;
		for (uint32_t t = 0; t < m; t++) {
			if ((p0 + t) % B == 0)
				for (size_t c = 0; c < rk; c++)
					centre[c] = 2.0f * frand();
			for (size_t c = 0; c < rk; c++)
				k[t * rk + c] = centre[c] + 0.5f * frand();
			for (size_t c = 0; c < rv; c++)
				v[t * rv + c] = frand();
		}
		for (uint32_t l = 0; l < hp->n_layer; l++)
			if ((rc = kv->ops->write(kv, l, p0, m, k, v)))
				die("write", rc);
		if ((rc = kv->ops->commit(kv, p0 + m)))
			die("commit", rc);
	}
	free(k);
	free(v);
	free(centre);
}

int main(int argc, char **argv)
{
	const char *model = NULL, *lengths = "8192,32768,131072,1048576";
	uint32_t steps = 32, threads = 2, pack = 1;
	eng_sparse_params sp;
	char err[256];
	int rc;

	eng_sparse_params_init(&sp);	/* engramd's defaults */

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : "";
		if (!strcmp(a, "--model")) model = v, i++;
		else if (!strcmp(a, "--lengths")) lengths = v, i++;
		else if (!strcmp(a, "--steps")) steps = num(a, v, BIG), i++;
		else if (!strcmp(a, "--threads")) threads = num(a, v, 256), i++;
		else if (!strcmp(a, "--top-k")) sp.top_k = num(a, v, BIG), i++;
		else if (!strcmp(a, "--question-top-k"))
			sp.question_top_k = num(a, v, BIG), i++;
		else if (!strcmp(a, "--prefill-top-k"))
			sp.prefill_top_k = num(a, v, BIG), i++;
		else if (!strcmp(a, "--sink")) sp.sink = num(a, v, BIG), i++;
		else if (!strcmp(a, "--local")) sp.local = num(a, v, BIG), i++;
		else if (!strcmp(a, "--prefill-local"))
			sp.prefill_local = num(a, v, BIG), i++;
		else if (!strcmp(a, "--dense-max"))
			sp.dense_max = num(a, v, BIG), i++;
		else if (!strcmp(a, "--scan-max"))
			sp.scan_max = num(a, v, UINT32_MAX), i++;
		else if (!strcmp(a, "--reach")) sp.reach = num(a, v, BIG), i++;
		else if (!strcmp(a, "--true-positions")) sp.reach = UINT32_MAX;
		else if (!strcmp(a, "--dense")) sp.top_k = 0;
		else if (!strcmp(a, "--pack")) pack = num(a, v, 3), i++;
		else {
			fprintf(stderr, "usage: decode_cost --model GGUF "
			    "[--lengths N,N,...] [--steps N] [--threads T] "
			    "[--top-k K] [--question-top-k K] "
			    "[--prefill-top-k K] [--sink S] [--local W] "
			    "[--prefill-local P] [--dense-max M] [--scan-max P] "
			    "[--reach R|--true-positions] [--dense] "
			    "[--pack WHAT]\n");
			return 2;
		}
	}
	if (!model || !steps)
		die("--model and --steps >= 1 are needed", 0);

	eng_model *m;
	if ((rc = eng_model_open(model, &m, err, sizeof err)))
		die(err, rc);
	/* as engramd's pack setting (default 1: the output head) */
	if ((rc = eng_model_pack(m, pack, (int)threads, NULL)))
		die("packing the model", rc);
	const eng_hparams *hp = eng_model_hparams(m);
	eng_fwd_params p;
	eng_fwd_params_init(&p);
	p.n_threads = (int)threads;
	p.sparse = sp;
	eng_fwd *f;
	if ((rc = eng_fwd_open(m, &p, &f, err, sizeof err)))
		die(err, rc);

	printf("# top_k %u question_top_k %u prefill_top_k %u sink %u local %u "
	    "prefill_local %u dense_max %u reach %u scan_max %u, %u threads, "
	    "%u steps\n", sp.top_k, sp.question_top_k, sp.prefill_top_k,
	    sp.sink, sp.local, sp.prefill_local, sp.dense_max, sp.reach,
	    sp.scan_max, threads, steps);
	printf("%10s %12s %12s %10s %12s\n", "length", "fill s",
	    "question ms", "ms/token", "chunk ms");
	for (const char *s = lengths; *s;) {
		uint32_t n = (uint32_t)strtoul(s, (char **)&s, 10);
		if (*s == ',')
			s++;
		if (n < 1)
			die("bad --lengths", 0);
		eng_kv *kv;
		if ((rc = eng_kv_mem_open(m, n + steps + 1 + QUESTION + CHUNK,
		    eng_fwd_n_batch(f),
		    ENG_TYPE_F16, &kv)) ||
		    (rc = eng_kv_mem_summaries(kv, 64)))
			die("cache", rc);
		double t0 = now_s();
		fill(kv, hp, n);
		double t1 = now_s();
		/* Any ids: the costs do not depend on them. */
		int32_t tok = 2, question[QUESTION], chunk[CHUNK];
		const float *l;
		for (int i = 0; i < QUESTION; i++)
			question[i] = 2 + i;
		for (int i = 0; i < CHUNK; i++)
			chunk[i] = 2 + i % 1000;
		/* One step untimed: first touches, buffers sized. */
		if ((rc = eng_fwd_eval(f, kv, &tok, 1, 0, &l, NULL)))
			die("eval", rc);
		double tq = now_s();
		if ((rc = eng_fwd_eval(f, kv, question, QUESTION, 0, &l,
		    NULL)))
			die("eval", rc);
		double t2 = now_s();
		for (uint32_t i = 1; i < steps; i++)
			if ((rc = eng_fwd_eval(f, kv, &tok, 1, 0, &l, NULL)))
				die("eval", rc);
		double t3 = now_s();
		if ((rc = eng_fwd_eval(f, kv, chunk, CHUNK, 0, &l, NULL)))
			die("eval", rc);
		double t4 = now_s();
		printf("%10u %12.1f %12.1f %10.2f %12.1f\n", n, t1 - t0,
		    1e3 * (t2 - tq), steps > 1 ? 1e3 * (t3 - t2) / (steps - 1) :
		    0.0, 1e3 * (t4 - t3));
		fflush(stdout);
		eng_kv_close(kv);
	}
	eng_fwd_close(f);
	eng_model_close(m);
	return 0;
}
