/* kernels_x86.h - the integer dot-product kernels shared by the AVX2 and
 * AVX-512 files, written once over 256-bit vectors.  Included (only) by
 * kernels_avx2.c and kernels_avx512.c after their target pragma, with
 *   KX(name)      the file's prefix for a kernel's name;
 *   ENG_X86_VNNI  1 to use VPDPBUSD (AVX512-VNNI, VL), 0 for the AVX2 pair
 *                 VPMADDUBSW + VPMADDWD.
 *
 * Every kernel takes a weight row and NT activation rows (NT a compile-time
 * constant, 1..ENG_NT_MAX): each weight block is loaded and unpacked once,
 * then multiplied with NT tokens.  Products are exact in int32 within a
 * block; floats enter once per block (or super-block).
 *
 * Ranges that keep VPMADDUBSW from saturating (it adds two u8*s8 products
 * into an int16): activations are in [-127, 127] (our quantizers), weights
 * used as the unsigned operand are at most 128 (|q8_0|), 63 (q6_K) or
 * 31 (q5 formats): 2 * 128 * 127 = 32512 < 32767.
 */
#ifndef ENGRAM_ENGINE_KERNELS_X86_H
#define ENGRAM_ENGINE_KERNELS_X86_H

#define ENG__AI static inline __attribute__((always_inline))
/* Loops over tokens, rows and sub-blocks have compile-time trip counts;
 * they must be unrolled so that accumulator arrays live in registers (at
 * -O2 GCC keeps some rolled, and the arrays then go through the stack). */
#define ENG__UNROLL _Pragma("GCC unroll 16")

ENG__AI float KX(hsum)(__m256 v)
{
	__m128 s = _mm_add_ps(_mm256_castps256_ps128(v),
			      _mm256_extractf128_ps(v, 1));
	s = _mm_add_ps(s, _mm_movehl_ps(s, s));
	s = _mm_add_ss(s, _mm_movehdup_ps(s));
	return _mm_cvtss_f32(s);
}

ENG__AI float KX(h2f)(eng_f16 h)
{
	return _cvtsh_ss(h);
}

/* acc + sums of 4 adjacent u8*s8 products, as 8 int32. */
ENG__AI __m256i KX(dot_us)(__m256i acc, __m256i u, __m256i s)
{
#if ENG_X86_VNNI
	return _mm256_dpbusd_epi32(acc, u, s);
#else
	__m256i p = _mm256_maddubs_epi16(u, s);
	return _mm256_add_epi32(acc, _mm256_madd_epi16(p, _mm256_set1_epi16(1)));
#endif
}

/* Scale vectors for dot_us_sc: the low 128 bits (elements 0..15 of a
 * 32-byte group) scaled by a, the high ones by b.  Their lane width is
 * what the multiply of the variant wants. */
ENG__AI __m256i KX(scalev)(int a, int b)
{
#if ENG_X86_VNNI
	return _mm256_setr_m128i(_mm_set1_epi32(a), _mm_set1_epi32(b));
#else
	return _mm256_setr_m128i(_mm_set1_epi16((short)a),
				 _mm_set1_epi16((short)b));
#endif
}

/* acc + scale * (sums of 4 adjacent u8*s8 products). */
ENG__AI __m256i KX(dot_us_sc)(__m256i acc, __m256i u, __m256i s, __m256i sc)
{
#if ENG_X86_VNNI
	__m256i p = _mm256_dpbusd_epi32(_mm256_setzero_si256(), u, s);
	return _mm256_add_epi32(acc, _mm256_mullo_epi32(p, sc));
#else
	return _mm256_add_epi32(acc,
		_mm256_madd_epi16(_mm256_maddubs_epi16(u, s), sc));
#endif
}

/* 32 bits to 32 bytes: 0xff where the bit is set.  Byte i takes bit i. */
ENG__AI __m256i KX(bits_to_bytes)(const uint8_t *p)
{
	uint32_t x;
	memcpy(&x, p, 4);
	const __m256i pick = _mm256_setr_epi8(
		0, 0, 0, 0, 0, 0, 0, 0, 1, 1, 1, 1, 1, 1, 1, 1,
		2, 2, 2, 2, 2, 2, 2, 2, 3, 3, 3, 3, 3, 3, 3, 3);
	const __m256i bit = _mm256_set1_epi64x(0x8040201008040201LL);
	__m256i v = _mm256_shuffle_epi8(_mm256_set1_epi32((int)x), pick);
	return _mm256_cmpeq_epi8(_mm256_and_si256(v, bit), bit);
}

/* 16 bytes of nibbles to 32 bytes: low nibbles first, then high ones. */
ENG__AI __m256i KX(nibbles32)(const uint8_t *qs)
{
	__m128i q = _mm_loadu_si128((const __m128i *)(const void *)qs);
	__m256i v = _mm256_setr_m128i(q, _mm_srli_epi16(q, 4));
	return _mm256_and_si256(v, _mm256_set1_epi8(15));
}

#define ACT(T, t) ((const T *)(const void *)((const char *)a + (size_t)(t) * as))

/* Signed weights (q4_0, q5_0, q8_0) times q8_0: |w| * (a with w's sign). */
ENG__AI void KX(acc_signed32)(__m256 *acc, __m256i q, float dw,
			      const void *a, size_t as, int64_t ib, int NT)
{
	__m256i uq = _mm256_sign_epi8(q, q);
	ENG__UNROLL
	for (int t = 0; t < NT; t++) {
		const eng_block_q8_0 *y = ACT(eng_block_q8_0, t) + ib;
		__m256i sa = _mm256_sign_epi8(
			_mm256_loadu_si256((const __m256i *)(const void *)y->qs), q);
		__m256i p = KX(dot_us)(_mm256_setzero_si256(), uq, sa);
		acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * KX(h2f)(y->d)),
					 _mm256_cvtepi32_ps(p), acc[t]);
	}
}

ENG__AI void KX(store)(__m256 *acc, float *s, size_t ss, int NT)
{
	ENG__UNROLL
	for (int t = 0; t < NT; t++)
		s[(size_t)t * ss] = KX(hsum)(acc[t]);
}

/* Blocks alternate between two sets of accumulators: with one token, a
 * single chain of FMAs would wait on FMA latency (4 cycles per 32-element
 * block) rather than on throughput.  BLOCK(acc, ib) adds block ib. */
#define ENG__TWO_CHAINS(BLOCK)							\
	__m256 acc[ENG_NT_MAX], acc2[ENG_NT_MAX];				\
	ENG__UNROLL								\
	for (int t = 0; t < NT; t++)						\
		acc[t] = acc2[t] = _mm256_setzero_ps();				\
	const int64_t nb = n / 32;						\
	int64_t ib = 0;								\
	for (; ib + 1 < nb; ib += 2) {						\
		BLOCK(acc, ib);							\
		BLOCK(acc2, ib + 1);						\
	}									\
	if (ib < nb)								\
		BLOCK(acc, ib);							\
	ENG__UNROLL								\
	for (int t = 0; t < NT; t++)						\
		acc[t] = _mm256_add_ps(acc[t], acc2[t]);			\
	KX(store)(acc, s, ss, NT)

ENG__AI void KX(q8_0_nt)(int64_t n, const void *w, const void *a, size_t as,
			 float *s, size_t ss, int NT)
{
	const eng_block_q8_0 *x = w;
#define ENG__Q8_0_BLOCK(A, ib) KX(acc_signed32)(A,					\
		_mm256_loadu_si256((const __m256i *)(const void *)x[ib].qs),	\
		KX(h2f)(x[ib].d), a, as, ib, NT)
	ENG__TWO_CHAINS(ENG__Q8_0_BLOCK);
#undef ENG__Q8_0_BLOCK
}

ENG__AI void KX(q4_0_nt)(int64_t n, const void *w, const void *a, size_t as,
			 float *s, size_t ss, int NT)
{
	const eng_block_q4_0 *x = w;
#define ENG__Q4_0_BLOCK(A, ib) KX(acc_signed32)(A,					\
		_mm256_sub_epi8(KX(nibbles32)(x[ib].qs), _mm256_set1_epi8(8)),	\
		KX(h2f)(x[ib].d), a, as, ib, NT)
	ENG__TWO_CHAINS(ENG__Q4_0_BLOCK);
#undef ENG__Q4_0_BLOCK
}

/* q5_0 quants as signed bytes (q - 16).  AVX-512: the 32 high bits are a
 * byte mask as they are; subtract 16 where the bit is clear.  AVX2:
 * nibble | 0xf0 where the fifth bit is clear is nibble - 16 as a signed
 * byte, and nibble alone where it is set is (nibble + 16) - 16. */
ENG__AI __m256i KX(q5_0_quants)(const eng_block_q5_0 *b)
{
	__m256i nib = KX(nibbles32)(b->qs);
#if ENG_X86_VNNI
	uint32_t h;
	memcpy(&h, b->qh, 4);
	return _mm256_mask_sub_epi8(nib, (__mmask32)~h, nib, _mm256_set1_epi8(16));
#else
	__m256i hb = KX(bits_to_bytes)(b->qh);
	return _mm256_or_si256(nib, _mm256_andnot_si256(hb, _mm256_set1_epi8((char)0xf0)));
#endif
}

ENG__AI void KX(q5_0_nt)(int64_t n, const void *w, const void *a, size_t as,
			 float *s, size_t ss, int NT)
{
	const eng_block_q5_0 *x = w;
#define ENG__Q5_0_BLOCK(A, ib) KX(acc_signed32)(A, KX(q5_0_quants)(&x[ib]),	\
		KX(h2f)(x[ib].d), a, as, ib, NT)
	ENG__TWO_CHAINS(ENG__Q5_0_BLOCK);
#undef ENG__Q5_0_BLOCK
}

/* q4_1 / q5_1 with q8_1: d da sum(q qa) + m s_a, q unsigned. */
ENG__AI void KX(q41_51_nt)(int64_t n, const void *w, const void *a, size_t as,
			   float *s, size_t ss, int NT, int five)
{
	__m256 acc[ENG_NT_MAX];
	float accm[ENG_NT_MAX];
	ENG__UNROLL
	for (int t = 0; t < NT; t++) {
		acc[t] = _mm256_setzero_ps();
		accm[t] = 0;
	}
	const size_t bytes = five ? sizeof(eng_block_q5_1) : sizeof(eng_block_q4_1);
	const uint8_t *p = w;
	for (int64_t ib = 0; ib < n / 32; ib++, p += bytes) {
		const eng_block_q4_1 *h = (const void *)p;
		__m256i q;
		if (five) {
			const eng_block_q5_1 *b5 = (const void *)p;
			q = _mm256_or_si256(KX(nibbles32)(b5->qs),
				_mm256_and_si256(KX(bits_to_bytes)(b5->qh),
						 _mm256_set1_epi8(16)));
		} else {
			q = KX(nibbles32)(h->qs);
		}
		float dw = KX(h2f)(h->d), mw = KX(h2f)(h->m);
		ENG__UNROLL
		for (int t = 0; t < NT; t++) {
			const eng_block_q8_1 *y = ACT(eng_block_q8_1, t) + ib;
			__m256i p32 = KX(dot_us)(_mm256_setzero_si256(), q,
				_mm256_loadu_si256((const __m256i *)(const void *)y->qs));
			acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(dw * KX(h2f)(y->d)),
						 _mm256_cvtepi32_ps(p32), acc[t]);
			accm[t] += mw * KX(h2f)(y->s);
		}
	}
	ENG__UNROLL
	for (int t = 0; t < NT; t++)
		s[(size_t)t * ss] = KX(hsum)(acc[t]) + accm[t];
}

/* q4_K / q5_K with q8_K: per super-block
 *   da (d sum_g sc_g sum(q qa) - dmin sum_g mn_g (bsum_2g + bsum_2g+1)). */
ENG__AI void KX(q4k_5k_nt)(int64_t n, const void *w, const void *a, size_t as,
			   float *s, size_t ss, int NT, int five)
{
	__m256 acc[ENG_NT_MAX];
	ENG__UNROLL
	for (int t = 0; t < NT; t++)
		acc[t] = _mm256_setzero_ps();
	const size_t bytes = five ? sizeof(eng_block_q5_K) : sizeof(eng_block_q4_K);
	const uint8_t *p = w;
	for (int64_t ib = 0; ib < n / 256; ib++, p += bytes) {
		const eng_block_q4_K *h = (const void *)p;
		const uint8_t *qs = five ? ((const eng_block_q5_K *)(const void *)p)->qs
					 : h->qs;
		uint8_t sc[8], mn[8];
		int16_t m16[16];
		ENG__UNROLL
		for (int g = 0; g < 8; g++) {
			eng__k_scale_min(g, h->scales, &sc[g], &mn[g]);
			m16[2 * g] = m16[2 * g + 1] = mn[g];
		}
		__m256i hbits = _mm256_setzero_si256();
		if (five)
			hbits = _mm256_loadu_si256((const __m256i *)(const void *)
				((const eng_block_q5_K *)(const void *)p)->qh);
		__m256i sumi[ENG_NT_MAX];
		ENG__UNROLL
		for (int t = 0; t < NT; t++)
			sumi[t] = _mm256_setzero_si256();
		ENG__UNROLL
		for (int j = 0; j < 4; j++) {
			__m256i q = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * j));
			__m256i lo = _mm256_and_si256(q, _mm256_set1_epi8(15));
			__m256i hi = _mm256_and_si256(_mm256_srli_epi16(q, 4),
						      _mm256_set1_epi8(15));
			if (five) {
				/* bit 2j of qh[l] is element 64j + l's fifth
				 * bit, bit 2j+1 that of 64j + 32 + l. */
				__m256i b0 = _mm256_and_si256(
					_mm256_srli_epi16(hbits, 2 * j), _mm256_set1_epi8(1));
				__m256i b1 = _mm256_and_si256(
					_mm256_srli_epi16(hbits, 2 * j + 1), _mm256_set1_epi8(1));
				lo = _mm256_or_si256(lo, _mm256_slli_epi16(b0, 4));
				hi = _mm256_or_si256(hi, _mm256_slli_epi16(b1, 4));
			}
			__m256i scl = KX(scalev)(sc[2 * j], sc[2 * j]);
			__m256i sch = KX(scalev)(sc[2 * j + 1], sc[2 * j + 1]);
			ENG__UNROLL
			for (int t = 0; t < NT; t++) {
				const int8_t *ya = (ACT(eng_block_q8_K, t) + ib)->qs + 64 * j;
				sumi[t] = KX(dot_us_sc)(sumi[t], lo,
					_mm256_loadu_si256((const __m256i *)(const void *)ya), scl);
				sumi[t] = KX(dot_us_sc)(sumi[t], hi,
					_mm256_loadu_si256((const __m256i *)(const void *)(ya + 32)), sch);
			}
		}
		float d = KX(h2f)(h->d), dmin = KX(h2f)(h->dmin);
		__m256i mv = _mm256_loadu_si256((const __m256i *)(const void *)m16);
		ENG__UNROLL
		for (int t = 0; t < NT; t++) {
			const eng_block_q8_K *y = ACT(eng_block_q8_K, t) + ib;
			__m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)y->bsums);
			__m256 mins = _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mv));
			acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * y->d),
						 _mm256_cvtepi32_ps(sumi[t]), acc[t]);
			acc[t] = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * y->d), mins, acc[t]);
		}
	}
	KX(store)(acc, s, ss, NT);
}

/* q6_K with q8_K: da d sum_g sc_g (sum(q qa) - 32 bsum_g), q in 0..63. */
ENG__AI void KX(q6_K_nt)(int64_t n, const void *w, const void *a, size_t as,
			 float *s, size_t ss, int NT)
{
	const eng_block_q6_K *x = w;
	__m256 acc[ENG_NT_MAX];
	ENG__UNROLL
	for (int t = 0; t < NT; t++)
		acc[t] = _mm256_setzero_ps();
	const __m256i m4 = _mm256_set1_epi8(15), m30 = _mm256_set1_epi8(0x30);
	for (int64_t ib = 0; ib < n / 256; ib++) {
		const eng_block_q6_K *b = &x[ib];
		__m256i sumi[ENG_NT_MAX];
		ENG__UNROLL
		for (int t = 0; t < NT; t++)
			sumi[t] = _mm256_setzero_si256();
		ENG__UNROLL
		for (int j = 0; j < 2; j++) {
			__m256i l0 = _mm256_loadu_si256((const __m256i *)(const void *)(b->ql + 64 * j));
			__m256i l1 = _mm256_loadu_si256((const __m256i *)(const void *)(b->ql + 64 * j + 32));
			__m256i hq = _mm256_loadu_si256((const __m256i *)(const void *)(b->qh + 32 * j));
			__m256i q[4];
			q[0] = _mm256_or_si256(_mm256_and_si256(l0, m4),
				_mm256_and_si256(_mm256_slli_epi16(hq, 4), m30));
			q[1] = _mm256_or_si256(_mm256_and_si256(l1, m4),
				_mm256_and_si256(_mm256_slli_epi16(hq, 2), m30));
			q[2] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l0, 4), m4),
				_mm256_and_si256(hq, m30));
			q[3] = _mm256_or_si256(_mm256_and_si256(_mm256_srli_epi16(l1, 4), m4),
				_mm256_and_si256(_mm256_srli_epi16(hq, 2), m30));
			ENG__UNROLL
			for (int k = 0; k < 4; k++) {
				int g = j * 8 + k * 2;
				__m256i scv = KX(scalev)(b->scales[g], b->scales[g + 1]);
				ENG__UNROLL
				for (int t = 0; t < NT; t++) {
					const int8_t *ya = (ACT(eng_block_q8_K, t) + ib)->qs +
							   128 * j + 32 * k;
					sumi[t] = KX(dot_us_sc)(sumi[t], q[k],
						_mm256_loadu_si256((const __m256i *)(const void *)ya), scv);
				}
			}
		}
		__m256i sc16 = _mm256_cvtepi8_epi16(
			_mm_loadu_si128((const __m128i *)(const void *)b->scales));
		float d = KX(h2f)(b->d);
		ENG__UNROLL
		for (int t = 0; t < NT; t++) {
			const eng_block_q8_K *y = ACT(eng_block_q8_K, t) + ib;
			__m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)y->bsums);
			__m256i off = _mm256_slli_epi32(_mm256_madd_epi16(bs, sc16), 5);
			acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * y->d),
				_mm256_cvtepi32_ps(_mm256_sub_epi32(sumi[t], off)), acc[t]);
		}
	}
	KX(store)(acc, s, ss, NT);
}

/* q2_K / q3_K with q8_K.  Both have 2-bit planes (element j*128 + s*32 + l
 * is (qs[j*32 + l] >> 2s) & 3) and a scale per 16 elements.
 *  q2_K: da (d sum_g (sc_g & 15) sum(q qa) - dmin sum_g (sc_g >> 4) bsum_g)
 *  q3_K: da d sum_g sc_g (sum(u qa) - 4 bsum_g), u = q2 + 4 hbit in 0..7,
 *        since the value is q2 - 4 where the high bit is clear. */
ENG__AI void KX(q2k_3k_nt)(int64_t n, const void *w, const void *a, size_t as,
			   float *s, size_t ss, int NT, int three)
{
	__m256 acc[ENG_NT_MAX];
	ENG__UNROLL
	for (int t = 0; t < NT; t++)
		acc[t] = _mm256_setzero_ps();
	const size_t bytes = three ? sizeof(eng_block_q3_K) : sizeof(eng_block_q2_K);
	const __m256i m3 = _mm256_set1_epi8(3), one = _mm256_set1_epi8(1);
	const uint8_t *p = w;
	for (int64_t ib = 0; ib < n / 256; ib++, p += bytes) {
		const eng_block_q2_K *b2 = (const void *)p;
		const eng_block_q3_K *b3 = (const void *)p;
		const uint8_t *qs = three ? b3->qs : b2->qs;
		int8_t sc[16];
		int16_t m16[16];
		if (three) {
			eng__q3_K_scales(b3->scales, sc);
			ENG__UNROLL
			for (int g = 0; g < 16; g++)
				m16[g] = (int16_t)(4 * sc[g]);
		} else {
			ENG__UNROLL
			for (int g = 0; g < 16; g++) {
				sc[g] = (int8_t)(b2->scales[g] & 15);
				m16[g] = b2->scales[g] >> 4;
			}
		}
		__m256i hm = three ? _mm256_loadu_si256((const __m256i *)(const void *)b3->hmask)
				   : _mm256_setzero_si256();
		__m256i sumi[ENG_NT_MAX];
		ENG__UNROLL
		for (int t = 0; t < NT; t++)
			sumi[t] = _mm256_setzero_si256();
		ENG__UNROLL
		for (int j = 0; j < 2; j++) {
			__m256i qv = _mm256_loadu_si256((const __m256i *)(const void *)(qs + 32 * j));
			ENG__UNROLL
			for (int k = 0; k < 4; k++) {
				__m256i q = _mm256_and_si256(_mm256_srli_epi16(qv, 2 * k), m3);
				if (three)
					q = _mm256_or_si256(q, _mm256_slli_epi16(_mm256_and_si256(
						_mm256_srli_epi16(hm, 4 * j + k), one), 2));
				int g = 8 * j + 2 * k;
				__m256i scv = KX(scalev)(sc[g], sc[g + 1]);
				ENG__UNROLL
				for (int t = 0; t < NT; t++) {
					const int8_t *ya = (ACT(eng_block_q8_K, t) + ib)->qs +
							   128 * j + 32 * k;
					sumi[t] = KX(dot_us_sc)(sumi[t], q,
						_mm256_loadu_si256((const __m256i *)(const void *)ya), scv);
				}
			}
		}
		__m256i mv = _mm256_loadu_si256((const __m256i *)(const void *)m16);
		float d = KX(h2f)(three ? b3->d : b2->d);
		float dmin = three ? d : KX(h2f)(b2->dmin);
		ENG__UNROLL
		for (int t = 0; t < NT; t++) {
			const eng_block_q8_K *y = ACT(eng_block_q8_K, t) + ib;
			__m256i bs = _mm256_loadu_si256((const __m256i *)(const void *)y->bsums);
			__m256 off = _mm256_cvtepi32_ps(_mm256_madd_epi16(bs, mv));
			acc[t] = _mm256_fmadd_ps(_mm256_set1_ps(d * y->d),
						 _mm256_cvtepi32_ps(sumi[t]), acc[t]);
			acc[t] = _mm256_fnmadd_ps(_mm256_set1_ps(dmin * y->d), off, acc[t]);
		}
	}
	KX(store)(acc, s, ss, NT);
}

/* Tile of 4 rows x 4 tokens of a signed 32-block format (q8_0, q5_0,
 * q4_0): each weight block is unpacked once for 4 tokens and each
 * activation block loaded once for 4 rows; 16 accumulators, so only for
 * files with 32 vector registers (AVX-512). */
ENG__AI __m256i KX(unpack_s32)(const uint8_t *blk, eng_type t)
{
	if (t == ENG_TYPE_Q8_0)
		return _mm256_loadu_si256((const __m256i *)(const void *)
					  ((const eng_block_q8_0 *)(const void *)blk)->qs);
	if (t == ENG_TYPE_Q4_0)
		return _mm256_sub_epi8(KX(nibbles32)(((const eng_block_q4_0 *)(const void *)blk)->qs),
				       _mm256_set1_epi8(8));
	return KX(q5_0_quants)((const eng_block_q5_0 *)(const void *)blk);
}

ENG__AI void KX(tile_s32)(int64_t n, const void *w, size_t ws, const void *a,
			  size_t as, float *s, size_t ss, eng_type fmt, size_t bytes)
{
	__m256 acc[4][4];
	ENG__UNROLL
	for (int r = 0; r < 4; r++)
		ENG__UNROLL
		for (int t = 0; t < 4; t++)
			acc[r][t] = _mm256_setzero_ps();
	for (int64_t ib = 0; ib < n / 32; ib++) {
		__m256i q[4], uq[4];
		float dw[4];
		ENG__UNROLL
		for (int r = 0; r < 4; r++) {
			const uint8_t *blk = (const uint8_t *)w + r * ws + ib * bytes;
			q[r] = KX(unpack_s32)(blk, fmt);
			uq[r] = _mm256_sign_epi8(q[r], q[r]);
			dw[r] = KX(h2f)(*(const eng_f16 *)(const void *)blk);
		}
		ENG__UNROLL
		for (int t = 0; t < 4; t++) {
			const eng_block_q8_0 *y = ACT(eng_block_q8_0, t) + ib;
			__m256i ya = _mm256_loadu_si256((const __m256i *)(const void *)y->qs);
			float da = KX(h2f)(y->d);
			ENG__UNROLL
			for (int r = 0; r < 4; r++) {
				__m256i p = KX(dot_us)(_mm256_setzero_si256(), uq[r],
						       _mm256_sign_epi8(ya, q[r]));
				acc[r][t] = _mm256_fmadd_ps(_mm256_set1_ps(dw[r] * da),
							    _mm256_cvtepi32_ps(p), acc[r][t]);
			}
		}
	}
	ENG__UNROLL
	for (int t = 0; t < 4; t++)
		ENG__UNROLL
		for (int r = 0; r < 4; r++)
			s[(size_t)t * ss + r] = KX(hsum)(acc[r][t]);
}

/* A row of q4_0 / q5_0 rewritten as q8_0 blocks of the same values. */
ENG__AI void KX(repack_s32)(const void *src, void *dst, int64_t n,
			    eng_type fmt, size_t bytes)
{
	const uint8_t *p = src;
	eng_block_q8_0 *y = dst;
	for (int64_t ib = 0; ib < n / 32; ib++, p += bytes) {
		memcpy(&y[ib].d, p, 2);
		_mm256_storeu_si256((__m256i *)(void *)y[ib].qs, KX(unpack_s32)(p, fmt));
	}
}

static void KX(repack_q4_0)(const void *src, void *dst, int64_t n)
{
	KX(repack_s32)(src, dst, n, ENG_TYPE_Q4_0, sizeof(eng_block_q4_0));
}

static void KX(repack_q5_0)(const void *src, void *dst, int64_t n)
{
	KX(repack_s32)(src, dst, n, ENG_TYPE_Q5_0, sizeof(eng_block_q5_0));
}

#undef ACT

/* Entry points with the common signature: one instance per NT so the
 * accumulators live in registers. */
#define ENG__X86_ENTRY(name, call)                                          \
	static void KX(name)(int64_t n, const void *w, const void *a,       \
			     size_t as, float *s, size_t ss, int nt)        \
	{                                                                   \
		switch (nt) {                                               \
		case 1: call(1); break;                                     \
		case 2: call(2); break;                                     \
		case 3: call(3); break;                                     \
		default: call(4); break;                                    \
		}                                                           \
	}
#define ENG__C_Q8_0(N) KX(q8_0_nt)(n, w, a, as, s, ss, N)
#define ENG__C_Q4_0(N) KX(q4_0_nt)(n, w, a, as, s, ss, N)
#define ENG__C_Q5_0(N) KX(q5_0_nt)(n, w, a, as, s, ss, N)
#define ENG__C_Q4_1(N) KX(q41_51_nt)(n, w, a, as, s, ss, N, 0)
#define ENG__C_Q5_1(N) KX(q41_51_nt)(n, w, a, as, s, ss, N, 1)
#define ENG__C_Q4_K(N) KX(q4k_5k_nt)(n, w, a, as, s, ss, N, 0)
#define ENG__C_Q5_K(N) KX(q4k_5k_nt)(n, w, a, as, s, ss, N, 1)
#define ENG__C_Q6_K(N) KX(q6_K_nt)(n, w, a, as, s, ss, N)
#define ENG__C_Q2_K(N) KX(q2k_3k_nt)(n, w, a, as, s, ss, N, 0)
#define ENG__C_Q3_K(N) KX(q2k_3k_nt)(n, w, a, as, s, ss, N, 1)
ENG__X86_ENTRY(vec_dot_q8_0, ENG__C_Q8_0)
ENG__X86_ENTRY(vec_dot_q4_0, ENG__C_Q4_0)
ENG__X86_ENTRY(vec_dot_q5_0, ENG__C_Q5_0)
ENG__X86_ENTRY(vec_dot_q4_1, ENG__C_Q4_1)
ENG__X86_ENTRY(vec_dot_q5_1, ENG__C_Q5_1)
ENG__X86_ENTRY(vec_dot_q4_K, ENG__C_Q4_K)
ENG__X86_ENTRY(vec_dot_q5_K, ENG__C_Q5_K)
ENG__X86_ENTRY(vec_dot_q6_K, ENG__C_Q6_K)
ENG__X86_ENTRY(vec_dot_q2_K, ENG__C_Q2_K)
ENG__X86_ENTRY(vec_dot_q3_K, ENG__C_Q3_K)

#endif /* ENGRAM_ENGINE_KERNELS_X86_H */
