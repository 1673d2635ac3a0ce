/* skv.c - a session's KV cache for the engine, kept in memstore (see
 * skv.h for the layout of positions and the ownership rules).
 *
 * Invariants:
 *  - base % B == 0, base <= stored <= n_pos; blocks [0, base/B) are full
 *    and in LMDB; pend holds positions [base, base + pend_n) of every
 *    global layer, pend_n >= n_pos - base.
 *  - ready[b] (acquire/release) says that bk[b]/bv[b] are valid: pointers
 *    into the map of txn (f16 blocks; reset when txn ends) or into dec[b]
 *    (decoded blocks; kept until the decoded cache is trimmed at a
 *    commit).  Only the miss path writes them, under mu.
 *  - n_sum == n_pos / B after every commit: one summary per complete
 *    block.  s0 <= n_blk: blocks [0, s0) have theirs in place in the
 *    map of txn (ps: the session's summary pack, fixed at open; NULL
 *    whenever txn is, found again on the next summary op), blocks
 *    [s0, n_sum) in sb (row b - s0), copied from LMDB at open or made
 *    at commit.  c0 <= n_codes <= n_sum: blocks
 *    [0, n_codes) have their key codes, blocks [0, c0) in place in the
 *    map of txn (pc: the session's summary pack; NULL whenever txn is),
 *    blocks [c0, n_codes) in cb (row b - c0), which is NULL until the
 *    engine first asks for codes (codes_load: they are 3.6 times the
 *    summaries, and only a question past scan_max uses them); a session
 *    stored before codes has none until ms_summary_codes gives them and
 *    it is opened again.
 *  - kept (one slot, under kept.mu) holds what an overlay copied of its
 *    stored blocks (summaries [s0, n_blk), codes [c0, n_blk)) for the
 *    next open of the same session with the same stored KV (n_tokens,
 *    mode and last block key equal; the key names every block before
 *    it): moved in by skv_close of a cache never saved, moved out by
 *    ed_skv_open.
 */
#include "config.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "engramd.h"
#include "memstore.h"
#include "skv.h"

/* Decoded (non-f16) blocks kept at most, bytes; trimmed at commits. */
#define SKV_DECODED_MAX ((size_t)512 << 20)

struct skv_ring {		/* a window layer */
	uint16_t *k, *v;	/* [n_kv][cap][hd] f16 */
	uint32_t cap, lo;	/* slot = pos % cap; oldest position held */
};

struct skv {
	eng_kv base;		/* first: eng_kv * is a struct skv * */
	int64_t id;		/* session */
	uint32_t B, hd, nkv;
	uint32_t window;	/* window of the window layers */
	ms_mode mode;
	uint8_t fp[16];

	uint32_t n_glob, n_loc;
	int32_t *slot;		/* [n_layer]: index among globals or locals */
	uint8_t *is_glob;	/* [n_layer] */
	struct skv_ring *rings;	/* [n_loc] */

	/* Global layers. */
	uint64_t pos_base, stored;
	uint16_t *pk, *pv;	/* [n_glob][n_kv][pcap][hd] f16 */
	uint32_t pcap;
	uint16_t *sb;		/* [n_glob][n_kv][scap - s0][ENG_KV_SUM_ROW]
				 * f16: the summary rows (eng_kv_summary_row)
				 * of blocks s0.. */
	const uint8_t *ps;	/* blocks [0, s0)'s, ps_stride bytes apart
				 * (the pack's records' min/max/mean) */
	size_t ps_stride;
	uint8_t *cb;		/* [n_glob][n_kv][scap - c0][B][code row]:
				 * the keys' codes (eng_kv_code_block) of
				 * blocks c0..; NULL until codes_load */
	const uint8_t *pc;	/* blocks [0, c0)'s, a block's every
				 * layer and head apart (the pack's) */
	int codes_rc;		/* codes_load's failure, kept */
	uint32_t n_sum, scap, s0, n_codes, c0;

	/* Stored blocks [0, base/B): resolved on first use. */
	pthread_mutex_t mu;
	ms_txn *txn;		/* owned; NULL until the first miss */
	uint32_t n_blk, blk_cap;
	_Atomic uint8_t *ready;	/* [blk_cap] */
	const uint16_t **bk, **bv;	/* [blk_cap][n_glob*n_kv] */
	uint16_t **dec;		/* [blk_cap] decoded blocks (owned) */
	size_t dec_bytes;
	int miss_rc;		/* first failure of the miss path */
	uint32_t miss_blk;	/* and the block it failed on */

	/* The session's last block at open; keep: this cache may give its
	 * stored blocks' summaries to the next open (never saved, so stored
	 * is still the length at open). */
	ms_key open_head;
	int keep;
};

/* The copied summaries and codes of a session's stored blocks (those
 * stored after its pack: the pack's are read in place), between one
 * question and the next.  Owned by the slot; a second session's overlay
 * takes the slot over. */
static struct {
	pthread_mutex_t mu;
	int64_t id;
	uint64_t n_tokens;
	ms_key head;
	ms_mode mode;
	uint16_t *sb;		/* blocks [s0, n_blk) */
	uint8_t *cb;		/* blocks [c0, n_blk); NULL unless all */
	uint32_t scap, n_blk, s0, c0;
} kept = { .mu = PTHREAD_MUTEX_INITIALIZER };

/* ------------------------------------------------------------------ */

static size_t prow(const struct skv *s, uint32_t g, uint32_t h, uint64_t r)
{
	return (((size_t)g * s->nkv + h) * s->pcap + r) * s->hd;
}

static int pend_reserve(struct skv *s, uint64_t need)
{
	uint32_t cap = s->pcap ? s->pcap : 1024;
	size_t per;
	uint16_t *nk, *nv;

	if (need <= s->pcap)
		return 0;
	if (need > (1u << 30))
		return ENG_ERANGE;
	while (cap < need)
		cap *= 2;
	per = (size_t)s->n_glob * s->nkv * cap * s->hd;
	nk = malloc(per * 2);
	nv = malloc(per * 2);
	if (!nk || !nv) {
		free(nk);
		free(nv);
		return ENG_ENOMEM;
	}
	for (uint32_t g = 0; g < s->n_glob; g++)
		for (uint32_t h = 0; h < s->nkv && s->pcap; h++) {
			size_t o = ((size_t)g * s->nkv + h) * cap * s->hd;
			memcpy(nk + o, s->pk + prow(s, g, h, 0),
			    (size_t)s->pcap * s->hd * 2);
			memcpy(nv + o, s->pv + prow(s, g, h, 0),
			    (size_t)s->pcap * s->hd * 2);
		}
	free(s->pk);
	free(s->pv);
	s->pk = nk;
	s->pv = nv;
	s->pcap = cap;
	return 0;
}

static int sum_reserve(struct skv *s, uint32_t need)
{
	uint32_t cap = s->scap ? s->scap : 256;
	size_t rows = (size_t)s->n_glob * s->nkv, row = ENG_KV_SUM_ROW(s->hd);
	size_t crow = (size_t)s->B * ENG_KV_CODE_ROW(s->hd);
	uint16_t *nb;
	uint8_t *nc;

	if (need <= s->scap)
		return 0;
	while (cap < need)
		cap *= 2;
	if (!(nb = malloc(rows * (cap - s->s0) * row * sizeof *nb)))
		return ENG_ENOMEM;
	nc = NULL;
	if (s->cb && !(nc = malloc(rows * (cap - s->c0) * crow))) {
		free(nb);
		return ENG_ENOMEM;
	}
	for (size_t r = 0; r < rows && s->n_sum > s->s0; r++) {
		memcpy(nb + r * (cap - s->s0) * row, s->sb + r * (s->scap -
		    s->s0) * row, (size_t)(s->n_sum - s->s0) * row * sizeof *nb);
		if (nc && s->n_codes > s->c0)
			memcpy(nc + r * (cap - s->c0) * crow, s->cb + r *
			    (s->scap - s->c0) * crow, (size_t)(s->n_codes -
			    s->c0) * crow);
	}
	free(s->sb);
	free(s->cb);
	s->sb = nb;
	s->cb = nc;
	s->scap = cap;
	return 0;
}

static int blk_reserve(struct skv *s, uint32_t need)
{
	uint32_t cap = s->blk_cap ? s->blk_cap : 256, per = s->n_glob * s->nkv;

	if (need <= s->blk_cap)
		return 0;
	while (cap < need)
		cap *= 2;
	_Atomic uint8_t *r = realloc((void *)s->ready, cap);
	if (!r)
		return ENG_ENOMEM;
	s->ready = r;
	const uint16_t **bk = realloc(s->bk, (size_t)cap * per * sizeof *bk);
	if (!bk)
		return ENG_ENOMEM;
	s->bk = bk;
	const uint16_t **bv = realloc(s->bv, (size_t)cap * per * sizeof *bv);
	if (!bv)
		return ENG_ENOMEM;
	s->bv = bv;
	uint16_t **dec = realloc(s->dec, (size_t)cap * sizeof *dec);
	if (!dec)
		return ENG_ENOMEM;
	s->dec = dec;
	for (uint32_t b = s->blk_cap; b < cap; b++) {
		atomic_init(&s->ready[b], 0);
		s->dec[b] = NULL;
	}
	s->blk_cap = cap;
	return 0;
}

/* Begins the read transaction the map's pointers live in, if there is
 * none; under mu. */
static int txn_begin(struct skv *s)
{
	ms_store *ms;
	int rc;

	if (s->txn)
		return 0;
	ms = ed_store_lock();
	rc = ms ? ms_read_begin(ms, &s->txn) : MS_EIO;
	ed_store_unlock();
	if (rc)
		s->txn = NULL;
	return rc;
}

/* Ends the read transaction: f16 views die with it. */
static void txn_end(struct skv *s)
{
	if (!s->txn)
		return;
	if (s->mode == MS_MODE_F16)
		for (uint32_t b = 0; b < s->n_blk; b++)
			atomic_store_explicit(&s->ready[b], 0,
			    memory_order_relaxed);
	ed_store_lock();
	ms_read_end(s->txn);
	ed_store_unlock();
	s->txn = NULL;
	s->pc = NULL;
	s->ps = NULL;
}

/* Drops every decoded block (no view may be in flight). */
static void dec_trim(struct skv *s)
{
	for (uint32_t b = 0; b < s->n_blk; b++)
		if (s->dec[b]) {
			free(s->dec[b]);
			s->dec[b] = NULL;
			atomic_store_explicit(&s->ready[b], 0,
			    memory_order_relaxed);
		}
	s->dec_bytes = 0;
}

/* The miss path: finds stored block b and makes bk/bv point at its
 * sections.  Serialized by mu; the store lock is taken for the calls that
 * touch the store itself. */
static int blk_resolve(struct skv *s, uint32_t b)
{
	uint32_t per = s->n_glob * s->nkv;
	ms_block blk;
	int rc = 0;

	pthread_mutex_lock(&s->mu);
	if (atomic_load_explicit(&s->ready[b], memory_order_acquire))
		goto out;
	if ((rc = s->miss_rc))
		goto out;
	if ((rc = txn_begin(s)) ||
	    (rc = ms_session_block(s->txn, s->id, b, &blk)))
		goto fail;
	if (blk.n_tokens != s->B || blk.position != (uint64_t)b * s->B ||
	    blk.geom.n_layers != s->n_glob || blk.geom.n_kv_heads != s->nkv ||
	    blk.geom.head_dim != s->hd) {
		rc = MS_ECORRUPT;
		goto fail;
	}
	if (blk.geom.mode == MS_MODE_F16) {
		for (uint32_t g = 0; g < s->n_glob; g++)
			for (uint32_t h = 0; h < s->nkv; h++) {
				const uint8_t *k, *v;
				if ((rc = ms_block_f16(&blk, g, h, &k, &v)))
					goto fail;
				s->bk[(size_t)b * per + g * s->nkv + h] =
				    (const uint16_t *)(const void *)k;
				s->bv[(size_t)b * per + g * s->nkv + h] =
				    (const uint16_t *)(const void *)v;
			}
	} else {
		size_t sec = (size_t)s->B * s->hd;
		float *fk = malloc(sec * sizeof(float) * 2);
		uint16_t *d = malloc(sec * 2 * per * sizeof(uint16_t));
		if (!fk || !d) {
			free(fk);
			free(d);
			rc = MS_ENOMEM;
			goto fail;
		}
		for (uint32_t g = 0; g < s->n_glob && !rc; g++)
			for (uint32_t h = 0; h < s->nkv && !rc; h++) {
				uint16_t *dk = d + ((size_t)g * s->nkv + h) *
				    2 * sec, *dv = dk + sec;
				if ((rc = ms_block_decode(&blk, g, h, fk,
				    fk + sec)))
					break;
				for (size_t i = 0; i < sec; i++) {
					dk[i] = ms_f16_from_f32(fk[i]);
					dv[i] = ms_f16_from_f32(fk[sec + i]);
				}
				s->bk[(size_t)b * per + g * s->nkv + h] = dk;
				s->bv[(size_t)b * per + g * s->nkv + h] = dv;
			}
		free(fk);
		if (rc) {
			free(d);
			goto fail;
		}
		s->dec[b] = d;
		s->dec_bytes += sec * 2 * per * sizeof(uint16_t);
	}
	atomic_store_explicit(&s->ready[b], 1, memory_order_release);
	goto out;
fail:
	s->miss_rc = rc;
	s->miss_blk = b;
	ed_log(ED_LOG_ERROR, "session %lld: block %u unreadable: %s",
	    (long long)s->id, b, ms_strerror(rc));
out:
	pthread_mutex_unlock(&s->mu);
	return rc ? ENG_EIO : 0;
}

/* ------------------------------------------------------------------ */
/* eng_kv operations                                                  */

static void put_rows(uint16_t *dst, const float *src, uint32_t n)
{
	for (uint32_t i = 0; i < n; i++)
		dst[i] = ms_f16_from_f32(src[i]);
}

static int skv_write(eng_kv *kv, uint32_t layer, uint32_t pos0, uint32_t n,
    const float *k, const float *v)
{
	struct skv *s = (struct skv *)kv;
	uint32_t hd = s->hd, nkv = s->nkv;
	int rc;

	if (layer >= kv->n_layer || !k || !v || !n || pos0 < kv->n_pos ||
	    pos0 > kv->n_ctx || n > kv->n_ctx - pos0)
		return ENG_EINVAL;
	if (!s->is_glob[layer]) {
		struct skv_ring *r = &s->rings[s->slot[layer]];
		if (n > r->cap)
			return ENG_ERANGE;
		for (uint32_t i = 0; i < n; i++) {
			uint32_t sl = (pos0 + i) % r->cap;
			for (uint32_t h = 0; h < nkv; h++) {
				size_t o = ((size_t)h * r->cap + sl) * hd;
				put_rows(r->k + o, k + ((size_t)i * nkv + h) *
				    hd, hd);
				put_rows(r->v + o, v + ((size_t)i * nkv + h) *
				    hd, hd);
			}
		}
		if (pos0 + n > r->cap && pos0 + n - r->cap > r->lo)
			r->lo = pos0 + n - r->cap;
		return 0;
	}
	if ((rc = pend_reserve(s, pos0 + n - s->pos_base)))
		return rc;
	for (uint32_t i = 0; i < n; i++)
		for (uint32_t h = 0; h < nkv; h++) {
			uint64_t r = pos0 + i - s->pos_base;
			uint32_t g = (uint32_t)s->slot[layer];
			put_rows(s->pk + prow(s, g, h, r),
			    k + ((size_t)i * nkv + h) * hd, hd);
			put_rows(s->pv + prow(s, g, h, r),
			    v + ((size_t)i * nkv + h) * hd, hd);
		}
	return 0;
}

static int skv_view(eng_kv *kv, uint32_t layer, uint32_t kvh, uint32_t pos0,
    uint32_t n, eng_kv_span *out)
{
	struct skv *s = (struct skv *)kv;
	size_t stride = (size_t)s->hd * 2;
	int rc;

	if (layer >= kv->n_layer || kvh >= s->nkv || !n || !out)
		return ENG_EINVAL;
	out->k_stride = out->v_stride = stride;
	if (!s->is_glob[layer]) {
		const struct skv_ring *r = &s->rings[s->slot[layer]];
		uint32_t sl = pos0 % r->cap, run = r->cap - sl;
		if (pos0 < r->lo || pos0 >= r->lo + r->cap)
			return ENG_ERANGE;
		out->n = n < run ? n : run;
		out->k = r->k + ((size_t)kvh * r->cap + sl) * s->hd;
		out->v = r->v + ((size_t)kvh * r->cap + sl) * s->hd;
		return 0;
	}
	uint32_t g = (uint32_t)s->slot[layer];
	if (pos0 >= s->pos_base) {
		uint64_t r = pos0 - s->pos_base;
		if (r >= s->pcap)
			return ENG_ERANGE;
		out->n = n < s->pcap - r ? n : (uint32_t)(s->pcap - r);
		out->k = s->pk + prow(s, g, kvh, r);
		out->v = s->pv + prow(s, g, kvh, r);
		return 0;
	}
	uint32_t b = pos0 / s->B, off = pos0 % s->B, run = s->B - off;
	if (b >= s->n_blk)
		return ENG_ERANGE;
	if (!atomic_load_explicit(&s->ready[b], memory_order_acquire) &&
	    (rc = blk_resolve(s, b)))
		return rc;
	size_t i = (size_t)b * s->n_glob * s->nkv + g * s->nkv + kvh;
	out->n = n < run ? n : run;
	out->k = s->bk[i] + (size_t)off * s->hd;
	out->v = s->bv[i] + (size_t)off * s->hd;
	return 0;
}

/* Asks for the stored blocks under positions pos0..pos0+n-1 that are not
 * resolved yet (their pages, read by the kernel in parallel; blk_resolve
 * then finds them in memory). */
static void skv_prefetch(eng_kv *kv, uint32_t layer, uint32_t kvh,
    uint32_t pos0, uint32_t n)
{
	struct skv *s = (struct skv *)kv;
	(void)kvh;

	if (layer >= kv->n_layer || !s->is_glob[layer] || !n ||
	    pos0 >= s->pos_base)
		return;
	uint64_t end = (uint64_t)pos0 + n;
	if (end > s->pos_base)
		end = s->pos_base;
	uint32_t b1 = (uint32_t)((end - 1) / s->B);
	pthread_mutex_lock(&s->mu);
	if (!s->miss_rc)
		(void)txn_begin(s);	/* a hint: none without it */
	for (uint32_t b = pos0 / s->B; s->txn && b <= b1 && b < s->n_blk; b++)
		if (!atomic_load_explicit(&s->ready[b], memory_order_acquire))
			(void)ms_session_block_willneed(s->txn, s->id, b);
	pthread_mutex_unlock(&s->mu);
}

/* Points ps at the summaries of blocks [0, s0) in the session's pack,
 * in the map of txn (begun if need be): after a save ended the
 * transaction.  The pack may have been written again meanwhile (a
 * prefill's end), with the same records first; one that no longer holds
 * s0 of them means the stored session changed under the cache. */
static int sums_map(struct skv *s)
{
	const uint8_t *p = NULL;
	size_t st = 0;
	uint64_t np = 0;
	int rc;

	pthread_mutex_lock(&s->mu);
	if (!(rc = txn_begin(s)))
		rc = ms_summary_pack_vectors(s->txn, s->id, s->n_glob, s->nkv,
		    s->hd, &p, &st, &np);
	pthread_mutex_unlock(&s->mu);
	if (rc)
		return ENG_EIO;
	if (np < s->s0 || st != s->ps_stride || ((uintptr_t)p & 1)) {
		ed_log(ED_LOG_ERROR, "session %lld: its summary pack changed "
		    "under a question", (long long)s->id);
		return ENG_EIO;
	}
	s->ps = p;
	return 0;
}

static int skv_summary(eng_kv *kv, uint32_t layer, uint32_t kvh,
    eng_kv_runs *sums)
{
	struct skv *s = (struct skv *)kv;
	size_t row = ENG_KV_SUM_ROW(s->hd);
	int rc;

	if (layer >= kv->n_layer || !s->is_glob[layer] || kvh >= s->nkv ||
	    !sums)
		return ENG_EINVAL;
	if (s->s0 && !s->ps && (rc = sums_map(s)))
		return rc;
	size_t r = (size_t)s->slot[layer] * s->nkv + kvh;
	*sums = (eng_kv_runs){
		.lo = s->s0 ? s->ps + r * row * 2 : NULL,
		.lo_stride = s->ps_stride, .n_lo = s->s0,
		.hi = s->sb ? (const uint8_t *)(s->sb + r * (s->scap - s->s0) *
		    row) : NULL,
		.hi_stride = row * 2, .n = s->n_sum };
	return 0;
}

static int codes_load(struct skv *s);
static int codes_map(struct skv *s, uint32_t *n);

static int skv_codes(eng_kv *kv, uint32_t layer, uint32_t kvh,
    eng_kv_runs *codes)
{
	struct skv *s = (struct skv *)kv;
	size_t cblock = (size_t)s->B * ENG_KV_CODE_ROW(s->hd);
	uint32_t n;
	int rc;

	if (layer >= kv->n_layer || !s->is_glob[layer] || kvh >= s->nkv ||
	    !codes)
		return ENG_EINVAL;
	/* In place again after a save ended the transaction, or with a
	 * kept slot's; if the pack changed meanwhile, read them anew. */
	if (s->cb && s->c0 && !s->pc &&
	    ((rc = codes_map(s, &n)) || n != s->c0)) {
		free(s->cb);
		s->cb = NULL;
		s->n_codes = s->c0 = 0;
	}
	if (!s->cb && (rc = codes_load(s)))
		return rc;
	size_t r = (size_t)s->slot[layer] * s->nkv + kvh;
	*codes = (eng_kv_runs){
		.lo = s->c0 ? s->pc + r * cblock : NULL,
		.lo_stride = (size_t)s->n_glob * s->nkv * cblock, .n_lo = s->c0,
		.hi = s->cb ? s->cb + r * (s->scap - s->c0) * cblock : NULL,
		.hi_stride = cblock, .n = s->cb ? s->n_codes : 0 };
	return 0;
}

/* The codes of block b >= c0 of (global slot g, head h). */
static uint8_t *code_blk(struct skv *s, uint32_t g, uint32_t h, uint32_t b)
{
	return s->cb + (((size_t)g * s->nkv + h) * (s->scap - s->c0) + b -
	    s->c0) * s->B * ENG_KV_CODE_ROW(s->hd);
}

/* The summary row of block b >= s0 of (global slot g, head h). */
static uint16_t *sum_row(struct skv *s, uint32_t g, uint32_t h, uint32_t b)
{
	return s->sb + (((size_t)g * s->nkv + h) * (s->scap - s->s0) + b -
	    s->s0) * ENG_KV_SUM_ROW(s->hd);
}

/* Block b's keys of (global slot g, head h) from pend, as f32. */
static void pend_keys(struct skv *s, uint32_t g, uint32_t h, uint32_t b,
    float *kf)
{
	uint64_t r0 = (uint64_t)b * s->B - s->pos_base;
	for (uint32_t t = 0; t < s->B; t++) {
		const uint16_t *row = s->pk + prow(s, g, h, r0 + t);
		for (uint32_t c = 0; c < s->hd; c++)
			kf[(size_t)t * s->hd + c] = ms_f16_to_f32(row[c]);
	}
}

/* Summaries (and codes, once loaded) of the complete blocks below n_pos
 * that live in pend. */
static int summarize(struct skv *s, uint64_t n_pos)
{
	uint32_t want = (uint32_t)(n_pos / s->B);
	float *kf;
	int rc;

	if ((rc = sum_reserve(s, want)))
		return rc;
	if (s->n_sum >= want)
		return 0;
	if (!(kf = malloc((size_t)s->B * s->hd * sizeof *kf)))
		return ENG_ENOMEM;
	for (; s->n_sum < want; s->n_sum++) {
		for (uint32_t g = 0; g < s->n_glob; g++)
			for (uint32_t h = 0; h < s->nkv; h++) {
				pend_keys(s, g, h, s->n_sum, kf);
				/* The row memstore's record will give. */
				eng_kv_summarize_block(sum_row(s, g, h,
				    s->n_sum), kf, s->B, s->hd);
				if (s->cb)
					eng_kv_code_block(code_blk(s, g, h,
					    s->n_sum), kf, s->B, s->hd);
			}
		if (s->cb && s->n_codes == s->n_sum)
			s->n_codes++;
	}
	free(kf);
	return 0;
}

/* The stored blocks' codes, while each has them (from block 0). */
static int codes_fn(void *arg, const ms_summary *sm)
{
	struct skv *s = arg;
	size_t cb = (size_t)s->B * ENG_KV_CODE_ROW(s->hd);

	if (sm->index != s->n_codes || sm->index >= s->n_blk || !sm->codes ||
	    sm->n_tokens != s->B || sm->n_layers != s->n_glob ||
	    sm->n_kv_heads != s->nkv || sm->head_dim != s->hd)
		return 1;
	for (uint32_t g = 0; g < s->n_glob; g++)
		for (uint32_t h = 0; h < s->nkv; h++)
			memcpy(code_blk(s, g, h, s->n_codes), sm->codes +
			    ((size_t)g * s->nkv + h) * cb, cb);
	s->n_codes++;
	return 0;
}

/* Points pc at the codes of the stored blocks that the session's pack
 * holds, in the map of txn (begun if need be); *n of them (0: none, or
 * not of this geometry). */
static int codes_map(struct skv *s, uint32_t *n)
{
	size_t stride = (size_t)s->n_glob * s->nkv * s->B *
	    ENG_KV_CODE_ROW(s->hd);
	const uint8_t *p = NULL;
	size_t st = 0;
	uint64_t np = 0;
	int rc = 0;

	pthread_mutex_lock(&s->mu);
	if (!(rc = txn_begin(s)) && s->n_blk)
		rc = ms_summary_pack_codes(s->txn, s->id, &p, &st, &np);
	pthread_mutex_unlock(&s->mu);
	if (rc || st != stride)
		np = 0;
	*n = (uint32_t)(np < s->n_blk ? np : s->n_blk);
	s->pc = *n ? p : NULL;
	return rc;
}

/* Points at the codes of the stored blocks in the session's pack, copies
 * those of stored blocks after it (memstore's, with the summaries) and
 * makes those of the blocks in pend, on the engine's first call of the
 * codes op: a question past scan_max.  A failure is kept and given to
 * every later call. */
static int codes_load(struct skv *s)
{
	size_t rows = (size_t)s->n_glob * s->nkv;
	size_t crow = (size_t)s->B * ENG_KV_CODE_ROW(s->hd);
	float *kf = NULL;
	uint32_t c0;
	int rc;

	if (s->codes_rc)
		return s->codes_rc;
	if ((rc = codes_map(s, &c0)))
		return s->codes_rc = rc;
	s->c0 = s->n_codes = c0;
	if (!(s->cb = malloc(rows * (s->scap - c0) * crow)))
		return s->codes_rc = ENG_ENOMEM;
	pthread_mutex_lock(&s->mu);
	if (s->n_codes < s->n_blk &&
	    (rc = ms_summary_scan(s->txn, s->id, s->n_codes, 1, codes_fn,
	    s)) > 0)
		rc = 0;		/* stopped at the first block without */
	pthread_mutex_unlock(&s->mu);
	if (!rc && s->n_codes == s->n_blk && s->n_sum > s->n_blk) {
		if (!(kf = malloc((size_t)s->B * s->hd * sizeof *kf)))
			rc = ENG_ENOMEM;
		for (; !rc && s->n_codes < s->n_sum; s->n_codes++)
			for (uint32_t g = 0; g < s->n_glob; g++)
				for (uint32_t h = 0; h < s->nkv; h++) {
					pend_keys(s, g, h, s->n_codes, kf);
					eng_kv_code_block(code_blk(s, g, h,
					    s->n_codes), kf, s->B, s->hd);
				}
		free(kf);
	}
	if (rc) {
		free(s->cb);
		s->cb = NULL;
		s->n_codes = s->c0 = 0;
		s->pc = NULL;
		s->codes_rc = rc;
	}
	return rc;
}

/* Reads a page of every 4096 bytes of [p, p + n). */
static void touch(const uint8_t *p, size_t n)
{
	volatile uint8_t sink = 0;

	for (size_t o = 0; o < n; o += 4096)
		sink ^= p[o];
	(void)sink;
}

int ed_skv_warm(eng_kv *kv, int codes)
{
	struct skv *s = (struct skv *)kv;
	eng_kv_runs c;
	int rc;

	if (s->s0 && !s->ps && (rc = sums_map(s)))
		return rc;
	if (s->ps)
		touch(s->ps, (size_t)s->s0 * s->ps_stride);
	for (uint32_t l = 0; codes && l < kv->n_layer; l++)
		if (s->is_glob[l]) {
			if ((rc = skv_codes(kv, l, 0, &c)))
				return rc;
			break;
		}
	if (codes && s->pc)
		touch(s->pc, (size_t)s->c0 * s->n_glob * s->nkv * s->B *
		    ENG_KV_CODE_ROW(s->hd));
	return 0;
}

static int skv_commit(eng_kv *kv, uint32_t n_pos)
{
	struct skv *s = (struct skv *)kv;
	int rc;

	if (n_pos > kv->n_ctx)
		return ENG_ERANGE;
	if (n_pos < kv->n_pos) {
		/* Back within memory only: pend, and rings still holding the
		 * window behind the new end. */
		if (n_pos < s->stored)
			return ENG_ERANGE;
		for (uint32_t i = 0; i < s->n_loc; i++)
			if (s->rings[i].lo > (n_pos >= s->window ?
			    n_pos - s->window + 1 : 0))
				return ENG_ERANGE;
		if (s->n_sum > n_pos / s->B)
			s->n_sum = n_pos / s->B;
		if (s->n_codes > s->n_sum)
			s->n_codes = s->n_sum;
	} else if ((rc = summarize(s, n_pos))) {
		return rc;
	}
	kv->n_pos = n_pos;
	if (s->dec_bytes > SKV_DECODED_MAX)
		dec_trim(s);
	return 0;
}

static void kept_clear(void)
{
	free(kept.sb);
	free(kept.cb);
	kept.sb = NULL;
	kept.cb = NULL;
	kept.id = 0;
}

/* s's stored blocks' summaries (and codes, if it has them all) into the
 * slot, in place of what it held; s keeps none of them. */
static void kept_put(struct skv *s)
{
	pthread_mutex_lock(&kept.mu);
	kept_clear();
	kept.id = s->id;
	kept.n_tokens = s->stored;
	kept.head = s->open_head;
	kept.mode = s->mode;
	kept.sb = s->sb;
	kept.scap = s->scap;
	kept.n_blk = s->n_blk;
	kept.s0 = s->s0;
	if (s->cb && s->n_codes >= s->n_blk) {
		kept.cb = s->cb;
		kept.c0 = s->c0;
		s->cb = NULL;
	}
	s->sb = NULL;
	pthread_mutex_unlock(&kept.mu);
}

/* Takes the slot's summaries (and codes) when they are those of s's
 * session at si's length and last block, and s reads as many from the
 * pack; 1 if so. */
static int kept_take(struct skv *s, const ms_session_info *si)
{
	int hit;

	pthread_mutex_lock(&kept.mu);
	hit = kept.sb && kept.id == s->id && kept.n_tokens == si->n_tokens &&
	    !memcmp(kept.head.b, si->head.b, sizeof kept.head.b) &&
	    kept.mode == s->mode && kept.n_blk == s->n_blk &&
	    kept.s0 == s->s0;
	if (hit) {
		free(s->sb);
		free(s->cb);
		s->sb = kept.sb;
		s->cb = kept.cb;
		s->scap = kept.scap;
		s->n_sum = s->n_codes = kept.n_blk;
		s->c0 = kept.c0;	/* in place once a txn gives them */
		s->pc = NULL;
		if (!s->cb)
			s->n_codes = s->c0 = 0;
		kept.sb = NULL;
		kept.cb = NULL;
		kept.id = 0;
	}
	pthread_mutex_unlock(&kept.mu);
	return hit;
}

void ed_skv_forget(void)
{
	pthread_mutex_lock(&kept.mu);
	kept_clear();
	pthread_mutex_unlock(&kept.mu);
}

static void skv_close(eng_kv *kv)
{
	struct skv *s = (struct skv *)kv;

	if (!s)
		return;
	txn_end(s);
	if (s->dec)
		for (uint32_t b = 0; b < s->blk_cap; b++)
			free(s->dec[b]);
	free(s->dec);
	free((void *)s->ready);
	free(s->bk);
	free(s->bv);
	if (s->rings)
		for (uint32_t i = 0; i < s->n_loc; i++) {
			free(s->rings[i].k);
			free(s->rings[i].v);
		}
	free(s->rings);
	free(s->slot);
	free(s->is_glob);
	free(s->pk);
	free(s->pv);
	if (s->keep)
		kept_put(s);
	free(s->sb);
	free(s->cb);
	pthread_mutex_destroy(&s->mu);
	free(s);
}

uint32_t ed_skv_scan_max(const eng_kv *kv)
{
	const struct skv *s = (const struct skv *)kv;
	size_t per_pos = (size_t)s->n_glob * s->nkv * s->hd * 2 *
	    sizeof(uint16_t);

	if (s->mode == MS_MODE_F16 || !per_pos)
		return UINT32_MAX;
	return (uint32_t)(SKV_DECODED_MAX / per_pos);
}

static const eng_kv_ops skv_ops = {
	.write = skv_write,
	.view = skv_view,
	.summary = skv_summary,
	.codes = skv_codes,
	.prefetch = skv_prefetch,
	.commit = skv_commit,
	.close = skv_close,
};

/* ------------------------------------------------------------------ */
/* Open: head, tail, partial last block, summaries                    */

struct sum_load {
	struct skv *s;
	uint32_t want;
	int rc;
};

static int sum_load_fn(void *arg, const ms_summary *sm)
{
	struct sum_load *L = arg;
	struct skv *s = L->s;

	if (sm->index >= L->want)
		return 1;
	if (sm->index != s->n_sum || sm->n_layers != s->n_glob ||
	    sm->n_kv_heads != s->nkv || sm->head_dim != s->hd) {
		L->rc = MS_ECORRUPT;
		return 1;
	}
	/* The record's min/max/mean are the engine's row (engine.h). */
	for (uint32_t g = 0; g < s->n_glob; g++)
		for (uint32_t h = 0; h < s->nkv; h++)
			memcpy(sum_row(s, g, h, s->n_sum), sm->data +
			    ((size_t)g * s->nkv + h) * ENG_KV_SUM_ROW(s->hd) *
			    2, ENG_KV_SUM_ROW(s->hd) * 2);
	s->n_sum++;
	return 0;
}

/* Decodes stored block idx (partial, the last) into pend row 0.. */
static int partial_to_pend(struct skv *s, ms_txn *txn, uint64_t idx)
{
	ms_block pb;
	float *buf;
	int rc;

	if ((rc = ms_session_block(txn, s->id, idx, &pb)))
		return rc;
	size_t sec = (size_t)pb.n_tokens * s->hd;
	if ((rc = pend_reserve(s, s->B)))
		return rc;
	if (!(buf = malloc(sec * 2 * sizeof(float))))
		return MS_ENOMEM;
	for (uint32_t g = 0; g < s->n_glob && !rc; g++)
		for (uint32_t h = 0; h < s->nkv && !rc; h++) {
			if ((rc = ms_block_decode(&pb, g, h, buf, buf + sec)))
				break;
			for (uint32_t t = 0; t < pb.n_tokens; t++) {
				put_rows(s->pk + prow(s, g, h, t),
				    buf + (size_t)t * s->hd, s->hd);
				put_rows(s->pv + prow(s, g, h, t),
				    buf + sec + (size_t)t * s->hd, s->hd);
			}
		}
	free(buf);
	return rc;
}

static int reload_partial(struct skv *s, char *err, size_t errlen)
{
	ms_txn *txn = NULL;
	ms_store *ms = ed_store_lock();
	int rc = ms ? ms_read_begin(ms, &txn) : MS_EIO;
	ed_store_unlock();
	if (rc == 0)
		rc = partial_to_pend(s, txn, s->stored / s->B);
	if (txn) {
		ed_store_lock();
		ms_read_end(txn);
		ed_store_unlock();
	}
	if (rc)
		snprintf(err, errlen, "cannot read back the session's last "
		    "block: %s", ms_strerror(rc));
	return rc;
}

/* What a user can do about a damaged session (ms_block_parse refused a
 * record): find the rest, and make it again; a block shared with other
 * sessions is written again when computed (block_ref_or_put). */
#define SKV_REPAIR "`engramctl store check --deep` checks the whole " \
	"store; `engramctl session rm`, ingest and `prefill --no-reuse` " \
	"make it again"

/* Loads the window layers' tail (positions [pos, pos+n)) into the rings
 * and the partial last block into pend. */
static int load_tail(struct skv *s, ms_txn *txn, uint64_t n_tokens,
    char *err, size_t errlen)
{
	ms_block tb;
	float *buf = NULL;
	int rc;

	if (s->n_loc) {
		if ((rc = ms_tail_get(txn, s->id, &tb)) == MS_ECORRUPT) {
			snprintf(err, errlen, "the stored session is damaged: "
			    "its window tail (the window layers' last "
			    "positions) cannot be read (%s); " SKV_REPAIR,
			    ms_strerror(rc));
			return rc;
		}
		if (rc) {
			snprintf(err, errlen, "the session's KV (%llu tokens) "
			    "has no window tail: %s", (unsigned long long)
			    n_tokens, ms_strerror(rc));
			return rc;
		}
		if (tb.position + tb.n_tokens != n_tokens ||
		    tb.geom.n_layers != s->n_loc || tb.geom.n_kv_heads !=
		    s->nkv || tb.geom.head_dim != s->hd ||
		    (tb.n_tokens < s->window - 1 && tb.position != 0) ||
		    tb.n_tokens > s->rings[0].cap) {
			snprintf(err, errlen, "the session's window tail does "
			    "not match its KV");
			return MS_ECORRUPT;
		}
		size_t sec = (size_t)tb.n_tokens * s->hd;
		if (!(buf = malloc(sec * 2 * sizeof(float))))
			return MS_ENOMEM;
		for (uint32_t i = 0; i < s->n_loc; i++)
			for (uint32_t h = 0; h < s->nkv; h++) {
				struct skv_ring *r = &s->rings[i];
				if ((rc = ms_block_decode(&tb, i, h, buf,
				    buf + sec)))
					goto out;
				for (uint32_t t = 0; t < tb.n_tokens; t++) {
					uint64_t p = tb.position + t;
					size_t o = ((size_t)h * r->cap +
					    p % r->cap) * s->hd;
					put_rows(r->k + o, buf + (size_t)t *
					    s->hd, s->hd);
					put_rows(r->v + o, buf + sec +
					    (size_t)t * s->hd, s->hd);
				}
				r->lo = (uint32_t)tb.position;
			}
		free(buf);
		buf = NULL;
	}
	if (n_tokens % s->B && (rc = partial_to_pend(s, txn, n_tokens / s->B)))
		goto out;
	rc = 0;
out:
	free(buf);
	return rc;
}

static int skv_init(struct skv *s, const eng_model *m, uint32_t n_batch)
{
	const eng_hparams *hp = eng_model_hparams(m);

	s->base.ops = &skv_ops;
	s->base.type = ENG_TYPE_F16;
	s->base.n_layer = hp->n_layer;
	s->base.n_head_kv = hp->n_head_kv;
	s->base.head_dim_k = hp->head_dim_k;
	s->base.head_dim_v = hp->head_dim_v;
	s->base.n_ctx = 1u << 31;
	s->hd = hp->head_dim_k;
	s->nkv = hp->n_head_kv;
	s->window = hp->sliding_window;
	if (!(s->slot = calloc(hp->n_layer, sizeof *s->slot)) ||
	    !(s->is_glob = calloc(hp->n_layer, 1)))
		return MS_ENOMEM;
	for (uint32_t il = 0; il < hp->n_layer; il++) {
		int glob = eng_hparams_layer_global(hp, il);
		s->is_glob[il] = (uint8_t)glob;
		s->slot[il] = glob ? (int32_t)s->n_glob++ :
		    (int32_t)s->n_loc++;
	}
	if (s->n_loc && !(s->rings = calloc(s->n_loc, sizeof *s->rings)))
		return MS_ENOMEM;
	for (uint32_t i = 0; i < s->n_loc; i++) {
		struct skv_ring *r = &s->rings[i];
		r->cap = s->window + n_batch;
		r->k = calloc((size_t)s->nkv * r->cap * s->hd, 2);
		r->v = calloc((size_t)s->nkv * r->cap * s->hd, 2);
		if (!r->k || !r->v)
			return MS_ENOMEM;
	}
	return 0;
}

int ed_skv_open(int64_t id, const eng_model *m, uint32_t n_batch,
    eng_kv **out, char *err, size_t errlen)
{
	const eng_hparams *hp;
	ms_session_info si;
	ms_store *ms;
	ms_txn *txn = NULL;
	struct skv *s;
	int rc;

	*out = NULL;
	if (!m || !n_batch)
		return MS_EINVAL;
	hp = eng_model_hparams(m);
	if (hp->head_dim_k != hp->head_dim_v ||
	    hp->head_dim_k > ENG_KV_HD_MAX) {
		snprintf(err, errlen, "sessions need equal key and value "
		    "head sizes of at most %d", ENG_KV_HD_MAX);
		return MS_EMISMATCH;
	}
	if (!(s = calloc(1, sizeof *s)))
		return MS_ENOMEM;
	pthread_mutex_init(&s->mu, NULL);
	s->id = id;
	if ((rc = skv_init(s, m, n_batch)))
		goto fail;
	{
		const char *hex = eng_model_info_get(m)->fingerprint;
		for (int i = 0; i < 16; i++)
			sscanf(hex + 2 * i, "%2hhx", &s->fp[i]);
	}
	ms = ed_store_lock();
	rc = ms ? ms_read_begin(ms, &txn) : MS_EIO;
	ed_store_unlock();
	if (rc)
		goto fail;
	if ((rc = ms_session_head(txn, id, &si)))
		goto fail;
	if (memcmp(si.fingerprint, s->fp, 16) || si.geom.n_layers !=
	    s->n_glob || si.geom.n_kv_heads != s->nkv ||
	    si.geom.head_dim != s->hd) {
		snprintf(err, errlen, "the session was made with another "
		    "model or geometry");
		rc = MS_EMISMATCH;
		goto fail;
	}
	s->B = si.geom.block_tokens;
	s->mode = si.geom.mode;
	s->base.block_tokens = s->B;
	s->stored = si.n_tokens;
	s->pos_base = si.n_tokens / s->B * s->B;
	s->n_blk = (uint32_t)(s->pos_base / s->B);
	s->open_head = si.head;
	{
		/* The pack's summaries are read in place (sums_map). */
		const uint8_t *p;
		uint64_t np;
		if ((rc = ms_summary_pack_vectors(txn, id, s->n_glob, s->nkv,
		    s->hd, &p, &s->ps_stride, &np)))
			goto fail;
		s->s0 = (uint32_t)(np < s->n_blk ? np : s->n_blk);
		if (((uintptr_t)p | s->ps_stride) & 1)
			s->s0 = 0;	/* never so: rows of f16 */
		s->n_sum = s->s0;
	}
	(void)kept_take(s, &si);	/* else the summaries are read below */
	if ((rc = blk_reserve(s, s->n_blk + 1)) ||
	    (rc = sum_reserve(s, s->n_blk + 1)))
		goto fail;
	if (si.n_tokens && (rc = load_tail(s, txn, si.n_tokens, err, errlen)))
		goto fail;
	if (s->n_sum != s->n_blk) {
		struct sum_load L = { s, s->n_blk, 0 };
		if ((rc = ms_summary_scan(txn, id, s->s0, 0, sum_load_fn,
		    &L)) < 0 ||
		    (rc = L.rc))
			goto fail;
		if (s->n_sum != s->n_blk) {
			snprintf(err, errlen, "the session has %u block "
			    "summaries for %u blocks", s->n_sum, s->n_blk);
			rc = MS_ECORRUPT;
			goto fail;
		}
	}
	s->base.n_pos = (uint32_t)si.n_tokens;
	s->keep = 1;
	ed_store_lock();
	ms_read_end(txn);
	ed_store_unlock();
	*out = &s->base;
	return 0;
fail:
	if (txn) {
		ed_store_lock();
		ms_read_end(txn);
		ed_store_unlock();
	}
	if (!*err)
		snprintf(err, errlen, "cannot open the session's KV: %s",
		    ms_strerror(rc));
	skv_close(&s->base);
	return rc;
}

/* ------------------------------------------------------------------ */
/* Save                                                               */

uint64_t ed_skv_stored(const eng_kv *kv)
{
	return kv ? ((const struct skv *)kv)->stored : 0;
}

/* ms_session_commit's arguments, for ed_store_write. */
struct save_arg {
	int64_t id;
	uint64_t from;
	const uint32_t *ids;
	uint64_t n;
	const float *k, *v;
	const ms_tail *tail;
};

static int save_fn(ms_store *ms, void *arg)
{
	struct save_arg *a = arg;
	return ms_session_commit(ms, a->id, a->from, a->ids, a->n, a->k, a->v,
	    a->tail, NULL);
}

int ed_skv_save(eng_kv *kv, const int32_t *tokens, uint64_t first,
    int checkpoint, char *err, size_t errlen)
{
	struct skv *s = (struct skv *)kv;
	uint64_t n_pos = kv->n_pos, from = s->pos_base;
	uint64_t n = n_pos - from, t0;
	uint32_t *ids = NULL;
	float *k = NULL, *v = NULL, *tk = NULL, *tv = NULL;
	ms_tail tail, *tp = NULL;
	int rc = MS_ENOMEM;

	*err = 0;
	/* The ids must reach back to the first new block and to the start
	 * of the window tail. */
	if (first > from || !tokens || (s->n_loc && first > n_pos -
	    (n_pos < s->window ? n_pos : s->window)))
		return MS_EINVAL;
	if (n_pos == s->stored)
		return 0;
	s->keep = 0;		/* what it read at open is no longer the truth */
	if (n > MS_APPEND_MAX_TOKENS) {
		snprintf(err, errlen, "%llu unsaved positions: save more often",
		    (unsigned long long)n);
		return MS_ERANGE;
	}
	size_t sec = (size_t)n * s->hd, per = (size_t)s->n_glob * s->nkv;
	ids = malloc((n ? n : 1) * sizeof *ids);
	k = malloc((sec ? sec : 1) * per * sizeof(float));
	v = malloc((sec ? sec : 1) * per * sizeof(float));
	if (!ids || !k || !v)
		goto out;
	for (uint64_t i = 0; i < n; i++)
		ids[i] = (uint32_t)tokens[from - first + i];
	/* [layer][head][token][hd] as memstore takes them. */
	for (uint32_t g = 0; g < s->n_glob; g++)
		for (uint32_t h = 0; h < s->nkv; h++)
			for (size_t i = 0; i < sec; i++) {
				size_t o = ((size_t)g * s->nkv + h) * sec + i;
				k[o] = ms_f16_to_f32(s->pk[prow(s, g, h, 0) + i]);
				v[o] = ms_f16_to_f32(s->pv[prow(s, g, h, 0) + i]);
			}
	if (s->n_loc) {
		/* The window layers' last positions: enough for the next
		 * step's first query. */
		uint32_t tn = n_pos < s->window ? (uint32_t)n_pos : s->window;
		size_t tsec = (size_t)tn * s->hd;
		t0 = n_pos - tn;
		tk = malloc((tsec ? tsec : 1) * s->n_loc * s->nkv *
		    sizeof(float));
		tv = malloc((tsec ? tsec : 1) * s->n_loc * s->nkv *
		    sizeof(float));
		uint32_t *tt = malloc((tn ? tn : 1) * sizeof *tt);
		if (!tk || !tv || !tt) {
			free(tt);
			goto out;
		}
		for (uint32_t i = 0; i < s->n_loc; i++) {
			struct skv_ring *r = &s->rings[i];
			if (t0 < r->lo) {
				free(tt);
				rc = MS_ESTATE;
				goto out;
			}
			for (uint32_t h = 0; h < s->nkv; h++)
				for (uint32_t t = 0; t < tn; t++) {
					size_t src = ((size_t)h * r->cap +
					    (t0 + t) % r->cap) * s->hd;
					size_t dst = (((size_t)i * s->nkv + h) *
					    tn + t) * s->hd;
					for (uint32_t c = 0; c < s->hd; c++) {
						tk[dst + c] = ms_f16_to_f32(
						    r->k[src + c]);
						tv[dst + c] = ms_f16_to_f32(
						    r->v[src + c]);
					}
				}
		}
		for (uint32_t t = 0; t < tn; t++)
			tt[t] = (uint32_t)tokens[t0 + t - first];
		tail = (ms_tail){
			.geom = { .n_layers = s->n_loc, .n_kv_heads = s->nkv,
			    .head_dim = s->hd, .block_tokens = s->B,
			    .mode = MS_MODE_F16 },
			.position = t0, .tokens = tt, .n_tokens = tn,
			.k = tk, .v = tv, .checkpoint = checkpoint && n_pos,
		};
		tp = &tail;
	} else if (checkpoint && n_pos > first) {
		/* No window layers: the blocks alone are the state, so the
		 * checkpoint only marks the prefix (its last token, no KV
		 * worth the name), for ms_session_adopt and _rewind. */
		static const float zero[2];
		uint32_t *tt = malloc(sizeof *tt);
		if (!tt)
			goto out;
		*tt = (uint32_t)tokens[n_pos - 1 - first];
		tail = (ms_tail){
			.geom = { .n_layers = 1, .n_kv_heads = 1, .head_dim = 2,
			    .block_tokens = s->B, .mode = MS_MODE_F16 },
			.position = n_pos - 1, .tokens = tt, .n_tokens = 1,
			.k = zero, .v = zero, .checkpoint = 1,
		};
		tp = &tail;
	}
	/* The map may have to grow, which waits for every read transaction
	 * to end: ours now, a question's within seconds (ed_store_write). */
	txn_end(s);
	{
		struct save_arg sa = { s->id, from, ids, n, k, v, tp };
		char msg[384];
		if ((rc = ed_store_write(save_fn, &sa, msg, sizeof(msg))))
			snprintf(err, errlen, "cannot save the session's KV: "
			    "%s", msg);
	}
	if (tp)
		free((void *)tp->tokens);
	if (rc)
		goto out;
	s->stored = n_pos;
	/* Full blocks move from pend to the store. */
	{
		uint64_t nb = n_pos / s->B * s->B, drop = nb - from;
		if ((rc = blk_reserve(s, (uint32_t)(nb / s->B) + 1)))
			goto out;
		for (uint32_t g = 0; g < s->n_glob && drop; g++)
			for (uint32_t h = 0; h < s->nkv; h++) {
				memmove(s->pk + prow(s, g, h, 0), s->pk +
				    prow(s, g, h, drop), (size_t)(n_pos - nb) *
				    s->hd * 2);
				memmove(s->pv + prow(s, g, h, 0), s->pv +
				    prow(s, g, h, drop), (size_t)(n_pos - nb) *
				    s->hd * 2);
			}
		s->pos_base = nb;
		s->n_blk = (uint32_t)(nb / s->B);
	}
	/* What later steps read must be what a reopen reads: a lossy
	 * encoding's partial block is read back from the store. */
	if (s->mode != MS_MODE_F16 && n_pos % s->B &&
	    (rc = reload_partial(s, err, errlen)))
		goto out;
	rc = 0;
out:
	free(ids);
	free(k);
	free(v);
	free(tk);
	free(tv);
	return rc;
}

int ed_skv_failure(const eng_kv *kv, char *buf, size_t n)
{
	const struct skv *s = (const struct skv *)kv;

	if (!s || !s->miss_rc)
		return 0;
	snprintf(buf, n, "the stored session is damaged: its block %u (tokens "
	    "%llu to %llu) cannot be read (%s); " SKV_REPAIR, s->miss_blk,
	    (unsigned long long)s->miss_blk * s->B,
	    (unsigned long long)(s->miss_blk + 1) * s->B - 1,
	    ms_strerror(s->miss_rc));
	return s->miss_rc;
}
