/* store.c - the store as a whole: settings, ms_open (with recovery) and
 * ms_close, statistics, the ms_check fsck, garbage collection and
 * compaction.  The invariants checked here are those of memstore.h. */
#include "config.h"
#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include "ms_internal.h"

void ms_settings_init(ms_settings *s)
{
	/* 64 MiB: a new store costs nothing on disk (LMDB's file grows with
	 * use); the map doubles from there as blocks arrive. */
	s->map_size_initial = (size_t)64 << 20;
	/* 64 GiB: about forty 1M-token sessions of Gemma 3 270M in Q8
	 * (1.6 GB each); the daemon's config sets the real figure. */
	s->disk_budget = (size_t)64 << 30;
	/* LMDB's default; one per concurrent read transaction. */
	s->max_readers = 126;
	/* Long enough to ride out a checkpoint, short enough to report. */
	s->sqlite_busy_ms = 5000;
}

const char *ms_errmsg(const ms_store *ms)
{
	return ms ? ms->errmsg : "no store";
}

void ms_recovery_get(const ms_store *ms, ms_recovery *out)
{
	if (ms && out)
		*out = ms->rec;
}

void ms_free(void *p)
{
	free(p);
}

static void rm_compact_leftover(ms_store *ms)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/kv.compact/data.mdb", ms->dir);
	unlink(path);
	snprintf(path, sizeof(path), "%s/kv.compact", ms->dir);
	rmdir(path);
}

int ms_open(const char *dir, const ms_settings *settings, ms_store **out,
	    char *err, size_t errlen)
{
	if (err && errlen)
		err[0] = 0;
	if (!out)
		return MS_EINVAL;
	*out = NULL;
	if (!dir || !dir[0] || strlen(dir) > 4000) {
		if (err && errlen)
			snprintf(err, errlen, "bad store directory");
		return MS_EINVAL;
	}
	ms_store *ms = calloc(1, sizeof(*ms));
	if (!ms)
		return MS_ENOMEM;
	int rc;
	if (settings)
		ms->set = *settings;
	else
		ms_settings_init(&ms->set);
	if (ms->set.map_size_initial < ((size_t)1 << 20) ||
	    ms->set.disk_budget < ((size_t)1 << 20) || ms->set.max_readers < 1) {
		rc = ms__fail(ms, MS_EINVAL, "settings: map and budget must be "
			      ">= 1 MiB, max_readers >= 1");
		goto fail;
	}
	if (!(ms->dir = strdup(dir))) {
		rc = MS_ENOMEM;
		goto fail;
	}
	if (mkdir(dir, 0700) && errno != EEXIST) {
		rc = ms__fail(ms, MS_EIO, "mkdir %s: %s", dir, strerror(errno));
		goto fail;
	}
	rm_compact_leftover(ms);
	if ((rc = ms__env_open(ms)) || (rc = ms__cat_open(ms)) ||
	    (rc = ms__recover(ms)))
		goto fail;
	*out = ms;
	return 0;
fail:
	if (err && errlen)
		snprintf(err, errlen, "%s", ms->errmsg[0] ? ms->errmsg :
			 ms_strerror(rc));
	ms_close(ms);
	return rc;
}

void ms_close(ms_store *ms)
{
	if (!ms)
		return;
	ms__cat_close(ms);
	ms__env_close(ms);
	free(ms->dir);
	free(ms);
}

/* ---- stats ---------------------------------------------------------- */

/* Calls fn for every record of a database, in key order. */
typedef int (*each_fn)(ms_store *ms, MDB_txn *txn, const MDB_val *k,
		       const MDB_val *v, void *arg);

static int db_each(ms_store *ms, MDB_txn *txn, MDB_dbi dbi, each_fn fn,
		   void *arg)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, dbi, &c);
	if (rc)
		return ms__lmdb(ms, rc, "cursor");
	MDB_val k, v;
	uint64_t i = 0;
	/* trimmed as it goes: a deep check reads every block */
	for (rc = mdb_cursor_get(c, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(c, &k, &v, MDB_NEXT), ms__scan_trim(ms, i++)) {
		int r = fn(ms, txn, &k, &v, arg);
		if (r) {
			mdb_cursor_close(c);
			return r;
		}
	}
	mdb_cursor_close(c);
	return rc == MDB_NOTFOUND ? 0 : ms__lmdb(ms, rc, "cursor walk");
}

static int stat_pfx(ms_store *ms, MDB_txn *txn, const MDB_val *k,
		    const MDB_val *v, void *arg)
{
	ms_stats *s = arg;
	struct ms__pfx p;
	if (v->mv_size != sizeof(p))
		return 0;
	memcpy(&p, v->mv_data, sizeof(p));
	s->shared_blocks += p.refcount > 1;
	s->block_refs += p.refcount;
	s->tokens_stored += p.n_tokens;
	return 0;
}

static int stat_block(ms_store *ms, MDB_txn *txn, const MDB_val *k,
		      const MDB_val *v, void *arg)
{
	ms_stats *s = arg;
	s->blocks++;
	s->block_bytes += v->mv_size;	/* size only: no overflow page read */
	return 0;
}

static int stat_tail(ms_store *ms, MDB_txn *txn, const MDB_val *k,
		     const MDB_val *v, void *arg)
{
	ms_stats *s = arg;
	s->tails++;
	s->tail_bytes += v->mv_size;
	return 0;
}

static int stat_ckpt(ms_store *ms, MDB_txn *txn, const MDB_val *k,
		     const MDB_val *v, void *arg)
{
	ms_stats *s = arg;
	s->checkpoints++;
	s->checkpoint_bytes += v->mv_size;
	return 0;
}

int ms_stats_get(ms_store *ms, ms_stats *out)
{
	if (!ms || !out)
		return MS_EINVAL;
	memset(out, 0, sizeof(*out));
	ms_txn *t;
	int rc = ms_read_begin(ms, &t);
	if (rc)
		return rc;
	MDB_stat hs;
	if ((rc = mdb_stat(t->txn, ms->db_heads, &hs))) {
		rc = ms__lmdb(ms, rc, "stat");
		goto out;
	}
	out->sessions = hs.ms_entries;
	if ((rc = mdb_stat(t->txn, ms->db_packs, &hs))) {
		rc = ms__lmdb(ms, rc, "stat");
		goto out;
	}
	out->packs = hs.ms_entries;
	if ((rc = db_each(ms, t->txn, ms->db_prefix, stat_pfx, out)) ||
	    (rc = db_each(ms, t->txn, ms->db_blocks, stat_block, out)) ||
	    (rc = db_each(ms, t->txn, ms->db_tails, stat_tail, out)) ||
	    (rc = db_each(ms, t->txn, ms->db_ckpts, stat_ckpt, out)))
		goto out;
	MDB_envinfo info;
	MDB_stat es;
	mdb_env_info(ms->env, &info);
	mdb_env_stat(ms->env, &es);
	out->map_size = info.me_mapsize;
	out->map_used = (uint64_t)(info.me_last_pgno + 1) * es.ms_psize;
	char path[4200];
	struct stat st;
	snprintf(path, sizeof(path), "%s/kv/data.mdb", ms->dir);
	if (stat(path, &st) == 0)
		out->bytes_on_disk = (uint64_t)st.st_blocks * 512;
	if (out->tokens_stored)
		out->bytes_per_token = (double)out->block_bytes /
				       (double)out->tokens_stored;
out:
	ms_read_end(t);
	return rc;
}

/* ---- check ---------------------------------------------------------- */

struct check {
	uint64_t problems;
	int deep;
	uint8_t (*keys)[16];	/* every chain entry's key */
	size_t n_keys, cap_keys;
};

static void problem(ms_store *ms, struct check *c, const char *fmt,
		    long long a, long long b)
{
	if (!c->problems++) {
		char msg[256];
		snprintf(msg, sizeof(msg), fmt, a, b);
		ms__fail(ms, MS_ECHECK, "%s", msg);
	}
}

static int key_push(ms_store *ms, struct check *c, const void *key)
{
	if (c->n_keys == c->cap_keys) {
		size_t cap = c->cap_keys ? c->cap_keys * 2 : 1024;
		void *nk = realloc(c->keys, cap * 16);
		if (!nk)
			return ms__fail(ms, MS_ENOMEM, "check");
		c->keys = nk;
		c->cap_keys = cap;
	}
	memcpy(c->keys[c->n_keys++], key, 16);
	return 0;
}

/* One session: chain contiguous, parent-linked, positions and counts
 * matching the head; summaries naming the same keys. */
static int check_session(ms_store *ms, MDB_txn *txn, struct check *c,
			 int64_t id, const struct ms__head *h)
{
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, ms->db_chain, &cur);
	if (rc)
		return ms__lmdb(ms, rc, "cursor");
	struct ms__sidx sk;
	ms__sidx(&sk, id, 0);
	MDB_val k = { 16, sk.b }, v;
	uint64_t idx = 0, tokens = 0;
	uint8_t prev[16] = { 0 };
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_SET_RANGE);
	     rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, sk.b, 8) == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT), idx++) {
		uint64_t at = (uint64_t)ms__sid_get((uint8_t *)k.mv_data + 8);
		if (at != idx || v.mv_size != 16) {
			problem(ms, c, "session %lld: chain hole at %lld",
				(long long)id, (long long)idx);
			break;
		}
		if ((rc = key_push(ms, c, v.mv_data)))
			goto out;
		struct ms__pfx p;
		MDB_val pk = { 16, v.mv_data }, pv;
		if (mdb_get(txn, ms->db_prefix, &pk, &pv) || pv.mv_size != sizeof(p)) {
			problem(ms, c, "session %lld: block %lld missing",
				(long long)id, (long long)idx);
			memcpy(prev, v.mv_data, 16);
			continue;
		}
		memcpy(&p, pv.mv_data, sizeof(p));
		if (memcmp(p.parent, prev, 16) || p.position != tokens)
			problem(ms, c, "session %lld: block %lld not linked",
				(long long)id, (long long)idx);
		if (idx + 1 < h->n_blocks && p.n_tokens != h->block_tokens)
			problem(ms, c, "session %lld: partial block %lld inside",
				(long long)id, (long long)idx);
		MDB_val sv;
		if (mdb_get(txn, ms->db_sums, &k, &sv) ||
		    sv.mv_size < sizeof(struct ms__sum_hdr) ||
		    memcmp((uint8_t *)sv.mv_data +
			   offsetof(struct ms__sum_hdr, key), v.mv_data, 16))
			problem(ms, c, "session %lld: summary %lld missing",
				(long long)id, (long long)idx);
		tokens += p.n_tokens;
		memcpy(prev, v.mv_data, 16);
	}
	if (rc && rc != MDB_NOTFOUND) {
		rc = ms__lmdb(ms, rc, "chain walk");
		goto out;
	}
	rc = 0;
	if (idx != h->n_blocks || tokens != h->n_tokens ||
	    memcmp(prev, h->head_key, 16))
		problem(ms, c, "session %lld: head disagrees with chain (%lld "
			"blocks)", (long long)id, (long long)idx);
	int has;
	if ((rc = ms__cat_has_session(ms, id, &has)))
		goto out;
	if (!has)
		problem(ms, c, "session %lld: no catalog row", (long long)id, 0);
out:
	mdb_cursor_close(cur);
	return rc;
}

static int check_head(ms_store *ms, MDB_txn *txn, const MDB_val *k,
		      const MDB_val *v, void *arg)
{
	struct check *c = arg;
	struct ms__head h;
	if (k->mv_size != 8 || v->mv_size != sizeof(h)) {
		problem(ms, c, "bad head record", 0, 0);
		return 0;
	}
	memcpy(&h, v->mv_data, sizeof(h));
	return check_session(ms, txn, c, ms__sid_get(k->mv_data), &h);
}

/* chain/summaries/tails entries must belong to a head. */
static int check_owned(ms_store *ms, MDB_txn *txn, const MDB_val *k,
		       const MDB_val *v, void *arg)
{
	struct check *c = arg;
	MDB_val hk = { 8, k->mv_data }, hv;
	if (k->mv_size < 8 || mdb_get(txn, ms->db_heads, &hk, &hv))
		problem(ms, c, "record of session %lld without head",
			k->mv_size >= 8 ? (long long)ms__sid_get(k->mv_data) : -1, 0);
	return 0;
}

/* A tail: owned by a head, with a readable header whose geometry gives
 * the record's size and the head's fingerprint; deep: its checksum. */
static int check_tail(ms_store *ms, MDB_txn *txn, const MDB_val *k,
		      const MDB_val *v, void *arg)
{
	struct check *c = arg;
	check_owned(ms, txn, k, v, arg);
	long long id = k->mv_size >= 8 ? (long long)ms__sid_get(k->mv_data) : -1;
	struct ms__block_hdr bh;
	if (v->mv_size < sizeof(bh)) {
		problem(ms, c, "tail of session %lld: short record", id, 0);
		return 0;
	}
	memcpy(&bh, v->mv_data, sizeof(bh));
	ms_geom g = { bh.n_layers, bh.n_kv_heads, bh.head_dim, 0,
		      (ms_mode)bh.mode };
	if (bh.magic != MS__BLOCK_MAGIC || bh.version != MS_FORMAT_VERSION ||
	    ms_block_record_size(&g, bh.n_tokens) != v->mv_size) {
		problem(ms, c, "tail of session %lld: bad header or geometry",
			id, 0);
		return 0;
	}
	struct ms__head h;
	MDB_val hk = { 8, k->mv_data }, hv;
	if (k->mv_size == 8 && !mdb_get(txn, ms->db_heads, &hk, &hv) &&
	    hv.mv_size == sizeof(h)) {
		memcpy(&h, hv.mv_data, sizeof(h));
		if (memcmp(h.fingerprint, bh.fingerprint, 16))
			problem(ms, c, "tail of session %lld: another model's",
				id, 0);
	}
	ms_block b;
	if (c->deep)
		ms__willneed(v->mv_data, v->mv_size);
	if (c->deep && ms__block_parse(v->mv_data, v->mv_size, NULL, &b))
		problem(ms, c, "tail of session %lld corrupt", id, 0);
	return 0;
}

/* A checkpoint: its block exists and it ends where the block ends;
 * deep: its checksum. */
static int check_ckpt(ms_store *ms, MDB_txn *txn, const MDB_val *k,
		      const MDB_val *v, void *arg)
{
	struct check *c = arg;
	struct ms__ckpt_hdr ch;
	struct ms__pfx p;
	MDB_val pv;
	if (k->mv_size != 16 || v->mv_size < sizeof(ch)) {
		problem(ms, c, "bad checkpoint record", 0, 0);
		return 0;
	}
	memcpy(&ch, v->mv_data, sizeof(ch));
	if (mdb_get(txn, ms->db_prefix, (MDB_val *)k, &pv) ||
	    pv.mv_size != sizeof(p)) {
		problem(ms, c, "checkpoint of session %lld without its block",
			(long long)ch.source, 0);
		return 0;
	}
	memcpy(&p, pv.mv_data, sizeof(p));
	if (ms__ckpt_end(v) != p.position + p.n_tokens) {
		problem(ms, c, "checkpoint at %lld: bad header or end",
			(long long)(p.position + p.n_tokens), 0);
		return 0;
	}
	ms_block b;
	if (c->deep) {
		const uint8_t *rec = (const uint8_t *)v->mv_data + sizeof(ch);
		ms__willneed(rec, v->mv_size - sizeof(ch));
		if (ms__block_parse(rec, v->mv_size - sizeof(ch), NULL, &b))
			problem(ms, c, "checkpoint at %lld corrupt",
				(long long)(p.position + p.n_tokens), 0);
	}
	return 0;
}

static int key_cmp(const void *a, const void *b)
{
	return memcmp(a, b, 16);
}

/* Prefix entries in key order against the sorted chain keys. */
static int check_refs(ms_store *ms, MDB_txn *txn, struct check *c)
{
	if (c->n_keys)
		qsort(c->keys, c->n_keys, 16, key_cmp);
	MDB_cursor *cur;
	int rc = mdb_cursor_open(txn, ms->db_prefix, &cur);
	if (rc)
		return ms__lmdb(ms, rc, "cursor");
	size_t i = 0;
	uint64_t seen = 0;
	MDB_val k, v;
	/* trimmed as it goes: deep, this reads every block */
	for (rc = mdb_cursor_get(cur, &k, &v, MDB_FIRST); rc == 0;
	     rc = mdb_cursor_get(cur, &k, &v, MDB_NEXT),
	     ms__scan_trim(ms, seen++)) {
		struct ms__pfx p;
		if (k.mv_size != 16 || v.mv_size != sizeof(p)) {
			problem(ms, c, "bad prefix record", 0, 0);
			continue;
		}
		memcpy(&p, v.mv_data, sizeof(p));
		while (i < c->n_keys && memcmp(c->keys[i], k.mv_data, 16) < 0)
			i++;	/* keys without prefix entry: seen in chains */
		uint64_t n = 0;
		while (i < c->n_keys && memcmp(c->keys[i], k.mv_data, 16) == 0) {
			i++;
			n++;
		}
		if (n != p.refcount)
			problem(ms, c, "refcount %lld, %lld references",
				(long long)p.refcount, (long long)n);
		MDB_val bv;
		if (mdb_get(txn, ms->db_blocks, &k, &bv)) {
			problem(ms, c, "prefix entry without block", 0, 0);
			continue;
		}
		ms_block b;
		if (c->deep) {
			ms_key key;
			memcpy(key.b, k.mv_data, 16);
			ms__willneed(bv.mv_data, bv.mv_size);
			if (ms__block_parse(bv.mv_data, bv.mv_size, &key, &b) ||
			    b.n_tokens != p.n_tokens || b.position != p.position ||
			    memcmp(b.parent.b, p.parent, 16))
				problem(ms, c, "block at position %lld corrupt",
					(long long)p.position, 0);
		}
	}
	mdb_cursor_close(cur);
	if (rc != MDB_NOTFOUND)
		return ms__lmdb(ms, rc, "prefix walk");
	MDB_stat sb, sp;
	mdb_stat(txn, ms->db_blocks, &sb);
	mdb_stat(txn, ms->db_prefix, &sp);
	if (sb.ms_entries != sp.ms_entries)
		problem(ms, c, "%lld blocks, %lld prefix entries",
			(long long)sb.ms_entries, (long long)sp.ms_entries);
	/* Each session's chain entries were matched to summaries above;
	 * equal totals rule out summaries past a chain's end. */
	mdb_stat(txn, ms->db_chain, &sb);
	mdb_stat(txn, ms->db_sums, &sp);
	if (sb.ms_entries != sp.ms_entries)
		problem(ms, c, "%lld chain entries, %lld summaries",
			(long long)sb.ms_entries, (long long)sp.ms_entries);
	return 0;
}

/* Active catalog rows must have heads with the same token count. */
static int check_catalog(ms_store *ms, MDB_txn *txn, struct check *c)
{
	sqlite3_stmt *st;
	if (sqlite3_prepare_v2(ms->db, "SELECT id, n_tokens FROM sessions "
			       "WHERE state = 'active'", -1, &st, NULL))
		return ms__fail(ms, MS_ESQLITE, "check: %s", sqlite3_errmsg(ms->db));
	int rc;
	while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
		int64_t id = sqlite3_column_int64(st, 0);
		struct ms__head h;
		if (ms__head_read(ms, txn, id, &h)) {
			problem(ms, c, "session %lld: row without head",
				(long long)id, 0);
			continue;
		}
		if ((uint64_t)sqlite3_column_int64(st, 1) != h.n_tokens)
			problem(ms, c, "session %lld: catalog says %lld tokens",
				(long long)id, sqlite3_column_int64(st, 1));
	}
	sqlite3_finalize(st);
	return rc == SQLITE_DONE ? 0 :
	       ms__fail(ms, MS_ESQLITE, "check: %s", sqlite3_errmsg(ms->db));
}

int ms_check(ms_store *ms, int deep, uint64_t *problems)
{
	if (!ms)
		return MS_EINVAL;
	struct check c = { .deep = deep };
	ms_txn *t;
	int rc = ms_read_begin(ms, &t);
	if (rc)
		return rc;
	if ((rc = db_each(ms, t->txn, ms->db_heads, check_head, &c)) ||
	    (rc = db_each(ms, t->txn, ms->db_chain, check_owned, &c)) ||
	    (rc = db_each(ms, t->txn, ms->db_sums, check_owned, &c)) ||
	    (rc = db_each(ms, t->txn, ms->db_packs, check_owned, &c)) ||
	    (rc = db_each(ms, t->txn, ms->db_tails, check_tail, &c)) ||
	    (rc = db_each(ms, t->txn, ms->db_ckpts, check_ckpt, &c)) ||
	    (rc = check_refs(ms, t->txn, &c)) ||
	    (rc = check_catalog(ms, t->txn, &c)))
		goto out;
	rc = c.problems ? MS_ECHECK : 0;
out:
	ms_read_end(t);
	free(c.keys);
	if (problems)
		*problems = c.problems;
	return rc;
}

/* ---- gc and compaction ---------------------------------------------- */

struct gc {
	MDB_dbi dbi;
	uint8_t (*keys)[16];
	size_t n, cap, klen;
};

static int gc_mark(ms_store *ms, struct gc *g, const MDB_val *k)
{
	if (g->n == g->cap) {
		size_t cap = g->cap ? g->cap * 2 : 256;
		void *nk = realloc(g->keys, cap * 16);
		if (!nk)
			return ms__fail(ms, MS_ENOMEM, "gc");
		g->keys = nk;
		g->cap = cap;
	}
	g->klen = k->mv_size;
	memcpy(g->keys[g->n++], k->mv_data, k->mv_size);
	return 0;
}

static int gc_headless(ms_store *ms, MDB_txn *txn, const MDB_val *k,
		       const MDB_val *v, void *arg)
{
	MDB_val hk = { 8, k->mv_data }, hv;
	if (k->mv_size >= 8 && k->mv_size <= 16 &&
	    mdb_get(txn, ms->db_heads, &hk, &hv) == MDB_NOTFOUND)
		return gc_mark(ms, arg, k);
	return 0;
}

static int gc_pfx(ms_store *ms, MDB_txn *txn, const MDB_val *k,
		  const MDB_val *v, void *arg)
{
	struct ms__pfx p;
	MDB_val bv;
	if (k->mv_size != 16)
		return 0;
	if (v->mv_size == sizeof(p))
		memcpy(&p, v->mv_data, sizeof(p));
	if (v->mv_size != sizeof(p) || p.refcount == 0 ||
	    mdb_get(txn, ms->db_blocks, (MDB_val *)k, &bv) == MDB_NOTFOUND)
		return gc_mark(ms, arg, k);
	return 0;
}

static int gc_block(ms_store *ms, MDB_txn *txn, const MDB_val *k,
		    const MDB_val *v, void *arg)
{
	MDB_val pv;
	if (k->mv_size != 16 ||
	    mdb_get(txn, ms->db_prefix, (MDB_val *)k, &pv) == MDB_NOTFOUND)
		return gc_mark(ms, arg, k);
	return 0;
}

static int gc_ckpt(ms_store *ms, MDB_txn *txn, const MDB_val *k,
		   const MDB_val *v, void *arg)
{
	MDB_val bv;
	if (k->mv_size != 16 ||
	    mdb_get(txn, ms->db_blocks, (MDB_val *)k, &bv) == MDB_NOTFOUND)
		return gc_mark(ms, arg, k);
	return 0;
}

/* Marks with fn over dbi, then deletes what was marked. */
static int gc_pass(ms_store *ms, MDB_txn *txn, MDB_dbi dbi, each_fn fn,
		   uint64_t *freed)
{
	struct gc g = { .dbi = dbi };
	int rc = db_each(ms, txn, dbi, fn, &g);
	for (size_t i = 0; !rc && i < g.n; i++) {
		MDB_val k = { g.klen, g.keys[i] };
		int r = mdb_del(txn, dbi, &k, NULL);
		if (r && r != MDB_NOTFOUND)
			rc = ms__lmdb(ms, r, "gc delete");
	}
	if (!rc)
		*freed += g.n;
	free(g.keys);
	return rc;
}

static int gc_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	uint64_t *freed = arg;
	int rc;
	*freed = 0;
	/* Headless chain entries are dropped without unref: the refcount
	 * pass below then frees what nothing names.  Refcounts themselves
	 * are ms_check's to verify. */
	if ((rc = gc_pass(ms, txn, ms->db_chain, gc_headless, freed)) ||
	    (rc = gc_pass(ms, txn, ms->db_sums, gc_headless, freed)) ||
	    (rc = gc_pass(ms, txn, ms->db_packs, gc_headless, freed)) ||
	    (rc = gc_pass(ms, txn, ms->db_tails, gc_headless, freed)) ||
	    (rc = gc_pass(ms, txn, ms->db_prefix, gc_pfx, freed)) ||
	    (rc = gc_pass(ms, txn, ms->db_blocks, gc_block, freed)) ||
	    (rc = gc_pass(ms, txn, ms->db_ckpts, gc_ckpt, freed)))
		return rc;
	return 0;
}

int ms_gc(ms_store *ms, uint64_t *freed)
{
	if (!ms)
		return MS_EINVAL;
	uint64_t n = 0;
	int rc = ms__write(ms, gc_w, &n);
	if (freed)
		*freed = rc ? 0 : n;
	return rc;
}

int ms_compact(ms_store *ms)
{
	if (!ms)
		return MS_EINVAL;
	if (ms->live_txns)
		return ms__fail(ms, MS_EBUSY, "compact: %d read transactions "
				"open", ms->live_txns);
	int rc = ms_gc(ms, NULL);
	if (rc)
		return rc;
	char tmp[4200], src[4200], dst[4200];
	snprintf(tmp, sizeof(tmp), "%s/kv.compact", ms->dir);
	snprintf(src, sizeof(src), "%s/kv.compact/data.mdb", ms->dir);
	snprintf(dst, sizeof(dst), "%s/kv/data.mdb", ms->dir);
	rm_compact_leftover(ms);
	if (mkdir(tmp, 0700))
		return ms__fail(ms, MS_EIO, "mkdir %s: %s", tmp, strerror(errno));
	if ((rc = mdb_env_copy2(ms->env, tmp, MDB_CP_COMPACT))) {
		rm_compact_leftover(ms);
		return ms__lmdb(ms, rc, "mdb_env_copy2");
	}
	/* The copy is complete and synced; swapping it in is one rename, so
	 * a crash leaves either the old or the new file (a leftover copy is
	 * removed at open). */
	ms__env_close(ms);
	if (rename(src, dst)) {
		rc = ms__fail(ms, MS_EIO, "rename: %s", strerror(errno));
		rm_compact_leftover(ms);
		int r2 = ms__env_open(ms);
		return r2 ? r2 : rc;
	}
	rmdir(tmp);
	return ms__env_open(ms);
}
