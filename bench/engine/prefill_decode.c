/* prefill_decode.c - whole-model speed of the forward pass, measured the
 * way llama-bench measures it so the two can be put side by side:
 *   ppN: N random tokens into an empty cache in steps of n_batch (512),
 *        tokens per second of the whole call;
 *   tgN: N tokens decoded one at a time from an empty cache;
 *   with -d D, both after D random tokens already in the cache (untimed),
 *        as llama-bench's -d.
 * Each test runs -r times after one warm-up run; mean and standard
 * deviation are printed.  See bench/engine/prefill_decode.md.
 *
 *   prefill_decode [-m MODEL] [-t THREADS] [-p 512,4096] [-n 128] [-r 3]
 *                  [-P WHAT] [-d DEPTH]
 *
 * WHAT is what eng_model_pack packs first, as engramd's pack setting: 0
 * nothing, 1 the output head (engramd's default), 3 the layers too.
 * MODEL defaults to $ENGRAM_TEST_MODEL.
 */
#include "config.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "engine.h"
#include "kernels.h"

static double now_s(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec / 1e9;
}

static uint64_t rng = 0x2545f4914f6cdd1dull;

static int32_t rand_token(uint32_t n_vocab)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (int32_t)(rng % n_vocab);
}

static uint32_t depth;	/* -d: tokens in the cache before each test */

/* One run: seconds for pp (n_prompt > 0) or tg (n_gen > 0), after depth
 * tokens evaluated untimed. */
static int run_once(const eng_model *m, eng_fwd *f, uint32_t n_prompt,
    uint32_t n_gen, double *secs)
{
	uint32_t nv = eng_fwd_n_vocab(f), n = n_prompt ? n_prompt : n_gen;
	int32_t *tok = malloc(((size_t)depth + n) * sizeof *tok);
	const float *lg;
	eng_kv *kv;
	double t0;
	int rc;

	if (!tok)
		return ENG_ENOMEM;
	for (uint32_t i = 0; i < depth + n; i++)
		tok[i] = rand_token(nv);
	if ((rc = eng_kv_mem_open(m, depth + n + 1, eng_fwd_n_batch(f),
	    ENG_TYPE_F16, &kv))) {
		free(tok);
		return rc;
	}
	if (depth)
		rc = eng_fwd_eval(f, kv, tok, depth, 0, &lg, NULL);
	t0 = now_s();
	if (!rc && n_prompt)
		rc = eng_fwd_eval(f, kv, tok + depth, n_prompt, 0, &lg, NULL);
	else if (!rc)
		for (uint32_t i = 0; i < n_gen && !rc; i++)
			rc = eng_fwd_eval(f, kv, tok + depth + i, 1, 0, &lg,
			    NULL);
	*secs = now_s() - t0;
	eng_kv_close(kv);
	free(tok);
	return rc;
}

static int bench(const eng_model *m, eng_fwd *f, uint32_t n_prompt,
    uint32_t n_gen, int reps)
{
	double s, sum = 0, sum2 = 0;
	uint32_t n = n_prompt ? n_prompt : n_gen;
	int rc;

	if ((rc = run_once(m, f, n_prompt, n_gen, &s)))	/* warm-up */
		return rc;
	for (int r = 0; r < reps; r++) {
		if ((rc = run_once(m, f, n_prompt, n_gen, &s)))
			return rc;
		sum += n / s;
		sum2 += (n / s) * (n / s);
	}
	double mean = sum / reps;
	double sd = reps > 1 ? sqrt(fmax(0, (sum2 - reps * mean * mean) /
	    (reps - 1))) : 0;
	if (depth)
		printf("| %s%u @ d%u | %8.2f ± %6.2f |\n", n_prompt ? "pp" :
		    "tg", n, depth, mean, sd);
	else
		printf("| %s%u | %8.2f ± %6.2f |\n", n_prompt ? "pp" : "tg",
		    n, mean, sd);
	fflush(stdout);
	return 0;
}

int main(int argc, char **argv)
{
	const char *path = getenv("ENGRAM_TEST_MODEL");
	char plist[256] = "512,4096", err[256];
	int threads = 2, reps = 3, pack = 1, opt, rc;
	size_t packed = 0;
	uint32_t n_gen = 128;
	eng_fwd_params fp;
	eng_model *m;
	eng_fwd *f;

	while ((opt = getopt(argc, argv, "m:t:p:n:r:P:d:")) != -1) {
		switch (opt) {
		case 'm': path = optarg; break;
		case 't': threads = atoi(optarg); break;
		case 'p': snprintf(plist, sizeof plist, "%s", optarg); break;
		case 'n': n_gen = (uint32_t)atoi(optarg); break;
		case 'r': reps = atoi(optarg); break;
		case 'P': pack = atoi(optarg); break;
		case 'd': {
			char *end;
			unsigned long d = strtoul(optarg, &end, 10);
			if (*optarg < '0' || *optarg > '9' || *end ||
			    d > 1u << 24) {
				fprintf(stderr, "-d: expected a number of "
				    "tokens up to %u, got '%s'\n", 1u << 24,
				    optarg);
				return 2;
			}
			depth = (uint32_t)d;
			break;
		}
		default:
			fprintf(stderr, "usage: %s [-m model] [-t threads] "
			    "[-p 512,4096] [-n 128] [-r 3] [-P 0|1|3] "
			    "[-d depth]\n", argv[0]);
			return 2;
		}
	}
	if (!path || reps < 1) {
		fprintf(stderr, "no model: -m MODEL or ENGRAM_TEST_MODEL\n");
		return 2;
	}
	if ((rc = eng_model_open(path, &m, err, sizeof err))) {
		fprintf(stderr, "%s: %s\n", path, err);
		return 1;
	}
	if (pack && (rc = eng_model_pack(m, (unsigned)pack, threads,
	    &packed))) {
		fprintf(stderr, "pack: %s\n", eng_strerror(rc));
		return 1;
	}
	eng_fwd_params_init(&fp);
	fp.n_threads = threads;
	if ((rc = eng_fwd_open(m, &fp, &f, err, sizeof err))) {
		fprintf(stderr, "%s: %s\n", path, err);
		return 1;
	}
	printf("model %s, threads %d, n_batch %u, simd %s, kv f16, packed %zu "
	    "bytes\n\n", path, threads, eng_fwd_n_batch(f),
	    eng_simd_name(eng_simd_active()), packed);
	printf("| test | t/s |\n|---|---|\n");
	for (char *s = strtok(plist, ","); s; s = strtok(NULL, ","))
		if ((rc = bench(m, f, (uint32_t)atoi(s), 0, reps)))
			goto out;
	if (n_gen)
		rc = bench(m, f, 0, n_gen, reps);
out:
	if (rc)
		fprintf(stderr, "error: %s\n", eng_strerror(rc));
	eng_fwd_close(f);
	eng_model_close(m);
	return rc ? 1 : 0;
}
