/* forward.c - the transformer forward pass for gemma3, llama and qwen2:
 * weights borrowed from the model's map, a step of up to n_batch tokens
 * through every layer, keys and values kept through the eng_kv interface.
 *
 * Numerics follow llama.cpp's CPU backend where it is cheap to do so, so
 * that greedy outputs agree: RMSNorm sums squares in double; RoPE angles
 * are built by repeated multiplication (theta *= base^(-2/n_rot)) as ggml
 * does; Gemma's GELU goes through a table of f16 inputs as ggml's
 * GGML_GELU_FP16; keys and values are rounded to the cache type (F16)
 * before attention reads them back; activations are quantized to each
 * weight's dot type by eng_matmul as ggml does.  Attention has two paths
 * (eng_attn_mode): steps of fewer than 64 tokens reproduce llama.cpp's
 * one-chunk flash attention (Q rounded to f16, q.k summed in ggml's order,
 * online softmax, values accumulated in f16), longer steps and ENG_ATTN_F32
 * are f32: on AVX-512, tiles of TILE_TOKENS tokens share each key and
 * value block (attn_tile, an online softmax over chunks of keys, kernels in
 * attn_avx512.c), elsewhere or for one token a two-pass softmax per token
 * (attn_one).  With equal inputs the
 * attention output is bit-identical to llama.cpp's; what still differs is
 * the summation order inside the quantized matrix kernels, and since the
 * next layer rounds activations to 8 bits, a last-bit difference sometimes
 * flips a rounding and grows (see /work/notes/forward-results.md).
 *
 * Layout: activations are token-major, (n_tokens, width) row after row, as
 * eng_matmul takes and returns them.  API: engine.h.
 */
#include "config.h"

#include <math.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#define FWD_X86 1
#else
#define FWD_X86 0
#endif

#include "eng_internal.h"
#include "engine.h"
#include "kernels.h"

/* ------------------------------------------------------------------------
 * Weights
 * ------------------------------------------------------------------------ */

/* One block's weights.  Matrices are eng_qmat: n_rows outputs of n_cols
 * inputs (ggml's ne[1] x ne[0]).  Vectors are f32 copies owned by the
 * eng_fwd (norm weights are tiny; copying lets any file type work). */
struct fwd_layer {
	float *attn_norm;	/* (n_embd) */
	eng_qmat wq;		/* (n_head*hd_k, n_embd) */
	eng_qmat wk;		/* (n_kv*hd_k, n_embd) */
	eng_qmat wv;		/* (n_kv*hd_v, n_embd) */
	float *bq, *bk, *bv;	/* (n_head*hd_k), (n_kv*hd_k), (n_kv*hd_v) or NULL */
	float *q_norm;		/* gemma3: (hd_k) */
	float *k_norm;		/* gemma3: (hd_k) */
	eng_qmat wo;		/* (n_embd, n_head*hd_v) */
	float *post_attn_norm;	/* gemma3: (n_embd) */
	float *ffn_norm;	/* (n_embd) */
	eng_qmat w_gate;	/* (n_ff, n_embd) */
	eng_qmat w_up;		/* (n_ff, n_embd) */
	eng_qmat w_down;	/* (n_embd, n_ff) */
	float *post_ffn_norm;	/* gemma3: (n_embd) */
	int swa;		/* 1: sliding-window (local) layer */
	int rope_set;		/* which rope table: 0 global, 1 local */
};

/* Per-thread scratch of the attention task. */
struct attn_scratch {
	float *scores;		/* (group, n_keys) */
	float *acc;		/* (group, hd_v) */
	float *qrow;		/* (group, hd_k) f32, or f16 queries */
	float *qrot;		/* (group, hd_k) queries of a shifted range */
	/* Tiled attention, R = TILE_TOKENS * group rows: */
	float *tq;		/* (R, hd_k) the tile's queries */
	float *tkv;		/* (ENG__ATTN_KB, max(hd_k, hd_v)) as f32 */
	float *ts;		/* (R, TILE_CHUNK) scores, then weights */
	float *tacc;		/* (R, hd_v) unnormalized outputs */
	float *tm, *tl;		/* (R) running maxima and sums */
};

/* Tiled attention (prefill, AVX-512): tokens per work item, and keys per
 * online-softmax update. */
#define TILE_TOKENS 32
#define TILE_CHUNK 64

struct eng_fwd {
	const eng_model *model;	/* borrowed */
	eng_hparams hp;
	eng_pool *pool;		/* owned */
	uint32_t n_batch;
	int rope_neox;		/* 1: rotate (i, i+n_rot/2); 0: (2i, 2i+1) */
	float attn_scale;	/* applied to q . k */
	float attn_scale0;	/* gemma3: applied to Q after RoPE */
	int scale_q_first;	/* gemma3 scales Q before attention */
	float emb_scale;	/* gemma3: sqrt(n_embd); else 1 */
	float freq_scale;	/* linear rope scaling: 1/factor */

	eng_qmat tok_embd;	/* (n_vocab, n_embd) */
	eng_qmat output;	/* (n_vocab, n_embd), may be tok_embd */
	float *output_norm;	/* (n_embd) */
	float *rope_freqs;	/* (n_rot/2) llama3 frequency divisors or NULL */
	struct fwd_layer *layers;	/* (n_layer) */

	/* Activations of one step of n <= n_batch tokens, token-major. */
	float *x;		/* (n_batch, n_embd) residual stream */
	float *xb;		/* (n_batch, n_embd) normed input of a sublayer */
	float *xb2;		/* (n_batch, n_embd) sublayer output */
	float *q;		/* (n_batch, n_head*hd_k) */
	float *k;		/* (n_batch, n_kv*hd_k) */
	float *v;		/* (n_batch, n_kv*hd_v) */
	float *att;		/* (n_batch, n_head*hd_v) attention output */
	float *hb;		/* (n_batch, n_ff) gate */
	float *hb2;		/* (n_batch, n_ff) up */
	float *rope;		/* (2, n_batch, n_rot) cos/sin pairs, per rope set */
	float *logits;		/* (logits_cap / n_vocab, n_vocab) */
	size_t logits_cap;	/* floats */

	struct attn_scratch *ts;	/* (nth) */
	size_t ts_keys;		/* keys the scratch has room for */
	float *ts_mem;

	/* SIMD helpers chosen at open. */
	void (*rmsnorm)(float *out, const float *x, const float *w,
	    uint32_t n, size_t rows, float eps);
	void (*geglu)(float *y, const float *g, const float *u, size_t n);
	void (*vacc)(uint32_t n, float *out, uint32_t ng, const float *p,
	    size_t ps, const void *v, size_t vs, uint32_t nk, int is_f16);
	void (*scale_f16)(uint32_t n, eng_f16 *y, float a);
	void (*mad_f16)(uint32_t n, eng_f16 *y, const eng_f16 *x, float a);
	eng_attn_mode attn_mode;
	float (*kq_dot_f16)(uint32_t n, const eng_f16 *k, const eng_f16 *q);
	eng_vec_dot_fn kdot;	/* key (cache type) . f32 query rows */
	eng_type kdot_type;
	const eng__attn_kern *akern;	/* tiled attention; NULL: none */

	/* Sparse attention: settings, a plan per layer and kv head (kept
	 * from step to step: a question's picks stay pinned while it is
	 * answered), the rotation tables of the current layer's ranges. */
	eng_sparse_params sparse;
	struct eng__plan *plans;	/* (n_layer, n_head_kv) */
	float *rot;		/* (n_head_kv, rot_ranges, n_rot) */
	size_t rot_cap;		/* floats */
	uint32_t rot_ranges;

	/* Recording what the last token attended (eng_fwd_record). */
	int rec_on;
	float *rec_w;		/* attention mass per block */
	size_t rec_cap;		/* blocks */
	uint32_t rec_B, rec_end;	/* block size; end of the context */
	double rec_keys;	/* sum of keys attended */
	uint32_t rec_count;	/* (layer, kv head) pairs recorded */
	uint32_t rec_group;
	uint32_t rec_skip;	/* positions below are not recorded */
};

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

__attribute__((target("avx2,fma,f16c")))
static void mad_f16_avx2(uint32_t n, eng_f16 *y, const eng_f16 *x, float a)
{
	__m256 va = _mm256_set1_ps(a);
	uint32_t i = 0;
	for (; i + 8 <= n; i += 8) {
		__m256 vy = _mm256_cvtph_ps(_mm_loadu_si128((__m128i *)(y + i)));
		__m256 vx = _mm256_cvtph_ps(_mm_loadu_si128(
		    (const __m128i *)(x + i)));
		_mm_storeu_si128((__m128i *)(y + i), _mm256_cvtps_ph(
		    _mm256_fmadd_ps(vx, va, vy), _MM_FROUND_TO_NEAREST_INT));
	}
	mad_f16_scalar(n - i, y + i, x + i, a);
}
#endif

/* q . k of two f16 rows summed in the order of ggml_vec_dot_f16 on the
 * same SIMD level (llama.cpp is built for the host), so that attention
 * scores are bit-identical to llama.cpp's: 4 accumulators of 16 (AVX-512)
 * or 8 (AVX2) lanes over steps of 64 or 32 elements, reduced pairwise;
 * the tail in double. */
static float kq_dot_f16_scalar(uint32_t n, const eng_f16 *k, const eng_f16 *q)
{
	double s = 0.0;
	for (uint32_t i = 0; i < n; i++)
		s += (double)(eng_f16_to_f32(k[i]) * eng_f16_to_f32(q[i]));
	return (float)s;
}

#if FWD_X86
__attribute__((target("avx2,fma,f16c")))
static float kq_dot_f16_avx2(uint32_t n, const eng_f16 *k, const eng_f16 *q)
{
	__m256 acc[4] = { _mm256_setzero_ps(), _mm256_setzero_ps(),
	    _mm256_setzero_ps(), _mm256_setzero_ps() };
	uint32_t np = n & ~31u, i;
	double s;

	for (i = 0; i < np; i += 32)
		for (int j = 0; j < 4; j++) {
			__m256 a = _mm256_cvtph_ps(_mm_loadu_si128(
			    (const __m128i *)(k + i + 8 * j)));
			__m256 b = _mm256_cvtph_ps(_mm_loadu_si128(
			    (const __m128i *)(q + i + 8 * j)));
			acc[j] = _mm256_fmadd_ps(a, b, acc[j]);
		}
	acc[0] = _mm256_add_ps(acc[0], acc[2]);
	acc[1] = _mm256_add_ps(acc[1], acc[3]);
	acc[0] = _mm256_add_ps(acc[0], acc[1]);
	__m128 t0 = _mm_add_ps(_mm256_castps256_ps128(acc[0]),
	    _mm256_extractf128_ps(acc[0], 1));
	__m128 t1 = _mm_hadd_ps(t0, t0);
	s = _mm_cvtss_f32(_mm_hadd_ps(t1, t1));
	for (; i < n; i++)
		s += (double)(eng_f16_to_f32(k[i]) * eng_f16_to_f32(q[i]));
	return (float)s;
}

__attribute__((target("avx512f,f16c,fma")))
static float kq_dot_f16_avx512(uint32_t n, const eng_f16 *k, const eng_f16 *q)
{
	__m512 acc[4] = { _mm512_setzero_ps(), _mm512_setzero_ps(),
	    _mm512_setzero_ps(), _mm512_setzero_ps() };
	uint32_t np = n & ~63u, i;
	double s;

	for (i = 0; i < np; i += 64)
		for (int j = 0; j < 4; j++) {
			__m512 a = _mm512_cvtph_ps(_mm256_loadu_si256(
			    (const __m256i *)(k + i + 16 * j)));
			__m512 b = _mm512_cvtph_ps(_mm256_loadu_si256(
			    (const __m256i *)(q + i + 16 * j)));
			acc[j] = _mm512_fmadd_ps(a, b, acc[j]);
		}
	acc[0] = _mm512_add_ps(acc[0], acc[2]);
	acc[1] = _mm512_add_ps(acc[1], acc[3]);
	acc[0] = _mm512_add_ps(acc[0], acc[1]);
	s = _mm512_reduce_add_ps(acc[0]);
	for (; i < n; i++)
		s += (double)(eng_f16_to_f32(k[i]) * eng_f16_to_f32(q[i]));
	return (float)s;
}
#endif

/* ggml's GELU (tanh form) looked up by the f16 rounding of its input, the
 * result rounded to f16: GGML_GELU_FP16 in ggml-cpu/vec.h. */
static eng_f16 gelu_table[(1 << 16) + 2];	/* +2: 4-byte gathers */
static pthread_once_t gelu_once = PTHREAD_ONCE_INIT;

static float gelu_f32(float x)
{
	const float c = 0.79788456080286535587989211986876f;	/* sqrt(2/pi) */
	return 0.5f * x * (1.0f + tanhf(c * x * (1.0f + 0.044715f * x * x)));
}

static void gelu_table_init(void)
{
	for (uint32_t i = 0; i < (1u << 16); i++)
		gelu_table[i] = eng_f32_to_f16(gelu_f32(eng_f16_to_f32(
		    (eng_f16)i)));
}

/* y = gelu(g) * u, elementwise over n. */
static void geglu(float *y, const float *g, const float *u, size_t n)
{
	for (size_t i = 0; i < n; i++) {
		float x = g[i];
		if (x <= -10.0f)
			y[i] = 0.0f;
		else if (x >= 10.0f)
			y[i] = x * u[i];
		else
			y[i] = eng_f16_to_f32(gelu_table[eng_f32_to_f16(x)]) *
			    u[i];
	}
}

#if FWD_X86
/* geglu with the rounding and the table lookup done 8 at a time: the
 * same values as geglu's (F16C rounds to nearest even as eng_f32_to_f16
 * does). */
__attribute__((target("avx2,fma,f16c")))
static void geglu_avx2(float *y, const float *g, const float *u, size_t n)
{
	const __m256 lo = _mm256_set1_ps(-10.0f), hi = _mm256_set1_ps(10.0f);
	size_t i = 0;

	for (; i + 8 <= n; i += 8) {
		__m256 x = _mm256_loadu_ps(g + i), uu = _mm256_loadu_ps(u + i);
		__m256i idx = _mm256_cvtepu16_epi32(_mm256_cvtps_ph(x,
		    _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC));
		__m256i t = _mm256_and_si256(_mm256_i32gather_epi32(
		    (const int *)(const void *)gelu_table, idx, 2),
		    _mm256_set1_epi32(0xffff));
		__m256 gv = _mm256_cvtph_ps(_mm_packus_epi32(
		    _mm256_castsi256_si128(t), _mm256_extracti128_si256(t, 1)));
		__m256 r = _mm256_mul_ps(gv, uu);
		r = _mm256_blendv_ps(r, _mm256_setzero_ps(),
		    _mm256_cmp_ps(x, lo, _CMP_LE_OQ));
		r = _mm256_blendv_ps(r, _mm256_mul_ps(x, uu),
		    _mm256_cmp_ps(x, hi, _CMP_GE_OQ));
		_mm256_storeu_ps(y + i, r);
	}
	if (i < n)
		geglu(y + i, g + i, u + i, n - i);
}
#endif

/* y = silu(g) * u. */
static void swiglu(float *y, const float *g, const float *u, size_t n)
{
	for (size_t i = 0; i < n; i++)
		y[i] = g[i] / (1.0f + expf(-g[i])) * u[i];
}

/* out = x / rms(x) * w over n elements, for rows rows of stride n.  The
 * sum of squares in double as ggml's rms_norm. */
static void rmsnorm(float *out, const float *x, const float *w, uint32_t n,
    size_t rows, float eps)
{
	for (size_t r = 0; r < rows; r++, x += n, out += n) {
		double sum = 0.0;
		for (uint32_t i = 0; i < n; i++)
			sum += (double)(x[i] * x[i]);
		float mean = (float)(sum / n);
		float scale = 1.0f / sqrtf(mean + eps);
		for (uint32_t i = 0; i < n; i++)
			out[i] = (x[i] * scale) * w[i];
	}
}

#if FWD_X86
/* rmsnorm 8 lanes at a time, squares summed in double as there (each
 * float square is exact in double; only the order of the sum differs). */
__attribute__((target("avx2,fma")))
static void rmsnorm_avx2(float *out, const float *x, const float *w,
    uint32_t n, size_t rows, float eps)
{
	for (size_t r = 0; r < rows; r++, x += n, out += n) {
		__m256d s0 = _mm256_setzero_pd(), s1 = _mm256_setzero_pd();
		uint32_t i = 0;
		for (; i + 8 <= n; i += 8) {
			__m256 v = _mm256_loadu_ps(x + i);
			__m256 sq = _mm256_mul_ps(v, v);
			s0 = _mm256_add_pd(s0, _mm256_cvtps_pd(
			    _mm256_castps256_ps128(sq)));
			s1 = _mm256_add_pd(s1, _mm256_cvtps_pd(
			    _mm256_extractf128_ps(sq, 1)));
		}
		double d[4], sum;
		_mm256_storeu_pd(d, _mm256_add_pd(s0, s1));
		sum = (d[0] + d[1]) + (d[2] + d[3]);
		for (; i < n; i++)
			sum += (double)(x[i] * x[i]);
		float scale = 1.0f / sqrtf((float)(sum / n) + eps);
		__m256 vs = _mm256_set1_ps(scale);
		for (i = 0; i + 8 <= n; i += 8)
			_mm256_storeu_ps(out + i, _mm256_mul_ps(_mm256_mul_ps(
			    _mm256_loadu_ps(x + i), vs), _mm256_loadu_ps(w + i)));
		for (; i < n; i++)
			out[i] = (x[i] * scale) * w[i];
	}
}
#endif

static void add_rows(float *x, const float *y, size_t n)
{
	for (size_t i = 0; i < n; i++)
		x[i] += y[i];
}

static void add_bias(float *x, const float *b, uint32_t dim, uint32_t rows)
{
	if (!b)
		return;
	for (uint32_t r = 0; r < rows; r++)
		add_rows(x + (size_t)r * dim, b, dim);
}

/* ------------------------------------------------------------------------
 * RoPE
 * ------------------------------------------------------------------------ */

/* cos/sin pairs for n positions from pos0: tab[t][2i], tab[t][2i+1] for
 * pair i < n_rot/2.  The angle is built as ggml_rope_cache_init does:
 * theta = pos, then theta *= base^(-2/n_rot) per pair, divided by the
 * pair's frequency factor, times freq_scale. */
static void rope_table(float *tab, uint32_t pos0, uint32_t n, uint32_t n_rot,
    float base, float freq_scale, const float *freq_factors)
{
	float theta_scale = powf(base, -2.0f / (float)n_rot);
	for (uint32_t t = 0; t < n; t++) {
		float theta = (float)(pos0 + t);
		float *c = tab + (size_t)t * n_rot;
		for (uint32_t i = 0; i < n_rot / 2; i++) {
			float ff = freq_factors ? freq_factors[i] : 1.0f;
			float th = freq_scale * (theta / ff);
			c[2 * i] = cosf(th);
			c[2 * i + 1] = sinf(th);
			theta *= theta_scale;
		}
	}
}

/* Rotates the first n_rot dims of each of n_heads heads (stride hd) of n
 * token rows (stride row). */
static void rope_apply(float *x, const float *tab, uint32_t n,
    uint32_t n_heads, uint32_t hd, size_t row, uint32_t n_rot, int neox)
{
	uint32_t half = n_rot / 2;
	for (uint32_t t = 0; t < n; t++) {
		const float *c = tab + (size_t)t * n_rot;
		for (uint32_t h = 0; h < n_heads; h++) {
			float *v = x + t * row + (size_t)h * hd;
			for (uint32_t i = 0; i < half; i++) {
				uint32_t a = neox ? i : 2 * i;
				uint32_t b = neox ? i + half : 2 * i + 1;
				float x0 = v[a], x1 = v[b];
				v[a] = x0 * c[2 * i] - x1 * c[2 * i + 1];
				v[b] = x0 * c[2 * i + 1] + x1 * c[2 * i];
			}
		}
	}
}

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
	uint32_t half = hp->n_rot / 2;
	const float *c;

	if (!rg[r].shift)
		return q;
	c = f->rot + ((size_t)g * f->rot_ranges + r) * hp->n_rot;
	for (uint32_t h = 0; h < group; h++) {
		const float *x = q + (size_t)h * hdk;
		float *y = s->qrot + (size_t)h * hdk;
		memcpy(y, x, hdk * sizeof(float));
		for (uint32_t i = 0; i < half; i++) {
			uint32_t a = f->rope_neox ? i : 2 * i;
			uint32_t b = f->rope_neox ? i + half : 2 * i + 1;
			float cs = c[2 * i], sn = c[2 * i + 1];
			y[a] = x[a] * cs + x[b] * sn;
			y[b] = x[b] * cs - x[a] * sn;
		}
	}
	return s->qrot;
}

/* One key/value row of the online softmax below, for the group's heads:
 * running maxima M, sums S, f16 accumulators acc; sc is scratch. */
static void f16acc_row(const eng_fwd *f, uint32_t group, const eng_f16 *kr,
    const eng_f16 *vr, const eng_f16 *q16, eng_f16 *acc, float *M, float *S,
    float *sc)
{
	uint32_t hdk = f->hp.head_dim_k, hdv = f->hp.head_dim_v;

	for (uint32_t h = 0; h < group; h++)
		sc[h] = f->kq_dot_f16(hdk, kr, q16 + (size_t)h * hdk);
	for (uint32_t h = 0; h < group; h++) {
		float x = sc[h] * f->attn_scale, ms = 1.0f, vs = 1.0f;
		eng_f16 *ah = acc + (size_t)h * hdv;
		if (x > M[h]) {
			ms = expf(M[h] - x);
			M[h] = x;
			f->scale_f16(hdv, ah, ms);
		} else {
			vs = expf(x - M[h]);
		}
		f->mad_f16(hdv, ah, vr, vs);
		S[h] = S[h] * ms + vs;
	}
}

/* llama.cpp's CPU flash attention for steps of fewer than 64 queries
 * (ggml_compute_forward_flash_attn_ext_f16_one_chunk): Q rounded to f16,
 * one pass over the keys with an online softmax, values accumulated in an
 * f16 vector.  Used only with an F16 cache. */
static int attn_one_f16acc(struct attn_job *j, struct attn_scratch *s,
    uint32_t t, uint32_t g)
{
	eng_fwd *f = j->f;
	const eng_hparams *hp = &f->hp;
	uint32_t hdk = hp->head_dim_k, hdv = hp->head_dim_v;
	uint32_t group = hp->n_head / hp->n_head_kv;
	uint32_t p = j->pos0 + t;
	const float *q = f->q + ((size_t)t * hp->n_head + g * group) * hdk;
	float *out = f->att + ((size_t)t * hp->n_head + g * group) * hdv;
	eng_f16 *acc = (eng_f16 *)s->acc;	/* (group, hdv) f16 */
	float *M = s->scores, *S = s->scores + group, *sc = S + group;
	eng_f16 *q16 = (eng_f16 *)s->qrow;	/* (group, hdk) f16 */
	const struct eng__range *rg;
	struct eng__range one;
	uint32_t nr = attn_ranges(j, g, p, &rg, &one);
	eng_kv_span sp;
	int rc;

	memset(acc, 0, (size_t)group * hdv * sizeof(eng_f16));
	for (uint32_t h = 0; h < group; h++) {
		M[h] = -INFINITY;
		S[h] = 0.0f;
	}
	for (uint32_t r = 0; r < nr; r++) {
		uint32_t e = range_end(rg, r, nr, p);
		const float *qr = range_query(j, s, g, rg, r, q);
		for (size_t i = 0; i < (size_t)group * hdk; i++)
			q16[i] = eng_f32_to_f16(qr[i]);
		for (uint32_t pos = rg[r].pos0; pos < e; pos += sp.n) {
			if ((rc = j->kv->ops->view(j->kv, j->layer, g, pos,
			    e - pos, &sp)))
				return rc;
			for (uint32_t i = 0; i < sp.n; i++)
				f16acc_row(f, group, (const eng_f16 *)
				    ((const char *)sp.k + i * sp.k_stride),
				    (const eng_f16 *)((const char *)sp.v +
				    i * sp.v_stride), q16, acc, M, S, sc);
		}
	}
	for (uint32_t h = 0; h < group; h++) {
		float inv = S[h] == 0.0f ? 0.0f : 1.0f / S[h];
		for (uint32_t d = 0; d < hdv; d++)
			out[(size_t)h * hdv + d] = eng_f16_to_f32(
			    acc[(size_t)h * hdv + d]) * inv;
	}
	return 0;
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

	for (uint32_t g = 0; g < hp->n_head_kv; g++) {
		struct eng__query qs = { f->q + (size_t)g * group * hdk,
		    (size_t)hp->n_head * hdk, group, hdk, n, pos0,
		    f->attn_scale };
		if ((rc = eng__sparse_plan(&pl[g], &f->sparse, kv, il, g, &qs,
		    f->pool)))
			return rc;
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
				rope_table(f->rot + ((size_t)g * maxr + r) *
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
	uint32_t n_items = (j->tiled ? n_tiles : j->n) * n_kv;
	(void)nth;
	for (;;) {
		uint32_t it = atomic_fetch_add_explicit(&j->next, 1,
		    memory_order_relaxed);
		if (it >= n_items || atomic_load(&j->rc))
			return;
		uint32_t t = it / n_kv, g = it % n_kv;
		struct attn_scratch *s = &j->f->ts[ith];
		int rc;
		if (j->tiled) {
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
static int attn_reserve(eng_fwd *f, size_t n_keys)
{
	const eng_hparams *hp = &f->hp;
	size_t group = hp->n_head / hp->n_head_kv;
	size_t per, nth = (size_t)eng_pool_threads(f->pool);
	float *mem;

	if (n_keys <= f->ts_keys)
		return 0;
	if (n_keys < 1024)
		n_keys = 1024;
	size_t R = TILE_TOKENS * group, hdm = hp->head_dim_k > hp->head_dim_v ?
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

/* ------------------------------------------------------------------------
 * The forward pass of one step
 * ------------------------------------------------------------------------ */

static int mm(eng_fwd *f, float *out, const eng_qmat *w, const float *x,
    uint32_t n)
{
	return eng_matmul(out, w, x, n, f->pool);
}

/* Row-wise work of a step split over the pool: fn(args, r0, r1) on a
 * contiguous share of the rows per thread (the caller's included).  Small
 * work stays on the caller: waking workers costs more. */
struct rows_job {
	void (*fn)(const struct rows_job *j, size_t r0, size_t r1);
	size_t rows;
	float *out;
	const float *x, *w;
	uint32_t n;		/* floats per row */
	float eps;
	const eng_fwd *f;
	/* rope */
	const float *tab;
	uint32_t n_heads, hd, n_rot;
	size_t row;
};

static void rows_task(void *arg, int ith, int nth)
{
	const struct rows_job *j = arg;
	size_t r0 = j->rows * (size_t)ith / (size_t)nth;
	size_t r1 = j->rows * (size_t)(ith + 1) / (size_t)nth;
	if (r0 < r1)
		j->fn(j, r0, r1);
}

static void par_rows(eng_fwd *f, struct rows_job *j)
{
	if (j->rows * j->n < 16384 || eng_pool_threads(f->pool) < 2)
		j->fn(j, 0, j->rows);
	else
		eng_pool_run(f->pool, rows_task, j);
}

static void norm_rows(const struct rows_job *j, size_t r0, size_t r1)
{
	j->f->rmsnorm(j->out + r0 * j->n, j->x + r0 * j->n, j->w, j->n,
	    r1 - r0, j->eps);
}

/* out = rmsnorm(x) * w over rows of n (out may be x). */
static void norm(eng_fwd *f, float *out, const float *x, const float *w,
    uint32_t n, size_t rows)
{
	struct rows_job j = { .fn = norm_rows, .rows = rows, .out = out,
	    .x = x, .w = w, .n = n, .eps = f->hp.rms_eps, .f = f };
	par_rows(f, &j);
}

static void glu_rows(const struct rows_job *j, size_t r0, size_t r1)
{
	size_t a = r0 * j->n, c = (r1 - r0) * j->n;
	if (j->f->hp.arch == ENG_ARCH_GEMMA3)
		j->f->geglu(j->out + a, j->out + a, j->x + a, c);
	else
		swiglu(j->out + a, j->out + a, j->x + a, c);
}

/* g = act(g) * u over rows of n. */
static void glu(eng_fwd *f, float *g, const float *u, uint32_t n,
    size_t rows)
{
	struct rows_job j = { .fn = glu_rows, .rows = rows, .out = g, .x = u,
	    .n = n, .f = f };
	par_rows(f, &j);
}

static void add_rows_job(const struct rows_job *j, size_t r0, size_t r1)
{
	add_rows(j->out + r0 * j->n, j->x + r0 * j->n, (r1 - r0) * j->n);
}

/* x += y over rows of n. */
static void add(eng_fwd *f, float *x, const float *y, uint32_t n,
    size_t rows)
{
	struct rows_job j = { .fn = add_rows_job, .rows = rows, .out = x,
	    .x = y, .n = n, .f = f };
	par_rows(f, &j);
}

static void rope_rows(const struct rows_job *j, size_t r0, size_t r1)
{
	rope_apply(j->out + r0 * j->row, j->tab + r0 * j->n_rot,
	    (uint32_t)(r1 - r0), j->n_heads, j->hd, j->row, j->n_rot,
	    j->f->rope_neox);
}

/* RoPE of n tokens' n_heads heads (rows of width row). */
static void rope(eng_fwd *f, float *x, const float *tab, uint32_t n,
    uint32_t n_heads, uint32_t hd, size_t row)
{
	struct rows_job j = { .fn = rope_rows, .rows = n, .out = x,
	    .n = (uint32_t)row, .f = f, .tab = tab, .n_heads = n_heads,
	    .hd = hd, .n_rot = f->hp.n_rot, .row = row };
	par_rows(f, &j);
}

/* Attention of layer il for the step: plan (sparse, global layers), the
 * work items on the pool, then the record of the last token if asked. */
static int attention(eng_fwd *f, eng_kv *kv, uint32_t il, uint32_t n,
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
	atomic_init(&job.next, 0);
	atomic_init(&job.rc, 0);
	eng_pool_run(f->pool, attn_task, &job);
	if ((rc = atomic_load(&job.rc)))
		return rc;
	if (f->rec_on && !L->swa)
		return attn_record(&job);
	return 0;
}

/* Runs tokens[0..n) at positions pos0.. (n <= n_batch) through the model,
 * writing keys and values of every layer into kv.  If logits is not NULL,
 * it receives the logits of the last n_out tokens of the step
 * ((n_out, n_vocab)). */
static int forward(eng_fwd *f, eng_kv *kv, const int32_t *tokens,
    uint32_t n, uint32_t pos0, float *logits, uint32_t n_out)
{
	const eng_hparams *hp = &f->hp;
	uint32_t dim = hp->n_embd, hdk = hp->head_dim_k, hdv = hp->head_dim_v;
	uint32_t nh = hp->n_head, nkv = hp->n_head_kv, n_ff = hp->n_ff;
	uint32_t qdim = nh * hdk, kdim = nkv * hdk, vdim = nkv * hdv;
	float *x = f->x;	/* (n, dim) */
	int rc;

	if (f->rec_on) {
		f->rec_B = kv->block_tokens ? kv->block_tokens : 64;
		if (f->rec_w)
			memset(f->rec_w, 0, f->rec_cap * sizeof(float));
		f->rec_keys = 0;
		f->rec_count = 0;
	}

	/* Token embeddings, (n, dim), times sqrt(dim) for Gemma. */
	for (uint32_t t = 0; t < n; t++) {
		const char *row = (const char *)f->tok_embd.data +
		    (size_t)tokens[t] * f->tok_embd.row_stride;
		if ((rc = eng_dequant_row_ref(f->tok_embd.type, row,
		    x + (size_t)t * dim, dim)))
			return rc;
		if (f->emb_scale != 1.0f)
			for (uint32_t i = 0; i < dim; i++)
				x[(size_t)t * dim + i] *= f->emb_scale;
	}

	/* RoPE tables for this step's positions: global, then local base. */
	rope_table(f->rope, pos0, n, hp->n_rot, hp->rope_base, f->freq_scale,
	    f->rope_freqs);
	if (hp->swa_pattern)
		rope_table(f->rope + (size_t)f->n_batch * hp->n_rot, pos0, n,
		    hp->n_rot, hp->rope_base_local, 1.0f, NULL);

	for (uint32_t il = 0; il < hp->n_layer; il++) {
		struct fwd_layer *L = &f->layers[il];
		const float *rtab = f->rope +
		    (size_t)L->rope_set * f->n_batch * hp->n_rot;

		/* ---- attention ---- */
		norm(f, f->xb, x, L->attn_norm, dim, n);
		/* q (n, nh*hdk), k (n, nkv*hdk), v (n, nkv*hdv) */
		if ((rc = mm(f, f->q, &L->wq, f->xb, n)) ||
		    (rc = mm(f, f->k, &L->wk, f->xb, n)) ||
		    (rc = mm(f, f->v, &L->wv, f->xb, n)))
			return rc;
		add_bias(f->q, L->bq, qdim, n);
		add_bias(f->k, L->bk, kdim, n);
		add_bias(f->v, L->bv, vdim, n);
		/* Gemma: RMSNorm of every head of q and k. */
		if (L->q_norm) {
			norm(f, f->q, f->q, L->q_norm, hdk, (size_t)n * nh);
			norm(f, f->k, f->k, L->k_norm, hdk, (size_t)n * nkv);
		}
		rope(f, f->q, rtab, n, nh, hdk, qdim);
		rope(f, f->k, rtab, n, nkv, hdk, kdim);
		if (f->scale_q_first)
			for (size_t i = 0; i < (size_t)n * qdim; i++)
				f->q[i] *= f->attn_scale0;
		/* Keys and values go into the cache first: attention reads
		 * them back in the cache's type, this step's included. */
		if ((rc = kv->ops->write(kv, il, pos0, n, f->k, f->v)))
			return rc;
		if ((rc = attention(f, kv, il, n, pos0)))
			return rc;
		/* att (n, nh*hdv) -> xb2 (n, dim) */
		if ((rc = mm(f, f->xb2, &L->wo, f->att, n)))
			return rc;
		if (L->post_attn_norm)
			norm(f, f->xb2, f->xb2, L->post_attn_norm, dim, n);
		add(f, x, f->xb2, dim, n);

		/* ---- feed-forward ---- */
		norm(f, f->xb, x, L->ffn_norm, dim, n);
		/* hb = gate(xb), hb2 = up(xb): (n, n_ff) */
		if ((rc = mm(f, f->hb, &L->w_gate, f->xb, n)) ||
		    (rc = mm(f, f->hb2, &L->w_up, f->xb, n)))
			return rc;
		glu(f, f->hb, f->hb2, n_ff, n);
		/* xb2 = down(hb): (n, dim) */
		if ((rc = mm(f, f->xb2, &L->w_down, f->hb, n)))
			return rc;
		if (L->post_ffn_norm)
			norm(f, f->xb2, f->xb2, L->post_ffn_norm, dim, n);
		add(f, x, f->xb2, dim, n);
	}

	if (!logits || n_out == 0)
		return 0;
	/* Final norm and output head on the last n_out rows: (n_out, vocab) */
	norm(f, f->xb, x + (size_t)(n - n_out) * dim, f->output_norm, dim,
	    n_out);
	return mm(f, logits, &f->output, f->xb, n_out);
}

/* ------------------------------------------------------------------------
 * Evaluation: steps of n_batch tokens
 * ------------------------------------------------------------------------ */

int eng_fwd_eval(eng_fwd *f, eng_kv *kv, const int32_t *tokens, uint32_t n,
    int all_logits, const float **logits, const atomic_int *cancel)
{
	const eng_hparams *hp;
	size_t need;
	int rc;

	if (!f || !kv || !tokens || n == 0)
		return ENG_EINVAL;
	hp = &f->hp;
	if (kv->n_layer != hp->n_layer || kv->n_head_kv != hp->n_head_kv ||
	    kv->head_dim_k != hp->head_dim_k ||
	    kv->head_dim_v != hp->head_dim_v ||
	    (kv->type != ENG_TYPE_F16 && kv->type != ENG_TYPE_F32))
		return ENG_EINVAL;
	for (uint32_t i = 0; i < n; i++)
		if (tokens[i] < 0 || (uint32_t)tokens[i] >= hp->n_vocab)
			return ENG_EINVAL;
	if (kv->n_pos > kv->n_ctx || n > kv->n_ctx - kv->n_pos)
		return ENG_ERANGE;
	/* Logits kept: all rows or the last one; bounded at 4 Gi floats. */
	need = (size_t)(all_logits ? n : 1) * hp->n_vocab;
	if ((uint64_t)(all_logits ? n : 1) * hp->n_vocab > (1ull << 32))
		return ENG_ERANGE;
	if (logits && need > f->logits_cap) {
		float *nl = realloc(f->logits, need * sizeof(float));
		if (!nl)
			return ENG_ENOMEM;
		f->logits = nl;
		f->logits_cap = need;
	}
	if (kv->type == ENG_TYPE_F16 || kv->type == ENG_TYPE_F32) {
		eng_type kt = kv->type;
		if (kt != f->kdot_type) {
			f->kdot = eng_vec_dot_get(kt, eng_simd_active());
			f->kdot_type = kt;
		}
	}
	if ((rc = attn_reserve(f, (size_t)kv->n_pos + n)))
		return rc;

	for (uint32_t done = 0; done < n;) {
		uint32_t nb = n - done < f->n_batch ? n - done : f->n_batch;
		uint32_t p0 = kv->n_pos;
		float *out = NULL;
		uint32_t n_out = 0;

		if (cancel && atomic_load(cancel))
			return ENG_ECANCELED;
		if (logits && all_logits) {
			out = f->logits + (size_t)done * hp->n_vocab;
			n_out = nb;
		} else if (logits && done + nb == n) {
			out = f->logits;
			n_out = 1;
		}
		rc = forward(f, kv, tokens + done, nb, p0, out, n_out);
		if (rc) {
			kv->ops->commit(kv, p0);
			return rc;
		}
		if ((rc = kv->ops->commit(kv, p0 + nb)))
			return rc;
		done += nb;
	}
	if (logits)
		*logits = f->logits;
	return 0;
}

/* ------------------------------------------------------------------------
 * Open / close
 * ------------------------------------------------------------------------ */

/* A 2-D weight (rows x cols as ggml's ne[1] x ne[0]) usable by eng_matmul. */
static int get_mat(eng_fwd *f, const char *name, uint64_t cols,
    uint64_t rows, int required, eng_qmat *out, char *err, size_t errlen)
{
	const eng_gguf_tensor *t = eng_gguf_tensor_find(
	    eng_model_gguf(f->model), name);
	const eng_type_traits *tr;
	size_t rb;

	memset(out, 0, sizeof *out);
	if (!t)
		return required ? eng__err(err, errlen, ENG_EFORMAT,
		    "tensor '%s' missing", name) : 0;
	if (t->n_dims != 2 || t->ne[0] != cols || t->ne[1] != rows)
		return eng__err(err, errlen, ENG_EFORMAT,
		    "tensor '%s': shape [%llu, %llu], expected [%llu, %llu]",
		    name, (unsigned long long)t->ne[0],
		    (unsigned long long)t->ne[1], (unsigned long long)cols,
		    (unsigned long long)rows);
	tr = eng_type_traits_get(t->type);
	if (!tr || !tr->has_dot || eng_row_bytes(t->type, (int64_t)cols, &rb))
		return eng__err(err, errlen, ENG_EUNSUP,
		    "tensor '%s': type %s not supported for matrices", name,
		    eng_type_name(t->type));
	if ((uint64_t)rb * rows > t->n_bytes)
		return eng__err(err, errlen, ENG_EFORMAT,
		    "tensor '%s': data too short", name);
	out->type = t->type;
	out->n_rows = (int64_t)rows;
	out->n_cols = (int64_t)cols;
	out->row_stride = rb;
	out->data = t->data;
	return 0;
}

/* A 1-D tensor of n elements copied to f32 (malloc'ed into *out). */
static int get_vec(eng_fwd *f, const char *name, uint64_t n, int required,
    float **out, char *err, size_t errlen)
{
	const eng_gguf_tensor *t = eng_gguf_tensor_find(
	    eng_model_gguf(f->model), name);
	const eng_type_traits *tr;

	*out = NULL;
	if (!t)
		return required ? eng__err(err, errlen, ENG_EFORMAT,
		    "tensor '%s' missing", name) : 0;
	tr = eng_type_traits_get(t->type);
	if (t->n_elements != n || t->ne[0] != n)
		return eng__err(err, errlen, ENG_EFORMAT,
		    "tensor '%s': %llu elements, expected %llu", name,
		    (unsigned long long)t->n_elements,
		    (unsigned long long)n);
	if (!tr || n % (uint64_t)tr->blck ||
	    n / (uint64_t)tr->blck * tr->bytes > t->n_bytes)
		return eng__err(err, errlen, ENG_EUNSUP,
		    "tensor '%s': type %s not supported for vectors", name,
		    eng_type_name(t->type));
	if (!(*out = malloc(n * sizeof(float))))
		return ENG_ENOMEM;
	if (eng_dequant_row_ref(t->type, t->data, *out, (int64_t)n)) {
		free(*out);
		*out = NULL;
		return eng__err(err, errlen, ENG_EUNSUP,
		    "tensor '%s': cannot convert type %s", name,
		    eng_type_name(t->type));
	}
	return 0;
}

static int load_layer(eng_fwd *f, uint32_t il, char *err, size_t errlen)
{
	const eng_hparams *hp = &f->hp;
	struct fwd_layer *L = &f->layers[il];
	uint64_t dim = hp->n_embd, qd = (uint64_t)hp->n_head * hp->head_dim_k;
	uint64_t kd = (uint64_t)hp->n_head_kv * hp->head_dim_k;
	uint64_t vd = (uint64_t)hp->n_head_kv * hp->head_dim_v;
	uint64_t od = (uint64_t)hp->n_head * hp->head_dim_v;
	int gemma = hp->arch == ENG_ARCH_GEMMA3;
	char nm[96];
	int rc;

#define NAME(s) (snprintf(nm, sizeof nm, "blk.%u." s, il), nm)
	if ((rc = get_vec(f, NAME("attn_norm.weight"), dim, 1, &L->attn_norm,
	    err, errlen)) ||
	    (rc = get_mat(f, NAME("attn_q.weight"), dim, qd, 1, &L->wq, err,
	    errlen)) ||
	    (rc = get_mat(f, NAME("attn_k.weight"), dim, kd, 1, &L->wk, err,
	    errlen)) ||
	    (rc = get_mat(f, NAME("attn_v.weight"), dim, vd, 1, &L->wv, err,
	    errlen)) ||
	    (rc = get_vec(f, NAME("attn_q.bias"), qd, 0, &L->bq, err,
	    errlen)) ||
	    (rc = get_vec(f, NAME("attn_k.bias"), kd, 0, &L->bk, err,
	    errlen)) ||
	    (rc = get_vec(f, NAME("attn_v.bias"), vd, 0, &L->bv, err,
	    errlen)) ||
	    (rc = get_mat(f, NAME("attn_output.weight"), od, dim, 1, &L->wo,
	    err, errlen)) ||
	    (rc = get_vec(f, NAME("ffn_norm.weight"), dim, 1, &L->ffn_norm,
	    err, errlen)) ||
	    (rc = get_mat(f, NAME("ffn_gate.weight"), dim, hp->n_ff, 1,
	    &L->w_gate, err, errlen)) ||
	    (rc = get_mat(f, NAME("ffn_up.weight"), dim, hp->n_ff, 1,
	    &L->w_up, err, errlen)) ||
	    (rc = get_mat(f, NAME("ffn_down.weight"), hp->n_ff, dim, 1,
	    &L->w_down, err, errlen)))
		return rc;
	if (gemma &&
	    ((rc = get_vec(f, NAME("attn_q_norm.weight"), hp->head_dim_k, 1,
	    &L->q_norm, err, errlen)) ||
	    (rc = get_vec(f, NAME("attn_k_norm.weight"), hp->head_dim_k, 1,
	    &L->k_norm, err, errlen)) ||
	    (rc = get_vec(f, NAME("post_attention_norm.weight"), dim, 1,
	    &L->post_attn_norm, err, errlen)) ||
	    (rc = get_vec(f, NAME("post_ffw_norm.weight"), dim, 1,
	    &L->post_ffn_norm, err, errlen))))
		return rc;
#undef NAME
	L->swa = hp->swa_pattern && hp->sliding_window &&
	    (il + 1) % hp->swa_pattern != 0;
	L->rope_set = L->swa ? 1 : 0;
	return 0;
}

void eng_fwd_params_init(eng_fwd_params *p)
{
	if (!p)
		return;
	p->n_threads = 0;
	p->n_batch = 512;
	p->attn_mode = ENG_ATTN_LLAMACPP;
	memset(&p->sparse, 0, sizeof p->sparse);
}

int eng_fwd_open(const eng_model *m, const eng_fwd_params *pp, eng_fwd **out,
    char *err, size_t errlen)
{
	eng_fwd_params p;
	const eng_hparams *hp;
	eng_fwd *f;
	size_t B;
	int rc;

	if (!m || !out)
		return eng__err(err, errlen, ENG_EINVAL, "invalid argument");
	*out = NULL;
	eng_fwd_params_init(&p);
	if (pp)
		p = *pp;
	if (p.n_batch == 0)
		p.n_batch = 512;
	if (p.n_batch > 65536)
		return eng__err(err, errlen, ENG_ERANGE,
		    "n_batch %u over 65536", p.n_batch);
	hp = eng_model_hparams(m);
	if (hp->rope_scaling == ENG_ROPE_SCALING_YARN)
		return eng__err(err, errlen, ENG_EUNSUP,
		    "YaRN rope scaling is not supported");
	if (hp->n_head % hp->n_head_kv || hp->n_rot > hp->head_dim_k ||
	    hp->n_rot % 2 || hp->n_layer > 4096 || hp->n_embd > 65536 ||
	    hp->n_ff > 1048576 || hp->head_dim_k > 4096 ||
	    hp->head_dim_v > 4096 || hp->n_head > 1024)
		return eng__err(err, errlen, ENG_ERANGE,
		    "model dimensions out of range");
	if (!(f = calloc(1, sizeof *f)))
		return ENG_ENOMEM;
	f->model = m;
	f->hp = *hp;
	f->n_batch = p.n_batch;
	f->attn_mode = p.attn_mode;
	eng_fwd_set_sparse(f, &p.sparse);
	pthread_once(&gelu_once, gelu_table_init);

	/* Architecture facts (llama.cpp: llama_model_rope_type, graphs). */
	f->rope_neox = hp->arch != ENG_ARCH_LLAMA;
	f->emb_scale = 1.0f;
	f->freq_scale = hp->rope_scaling == ENG_ROPE_SCALING_LINEAR ?
	    1.0f / hp->rope_scale_factor : 1.0f;
	f->attn_scale = 1.0f / sqrtf((float)hp->head_dim_k);
	if (hp->arch == ENG_ARCH_GEMMA3) {
		f->emb_scale = sqrtf((float)hp->n_embd);
		/* Gemma scales Q by 1/sqrt(head_dim) (1/sqrt(n_embd/n_head)
		 * for the 27B), then attends with scale 1. */
		f->attn_scale0 = hp->n_layer == 62 ?
		    1.0f / sqrtf((float)(hp->n_embd / hp->n_head)) :
		    1.0f / sqrtf((float)hp->head_dim_k);
		f->scale_q_first = 1;
		f->attn_scale = 1.0f;
	}

	if ((rc = get_mat(f, "token_embd.weight", hp->n_embd, hp->n_vocab, 1,
	    &f->tok_embd, err, errlen)) ||
	    (rc = get_mat(f, "output.weight", hp->n_embd, hp->n_vocab, 0,
	    &f->output, err, errlen)) ||
	    (rc = get_vec(f, "output_norm.weight", hp->n_embd, 1,
	    &f->output_norm, err, errlen)))
		goto fail;
	if (!f->output.data)
		f->output = f->tok_embd;
	if (hp->has_rope_freqs &&
	    (rc = get_vec(f, "rope_freqs.weight", hp->n_rot / 2, 1,
	    &f->rope_freqs, err, errlen)))
		goto fail;
	if (hp->rope_scaling == ENG_ROPE_SCALING_LLAMA3 && !f->rope_freqs) {
		rc = eng__err(err, errlen, ENG_EUNSUP,
		    "llama3 rope scaling without a rope_freqs tensor");
		goto fail;
	}
	if (!(f->layers = calloc(hp->n_layer, sizeof *f->layers))) {
		rc = ENG_ENOMEM;
		goto fail;
	}
	for (uint32_t il = 0; il < hp->n_layer; il++)
		if ((rc = load_layer(f, il, err, errlen)))
			goto fail;

	if ((rc = eng_pool_open(&f->pool, p.n_threads))) {
		eng__err(err, errlen, rc, "cannot start threads");
		goto fail;
	}
	B = f->n_batch;
	f->x = malloc(B * hp->n_embd * sizeof(float));
	f->xb = malloc(B * hp->n_embd * sizeof(float));
	f->xb2 = malloc(B * hp->n_embd * sizeof(float));
	f->q = malloc(B * hp->n_head * hp->head_dim_k * sizeof(float));
	f->k = malloc(B * hp->n_head_kv * hp->head_dim_k * sizeof(float));
	f->v = malloc(B * hp->n_head_kv * hp->head_dim_v * sizeof(float));
	f->att = malloc(B * hp->n_head * hp->head_dim_v * sizeof(float));
	f->hb = malloc(B * hp->n_ff * sizeof(float));
	f->hb2 = malloc(B * hp->n_ff * sizeof(float));
	f->rope = malloc(2 * B * (hp->n_rot ? hp->n_rot : 2) * sizeof(float));
	f->ts = calloc((size_t)eng_pool_threads(f->pool), sizeof *f->ts);
	f->plans = calloc((size_t)hp->n_layer * hp->n_head_kv,
	    sizeof *f->plans);
	if (!f->plans || !f->x || !f->xb || !f->xb2 || !f->q || !f->k || !f->v ||
	    !f->att || !f->hb || !f->hb2 || !f->rope || !f->ts) {
		rc = ENG_ENOMEM;
		goto fail;
	}
	f->vacc = vacc_scalar;
	f->rmsnorm = rmsnorm;
	f->geglu = geglu;
	f->scale_f16 = scale_f16_scalar;
	f->mad_f16 = mad_f16_scalar;
	f->kq_dot_f16 = kq_dot_f16_scalar;
#if FWD_X86
	if (eng_simd_active() >= ENG_SIMD_AVX2) {
		f->vacc = vacc_avx2;
		f->rmsnorm = rmsnorm_avx2;
		f->geglu = geglu_avx2;
		f->scale_f16 = scale_f16_avx2;
		f->mad_f16 = mad_f16_avx2;
		f->kq_dot_f16 = kq_dot_f16_avx2;
	}
	if (eng_simd_active() >= ENG_SIMD_AVX512)
		f->kq_dot_f16 = kq_dot_f16_avx512;
#endif
	f->kdot_type = ENG_TYPE_F16;
	f->kdot = eng_vec_dot_get(ENG_TYPE_F16, eng_simd_active());
	if (hp->head_dim_k % 16 == 0 && hp->head_dim_v % 16 == 0)
		f->akern = eng__attn_kern_get(eng_simd_active());
	*out = f;
	return 0;
fail:
	eng_fwd_close(f);
	return rc;
}

void eng_fwd_close(eng_fwd *f)
{
	if (!f)
		return;
	if (f->layers)
		for (uint32_t il = 0; il < f->hp.n_layer; il++) {
			struct fwd_layer *L = &f->layers[il];
			free(L->attn_norm);
			free(L->bq);
			free(L->bk);
			free(L->bv);
			free(L->q_norm);
			free(L->k_norm);
			free(L->post_attn_norm);
			free(L->ffn_norm);
			free(L->post_ffn_norm);
		}
	free(f->layers);
	free(f->output_norm);
	free(f->rope_freqs);
	eng_pool_close(f->pool);
	free(f->x);
	free(f->xb);
	free(f->xb2);
	free(f->q);
	free(f->k);
	free(f->v);
	free(f->att);
	free(f->hb);
	free(f->hb2);
	free(f->rope);
	free(f->logits);
	free(f->ts);
	free(f->ts_mem);
	if (f->plans)
		for (size_t g = 0; g < (size_t)f->hp.n_layer *
		    f->hp.n_head_kv; g++)
			eng__plan_free(&f->plans[g]);
	free(f->plans);
	free(f->rot);
	free(f->rec_w);
	free(f);
}

uint32_t eng_fwd_n_batch(const eng_fwd *f)
{
	return f ? f->n_batch : 0;
}

uint32_t eng_fwd_n_vocab(const eng_fwd *f)
{
	return f ? f->hp.n_vocab : 0;
}

uint32_t eng__fwd_last_step(const eng_fwd *f, const eng_kv *kv, uint32_t n)
{
	if (n <= ENG_SPARSE_FEW || !f->sparse.top_k || !kv->block_tokens ||
	    !kv->ops->summary ||
	    (uint64_t)kv->n_pos + n <= f->sparse.dense_max)
		return n;
	return ENG_SPARSE_FEW;
}

void eng_fwd_set_sparse(eng_fwd *f, const eng_sparse_params *sp)
{
	uint64_t lim;

	if (!f || !sp)
		return;
	f->sparse = *sp;
	/* reach 0: keep every distance inside the trained context (1 where
	 * that leaves nothing: sparse.c then packs as tight as it can). */
	lim = (uint64_t)(sp->prefill_local > sp->local ? sp->prefill_local :
	    sp->local) + f->n_batch;
	if (!sp->reach)
		f->sparse.reach = f->hp.n_ctx_train > lim ?
		    (uint32_t)(f->hp.n_ctx_train - lim) : 1;
}

void eng_fwd_record(eng_fwd *f, int on)
{
	if (f)
		f->rec_on = !!on;
}

void eng_fwd_record_skip(eng_fwd *f, uint32_t n)
{
	if (f)
		f->rec_skip = n;
}

/* The heaviest blocks of the record, heaviest first (ties: earlier block
 * first); selection by repeated scans, cap is small. */
int eng_fwd_attended(const eng_fwd *f, eng_attn_block *out, uint32_t cap,
    uint32_t *n_out, uint64_t *n_keys)
{
	uint32_t nblk, prev_b = UINT32_MAX;
	float prev_w = INFINITY, norm;

	if (!f || !n_out || (cap && !out))
		return ENG_EINVAL;
	*n_out = 0;
	if (n_keys)
		*n_keys = 0;
	if (!f->rec_count || !f->rec_w)
		return 0;
	nblk = (f->rec_end + f->rec_B - 1) / f->rec_B;
	if (nblk > f->rec_cap)
		nblk = (uint32_t)f->rec_cap;
	norm = 1.0f / ((float)f->rec_count * (float)f->rec_group);
	while (*n_out < cap) {
		uint32_t best = UINT32_MAX;
		for (uint32_t b = 0; b < nblk; b++) {
			float w = f->rec_w[b];
			/* Strictly after (prev_w, prev_b) in the order. */
			if (w <= 0.0f || w > prev_w ||
			    (w == prev_w && b <= prev_b))
				continue;
			if (best == UINT32_MAX || w > f->rec_w[best])
				best = b;
		}
		if (best == UINT32_MAX)
			break;
		out[*n_out].pos0 = best * f->rec_B;
		out[*n_out].n = f->rec_end - best * f->rec_B < f->rec_B ?
		    f->rec_end - best * f->rec_B : f->rec_B;
		out[*n_out].weight = f->rec_w[best] * norm;
		(*n_out)++;
		prev_w = f->rec_w[best];
		prev_b = best;
	}
	if (n_keys)
		*n_keys = (uint64_t)(f->rec_keys / f->rec_count + 0.5);
	return 0;
}
