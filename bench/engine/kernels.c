/* bench/engine/kernels.c - micro-benchmark of the engine's matrix products
 * on the default model's shapes (Gemma 3 270M), plus the machine's float
 * peak (measured FMA throughput) and memory bandwidth (stream triad).
 *
 * Usage: bench/engine/kernels [-t threads] [-s scalar|avx2|avx512]
 *                             [-n tokens,...] [-T type,...] [-m min_seconds]
 *                             [-M: skip machine peak/bandwidth]
 *                             [-K: only the L1-resident kernel ceilings]
 *                             [-H: output head at 1 token only]
 * Prints a markdown table.  Not a test: numbers depend on the machine and
 * its load.  See /work/notes/kernels-results.md for recorded runs. */
#include "config.h"
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kernels.h"

static double now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

/* CPU time of the process: on a loaded machine, time not descheduled. */
static double cpu_now(void)
{
	struct timespec ts;
	clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
	return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static uint64_t rng = 88172645463325252ull;

static uint8_t rnd8(void)
{
	rng ^= rng << 13;
	rng ^= rng >> 7;
	rng ^= rng << 17;
	return (uint8_t)(rng >> 32);
}

/* Random weights with small finite scales (values do not change speed). */
static void *make_weights(eng_type t, int64_t rows, int64_t cols, size_t *stride)
{
	const eng_type_traits *tr = eng_type_traits_get(t);
	if (eng_row_bytes(t, cols, stride))
		return NULL;
	size_t bytes = *stride * rows;
	uint8_t *p = aligned_alloc(64, (bytes + 63) & ~(size_t)63);
	if (!p)
		return NULL;
	for (size_t i = 0; i < bytes; i++)
		p[i] = rnd8();
	if (t == ENG_TYPE_F32) {
		float *f = (float *)p;
		for (size_t i = 0; i < bytes / 4; i++)
			f[i] = (rnd8() - 128) / 128.0f;
	} else if (t == ENG_TYPE_F16 || t == ENG_TYPE_BF16) {
		uint16_t *h = (uint16_t *)p;
		for (size_t i = 0; i < bytes / 2; i++) {
			float v = (rnd8() - 128) / 128.0f;
			h[i] = t == ENG_TYPE_F16 ? eng_f32_to_f16(v) : eng_f32_to_bf16(v);
		}
	} else {
		/* every 2-byte-aligned half in a block could be a scale: make
		 * the leading/trailing scale fields sane by overwriting the
		 * first and last 4 bytes with small halves */
		for (int64_t b = 0; b < (int64_t)(bytes / tr->bytes); b++) {
			uint8_t *blk = p + b * tr->bytes;
			eng_f16 h = eng_f32_to_f16(0.01f);
			memcpy(blk, &h, 2);
			memcpy(blk + 2, &h, 2);
			memcpy(blk + tr->bytes - 2, &h, 2);
			memcpy(blk + tr->bytes - 4, &h, 2);
		}
	}
	return p;
}

struct shape {
	const char *what;
	int64_t in, out;
	const char *types;	/* default types for this shape */
};

static const struct shape shapes[] = {
	{ "attn_q 640->1024", 640, 1024, "q5_0,q8_0,q4_0,f16,f32" },
	{ "ffn_up/gate 640->2048", 640, 2048, "q5_0,q8_0,q4_0,f16,f32" },
	{ "ffn_down 2048->640", 2048, 640, "q6_K,q4_K,q5_0,q8_0,f16,f32" },
	{ "attn_out 1024->640", 1024, 640, "q4_K,q6_K,q8_0" },
	{ "output 640->262144", 640, 262144, "q8_0,q5_0" },
};

static int in_list(const char *list, const char *name)
{
	size_t n = strlen(name);
	for (const char *p = list; p && *p;) {
		const char *e = strchr(p, ',');
		size_t len = e ? (size_t)(e - p) : strlen(p);
		if (len == n && !strncmp(p, name, n))
			return 1;
		p = e ? e + 1 : NULL;
	}
	return 0;
}

/* Best time of repeated calls, at least min_s in total and 3 calls. */
static double time_matmul(float *out, const eng_qmat *w, const float *x,
			  int64_t nt, eng_pool *pool, double min_s, double *best_cpu)
{
	double best = 1e30, start = now();
	int reps = 0;
	*best_cpu = 1e30;
	if (eng_matmul(out, w, x, nt, pool))	/* warm-up, page faults */
		return -1;
	while (reps < 3 || now() - start < min_s) {
		double t0 = now(), c0 = cpu_now();
		eng_matmul(out, w, x, nt, pool);
		double dt = now() - t0, dc = cpu_now() - c0;
		if (dt < best)
			best = dt;
		if (dc < *best_cpu)
			*best_cpu = dc;
		reps++;
	}
	return best;
}

/* ---- machine: FMA peak and triad bandwidth ------------------------------ */

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#include <immintrin.h>
__attribute__((target("avx512f"))) static void fma_loop(void *arg, int ith, int nth)
{
	double *res = arg;
	__m512 a[12];
	const __m512 m = _mm512_set1_ps(0.999999f), c = _mm512_set1_ps(1e-7f);
	for (int i = 0; i < 12; i++)
		a[i] = _mm512_set1_ps((float)i);
	const long iters = 20 * 1000 * 1000;
	struct timespec c0, c1;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c0);
	double t0 = now();
	for (long k = 0; k < iters; k++)
		for (int i = 0; i < 12; i++)
			a[i] = _mm512_fmadd_ps(a[i], m, c);
	double dt = now() - t0;
	clock_gettime(CLOCK_THREAD_CPUTIME_ID, &c1);
	double dc = (c1.tv_sec - c0.tv_sec) + (c1.tv_nsec - c0.tv_nsec) * 1e-9;
	float s = 0;
	for (int i = 0; i < 12; i++)
		s += _mm512_reduce_add_ps(a[i]);
	res[ith] = iters * 12.0 * 32.0 / dt / 1e9 + (s == 12345.f);
	res[ENG_POOL_MAX_THREADS / 2 + ith] = iters * 12.0 * 32.0 / dc / 1e9;
	(void)nth;
}
#endif

struct triad {
	float *a, *b, *c;
	size_t n;
};

static void triad_task(void *arg, int ith, int nth)
{
	struct triad *t = arg;
	size_t lo = t->n * ith / nth, hi = t->n * (ith + 1) / nth;
	for (size_t i = lo; i < hi; i++)
		t->a[i] = t->b[i] + 3.0f * t->c[i];
}

static void machine(eng_pool *pool)
{
	int nth = eng_pool_threads(pool);
#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
	if (__builtin_cpu_supports("avx512f")) {
		double res[ENG_POOL_MAX_THREADS] = { 0 }, sum = 0, sumc = 0;
		eng_pool_run(pool, fma_loop, res);
		for (int i = 0; i < nth && i < ENG_POOL_MAX_THREADS / 2; i++) {
			sum += res[i];
			sumc += res[ENG_POOL_MAX_THREADS / 2 + i];
		}
		printf("measured f32 FMA peak (AVX-512, %d threads): %.1f GFLOP/s wall-clock, "
		       "%.1f GFLOP/s per CPU-second summed over threads\n", nth, sum, sumc);
	}
#endif
	struct triad t;
	t.n = 32u << 20;	/* 3 x 128 MiB: far past the caches */
	t.a = aligned_alloc(64, t.n * 4);
	t.b = aligned_alloc(64, t.n * 4);
	t.c = aligned_alloc(64, t.n * 4);
	if (!t.a || !t.b || !t.c)
		return;
	for (size_t i = 0; i < t.n; i++) {
		t.a[i] = 0;
		t.b[i] = 1;
		t.c[i] = 2;
	}
	double best = 1e30;
	for (int r = 0; r < 5; r++) {
		double t0 = now();
		eng_pool_run(pool, triad_task, &t);
		double dt = now() - t0;
		if (dt < best)
			best = dt;
	}
	printf("stream triad (%d threads, 3 x %zu MiB): %.1f GB/s (counting 3 arrays, "
	       "write-allocate not counted)\n", nth, t.n * 4 >> 20, 3.0 * t.n * 4 / best / 1e9);
	free(t.a);
	free(t.b);
	free(t.c);
}

/* Compute ceiling of the kernels themselves: one thread, a 4-row x 4-token
 * tile whose data stays in L1, called in a loop. */
static void kernel_ceiling(const char *types, double min_s)
{
	printf("\n| kernel (L1-resident, 1 thread, n=2048, per CPU-second) | type | GFLOP/s |\n|---|---|---:|\n");
	const int64_t n = 2048;
	for (int ti = 0; ti <= ENG_TYPE_BF16; ti++) {
		eng_type t = (eng_type)ti;
		const eng_type_traits *tr = eng_type_traits_get(t);
		if (!tr || !tr->has_dot || (types && !in_list(types, tr->name)))
			continue;
		size_t ws, as;
		void *w = make_weights(t, 4, n, &ws);
		if (!w || eng_row_bytes(tr->dot_type, n, &as))
			return;
		float *x = malloc(n * 4 * 4), out[64];
		void *a = malloc(as * 4);
		for (int64_t i = 0; i < 4 * n; i++)
			x[i] = (rnd8() - 128) / 64.0f;
		for (int k = 0; k < 4; k++)
			eng_quantize_row(tr->dot_type, x + k * n, (char *)a + k * as, n);
		eng_vec_dot_fn dot = eng_vec_dot_get(t, eng_simd_active());
		eng_tile_fn tile = eng_tile_get(t, eng_simd_active());
		for (int mode = 0; mode < 3; mode++) {
			if (mode == 2 && !tile)
				break;
			long calls = 0;
			double t0 = cpu_now(), dt;
			do {
				for (int rep = 0; rep < 64; rep++) {
					if (mode == 2) {
						tile(n, w, ws, a, as, out, 4);
					} else {
						int nt = mode ? 4 : 1;
						for (int r = 0; r < 4; r++)
							dot(n, (char *)w + r * ws, a, as, out + r, 4, nt);
					}
				}
				calls += 64;
			} while ((dt = cpu_now() - t0) < min_s / 4);
			double flop = 2.0 * n * 4 * (mode ? 4 : 1) * calls;
			printf("| %s | %s | %.1f |\n",
			       mode == 0 ? "vec_dot, 1 token" : mode == 1 ? "vec_dot, 4 tokens"
									: "tile 4 rows x 4 tokens",
			       tr->name, flop / dt / 1e9);
		}
		free(w);
		free(x);
		free(a);
	}
}

int main(int argc, char **argv)
{
	int threads = 2;
	const char *tokens = "1,512", *types = NULL, *simd = NULL;
	double min_s = 0.5;
	int skip_machine = 0, ceiling_only = 0, head_decode_only = 0;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "-t") && i + 1 < argc)
			threads = atoi(argv[++i]);
		else if (!strcmp(argv[i], "-n") && i + 1 < argc)
			tokens = argv[++i];
		else if (!strcmp(argv[i], "-T") && i + 1 < argc)
			types = argv[++i];
		else if (!strcmp(argv[i], "-s") && i + 1 < argc)
			simd = argv[++i];
		else if (!strcmp(argv[i], "-m") && i + 1 < argc)
			min_s = atof(argv[++i]);
		else if (!strcmp(argv[i], "-M"))
			skip_machine = 1;
		else if (!strcmp(argv[i], "-K"))
			ceiling_only = 1;
		else if (!strcmp(argv[i], "-H"))
			head_decode_only = 1;
		else {
			fprintf(stderr, "usage: %s [-t threads] [-s scalar|avx2|avx512] "
				"[-n tokens,..] [-T types,..] [-m min_seconds] [-M] [-K] [-H]\n", argv[0]);
			return 2;
		}
	}
	if (simd) {
		for (int l = 0; l <= ENG_SIMD_AVX512; l++)
			if (!strcmp(simd, eng_simd_name((eng_simd)l)) &&
			    eng_simd_force((eng_simd)l)) {
				fprintf(stderr, "CPU lacks %s\n", simd);
				return 1;
			}
	}
	eng_pool *pool;
	int rc = eng_pool_open(&pool, threads);
	if (rc) {
		fprintf(stderr, "pool: %s\n", eng_strerror(rc));
		return 1;
	}
	printf("simd level: %s, threads: %d\n", eng_simd_name(eng_simd_active()), threads);
	if (!skip_machine)
		machine(pool);
	kernel_ceiling(types, min_s);
	if (ceiling_only) {
		eng_pool_close(pool);
		return 0;
	}
	printf("\n| shape | type | tokens | ms/call | GFLOP/s | weight GB/s |"
	       " CPU-s/call / threads (ms) | GFLOP/s by CPU time |\n"
	       "|---|---|---:|---:|---:|---:|---:|---:|\n");
	for (size_t si = 0; si < sizeof shapes / sizeof shapes[0]; si++) {
		const struct shape *sh = &shapes[si];
		for (int t = 0; t <= ENG_TYPE_BF16; t++) {
			const eng_type_traits *tr = eng_type_traits_get((eng_type)t);
			if (!tr || !tr->has_dot || !in_list(types ? types : sh->types, tr->name))
				continue;
			if (sh->in % tr->blck)
				continue;
			size_t stride;
			void *wd = make_weights((eng_type)t, sh->out, sh->in, &stride);
			if (!wd)
				continue;
			eng_qmat w = { (eng_type)t, sh->out, sh->in, stride, wd, NULL };
			for (const char *p = tokens; p && *p;) {
				int64_t nt = atoll(p);
				p = strchr(p, ',');
				p = p ? p + 1 : NULL;
				if (nt < 1 || (head_decode_only && nt > 1 && sh->out > 100000))
					continue;
				float *x = malloc(nt * sh->in * 4);
				float *out = malloc(nt * sh->out * 4);
				if (!x || !out)
					return 1;
				for (int64_t i = 0; i < nt * sh->in; i++)
					x[i] = (rnd8() - 128) / 64.0f;
				double dc, dt = time_matmul(out, &w, x, nt, pool, min_s, &dc);
				double flop = 2.0 * nt * sh->in * sh->out;
				dc /= threads;
				printf("| %s | %s | %lld | %.3f | %.1f | %.1f | %.3f | %.1f |\n",
				       sh->what, tr->name, (long long)nt, dt * 1e3, flop / dt / 1e9,
				       (double)stride * sh->out / dt / 1e9, dc * 1e3, flop / dc / 1e9);
				fflush(stdout);
				free(x);
				free(out);
			}
			free(wd);
		}
	}
	eng_pool_close(pool);
	return 0;
}
