/* codec.c - block records: f16 conversion, block keys, the three encodings
 * (F16, Q8 and Q4 with the KIVI split), verification and decoding, and the
 * per-block key summaries.  Format: memstore.h (DESIGN, ms_mode). */
#include "config.h"
#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif
#include <math.h>
#include <string.h>
#define XXH_STATIC_LINKING_ONLY	/* XXH3_state_t on the stack */
#include <xxhash.h>
#include "ms_internal.h"

/* ---- f16 ------------------------------------------------------------ */

uint16_t ms_f16_from_f32(float f)
{
	uint32_t x;
	memcpy(&x, &f, 4);
	uint32_t sign = (x >> 16) & 0x8000u;
	uint32_t exp = (x >> 23) & 0xffu;
	uint32_t man = x & 0x7fffffu;
	if (exp == 0xff)	/* inf or NaN (keep a quiet NaN) */
		return (uint16_t)(sign | 0x7c00u | (man ? 0x200u : 0));
	int e = (int)exp - 127 + 15;
	if (e >= 31)
		return (uint16_t)(sign | 0x7c00u);
	if (e <= 0) {		/* subnormal or zero */
		if (e < -10)
			return (uint16_t)sign;
		man |= 0x800000u;
		int shift = 14 - e;
		uint32_t half = man >> shift;
		uint32_t rem = man & ((1u << shift) - 1);
		uint32_t mid = 1u << (shift - 1);
		if (rem > mid || (rem == mid && (half & 1)))
			half++;
		return (uint16_t)(sign | half);
	}
	uint32_t h = ((uint32_t)e << 10) | (man >> 13);
	uint32_t rem = man & 0x1fffu;
	if (rem > 0x1000u || (rem == 0x1000u && (h & 1)))
		h++;		/* may carry into the exponent: correct */
	return (uint16_t)(sign | h);
}

float ms_f16_to_f32(uint16_t h)
{
	uint32_t sign = (uint32_t)(h & 0x8000u) << 16;
	uint32_t exp = (h >> 10) & 0x1fu;
	uint32_t man = h & 0x3ffu;
	uint32_t x;
	if (exp == 0) {
		if (man == 0) {
			x = sign;
		} else {	/* subnormal: normalize */
			int e = -1;
			do {
				e++;
				man <<= 1;
			} while (!(man & 0x400u));
			x = sign | ((uint32_t)(127 - 15 - e) << 23) |
			    ((man & 0x3ffu) << 13);
		}
	} else if (exp == 31) {
		x = sign | 0x7f800000u | (man << 13);
	} else {
		x = sign | ((exp - 15 + 127) << 23) | (man << 13);
	}
	float f;
	memcpy(&f, &x, 4);
	return f;
}

float ms_f16_load(const uint8_t *p)
{
	uint16_t h;
	memcpy(&h, p, 2);
	return ms_f16_to_f32(h);
}

/* The largest f16 <= f and the smallest f16 >= f (f finite, in range), so
 * that rounded bounds still bound. */
static uint16_t f16_down(float f)
{
	uint16_t h = ms_f16_from_f32(f);
	if (ms_f16_to_f32(h) <= f)
		return h;
	if (h == 0)
		return 0x8001u;
	return (uint16_t)(h & 0x8000u ? h + 1 : h - 1);
}

static uint16_t f16_up(float f)
{
	uint16_t h = ms_f16_from_f32(f);
	if (ms_f16_to_f32(h) >= f)
		return h;
	if (h == 0x8000u)
		return 1;
	return (uint16_t)(h & 0x8000u ? h - 1 : h + 1);
}

static void f16_store(uint8_t *p, float f)
{
	uint16_t h = ms_f16_from_f32(f);
	memcpy(p, &h, 2);
}

/* ---- keys and geometry --------------------------------------------- */

void ms_block_key(const uint8_t fingerprint[16], const ms_key *parent,
		  const uint32_t *tokens, uint32_t n_tokens, uint64_t position,
		  ms_key *out)
{
	static const uint8_t zero[16];
	XXH3_state_t st;
	XXH3_128bits_reset(&st);
	XXH3_128bits_update(&st, fingerprint, 16);
	XXH3_128bits_update(&st, parent ? parent->b : zero, 16);
	XXH3_128bits_update(&st, tokens, (size_t)n_tokens * 4);	/* LE host */
	XXH3_128bits_update(&st, &position, 8);
	XXH128_canonical_t c;
	XXH128_canonicalFromHash(&c, XXH3_128bits_digest(&st));
	memcpy(out->b, c.digest, 16);
}

int ms__geom_valid(const ms_geom *g, uint32_t max_tokens)
{
	if (!g || g->n_layers < 1 || g->n_layers > 256 || g->n_kv_heads < 1 ||
	    g->n_kv_heads > 256 || g->head_dim < 2 || g->head_dim > 4096 ||
	    (g->head_dim & 1) || g->block_tokens > max_tokens)
		return 0;
	return g->mode == MS_MODE_F16 || g->mode == MS_MODE_Q8 ||
	       g->mode == MS_MODE_Q4;
}

/* Channels per V scale group in Q4 mode. */
static uint32_t q4_vgroup(uint32_t d)
{
	return d % 32 == 0 ? 32 : d;
}

static size_t k_bytes(ms_mode mode, uint32_t t, uint32_t d)
{
	switch (mode) {
	case MS_MODE_F16: return (size_t)t * d * 2;
	case MS_MODE_Q8: return (size_t)d * 4 + (size_t)t * d;
	case MS_MODE_Q4: return (size_t)d * 4 + (size_t)t * d / 2;
	}
	return 0;
}

size_t ms__section_bytes(ms_mode mode, uint32_t t, uint32_t d)
{
	size_t kb = k_bytes(mode, t, d);
	switch (mode) {
	case MS_MODE_F16: return kb + (size_t)t * d * 2;
	case MS_MODE_Q8: return kb + (size_t)t * 4 + (size_t)t * d;
	case MS_MODE_Q4:
		return kb + (size_t)t * (d / q4_vgroup(d)) * 4 +
		       (size_t)t * d / 2;
	}
	return 0;
}

size_t ms_block_record_size(const ms_geom *g, uint32_t n_tokens)
{
	if (!ms__geom_valid(g, MS__MAX_TAIL_TOKENS) || n_tokens < 1 ||
	    n_tokens > MS__MAX_TAIL_TOKENS)
		return 0;
	return sizeof(struct ms__block_hdr) + (size_t)n_tokens * 4 +
	       (size_t)g->n_layers * g->n_kv_heads *
		       ms__section_bytes(g->mode, n_tokens, g->head_dim);
}

/* ---- quantization --------------------------------------------------- */

/* Parameters of an asymmetric quantization of n values x[i * stride] to
 * codes 0..levels: writes min and scale as f16 and returns, in *mn_out and
 * *inv_out, the rounded min and 1/scale the codes must be computed with,
 * so that decoding reproduces what the encoder measured. */
static void quant_params(const float *x, size_t n, size_t stride,
			 uint8_t *pmin, uint8_t *pscale, unsigned levels,
			 float *mn_out, float *inv_out)
{
	float mn = x[0], mx = x[0];
	for (size_t i = 1; i < n; i++) {
		float y = x[i * stride];
		mn = y < mn ? y : mn;
		mx = y > mx ? y : mx;
	}
	uint16_t hmn = f16_down(mn);	/* min stays <= every value */
	float fmn = ms_f16_to_f32(hmn);
	float sc = (mx - fmn) / (float)levels;
	uint16_t hsc = ms_f16_from_f32(sc);
	float fsc = ms_f16_to_f32(hsc);
	memcpy(pmin, &hmn, 2);
	memcpy(pscale, &hsc, 2);
	*mn_out = fmn;
	*inv_out = fsc > 0.0f ? 1.0f / fsc : 0.0f;
}

static unsigned qcode(float x, float mn, float inv, unsigned levels)
{
	float q = (x - mn) * inv + 0.5f;
	if (!(q > 0.0f))
		return 0;
	if (q >= (float)levels)
		return levels;
	return (unsigned)q;
}

static void code_put(uint8_t *codes, size_t i, int bits, unsigned q)
{
	if (bits == 8) {
		codes[i] = (uint8_t)q;
	} else if (i & 1) {
		codes[i >> 1] = (uint8_t)((codes[i >> 1] & 0x0f) | (q << 4));
	} else {
		codes[i >> 1] = (uint8_t)((codes[i >> 1] & 0xf0) | q);
	}
}

static unsigned code_get(const uint8_t *codes, size_t i, int bits)
{
	if (bits == 8)
		return codes[i];
	return (codes[i >> 1] >> ((i & 1) * 4)) & 0x0f;
}

/* One (layer, head) section from k[t][d] and v[t][d]. */
static void section_encode(uint8_t *p, ms_mode mode, uint32_t t, uint32_t d,
			   const float *k, const float *v)
{
	if (mode == MS_MODE_F16) {
		for (size_t i = 0; i < (size_t)t * d; i++)
			f16_store(p + 2 * i, k[i]);
		p += (size_t)t * d * 2;
		for (size_t i = 0; i < (size_t)t * d; i++)
			f16_store(p + 2 * i, v[i]);
		return;
	}
	int bits = mode == MS_MODE_Q8 ? 8 : 4;
	unsigned levels = (1u << bits) - 1;
	/* K: per channel over the block's tokens. */
	uint8_t *kmin = p, *kscale = p + (size_t)d * 2, *kc = p + (size_t)d * 4;
	memset(kc, 0, (size_t)t * d * bits / 8);
	for (uint32_t c = 0; c < d; c++) {
		float mn, inv;
		quant_params(k + c, t, d, kmin + 2 * c, kscale + 2 * c, levels,
			     &mn, &inv);
		for (uint32_t i = 0; i < t; i++)
			code_put(kc, (size_t)i * d + c, bits,
				 qcode(k[(size_t)i * d + c], mn, inv, levels));
	}
	p += k_bytes(mode, t, d);
	/* V: per token, in groups of g channels. */
	uint32_t g = bits == 8 ? d : q4_vgroup(d);
	uint32_t ng = d / g;
	uint8_t *vmin = p, *vscale = p + (size_t)t * ng * 2;
	uint8_t *vc = p + (size_t)t * ng * 4;
	memset(vc, 0, (size_t)t * d * bits / 8);
	for (uint32_t i = 0; i < t; i++) {
		for (uint32_t j = 0; j < ng; j++) {
			const float *x = v + (size_t)i * d + (size_t)j * g;
			size_t s = (size_t)i * ng + j;
			float mn, inv;
			quant_params(x, g, 1, vmin + 2 * s, vscale + 2 * s,
				     levels, &mn, &inv);
			for (uint32_t c = 0; c < g; c++)
				code_put(vc, (size_t)i * d + (size_t)j * g + c,
					 bits, qcode(x[c], mn, inv, levels));
		}
	}
}

static void section_decode(const uint8_t *p, ms_mode mode, uint32_t t,
			   uint32_t d, float *k, float *v)
{
	if (mode == MS_MODE_F16) {
		if (k)
			for (size_t i = 0; i < (size_t)t * d; i++)
				k[i] = ms_f16_load(p + 2 * i);
		p += (size_t)t * d * 2;
		if (v)
			for (size_t i = 0; i < (size_t)t * d; i++)
				v[i] = ms_f16_load(p + 2 * i);
		return;
	}
	int bits = mode == MS_MODE_Q8 ? 8 : 4;
	if (k) {
		const uint8_t *kc = p + (size_t)d * 4;
		for (uint32_t c = 0; c < d; c++) {
			float mn = ms_f16_load(p + 2 * c);
			float sc = ms_f16_load(p + (size_t)d * 2 + 2 * c);
			for (uint32_t i = 0; i < t; i++)
				k[(size_t)i * d + c] =
					mn + sc * (float)code_get(kc, (size_t)i * d + c, bits);
		}
	}
	p += k_bytes(mode, t, d);
	if (v) {
		uint32_t g = bits == 8 ? d : q4_vgroup(d);
		uint32_t ng = d / g;
		const uint8_t *vc = p + (size_t)t * ng * 4;
		for (uint32_t i = 0; i < t; i++) {
			for (uint32_t j = 0; j < ng; j++) {
				size_t s = (size_t)i * ng + j;
				float mn = ms_f16_load(p + 2 * s);
				float sc = ms_f16_load(p + (size_t)t * ng * 2 + 2 * s);
				for (uint32_t c = 0; c < g; c++) {
					size_t e = (size_t)i * d + (size_t)j * g + c;
					v[e] = mn + sc * (float)code_get(vc, e, bits);
				}
			}
		}
	}
}

/* ---- records -------------------------------------------------------- */

/* XXH3-64 of every byte of a record but the checksum field itself: bytes
 * [16, len) seeded with bytes [0, 8). */
static uint64_t record_sum(const uint8_t *rec, size_t len)
{
	uint64_t seed;
	memcpy(&seed, rec, 8);
	return XXH3_64bits_withSeed(rec + 16, len - 16, seed);
}

static int floats_ok(const float *x, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (!(fabsf(x[i]) <= 65504.0f))	/* also false for NaN */
			return 0;
	return 1;
}

int ms__kv_valid(const ms_geom *g, uint32_t n_tokens, const float *k,
		 const float *v, size_t stride)
{
	size_t per = (size_t)n_tokens * g->head_dim;
	for (uint32_t s = 0; s < g->n_layers * g->n_kv_heads; s++)
		if (!floats_ok(k + s * stride, per) || !floats_ok(v + s * stride, per))
			return 0;
	return 1;
}

int ms__block_encode(uint8_t *rec, const ms_geom *g, const uint8_t fp[16],
		     const ms_key *parent, uint64_t position,
		     const uint32_t *tokens, uint32_t n_tokens,
		     const float *k, const float *v)
{
	return ms__block_encode_strided(rec, g, fp, parent, position, tokens,
					n_tokens, k, v,
					(size_t)n_tokens * g->head_dim);
}

int ms__block_encode_strided(uint8_t *rec, const ms_geom *g,
			     const uint8_t fp[16], const ms_key *parent,
			     uint64_t position, const uint32_t *tokens,
			     uint32_t n_tokens, const float *k, const float *v,
			     size_t stride)
{
	size_t len = ms_block_record_size(g, n_tokens);
	if (!len)
		return MS_EINVAL;
	uint32_t d = g->head_dim, nsec = g->n_layers * g->n_kv_heads;
	if (!ms__kv_valid(g, n_tokens, k, v, stride))
		return MS_ERANGE;
	struct ms__block_hdr h;
	memset(&h, 0, sizeof(h));
	h.magic = MS__BLOCK_MAGIC;
	h.version = MS_FORMAT_VERSION;
	h.mode = (uint8_t)g->mode;
	memcpy(h.fingerprint, fp, 16);
	if (parent)
		memcpy(h.parent, parent->b, 16);
	h.position = position;
	h.n_tokens = (uint16_t)n_tokens;
	h.n_layers = (uint16_t)g->n_layers;
	h.n_kv_heads = (uint16_t)g->n_kv_heads;
	h.head_dim = (uint16_t)d;
	size_t sec = ms__section_bytes(g->mode, n_tokens, d);
	h.payload_bytes = (uint32_t)(sec * nsec);
	memcpy(rec, &h, sizeof(h));
	uint8_t *p = rec + sizeof(h);
	memcpy(p, tokens, (size_t)n_tokens * 4);
	p += (size_t)n_tokens * 4;
	for (uint32_t s = 0; s < nsec; s++)
		section_encode(p + s * sec, g->mode, n_tokens, d, k + s * stride,
			       v + s * stride);
	uint64_t sum = record_sum(rec, len);
	memcpy(rec + 8, &sum, 8);
	return 0;
}

int ms__block_parse(const uint8_t *rec, size_t len, const ms_key *key,
		    ms_block *out)
{
	struct ms__block_hdr h;
	if (len < sizeof(h))
		return MS_ECORRUPT;
	memcpy(&h, rec, sizeof(h));
	if (h.magic != MS__BLOCK_MAGIC || h.version != MS_FORMAT_VERSION ||
	    h.reserved != 0 || h.flags != 0)
		return MS_ECORRUPT;
	ms_geom g = { h.n_layers, h.n_kv_heads, h.head_dim, 0,
		      (ms_mode)h.mode };
	size_t want = ms_block_record_size(&g, h.n_tokens);
	if (!want || want != len ||
	    h.payload_bytes != len - sizeof(h) - (size_t)h.n_tokens * 4)
		return MS_ECORRUPT;
	if (record_sum(rec, len) != h.checksum)
		return MS_ECORRUPT;
	memset(out, 0, sizeof(*out));
	out->rec = rec;
	out->len = len;
	if (key)
		out->key = *key;
	memcpy(out->parent.b, h.parent, 16);
	memcpy(out->fingerprint, h.fingerprint, 16);
	out->position = h.position;
	out->n_tokens = h.n_tokens;
	out->geom = g;
	return 0;
}

void ms_block_tokens(const ms_block *b, uint32_t *out)
{
	memcpy(out, b->rec + sizeof(struct ms__block_hdr),
	       (size_t)b->n_tokens * 4);
}

int ms_block_decode(const ms_block *b, uint32_t layer, uint32_t head,
		    float *k, float *v)
{
	if (!b || !b->rec || layer >= b->geom.n_layers ||
	    head >= b->geom.n_kv_heads)
		return MS_EINVAL;
	size_t sec = ms__section_bytes(b->geom.mode, b->n_tokens,
				       b->geom.head_dim);
	const uint8_t *p = b->rec + sizeof(struct ms__block_hdr) +
			   (size_t)b->n_tokens * 4 +
			   ((size_t)layer * b->geom.n_kv_heads + head) * sec;
	section_decode(p, b->geom.mode, b->n_tokens, b->geom.head_dim, k, v);
	return 0;
}

int ms_block_f16(const ms_block *b, uint32_t layer, uint32_t head,
		 const uint8_t **k, const uint8_t **v)
{
	if (!b || !b->rec || !k || !v || layer >= b->geom.n_layers ||
	    head >= b->geom.n_kv_heads || b->geom.mode != MS_MODE_F16)
		return MS_EINVAL;
	size_t sec = ms__section_bytes(b->geom.mode, b->n_tokens,
				       b->geom.head_dim);
	const uint8_t *p = b->rec + sizeof(struct ms__block_hdr) +
			   (size_t)b->n_tokens * 4 +
			   ((size_t)layer * b->geom.n_kv_heads + head) * sec;
	*k = p;
	*v = p + (size_t)b->n_tokens * b->geom.head_dim * 2;
	return 0;
}

/* ---- summaries ------------------------------------------------------ */

size_t ms__summary_size(const ms_geom *g, uint32_t n_tokens)
{
	size_t nsec = (size_t)g->n_layers * g->n_kv_heads;
	return sizeof(struct ms__sum_hdr) + nsec * 3 * g->head_dim * 2 +
	       nsec * n_tokens * MS__CODE_ROW(g->head_dim);
}

/* The 2-bit codes of channel c of n keys (x, rows d apart) within
 * [lo, hi] (the summary's f16 bounds): floor(4 (x - lo) / (hi - lo)),
 * 0..3, as bit c of each row's high and low planes.  The same floats and
 * order as the engine's eng_kv_code_block, so the bits agree. */
static void code_channel(uint8_t *o, const float *x, uint32_t n, uint32_t d,
			 uint32_t c, float lo, float hi)
{
	size_t plane = (d + 7) / 8;
	float w = hi - lo;
	for (uint32_t i = 0; i < n; i++) {
		float y = (x[(size_t)i * d + c] - lo) * 4.0f;
		float q = w > 0 && y > 0 ? y / w : 0;
		int u = q >= 3 ? 3 : (int)q;
		uint8_t *r = o + (size_t)i * 2 * plane;
		r[c / 8] |= (uint8_t)((u >> 1) << (c % 8));
		r[plane + c / 8] |= (uint8_t)((u & 1) << (c % 8));
	}
}

void ms__summary_encode(uint8_t *rec, const ms_geom *g, uint32_t n_tokens,
			uint64_t position, const ms_key *key, const float *k,
			size_t stride)
{
	struct ms__sum_hdr h;
	memset(&h, 0, sizeof(h));
	h.magic = MS__SUM_MAGIC;
	h.version = MS__SUM_CODES;
	h.n_layers = (uint16_t)g->n_layers;
	h.n_kv_heads = (uint16_t)g->n_kv_heads;
	h.head_dim = (uint16_t)g->head_dim;
	h.n_tokens = n_tokens;
	h.position = position;
	memcpy(h.key, key->b, 16);
	memcpy(rec, &h, sizeof(h));
	uint8_t *p = rec + sizeof(h);
	uint32_t d = g->head_dim, nsec = g->n_layers * g->n_kv_heads;
	uint8_t *codes = p + (size_t)nsec * 3 * d * 2;
	size_t crow = MS__CODE_ROW(d);
	memset(codes, 0, (size_t)nsec * n_tokens * crow);
	for (uint32_t s = 0; s < nsec; s++) {
		const float *x = k + s * stride;
		uint8_t *o = p + (size_t)s * 3 * d * 2;
		for (uint32_t c = 0; c < d; c++) {
			float mn = x[c], mx = x[c];
			double sum = 0;
			for (uint32_t i = 0; i < n_tokens; i++) {
				float y = x[(size_t)i * d + c];
				mn = y < mn ? y : mn;
				mx = y > mx ? y : mx;
				sum += y;
			}
			/* Round outward so the f16 bounds still bound. */
			uint16_t hmn = f16_down(mn), hmx = f16_up(mx);
			memcpy(o + 2 * c, &hmn, 2);
			memcpy(o + 2 * ((size_t)d + c), &hmx, 2);
			f16_store(o + 2 * (2 * (size_t)d + c),
				  (float)(sum / n_tokens));
			code_channel(codes + (size_t)s * n_tokens * crow, x,
				     n_tokens, d, c, ms_f16_to_f32(hmn),
				     ms_f16_to_f32(hmx));
		}
	}
}

/* n f16 values at p (any alignment) to f32. */
static void f16_row(const uint8_t *p, float *out, size_t n)
{
	for (size_t i = 0; i < n; i++)
		out[i] = ms_f16_load(p + 2 * i);
}

#if defined(__x86_64__) && defined(__GNUC__)
__attribute__((target("avx,f16c")))
static void f16_row_f16c(const uint8_t *p, float *out, size_t n)
{
	size_t i = 0;
	for (; i + 8 <= n; i += 8)
		_mm256_storeu_ps(out + i, _mm256_cvtph_ps(_mm_loadu_si128(
			(const __m128i *)(const void *)(p + 2 * i))));
	f16_row(p + 2 * i, out + i, n - i);
}
#endif

void ms_summary_vectors(const ms_summary *s, uint32_t layer, uint32_t head,
			float *mn, float *mx, float *mean)
{
	size_t d = s->head_dim;
	const uint8_t *o = s->data +
			   ((size_t)layer * s->n_kv_heads + head) * 3 * d * 2;
	void (*row)(const uint8_t *, float *, size_t) = f16_row;
#if defined(__x86_64__) && defined(__GNUC__)
	if (__builtin_cpu_supports("f16c") && __builtin_cpu_supports("avx"))
		row = f16_row_f16c;
#endif
	row(o, mn, d);
	row(o + 2 * d, mx, d);
	row(o + 4 * d, mean, d);
}

void ms_summary_channel(const ms_summary *s, uint32_t layer, uint32_t head,
			uint32_t c, float *mn, float *mx, float *mean)
{
	size_t d = s->head_dim;
	const uint8_t *o = s->data +
			   ((size_t)layer * s->n_kv_heads + head) * 3 * d * 2;
	if (mn)
		*mn = ms_f16_load(o + 2 * c);
	if (mx)
		*mx = ms_f16_load(o + 2 * (d + c));
	if (mean)
		*mean = ms_f16_load(o + 2 * (2 * d + c));
}
