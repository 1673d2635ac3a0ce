/* test_matmul.c - every SIMD dot kernel against the scalar reference
 * (named error bound per format), eng_matmul against the reference product
 * and against a naive f32 product of dequantized weights, over odd sizes,
 * 1..67 tokens and 1..3 threads (from 16 tokens on, the interleaved gemm
 * where the CPU has AVX-512); the thread pool; bad arguments. */
#include "config.h"
#include <check.h>
#include <math.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include "kernels.h"
#include "kernels_testutil.h"

/* Error bounds, relative to sum |w_i a_i| of the dot product.  SIMD and
 * reference kernels compute the same exact integer sums per block and
 * differ only in the order of float additions (and FMA rounding), so the
 * bounds are a few ulps times the number of blocks, with margin. */
#define TOL_F32   2e-6	/* 8/16 float lanes vs a double sum */
#define TOL_F16   2e-6
#define TOL_BF16  2e-6
#define TOL_Q4_0  4e-6
#define TOL_Q4_1  4e-6	/* plus the m*s term, the same in both */
#define TOL_Q5_0  4e-6
#define TOL_Q5_1  4e-6
#define TOL_Q8_0  4e-6
#define TOL_Q2_K  4e-6
#define TOL_Q3_K  4e-6
#define TOL_Q4_K  4e-6	/* min term enters in float lanes: see kernels_x86.h */
#define TOL_Q5_K  4e-6
#define TOL_Q6_K  4e-6

static double tol_of(eng_type t)
{
	switch (t) {
	case ENG_TYPE_F32:  return TOL_F32;
	case ENG_TYPE_F16:  return TOL_F16;
	case ENG_TYPE_BF16: return TOL_BF16;
	case ENG_TYPE_Q4_0: return TOL_Q4_0;
	case ENG_TYPE_Q4_1: return TOL_Q4_1;
	case ENG_TYPE_Q5_0: return TOL_Q5_0;
	case ENG_TYPE_Q5_1: return TOL_Q5_1;
	case ENG_TYPE_Q8_0: return TOL_Q8_0;
	case ENG_TYPE_Q2_K: return TOL_Q2_K;
	case ENG_TYPE_Q3_K: return TOL_Q3_K;
	case ENG_TYPE_Q4_K: return TOL_Q4_K;
	case ENG_TYPE_Q5_K: return TOL_Q5_K;
	case ENG_TYPE_Q6_K: return TOL_Q6_K;
	default:            return 0;
	}
}

/* The element counts a kernel is tried on: single blocks, the model's
 * widths, and for float types every tail length around the vector width. */
static int sizes_of(eng_type t, int64_t *out)
{
	const eng_type_traits *tr = eng_type_traits_get(t);
	if (tr->blck == 1) {
		static const int64_t f[] = { 1, 3, 7, 8, 9, 15, 16, 17, 31, 32, 33, 63, 640, 645, 2048 };
		memcpy(out, f, sizeof f);
		return (int)(sizeof f / sizeof f[0]);
	}
	if (tr->blck == 32) {
		static const int64_t q[] = { 32, 64, 96, 640, 2048 };
		memcpy(out, q, sizeof q);
		return 5;
	}
	static const int64_t k[] = { 256, 512, 768, 2048 };
	memcpy(out, k, sizeof k);
	return 4;
}

/* sum |w_i a_i| over the dequantized values. */
static double magnitude(eng_type t, eng_type dt, const void *w, const void *a,
			int64_t n)
{
	float *wf = malloc(n * 4), *af = malloc(n * 4);
	ck_assert_int_eq(eng_dequant_row_ref(t, w, wf, n), 0);
	ck_assert_int_eq(eng_dequant_row_ref(dt, a, af, n), 0);
	double m = 0;
	for (int64_t i = 0; i < n; i++)
		m += fabs((double)wf[i] * af[i]);
	free(wf);
	free(af);
	return m;
}

/* _i walks types x levels. */
START_TEST(test_simd_vs_ref)
{
	eng_type t = tu_dot_types[_i % TU_N_DOT_TYPES];
	eng_simd level = (eng_simd)(1 + _i / TU_N_DOT_TYPES);
	const eng_type_traits *tr = eng_type_traits_get(t);
	if (level > eng_simd_supported()) {
		/* Nothing to compare on this CPU; say so rather than pass
		 * silently (the level is still covered where it exists). */
		fprintf(stderr, "test_simd_vs_ref: %s lacks %s, %s not compared\n",
			"this CPU", eng_simd_name(level), tr->name);
		ck_assert_int_eq(eng_simd_force(level), ENG_ERANGE);
		return;
	}
	eng_vec_dot_fn ref = eng_vec_dot_get(t, ENG_SIMD_SCALAR);
	eng_vec_dot_fn fast = eng_vec_dot_get(t, level);
	ck_assert_ptr_nonnull(fast);
	int64_t sizes[16];
	int ns = sizes_of(t, sizes);
	tu_seed(1000 + _i);
	for (int si = 0; si < ns; si++) {
		int64_t n = sizes[si];
		size_t wb, ab;
		ck_assert_int_eq(eng_row_bytes(t, n, &wb), 0);
		ck_assert_int_eq(eng_row_bytes(tr->dot_type, n, &ab), 0);
		size_t as = ab + 8;	/* padded rows: stride != row size */
		void *w = malloc(wb);
		char *a = malloc(as * ENG_NT_MAX);
		float *x = malloc(n * 4);
		for (int rep = 0; rep < 4; rep++) {
			tu_weights(t, w, n);
			for (int k = 0; k < ENG_NT_MAX; k++) {
				tu_floats(x, n, k == 3 ? 100.0f : 1.0f);
				ck_assert_int_eq(eng_quantize_row(tr->dot_type, x, a + k * as, n), 0);
			}
			for (int nt = 1; nt <= ENG_NT_MAX; nt++) {
				float want[ENG_NT_MAX], got[2 * ENG_NT_MAX];
				ref(n, w, a, as, want, 1, nt);
				fast(n, w, a, as, got, 2, nt);	/* strided output */
				for (int k = 0; k < nt; k++) {
					double mag = magnitude(t, tr->dot_type, w, a + k * as, n);
					ck_assert_msg(fabs((double)got[2 * k] - want[k]) <=
						      tol_of(t) * mag + 1e-30,
						      "%s/%s n=%lld nt=%d k=%d: got %.9g want %.9g mag %g",
						      tr->name, eng_simd_name(level), (long long)n,
						      nt, k, got[2 * k], want[k], mag);
				}
			}
		}
		free(w);
		free(a);
		free(x);
	}
}
END_TEST

/* Tile kernels (4 rows x 4 tokens) against the reference, at every level
 * that has one. */
START_TEST(test_tile_vs_ref)
{
	eng_type t = tu_dot_types[_i];
	const eng_type_traits *tr = eng_type_traits_get(t);
	eng_vec_dot_fn ref = eng_vec_dot_get(t, ENG_SIMD_SCALAR);
	int tested = 0;
	for (int lv = 0; lv <= (int)eng_simd_supported(); lv++) {
		eng_tile_fn tile = eng_tile_get(t, (eng_simd)lv);
		if (!tile)
			continue;
		tested++;
		int64_t sizes[16];
		int ns = sizes_of(t, sizes);
		tu_seed(3000 + _i);
		for (int si = 0; si < ns; si++) {
			int64_t n = sizes[si];
			size_t wb, ab;
			ck_assert_int_eq(eng_row_bytes(t, n, &wb), 0);
			ck_assert_int_eq(eng_row_bytes(tr->dot_type, n, &ab), 0);
			size_t ws = wb + 6, as = ab + 4;
			char *w = malloc(ws * ENG_TILE_ROWS), *a = malloc(as * ENG_NT_MAX);
			float *x = malloc(n * 4);
			for (int r = 0; r < ENG_TILE_ROWS; r++)
				tu_weights(t, w + r * ws, n);
			for (int k = 0; k < ENG_NT_MAX; k++) {
				tu_floats(x, n, 1.0f + k);
				ck_assert_int_eq(eng_quantize_row(tr->dot_type, x, a + k * as, n), 0);
			}
			float got[ENG_NT_MAX * 7], want;
			tile(n, w, ws, a, as, got, 7);
			for (int r = 0; r < ENG_TILE_ROWS; r++)
				for (int k = 0; k < ENG_NT_MAX; k++) {
					ref(n, w + r * ws, a + k * as, as, &want, 1, 1);
					double mag = magnitude(t, tr->dot_type, w + r * ws, a + k * as, n);
					ck_assert_msg(fabs((double)got[k * 7 + r] - want) <=
						      tol_of(t) * mag + 1e-30,
						      "%s tile/%s n=%lld r=%d t=%d: got %.9g want %.9g",
						      tr->name, eng_simd_name((eng_simd)lv),
						      (long long)n, r, k, got[k * 7 + r], want);
				}
			free(w);
			free(a);
			free(x);
		}
	}
	/* the types the default model needs at 32-element blocks have tiles
	 * where AVX-512 exists */
	if (eng_simd_supported() >= ENG_SIMD_AVX512 &&
	    (t == ENG_TYPE_Q8_0 || t == ENG_TYPE_Q5_0))
		ck_assert_int_gt(tested, 0);
}
END_TEST

/* ---- matrix products ---------------------------------------------------- */

struct mm_case {
	eng_qmat w;
	void *buf;
	float *x;
	float *wf;	/* dequantized weights, n_rows x n_cols */
};

static void mm_case_make(struct mm_case *c, eng_type t, int64_t rows,
			 int64_t cols, size_t pad, int64_t max_tokens)
{
	size_t rb;
	ck_assert_int_eq(eng_row_bytes(t, cols, &rb), 0);
	c->w = (eng_qmat){ .type = t, .n_rows = rows, .n_cols = cols,
			   .row_stride = rb + pad };
	c->buf = malloc(c->w.row_stride * rows);
	c->wf = malloc(rows * cols * 4);
	c->x = malloc(max_tokens * cols * 4);
	for (int64_t r = 0; r < rows; r++) {
		char *row = (char *)c->buf + r * c->w.row_stride;
		tu_weights(t, row, cols);
		memset(row + rb, 0x5a, pad);	/* garbage between rows */
		ck_assert_int_eq(eng_dequant_row_ref(t, row, c->wf + r * cols, cols), 0);
	}
	c->w.data = c->buf;
	tu_floats(c->x, max_tokens * cols, 1.0f);
}

static void mm_case_free(struct mm_case *c)
{
	free(c->buf);
	free(c->x);
	free(c->wf);
}

/* Checks eng_matmul over n_tokens against eng_matmul_ref (same activation
 * quantization, so only float order differs: tol_of) and against a double
 * product of dequantized weights with the unquantized x (bounded by the
 * activation rounding: half a step of each block, 0.6 with f16 scale). */
static void check_matmul(struct mm_case *c, int64_t n_tokens, eng_pool *pool)
{
	const eng_qmat *w = &c->w;
	const eng_type_traits *tr = eng_type_traits_get(w->type);
	int64_t R = w->n_rows, C = w->n_cols;
	float *got = malloc(n_tokens * R * 4), *want = malloc(n_tokens * R * 4);
	for (int64_t i = 0; i < n_tokens * R; i++)
		got[i] = NAN;
	ck_assert_int_eq(eng_matmul(got, w, c->x, n_tokens, pool), 0);
	ck_assert_int_eq(eng_matmul_ref(want, w, c->x, n_tokens), 0);
	int64_t qb = eng_type_traits_get(tr->dot_type)->blck;
	for (int64_t t = 0; t < n_tokens; t++) {
		const float *xt = c->x + t * C;
		for (int64_t r = 0; r < R; r++) {
			const float *wr = c->wf + r * C;
			double exact = 0, mag = 0, qerr = 0;
			for (int64_t b = 0; b < C / qb; b++) {
				double amax = 0;
				for (int64_t i = b * qb; i < (b + 1) * qb; i++)
					amax = fmax(amax, fabs(xt[i]));
				for (int64_t i = b * qb; i < (b + 1) * qb; i++) {
					exact += (double)wr[i] * xt[i];
					mag += fabs((double)wr[i] * xt[i]);
					if (tr->dot_type != ENG_TYPE_F32)
						qerr += fabs(wr[i]) * amax / 127.0 * 0.6;
				}
			}
			double g = got[t * R + r], rf = want[t * R + r];
			ck_assert_msg(fabs(g - rf) <= tol_of(w->type) * (mag + qerr) * 4 + 1e-30,
				      "%s %lldx%lld tok %lld/%lld row %lld: got %.9g ref %.9g",
				      tr->name, (long long)R, (long long)C, (long long)t,
				      (long long)n_tokens, (long long)r, g, rf);
			ck_assert_msg(fabs(g - exact) <= qerr + 1e-5 * mag + 1e-30,
				      "%s vs exact: tok %lld row %lld: got %.9g exact %.9g bound %g",
				      tr->name, (long long)t, (long long)r, g, exact, qerr);
		}
	}
	free(got);
	free(want);
}

/* Every type, every level, odd row counts, padded rows, 1..3 threads. */
START_TEST(test_matmul_types)
{
	eng_type t = tu_dot_types[_i];
	const eng_type_traits *tr = eng_type_traits_get(t);
	int64_t cols = tr->blck == 256 ? 512 : tr->blck == 32 ? 160 : 69;
	struct mm_case c;
	tu_seed(5000 + _i);
	mm_case_make(&c, t, 37, cols, 4, 19);
	for (int lv = 0; lv <= (int)eng_simd_supported(); lv++) {
		ck_assert_int_eq(eng_simd_force((eng_simd)lv), 0);
		for (int th = 1; th <= 3; th++) {
			eng_pool *pool;
			ck_assert_int_eq(eng_pool_open(&pool, th), 0);
			check_matmul(&c, 1, pool);
			check_matmul(&c, 5, pool);
			check_matmul(&c, 9, pool);
			check_matmul(&c, 19, pool);	/* prefill: gemm where there is one */
			eng_pool_close(pool);
		}
		check_matmul(&c, 3, NULL);
	}
	mm_case_free(&c);
}
END_TEST

/* The default model's types over token counts 1..67 (all tails of the
 * 4-token micro-kernel, and several panels), 1..3 threads. */
START_TEST(test_matmul_tokens)
{
	static const eng_type types[] = { ENG_TYPE_Q4_K, ENG_TYPE_Q6_K,
		ENG_TYPE_Q5_0, ENG_TYPE_Q8_0, ENG_TYPE_F32, ENG_TYPE_F16 };
	eng_type t = types[_i];
	const eng_type_traits *tr = eng_type_traits_get(t);
	struct mm_case c;
	tu_seed(7000 + _i);
	mm_case_make(&c, t, 130, tr->blck == 256 ? 256 : 64, 0, 67);
	eng_pool *pools[3];
	for (int th = 1; th <= 3; th++)
		ck_assert_int_eq(eng_pool_open(&pools[th - 1], th), 0);
	for (int64_t nt = 1; nt <= 67; nt += nt < 10 ? 1 : 19)
		check_matmul(&c, nt, pools[nt % 3]);
	check_matmul(&c, 67, pools[1]);
	for (int th = 1; th <= 3; th++)
		eng_pool_close(pools[th - 1]);
	mm_case_free(&c);
}
END_TEST

/* Shapes of the default model (one token), against the reference. */
START_TEST(test_matmul_model_shapes)
{
	struct { eng_type t; int64_t rows, cols; } sh[] = {
		{ ENG_TYPE_Q5_0, 1024, 640 }, { ENG_TYPE_Q8_0, 256, 640 },
		{ ENG_TYPE_Q4_K, 640, 1024 }, { ENG_TYPE_Q6_K, 640, 2048 },
	};
	eng_pool *pool;
	ck_assert_int_eq(eng_pool_open(&pool, 2), 0);
	for (size_t i = 0; i < sizeof sh / sizeof sh[0]; i++) {
		struct mm_case c;
		tu_seed(9000 + i);
		mm_case_make(&c, sh[i].t, sh[i].rows, sh[i].cols, 0, 2);
		check_matmul(&c, 1, pool);
		check_matmul(&c, 2, pool);
		mm_case_free(&c);
	}
	eng_pool_close(pool);
}
END_TEST

/* A matrix packed whole (eng_qpack_make): every type with interleaved
 * kernels, odd row counts (a partial last group), padded rows, tokens
 * 1..19, 1..3 threads, against the reference; below AVX-512 the same
 * qmat reads its rows instead.  Without AVX-512, packing is refused. */
static const eng_type packed_types[] = { ENG_TYPE_Q8_0, ENG_TYPE_Q5_0,
	ENG_TYPE_Q4_0, ENG_TYPE_Q4_K, ENG_TYPE_Q5_K, ENG_TYPE_Q6_K };

START_TEST(test_matmul_packed)
{
	eng_type t = packed_types[_i];
	const eng_type_traits *tr = eng_type_traits_get(t);
	struct mm_case c;
	eng_qpack *pk = NULL;
	eng_pool *pools[3];
	tu_seed(11000 + _i);
	mm_case_make(&c, t, 45, tr->blck == 256 ? 512 : 160, 6, 19);
	if (eng_simd_supported() < ENG_SIMD_AVX512) {
		ck_assert_int_eq(eng_qpack_make(&c.w, NULL, &pk), ENG_EUNSUP);
		ck_assert_ptr_null(pk);
		mm_case_free(&c);
		return;
	}
	for (int th = 1; th <= 3; th++)
		ck_assert_int_eq(eng_pool_open(&pools[th - 1], th), 0);
	ck_assert_int_eq(eng_simd_force(ENG_SIMD_AVX512), 0);
	ck_assert_int_eq(eng_qpack_make(&c.w, pools[2], &pk), 0);
	ck_assert_uint_eq(eng_qpack_bytes(pk), 6 * eng_gemm_pack_bytes(
		eng_gemm_get_whole(t, ENG_SIMD_AVX512), c.w.n_cols));	/* 45 rows: 6 groups */
	if (t == ENG_TYPE_Q5_0)	/* at its own 5 bits: 8 rows x 22 bytes + 16 */
		ck_assert_uint_eq(eng_qpack_bytes(pk), 6 * (c.w.n_cols / 32) * 192);
	/* packed by one thread: the same bytes */
	eng_qpack *pk1;
	ck_assert_int_eq(eng_qpack_make(&c.w, NULL, &pk1), 0);
	c.w.pack = pk;
	float *a = malloc(19 * 45 * 4), *b = malloc(19 * 45 * 4);
	ck_assert_int_eq(eng_matmul(a, &c.w, c.x, 19, NULL), 0);
	c.w.pack = pk1;
	ck_assert_int_eq(eng_matmul(b, &c.w, c.x, 19, NULL), 0);
	ck_assert_mem_eq(a, b, 19 * 45 * 4);
	eng_qpack_free(pk1);
	c.w.pack = pk;
	for (int64_t nt = 1; nt <= 19; nt += nt < 4 ? 1 : 5)
		check_matmul(&c, nt, pools[nt % 3]);
	check_matmul(&c, 1, NULL);
	/* the rows themselves where the level is lower */
	ck_assert_int_eq(eng_simd_force(ENG_SIMD_AVX2), 0);
	check_matmul(&c, 1, pools[1]);
	check_matmul(&c, 19, pools[1]);
	ck_assert_int_eq(eng_simd_force(ENG_SIMD_AVX512), 0);
	/* a pack of another matrix is refused */
	struct mm_case o;
	eng_qpack *po;
	mm_case_make(&o, t, 44, c.w.n_cols, 0, 1);
	ck_assert_int_eq(eng_qpack_make(&o.w, NULL, &po), 0);
	c.w.pack = po;
	ck_assert_int_eq(eng_matmul(a, &c.w, c.x, 1, NULL), ENG_EINVAL);
	eng_qpack_free(po);
	mm_case_free(&o);
	free(a);
	free(b);
	for (int th = 1; th <= 3; th++)
		eng_pool_close(pools[th - 1]);
	eng_qpack_free(pk);
	mm_case_free(&c);
}
END_TEST

START_TEST(test_qpack_bad_args)
{
	static uint8_t wbuf[4096];
	eng_qmat w = { ENG_TYPE_Q8_0, 2, 64, 68, wbuf, NULL };
	eng_qpack *p = (eng_qpack *)wbuf;
	ck_assert_int_eq(eng_qpack_make(NULL, NULL, &p), ENG_EINVAL);
	ck_assert_ptr_null(p);
	ck_assert_int_eq(eng_qpack_make(&w, NULL, NULL), ENG_EINVAL);
	eng_qmat b = w;
	b.n_cols = 48;
	ck_assert_int_eq(eng_qpack_make(&b, NULL, &p), ENG_EINVAL);
	b = w;
	b.type = ENG_TYPE_F16;	/* no interleaved kernels */
	b.row_stride = 128;
	ck_assert_int_eq(eng_qpack_make(&b, NULL, &p), ENG_EUNSUP);
	ck_assert_ptr_null(p);
	eng_qpack_free(NULL);
	ck_assert_uint_eq(eng_qpack_bytes(NULL), 0);
}
END_TEST

START_TEST(test_matmul_bad_args)
{
	static uint8_t wbuf[4096];
	float x[512] = { 0 }, out[64];
	eng_qmat w = { ENG_TYPE_Q8_0, 2, 64, 68, wbuf, NULL };
	ck_assert_int_eq(eng_matmul(out, &w, x, 1, NULL), 0);
	ck_assert_int_eq(eng_matmul(NULL, &w, x, 1, NULL), ENG_EINVAL);
	ck_assert_int_eq(eng_matmul(out, NULL, x, 1, NULL), ENG_EINVAL);
	ck_assert_int_eq(eng_matmul(out, &w, NULL, 1, NULL), ENG_EINVAL);
	ck_assert_int_eq(eng_matmul(out, &w, x, 0, NULL), ENG_EINVAL);
	eng_qmat b = w;
	b.n_cols = 48;	/* not a multiple of 32 */
	ck_assert_int_eq(eng_matmul(out, &b, x, 1, NULL), ENG_EINVAL);
	b = w;
	b.row_stride = 67;	/* shorter than a row, and odd */
	ck_assert_int_eq(eng_matmul(out, &b, x, 1, NULL), ENG_EINVAL);
	b = w;
	b.type = ENG_TYPE_Q8_K;	/* activation-only type */
	b.n_cols = 256;
	b.row_stride = 292;
	ck_assert_int_eq(eng_matmul(out, &b, x, 1, NULL), ENG_EINVAL);
	b = w;
	b.type = (eng_type)77;
	ck_assert_int_eq(eng_matmul(out, &b, x, 1, NULL), ENG_EINVAL);
	b = w;
	b.type = ENG_TYPE_F32;
	b.n_cols = 4;
	b.row_stride = 18;	/* f32 rows must stay 4-aligned */
	ck_assert_int_eq(eng_matmul(out, &b, x, 1, NULL), ENG_EINVAL);
	b = w;
	b.n_rows = INT64_MAX / 2;	/* out would overflow size_t */
	ck_assert_int_eq(eng_matmul(out, &b, x, 8, NULL), ENG_ERANGE);
	ck_assert_int_eq(eng_matmul_ref(out, &b, x, 8), ENG_ERANGE);
}
END_TEST

/* ---- thread pool --------------------------------------------------------- */

struct count_task {
	_Atomic int calls[8];
	_Atomic int nth_seen;
};

static void count_fn(void *arg, int ith, int nth)
{
	struct count_task *k = arg;
	atomic_fetch_add(&k->calls[ith], 1);
	atomic_store(&k->nth_seen, nth);
}

START_TEST(test_pool_runs_each_thread_once)
{
	for (int th = 1; th <= 4; th++) {
		eng_pool *pool;
		ck_assert_int_eq(eng_pool_open(&pool, th), 0);
		ck_assert_int_eq(eng_pool_threads(pool), th);
		struct count_task k;
		memset(&k, 0, sizeof k);
		for (int run = 0; run < 2000; run++)
			eng_pool_run(pool, count_fn, &k);
		for (int i = 0; i < 8; i++)
			ck_assert_int_eq(k.calls[i], i < th ? 2000 : 0);
		ck_assert_int_eq(k.nth_seen, th);
		ck_assert_ptr_nonnull(eng__pool_scratch(pool, 100));
		void *big = eng__pool_scratch(pool, 1 << 20);
		ck_assert_ptr_nonnull(big);
		ck_assert_uint_eq((uintptr_t)big % 64, 0);
		ck_assert_ptr_eq(eng__pool_scratch(pool, 10), big);
		eng_pool_close(pool);
	}
	ck_assert_int_eq(eng_pool_threads(NULL), 1);
	eng_pool_close(NULL);
	eng_pool *p;
	ck_assert_int_eq(eng_pool_open(&p, ENG_POOL_MAX_THREADS + 1), ENG_EINVAL);
	ck_assert_int_eq(eng_pool_open(NULL, 2), ENG_EINVAL);
	ck_assert_int_eq(eng_pool_open(&p, 0), 0);	/* one per CPU */
	ck_assert_int_ge(eng_pool_threads(p), 1);
	eng_pool_close(p);
}
END_TEST

/* Workers that went to sleep wake up for the next task. */
START_TEST(test_pool_wakes_sleepers)
{
	eng_pool *pool;
	ck_assert_int_eq(eng_pool_open(&pool, 3), 0);
	struct count_task k;
	memset(&k, 0, sizeof k);
	for (int run = 0; run < 5; run++) {
		struct timespec ts = { 0, 20 * 1000 * 1000 };	/* past the spin */
		nanosleep(&ts, NULL);
		eng_pool_run(pool, count_fn, &k);
	}
	for (int i = 0; i < 3; i++)
		ck_assert_int_eq(k.calls[i], 5);
	eng_pool_close(pool);
}
END_TEST

/* ENGRAM_SIMD caps the level, read on first use (each test runs in its
 * own forked process, where the level is not yet read). */
START_TEST(test_simd_env_cap)
{
	const char *fork = getenv("CK_FORK");
	if (fork && !strcmp(fork, "no"))
		return;	/* the level may already be cached in this process */
	setenv("ENGRAM_SIMD", "scalar", 1);
	ck_assert_int_eq(eng_simd_active(), ENG_SIMD_SCALAR);
	ck_assert_int_eq(eng_simd_force(eng_simd_supported()), 0);
	ck_assert_int_eq(eng_simd_active(), eng_simd_supported());
}
END_TEST

static Suite *matmul_suite(void)
{
	Suite *s = suite_create("matmul");
	TCase *tc = tcase_create("kernels");
	tcase_set_timeout(tc, 120);
	tcase_add_loop_test(tc, test_simd_vs_ref, 0, 2 * TU_N_DOT_TYPES);
	tcase_add_loop_test(tc, test_tile_vs_ref, 0, TU_N_DOT_TYPES);
	tcase_add_loop_test(tc, test_matmul_types, 0, TU_N_DOT_TYPES);
	tcase_add_loop_test(tc, test_matmul_tokens, 0, 6);
	tcase_add_test(tc, test_matmul_model_shapes);
	tcase_add_test(tc, test_matmul_bad_args);
	tcase_add_loop_test(tc, test_matmul_packed, 0,
			    (int)(sizeof packed_types / sizeof packed_types[0]));
	tcase_add_test(tc, test_qpack_bad_args);
	tcase_add_test(tc, test_simd_env_cap);
	tcase_add_test(tc, test_pool_runs_each_thread_once);
	tcase_add_test(tc, test_pool_wakes_sleepers);
	suite_add_tcase(s, tc);
	return s;
}

int main(void)
{
	fprintf(stderr, "test_matmul: CPU supports %s\n",
		eng_simd_name(eng_simd_supported()));
	SRunner *sr = srunner_create(matmul_suite());
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? EXIT_FAILURE : EXIT_SUCCESS;
}
