/* summary.c - a session's block summaries read back: one sequential scan
 * (from the session's pack as far as it goes), the pack written at a
 * prefill's end and read in place, and codes given to records written
 * before them.  Record and pack layouts: the top of memstore.h; their
 * structs: ms_internal.h.
 *
 * Invariants: a pack is used only while its last record still equals the
 * session's summary of that block (pack_find), so a pack never hands out
 * another prefix's summaries; every record of a pack is as long as the
 * first, heads before codes; passes over every record trim the map as
 * they go (ms__scan_trim), so their RSS stays bounded at any length;
 * nothing here allocates what outlives a call (views are the map's,
 * valid while their transaction is). */
#include "config.h"
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include "ms_internal.h"

/* Block index i's summary, with codes, made again from the block named
 * key (the same bits for an f16 block: its keys decode to the floats the
 * summary was made from; a quantized block's decode to near them) and put
 * at dst.  *kf (*kf_cap floats) is the caller's scratch for the keys. */
int ms__summary_remake(ms_store *ms, MDB_txn *txn, const ms_key *key,
		       const ms_geom *g, MDB_val *dst, float **kf,
		       size_t *kf_cap, uint64_t i, const char *what)
{
	MDB_val bk = { 16, (void *)key->b }, bv, v;
	ms_block b;
	int rc;
	if ((rc = mdb_get(txn, ms->db_blocks, &bk, &bv)))
		return ms__lmdb(ms, rc, what);
	ms__willneed(bv.mv_data, bv.mv_size);
	if ((rc = ms__block_parse(bv.mv_data, bv.mv_size, key, &b)))
		return ms__fail(ms, rc, "%s: block %llu failed verification",
				what, (unsigned long long)i);
	if (b.geom.n_layers != g->n_layers ||
	    b.geom.n_kv_heads != g->n_kv_heads ||
	    b.geom.head_dim != g->head_dim)
		return ms__fail(ms, MS_EMISMATCH, "%s: block %llu has "
				"another geometry", what, (unsigned long long)i);
	size_t sec = (size_t)b.n_tokens * g->head_dim;
	size_t need = sec * g->n_layers * g->n_kv_heads;
	if (need > *kf_cap) {
		float *nk = realloc(*kf, need * sizeof(float));
		if (!nk)
			return ms__fail(ms, MS_ENOMEM, "%s", what);
		*kf = nk;
		*kf_cap = need;
	}
	for (uint32_t l = 0; l < g->n_layers; l++)
		for (uint32_t hh = 0; hh < g->n_kv_heads; hh++)
			if ((rc = ms_block_decode(&b, l, hh, *kf + ((size_t)l *
			    g->n_kv_heads + hh) * sec, NULL)))
				return ms__fail(ms, rc, "%s: decode block", what);
	uint32_t n = b.n_tokens;
	uint64_t pos = b.position;
	v.mv_size = ms__summary_size(g, n);
	if ((rc = mdb_put(txn, ms->db_sums, dst, &v, MDB_RESERVE)))
		return ms__lmdb(ms, rc, what);
	ms__summary_encode(v.mv_data, g, n, pos, key, *kf, sec);
	return 0;
}

/* A summary record of a version after this build's: a store written by
 * a newer engram, to be opened by it, not read as corrupt or rewritten
 * as an older record. */
int ms__sum_newer(ms_store *ms, uint32_t version)
{
	return ms__fail(ms, MS_EVERSION, "summary record version %u, written "
			"by a newer engram (this build reads 1 and %d)", version,
			MS__SUM_CODES);
}

/* Asks the kernel to start reading the session's summary records now,
 * all at once (their first head bytes only, when the codes are not
 * wanted: head 0 means whole).  They were written beside the blocks, so
 * on a cold cache they are thousands of small reads scattered over the
 * map; faulted in one by one as the scan reaches them they cost a disk
 * round trip each (3 s for the 16.9K records of a 1M-token session),
 * while queued together the disk serves them in parallel.  Walking the
 * cursor touches only leaf pages: a big record's pointer is computed,
 * not read. */
static void sums_prefetch(MDB_cursor *c, const struct ms__sidx *sk,
			  size_t head)
{
	long pg = sysconf(_SC_PAGESIZE);
	uintptr_t lo = 0, hi = 0;
	MDB_val k = { 16, (void *)sk->b }, v;
	int rc;

	if (pg <= 0)
		return;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, sk->b, 8) == 0) {
		uintptr_t a = (uintptr_t)v.mv_data & ~(uintptr_t)(pg - 1);
		uintptr_t e = (uintptr_t)v.mv_data + (head && head < v.mv_size ?
						      head : v.mv_size);
		/* Neighbouring records make one call. */
		if (a > hi || e < lo) {
			if (hi > lo)
				ms__willneed((void *)lo, hi - lo);
			lo = a;
			hi = e;
		} else {
			lo = a < lo ? a : lo;
			hi = e > hi ? e : hi;
		}
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	if (hi > lo)
		ms__willneed((void *)lo, hi - lo);
}

/* Where a summary record's codes start (its header and min/max/mean end),
 * from its header; 0 if it is too short to tell. */
static size_t sum_head(const uint8_t *rec, size_t len)
{
	struct ms__sum_hdr h;
	if (len < sizeof(h))
		return 0;
	memcpy(&h, rec, sizeof(h));
	ms_geom g = { h.n_layers, h.n_kv_heads, h.head_dim, 0, 0 };
	return ms__summary_size(&g, 0);
}

/* One summary record to fn: its first hlen bytes at rec (header and
 * min/max/mean), its codes (clen bytes; none for a record written before
 * them) at cod; index is its block.  want 0: codes stay NULL. */
static int sum_call(ms_txn *t, uint64_t index, const uint8_t *rec,
		    size_t hlen, const uint8_t *cod, size_t clen, int want,
		    ms_summary_fn fn, void *arg)
{
	struct ms__sum_hdr h;
	if (hlen < sizeof(h))
		return ms__fail(t->ms, MS_ECORRUPT, "short summary");
	memcpy(&h, rec, sizeof(h));
	if (h.magic == MS__SUM_MAGIC && h.version > MS__SUM_CODES)
		return ms__sum_newer(t->ms, h.version);
	ms_geom g = { h.n_layers, h.n_kv_heads, h.head_dim, 0, 0 };
	int codes = h.version == MS__SUM_CODES;
	if (h.magic != MS__SUM_MAGIC || (!codes &&
	    h.version != MS_FORMAT_VERSION) ||
	    hlen != ms__summary_size(&g, 0) ||
	    hlen + clen != ms__summary_size(&g, codes ? h.n_tokens : 0))
		return ms__fail(t->ms, MS_ECORRUPT, "bad summary record");
	ms_summary s = {
		.index = index, .position = h.position, .n_tokens = h.n_tokens,
		.n_layers = h.n_layers, .n_kv_heads = h.n_kv_heads,
		.head_dim = h.head_dim, .data = rec + sizeof(h),
		.codes = codes && want ? cod : NULL,
	};
	memcpy(s.key.b, h.key, 16);
	return fn(arg, &s);
}

/* The session's pack, if there is one and its last record is still the
 * session's summary of that block (a block's key names its whole prefix,
 * so the records before it are the session's too; dropping summaries
 * drops the pack anyway).  *n = 0 when there is none to use. */
static int pack_find(ms_txn *t, int64_t id, const uint8_t **recs, uint64_t *n,
		     size_t *rec, size_t *head)
{
	uint8_t kb[8];
	struct ms__pack_hdr ph;
	*n = 0;
	ms__sid(kb, id);
	MDB_val k = { 8, kb }, v;
	int rc = mdb_get(t->txn, t->ms->db_packs, &k, &v);
	if (rc == MDB_NOTFOUND)
		return 0;
	if (rc)
		return ms__lmdb(t->ms, rc, "summary pack");
	if (v.mv_size < sizeof(ph))
		return 0;
	memcpy(&ph, v.mv_data, sizeof(ph));
	if (ph.magic != MS__PACK_MAGIC || ph.version != MS__PACK_SPLIT ||
	    !ph.n || !ph.rec || ph.head > ph.rec ||
	    ph.n > (v.mv_size - sizeof(ph)) / ph.rec ||
	    v.mv_size != sizeof(ph) + ph.n * ph.rec)
		return 0;
	const uint8_t *base = (const uint8_t *)v.mv_data + sizeof(ph);
	size_t tail = ph.rec - ph.head;
	struct ms__sidx sk;
	ms__sidx(&sk, id, ph.n - 1);
	MDB_val lk = { 16, sk.b }, lv;
	if (mdb_get(t->txn, t->ms->db_sums, &lk, &lv) || lv.mv_size != ph.rec ||
	    memcmp(lv.mv_data, base + (ph.n - 1) * ph.head, ph.head) ||
	    memcmp((const uint8_t *)lv.mv_data + ph.head,
		   base + ph.n * ph.head + (ph.n - 1) * tail, tail))
		return 0;
	*recs = base;
	*n = ph.n;
	*rec = ph.rec;
	*head = ph.head;
	return 0;
}

int ms_summary_scan(ms_txn *t, int64_t id, uint64_t first, int codes,
		    ms_summary_fn fn, void *arg)
{
	if (!t || !fn)
		return MS_EINVAL;
	const uint8_t *recs = NULL;
	uint64_t np;
	size_t rec = 0, head = 0;
	int rc = pack_find(t, id, &recs, &np, &rec, &head);
	if (rc)
		return rc;
	if (first < np) {
		/* one sequential read instead of a page or two per block */
		size_t tail = rec - head;
		const uint8_t *cods = recs + np * head;
		ms__willneed(recs + first * head, (np - first) * head);
		if (codes)
			ms__willneed(cods + first * tail, (np - first) * tail);
		for (uint64_t i = first; i < np; i++)
			if ((rc = sum_call(t, i, recs + i * head, head,
					   cods + i * tail, tail, codes, fn,
					   arg)))
				return rc;
		first = np;
	}
	MDB_cursor *c;
	rc = mdb_cursor_open(t->txn, t->ms->db_sums, &c);
	if (rc)
		return ms__lmdb(t->ms, rc, "cursor");
	struct ms__sidx sk;
	ms__sidx(&sk, id, first);
	MDB_val k = { 16, sk.b }, v;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	/* every record's head (header, min/max/mean) is as long as the
	 * first's */
	sums_prefetch(c, &sk, rc || codes ? 0 :
		      sum_head(v.mv_data, v.mv_size));
	k = (MDB_val){ 16, sk.b };
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);	/* back to the first */
	while (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, sk.b, 8) == 0) {
		size_t h = sum_head(v.mv_data, v.mv_size);
		h = h && h <= v.mv_size ? h : v.mv_size;
		if ((rc = sum_call(t, (uint64_t)ms__sid_get((const uint8_t *)k.mv_data + 8),
				   v.mv_data, h, (const uint8_t *)v.mv_data + h,
				   v.mv_size - h, codes, fn, arg)))
			goto out;
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	rc = rc == MDB_NOTFOUND ? 0 : ms__lmdb(t->ms, rc, "summary scan");
out:
	mdb_cursor_close(c);
	return rc;
}

/* A pack as its readers see it: n records of rec bytes at recs, heads
 * first (head bytes each), and the first record's header. */
struct pack_view {
	const uint8_t *recs;
	uint64_t n;
	size_t rec, head;
	struct ms__sum_hdr h;
};

/* Finds the session's pack for one of the in-place readers below, after
 * clearing their outputs (nothing in place until they fill them).
 * pv->n 0: no pack. */
static int pack_reader(ms_txn *t, int64_t id, const uint8_t **out,
		       size_t *stride, uint64_t *n, struct pack_view *pv)
{
	if (!t || !out || !stride || !n)
		return MS_EINVAL;
	*out = NULL;
	*stride = 0;
	*n = 0;
	memset(pv, 0, sizeof(*pv));
	int rc = pack_find(t, id, &pv->recs, &pv->n, &pv->rec, &pv->head);
	if (rc || !pv->n)
		return rc;
	memcpy(&pv->h, pv->recs, sizeof(pv->h));
	return 0;
}

int ms_summary_pack_codes(ms_txn *t, int64_t id, const uint8_t **codes,
			  size_t *stride, uint64_t *n)
{
	struct pack_view pv;
	int rc = pack_reader(t, id, codes, stride, n, &pv);
	/* none, records before codes, or another version */
	if (rc || !pv.n || pv.rec == pv.head ||
	    pv.h.magic != MS__SUM_MAGIC || pv.h.version != MS__SUM_CODES)
		return rc;
	*codes = pv.recs + pv.n * pv.head;
	*stride = pv.rec - pv.head;
	*n = pv.n;
	/* read in strides, a layer at a time, by faults of a page each
	 * (MDB_NORDAHEAD): ask for the whole run at once */
	ms__willneed(*codes, pv.n * *stride);
	return 0;
}

int ms_summary_pack_vectors(ms_txn *t, int64_t id, uint32_t n_layers,
			    uint32_t n_kv_heads, uint32_t head_dim,
			    const uint8_t **data, size_t *stride, uint64_t *n)
{
	struct pack_view pv;
	int rc = pack_reader(t, id, data, stride, n, &pv);
	if (rc || !pv.n || pv.h.magic != MS__SUM_MAGIC ||
	    pv.h.n_layers != n_layers || pv.h.n_kv_heads != n_kv_heads ||
	    pv.h.head_dim != head_dim || pv.head < sizeof(pv.h) +
	    (size_t)n_layers * n_kv_heads * 3 * head_dim * 2)
		return rc;
	*data = pv.recs + sizeof(pv.h);
	*stride = pv.head;
	*n = pv.n;
	ms__willneed(pv.recs, pv.n * pv.head);
	return 0;
}

/* ---- summary packs -------------------------------------------------- */

/* Copies the session's summaries, in block order, into its pack: the
 * records' heads, then their codes. */
static int pack_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	int64_t id = *(int64_t *)arg;
	struct ms__pack_hdr ph = { MS__PACK_MAGIC, MS__PACK_SPLIT, 0, 0, 0 };
	MDB_cursor *c;
	struct ms__sidx sk;
	uint8_t kb[8];
	int rc;

	ms__sid(kb, id);
	MDB_val pk = { 8, kb }, last = { 0, NULL };
	if ((rc = mdb_cursor_open(txn, ms->db_sums, &c)))
		return ms__lmdb(ms, rc, "cursor");
	/* first pass: how many records, all of one size and head, indices
	 * 0..n-1 */
	ms__sidx(&sk, id, 0);
	MDB_val k = { 16, sk.b }, v;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, sk.b, 8) == 0 &&
	       (uint64_t)ms__sid_get((const uint8_t *)k.mv_data + 8) == ph.n &&
	       (!ph.rec || v.mv_size == ph.rec)) {
		size_t h = sum_head(v.mv_data, v.mv_size);
		if (!h || h > v.mv_size || (ph.rec && h != ph.head))
			break;
		ph.rec = v.mv_size;
		ph.head = h;
		ms__scan_trim(ms, ph.n++);
		last = v;
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	if (rc && rc != MDB_NOTFOUND) {
		mdb_cursor_close(c);
		return ms__lmdb(ms, rc, "summary scan");
	}
	/* a pack of these same records already (a job that added nothing):
	 * keep it rather than write it again */
	MDB_val old;
	size_t tail = ph.rec - ph.head;
	if (ph.n && mdb_get(txn, ms->db_packs, &pk, &old) == 0 &&
	    old.mv_size == sizeof(ph) + ph.n * ph.rec &&
	    !memcmp(old.mv_data, &ph, sizeof(ph)) &&
	    !memcmp((const uint8_t *)old.mv_data + sizeof(ph) +
		    (ph.n - 1) * ph.head, last.mv_data, ph.head) &&
	    !memcmp((const uint8_t *)old.mv_data + old.mv_size - tail,
		    (const uint8_t *)last.mv_data + ph.head, tail)) {
		mdb_cursor_close(c);
		return 0;
	}
	rc = mdb_del(txn, ms->db_packs, &pk, NULL);
	if (rc && rc != MDB_NOTFOUND) {
		mdb_cursor_close(c);
		return ms__lmdb(ms, rc, "delete summary pack");
	}
	if (ph.n < 2) {
		mdb_cursor_close(c);
		return 0;
	}
	MDB_val pv = { sizeof(ph) + ph.n * ph.rec, NULL };
	if ((rc = mdb_put(txn, ms->db_packs, &pk, &pv, MDB_RESERVE))) {
		mdb_cursor_close(c);
		return ms__lmdb(ms, rc, "put summary pack");
	}
	uint8_t *o = pv.mv_data;
	memcpy(o, &ph, sizeof(ph));
	o += sizeof(ph);
	k = (MDB_val){ 16, sk.b };
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	for (uint64_t i = 0; i < ph.n && rc == 0; i++) {
		memcpy(o + i * ph.head, v.mv_data, ph.head);
		memcpy(o + ph.n * ph.head + i * tail,
		       (const uint8_t *)v.mv_data + ph.head, tail);
		ms__scan_trim(ms, i);
		if (i + 1 < ph.n)
			rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	mdb_cursor_close(c);
	return rc ? ms__lmdb(ms, rc, "summary scan") : 0;
}

int ms_summary_pack(ms_store *ms, int64_t id)
{
	if (!ms)
		return MS_EINVAL;
	return ms__write(ms, pack_w, &id);
}

/* ---- codes for summaries written before them ------------------------ */

struct codes_arg {
	int64_t id;
	uint64_t next;		/* the first index not yet looked at */
	uint64_t added;		/* out: records given codes */
	int done;		/* the session's last summary was reached */
	float *kf;
	size_t kf_cap;
};

/* Up to MS__CODES_BATCH records without codes, from a->next, made again
 * from their blocks: one transaction of a bounded size each. */
#define MS__CODES_BATCH 256
static int codes_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	struct codes_arg *a = arg;
	uint64_t i = a->next, made = 0;
	int rc = 0;

	for (; made < MS__CODES_BATCH; i++) {
		struct ms__sidx sk;
		struct ms__sum_hdr sh;
		ms__scan_trim(ms, i);
		ms__sidx(&sk, a->id, i);
		MDB_val k = { 16, sk.b }, v;
		if ((rc = mdb_get(txn, ms->db_sums, &k, &v)) == MDB_NOTFOUND) {
			a->done = 1;
			rc = 0;
			break;
		}
		if (rc)
			return ms__lmdb(ms, rc, "codes: read summary");
		if (v.mv_size < sizeof(sh))
			return ms__fail(ms, MS_ECORRUPT, "codes: short summary");
		memcpy(&sh, v.mv_data, sizeof(sh));
		if (sh.magic != MS__SUM_MAGIC)
			return ms__fail(ms, MS_ECORRUPT, "codes: bad summary");
		if (sh.version > MS__SUM_CODES)
			return ms__sum_newer(ms, sh.version);
		if (sh.version == MS__SUM_CODES)
			continue;
		ms_geom g = { sh.n_layers, sh.n_kv_heads, sh.head_dim, 0, 0 };
		ms_key key;
		memcpy(key.b, sh.key, 16);
		if ((rc = ms__summary_remake(ms, txn, &key, &g, &k, &a->kf,
					 &a->kf_cap, i, "codes")))
			return rc;
		made++;
	}
	a->next = i;
	a->added += made;
	return 0;
}

int ms_summary_codes(ms_store *ms, int64_t id, uint64_t *n_added)
{
	struct codes_arg a = { .id = id };
	int rc = 0;

	if (!ms)
		return MS_EINVAL;
	while (!a.done && !(rc = ms__write(ms, codes_w, &a)))
		;
	free(a.kf);
	if (n_added)
		*n_added = a.added;
	return rc;
}
