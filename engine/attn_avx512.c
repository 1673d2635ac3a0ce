/* attn_avx512.c - the kernels of tiled attention (AVX-512): a block of keys
 * or values to f32, the scores of R query rows against a block of keys,
 * and the probability-weighted sum of a block of values into R rows.
 *
 * Why: attention one token at a time re-reads every key and value for each
 * token and pays a horizontal sum per (key, head).  forward.c's tiled path
 * takes several tokens' queries at once; each key and value block is
 * converted once and used by all their rows, and the sums are reduced 16
 * at a time.  Only the order of float additions differs from the
 * one-token path (forward.c's attn_one).
 *
 * Invariants: hd is a multiple of 16; blocks hold at most
 * ENG__ATTN_KB rows; all pointers are to caller-owned f32 scratch except
 * the source of to_f32.
 */
#include "config.h"
#include <stdint.h>
#include <math.h>
#include <string.h>
#include "eng_internal.h"
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define AT_HAVE_X86 1
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx2,fma,f16c")
#include <immintrin.h>

#define AT_UNROLL _Pragma("GCC unroll 16")

static void at_to_f32(uint32_t kb, uint32_t hd, const void *src, size_t stride,
		      int is_f16, float *dst)
{
	for (uint32_t j = 0; j < kb; j++) {
		const char *r = (const char *)src + j * stride;
		float *o = dst + (size_t)j * hd;
		if (!is_f16) {
			memcpy(o, r, hd * sizeof(float));
			continue;
		}
		for (uint32_t d = 0; d < hd; d += 16)
			_mm512_storeu_ps(o + d, _mm512_cvtph_ps(_mm256_loadu_si256(
				(const __m256i *)(const void *)(r + 2 * d))));
	}
}

/* 16 vectors to one: lane i of the result is the sum of v[i]'s lanes. */
static inline __attribute__((always_inline)) __m512 at_reduce16(__m512 v[16])
{
	__m256 h[16];
	AT_UNROLL
	for (int i = 0; i < 16; i++)
		h[i] = _mm256_add_ps(_mm512_castps512_ps256(v[i]),
				     _mm512_extractf32x8_ps(v[i], 1));
	__m256 a[8], b[4], c[2];
	AT_UNROLL
	for (int i = 0; i < 8; i++)
		a[i] = _mm256_hadd_ps(h[2 * i], h[2 * i + 1]);
	/* a[i] = [v2i 01, v2i 23, v2i+1 01, v2i+1 23 | same for the high 4 lanes] */
	AT_UNROLL
	for (int i = 0; i < 4; i++)
		b[i] = _mm256_hadd_ps(a[2 * i], a[2 * i + 1]);
	/* b[i] = [v4i, v4i+1, v4i+2, v4i+3 (lanes 0-3) | (lanes 4-7)] */
	AT_UNROLL
	for (int i = 0; i < 2; i++)
		c[i] = _mm256_add_ps(_mm256_permute2f128_ps(b[2 * i], b[2 * i + 1], 0x20),
				     _mm256_permute2f128_ps(b[2 * i], b[2 * i + 1], 0x31));
	/* c[i] = the 8 sums of v[8i .. 8i+7] */
	return _mm512_insertf32x8(_mm512_castps256_ps512(c[0]), c[1], 1);
}

/* S[r * ss + j] = Q_r . K_j for r < R, j < kb: tiles of 4 rows x 4 keys,
 * 16 accumulators reduced together. */
static void at_scores(uint32_t R, uint32_t hd, const float *Q, const float *K,
		      uint32_t kb, float *S, size_t ss)
{
	uint32_t r0 = 0;
	for (; r0 + 4 <= R; r0 += 4) {
		for (uint32_t j0 = 0; j0 < kb; j0 += 4) {
			uint32_t nj = kb - j0 < 4 ? kb - j0 : 4;
			__m512 acc[16];
			AT_UNROLL
			for (int i = 0; i < 16; i++)
				acc[i] = _mm512_setzero_ps();
			const float *kp[4];
			for (int j = 0; j < 4; j++)
				kp[j] = K + (size_t)(j0 + ((uint32_t)j < nj ? (uint32_t)j : 0)) * hd;
			for (uint32_t d = 0; d < hd; d += 16) {
				__m512 k[4];
				AT_UNROLL
				for (int j = 0; j < 4; j++)
					k[j] = _mm512_loadu_ps(kp[j] + d);
				AT_UNROLL
				for (int r = 0; r < 4; r++) {
					__m512 q = _mm512_loadu_ps(Q + (size_t)(r0 + r) * hd + d);
					AT_UNROLL
					for (int j = 0; j < 4; j++)
						acc[4 * r + j] = _mm512_fmadd_ps(q, k[j], acc[4 * r + j]);
				}
			}
			float s[16];
			_mm512_storeu_ps(s, at_reduce16(acc));
			for (int r = 0; r < 4; r++)
				for (uint32_t j = 0; j < nj; j++)
					S[(size_t)(r0 + r) * ss + j0 + j] = s[4 * r + j];
		}
	}
	for (; r0 < R; r0++)
		for (uint32_t j = 0; j < kb; j++) {
			__m512 a = _mm512_setzero_ps();
			for (uint32_t d = 0; d < hd; d += 16)
				a = _mm512_fmadd_ps(_mm512_loadu_ps(Q + (size_t)r0 * hd + d),
						    _mm512_loadu_ps(K + (size_t)j * hd + d), a);
			S[(size_t)r0 * ss + j] = _mm512_reduce_add_ps(a);
		}
}

/* acc[r * hd + d] += sum_j P[r * ps + j] * V[j * hd + d]: 4 rows x 64
 * dims in registers over the block's values. */
static void at_pv(uint32_t R, uint32_t hd, const float *P, size_t ps,
		  const float *V, uint32_t kb, float *acc)
{
	uint32_t r0 = 0;
	for (; r0 + 4 <= R; r0 += 4) {
		uint32_t d0 = 0;
		for (; d0 + 64 <= hd; d0 += 64) {
			__m512 a[4][4];
			AT_UNROLL
			for (int r = 0; r < 4; r++)
				AT_UNROLL
				for (int c = 0; c < 4; c++)
					a[r][c] = _mm512_loadu_ps(acc + (size_t)(r0 + r) * hd + d0 + 16 * c);
			for (uint32_t j = 0; j < kb; j++) {
				__m512 v[4];
				AT_UNROLL
				for (int c = 0; c < 4; c++)
					v[c] = _mm512_loadu_ps(V + (size_t)j * hd + d0 + 16 * c);
				AT_UNROLL
				for (int r = 0; r < 4; r++) {
					__m512 p = _mm512_set1_ps(P[(size_t)(r0 + r) * ps + j]);
					AT_UNROLL
					for (int c = 0; c < 4; c++)
						a[r][c] = _mm512_fmadd_ps(p, v[c], a[r][c]);
				}
			}
			AT_UNROLL
			for (int r = 0; r < 4; r++)
				AT_UNROLL
				for (int c = 0; c < 4; c++)
					_mm512_storeu_ps(acc + (size_t)(r0 + r) * hd + d0 + 16 * c, a[r][c]);
		}
		for (; d0 < hd; d0 += 16)
			for (int r = 0; r < 4; r++) {
				float *o = acc + (size_t)(r0 + r) * hd + d0;
				__m512 x = _mm512_loadu_ps(o);
				for (uint32_t j = 0; j < kb; j++)
					x = _mm512_fmadd_ps(_mm512_set1_ps(P[(size_t)(r0 + r) * ps + j]),
							    _mm512_loadu_ps(V + (size_t)j * hd + d0), x);
				_mm512_storeu_ps(o, x);
			}
	}
	for (; r0 < R; r0++)
		for (uint32_t d0 = 0; d0 < hd; d0 += 16) {
			float *o = acc + (size_t)r0 * hd + d0;
			__m512 x = _mm512_loadu_ps(o);
			for (uint32_t j = 0; j < kb; j++)
				x = _mm512_fmadd_ps(_mm512_set1_ps(P[(size_t)r0 * ps + j]),
						    _mm512_loadu_ps(V + (size_t)j * hd + d0), x);
			_mm512_storeu_ps(o, x);
		}
}

/* e^x for x <= 0 (and above -inf), within about 2 ulp of expf: x = n ln2
 * + r with |r| <= ln2 / 2, e^r by its Taylor series to r^7 (error
 * r^8 / 8! < 6e-9), times 2^n by VSCALEFPS (0 when x is far below). */
static inline __attribute__((always_inline)) __m512 at_exp(__m512 x)
{
	x = _mm512_max_ps(x, _mm512_set1_ps(-104.0f));
	__m512 n = _mm512_roundscale_ps(_mm512_mul_ps(x, _mm512_set1_ps(1.44269504088896341f)),
					_MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
	__m512 r = _mm512_fnmadd_ps(n, _mm512_set1_ps(0.693145751953125f), x);
	r = _mm512_fnmadd_ps(n, _mm512_set1_ps(1.428606765330187045e-06f), r);
	__m512 p = _mm512_set1_ps(1.0f / 5040);
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 720));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 120));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 24));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f / 6));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(0.5f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	p = _mm512_fmadd_ps(p, r, _mm512_set1_ps(1.0f));
	return _mm512_scalef_ps(p, n);
}

static inline __attribute__((always_inline)) __mmask16 at_span(uint32_t i,
    uint32_t lo, uint32_t hi)
{
	uint32_t a = lo > i ? lo - i : 0, b = hi > i ? hi - i : 0;
	if (b > 16)
		b = 16;
	if (a >= b)
		return 0;
	return (__mmask16)(((1u << b) - 1) & ~((1u << a) - 1));
}

/* One row's step of the online softmax over a chunk of c scores, of which
 * [lo, hi) are visible: the others become weight 0, the visible ones
 * e^(scale * s - m') against the new running maximum m'; the row's sum l
 * and its accumulator acc (hd floats) are rescaled to m'. */
static void at_softmax(float *sc, uint32_t c, uint32_t lo, uint32_t hi,
		       float scale, float *m, float *l, float *acc, uint32_t hd)
{
	if (lo >= hi) {
		memset(sc, 0, c * sizeof(float));
		return;
	}
	__m512 vs = _mm512_set1_ps(scale), mx = _mm512_set1_ps(-INFINITY);
	for (uint32_t i = 0; i < c; i += 16) {
		__mmask16 k = at_span(i, lo, hi);
		mx = _mm512_mask_max_ps(mx, k, mx, _mm512_mul_ps(
			_mm512_maskz_loadu_ps(k, sc + i), vs));
	}
	float mc = _mm512_reduce_max_ps(mx);
	float mn = mc > *m ? mc : *m;
	float alpha = *m == -INFINITY ? 0.0f : expf(*m - mn);
	__m512 vm = _mm512_set1_ps(mn), sum = _mm512_setzero_ps();
	for (uint32_t i = 0; i < c; i += 16) {
		__mmask16 k = at_span(i, lo, hi);
		__mmask16 in = c - i >= 16 ? 0xffff : (__mmask16)((1u << (c - i)) - 1);
		__m512 e = _mm512_maskz_mov_ps(k, at_exp(_mm512_fmsub_ps(
			_mm512_maskz_loadu_ps(k, sc + i), vs, vm)));
		_mm512_mask_storeu_ps(sc + i, in, e);
		sum = _mm512_add_ps(sum, e);
	}
	if (alpha != 1.0f) {
		__m512 va = _mm512_set1_ps(alpha);
		for (uint32_t d = 0; d < hd; d += 16)
			_mm512_storeu_ps(acc + d, _mm512_mul_ps(va, _mm512_loadu_ps(acc + d)));
	}
	*l = *l * alpha + _mm512_reduce_add_ps(sum);
	*m = mn;
}

static const eng__attn_kern at_avx512 = { at_to_f32, at_scores, at_pv, at_softmax };

#pragma GCC pop_options
#endif

const eng__attn_kern *eng__attn_kern_get(eng_simd level)
{
#ifdef AT_HAVE_X86
	return level >= ENG_SIMD_AVX512 ? &at_avx512 : NULL;
#else
	(void)level;
	return NULL;
#endif
}
