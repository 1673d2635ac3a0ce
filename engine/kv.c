/* kv.c - the KV cache interface's helpers and its in-memory store.
 *
 * Layout of the memory store: per layer and kv head, positions are
 * contiguous (k[slot][head_dim]), so one head's keys stream through the
 * attention loop.  A global layer's slot is its position; its buffer grows
 * by doubling up to n_ctx.  A sliding-window layer's slot is pos % cap,
 * with cap = window + n_batch: while a step writes n_batch new positions,
 * the window of its first token (window - 1 older positions) stays intact.
 * The interface is in engine.h.
 */
#include "config.h"

#include <stdlib.h>
#include <string.h>

#include "eng_internal.h"
#include "engine.h"
#include "kernels.h"

struct kv_layer {
	char *k;		/* [n_head_kv][cap][head_dim_k] of esz bytes */
	char *v;		/* [n_head_kv][cap][head_dim_v] */
	uint32_t cap;		/* slots allocated per head */
	int ring;		/* 1: slot = pos % cap, cap fixed */
	uint32_t lo;		/* oldest position still held */
	uint32_t window;	/* ring: positions a query sees, itself included */
	/* Summaries (global layers, when asked): per kv head, blocks of
	 * block_tokens positions, [n_head_kv][sum_cap][ENG_KV_SUM_ROW] f16
	 * (eng_kv_summary_row). */
	uint16_t *sb;
	/* Their keys' codes (eng_kv_code_block): [n_head_kv][sum_cap]
	 * [block_tokens][ENG_KV_CODE_ROW(head_dim_k)]. */
	uint8_t *cb;
	uint32_t n_sum, sum_cap;	/* blocks summarized; room for */
};

struct kv_mem {
	eng_kv base;		/* first: eng_kv * is a kv_mem * */
	size_t esz;		/* bytes per element */
	struct kv_layer *layers;	/* [n_layer] */
};

/* Grows l to at least need slots (exactly need when exact: rings). */
static int mem_layer_reserve(struct kv_mem *m, struct kv_layer *l,
    uint32_t need, int exact)
{
	const eng_kv *b = &m->base;
	size_t rk = (size_t)b->head_dim_k * m->esz;
	size_t rv = (size_t)b->head_dim_v * m->esz;
	uint32_t cap = exact ? need : l->cap ? l->cap : 256;
	char *nk, *nv;

	if (need <= l->cap)
		return 0;
	while (cap < need)
		cap = cap > b->n_ctx / 2 ? b->n_ctx : cap * 2;
	if (cap < need)
		return ENG_ERANGE;
	nk = malloc((size_t)b->n_head_kv * cap * rk);
	nv = malloc((size_t)b->n_head_kv * cap * rv);
	if (!nk || !nv) {
		free(nk);
		free(nv);
		return ENG_ENOMEM;
	}
	/* Heads are stored one after another: move each head's rows. */
	for (uint32_t h = 0; h < b->n_head_kv && l->cap; h++) {
		memcpy(nk + h * cap * rk, l->k + h * l->cap * rk, l->cap * rk);
		memcpy(nv + h * cap * rv, l->v + h * l->cap * rv, l->cap * rv);
	}
	free(l->k);
	free(l->v);
	l->k = nk;
	l->v = nv;
	l->cap = cap;
	return 0;
}

/* Makes room for need block summaries (and codes) in a global layer. */
static int mem_sum_reserve(struct kv_mem *m, struct kv_layer *l,
    uint32_t need)
{
	const eng_kv *b = &m->base;
	size_t row = ENG_KV_SUM_ROW(b->head_dim_k);
	size_t cap = l->sum_cap ? l->sum_cap : 64;
	size_t crow = b->block_tokens * ENG_KV_CODE_ROW(b->head_dim_k);
	uint16_t *nb;
	uint8_t *nc;

	if (need <= l->sum_cap)
		return 0;
	while (cap < need)
		cap *= 2;
	if (!(nb = malloc((size_t)b->n_head_kv * cap * row * sizeof *nb)))
		return ENG_ENOMEM;
	if (!(nc = malloc((size_t)b->n_head_kv * cap * crow))) {
		free(nb);
		return ENG_ENOMEM;
	}
	for (uint32_t h = 0; h < b->n_head_kv && l->n_sum; h++) {
		memcpy(nb + h * cap * row, l->sb + h * l->sum_cap * row,
		    l->n_sum * row * sizeof *nb);
		memcpy(nc + h * cap * crow, l->cb + h * l->sum_cap * crow,
		    l->n_sum * crow);
	}
	free(l->sb);
	free(l->cb);
	l->sb = nb;
	l->cb = nc;
	l->sum_cap = (uint32_t)cap;
	return 0;
}

static float load_elem(const char *row, uint32_t i, eng_type t)
{
	if (t == ENG_TYPE_F32)
		return ((const float *)row)[i];
	return eng_f16_to_f32(((const eng_f16 *)row)[i]);
}

/* Summarizes the global layers' complete blocks below n_pos. */
static int mem_summarize(struct kv_mem *m, uint32_t n_pos)
{
	const eng_kv *b = &m->base;
	uint32_t B = b->block_tokens, hd = b->head_dim_k;
	size_t rk = (size_t)hd * m->esz;
	float *kf;
	int rc;

	if (hd > ENG_KV_HD_MAX)
		return ENG_ERANGE;
	if (!(kf = malloc((size_t)B * hd * sizeof *kf)))
		return ENG_ENOMEM;
	for (uint32_t il = 0; il < b->n_layer; il++) {
		struct kv_layer *l = &m->layers[il];
		if (l->ring)
			continue;
		if (l->n_sum > n_pos / B)
			l->n_sum = n_pos / B;
		if ((rc = mem_sum_reserve(m, l, n_pos / B))) {
			free(kf);
			return rc;
		}
		for (; (l->n_sum + 1) * B <= n_pos; l->n_sum++)
			for (uint32_t h = 0; h < b->n_head_kv; h++) {
				for (uint32_t t = 0; t < B; t++) {
					const char *row = l->k + ((size_t)h *
					    l->cap + l->n_sum * B + t) * rk;
					for (uint32_t c = 0; c < hd; c++)
						kf[(size_t)t * hd + c] =
						    load_elem(row, c, b->type);
				}
				eng_kv_summarize_block(l->sb + ((size_t)h *
				    l->sum_cap + l->n_sum) *
				    ENG_KV_SUM_ROW(hd), kf, B, hd);
				eng_kv_code_block(l->cb + ((size_t)h *
				    l->sum_cap + l->n_sum) * B *
				    ENG_KV_CODE_ROW(hd), kf, B, hd);
			}
	}
	free(kf);
	return 0;
}

static int mem_summary(eng_kv *kv, uint32_t layer, uint32_t kvh,
    eng_kv_runs *sums)
{
	const struct kv_mem *m = (const struct kv_mem *)kv;
	const struct kv_layer *l;
	size_t row = ENG_KV_SUM_ROW(kv->head_dim_k);

	if (!kv->block_tokens || layer >= kv->n_layer ||
	    kvh >= kv->n_head_kv || !sums)
		return ENG_EINVAL;
	l = &m->layers[layer];
	if (l->ring)
		return ENG_EINVAL;
	*sums = (eng_kv_runs){
		.hi = l->sb ? (const uint8_t *)(l->sb + (size_t)kvh *
		    l->sum_cap * row) : NULL,
		.hi_stride = row * 2, .n = l->sb ? l->n_sum : 0 };
	return 0;
}

static int mem_codes(eng_kv *kv, uint32_t layer, uint32_t kvh,
    eng_kv_runs *codes)
{
	const struct kv_mem *m = (const struct kv_mem *)kv;
	const struct kv_layer *l;
	size_t cblock;

	if (!kv->block_tokens || layer >= kv->n_layer ||
	    kvh >= kv->n_head_kv || !codes || m->layers[layer].ring)
		return ENG_EINVAL;
	l = &m->layers[layer];
	cblock = (size_t)kv->block_tokens * ENG_KV_CODE_ROW(kv->head_dim_k);
	*codes = (eng_kv_runs){
		.hi = l->cb ? l->cb + (size_t)kvh * l->sum_cap * cblock : NULL,
		.hi_stride = cblock, .n = l->cb ? l->n_sum : 0 };
	return 0;
}

/* The f16 at or below f, and at or above it (memstore keeps a block's
 * channel bounds rounded outward, so that they still bound). */
static eng_f16 f16_down_bits(float f)
{
	eng_f16 h = eng_f32_to_f16(f);
	if (eng_f16_to_f32(h) <= f)
		return h;
	return h == 0 ? 0x8001u : (eng_f16)(h & 0x8000u ? h + 1 : h - 1);
}

static eng_f16 f16_up_bits(float f)
{
	eng_f16 h = eng_f32_to_f16(f);
	if (eng_f16_to_f32(h) >= f)
		return h;
	return h == 0x8000u ? 1 : (eng_f16)(h & 0x8000u ? h - 1 : h + 1);
}

static float f16_down(float f)
{
	return eng_f16_to_f32(f16_down_bits(f));
}

static float f16_up(float f)
{
	return eng_f16_to_f32(f16_up_bits(f));
}

void eng_kv_code_block(uint8_t *codes, const float *k, uint32_t n,
    uint32_t hd)
{
	size_t plane = (hd + 7) / 8;

	memset(codes, 0, n * 2 * plane);
	for (uint32_t c = 0; c < hd && n; c++) {
		float lo = k[c], hi = k[c], d;
		for (uint32_t i = 1; i < n; i++) {
			float x = k[(size_t)i * hd + c];
			lo = x < lo ? x : lo;
			hi = x > hi ? x : hi;
		}
		lo = f16_down(lo);
		hi = f16_up(hi);
		d = hi - lo;
		for (uint32_t i = 0; i < n; i++) {
			float x = (k[(size_t)i * hd + c] - lo) * 4.0f;
			float q = d > 0 && x > 0 ? x / d : 0;
			int u = q >= 3 ? 3 : (int)q;
			uint8_t *r = codes + (size_t)i * 2 * plane;
			r[c / 8] |= (uint8_t)((u >> 1) << (c % 8));
			r[plane + c / 8] |= (uint8_t)((u & 1) << (c % 8));
		}
	}
}

void eng_kv_summarize_block(uint16_t *row, const float *k, uint32_t n,
    uint32_t hd)
{
	float mn[ENG_KV_HD_MAX], mx[ENG_KV_HD_MAX], mean[ENG_KV_HD_MAX];

	for (uint32_t c = 0; c < hd; c++) {
		double sum = 0;
		mn[c] = mx[c] = k[c];
		for (uint32_t i = 0; i < n; i++) {
			float x = k[(size_t)i * hd + c];
			mn[c] = x < mn[c] ? x : mn[c];
			mx[c] = x > mx[c] ? x : mx[c];
			sum += x;
		}
		mean[c] = n ? (float)(sum / n) : 0.0f;
	}
	eng_kv_summary_row(row, mn, mx, mean, hd);
}

void eng_kv_summary_row(uint16_t *row, const float *kmin, const float *kmax,
    const float *kmean, uint32_t hd)
{
	for (uint32_t c = 0; c < hd; c++) {
		row[c] = f16_down_bits(kmin[c]);
		row[hd + c] = f16_up_bits(kmax[c]);
		row[2 * hd + c] = eng_f32_to_f16(kmean[c]);
	}
}

static void store_row(void *dst, const float *src, uint32_t n, eng_type t)
{
	if (t == ENG_TYPE_F32) {
		memcpy(dst, src, n * sizeof(float));
		return;
	}
	eng_f16 *d = dst;
	for (uint32_t i = 0; i < n; i++)
		d[i] = eng_f32_to_f16(src[i]);
}

static int mem_write(eng_kv *kv, uint32_t layer, uint32_t pos0, uint32_t n,
    const float *k, const float *v)
{
	struct kv_mem *m = (struct kv_mem *)kv;
	struct kv_layer *l;
	uint32_t dk = kv->head_dim_k, dv = kv->head_dim_v, nh = kv->n_head_kv;
	int rc;

	if (layer >= kv->n_layer || !k || !v || n == 0 ||
	    pos0 > kv->n_ctx || n > kv->n_ctx - pos0)
		return ENG_EINVAL;
	l = &m->layers[layer];
	if (l->ring) {
		if (n > l->cap)
			return ENG_ERANGE;
	} else if ((rc = mem_layer_reserve(m, l, pos0 + n, 0))) {
		return rc;
	}
	for (uint32_t i = 0; i < n; i++) {
		uint32_t slot = l->ring ? (pos0 + i) % l->cap : pos0 + i;
		for (uint32_t h = 0; h < nh; h++) {
			store_row(l->k + ((size_t)h * l->cap + slot) * dk *
			    m->esz, k + (size_t)i * nh * dk + h * dk, dk,
			    kv->type);
			store_row(l->v + ((size_t)h * l->cap + slot) * dv *
			    m->esz, v + (size_t)i * nh * dv + h * dv, dv,
			    kv->type);
		}
	}
	/* A ring now holds at most its last cap positions. */
	if (l->ring && pos0 + n > l->cap && pos0 + n - l->cap > l->lo)
		l->lo = pos0 + n - l->cap;
	return 0;
}

static int mem_view(eng_kv *kv, uint32_t layer, uint32_t kvh, uint32_t pos0,
    uint32_t n, eng_kv_span *out)
{
	const struct kv_mem *m = (const struct kv_mem *)kv;
	const struct kv_layer *l;
	uint32_t slot, run;

	if (layer >= kv->n_layer || kvh >= kv->n_head_kv || n == 0 || !out)
		return ENG_EINVAL;
	l = &m->layers[layer];
	if (pos0 < l->lo || pos0 >= l->lo + l->cap || l->cap == 0)
		return ENG_ERANGE;
	slot = l->ring ? pos0 % l->cap : pos0;
	run = l->cap - slot;
	out->n = n < run ? n : run;
	out->k_stride = kv->head_dim_k * m->esz;
	out->v_stride = kv->head_dim_v * m->esz;
	out->k = l->k + ((size_t)kvh * l->cap + slot) * out->k_stride;
	out->v = l->v + ((size_t)kvh * l->cap + slot) * out->v_stride;
	return 0;
}

static int mem_commit(eng_kv *kv, uint32_t n_pos)
{
	struct kv_mem *m = (struct kv_mem *)kv;

	if (n_pos > kv->n_ctx)
		return ENG_ERANGE;
	if (n_pos < kv->n_pos) {
		/* Going back is possible while every ring still holds the
		 * window behind the new end; slots beyond are just stale. */
		for (uint32_t il = 0; il < kv->n_layer; il++)
			if (m->layers[il].ring && m->layers[il].lo >
			    (n_pos >= m->layers[il].window ?
			    n_pos - m->layers[il].window + 1 : 0))
				return ENG_ERANGE;
	}
	if (kv->block_tokens) {
		int rc = mem_summarize(m, n_pos);
		if (rc)
			return rc;
	}
	kv->n_pos = n_pos;
	return 0;
}

static void mem_close(eng_kv *kv)
{
	struct kv_mem *m = (struct kv_mem *)kv;

	if (m->layers)
		for (uint32_t il = 0; il < kv->n_layer; il++) {
			free(m->layers[il].k);
			free(m->layers[il].v);
			free(m->layers[il].sb);
			free(m->layers[il].cb);
		}
	free(m->layers);
	free(m);
}

static const eng_kv_ops mem_ops = {
	.write = mem_write,
	.view = mem_view,
	.summary = mem_summary,
	.codes = mem_codes,
	.commit = mem_commit,
	.close = mem_close,
};

int eng_kv_mem_open(const eng_model *model, uint32_t n_ctx, uint32_t n_batch,
    eng_type type, eng_kv **out)
{
	const eng_hparams *hp;
	struct kv_mem *m;
	int rc = ENG_ENOMEM;

	if (!model || !out || n_ctx == 0 || n_batch == 0 ||
	    (type != ENG_TYPE_F16 && type != ENG_TYPE_F32))
		return ENG_EINVAL;
	*out = NULL;
	hp = eng_model_hparams(model);
	if (!(m = calloc(1, sizeof *m)))
		return ENG_ENOMEM;
	m->base.ops = &mem_ops;
	m->base.type = type;
	m->base.n_layer = hp->n_layer;
	m->base.n_head_kv = hp->n_head_kv;
	m->base.head_dim_k = hp->head_dim_k;
	m->base.head_dim_v = hp->head_dim_v;
	m->base.n_ctx = n_ctx;
	m->esz = type == ENG_TYPE_F16 ? 2 : 4;
	if (!(m->layers = calloc(hp->n_layer, sizeof *m->layers)))
		goto fail;
	for (uint32_t il = 0; il < hp->n_layer; il++) {
		struct kv_layer *l = &m->layers[il];
		if (!eng_hparams_layer_global(hp, il) &&
		    (uint64_t)hp->sliding_window + n_batch < n_ctx) {
			l->ring = 1;
			l->window = hp->sliding_window;
			if ((rc = mem_layer_reserve(m, l, hp->sliding_window +
			    n_batch, 1)))
				goto fail;
		}
	}
	*out = &m->base;
	return 0;
fail:
	mem_close(&m->base);
	return rc;
}

int eng_kv_mem_clone(const eng_kv *src, eng_kv **out)
{
	const struct kv_mem *m = (const struct kv_mem *)src;
	struct kv_mem *c;

	if (!src || !out || src->ops != &mem_ops)
		return ENG_EINVAL;
	*out = NULL;
	if (!(c = calloc(1, sizeof *c)))
		return ENG_ENOMEM;
	*c = *m;
	if (!(c->layers = calloc(src->n_layer, sizeof *c->layers))) {
		free(c);
		return ENG_ENOMEM;
	}
	for (uint32_t il = 0; il < src->n_layer; il++) {
		const struct kv_layer *l = &m->layers[il];
		struct kv_layer *d = &c->layers[il];
		size_t kb = (size_t)src->n_head_kv * l->cap * src->head_dim_k *
		    m->esz;
		size_t vb = (size_t)src->n_head_kv * l->cap * src->head_dim_v *
		    m->esz;
		size_t sb = (size_t)src->n_head_kv * l->sum_cap *
		    ENG_KV_SUM_ROW(src->head_dim_k) * sizeof(uint16_t);
		*d = *l;
		d->k = d->v = NULL;
		size_t cb = (size_t)src->n_head_kv * l->sum_cap *
		    src->block_tokens * ENG_KV_CODE_ROW(src->head_dim_k);
		d->sb = NULL;
		d->cb = NULL;
		if ((l->k && !(d->k = malloc(kb))) ||
		    (l->v && !(d->v = malloc(vb))) ||
		    (l->sb && !(d->sb = malloc(sb))) ||
		    (l->cb && !(d->cb = malloc(cb)))) {
			mem_close(&c->base);
			return ENG_ENOMEM;
		}
		if (l->k)
			memcpy(d->k, l->k, kb);
		if (l->v)
			memcpy(d->v, l->v, vb);
		if (l->sb)
			memcpy(d->sb, l->sb, sb);
		if (l->cb)
			memcpy(d->cb, l->cb, cb);
	}
	*out = &c->base;
	return 0;
}

int eng_kv_mem_summaries(eng_kv *kv, uint32_t block_tokens)
{
	if (!kv || kv->ops != &mem_ops || block_tokens == 0 ||
	    block_tokens > 4096 || kv->n_pos)
		return ENG_EINVAL;
	kv->block_tokens = block_tokens;
	return 0;
}

void eng_kv_close(eng_kv *kv)
{
	if (kv && kv->ops && kv->ops->close)
		kv->ops->close(kv);
}

uint32_t eng_kv_length(const eng_kv *kv)
{
	return kv ? kv->n_pos : 0;
}

int eng_kv_truncate(eng_kv *kv, uint32_t n_pos)
{
	if (!kv || n_pos > kv->n_pos)
		return ENG_EINVAL;
	return kv->ops->commit(kv, n_pos);
}
