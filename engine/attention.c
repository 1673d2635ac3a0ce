/* attention.c - attention of one layer for one step of the forward pass:
 * the group of query heads that share a kv head is computed together,
 * over the positions a token may see (causal; the window of a local
 * layer; a sparse plan's ranges on a global layer).
 *
 * Three ways, one result up to rounding (see forward.c's header for the
 * numerics): attn_one, a two-pass f32 softmax per token; attn_one_f16acc,
 * llama.cpp's one-chunk kernel (f16 queries and value accumulator) for
 * steps of fewer than 64 tokens, on chunks of 1024 keys combined in order
 * (a decode step's chunks spread over the pool); attn_tile, TILE_TOKENS tokens at once
 * over each key block (AVX-512; f32 online softmax).  The record of what
 * the last token attended (eng_fwd_record) is made here too.
 *
 * State: struct eng_fwd (fwd_internal.h); the per-thread scratch is owned
 * by the eng_fwd (eng__attn_reserve).
 */
#include "config.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "fwd_internal.h"

/* ------------------------------------------------------------------------
 * Small vector helpers (scalar and AVX2)
 * ------------------------------------------------------------------------ */

/* For each of ng heads h: out[h*n + d] += sum_j p[h*ps + j] * v_j[d], over
 * nk value rows v_j at v + j*vs bytes (f16 if is_f16, else f32).  Each
 * value row is converted once for all heads of the group; outputs are
 * loaded and stored once per call (4 heads) or per 8 rows.  Callers pass
 * blocks of VACC_ROWS rows so that the block stays in L1. */
#define VACC_ROWS 32
static void vacc_scalar(uint32_t n, float *out, uint32_t ng, const float *p,
    size_t ps, const void *v, size_t vs, uint32_t nk, int is_f16)
{
	for (uint32_t j = 0; j < nk; j++) {
		const char *r = (const char *)v + j * vs;
		for (uint32_t d = 0; d < n; d++) {
			float x = is_f16 ? eng_f16_to_f32(((const eng_f16 *)
			    (const void *)r)[d]) : ((const float *)(const void *)
			    r)[d];
			for (uint32_t h = 0; h < ng; h++)
				out[h * n + d] += p[h * ps + j] * x;
		}
	}
}

#if FWD_X86
/* The common group of 4 query heads per kv head (Gemma 3, Llama 3): the
 * four accumulators stay in registers over all nk rows. */
__attribute__((target("avx2,fma,f16c")))
static void vacc4_avx2(uint32_t n, float *out, const float *p, size_t ps,
    const void *v, size_t vs, uint32_t nk, int is_f16)
{
	for (uint32_t d = 0; d < n; d += 8) {
		__m256 a0 = _mm256_loadu_ps(out + d);
		__m256 a1 = _mm256_loadu_ps(out + n + d);
		__m256 a2 = _mm256_loadu_ps(out + 2 * n + d);
		__m256 a3 = _mm256_loadu_ps(out + 3 * n + d);
		const char *r = (const char *)v;
		for (uint32_t j = 0; j < nk; j++, r += vs) {
			__m256 x = is_f16 ? _mm256_cvtph_ps(_mm_loadu_si128(
			    (const __m128i *)(const void *)(r + 2 * d))) :
			    _mm256_loadu_ps((const float *)(const void *)
			    (r + 4 * d));
			a0 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + j), x, a0);
			a1 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + ps + j), x,
			    a1);
			a2 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 2 * ps + j),
			    x, a2);
			a3 = _mm256_fmadd_ps(_mm256_broadcast_ss(p + 3 * ps + j),
			    x, a3);
		}
		_mm256_storeu_ps(out + d, a0);
		_mm256_storeu_ps(out + n + d, a1);
		_mm256_storeu_ps(out + 2 * n + d, a2);
		_mm256_storeu_ps(out + 3 * n + d, a3);
	}
}

__attribute__((target("avx2,fma,f16c")))
static void vacc_avx2(uint32_t n, float *out, uint32_t ng, const float *p,
    size_t ps, const void *v, size_t vs, uint32_t nk, int is_f16)
{
	uint32_t d = 0;

	if (ng == 4 && n % 8 == 0) {
		vacc4_avx2(n, out, p, ps, v, vs, nk, is_f16);
		return;
	}
	for (uint32_t j0 = 0; j0 < nk; j0 += 8) {
		uint32_t m = nk - j0 < 8 ? nk - j0 : 8;
		const char *v0 = (const char *)v + j0 * vs;
		for (d = 0; d + 8 <= n; d += 8) {
			__m256 vj[8];
			const char *r = v0;
			for (uint32_t j = 0; j < m; j++, r += vs)
				vj[j] = is_f16 ? _mm256_cvtph_ps(_mm_loadu_si128(
				    (const __m128i *)(const void *)(r + 2 * d))) :
				    _mm256_loadu_ps((const float *)(const void *)
				    (r + 4 * d));
			for (uint32_t h = 0; h < ng; h++) {
				__m256 acc = _mm256_loadu_ps(out + h * n + d);
				for (uint32_t j = 0; j < m; j++)
					acc = _mm256_fmadd_ps(_mm256_broadcast_ss(
					    p + h * ps + j0 + j), vj[j], acc);
				_mm256_storeu_ps(out + h * n + d, acc);
			}
		}
		if (d < n)
			for (uint32_t h = 0; h < ng; h++)
				vacc_scalar(n - d, out + h * n + d, 1,
				    p + h * ps + j0, ps, v0 + (is_f16 ? 2 : 4) *
				    d, vs, m, is_f16);
	}
}
#endif

/* y = f16(y * a), y = f16(y + x * a): the f16 accumulator of llama.cpp's
 * CPU flash attention (ggml_vec_scale_f16, ggml_vec_mad_f16). */
static void scale_f16_scalar(uint32_t n, eng_f16 *y, float a)
{
	for (uint32_t i = 0; i < n; i++)
		y[i] = eng_f32_to_f16(eng_f16_to_f32(y[i]) * a);
}

static void mad_f16_scalar(uint32_t n, eng_f16 *y, const eng_f16 *x, float a)
{
	for (uint32_t i = 0; i < n; i++)
		y[i] = eng_f32_to_f16(fmaf(eng_f16_to_f32(x[i]), a,
		    eng_f16_to_f32(y[i])));
}

/* y = x rounded to f16 and back (llama.cpp's f16 queries). */
static void round_f16_scalar(uint32_t n, float *y, const float *x)
{
	for (uint32_t i = 0; i < n; i++)
		y[i] = eng_f16_to_f32(eng_f32_to_f16(x[i]));
}

/* The same for ng accumulators n apart, y_h += x * a[h]: elementwise, so
 * any vector width gives the same bits; x is read once for all heads. */
static void mad_f16_group_scalar(uint32_t n, eng_f16 *y, const eng_f16 *x,
    const float *a, uint32_t ng)
{
	for (uint32_t h = 0; h < ng; h++)
		mad_f16_scalar(n, y + (size_t)h * n, x, a[h]);
}

#if FWD_X86
__attribute__((target("avx2,fma,f16c")))
static void scale_f16_avx2(uint32_t n, eng_f16 *y, float a)
{
	__m256 va = _mm256_set1_ps(a);
	uint32_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 v = _mm256_cvtph_ps(_mm_loadu_si128((__m128i *)(y + i)));
		_mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(
		    _mm256_mul_ps(v, va), _MM_FROUND_TO_NEAREST_INT));
	}
	scale_f16_scalar(n - i, y + i, a);
}

__attribute__((target("avx2,f16c")))
static void round_f16_f16c(uint32_t n, float *y, const float *x)
{
	uint32_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(y + i, _mm256_cvtph_ps(_mm256_cvtps_ph(
		    _mm256_loadu_ps(x + i), _MM_FROUND_TO_NEAREST_INT)));
	round_f16_scalar(n - i, y + i, x + i);
}

__attribute__((target("avx2,fma,f16c")))
static void mad_f16_group_avx2(uint32_t n, eng_f16 *y, const eng_f16 *x,
    const float *a, uint32_t ng)
{
	uint32_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 vx = _mm256_cvtph_ps(_mm_loadu_si128(
		    (const __m128i *)(x + i)));
		for (uint32_t h = 0; h < ng; h++) {
			eng_f16 *yh = y + (size_t)h * n + i;
			__m256 vy = _mm256_cvtph_ps(_mm_loadu_si128(
			    (__m128i *)yh));
			_mm_storeu_si128((__m128i *)yh, _mm256_cvtps_ph(
			    _mm256_fmadd_ps(vx, _mm256_set1_ps(a[h]), vy),
			    _MM_FROUND_TO_NEAREST_INT));
		}
	}
	for (uint32_t h = 0; h < ng; h++)
		mad_f16_scalar(n - i, y + (size_t)h * n + i, x + i, a[h]);
}

__attribute__((target("avx512f,f16c,fma")))
static void mad_f16_group_avx512(uint32_t n, eng_f16 *y, const eng_f16 *x,
    const float *a, uint32_t ng)
{
	uint32_t i = 0;
	for (; i + 16 <= n; i += 16) {
		__m512 vx = _mm512_cvtph_ps(_mm256_loadu_si256(
		    (const __m256i *)(x + i)));
		for (uint32_t h = 0; h < ng; h++) {
			eng_f16 *yh = y + (size_t)h * n + i;
			__m512 vy = _mm512_cvtph_ps(_mm256_loadu_si256(
			    (__m256i *)yh));
			_mm256_storeu_si256((__m256i *)yh, _mm512_cvtps_ph(
			    _mm512_fmadd_ps(vx, _mm512_set1_ps(a[h]), vy),
			    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
		}
	}
	for (uint32_t h = 0; h < ng; h++)
		mad_f16_scalar(n - i, y + (size_t)h * n + i, x + i, a[h]);
}
#endif

#if FWD_X86
/* mad_f16_group over nr value rows x[r] in turn, each after its own
 * rescale y_h = f16(y_h * ms[r * 4 + h]) where that is not 1 (scale_f16:
 * a new running maximum): the roundings of the row-by-row calls in the
 * same order, bit for bit, but each 16 elements of 4 heads' accumulators
 * stay in registers over the rows instead of going through memory, a
 * load-convert-store chain, at every row. */
static inline __attribute__((always_inline, target("avx512f,f16c,fma")))
__m512 f16_round512(__m512 v)
{
	return _mm512_cvtph_ps(_mm512_cvtps_ph(v, _MM_FROUND_TO_NEAREST_INT |
	    _MM_FROUND_NO_EXC));
}

#define MAD_UNROLL _Pragma("GCC unroll 16")
/* Elements [i, i + 16 * NC) of the 4 heads over the nr rows: 4 * NC
 * accumulators in registers, independent chains enough to hide the
 * latency of the rounding (convert there and back) at each row. */
static inline __attribute__((always_inline, target("avx512f,f16c,fma")))
void mad_f16_rows4(uint32_t n, eng_f16 *y, const eng_f16 *const *x,
    uint32_t nr, const float *ms, const float *a, uint32_t i, const int NC)
{
	__m512 acc[4][4];

	MAD_UNROLL
	for (int h = 0; h < 4; h++)
		MAD_UNROLL
		for (int c = 0; c < NC; c++)
			acc[h][c] = _mm512_cvtph_ps(_mm256_loadu_si256(
			    (const __m256i *)(y + (size_t)h * n + i + 16 * c)));
	for (uint32_t r = 0; r < nr; r++) {
		__m512 vx[4];
		MAD_UNROLL
		for (int c = 0; c < NC; c++)
			vx[c] = _mm512_cvtph_ps(_mm256_loadu_si256(
			    (const __m256i *)(x[r] + i + 16 * c)));
		MAD_UNROLL
		for (int h = 0; h < 4; h++) {
			float m = ms[r * 4 + h];
			__m512 w = _mm512_set1_ps(a[r * 4 + h]);
			if (m != 1.0f)
				MAD_UNROLL
				for (int c = 0; c < NC; c++)
					acc[h][c] = f16_round512(_mm512_mul_ps(
					    acc[h][c], _mm512_set1_ps(m)));
			MAD_UNROLL
			for (int c = 0; c < NC; c++)
				acc[h][c] = f16_round512(_mm512_fmadd_ps(vx[c], w,
				    acc[h][c]));
		}
	}
	MAD_UNROLL
	for (int h = 0; h < 4; h++)
		MAD_UNROLL
		for (int c = 0; c < NC; c++)
			_mm256_storeu_si256((__m256i *)(y + (size_t)h * n + i +
			    16 * c), _mm512_cvtps_ph(acc[h][c],
			    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
}

/* The group of 4 (Gemma 3, Llama 3); f16acc_chunk takes other groups
 * row by row. */
__attribute__((target("avx512f,f16c,fma")))
static void mad_f16_rows_avx512(uint32_t n, eng_f16 *y,
    const eng_f16 *const *x, uint32_t nr, const float *ms, const float *a)
{
	uint32_t i = 0;

	for (; i + 64 <= n; i += 64)
		mad_f16_rows4(n, y, x, nr, ms, a, i, 4);
	for (; i + 16 <= n; i += 16)
		mad_f16_rows4(n, y, x, nr, ms, a, i, 1);
	if (i == n)
		return;
	for (uint32_t r = 0; r < nr; r++)
		for (uint32_t h = 0; h < 4; h++) {
			if (ms[r * 4 + h] != 1.0f)
				scale_f16_scalar(n - i, y + (size_t)h * n + i,
				    ms[r * 4 + h]);
			mad_f16_scalar(n - i, y + (size_t)h * n + i, x[r] + i,
			    a[r * 4 + h]);
		}
}
#endif

/* q . k of an f16 key row and the group's query rows (f32 holding f16
 * values: llama.cpp rounds Q to f16; the widening is exact), summed in the
 * order of ggml_vec_dot_f16 on the same SIMD level (llama.cpp is built for
 * the host), so that attention scores are bit-identical to llama.cpp's: 4
 * accumulators of 16 (AVX-512) or 8 (AVX2) lanes over steps of 64 or 32
 * elements, reduced pairwise; the tail in double.  ng heads' rows n
 * apart, each key converted once for all of them. */
static void kq_dot_group_scalar(uint32_t n, const eng_f16 *k, const float *q,
    uint32_t ng, float *out)
{
	for (uint32_t h = 0; h < ng; h++) {
		const float *qh = q + (size_t)h * n;
		double s = 0.0;
		for (uint32_t i = 0; i < n; i++)
			s += (double)(eng_f16_to_f32(k[i]) * qh[i]);
		out[h] = (float)s;
	}
}

#if FWD_X86
__attribute__((target("avx2,fma,f16c")))
static void kq_dot_group_avx2(uint32_t n, const eng_f16 *k, const float *q,
    uint32_t ng, float *out)
{
	uint32_t np = n & ~31u, i;

	for (uint32_t h = 0; h < ng; h++) {
		const float *qh = q + (size_t)h * n;
		__m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(),
		    _mm256_setzero_ps(), _mm256_setzero_ps() };
		double s;
		for (i = 0; i < np; i += 32)
			for (int j = 0; j < 4; j++) {
				__m256 a = _mm256_cvtph_ps(_mm_loadu_si128(
				    (const __m128i *)(k + i + 8 * j)));
				acc[j] = _mm256_fmadd_ps(a, _mm256_loadu_ps(
				    qh + i + 8 * j), acc[j]);
			}
		acc[0] = _mm256_add_ps(acc[0], acc[2]);
		acc[1] = _mm256_add_ps(acc[1], acc[3]);
		acc[0] = _mm256_add_ps(acc[0], acc[1]);
		__m128 t0 = _mm_add_ps(_mm256_castps256_ps128(acc[0]),
		    _mm256_extractf128_ps(acc[0], 1));
		__m128 t1 = _mm_hadd_ps(t0, t0);
		s = _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
		for (; i < n; i++)
			s += (double)(eng_f16_to_f32(k[i]) * qh[i]);
		out[h] = (float)s;
	}
}

/* nh (at most 4) heads from q: inlined with nh constant, the 16
 * accumulators stay in registers (the loops over them unrolled: at -O2
 * GCC kept the head loop rolled and the accumulators on the stack, a
 * load and a store around every FMA). */
#define KQ_UNROLL _Pragma("GCC unroll 16")
static inline __attribute__((always_inline, target("avx512f,f16c,fma")))
void kq_dot_heads_avx512(uint32_t n, const eng_f16 *k, const float *q,
    uint32_t nh, float *out)
{
	__m512 acc[4][4];
	uint32_t np = n & ~63u, i;

	KQ_UNROLL
	for (uint32_t h = 0; h < 4; h++)
		KQ_UNROLL
		for (int j = 0; j < 4; j++)
			acc[h][j] = _mm512_setzero_ps();
	for (i = 0; i < np; i += 64)
		KQ_UNROLL
		for (int j = 0; j < 4; j++) {
			__m512 a = _mm512_cvtph_ps(_mm256_loadu_si256(
			    (const __m256i *)(k + i + 16 * j)));
			KQ_UNROLL
			for (uint32_t h = 0; h < nh; h++)
				acc[h][j] = _mm512_fmadd_ps(a, _mm512_loadu_ps(
				    q + (size_t)h * n + i + 16 * j), acc[h][j]);
		}
	KQ_UNROLL
	for (uint32_t h = 0; h < nh; h++) {
		const float *qh = q + (size_t)h * n;
		__m512 a0 = _mm512_add_ps(acc[h][0], acc[h][2]);
		__m512 a1 = _mm512_add_ps(acc[h][1], acc[h][3]);
		double s = _mm512_reduce_add_ps(_mm512_add_ps(a0, a1));
		for (uint32_t c = np; c < n; c++)
			s += (double)(eng_f16_to_f32(k[c]) * qh[c]);
		out[h] = (float)s;
	}
}

__attribute__((target("avx512f,f16c,fma")))
static void kq_dot_group_avx512(uint32_t n, const eng_f16 *k, const float *q,
    uint32_t ng, float *out)
{
	uint32_t h = 0;

	for (; h + 4 <= ng; h += 4)
		kq_dot_heads_avx512(n, k, q + (size_t)h * n, 4, out + h);
	for (; h < ng; h++)
		kq_dot_heads_avx512(n, k, q + (size_t)h * n, 1, out + h);
}
#endif

/* ------------------------------------------------------------------------
 * Attention
 *
 * Work items are (token, kv head): the group of query heads that share a
 * kv head is computed together, so each key is loaded once for all of
 * them.  Token t at position p attends to positions lo..p, lo = 0 or
 * p-W+1 on a window-W layer (llama.cpp masks p1-p0 >= W).
 * ------------------------------------------------------------------------ */

struct attn_job {
	eng_fwd *f;
	eng_kv *kv;
	uint32_t layer;
	uint32_t pos0;		/* position of token 0 of the step */
	uint32_t n;		/* tokens in the step */
	uint32_t window;	/* 0: causal over everything */
	const struct eng__plan *plans;	/* (n_head_kv) or NULL: dense */
	int f16acc;		/* use attn_one_f16acc */
	int tiled;		/* use attn_tile */
	uint32_t n_chunks;	/* > 0: a decode step's chunks on the pool */
	_Atomic uint32_t next;	/* next work item */
	atomic_int rc;
};

/* The ranges of positions token position p attends for kv head g: the
 * plan's, or one open range from the window's start. */
static uint32_t attn_ranges(const struct attn_job *j, uint32_t g, uint32_t p,
    const struct eng__range **rg, struct eng__range *one)
{
	if (j->plans && j->plans[g].n_ranges) {
		*rg = j->plans[g].ranges;
		return j->plans[g].n_ranges;
	}
	one->pos0 = j->window && p + 1 > j->window ? p + 1 - j->window : 0;
	one->n = 0;
	one->shift = 0;
	*rg = one;
	return 1;
}

/* One past the last position of range r of nr (the last is open). */
static uint32_t range_end(const struct eng__range *rg, uint32_t r,
    uint32_t nr, uint32_t p)
{
	return r + 1 == nr ? p + 1 : rg[r].pos0 + rg[r].n;
}

/* The group's queries as range r sees them: rotated back by the range's
 * shift (R(-s) q: the keys then look s positions later), else q itself. */
static const float *range_query(const struct attn_job *j,
    struct attn_scratch *s, uint32_t g, const struct eng__range *rg,
    uint32_t r, const float *q)
{
	const eng_fwd *f = j->f;
	const eng_hparams *hp = &f->hp;
	uint32_t hdk = hp->head_dim_k, group = hp->n_head / hp->n_head_kv;

	if (!rg[r].shift)
		return q;
	eng__rope_back(f->rot + ((size_t)g * f->rot_ranges + r) * hp->n_rot,
	    q, hdk, s->qrot, hdk, group, hdk, hp->n_rot, f->rope_neox);
	return s->qrot;
}

/* One key/value row of the online softmax below, for the group's heads:
 * running maxima M, sums S, f16 accumulators acc; sc is scratch. */
static void f16acc_row(const eng_fwd *f, uint32_t group, const eng_f16 *kr,
    const eng_f16 *vr, const float *qf, eng_f16 *acc, float *M, float *S,
    float *sc)
{
	uint32_t hdk = f->hp.head_dim_k, hdv = f->hp.head_dim_v;

	f->kq_dot_group(hdk, kr, qf, group, sc);
	for (uint32_t h = 0; h < group; h++) {
		float x = sc[h] * f->attn_scale, ms = 1.0f, vs = 1.0f;
		if (x > M[h]) {
			ms = expf(M[h] - x);
			M[h] = x;
			f->scale_f16(hdv, acc + (size_t)h * hdv, ms);
		} else {
			vs = expf(x - M[h]);
		}
		S[h] = S[h] * ms + vs;
		sc[h] = vs;	/* each head's accumulator is its own */
	}
	f->mad_f16_group(hdv, acc, vr, sc, group);
}

/* f16acc_row for rows i0..i0+nr-1 of span sp (nr <= F16_ROWS, a group
 * of F16_GROUP heads): the scores of all, then each row's softmax step in
 * order, then the values through mad_f16_rows. */
#define F16_ROWS 8u
#define F16_GROUP 4u
static void f16acc_rows(const eng_fwd *f, uint32_t group,
    const eng_kv_span *sp, uint32_t i0, uint32_t nr, const float *qf,
    eng_f16 *acc, float *M, float *S)
{
	uint32_t hdk = f->hp.head_dim_k, hdv = f->hp.head_dim_v;
	float sc[F16_ROWS * F16_GROUP], ms[F16_ROWS * F16_GROUP];
	const eng_f16 *vr[F16_ROWS];

	for (uint32_t r = 0; r < nr; r++) {
		f->kq_dot_group(hdk, (const eng_f16 *)(const void *)((const char *)
		    sp->k + (size_t)(i0 + r) * sp->k_stride), qf, group,
		    sc + r * group);
		vr[r] = (const eng_f16 *)(const void *)((const char *)sp->v +
		    (size_t)(i0 + r) * sp->v_stride);
	}
	for (uint32_t r = 0; r < nr; r++)
		for (uint32_t h = 0; h < group; h++) {
			float x = sc[r * group + h] * f->attn_scale, m = 1.0f;
			float v = 1.0f;
			if (x > M[h]) {
				m = expf(M[h] - x);
				M[h] = x;
			} else {
				v = expf(x - M[h]);
			}
			S[h] = S[h] * m + v;
			ms[r * group + h] = m;
			sc[r * group + h] = v;
		}
	f->mad_f16_rows(hdv, acc, vr, nr, ms, sc);
}

/* llama.cpp's CPU flash attention for steps of fewer than 64 queries
 * (ggml_compute_forward_flash_attn_ext_f16_one_chunk): Q rounded to f16,
 * one pass over the keys with an online softmax, values accumulated in an
 * f16 vector.  Used only with an F16 cache.
 *
 * Over more than FA_CHUNK keys it runs chunk by chunk, as llama.cpp's
 * decode does over its threads (its split-KV path): each chunk of the
 * token's keys (its ranges one after another) from a fresh accumulator,
 * the chunks' results combined in order (ggml_flash_attn_ext_reduce_
 * partials).  The chunks are fixed, not one per thread, so a token's
 * result is the same whatever the threads and the step; a decode step,
 * one item per kv head, spreads its chunks over the pool (attn_split_*).
 * A token with at most FA_CHUNK keys is one chunk: llama.cpp's bits. */
#define FA_CHUNK 1024u

/* Keys token position p sees for kv head g (the ranges' total). */
static uint32_t attn_n_keys(const struct attn_job *j, uint32_t g, uint32_t p)
{
	const struct eng__range *rg;
	struct eng__range one;
	uint32_t nr = attn_ranges(j, g, p, &rg, &one), nk = 0;

	for (uint32_t r = 0; r < nr; r++)
		nk += range_end(rg, r, nr, p) - rg[r].pos0;
	return nk;
}

/* Keys [c0, c1) of token t's sequence for kv head g into one chunk's
 * result: maxima M, sums S (group each), and the f16 accumulators acc
 * (group, hdv); sc is scratch of group floats. */
static int f16acc_chunk(struct attn_job *j, struct attn_scratch *s,
    uint32_t t, uint32_t g, uint32_t c0, uint32_t c1, float *M, float *S,
    eng_f16 *acc, float *sc)
{
	eng_fwd *f = j->f;
	const eng_hparams *hp = &f->hp;
	uint32_t hdk = hp->head_dim_k, hdv = hp->head_dim_v;
	uint32_t group = hp->n_head / hp->n_head_kv, p = j->pos0 + t;
	const float *q = f->q + ((size_t)t * hp->n_head + g * group) * hdk;
	float *qf = s->qrow;	/* (group, hdk): f16 values */
	const struct eng__range *rg;
	struct eng__range one;
	uint32_t nr = attn_ranges(j, g, p, &rg, &one), off = 0;
	eng_kv_span sp;
	int rc;

	memset(acc, 0, (size_t)group * hdv * sizeof(eng_f16));
	for (uint32_t h = 0; h < group; h++) {
		M[h] = -INFINITY;
		S[h] = 0.0f;
	}
	for (uint32_t r = 0; r < nr && off < c1; r++) {
		uint32_t e = range_end(rg, r, nr, p), len = e - rg[r].pos0;
		uint32_t a = c0 > off ? c0 - off : 0;
		uint32_t b = c1 - off < len ? c1 - off : len;
		off += len;
		if (a >= b)
			continue;
		f->round_f16(group * hdk, qf, range_query(j, s, g, rg, r, q));
		for (uint32_t pos = rg[r].pos0 + a; pos < rg[r].pos0 + b;
		    pos += sp.n) {
			if ((rc = j->kv->ops->view(j->kv, j->layer, g, pos,
			    rg[r].pos0 + b - pos, &sp)))
				return rc;
			if (f->mad_f16_rows && group == F16_GROUP) {
				for (uint32_t i = 0; i < sp.n; i += F16_ROWS)
					f16acc_rows(f, group, &sp, i, sp.n - i <
					    F16_ROWS ? sp.n - i : F16_ROWS, qf,
					    acc, M, S);
				continue;
			}
			for (uint32_t i = 0; i < sp.n; i++)
				f16acc_row(f, group, (const eng_f16 *)
				    ((const char *)sp.k + i * sp.k_stride),
				    (const eng_f16 *)((const char *)sp.v +
				    i * sp.v_stride), qf, acc, M, S, sc);
		}
	}
	return 0;
}

/* Adds one chunk's result for one head (Mc, Sc, its accumulator ac) to
 * the running (*Mf, *Sf, vkq), as llama.cpp combines its partials. */
static void f16acc_merge(uint32_t hdv, float *Mf, float *Sf, float *vkq,
    float Mc, float Sc, const eng_f16 *ac)
{
	if (Sc == 0.0f)
		return;
	float Mn = fmaxf(*Mf, Mc), so = expf(*Mf - Mn), sn = expf(Mc - Mn);
	for (uint32_t d = 0; d < hdv; d++)
		vkq[d] = vkq[d] * so + eng_f16_to_f32(ac[d]) * sn;
	*Sf = *Sf * so + Sc * sn;
	*Mf = Mn;
}

/* The group's outputs from the running sums. */
static void f16acc_out(uint32_t group, uint32_t hdv, const float *Sf,
    const float *vkq, float *out)
{
	for (uint32_t h = 0; h < group; h++) {
		float inv = Sf[h] == 0.0f ? 0.0f : 1.0f / Sf[h];
		for (uint32_t d = 0; d < hdv; d++)
			out[(size_t)h * hdv + d] = vkq[(size_t)h * hdv + d] * inv;
	}
}

/* Token t, kv head g, every chunk in turn on this thread. */
static int attn_one_f16acc(struct attn_job *j, struct attn_scratch *s,
    uint32_t t, uint32_t g)
{
	eng_fwd *f = j->f;
	const eng_hparams *hp = &f->hp;
	uint32_t hdv = hp->head_dim_v, group = hp->n_head / hp->n_head_kv;
	uint32_t nk = attn_n_keys(j, g, j->pos0 + t);
	float *out = f->att + ((size_t)t * hp->n_head + g * group) * hdv;
	eng_f16 *acc = (eng_f16 *)s->acc;	/* (group, hdv) f16 */
	/* scores: M, S, sc, Mf, Sf (group each), then vkq (group, hdv) */
	float *M = s->scores, *S = M + group, *sc = S + group;
	float *Mf = sc + group, *Sf = Mf + group, *vkq = Sf + group;
	int rc;

	memset(vkq, 0, (size_t)group * hdv * sizeof(float));
	for (uint32_t h = 0; h < group; h++) {
		Mf[h] = -INFINITY;
		Sf[h] = 0.0f;
	}
	for (uint32_t c0 = 0; c0 < nk || c0 == 0; c0 += FA_CHUNK) {
		uint32_t c1 = nk - c0 < FA_CHUNK ? nk : c0 + FA_CHUNK;
		if ((rc = f16acc_chunk(j, s, t, g, c0, c1, M, S, acc, sc)))
			return rc;
		for (uint32_t h = 0; h < group; h++)
			f16acc_merge(hdv, Mf + h, Sf + h, vkq + (size_t)h *
			    hdv, M[h], S[h], acc + (size_t)h * hdv);
	}
	f16acc_out(group, hdv, Sf, vkq, out);
	return 0;
}

/* A decode step's chunks on the pool: item (g, c) leaves chunk c's
 * result for kv head g in f->fa_part (attn_split_part), then
 * attn_split_reduce combines them in order. */
static size_t attn_split_part(const eng_fwd *f)
{
	const eng_hparams *hp = &f->hp;
	uint32_t group = hp->n_head / hp->n_head_kv;

	/* M, S (group each), then the accumulators (group, hdv) f16 */
	return 2 * (size_t)group + ((size_t)group * hp->head_dim_v + 1) / 2;
}

static int attn_split_item(struct attn_job *j, struct attn_scratch *s,
    uint32_t g, uint32_t c)
{
	eng_fwd *f = j->f;
	uint32_t group = f->hp.n_head / f->hp.n_head_kv;
	uint32_t nk = attn_n_keys(j, g, j->pos0);
	float *part = f->fa_part + ((size_t)g * j->n_chunks + c) *
	    attn_split_part(f);
	uint32_t c0 = c * FA_CHUNK;

	if (c0 >= nk) {
		for (uint32_t h = 0; h < group; h++)
			part[group + h] = 0.0f;		/* S: nothing */
		return 0;
	}
	return f16acc_chunk(j, s, 0, g, c0, nk - c0 < FA_CHUNK ? nk :
	    c0 + FA_CHUNK, part, part + group, (eng_f16 *)(part + 2 * group),
	    s->scores);
}

static void attn_split_reduce(struct attn_job *j)
{
	eng_fwd *f = j->f;
	const eng_hparams *hp = &f->hp;
	uint32_t hdv = hp->head_dim_v, group = hp->n_head / hp->n_head_kv;
	float *Mf = f->ts[0].scores, *Sf = Mf + group, *vkq = Sf + group;

	for (uint32_t g = 0; g < hp->n_head_kv; g++) {
		memset(vkq, 0, (size_t)group * hdv * sizeof(float));
		for (uint32_t h = 0; h < group; h++) {
			Mf[h] = -INFINITY;
			Sf[h] = 0.0f;
		}
		for (uint32_t c = 0; c < j->n_chunks; c++) {
			const float *part = f->fa_part + ((size_t)g *
			    j->n_chunks + c) * attn_split_part(f);
			const eng_f16 *acc = (const eng_f16 *)(part + 2 *
			    group);
			for (uint32_t h = 0; h < group; h++)
				f16acc_merge(hdv, Mf + h, Sf + h, vkq +
				    (size_t)h * hdv, part[h], part[group + h],
				    acc + (size_t)h * hdv);
		}
		f16acc_out(group, hdv, Sf, vkq, f->att + (size_t)g * group *
		    hdv);
	}
}

/* Softmax probabilities of token t's group of heads over its ranges into
 * s->scores, (group, *nk) row after row, ranges one after another. */
static int attn_probs(struct attn_job *j, struct attn_scratch *s, uint32_t t,
    uint32_t g, uint32_t *nk_out)
{
	eng_fwd *f = j->f;
	const eng_hparams *hp = &f->hp;
	uint32_t hdk = hp->head_dim_k, group = hp->n_head / hp->n_head_kv;
	uint32_t p = j->pos0 + t;
	const float *q = f->q + ((size_t)t * hp->n_head + g * group) * hdk;
	const struct eng__range *rg;
	struct eng__range one;
	uint32_t nr = attn_ranges(j, g, p, &rg, &one), nk = 0, at = 0;
	eng_kv_span sp;
	int rc;

	for (uint32_t r = 0; r < nr; r++)
		nk += range_end(rg, r, nr, p) - rg[r].pos0;
	for (uint32_t r = 0; r < nr; r++) {
		uint32_t e = range_end(rg, r, nr, p);
		const float *qr = range_query(j, s, g, rg, r, q);
		for (uint32_t pos = rg[r].pos0; pos < e; pos += sp.n) {
			if ((rc = j->kv->ops->view(j->kv, j->layer, g, pos,
			    e - pos, &sp)))
				return rc;
			for (uint32_t i = 0; i < sp.n; i++) {
				const char *kr = (const char *)sp.k +
				    i * sp.k_stride;
				for (uint32_t h0 = 0; h0 < group;
				    h0 += ENG_NT_MAX) {
					int nt = group - h0 < ENG_NT_MAX ?
					    (int)(group - h0) : ENG_NT_MAX;
					f->kdot(hdk, kr, qr + (size_t)h0 * hdk,
					    hdk * sizeof(float), s->scores +
					    (size_t)h0 * nk + at + i, nk, nt);
				}
			}
			at += sp.n;
		}
	}
	/* Softmax per head, in f32. */
	for (uint32_t h = 0; h < group; h++) {
		float *sc = s->scores + (size_t)h * nk, mx = -INFINITY, sum = 0;
		for (uint32_t i = 0; i < nk; i++) {
			sc[i] *= f->attn_scale;
			if (sc[i] > mx)
				mx = sc[i];
		}
		for (uint32_t i = 0; i < nk; i++) {
			sc[i] = expf(sc[i] - mx);
			sum += sc[i];
		}
		float inv = 1.0f / sum;
		for (uint32_t i = 0; i < nk; i++)
			sc[i] *= inv;
	}
	*nk_out = nk;
	return 0;
}

/* Two-pass f32 attention of token t, kv head g: probabilities, then the
 * weighted sum of values, each value converted once for the group. */
static int attn_one(struct attn_job *j, struct attn_scratch *s, uint32_t t,
    uint32_t g)
{
	eng_fwd *f = j->f;
	const eng_hparams *hp = &f->hp;
	uint32_t hdv = hp->head_dim_v, group = hp->n_head / hp->n_head_kv;
	uint32_t p = j->pos0 + t, nk, at = 0;
	float *out = f->att + ((size_t)t * hp->n_head + g * group) * hdv;
	const struct eng__range *rg;
	struct eng__range one;
	uint32_t nr = attn_ranges(j, g, p, &rg, &one);
	eng_kv_span sp;
	int rc;

	if ((rc = attn_probs(j, s, t, g, &nk)))
		return rc;
	memset(s->acc, 0, (size_t)group * hdv * sizeof(float));
	for (uint32_t r = 0; r < nr; r++) {
		uint32_t e = range_end(rg, r, nr, p);
		for (uint32_t pos = rg[r].pos0; pos < e; pos += sp.n) {
			if ((rc = j->kv->ops->view(j->kv, j->layer, g, pos,
			    e - pos, &sp)))
				return rc;
			for (uint32_t i = 0; i < sp.n; i += VACC_ROWS) {
				uint32_t n8 = sp.n - i < VACC_ROWS ?
				    sp.n - i : VACC_ROWS;
				f->vacc(hdv, s->acc, group, s->scores + at + i,
				    nk, (const char *)sp.v + i * sp.v_stride,
				    sp.v_stride, n8,
				    j->kv->type == ENG_TYPE_F16);
			}
			at += sp.n;
		}
	}
	memcpy(out, s->acc, (size_t)group * hdv * sizeof(float));
	return 0;
}

/* Online softmax over a chunk of c keys at positions kp0.. for the tile's
 * rows (token t = row / group at position p0 + t): each row sees keys up
 * to its position and, on a window layer, within its window. */
static void tile_softmax(const struct attn_job *j, struct attn_scratch *s,
    uint32_t R, uint32_t group, uint32_t p0, uint32_t kp0, uint32_t c)
{
	const eng_fwd *f = j->f;

	for (uint32_t r = 0; r < R; r++) {
		uint32_t pt = p0 + r / group, lo = 0, hi;
		hi = pt < kp0 ? 0 : pt - kp0 + 1 < c ? pt - kp0 + 1 : c;
		if (j->window && pt + 1 > kp0 + j->window)
			lo = pt + 1 - j->window - kp0;
		f->akern->softmax(s->ts + (size_t)r * TILE_CHUNK, c, lo, hi,
		    f->attn_scale, &s->tm[r], &s->tl[r],
		    s->tacc + (size_t)r * f->hp.head_dim_v, f->hp.head_dim_v);
	}
}

/* One view's keys and values, chunk by chunk: scores of all the tile's
 * rows, the online softmax, the weighted values. */
static void tile_span(const struct attn_job *j, struct attn_scratch *s,
    uint32_t R, uint32_t p0, uint32_t kp0, const eng_kv_span *sp)
{
	const eng_fwd *f = j->f;
	const eng__attn_kern *K = f->akern;
	uint32_t hdk = f->hp.head_dim_k, hdv = f->hp.head_dim_v;
	uint32_t group = f->hp.n_head / f->hp.n_head_kv;
	int f16 = j->kv->type == ENG_TYPE_F16;

	for (uint32_t i = 0; i < sp->n; i += TILE_CHUNK) {
		uint32_t c = sp->n - i < TILE_CHUNK ? sp->n - i : TILE_CHUNK;
		for (uint32_t b = 0; b < c; b += ENG__ATTN_KB) {
			uint32_t kb = c - b < ENG__ATTN_KB ? c - b : ENG__ATTN_KB;
			K->to_f32(kb, hdk, (const char *)sp->k + (size_t)(i + b) *
			    sp->k_stride, sp->k_stride, f16, s->tkv);
			K->scores(R, hdk, s->tq, s->tkv, kb, s->ts + b, TILE_CHUNK);
		}
		tile_softmax(j, s, R, group, p0, kp0 + i, c);
		for (uint32_t b = 0; b < c; b += ENG__ATTN_KB) {
			uint32_t kb = c - b < ENG__ATTN_KB ? c - b : ENG__ATTN_KB;
			K->to_f32(kb, hdv, (const char *)sp->v + (size_t)(i + b) *
			    sp->v_stride, sp->v_stride, f16, s->tkv);
			K->pv(R, hdv, s->ts + b, TILE_CHUNK, s->tkv, kb, s->tacc);
		}
	}
}

/* Attention of tokens t0..t0+tb-1 for kv head g at once: every key and
 * value block is read once for the tb * group query rows (f32, online
 * softmax).  The ranges are the last token's, from the first token's
 * window start; each row masks what its token may not see. */
static int attn_tile(struct attn_job *j, struct attn_scratch *s, uint32_t t0,
    uint32_t tb, uint32_t g)
{
	eng_fwd *f = j->f;
	const eng_hparams *hp = &f->hp;
	uint32_t hdk = hp->head_dim_k, hdv = hp->head_dim_v;
	uint32_t group = hp->n_head / hp->n_head_kv, R = tb * group;
	uint32_t p0 = j->pos0 + t0, pl = p0 + tb - 1;
	const struct eng__range *rg;
	struct eng__range one;
	uint32_t nr = attn_ranges(j, g, pl, &rg, &one);
	eng_kv_span sp;
	int rc;

	if (rg == &one)
		one.pos0 = j->window && p0 + 1 > j->window ? p0 + 1 - j->window : 0;
	for (uint32_t r = 0; r < R; r++) {
		s->tm[r] = -INFINITY;
		s->tl[r] = 0.0f;
	}
	memset(s->tacc, 0, (size_t)R * hdv * sizeof(float));
	for (uint32_t r = 0; r < nr; r++) {
		uint32_t e = range_end(rg, r, nr, pl);
		for (uint32_t t = 0; t < tb; t++) {
			const float *q = f->q + ((size_t)(t0 + t) * hp->n_head +
			    g * group) * hdk;
			memcpy(s->tq + (size_t)t * group * hdk,
			    range_query(j, s, g, rg, r, q),
			    (size_t)group * hdk * sizeof(float));
		}
		for (uint32_t pos = rg[r].pos0; pos < e; pos += sp.n) {
			if ((rc = j->kv->ops->view(j->kv, j->layer, g, pos,
			    e - pos, &sp)))
				return rc;
			tile_span(j, s, R, p0, pos, &sp);
		}
	}
	for (uint32_t t = 0; t < tb; t++) {
		float *out = f->att + ((size_t)(t0 + t) * hp->n_head +
		    g * group) * hdv;
		for (uint32_t h = 0; h < group; h++) {
			uint32_t r = t * group + h;
			float inv = s->tl[r] == 0.0f ? 0.0f : 1.0f / s->tl[r];
			for (uint32_t d = 0; d < hdv; d++)
				out[(size_t)h * hdv + d] =
				    s->tacc[(size_t)r * hdv + d] * inv;
		}
	}
	return 0;
}

/* Adds where the step's last token put its attention on this layer to the
 * record: probability mass per block of rec_B positions. */
static int attn_record(struct attn_job *j)
{
	eng_fwd *f = j->f;
	const eng_hparams *hp = &f->hp;
	uint32_t group = hp->n_head / hp->n_head_kv, t = j->n - 1;
	uint32_t p = j->pos0 + t, nblk = p / f->rec_B + 1;
	struct attn_scratch *s = &f->ts[0];
	int rc;

	if (nblk > f->rec_cap) {
		float *w = realloc(f->rec_w, nblk * sizeof(float));
		if (!w)
			return ENG_ENOMEM;
		memset(w + f->rec_cap, 0, (nblk - f->rec_cap) * sizeof(float));
		f->rec_w = w;
		f->rec_cap = nblk;
	}
	for (uint32_t g = 0; g < hp->n_head_kv; g++) {
		const struct eng__range *rg;
		struct eng__range one;
		uint32_t nr = attn_ranges(j, g, p, &rg, &one), nk, at = 0;
		if ((rc = attn_probs(j, s, t, g, &nk)))
			return rc;
		for (uint32_t r = 0; r < nr; r++) {
			uint32_t e = range_end(rg, r, nr, p);
			for (uint32_t pos = rg[r].pos0; pos < e; pos++, at++)
				for (uint32_t h = 0; h < group &&
				    pos >= f->rec_skip; h++)
					f->rec_w[pos / f->rec_B] +=
					    s->scores[(size_t)h * nk + at];
		}
		f->rec_keys += nk;
		f->rec_count++;
	}
	f->rec_group = group;
	f->rec_end = p + 1;
	return 0;
}

/* Plans sparse attention of global layer il for this step: a plan per kv
 * head and the rotation table of every shifted range.  *plans stays NULL
 * when the step attends densely. */
static int attn_plan(eng_fwd *f, eng_kv *kv, uint32_t il, uint32_t n,
    uint32_t pos0, const struct eng__plan **plans)
{
	const eng_hparams *hp = &f->hp;
	uint32_t group = hp->n_head / hp->n_head_kv, hdk = hp->head_dim_k;
	uint32_t maxr = 0;
	size_t need;
	int rc;

	*plans = NULL;
	if (!f->sparse.top_k || !kv->block_tokens || !kv->ops->summary)
		return 0;
	struct eng__plan *pl = f->plans + (size_t)il * hp->n_head_kv;

	struct eng__rope rope = { hp->n_rot, f->rope_neox, hp->rope_base,
	    f->freq_scale, f->rope_freqs };
	for (uint32_t g = 0; g < hp->n_head_kv; g++) {
		struct eng__query qs = { f->q + (size_t)g * group * hdk,
		    (size_t)hp->n_head * hdk, group, hdk, n, pos0,
		    f->attn_scale, &rope };
		if ((rc = eng__sparse_plan(&pl[g], &f->sparse, kv, il, g, &qs,
		    f->pool)))
			return rc;
		if (f->rec_on && pl[g].ranked > f->rec_rank)
			f->rec_rank = pl[g].ranked;
		if (pl[g].n_ranges > maxr)
			maxr = pl[g].n_ranges;
	}
	if (!maxr)
		return 0;
	need = (size_t)hp->n_head_kv * maxr * (hp->n_rot ? hp->n_rot : 2);
	if (need > f->rot_cap) {
		float *r = realloc(f->rot, need * sizeof(float));
		if (!r)
			return ENG_ENOMEM;
		f->rot = r;
		f->rot_cap = need;
	}
	/* what the plan will read, requested from the store at once (the
	 * open range's stored part ends where this step begins) */
	for (uint32_t g = 0; kv->ops->prefetch && g < hp->n_head_kv; g++)
		for (uint32_t r = 0; r < pl[g].n_ranges; r++) {
			const struct eng__range *q = &pl[g].ranges[r];
			uint32_t cnt = r + 1 < pl[g].n_ranges ? q->n :
			    pos0 > q->pos0 ? pos0 - q->pos0 : 0;
			if (cnt)
				kv->ops->prefetch(kv, il, g, q->pos0, cnt);
		}
	f->rot_ranges = maxr;
	for (uint32_t g = 0; g < hp->n_head_kv; g++)
		for (uint32_t r = 0; r < pl[g].n_ranges; r++)
			if (pl[g].ranges[r].shift)
				eng__rope_table(f->rot + ((size_t)g * maxr + r) *
				    hp->n_rot, pl[g].ranges[r].shift, 1,
				    hp->n_rot, hp->rope_base, f->freq_scale,
				    f->rope_freqs);
	*plans = pl;
	return 0;
}

static void attn_task(void *arg, int ith, int nth)
{
	struct attn_job *j = arg;
	uint32_t n_kv = j->f->hp.n_head_kv;
	uint32_t n_tiles = (j->n + TILE_TOKENS - 1) / TILE_TOKENS;
	uint32_t n_items = (j->n_chunks ? j->n_chunks : j->tiled ? n_tiles :
	    j->n) * n_kv;
	(void)nth;
	for (;;) {
		uint32_t it = atomic_fetch_add_explicit(&j->next, 1,
		    memory_order_relaxed);
		if (it >= n_items || atomic_load(&j->rc))
			return;
		uint32_t t = it / n_kv, g = it % n_kv;
		struct attn_scratch *s = &j->f->ts[ith];
		int rc;
		if (j->n_chunks) {
			rc = attn_split_item(j, s, it / j->n_chunks,
			    it % j->n_chunks);
		} else if (j->tiled) {
			/* the last tiles see the most keys: hand them out first */
			uint32_t t0 = (n_tiles - 1 - t) * TILE_TOKENS;
			uint32_t tb = j->n - t0 < TILE_TOKENS ? j->n - t0 :
			    TILE_TOKENS;
			rc = attn_tile(j, s, t0, tb, g);
		} else {
			rc = j->f16acc ? attn_one_f16acc(j, s, t, g) :
			    attn_one(j, s, t, g);
		}
		if (rc)
			atomic_store(&j->rc, rc);
	}
}

/* Makes the per-thread scratch hold n_keys keys. */
int eng__attn_reserve(eng_fwd *f, size_t n_keys)
{
	const eng_hparams *hp = &f->hp;
	size_t group = hp->n_head / hp->n_head_kv;
	size_t per, nth = (size_t)eng_pool_threads(f->pool);
	float *mem;

	if (n_keys <= f->ts_keys)
		return 0;
	if (n_keys < 1024)
		n_keys = 1024;
	if (n_keys < hp->head_dim_v + 5)	/* attn_one_f16acc's sums */
		n_keys = hp->head_dim_v + 5;
	/* the tiles' part only where attn_tile can run */
	size_t R = f->akern ? TILE_TOKENS * group : 0;
	size_t hdm = !f->akern ? 0 : hp->head_dim_k > hp->head_dim_v ?
	    hp->head_dim_k : hp->head_dim_v;
	size_t tile = R * (hp->head_dim_k + TILE_CHUNK + hp->head_dim_v + 2) +
	    ENG__ATTN_KB * hdm;
	per = group * n_keys + group * hp->head_dim_v +
	    2 * group * hp->head_dim_k + tile;
	per = (per + 15) & ~(size_t)15;
	if (!(mem = malloc(nth * per * sizeof(float))))
		return ENG_ENOMEM;
	free(f->ts_mem);
	f->ts_mem = mem;
	for (size_t i = 0; i < nth; i++) {
		float *b = mem + i * per;
		f->ts[i].scores = b;
		f->ts[i].acc = b + group * n_keys;
		f->ts[i].qrow = f->ts[i].acc + group * hp->head_dim_v;
		f->ts[i].qrot = f->ts[i].qrow + group * hp->head_dim_k;
		f->ts[i].tq = f->ts[i].qrot + group * hp->head_dim_k;
		f->ts[i].tkv = f->ts[i].tq + R * hp->head_dim_k;
		f->ts[i].ts = f->ts[i].tkv + ENG__ATTN_KB * hdm;
		f->ts[i].tacc = f->ts[i].ts + R * TILE_CHUNK;
		f->ts[i].tm = f->ts[i].tacc + R * hp->head_dim_v;
		f->ts[i].tl = f->ts[i].tm + R;
	}
	f->ts_keys = n_keys;
	return 0;
}

/* A decode step with fewer kv heads than threads and a head over more
 * than FA_CHUNK keys: its chunks become the pool's items. */
static int attn_split_plan(struct attn_job *j)
{
	eng_fwd *f = j->f;
	uint32_t n_kv = f->hp.n_head_kv, nk = 0;

	if (!j->f16acc || j->n != 1 || n_kv >= (uint32_t)eng_pool_threads(
	    f->pool))
		return 0;
	for (uint32_t g = 0; g < n_kv; g++) {
		uint32_t k = attn_n_keys(j, g, j->pos0);
		nk = k > nk ? k : nk;
	}
	if (nk <= FA_CHUNK)
		return 0;
	uint32_t nc = (nk + FA_CHUNK - 1) / FA_CHUNK;
	size_t need = (size_t)n_kv * nc * attn_split_part(f);
	if (need > f->fa_part_cap) {
		float *p = realloc(f->fa_part, need * sizeof(float));
		if (!p)
			return ENG_ENOMEM;
		f->fa_part = p;
		f->fa_part_cap = need;
	}
	j->n_chunks = nc;
	return 0;
}

/* Attention of layer il for the step: plan (sparse, global layers), the
 * work items on the pool, then the record of the last token if asked. */
int eng__attention(eng_fwd *f, eng_kv *kv, uint32_t il, uint32_t n,
    uint32_t pos0)
{
	const struct fwd_layer *L = &f->layers[il];
	struct attn_job job = {
		.f = f, .kv = kv, .layer = il, .pos0 = pos0, .n = n,
		.window = L->swa ? f->hp.sliding_window : 0,
		.f16acc = kv->type == ENG_TYPE_F16 &&
		    f->attn_mode == ENG_ATTN_LLAMACPP && n < 64,
	};
	job.tiled = !job.f16acc && n > 1 && f->akern &&
	    (kv->type == ENG_TYPE_F16 || kv->type == ENG_TYPE_F32);
	int rc;

	if (!L->swa && (rc = attn_plan(f, kv, il, n, pos0, &job.plans)))
		return rc;
	if ((rc = attn_split_plan(&job)))
		return rc;
	atomic_init(&job.next, 0);
	atomic_init(&job.rc, 0);
	eng_pool_run(f->pool, attn_task, &job);
	if ((rc = atomic_load(&job.rc)))
		return rc;
	if (job.n_chunks)
		attn_split_reduce(&job);
	if (f->rec_on && !L->swa)
		return attn_record(&job);
	return 0;
}


void eng__attn_setup(eng_fwd *f)
{
	const eng_hparams *hp = &f->hp;

	f->vacc = vacc_scalar;
	f->scale_f16 = scale_f16_scalar;
	f->round_f16 = round_f16_scalar;
	f->mad_f16_group = mad_f16_group_scalar;
	f->kq_dot_group = kq_dot_group_scalar;
	f->mad_f16_rows = NULL;
#if FWD_X86
	if (eng_simd_active() >= ENG_SIMD_AVX2) {
		f->vacc = vacc_avx2;
		f->scale_f16 = scale_f16_avx2;
		f->round_f16 = round_f16_f16c;
		f->mad_f16_group = mad_f16_group_avx2;
		f->kq_dot_group = kq_dot_group_avx2;
	}
	if (eng_simd_active() >= ENG_SIMD_AVX512) {
		f->mad_f16_rows = mad_f16_rows_avx512;
		f->mad_f16_group = mad_f16_group_avx512;
		f->kq_dot_group = kq_dot_group_avx512;
	}
#endif
	f->kdot_type = ENG_TYPE_F16;
	f->kdot = eng_vec_dot_get(ENG_TYPE_F16, eng_simd_active());
	f->akern = NULL;
	if (hp->head_dim_k % 16 == 0 && hp->head_dim_v % 16 == 0)
		f->akern = eng__attn_kern_get(eng_simd_active());
}
