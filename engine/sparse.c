/* sparse.c - which blocks of a long context a step attends: the first
 * positions (attention sinks), the recent past, and the top-k blocks by
 * their best key for a question's last query (every candidate key read),
 * or by the per-block key summaries the store keeps (estimated attention
 * mass for decode, Quest's bound for prefill chunks), a block from
 * beyond the reach scored where it will be placed; and where they are
 * placed (at their true positions within the reach, packed into it from
 * farther away; see eng_sparse_params in engine.h).
 *
 * Invariants of a plan with ranges: ranges are disjoint and ascending;
 * every closed range lies below the open (local) one, which starts at a
 * block boundary L0 <= pos0; shifts are >= 0 and a range moved by its
 * shift still ends at or before the start of the next range (moved), so
 * packed positions keep the order of true ones; no range starts, moved,
 * before L0 - max(reach, sink + k*B).  Squeezed (sp->squeeze), moved
 * ranges may overlap, their moved starts still ascending, and none
 * starts before L0 - reach; every range still ends, moved, by L0.
 */
#include "config.h"

#include <math.h>
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "eng_internal.h"
#include "engine.h"
#include "kernels.h"

/* Grows the array whose pointer is at pp (any object pointer type: copied
 * with memcpy, not aliased) to hold need elements of esz bytes. */
static int grow(void *pp, size_t *cap, size_t need, size_t esz)
{
	void *p, *np;

	if (need <= *cap)
		return 0;
	if (need < 64)
		need = 64;
	memcpy(&p, pp, sizeof p);
	if (!(np = realloc(p, need * esz)))
		return ENG_ENOMEM;
	memcpy(pp, &np, sizeof np);
	*cap = need;
	return 0;
}

static int push_range(struct eng__plan *pl, uint32_t pos0, uint32_t n,
    uint32_t shift)
{
	struct eng__range *r;
	int rc;

	/* Adjacent runs moved by the same amount stay one run. */
	if (pl->n_ranges) {
		r = &pl->ranges[pl->n_ranges - 1];
		if (r->pos0 + r->n == pos0 && r->shift == shift) {
			r->n += n;
			return 0;
		}
	}
	if ((rc = grow(&pl->ranges, &pl->cap, pl->n_ranges + 1,
	    sizeof *pl->ranges)))
		return rc;
	pl->ranges[pl->n_ranges++] = (struct eng__range){ pos0, n, shift };
	return 0;
}

/* Scoring a block beyond the reach where it will be attended: moved up
 * to far_end (the reach's start, after the sink), i.e. with the query
 * rotated back by far_end - p0 (eng__rope_back, as attention.c's shifts).
 * A rotation per block: cs holds cos/sin of the shift per pair, exact
 * every FAR_SYNC blocks and stepped by -B in between (one complex product
 * per pair instead of n_rot trigonometric calls). */
#define FAR_SYNC 32
struct far_rot {
	const struct eng__rope *rope;
	uint32_t far_end, B;
	uint32_t shift, since;	/* cs's shift; blocks since it was exact */
	float *cs, *step;	/* n_rot each: the shift's, B's */
	float *q;		/* the query rotated back (far_open's nq) */
};

/* 1 and r->cs set for block p0 if it lies beyond the reach, else 0. */
static int far_shift(struct far_rot *r, uint32_t p0)
{
	const struct eng__rope *ro = r->rope;
	uint32_t s = p0 < r->far_end ? r->far_end - p0 : 0;

	if (!s)
		return 0;
	if (r->shift && r->shift == s + r->B && r->since < FAR_SYNC) {
		for (uint32_t i = 0; i < ro->n_rot / 2; i++) {
			float c = r->cs[2 * i], sn = r->cs[2 * i + 1];
			float cb = r->step[2 * i], sb = r->step[2 * i + 1];
			r->cs[2 * i] = c * cb + sn * sb;
			r->cs[2 * i + 1] = sn * cb - c * sb;
		}
		r->since++;
	} else {
		eng__rope_table(r->cs, s, 1, ro->n_rot, ro->base,
		    ro->freq_scale, ro->freq_factors);
		r->since = 0;
	}
	r->shift = s;
	return 1;
}

/* r's tables and nq floats of scratch for the rotated query (r->q), for
 * a task whose range starts with a far block; far_close frees them.
 * ENG_ENOMEM. */
static int far_open(struct far_rot *r, const struct eng__rope *rope,
    uint32_t far_end, uint32_t B, size_t nq)
{
	*r = (struct far_rot){ .rope = rope, .far_end = far_end, .B = B };
	if (!(r->cs = malloc((2 * rope->n_rot + nq) * sizeof(float))))
		return ENG_ENOMEM;
	r->step = r->cs + rope->n_rot;
	r->q = r->step + rope->n_rot;
	eng__rope_table(r->step, B, 1, rope->n_rot, rope->base,
	    rope->freq_scale, rope->freq_factors);
	return 0;
}

static void far_close(struct far_rot *r)
{
	free(r->cs);
	r->cs = NULL;
}

/* Whether candidate a (block first + a) of a task's range lies beyond the
 * reach: the task then needs the rotation tables. */
static int first_far(uint32_t far_end, uint32_t first, uint32_t a,
    uint32_t B)
{
	return far_end && (uint64_t)(first + a) * B < far_end;
}

/* A block's score for a query q (per head), from its summary row
 * [min | max | mean] (f16, eng_kv_ops.summary):
 *  - mass (steps of at most ENG_SPARSE_FEW tokens: decode, and a
 *    question whose candidates are too many to scan):
 *    the log of its attention mass, estimated as if its keys were
 *    Gaussian with the summary's mean m and variance v ~ ((max-min)/4.8)^2
 *    (the range of 64 normal samples is about 4.8 standard deviations;
 *    Tippett's table: 4.65); with s the scale the model applies to q.k,
 *      log sum_t exp(s q.k_t) ~ log B + s q.m + s^2 q^2.v / 2,
 *    divided by s (the ranking is the same): q.m + s q^2.v / 2, one dot
 *    product of [m | v], made in f32 from the row, with [q | s q^2/2].
 *  - bound (longer steps: prefill chunks): Quest's
 *    sum_c max(q_c min_c, q_c max_c) = min.(q - |q|)/2 + max.(q + |q|)/2,
 *    what any query near the chunk's mean could find there: one dot
 *    product of the row's [min | max] with the head's
 *    [(q - |q|)/2 | (q + |q|)/2], the engine's f16 kernel.
 * pl->qbar holds each head's row (qbar_row), up to ENG_NT_MAX heads per
 * pass; the highest of the group's heads wins.  The bounds are f16 as
 * the store keeps them and the sums f32: no reference is taken out of
 * the keys' large shared component (it is exact in f32). */
struct score_job {
	struct eng__plan *pl;
	const eng_kv_runs *sums;
	eng_vec_dot_fn dot;	/* f16 (bound) or f32 (mass) */
	uint32_t group, hd, first, n_cand;
	int mass;
	float scale;
	const struct eng__rope *rope;
	uint32_t far_end, B;	/* see struct far_rot */
	atomic_int rc;
};

/* Head h's scoring row from its query q (hd floats) into o (2 hd). */
static void qbar_row(float *o, const float *q, uint32_t hd, int mass,
    float scale)
{
	for (uint32_t c = 0; c < hd; c++)
		if (mass) {
			o[c] = q[c];
			o[hd + c] = 0.5f * scale * q[c] * q[c];
		} else {
			o[c] = 0.5f * (q[c] - fabsf(q[c]));
			o[hd + c] = 0.5f * (q[c] + fabsf(q[c]));
		}
}

/* n f16 to f32. */
static void f16_row(const uint16_t *h, float *f, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		f[i] = eng_f16_to_f32(h[i]);
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
__attribute__((target("avx2,f16c")))
static void f16_row_f16c(const uint16_t *h, float *f, uint32_t n)
{
	uint32_t i = 0;

	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(f + i, _mm256_cvtph_ps(_mm_loadu_si128(
		    (const __m128i *)(const void *)(h + i))));
	f16_row(h + i, f + i, n - i);
}
#endif

typedef void (*f16_row_fn)(const uint16_t *, float *, uint32_t);

static f16_row_fn f16_row_get(void)
{
#if defined(__x86_64__) && defined(__GNUC__)
	if (eng_simd_active() >= ENG_SIMD_AVX2)	/* which has F16C */
		return f16_row_f16c;
#endif
	return f16_row;
}

/* The mass half of a row, [mean | var] in f32, into v (2 hd); f: 3 hd
 * of scratch. */
static void mass_vec(const uint16_t *r, uint32_t hd, f16_row_fn cvt,
    float *f, float *v)
{
	cvt(r, f, 3 * hd);
	for (uint32_t c = 0; c < hd; c++) {
		float sd = (f[hd + c] - f[c]) / 4.8f;
		v[c] = f[2 * hd + c];
		v[hd + c] = sd * sd;
	}
}

/* The group's scoring rows (pl->qbar's) with q rotated back by r's
 * shift, into qb. */
static void far_qbar(const struct score_job *j, const struct far_rot *r,
    float *qb)
{
	uint32_t hd = j->hd;
	float *q = qb + (size_t)j->group * 2 * hd;

	eng__rope_back(r->cs, j->pl->qbar + (size_t)j->group * 2 * hd, hd,
	    q, hd, j->group, hd, r->rope->n_rot, r->rope->neox);
	for (uint32_t h = 0; h < j->group; h++)
		qbar_row(qb + (size_t)h * 2 * hd, q + (size_t)h * hd, hd,
		    j->mass, j->scale);
}

static void score_task(void *arg, int ith, int nth)
{
	struct score_job *j = arg;
	uint32_t per = (j->n_cand + nth - 1) / nth, row = 2 * j->hd;
	uint32_t a = per * ith, e = a + per < j->n_cand ? a + per : j->n_cand;
	float s[ENG_NT_MAX], *qb, *f = NULL;
	struct far_rot fr = { 0 };
	f16_row_fn cvt = f16_row_get();

	if (a >= e)
		return;
	if ((j->mass && !(f = malloc(5 * (size_t)j->hd * sizeof *f))) ||
	    (first_far(j->far_end, j->first, a, j->B) &&
	    far_open(&fr, j->rope, j->far_end, j->B,
	    (size_t)j->group * (row + j->hd)))) {
		free(f);
		atomic_store(&j->rc, ENG_ENOMEM);
		return;
	}
	qb = fr.q;
	for (uint32_t i = a; i < e; i++) {
		const uint16_t *r = eng_kv_sum_at(j->sums, j->first + i);
		const void *w = r;
		const float *q = j->pl->qbar;
		float best = -INFINITY;
		if (qb && far_shift(&fr, (j->first + i) * j->B)) {
			far_qbar(j, &fr, qb);
			q = qb;
		}
		if (j->mass) {
			mass_vec(r, j->hd, cvt, f, f + 3 * j->hd);
			w = f + 3 * j->hd;
		}
		for (uint32_t h = 0; h < j->group; h += ENG_NT_MAX) {
			int nt = j->group - h < ENG_NT_MAX ?
			    (int)(j->group - h) : ENG_NT_MAX;
			j->dot(row, w, q + (size_t)h * row,
			    row * sizeof(float), s, 1, nt);
			for (int t = 0; t < nt; t++)
				if (s[t] > best)
					best = s[t];
		}
		/* A NaN never wins. */
		j->pl->scores[i] = best == best ? best : -INFINITY;
	}
	far_close(&fr);
	free(f);
}

/* A question's exact scores: each candidate block's best key, the
 * highest q.k over its positions and the group's heads, for the step's
 * last query (the token the answer grows from; bench/RESULTS.md: a
 * passkey's block that the summary estimate ranks in the middle of 494
 * is first here).  Keys are read through the store's views, from the
 * pool's threads. */
struct scan_job {
	struct eng__plan *pl;
	eng_kv *kv;
	const float *q;		/* the last token's group rows, hd apart */
	eng_vec_dot_fn dot;
	uint32_t layer, kvh, group, hd, first, n_cand;
	atomic_int rc;		/* a view's error */
	const struct eng__rope *rope;
	uint32_t far_end;	/* see struct far_rot */
	const uint32_t *idx;	/* candidate i is block idx[i] (ascending);
				 * NULL: block first + i */
};

static void scan_task(void *arg, int ith, int nth)
{
	struct scan_job *j = arg;
	uint32_t per = (j->n_cand + nth - 1) / nth, B = j->kv->block_tokens;
	uint32_t a = per * ith, e = a + per < j->n_cand ? a + per : j->n_cand;
	float s[ENG_NT_MAX], *qr;
	struct far_rot fr = { 0 };

	if (a < e && (j->idx ? first_far(j->far_end, j->idx[a], 0, B) :
	    first_far(j->far_end, j->first, a, B)) &&
	    far_open(&fr, j->rope, j->far_end, B,
	    (size_t)j->group * j->hd)) {
		atomic_store(&j->rc, ENG_ENOMEM);
		return;
	}
	qr = fr.q;
	for (uint32_t i = a; i < e; i++) {
		uint32_t p = (j->idx ? j->idx[i] : j->first + i) * B;
		uint32_t end = p + B;
		const float *q = j->q;
		float best = -INFINITY;
		if (qr && far_shift(&fr, p)) {
			eng__rope_back(fr.cs, j->q, j->hd, qr, j->hd,
			    j->group, j->hd, fr.rope->n_rot, fr.rope->neox);
			q = qr;
		}
		while (p < end) {
			eng_kv_span sp;
			int rc = j->kv->ops->view(j->kv, j->layer, j->kvh, p,
			    end - p, &sp);
			if (rc) {
				atomic_store(&j->rc, rc);
				goto out;
			}
			for (uint32_t t = 0; t < sp.n; t++)
				for (uint32_t h = 0; h < j->group;
				    h += ENG_NT_MAX) {
					int nt = j->group - h < ENG_NT_MAX ?
					    (int)(j->group - h) : ENG_NT_MAX;
					j->dot(j->hd, (const char *)sp.k +
					    t * sp.k_stride, q + h * j->hd,
					    j->hd * sizeof(float), s, 1, nt);
					for (int u = 0; u < nt; u++)
						best = s[u] > best ? s[u] : best;
				}
			p += sp.n;
		}
		j->pl->scores[i] = best == best ? best : -INFINITY;
	}
out:
	far_close(&fr);
}

/* A question's estimated scores from its candidates' key codes
 * (eng_kv_code_block), for a shortlist: each block by its best key as the
 * codes give it, key t about centre + radius (u_t/2 - 3/4) with centre
 * (max + min)/2 and radius (max - min)/2 of its summary, so
 *   q.k_t ~ q.centre - 3/4 w.1 + w.u_t / 2,   w = q * radius,
 * u_t the key's codes (0..3 per channel): no key read (at 1M the codes
 * are 230 MB against 3 GB of keys).  w.u_t is taken in integers: w
 * rounded to int8 per block and head (scale max|w|/127: it moves a
 * score by less than the codes' own step), so that one AVX-512 pass
 * scores a key for four heads at once (u8 x s8 products) and every SIMD
 * level finds the same sums.  The highest over the group's heads, for the
 * step's last query, rotated back for a block beyond the reach as a scan
 * does. */
struct code_job {
	struct eng__plan *pl;
	const eng_kv_runs *sums;	/* min, max */
	const eng_kv_runs *codes;
	const float *q;		/* the last token's group rows, hd apart */
	uint32_t group, hd, B, first, n_cand;
	int avx512;		/* hd % 64 == 0 and ENG_SIMD_AVX512 (which
				 * has BW and VNNI) */
	const struct eng__rope *rope;
	uint32_t far_end;
	atomic_int rc;
};

/* Heads scored together; channels of an int8 row, padded. */
#define CODE_HEADS 4
#define CODE_PAD(hd) (((size_t)(hd) + 63) / 64 * 64)

/* Per block and up to CODE_HEADS heads: w = q * radius rounded to int8
 * (wq, rows of CODE_PAD(hd), zero past hd and for absent heads), its
 * scale, and q.centre - 3/4 w.1, in the same floats whatever the
 * kernel (the sums' order aside). */
struct code_heads {
	int8_t *wq;
	float scale[CODE_HEADS], base[CODE_HEADS];
};

static void code_prep(struct code_heads *ch, const float *q, uint32_t nh,
    const float *cen, const float *rad, uint32_t hd, float *w)
{
	size_t pad = CODE_PAD(hd);

	memset(ch->wq, 0, CODE_HEADS * pad);
	for (uint32_t h = 0; h < nh; h++) {
		const float *qh = q + (size_t)h * hd;
		float mx = 0, base = 0, ws = 0, inv;
		for (uint32_t c = 0; c < hd; c++) {
			w[c] = qh[c] * rad[c];
			mx = fabsf(w[c]) > mx ? fabsf(w[c]) : mx;
			ws += w[c];
			base += qh[c] * cen[c];
		}
		inv = mx > 0 ? 127.0f / mx : 0;
		for (uint32_t c = 0; c < hd; c++)
			ch->wq[h * pad + c] = (int8_t)lrintf(w[c] * inv);
		ch->scale[h] = mx > 0 ? mx / 127.0f : 0;
		ch->base[h] = base - 0.75f * ws;
	}
}

/* max over n keys of wq_h.u per head, into mx[CODE_HEADS]. */
static void code_max_ref(const uint8_t *codes, uint32_t n, uint32_t hd,
    size_t plane, const int8_t *wq, int32_t *mx)
{
	size_t pad = CODE_PAD(hd);

	for (int h = 0; h < CODE_HEADS; h++)
		mx[h] = INT32_MIN;
	for (uint32_t t = 0; t < n; t++, codes += 2 * plane)
		for (int h = 0; h < CODE_HEADS; h++) {
			int32_t sum = 0;
			for (uint32_t c = 0; c < hd; c++) {
				int u = (codes[c / 8] >> (c % 8) & 1) * 2 +
				    (codes[plane + c / 8] >> (c % 8) & 1);
				sum += u * wq[h * pad + c];
			}
			mx[h] = sum > mx[h] ? sum : mx[h];
		}
}

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
/* The same 64 channels at a time (AVX-512 with VNNI, as
 * ENG_SIMD_AVX512 has it): the codes' bit planes as masks make u (bytes
 * 0..3), dpbusd adds u8 x s8 products in i32 lanes, and the four heads'
 * lanes are reduced together.  hd % 64 == 0. */
__attribute__((target("avx512f,avx512bw,avx512vnni")))
static void code_max_avx512(const uint8_t *codes, uint32_t n, uint32_t hd,
    size_t plane, const int8_t *wq, int32_t *mx)
{
	const __m512i two = _mm512_set1_epi8(2), one = _mm512_set1_epi8(1);
	__m128i best = _mm_set1_epi32(INT32_MIN);

	for (uint32_t t = 0; t < n; t++, codes += 2 * plane) {
		__m512i a[CODE_HEADS];
		for (int h = 0; h < CODE_HEADS; h++)
			a[h] = _mm512_setzero_si512();
		for (uint32_t j = 0; j < hd / 64; j++) {
			uint64_t mh, ml;
			memcpy(&mh, codes + 8 * j, 8);
			memcpy(&ml, codes + plane + 8 * j, 8);
			__m512i u = _mm512_maskz_mov_epi8(mh, two);
			u = _mm512_mask_add_epi8(u, ml, u, one);
			for (int h = 0; h < CODE_HEADS; h++)
				a[h] = _mm512_dpbusd_epi32(a[h], u,
				    _mm512_loadu_si512(wq + (size_t)h * hd +
				    64 * j));
		}
		/* per 128-bit lane [h0 h1 h2 h3] sums, then over lanes */
		__m512i t0 = _mm512_add_epi32(_mm512_unpacklo_epi32(a[0], a[1]),
		    _mm512_unpackhi_epi32(a[0], a[1]));
		__m512i t1 = _mm512_add_epi32(_mm512_unpacklo_epi32(a[2], a[3]),
		    _mm512_unpackhi_epi32(a[2], a[3]));
		__m512i t2 = _mm512_add_epi32(_mm512_unpacklo_epi64(t0, t1),
		    _mm512_unpackhi_epi64(t0, t1));
		t2 = _mm512_add_epi32(t2, _mm512_shuffle_i32x4(t2, t2,
		    _MM_SHUFFLE(1, 0, 3, 2)));
		t2 = _mm512_add_epi32(t2, _mm512_shuffle_i32x4(t2, t2,
		    _MM_SHUFFLE(2, 3, 0, 1)));
		best = _mm_max_epi32(best, _mm512_castsi512_si128(t2));
	}
	_mm_storeu_si128((__m128i *)(void *)mx, best);
}

/* code_prep and the f16 bounds to centre and radius, 16 channels at a
 * time: the same centres, radii, w, scales and int8 rows (the same
 * operations on each channel; products, max and rounding to nearest even
 * are exact either way); base and w.1 are summed in another order.
 * hd % 64 == 0. */
__attribute__((target("avx512f,avx512bw,avx512dq")))
static void code_prep_avx512(struct code_heads *ch, const float *q,
    uint32_t nh, const uint16_t *row, float *cen, float *rad, uint32_t hd,
    int convert)
{
	const __m512 sign = _mm512_set1_ps(-0.0f), half = _mm512_set1_ps(0.5f);

	if (convert)
		for (uint32_t c = 0; c < hd; c += 16) {
			__m512 mn = _mm512_cvtph_ps(_mm256_loadu_si256(
			    (const __m256i *)(const void *)(row + c)));
			__m512 mx = _mm512_cvtph_ps(_mm256_loadu_si256(
			    (const __m256i *)(const void *)(row + hd + c)));
			_mm512_storeu_ps(cen + c, _mm512_mul_ps(half,
			    _mm512_add_ps(mx, mn)));
			_mm512_storeu_ps(rad + c, _mm512_mul_ps(half,
			    _mm512_sub_ps(mx, mn)));
		}
	memset(ch->wq, 0, CODE_HEADS * (size_t)hd);
	for (uint32_t h = 0; h < nh; h++) {
		const float *qh = q + (size_t)h * hd;
		__m512 mx = _mm512_setzero_ps(), ws = mx, bs = mx;
		for (uint32_t c = 0; c < hd; c += 16) {
			__m512 qv = _mm512_loadu_ps(qh + c);
			__m512 w = _mm512_mul_ps(qv, _mm512_loadu_ps(rad + c));
			__m512 ce = _mm512_loadu_ps(cen + c);
			mx = _mm512_max_ps(mx, _mm512_andnot_ps(sign, w));
			ws = _mm512_add_ps(ws, w);
			bs = _mm512_fmadd_ps(qv, ce, bs);
		}
		float m = _mm512_reduce_max_ps(mx), inv = m > 0 ? 127.0f / m : 0;
		__m512 iv = _mm512_set1_ps(inv);
		for (uint32_t c = 0; c < hd; c += 16) {
			__m512 w = _mm512_mul_ps(_mm512_loadu_ps(qh + c),
			    _mm512_loadu_ps(rad + c));
			_mm_storeu_si128((__m128i *)(void *)(ch->wq +
			    (size_t)h * hd + c), _mm512_cvtsepi32_epi8(
			    _mm512_cvtps_epi32(_mm512_mul_ps(w, iv))));
		}
		ch->scale[h] = m > 0 ? m / 127.0f : 0;
		ch->base[h] = _mm512_reduce_add_ps(bs) - 0.75f *
		    _mm512_reduce_add_ps(ws);
	}
}
#endif

/* Blocks ahead whose codes are asked for early: a store's are strided
 * (a block's every layer, then the next's), which the hardware's
 * prefetchers do not follow; 2 ahead made a 1.2M question's codes scan
 * as fast as over one run per layer (bench/RESULTS.md, Sessions XV). */
#define CODE_AHEAD 2
static void code_task(void *arg, int ith, int nth)
{
	struct code_job *j = arg;
	uint32_t per = (j->n_cand + nth - 1) / nth, hd = j->hd;
	uint32_t a = per * ith, e = a + per < j->n_cand ? a + per : j->n_cand;
	size_t plane = (hd + 7) / 8;
	size_t pad = CODE_PAD(hd), cblock = (size_t)j->B * 2 * plane;
	struct far_rot fr = { 0 };
	struct code_heads ch;
	float *cen, *rad, *w, *qr;

	if (a >= e)
		return;
	cen = malloc(3 * hd * sizeof(float) + CODE_HEADS * pad);
	if (!cen || (first_far(j->far_end, j->first, a, j->B) &&
	    far_open(&fr, j->rope, j->far_end, j->B,
	    (size_t)j->group * hd))) {
		free(cen);
		atomic_store(&j->rc, ENG_ENOMEM);
		return;
	}
	rad = cen + hd;
	w = rad + hd;
	ch.wq = (int8_t *)(w + hd);
	qr = fr.q;
	for (uint32_t i = a; i < e; i++) {
		uint32_t b = j->first + i;
		const uint16_t *r = eng_kv_sum_at(j->sums, b);
		const uint8_t *cd = eng_kv_run_at(j->codes, b);
		const float *q = j->q;
		float best = -INFINITY;
		if (i + CODE_AHEAD < e) {
			const uint8_t *nx = eng_kv_run_at(j->codes, b +
			    CODE_AHEAD);
			for (size_t o = 0; o < cblock; o += 64)
				__builtin_prefetch(nx + o);
		}
		if (qr && far_shift(&fr, b * j->B)) {
			eng__rope_back(fr.cs, j->q, hd, qr, hd, j->group, hd,
			    fr.rope->n_rot, fr.rope->neox);
			q = qr;
		}
		if (!j->avx512)
			for (uint32_t c = 0; c < hd; c++) {
				float mn = eng_f16_to_f32(r[c]);
				float mx = eng_f16_to_f32(r[hd + c]);
				cen[c] = 0.5f * (mx + mn);
				rad[c] = 0.5f * (mx - mn);
			}
		for (uint32_t h0 = 0; h0 < j->group; h0 += CODE_HEADS) {
			uint32_t nh = j->group - h0 < CODE_HEADS ?
			    j->group - h0 : CODE_HEADS;
			int32_t mx[CODE_HEADS];
#if defined(__x86_64__) && defined(__GNUC__)
			if (j->avx512) {
				code_prep_avx512(&ch, q + (size_t)h0 * hd, nh, r,
				    cen, rad, hd, h0 == 0);
				code_max_avx512(cd, j->B, hd, plane, ch.wq, mx);
			} else
#endif
			{
				code_prep(&ch, q + (size_t)h0 * hd, nh, cen,
				    rad, hd, w);
				code_max_ref(cd, j->B, hd, plane, ch.wq, mx);
			}
			for (uint32_t h = 0; h < nh; h++) {
				float v = ch.base[h] + 0.5f * ch.scale[h] *
				    (float)mx[h];
				best = v > best ? v : best;
			}
		}
		j->pl->scores[i] = best == best ? best : -INFINITY;
	}
	far_close(&fr);
	free(cen);
}

/* pl->qbar: per head the scoring row (qbar_row) of the step's mean
 * query (InfLLM scores a chunk this way); after the group's rows, the
 * mean queries themselves (hd apart), which a far block's rotation
 * starts from. */
static void mean_query(struct eng__plan *pl, const struct eng__query *qs,
    int mass)
{
	uint32_t hd = qs->hd, group = qs->group;
	float *qm = pl->qbar + (size_t)group * 2 * hd;

	memset(qm, 0, (size_t)group * hd * sizeof(float));
	for (uint32_t t = 0; t < qs->n_tok; t++)
		for (uint32_t h = 0; h < group; h++) {
			const float *qr = qs->q + t * qs->row + (size_t)h * hd;
			float *o = qm + (size_t)h * hd;
			for (uint32_t c = 0; c < hd; c++)
				o[c] += qr[c];
		}
	for (uint32_t h = 0; h < group; h++) {
		float *o = qm + (size_t)h * hd;
		for (uint32_t c = 0; c < hd; c++)
			o[c] /= (float)qs->n_tok;
		qbar_row(pl->qbar + (size_t)h * 2 * hd, o, hd, mass,
		    qs->scale);
	}
}

/* Min-heap of block indices by score: the k best seen so far. */
static void heap_sift(uint32_t *h, uint32_t n, uint32_t i, const float *sc)
{
	for (;;) {
		uint32_t l = 2 * i + 1, m = i;
		if (l < n && sc[h[l]] < sc[h[m]])
			m = l;
		if (l + 1 < n && sc[h[l + 1]] < sc[h[m]])
			m = l + 1;
		if (m == i)
			return;
		uint32_t t = h[i];
		h[i] = h[m];
		h[m] = t;
		i = m;
	}
}

static int cmp_u32(const void *a, const void *b)
{
	uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
	return x < y ? -1 : x > y;
}

/* Squeezed placement, for more blocks than the reach holds: the sink at
 * c (L0 - reach), then the picks before c evenly after it, in order,
 * overlapping where they must (RoPE only sees distances; InfLLM shows
 * all its retrieved blocks at one distance), ending before the first
 * pick at or after c, which keeps its place.  0 with *j the picks placed
 * and *at where they end; 1, placing nothing, where the first pick after
 * c leaves less than the sink and a block of room; or an error. */
static int squeeze(struct eng__plan *pl, uint32_t k, uint32_t B,
    uint32_t c, uint32_t L0, uint32_t sink_end, uint32_t *j, uint32_t *at)
{
	uint32_t m = 0, room, step;
	int rc;

	while (m < k && pl->pick[m] * B < c)
		m++;
	room = (m < k ? pl->pick[m] * B : L0) - c;
	if (room < sink_end + B)
		return 1;
	room -= sink_end + B;
	step = m > 1 ? room / (m - 1) : 0;
	step = step < B ? step : B;
	if (sink_end && (rc = push_range(pl, 0, sink_end, c)))
		return rc;
	for (uint32_t i = 0; i < m; i++) {
		uint32_t p0 = pl->pick[i] * B;
		if ((rc = push_range(pl, p0, B, c + sink_end + i * step - p0)))
			return rc;
	}
	*j = m;
	*at = c + sink_end + (m ? (m - 1) * step + B : 0);
	return 0;
}

/* A question's exact scores for n candidate blocks, block first + i or
 * idx[i] (ascending), into pl->scores[0..n): every key read, so each
 * run of adjacent blocks is asked for before the first is read. */
static int scan(struct eng__plan *pl, eng_kv *kv, uint32_t layer,
    uint32_t kvh, const struct eng__query *qs, struct eng_pool *pool,
    uint32_t first, uint32_t n, const uint32_t *idx, uint32_t far_end)
{
	uint32_t B = kv->block_tokens;
	struct scan_job sj = { pl, kv, qs->q + (size_t)(qs->n_tok - 1) *
	    qs->row, eng_vec_dot_get(kv->type, eng_simd_active()), layer,
	    kvh, qs->group, qs->hd, first, n, 0, qs->rope, far_end, idx };

	if (!sj.dot)
		return ENG_EUNSUP;
	for (uint32_t i = 0, j; kv->ops->prefetch && i < n; i = j) {
		uint32_t b0 = idx ? idx[i] : first + i;
		for (j = i + 1; j < n && (idx ? idx[j] == idx[j - 1] + 1 : 1);
		    j++)
			;
		kv->ops->prefetch(kv, layer, kvh, b0 * B,
		    ((idx ? idx[j - 1] : first + j - 1) - b0 + 1) * B);
	}
	if (pool && n >= 64)
		eng_pool_run(pool, scan_task, &sj);
	else
		scan_task(&sj, 0, 1);
	return atomic_load(&sj.rc);
}

/* out[0..k): the indices of the k highest of sc[0..n), k <= n, in no
 * order (a min-heap of the best seen). */
static void best_of(uint32_t *out, uint32_t k, const float *sc, uint32_t n)
{
	for (uint32_t i = 0; i < k; i++)
		out[i] = i;
	for (uint32_t i = k / 2; i-- > 0;)
		heap_sift(out, k, i, sc);
	for (uint32_t i = k; i < n; i++)
		if (sc[i] > sc[out[0]]) {
			out[0] = i;
			heap_sift(out, k, 0, sc);
		}
}

/* A question with more candidates than scan_max: of the n_cand from lo,
 * scored by their summaries in pl->scores, the shortlist/B best (at
 * least k) go to pl->list (block indices, ascending) and are scanned as a
 * question scans, their exact scores to pl->scores[0..).  Their count,
 * or an error. */
static int scan_shortlist(struct eng__plan *pl, const eng_sparse_params *sp,
    eng_kv *kv, uint32_t layer, uint32_t kvh, const struct eng__query *qs,
    struct eng_pool *pool, uint32_t lo, uint32_t n_cand, uint32_t k,
    uint32_t far_end)
{
	uint32_t B = kv->block_tokens, m = sp->shortlist / B;
	int rc;

	m = m < k ? k : m > n_cand ? n_cand : m;
	if ((rc = grow(&pl->list, &pl->list_cap, m, sizeof *pl->list)))
		return rc;
	best_of(pl->list, m, pl->scores, n_cand);
	qsort(pl->list, m, sizeof *pl->list, cmp_u32);
	for (uint32_t i = 0; i < m; i++)
		pl->list[i] += lo;
	if ((rc = scan(pl, kv, layer, kvh, qs, pool, 0, m, pl->list,
	    far_end)))
		return rc;
	return (int)m;
}

/* Scores n_cand candidates from lo into pl->scores: by their key codes
 * for a shortlist (lists) where sp->codes and the store has codes for
 * every candidate, else by their summaries.  One pass over every
 * candidate per layer and step (16 K blocks at 1M tokens): split over the
 * pool. */
static int rank(struct eng__plan *pl, const eng_sparse_params *sp,
    eng_kv *kv, uint32_t layer, uint32_t kvh, const struct eng__query *qs,
    struct eng_pool *pool, const eng_kv_runs *sums, int lists, uint32_t lo,
    uint32_t n_cand, uint32_t last,
    uint32_t far_end)
{
	uint32_t hd = qs->hd;
	int mass = qs->n_tok <= ENG_SPARSE_FEW, rc;
	eng_kv_runs codes = { 0 };
	eng_vec_dot_fn dot;

	pl->ranked = ENG_RANK_SUMMARIES;
	if (lists && sp->codes && kv->ops->codes &&
	    (rc = kv->ops->codes(kv, layer, kvh, &codes)))
		return rc;
	if (codes.n && codes.n >= last) {
		struct code_job cj = { pl, sums, &codes, qs->q +
		    (size_t)(qs->n_tok - 1) * qs->row, qs->group, hd,
		    kv->block_tokens, lo, n_cand, hd % 64 == 0 &&
		    eng_simd_active() >= ENG_SIMD_AVX512, qs->rope, far_end,
		    0 };
		if (pool && n_cand >= 256)
			eng_pool_run(pool, code_task, &cj);
		else
			code_task(&cj, 0, 1);
		pl->ranked = ENG_RANK_CODES;
		return atomic_load(&cj.rc);
	}
	if (!(dot = eng_vec_dot_get(mass ? ENG_TYPE_F32 : ENG_TYPE_F16,
	    eng_simd_active())))
		return ENG_EUNSUP;
	mean_query(pl, qs, mass);
	struct score_job sj = { pl, sums, dot, qs->group, hd, lo, n_cand,
	    mass, qs->scale, qs->rope, far_end, kv->block_tokens, 0 };
	if (pool && n_cand >= 1024)
		eng_pool_run(pool, score_task, &sj);
	else
		score_task(&sj, 0, 1);
	return atomic_load(&sj.rc);
}

/* The reach a step of k blocks places with: never less than the sink
 * and the blocks packed just before the local run. */
static uint64_t eff_reach(const eng_sparse_params *sp, uint32_t k,
    uint32_t B, uint32_t sink_end)
{
	uint64_t tight = (uint64_t)k * B + sink_end;
	return sp->reach > tight ? sp->reach : tight;
}

int eng__sparse_plan(struct eng__plan *pl, const eng_sparse_params *sp,
    eng_kv *kv, uint32_t layer, uint32_t kvh, const struct eng__query *qs,
    struct eng_pool *pool)
{
	uint32_t B = kv->block_tokens, first, last, lo, n_cand, k, far_end;
	uint32_t n_tok = qs->n_tok, pos0 = qs->pos0, hd = qs->hd;
	uint32_t local = n_tok > ENG_SPARSE_FEW && sp->prefill_local >
	    sp->local ? sp->prefill_local : sp->local;
	uint32_t want;
	eng_kv_runs sums;
	int mass = n_tok <= ENG_SPARSE_FEW, question = mass && n_tok > 1;
	int scans, lists, rc;

	pl->n_ranges = 0;
	pl->ranked = ENG_RANK_NONE;
	if (n_tok > 1)
		pl->n_pins = pl->pin_dense = 0;
	if (!sp->top_k || !B || !kv->ops->summary ||
	    (uint64_t)pos0 + n_tok <= sp->dense_max)
		return 0;
	/* Candidates: whole blocks after the sink, before the local run. */
	first = (sp->sink + B - 1) / B;
	last = pos0 > local ? (pos0 - local) / B : 0;
	/* A question scans its candidates' keys up to scan_max positions and
	 * takes question_top_k.  One that cannot scans the shortlist
	 * positions ranked highest (by codes or summaries), if shortlist,
	 * else it ranks by summaries; either takes top_k: 256 blocks made
	 * the default model end its answer at once on a 1.2M session,
	 * ranked by summaries or by codes (bench/RESULTS.md, Sessions X,
	 * XIII), and at 1M the needle's share of a shortlist's 64 is larger
	 * than of its 256. */
	scans = question && last > first &&
	    (uint64_t)(last - first) * B <= sp->scan_max;
	lists = question && !scans && last > first && sp->shortlist >= B;
	want = !mass && sp->prefill_top_k ? sp->prefill_top_k :
	    scans && sp->question_top_k ? sp->question_top_k : sp->top_k;
	if (n_tok == 1 && pl->pin_dense && pl->pin_kv == kv &&
	    pl->pin_end <= pos0 && last - first < pl->pin_dense)
		return 0;	/* the question's every candidate, and a few more */
	if (last <= first || last - first < want) {
		if (n_tok > 1 && last > first) {
			pl->pin_dense = want;
			pl->pin_kv = kv;
			pl->pin_end = pos0 + n_tok;
		}
		return 0;	/* fewer candidates than picks: dense */
	}
	if ((rc = kv->ops->summary(kv, layer, kvh, &sums)))
		return rc;
	if (sums.n < last)
		return ENG_ERANGE;	/* the store lags the sequence */
	n_cand = last - first;
	k = want;
	if ((rc = grow(&pl->qbar, &pl->qbar_cap, (size_t)qs->group *
	    3 * hd, sizeof(float))) ||
	    (rc = grow(&pl->scores, &pl->scores_cap, n_cand,
	    sizeof(float))) ||
	    (rc = grow(&pl->pick, &pl->pick_cap, (size_t)k +
	    pl->n_pins, sizeof(uint32_t))))
		return rc;

	/* Where placement below will start (the same rule, before pins):
	 * blocks before it are scored as moved up to it.  A decode step
	 * neither scores nor picks them: it keeps the question's picks, in
	 * place their scores are noise, and rotating the query for each of
	 * 16K far blocks per token would almost triple a step at 1M
	 * (bench/RESULTS.md, Sessions VIII).  Its candidates start at lo;
	 * eff_reach >= sink + k*B leaves at least k of them. */
	lo = first;
	{
		uint64_t reach = sp->squeeze && sp->reach > (uint64_t)first *
		    B + B ? sp->reach : eff_reach(sp, k, B, first * B);
		uint64_t L0 = (uint64_t)last * B;
		far_end = L0 > reach && qs->rope && qs->rope->n_rot ?
		    (uint32_t)(L0 - reach) + first * B : 0;
		if (n_tok == 1 && far_end) {
			lo = (far_end + B - 1) / B;
			if (last - lo < k)
				lo = last - k;
			far_end = 0;
		}
	}
	n_cand = last - lo;	/* a question's lo is first */
	if (scans) {
		if ((rc = scan(pl, kv, layer, kvh, qs, pool, lo, n_cand, NULL,
		    far_end)))
			return rc;
		pl->ranked = ENG_RANK_KEYS;
	} else {
		if ((rc = rank(pl, sp, kv, layer, kvh, qs, pool, &sums,
		    lists, lo, n_cand, last, far_end)))
			return rc;
		if (lists && (rc = scan_shortlist(pl, sp, kv, layer, kvh, qs,
		    pool, lo, n_cand, k, far_end)) < 0)
			return rc;
		if (lists)
			n_cand = (uint32_t)rc;	/* scores: the list's, exact */
	}
	best_of(pl->pick, k, pl->scores, n_cand);
	for (uint32_t i = 0; i < k; i++)	/* block indices from here */
		pl->pick[i] = lists ? pl->list[pl->pick[i]] : pl->pick[i] + lo;
	if (n_tok > 1) {
		if ((rc = grow(&pl->pins, &pl->pins_cap, k,
		    sizeof(uint32_t))))
			return rc;
		memcpy(pl->pins, pl->pick, k * sizeof *pl->pins);
		pl->n_pins = k;
		pl->pin_kv = kv;
		pl->pin_end = pos0 + n_tok;
	} else if (pl->n_pins && pl->pin_kv == kv && pl->pin_end <= pos0) {
		uint32_t n = k;
		for (uint32_t j = 0; j < pl->n_pins; j++) {
			uint32_t b = pl->pins[j], i, dup = 0;
			if (b < first || b >= last)
				continue;
			for (i = 0; i < k && !dup; i++)
				dup = pl->pick[i] == b;
			if (!dup)
				pl->pick[n++] = b;
		}
		k = n;
	}
	qsort(pl->pick, k, sizeof *pl->pick, cmp_u32);

	/* Placement: the earliest position anything may appear at is
	 * c = L0 - reach.  The sink goes there, then block j at its true
	 * position or, if that is taken or out of reach, right after the
	 * previous one.  Since reach >= sink_end + k*B, block j ends at or
	 * before L0 - (k-j-1)*B: everything stays below the local run.
	 * Squeezed, c = L0 - sp->reach however many blocks there are. */
	{
		uint32_t L0 = last * B, sink_end = first * B, j = 0, at;
		uint64_t reach = eff_reach(sp, k, B, sink_end);
		uint32_t c = L0 > reach ? (uint32_t)(L0 - reach) : 0;
		if (sp->squeeze && reach > sp->reach && L0 > sp->reach &&
		    (rc = squeeze(pl, k, B, L0 - sp->reach, L0, sink_end, &j,
		    &at)) <= 0) {
			if (rc < 0)
				return rc;
		} else {
			at = c + sink_end;
			if (sink_end && (rc = push_range(pl, 0, sink_end, c)))
				return rc;
		}
		for (; j < k; j++) {
			uint32_t p0 = pl->pick[j] * B;
			uint32_t eff = p0 > at ? p0 : at;
			if ((rc = push_range(pl, p0, B, eff - p0)))
				return rc;
			at = eff + B;
		}
		/* The open local range is never merged into the last block:
		 * give it a distinct entry. */
		if ((rc = grow(&pl->ranges, &pl->cap,
		    pl->n_ranges + 1, sizeof *pl->ranges)))
			return rc;
		pl->ranges[pl->n_ranges++] = (struct eng__range){ L0, 0, 0 };
	}
	return 0;
}

void eng_sparse_params_init(eng_sparse_params *sp)
{
	*sp = (eng_sparse_params){ .top_k = 64, .sink = 64, .local = 1024,
	    .prefill_local = 8192, .question_top_k = 256, .dense_max = 4096,
	    .reach = 8192,
	    .scan_max = 262144, .shortlist = 16384, .codes = 1 };
}

void eng__plan_free(struct eng__plan *pl)
{
	if (!pl)
		return;
	free(pl->ranges);
	free(pl->scores);
	free(pl->pick);
	free(pl->list);
	free(pl->qbar);
	free(pl->pins);
	memset(pl, 0, sizeof *pl);
}
