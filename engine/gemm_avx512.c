/* gemm_avx512.c - prefill matrix products on interleaved rows (AVX-512
 * VNNI): the packing of weight panels, the activations' companion layout
 * and the 8-row x up-to-8-token kernels behind eng_gemm_get.
 *
 * Why: the tile kernels of kernels_x86.h take one weight row at a time, so
 * every 32-element block of every (row, token) pair pays a sign fix-up, a
 * conversion to float, a scale multiply and a horizontal sum at the end.
 * Here a 256-bit vector holds 4 consecutive quants of 8 rows; VPDPBUSD
 * against 4 broadcast activation bytes adds to the 8 rows' sums at once,
 * and the float work of a scale block is shared by the 8 rows: about 12
 * instructions per 256 multiply-adds instead of about 40.
 *
 * Invariants:
 *  - Packed quants are unsigned bytes q'; VPDPBUSD multiplies them with
 *    signed activations (|a| <= 127) into int32 without saturation.
 *  - "Offset" formats store q' = q + off and take -off * sum(a) of the
 *    block as the accumulator's start, so the int32 sums are exactly the
 *    direct kernels' (q8_0/q5_0/q4_0: off 128; q6_K: off 32, 16-element
 *    blocks).  "Min" formats (q4_K, q5_K) store q' = q and subtract
 *    m * (d_a * sum(a)) in float, as the row kernels do.
 *  - Rows past nr of a partial group are packed as zeros and never stored.
 *  - A q5_0 matrix packed whole ahead of time (eng_gemm_get_whole) keeps
 *    its 5 bits: per scale block, s[8], then four 32-byte vectors whose
 *    low nibbles are chunks 0-3 of the 8 rows and high nibbles chunks 4-7
 *    (chunk k: quants 4k..4k+3 of each row, as the vectors above), then
 *    eight 32-bit masks of the quants' fifth bits in the same order; the
 *    quants are q5 (0..31), taken with -16 * sum(a) (corr / 8): the int32
 *    sums are again the row kernels'.
 */
#include "config.h"
#include <stdint.h>
#include <string.h>
#include "kernels.h"

#if defined(__x86_64__) && defined(__GNUC__) && !defined(__clang__)
#define ENG_HAVE_X86 1
#pragma GCC push_options
#pragma GCC target("avx512f,avx512bw,avx512vl,avx512dq,avx512vnni,avx2,fma,f16c")
#include <immintrin.h>

#define G_AI static inline __attribute__((always_inline))
/* Bytes of one scale block of a group in the 5-bit q5_0 layout. */
#define G_Q5N_BYTES (ENG_GEMM_ROWS * 4 + 128 + 32)
#define G_UNROLL _Pragma("GCC unroll 16")
#define GR ENG_GEMM_ROWS

/* One entry per scale block of an activation row (after its n quants). */
typedef struct {
	float d;		/* the activation block's scale */
	union { int32_t corr; float dsum; } c;	/* -off * sum(a) | d * sum(a) */
} g_side;

/* ------------------------------------------------------------------------
 * Packing.  unpack(row, chunk c of 32 elements) gives the 32 q' of that
 * chunk and the scales (and mins) of the 32/bl blocks it covers.
 * ------------------------------------------------------------------------ */

G_AI float g_h2f(eng_f16 h)
{
	return _cvtsh_ss(h);
}

G_AI __m256i g_nibbles(const uint8_t *qs)
{
	__m128i q = _mm_loadu_si128((const __m128i *)(const void *)qs);
	return _mm256_and_si256(_mm256_setr_m128i(q, _mm_srli_epi16(q, 4)),
				_mm256_set1_epi8(15));
}

/* Signed 32-element formats: q' = q + 128 (the sign bit flipped). */
G_AI __m256i g_unpack_s32(const uint8_t *row, int64_t c, eng_type t,
				 float *s)
{
	__m256i q;
	if (t == ENG_TYPE_Q8_0) {
		const eng_block_q8_0 *b = (const eng_block_q8_0 *)(const void *)row + c;
		q = _mm256_loadu_si256((const __m256i *)(const void *)b->qs);
		*s = g_h2f(b->d);
	} else if (t == ENG_TYPE_Q5_0) {
		const eng_block_q5_0 *b = (const eng_block_q5_0 *)(const void *)row + c;
		__m256i nib = g_nibbles(b->qs);
		uint32_t h;
		memcpy(&h, b->qh, 4);
		q = _mm256_mask_sub_epi8(nib, (__mmask32)~h, nib, _mm256_set1_epi8(16));
		*s = g_h2f(b->d);
	} else {
		const eng_block_q4_0 *b = (const eng_block_q4_0 *)(const void *)row + c;
		q = _mm256_sub_epi8(g_nibbles(b->qs), _mm256_set1_epi8(8));
		*s = g_h2f(b->d);
	}
	return _mm256_xor_si256(q, _mm256_set1_epi8((char)0x80));
}

/* q4_K / q5_K: chunk c is group c % 8 of super-block c / 8. */
G_AI __m256i g_unpack_k45(const uint8_t *row, int64_t c, int five,
				 float *s, float *m)
{
	size_t bytes = five ? sizeof(eng_block_q5_K) : sizeof(eng_block_q4_K);
	const uint8_t *p = row + (size_t)(c / 8) * bytes;
	const eng_block_q4_K *h = (const void *)p;
	int g = (int)(c % 8), j = g / 2;
	const uint8_t *qs = five ? ((const eng_block_q5_K *)(const void *)p)->qs : h->qs;
	__m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * j));
	if (g & 1)
		v = _mm256_srli_epi16(v, 4);
	v = _mm256_and_si256(v, _mm256_set1_epi8(15));
	if (five) {
		__m256i hb = _mm256_loadu_si256((const __m256i *)(const void *)
			((const eng_block_q5_K *)(const void *)p)->qh);
		hb = _mm256_and_si256(_mm256_srli_epi16(hb, g), _mm256_set1_epi8(1));
		v = _mm256_or_si256(v, _mm256_slli_epi16(hb, 4));
	}
	uint8_t sc, mn;
	eng__k_scale_min(g, h->scales, &sc, &mn);
	*s = g_h2f(h->d) * sc;
	*m = g_h2f(h->dmin) * mn;
	return v;
}

/* q6_K: q' = q (0..63), off 32; chunk c covers 16-element groups 2c, 2c+1
 * of its super-block (element j*128 + s*32 + l, c % 8 = 4j + s). */
G_AI __m256i g_unpack_q6k(const uint8_t *row, int64_t c, float s[2])
{
	const eng_block_q6_K *b = (const eng_block_q6_K *)(const void *)row + c / 8;
	int cc = (int)(c % 8), j = cc / 4, sh = cc % 4;
	__m256i lo = _mm256_loadu_si256((const __m256i *)(const void *)
		(b->ql + 64 * j + 32 * (sh & 1)));
	if (sh >> 1)
		lo = _mm256_srli_epi16(lo, 4);
	lo = _mm256_and_si256(lo, _mm256_set1_epi8(15));
	__m256i hi = _mm256_loadu_si256((const __m256i *)(const void *)(b->qh + 32 * j));
	hi = _mm256_and_si256(_mm256_srli_epi16(hi, 2 * sh), _mm256_set1_epi8(3));
	float d = g_h2f(b->d);
	/* group index g of element e is e / 16: chunk cc holds 2cc, 2cc+1 */
	s[0] = d * b->scales[2 * cc];
	s[1] = d * b->scales[2 * cc + 1];
	return _mm256_or_si256(lo, _mm256_slli_epi16(hi, 4));
}

/* Rows r[0..7] (8 dwords each) to t[k] = dword k of every row. */
G_AI void g_transpose8(__m256i r[8])
{
	__m256i t[8], u[8];
	for (int i = 0; i < 4; i++) {
		t[2 * i] = _mm256_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
		t[2 * i + 1] = _mm256_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
	}
	for (int i = 0; i < 2; i++) {
		u[4 * i + 0] = _mm256_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
		u[4 * i + 1] = _mm256_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
		u[4 * i + 2] = _mm256_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
		u[4 * i + 3] = _mm256_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
	}
	for (int k = 0; k < 4; k++) {
		r[k] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x20);
		r[k + 4] = _mm256_permute2x128_si256(u[k], u[4 + k], 0x31);
	}
}

/* Packs rows [0, nr) of w (stride ws) as one group of GR rows.  kind: 0
 * signed 32, 1 q4_K, 2 q5_K, 3 q6_K. */
G_AI void g_pack(const void *w, size_t ws, int nr, int64_t n, void *dst,
			eng_type t, int kind)
{
	const int bl = kind == 3 ? 16 : 32, minf = kind == 1 || kind == 2;
	const size_t hdr = (size_t)(minf ? 2 : 1) * GR * 4;
	const size_t bbytes = hdr + (size_t)GR * bl;
	uint8_t *o = dst;
	for (int64_t c = 0; c < n / 32; c++) {
		__m256i v[GR];
		float s[2][GR], m[GR];
		for (int r = 0; r < GR; r++) {
			const uint8_t *row = (const uint8_t *)w + (size_t)r * ws;
			if (r >= nr) {
				v[r] = _mm256_setzero_si256();
				s[0][r] = s[1][r] = m[r] = 0;
				continue;
			}
			if (kind == 0) {
				v[r] = g_unpack_s32(row, c, t, &s[0][r]);
			} else if (kind == 3) {
				float s2[2];
				v[r] = g_unpack_q6k(row, c, s2);
				s[0][r] = s2[0];
				s[1][r] = s2[1];
			} else {
				v[r] = g_unpack_k45(row, c, kind == 2, &s[0][r], &m[r]);
			}
		}
		g_transpose8(v);
		/* v[k] = quants 4k..4k+3 of the 8 rows */
		for (int h = 0; h < 32 / bl; h++) {
			memcpy(o, s[h], GR * 4);
			if (minf)
				memcpy(o + GR * 4, m, GR * 4);
			for (int k = 0; k < bl / 4; k++)
				_mm256_storeu_si256((__m256i *)(void *)(o + hdr + 32 * k),
						    v[h * (bl / 4) + k]);
			o += bbytes;
		}
	}
}

/* q5_0 kept at 5 bits (see the header): the widened group, then each
 * q' = q5 + 112 back to q5, split into nibbles and fifth bits. */
static void g_pack_q5_0n(const void *w, size_t ws, int nr, int64_t n,
			 void *dst)
{
	uint8_t wide[GR * 4 + GR * 32];	/* one block of the widened layout */
	uint8_t *o = dst;
	for (int64_t c = 0; c < n / 32; c++) {
		g_pack((const uint8_t *)w + (size_t)c * sizeof(eng_block_q5_0), ws,
		       nr, 32, wide, ENG_TYPE_Q5_0, 0);
		__m256i u[8];
		for (int k = 0; k < 8; k++)
			u[k] = _mm256_sub_epi8(_mm256_loadu_si256((const __m256i *)(const void *)
				(wide + GR * 4 + 32 * k)), _mm256_set1_epi8(112));
		memcpy(o, wide, GR * 4);	/* the scales */
		const __m256i lo4 = _mm256_set1_epi8(15);
		for (int j = 0; j < 4; j++)
			_mm256_storeu_si256((__m256i *)(void *)(o + GR * 4 + 32 * j),
				_mm256_or_si256(_mm256_and_si256(u[j], lo4),
						_mm256_slli_epi16(_mm256_and_si256(u[j + 4], lo4), 4)));
		for (int k = 0; k < 8; k++) {
			uint32_t m = (uint32_t)_mm256_movemask_epi8(_mm256_slli_epi16(u[k], 3));
			memcpy(o + GR * 4 + 128 + 4 * k, &m, 4);
		}
		o += G_Q5N_BYTES;
	}
}

/* The 8 vectors of q5 (0..31) of one scale block of the 5-bit layout,
 * its quants at q (after the scales). */
G_AI void g_q5n_quants(const uint8_t *q, __m256i wv[8])
{
	const __m256i lo4 = _mm256_set1_epi8(15), b4 = _mm256_set1_epi8(16);
	G_UNROLL
	for (int j = 0; j < 4; j++) {
		__m256i v = _mm256_loadu_si256((const __m256i *)(const void *)(q + 32 * j));
		wv[j] = _mm256_and_si256(v, lo4);
		wv[j + 4] = _mm256_and_si256(_mm256_srli_epi16(v, 4), lo4);
	}
	G_UNROLL
	for (int k = 0; k < 8; k++) {
		uint32_t m;
		memcpy(&m, q + 128 + 4 * k, 4);
		wv[k] = _mm256_or_si256(wv[k], _mm256_maskz_mov_epi8((__mmask32)m, b4));
	}
}

/* One group of the 5-bit layout back to g_q5_0's: q' = q5 + 112. */
static void g_widen_q5n(const void *src, void *dst, int64_t n)
{
	const uint8_t *p = src;
	uint8_t *o = dst;
	for (int64_t c = 0; c < n / 32; c++, p += G_Q5N_BYTES, o += GR * 4 + GR * 32) {
		__m256i wv[8];
		memcpy(o, p, GR * 4);
		g_q5n_quants(p + GR * 4, wv);
		for (int k = 0; k < 8; k++)
			_mm256_storeu_si256((__m256i *)(void *)(o + GR * 4 + 32 * k),
					    _mm256_add_epi8(wv[k], _mm256_set1_epi8(112)));
	}
}

#define G_PACK(name, type, kind)						\
	static void g_pack_##name(const void *w, size_t ws, int nr,		\
				  int64_t n, void *dst)			\
	{									\
		g_pack(w, ws, nr, n, dst, type, kind);				\
	}
G_PACK(q8_0, ENG_TYPE_Q8_0, 0)
G_PACK(q5_0, ENG_TYPE_Q5_0, 0)
G_PACK(q4_0, ENG_TYPE_Q4_0, 0)
G_PACK(q4_K, ENG_TYPE_Q4_K, 1)
G_PACK(q5_K, ENG_TYPE_Q5_K, 2)
G_PACK(q6_K, ENG_TYPE_Q6_K, 3)

/* ------------------------------------------------------------------------
 * Activations: a row of the dot type to n quants + n / bl g_side.
 * ------------------------------------------------------------------------ */

/* q8_0 rows for the signed formats: corr = -128 * sum(a). */
static void g_act_q8_0(const void *src, void *dst, int64_t n)
{
	const eng_block_q8_0 *x = src;
	int8_t *q = dst;
	g_side *sd = (g_side *)(void *)(q + n);
	for (int64_t b = 0; b < n / 32; b++) {
		__m256i v = _mm256_loadu_si256((const __m256i *)(const void *)x[b].qs);
		_mm256_storeu_si256((__m256i *)(void *)(q + 32 * b), v);
		/* sum of (a + 128) over 4 lanes of 8 bytes, less 32 * 128 */
		__m256i u = _mm256_sad_epu8(_mm256_xor_si256(v, _mm256_set1_epi8((char)0x80)),
					    _mm256_setzero_si256());
		__m128i h = _mm_add_epi64(_mm256_castsi256_si128(u),
					  _mm256_extracti128_si256(u, 1));
		int32_t sum = (int32_t)(_mm_cvtsi128_si64(h) + _mm_extract_epi64(h, 1)) - 32 * 128;
		sd[b].d = g_h2f(x[b].d);
		sd[b].c.corr = -128 * sum;
	}
}

/* q8_K rows for q4_K / q5_K: 32-element blocks, dsum = d * sum(a). */
static void g_act_q8_K_min(const void *src, void *dst, int64_t n)
{
	const eng_block_q8_K *x = src;
	int8_t *q = dst;
	g_side *sd = (g_side *)(void *)(q + n);
	for (int64_t i = 0; i < n / 256; i++) {
		memcpy(q + 256 * i, x[i].qs, 256);
		for (int g = 0; g < 8; g++) {
			sd[8 * i + g].d = x[i].d;
			sd[8 * i + g].c.dsum = x[i].d *
				(float)(x[i].bsums[2 * g] + x[i].bsums[2 * g + 1]);
		}
	}
}

/* q8_K rows for q6_K: 16-element blocks, corr = -32 * sum(a). */
static void g_act_q8_K_off16(const void *src, void *dst, int64_t n)
{
	const eng_block_q8_K *x = src;
	int8_t *q = dst;
	g_side *sd = (g_side *)(void *)(q + n);
	for (int64_t i = 0; i < n / 256; i++) {
		memcpy(q + 256 * i, x[i].qs, 256);
		for (int g = 0; g < 16; g++) {
			sd[16 * i + g].d = x[i].d;
			sd[16 * i + g].c.corr = -32 * x[i].bsums[g];
		}
	}
}

/* ------------------------------------------------------------------------
 * The kernel: one packed group (GR rows) times NT activation rows.
 *   s[t * ss + r] = dot(row r, token t)   for r < nr, t < NT
 * ------------------------------------------------------------------------ */

G_AI void g_run(int64_t n, const void *pw, const void *act, size_t as,
		       float *out, size_t ss, int nr, int NT, int BL, int MINF,
		       int Q5N)
{
	const size_t hdr = (size_t)(MINF ? 2 : 1) * GR * 4;
	const size_t bbytes = Q5N ? G_Q5N_BYTES : hdr + (size_t)GR * BL;
	const int64_t nb = n / BL;
	__m256 acc[ENG_GEMM_NT];
	G_UNROLL
	for (int t = 0; t < NT; t++)
		acc[t] = _mm256_setzero_ps();
	const uint8_t *p = pw;
	for (int64_t b = 0; b < nb; b++, p += bbytes) {
		__m256 sv = _mm256_loadu_ps((const float *)(const void *)p);
		__m256 mv = MINF ? _mm256_loadu_ps((const float *)(const void *)(p + GR * 4))
				 : _mm256_setzero_ps();
		__m256i wv[8];
		if (Q5N) {	/* the 5-bit layout: nibbles, then fifth bits */
			g_q5n_quants(p + hdr, wv);
		} else {
			G_UNROLL
			for (int k = 0; k < BL / 4; k++)
				wv[k] = _mm256_loadu_si256((const __m256i *)(const void *)(p + hdr + 32 * k));
		}
		__m256i acc_i[ENG_GEMM_NT];
		G_UNROLL
		for (int t = 0; t < NT; t++) {
			const int8_t *at = (const int8_t *)act + (size_t)t * as;
			const g_side *sd = (const g_side *)(const void *)(at + n) + b;
			/* 5-bit quants are q5 = q + 16: -16 * sum(a) = corr / 8 */
			acc_i[t] = MINF ? _mm256_setzero_si256()
					: _mm256_set1_epi32(Q5N ? sd->c.corr / 8 : sd->c.corr);
		}
		/* tokens innermost: NT independent chains of VPDPBUSD */
		G_UNROLL
		for (int k = 0; k < BL / 4; k++)
			G_UNROLL
			for (int t = 0; t < NT; t++) {
				int32_t a4;
				memcpy(&a4, (const int8_t *)act + (size_t)t * as + b * BL + 4 * k, 4);
				acc_i[t] = _mm256_dpbusd_epi32(acc_i[t], wv[k], _mm256_set1_epi32(a4));
			}
		G_UNROLL
		for (int t = 0; t < NT; t++) {
			const int8_t *at = (const int8_t *)act + (size_t)t * as;
			const g_side *sd = (const g_side *)(const void *)(at + n) + b;
			__m256 f = _mm256_cvtepi32_ps(acc_i[t]);
			acc[t] = _mm256_fmadd_ps(f, _mm256_mul_ps(sv, _mm256_set1_ps(sd->d)),
						 acc[t]);
			if (MINF)
				acc[t] = _mm256_fnmadd_ps(mv, _mm256_set1_ps(sd->c.dsum), acc[t]);
		}
	}
	__mmask8 mask = (__mmask8)((1u << nr) - 1);
	G_UNROLL
	for (int t = 0; t < NT; t++)
		_mm256_mask_storeu_ps(out + (size_t)t * ss, mask, acc[t]);
}

#define G_RUN(name, BL, MINF, Q5N)						\
	static void g_run_##name(int64_t n, const void *pw, const void *act,	\
				 size_t as, float *s, size_t ss, int nr, int nt)	\
	{									\
		switch (nt) {							\
		case 1: g_run(n, pw, act, as, s, ss, nr, 1, BL, MINF, Q5N); break; \
		case 2: g_run(n, pw, act, as, s, ss, nr, 2, BL, MINF, Q5N); break; \
		case 3: g_run(n, pw, act, as, s, ss, nr, 3, BL, MINF, Q5N); break; \
		case 4: g_run(n, pw, act, as, s, ss, nr, 4, BL, MINF, Q5N); break; \
		case 5: g_run(n, pw, act, as, s, ss, nr, 5, BL, MINF, Q5N); break; \
		case 6: g_run(n, pw, act, as, s, ss, nr, 6, BL, MINF, Q5N); break; \
		case 7: g_run(n, pw, act, as, s, ss, nr, 7, BL, MINF, Q5N); break; \
		default: g_run(n, pw, act, as, s, ss, nr, 8, BL, MINF, Q5N); break; \
		}								\
	}
G_RUN(off32, 32, 0, 0)
G_RUN(off16, 16, 0, 0)
G_RUN(min32, 32, 1, 0)
G_RUN(q5n, 32, 0, 1)

static const eng_gemm g_q8_0 = { 32, 0, g_pack_q8_0, g_act_q8_0, g_run_off32, 0, NULL, NULL };
static const eng_gemm g_q5_0 = { 32, 0, g_pack_q5_0, g_act_q8_0, g_run_off32, 0, NULL, NULL };
static const eng_gemm g_q5_0n = { 32, 0, g_pack_q5_0n, g_act_q8_0, g_run_q5n, G_Q5N_BYTES,
				  g_widen_q5n, &g_q5_0 };
static const eng_gemm g_q4_0 = { 32, 0, g_pack_q4_0, g_act_q8_0, g_run_off32, 0, NULL, NULL };
static const eng_gemm g_q4_K = { 32, 1, g_pack_q4_K, g_act_q8_K_min, g_run_min32, 0, NULL, NULL };
static const eng_gemm g_q5_K = { 32, 1, g_pack_q5_K, g_act_q8_K_min, g_run_min32, 0, NULL, NULL };
static const eng_gemm g_q6_K = { 16, 0, g_pack_q6_K, g_act_q8_K_off16, g_run_off16, 0, NULL, NULL };

_Static_assert(sizeof(g_side) == ENG_GEMM_SIDE_BYTES, "side entry");

#pragma GCC pop_options
#endif

const eng_gemm *eng_gemm_get(eng_type t, eng_simd level)
{
#ifdef ENG_HAVE_X86
	if (level < ENG_SIMD_AVX512)
		return NULL;
	switch (t) {
	case ENG_TYPE_Q8_0: return &g_q8_0;
	case ENG_TYPE_Q5_0: return &g_q5_0;
	case ENG_TYPE_Q4_0: return &g_q4_0;
	case ENG_TYPE_Q4_K: return &g_q4_K;
	case ENG_TYPE_Q5_K: return &g_q5_K;
	case ENG_TYPE_Q6_K: return &g_q6_K;
	default:            return NULL;
	}
#else
	(void)t;
	(void)level;
	return NULL;
#endif
}

size_t eng_gemm_pack_bytes(const eng_gemm *g, int64_t n)
{
	size_t hdr = (size_t)(g->min ? 2 : 1) * ENG_GEMM_ROWS * 4;
	if (g->block_bytes)
		return (size_t)(n / g->bl) * g->block_bytes;
	return (size_t)(n / g->bl) * (hdr + (size_t)ENG_GEMM_ROWS * g->bl);
}

const eng_gemm *eng_gemm_get_whole(eng_type t, eng_simd level)
{
#ifdef ENG_HAVE_X86
	if (t == ENG_TYPE_Q5_0 && level >= ENG_SIMD_AVX512)
		return &g_q5_0n;
#endif
	return eng_gemm_get(t, level);
}

size_t eng_gemm_act_bytes(const eng_gemm *g, int64_t n)
{
	return (size_t)n + (size_t)(n / g->bl) * ENG_GEMM_SIDE_BYTES;
}
