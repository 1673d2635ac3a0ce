/* lmdb.c - the LMDB side of the store: the environment and its named
 * databases, write transactions that grow the map within the disk budget,
 * read transactions and zero-copy block views.
 * Design and lifetimes: the top of memstore.h. */
#include "config.h"
#include <errno.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include "ms_internal.h"

/* Internal: MDB_MAP_FULL seen inside a write; the write loop grows the map
 * and retries.  Never returned to callers. */
#define MS__EMAPFULL (-1199)

int ms__fail(ms_store *ms, int code, const char *fmt, ...)
{
	if (ms) {
		va_list ap;
		va_start(ap, fmt);
		vsnprintf(ms->errmsg, sizeof(ms->errmsg), fmt, ap);
		va_end(ap);
	}
	return code;
}

int ms__lmdb(ms_store *ms, int rc, const char *what)
{
	switch (rc) {
	case 0: return 0;
	case MDB_NOTFOUND: return MS_ENOTFOUND;
	case MDB_MAP_FULL: return MS__EMAPFULL;
	case ENOMEM: return ms__fail(ms, MS_ENOMEM, "%s: out of memory", what);
	case EIO: return ms__fail(ms, MS_EIO, "%s: %s", what, mdb_strerror(rc));
	case ENOSPC: return ms__fail(ms, MS_EFULL, "%s: %s", what, mdb_strerror(rc));
	case MDB_CORRUPTED:
	case MDB_PAGE_NOTFOUND:
		return ms__fail(ms, MS_ECORRUPT, "%s: %s", what, mdb_strerror(rc));
	}
	return ms__fail(ms, MS_ELMDB, "%s: %s", what, mdb_strerror(rc));
}

void ms__sid(uint8_t o[8], int64_t id)
{
	uint64_t u = (uint64_t)id;
	for (int i = 7; i >= 0; i--, u >>= 8)
		o[i] = (uint8_t)u;
}

int64_t ms__sid_get(const uint8_t *p)
{
	uint64_t u = 0;
	for (int i = 0; i < 8; i++)
		u = (u << 8) | p[i];
	return (int64_t)u;
}

void ms__sidx(struct ms__sidx *o, int64_t id, uint64_t index)
{
	ms__sid(o->b, id);
	ms__sid(o->b + 8, (int64_t)index);
}

/* ---- environment ---------------------------------------------------- */

static const struct {
	const char *name;
	size_t off;
} ms_dbs[] = {
	{ "meta", offsetof(ms_store, db_meta) },
	{ "blocks", offsetof(ms_store, db_blocks) },
	{ "prefix", offsetof(ms_store, db_prefix) },
	{ "chain", offsetof(ms_store, db_chain) },
	{ "summaries", offsetof(ms_store, db_sums) },
	{ "heads", offsetof(ms_store, db_heads) },
	{ "tails", offsetof(ms_store, db_tails) },
};

/* Opens the named databases and checks the format version, creating both
 * in a new store. */
static int env_init_dbs(ms_store *ms)
{
	MDB_txn *txn;
	int rc = mdb_txn_begin(ms->env, NULL, 0, &txn);
	if (rc)
		return ms__lmdb(ms, rc, "begin");
	for (size_t i = 0; i < sizeof(ms_dbs) / sizeof(ms_dbs[0]); i++) {
		MDB_dbi *dbi = (MDB_dbi *)((char *)ms + ms_dbs[i].off);
		rc = mdb_dbi_open(txn, ms_dbs[i].name, MDB_CREATE, dbi);
		if (rc)
			goto fail;
	}
	MDB_val k = { 6, (void *)"format" }, v;
	rc = mdb_get(txn, ms->db_meta, &k, &v);
	if (rc == MDB_NOTFOUND) {
		uint32_t ver = MS_FORMAT_VERSION;
		v.mv_size = 4;
		v.mv_data = &ver;
		rc = mdb_put(txn, ms->db_meta, &k, &v, 0);
	} else if (rc == 0) {
		uint32_t ver = 0;
		if (v.mv_size == 4)
			memcpy(&ver, v.mv_data, 4);
		if (ver != MS_FORMAT_VERSION) {
			mdb_txn_abort(txn);
			return ms__fail(ms, ver > MS_FORMAT_VERSION ?
					MS_EVERSION : MS_ECORRUPT,
					"block store format %u, this build reads %u",
					ver, MS_FORMAT_VERSION);
		}
	}
	if (rc)
		goto fail;
	rc = mdb_txn_commit(txn);
	return rc ? ms__lmdb(ms, rc, "commit") : 0;
fail:
	mdb_txn_abort(txn);
	return ms__lmdb(ms, rc, "open databases");
}

int ms__env_open(ms_store *ms)
{
	char path[4200];
	snprintf(path, sizeof(path), "%s/kv", ms->dir);
	if (mkdir(path, 0700) && errno != EEXIST)
		return ms__fail(ms, MS_EIO, "mkdir %s: %s", path, strerror(errno));
	int rc = mdb_env_create(&ms->env);
	if (rc)
		return ms__lmdb(ms, rc, "mdb_env_create");
	size_t size = ms->set.map_size_initial;
	if (size > ms->set.disk_budget)
		size = ms->set.disk_budget;
	if ((rc = mdb_env_set_maxdbs(ms->env, 16)) ||
	    (rc = mdb_env_set_maxreaders(ms->env, ms->set.max_readers)) ||
	    (rc = mdb_env_set_mapsize(ms->env, size)) ||
	    (rc = mdb_env_open(ms->env, path, MDB_NOTLS, 0600))) {
		rc = ms__lmdb(ms, rc, "mdb_env_open");
		goto fail;
	}
	int dead;
	mdb_reader_check(ms->env, &dead);	/* slots of killed processes */
	MDB_envinfo info;
	mdb_env_info(ms->env, &info);
	ms->map_size = info.me_mapsize;
	if ((rc = env_init_dbs(ms)))
		goto fail;
	return 0;
fail:
	mdb_env_close(ms->env);
	ms->env = NULL;
	return rc;
}

void ms__env_close(ms_store *ms)
{
	if (ms->env)
		mdb_env_close(ms->env);
	ms->env = NULL;
}

/* Doubles the map, up to the disk budget. */
static int env_grow(ms_store *ms)
{
	if (ms->live_txns)
		return ms__fail(ms, MS_EBUSY, "map of %zu bytes is full and %d "
				"read transactions are open", ms->map_size,
				ms->live_txns);
	if (ms->map_size >= ms->set.disk_budget)
		return ms__fail(ms, MS_EFULL, "map of %zu bytes is full and the "
				"disk budget is %zu", ms->map_size,
				ms->set.disk_budget);
	size_t next = ms->map_size * 2;
	if (next > ms->set.disk_budget || next < ms->map_size)
		next = ms->set.disk_budget;
	int rc = mdb_env_set_mapsize(ms->env, next);
	if (rc)
		return ms__lmdb(ms, rc, "mdb_env_set_mapsize");
	MDB_envinfo info;
	mdb_env_info(ms->env, &info);
	ms->map_size = info.me_mapsize;
	return 0;
}

/* mdb_txn_begin, adopting a map grown by another process. */
static int txn_begin(ms_store *ms, unsigned flags, MDB_txn **txn)
{
	int rc = mdb_txn_begin(ms->env, NULL, flags, txn);
	if (rc == MDB_MAP_RESIZED && !ms->live_txns) {
		mdb_env_set_mapsize(ms->env, 0);
		MDB_envinfo info;
		mdb_env_info(ms->env, &info);
		ms->map_size = info.me_mapsize;
		rc = mdb_txn_begin(ms->env, NULL, flags, txn);
	}
	return rc ? ms__lmdb(ms, rc, "mdb_txn_begin") : 0;
}

int ms__write(ms_store *ms, ms__write_fn fn, void *arg)
{
	for (int tries = 0; tries < 64; tries++) {
		MDB_txn *txn;
		int rc = txn_begin(ms, 0, &txn);
		if (rc)
			return rc;
		rc = fn(ms, txn, arg);
		if (rc) {
			mdb_txn_abort(txn);
		} else {
			rc = mdb_txn_commit(txn);
			if (rc)
				rc = ms__lmdb(ms, rc, "mdb_txn_commit");
		}
		if (rc != MS__EMAPFULL)
			return rc;
		if ((rc = env_grow(ms)))
			return rc;
	}
	return ms__fail(ms, MS_EFULL, "map still full after growing");
}

/* ---- sessions ------------------------------------------------------- */

int ms__head_read(ms_store *ms, MDB_txn *txn, int64_t id, struct ms__head *h)
{
	uint8_t kb[8];
	ms__sid(kb, id);
	MDB_val k = { 8, kb }, v;
	int rc = mdb_get(txn, ms->db_heads, &k, &v);
	if (rc == MDB_NOTFOUND)
		return ms__fail(ms, MS_ENOTFOUND, "session %lld has no head",
				(long long)id);
	if (rc)
		return ms__lmdb(ms, rc, "read head");
	if (v.mv_size != sizeof(*h))
		return ms__fail(ms, MS_ECORRUPT, "head of session %lld: size %zu",
				(long long)id, v.mv_size);
	memcpy(h, v.mv_data, sizeof(*h));
	if (h->magic != MS__HEAD_MAGIC || h->version != MS_FORMAT_VERSION)
		return ms__fail(ms, MS_ECORRUPT, "head of session %lld: bad magic",
				(long long)id);
	return 0;
}

static int head_write(ms_store *ms, MDB_txn *txn, int64_t id,
		      const struct ms__head *h)
{
	uint8_t kb[8];
	ms__sid(kb, id);
	MDB_val k = { 8, kb }, v = { sizeof(*h), (void *)h };
	return ms__lmdb(ms, mdb_put(txn, ms->db_heads, &k, &v, 0), "write head");
}

struct head_create_arg {
	int64_t id;
	struct ms__head h;
};

static int head_create_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	struct head_create_arg *a = arg;
	struct ms__head old;
	int rc = ms__head_read(ms, txn, a->id, &old);
	if (rc == 0)
		return 0;	/* already there: creation is idempotent */
	if (rc != MS_ENOTFOUND)
		return rc;
	return head_write(ms, txn, a->id, &a->h);
}

int ms__head_create(ms_store *ms, int64_t id, const uint8_t fp[16],
		    const ms_geom *g)
{
	struct head_create_arg a;
	memset(&a, 0, sizeof(a));
	a.id = id;
	a.h.magic = MS__HEAD_MAGIC;
	a.h.version = MS_FORMAT_VERSION;
	a.h.mode = (uint8_t)g->mode;
	memcpy(a.h.fingerprint, fp, 16);
	a.h.n_layers = g->n_layers;
	a.h.n_kv_heads = g->n_kv_heads;
	a.h.head_dim = g->head_dim;
	a.h.block_tokens = g->block_tokens;
	return ms__write(ms, head_create_w, &a);
}

static int pfx_read(ms_store *ms, MDB_txn *txn, const uint8_t key[16],
		    struct ms__pfx *p)
{
	MDB_val k = { 16, (void *)key }, v;
	int rc = mdb_get(txn, ms->db_prefix, &k, &v);
	if (rc)
		return ms__lmdb(ms, rc, "read prefix");
	if (v.mv_size != sizeof(*p))
		return ms__fail(ms, MS_ECORRUPT, "prefix record size %zu",
				v.mv_size);
	memcpy(p, v.mv_data, sizeof(*p));
	return 0;
}

/* Drops one reference to a block, freeing it at zero. */
static int block_unref(ms_store *ms, MDB_txn *txn, const uint8_t key[16])
{
	struct ms__pfx p;
	int rc = pfx_read(ms, txn, key, &p);
	if (rc == MS_ENOTFOUND)
		return 0;	/* already gone (an earlier crash + gc) */
	if (rc)
		return rc;
	MDB_val k = { 16, (void *)key };
	if (p.refcount > 1) {
		p.refcount--;
		MDB_val v = { sizeof(p), &p };
		return ms__lmdb(ms, mdb_put(txn, ms->db_prefix, &k, &v, 0),
				"write prefix");
	}
	rc = mdb_del(txn, ms->db_prefix, &k, NULL);
	if (rc)
		return ms__lmdb(ms, rc, "delete prefix");
	rc = mdb_del(txn, ms->db_blocks, &k, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return ms__lmdb(ms, rc, "delete block");
	return 0;
}

/* Deletes every (id, *) key of a "chain"/"summaries" database; for the
 * chain, unrefs the blocks named. */
static int range_drop(ms_store *ms, MDB_txn *txn, MDB_dbi dbi, int64_t id,
		      uint64_t first, int unref)
{
	MDB_cursor *c;
	int rc = mdb_cursor_open(txn, dbi, &c);
	if (rc)
		return ms__lmdb(ms, rc, "cursor");
	struct ms__sidx sk;
	ms__sidx(&sk, id, first);
	for (;;) {
		/* Re-seek after each delete: simplest cursor rule to trust. */
		MDB_val k = { 16, sk.b }, v;
		rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
		if (rc || k.mv_size != 16 || memcmp(k.mv_data, sk.b, 8) != 0)
			break;
		if (unref && v.mv_size == 16) {
			uint8_t key[16];
			memcpy(key, v.mv_data, 16);
			if ((rc = block_unref(ms, txn, key)))
				goto out;
		}
		if ((rc = mdb_cursor_del(c, 0)))
			break;
	}
	rc = rc == MDB_NOTFOUND ? 0 : ms__lmdb(ms, rc, "range drop");
out:
	mdb_cursor_close(c);
	return rc;
}

int ms__session_drop(ms_store *ms, MDB_txn *txn, int64_t id)
{
	int rc;
	if ((rc = range_drop(ms, txn, ms->db_chain, id, 0, 1)) ||
	    (rc = range_drop(ms, txn, ms->db_sums, id, 0, 0)))
		return rc;
	uint8_t kb[8];
	ms__sid(kb, id);
	MDB_val k = { 8, kb };
	rc = mdb_del(txn, ms->db_heads, &k, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return ms__lmdb(ms, rc, "delete head");
	rc = mdb_del(txn, ms->db_tails, &k, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return ms__lmdb(ms, rc, "delete tail");
	return 0;
}

static int session_drop_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	return ms__session_drop(ms, txn, *(int64_t *)arg);
}

int ms__session_drop_w(ms_store *ms, int64_t id)
{
	return ms__write(ms, session_drop_w, &id);
}

/* ---- append / pop / tail -------------------------------------------- */

struct append_arg {
	int64_t id;
	const uint32_t *tokens;
	uint64_t n;		/* tokens in all */
	uint32_t max_n;		/* refuse more than this (0: no limit) */
	const float *k, *v;	/* [layer][head][n][head_dim] */
	ms_key key;		/* of the last block written */
	uint64_t n_tokens;	/* the session's, after */
	uint64_t n_blocks;	/* blocks appended */
	struct ms__head h;
};

static void head_geom(const struct ms__head *h, ms_geom *g)
{
	g->n_layers = h->n_layers;
	g->n_kv_heads = h->n_kv_heads;
	g->head_dim = h->head_dim;
	g->block_tokens = h->block_tokens;
	g->mode = (ms_mode)h->mode;
}

/* One block cut from the caller's arrays. */
struct piece {
	const uint32_t *tokens;
	uint32_t n;
	const float *k, *v;
	size_t stride;		/* floats between (layer, head) sections */
	uint64_t pos;
	const ms_key *parent;
	ms_key key;
};

/* Adds a reference to an existing block after checking its shape, or
 * writes the block. */
static int block_ref_or_put(ms_store *ms, MDB_txn *txn, const ms_geom *g,
			    const uint8_t fp[16], const struct piece *pc)
{
	MDB_val k = { 16, (void *)pc->key.b }, v;
	struct ms__pfx p;
	int rc = pfx_read(ms, txn, pc->key.b, &p);
	if (rc == 0) {
		rc = mdb_get(txn, ms->db_blocks, &k, &v);
		if (rc)
			return rc == MDB_NOTFOUND ?
			       ms__fail(ms, MS_ECORRUPT, "prefix entry without block") :
			       ms__lmdb(ms, rc, "read block");
		struct ms__block_hdr bh;
		if (v.mv_size < sizeof(bh))
			return ms__fail(ms, MS_ECORRUPT, "short block");
		memcpy(&bh, v.mv_data, sizeof(bh));
		if (bh.n_layers != g->n_layers || bh.n_kv_heads != g->n_kv_heads ||
		    bh.head_dim != g->head_dim || bh.n_tokens != pc->n)
			return ms__fail(ms, MS_EMISMATCH, "a block with this key "
					"has another geometry");
		p.refcount++;
		v.mv_size = sizeof(p);
		v.mv_data = &p;
		return ms__lmdb(ms, mdb_put(txn, ms->db_prefix, &k, &v, 0),
				"write prefix");
	}
	if (rc != MS_ENOTFOUND)
		return rc;
	v.mv_size = ms_block_record_size(g, pc->n);
	rc = mdb_put(txn, ms->db_blocks, &k, &v, MDB_RESERVE);
	if (rc)
		return ms__lmdb(ms, rc, "put block");
	/* Encoded straight into the map: no intermediate copy. */
	rc = ms__block_encode_strided(v.mv_data, g, fp, pc->parent, pc->pos,
				      pc->tokens, pc->n, pc->k, pc->v,
				      pc->stride);
	if (rc)
		return ms__fail(ms, rc, "encode block: %s", ms_strerror(rc));
	memset(&p, 0, sizeof(p));
	p.refcount = 1;
	p.n_tokens = (uint16_t)pc->n;
	p.position = pc->pos;
	if (pc->parent)
		memcpy(p.parent, pc->parent->b, 16);
	v.mv_size = sizeof(p);
	v.mv_data = &p;
	return ms__lmdb(ms, mdb_put(txn, ms->db_prefix, &k, &v, 0),
			"write prefix");
}

/* Block, chain entry and summary of one piece; advances h in memory. */
static int append_piece(ms_store *ms, MDB_txn *txn, int64_t id,
			struct ms__head *h, const ms_geom *g, struct piece *pc)
{
	/* Checked even when the block exists: the summary uses them. */
	if (!ms__kv_valid(g, pc->n, pc->k, pc->v, pc->stride))
		return ms__fail(ms, MS_ERANGE, "K/V of block %llu not finite or "
				"beyond the f16 range",
				(unsigned long long)h->n_blocks);
	ms_block_key(h->fingerprint, pc->parent, pc->tokens, pc->n, pc->pos,
		     &pc->key);
	int rc = block_ref_or_put(ms, txn, g, h->fingerprint, pc);
	if (rc)
		return rc;
	struct ms__sidx sk;
	ms__sidx(&sk, id, h->n_blocks);
	MDB_val k = { 16, sk.b }, v = { 16, pc->key.b };
	if ((rc = mdb_put(txn, ms->db_chain, &k, &v, 0)))
		return ms__lmdb(ms, rc, "put chain");
	v.mv_size = ms__summary_size(g);
	if ((rc = mdb_put(txn, ms->db_sums, &k, &v, MDB_RESERVE)))
		return ms__lmdb(ms, rc, "put summary");
	ms__summary_encode(v.mv_data, g, pc->n, pc->pos, &pc->key, pc->k,
			   pc->stride);
	h->n_blocks++;
	h->n_tokens += pc->n;
	memcpy(h->head_key, pc->key.b, 16);
	return 0;
}

static int append_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	struct append_arg *a = arg;
	struct ms__head *h = &a->h;
	int rc = ms__head_read(ms, txn, a->id, h);
	if (rc)
		return rc;
	ms_geom g;
	head_geom(h, &g);
	if (a->max_n && a->n > g.block_tokens)
		return ms__fail(ms, MS_EINVAL, "%llu tokens > block size %u",
				(unsigned long long)a->n, g.block_tokens);
	if (h->n_blocks) {
		struct ms__pfx p;
		if ((rc = pfx_read(ms, txn, h->head_key, &p)))
			return rc == MS_ENOTFOUND ?
			       ms__fail(ms, MS_ECORRUPT, "head block missing") : rc;
		if (p.n_tokens != g.block_tokens)
			return ms__fail(ms, MS_ESTATE, "last block is partial (%u "
					"of %u tokens): pop it first",
					p.n_tokens, g.block_tokens);
	}
	ms_key parent;
	memcpy(parent.b, h->head_key, 16);
	a->n_blocks = 0;
	for (uint64_t off = 0; off < a->n; off += g.block_tokens) {
		size_t d = g.head_dim;
		struct piece pc = {
			.tokens = a->tokens + off,
			.n = (uint32_t)(a->n - off < g.block_tokens ?
					a->n - off : g.block_tokens),
			.k = a->k + off * d, .v = a->v + off * d,
			.stride = a->n * d, .pos = h->n_tokens,
			.parent = h->n_blocks ? &parent : NULL,
		};
		if ((rc = append_piece(ms, txn, a->id, h, &g, &pc)))
			return rc;
		parent = pc.key;
		a->n_blocks++;
	}
	a->key = parent;
	a->n_tokens = h->n_tokens;
	return head_write(ms, txn, a->id, h);
}

int ms_session_append(ms_store *ms, int64_t id, const uint32_t *tokens,
		      uint32_t n_tokens, const float *k, const float *v,
		      ms_key *key_out)
{
	if (!ms || !tokens || !k || !v || n_tokens < 1 || n_tokens > MS__MAX_B)
		return ms__fail(ms, MS_EINVAL, "append: bad argument");
	struct append_arg a = { .id = id, .tokens = tokens, .n = n_tokens,
				.max_n = n_tokens, .k = k, .v = v };
	int rc = ms__write(ms, append_w, &a);
	if (rc)
		return rc;
	if (key_out)
		*key_out = a.key;
	/* Advisory: a failure here is repaired from LMDB at the next open. */
	ms__cat_set_count(ms, id, a.n_tokens, a.key.b);
	return 0;
}

int ms_session_append_n(ms_store *ms, int64_t id, const uint32_t *tokens,
			uint64_t n_tokens, const float *k, const float *v,
			uint64_t *n_blocks)
{
	if (!ms || !tokens || !k || !v || n_tokens < 1 ||
	    n_tokens > MS_APPEND_MAX_TOKENS)
		return ms__fail(ms, MS_EINVAL, "append_n: bad argument");
	struct append_arg a = { .id = id, .tokens = tokens, .n = n_tokens,
				.k = k, .v = v };
	int rc = ms__write(ms, append_w, &a);
	if (rc)
		return rc;
	if (n_blocks)
		*n_blocks = a.n_blocks;
	ms__cat_set_count(ms, id, a.n_tokens, a.key.b);
	return 0;
}

static int pop_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	struct append_arg *a = arg;
	struct ms__head *h = &a->h;
	int rc = ms__head_read(ms, txn, a->id, h);
	if (rc)
		return rc;
	if (!h->n_blocks)
		return ms__fail(ms, MS_ENOTFOUND, "session is empty");
	struct ms__pfx p;
	if ((rc = pfx_read(ms, txn, h->head_key, &p)))
		return rc == MS_ENOTFOUND ?
		       ms__fail(ms, MS_ECORRUPT, "head block missing") : rc;
	if ((rc = range_drop(ms, txn, ms->db_chain, a->id, h->n_blocks - 1, 1)) ||
	    (rc = range_drop(ms, txn, ms->db_sums, a->id, h->n_blocks - 1, 0)))
		return rc;
	h->n_blocks--;
	h->n_tokens -= p.n_tokens;
	memset(h->head_key, 0, 16);
	if (h->n_blocks) {
		struct ms__sidx sk;
		ms__sidx(&sk, a->id, h->n_blocks - 1);
		MDB_val k = { 16, sk.b }, v;
		if ((rc = mdb_get(txn, ms->db_chain, &k, &v)) || v.mv_size != 16)
			return rc ? ms__lmdb(ms, rc, "read chain") :
			       ms__fail(ms, MS_ECORRUPT, "chain entry size");
		memcpy(h->head_key, v.mv_data, 16);
	}
	memcpy(a->key.b, h->head_key, 16);
	a->n_tokens = h->n_tokens;
	return head_write(ms, txn, a->id, h);
}

int ms_session_pop(ms_store *ms, int64_t id)
{
	if (!ms)
		return MS_EINVAL;
	struct append_arg a = { .id = id };
	int rc = ms__write(ms, pop_w, &a);
	if (rc)
		return rc;
	ms__cat_set_count(ms, id, a.n_tokens, a.key.b);
	return 0;
}

struct tail_arg {
	int64_t id;
	const ms_geom *g;
	uint64_t pos;
	const uint32_t *tokens;
	uint32_t n;
	const float *k, *v;
};

static int tail_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	struct tail_arg *a = arg;
	struct ms__head h;
	int rc = ms__head_read(ms, txn, a->id, &h);
	if (rc)
		return rc;
	uint8_t kb[8];
	ms__sid(kb, a->id);
	MDB_val k = { 8, kb }, v = { ms_block_record_size(a->g, a->n), NULL };
	if ((rc = mdb_put(txn, ms->db_tails, &k, &v, MDB_RESERVE)))
		return ms__lmdb(ms, rc, "put tail");
	rc = ms__block_encode(v.mv_data, a->g, h.fingerprint, NULL, a->pos,
			      a->tokens, a->n, a->k, a->v);
	return rc ? ms__fail(ms, rc, "encode tail: %s", ms_strerror(rc)) : 0;
}

int ms_tail_put(ms_store *ms, int64_t id, const ms_geom *g, uint64_t position,
		const uint32_t *tokens, uint32_t n_tokens, const float *k,
		const float *v)
{
	if (!ms || !g || !tokens || !k || !v || n_tokens < 1 ||
	    n_tokens > MS__MAX_TAIL_TOKENS)
		return ms__fail(ms, MS_EINVAL, "tail: bad argument");
	ms_geom tg = *g;
	tg.block_tokens = 0;
	if (!ms__geom_valid(&tg, MS__MAX_TAIL_TOKENS))
		return ms__fail(ms, MS_EINVAL, "tail: bad geometry");
	struct tail_arg a = { id, &tg, position, tokens, n_tokens, k, v };
	return ms__write(ms, tail_w, &a);
}

/* ---- reading -------------------------------------------------------- */

int ms_read_begin(ms_store *ms, ms_txn **out)
{
	if (!ms || !out)
		return MS_EINVAL;
	*out = NULL;
	ms_txn *t = calloc(1, sizeof(*t));
	if (!t)
		return ms__fail(ms, MS_ENOMEM, "read txn");
	int rc = txn_begin(ms, MDB_RDONLY, &t->txn);
	if (rc) {
		free(t);
		return rc;
	}
	t->ms = ms;
	ms->live_txns++;
	*out = t;
	return 0;
}

void ms_read_end(ms_txn *t)
{
	if (!t)
		return;
	mdb_txn_abort(t->txn);
	t->ms->live_txns--;
	free(t);
}

int ms_block_get(ms_txn *t, const ms_key *key, ms_block *out)
{
	if (!t || !key || !out)
		return MS_EINVAL;
	MDB_val k = { 16, (void *)key->b }, v;
	int rc = mdb_get(t->txn, t->ms->db_blocks, &k, &v);
	if (rc)
		return ms__lmdb(t->ms, rc, "read block");
	rc = ms__block_parse(v.mv_data, v.mv_size, key, out);
	if (rc)
		return ms__fail(t->ms, rc, "block failed verification");
	return 0;
}

int ms_session_block(ms_txn *t, int64_t id, uint64_t index, ms_block *out)
{
	if (!t || !out)
		return MS_EINVAL;
	struct ms__sidx sk;
	ms__sidx(&sk, id, index);
	MDB_val k = { 16, sk.b }, v;
	int rc = mdb_get(t->txn, t->ms->db_chain, &k, &v);
	if (rc)
		return ms__lmdb(t->ms, rc, "read chain");
	if (v.mv_size != 16)
		return ms__fail(t->ms, MS_ECORRUPT, "chain entry size");
	ms_key key;
	memcpy(key.b, v.mv_data, 16);
	return ms_block_get(t, &key, out);
}

int ms_tail_get(ms_txn *t, int64_t id, ms_block *out)
{
	if (!t || !out)
		return MS_EINVAL;
	uint8_t kb[8];
	ms__sid(kb, id);
	MDB_val k = { 8, kb }, v;
	int rc = mdb_get(t->txn, t->ms->db_tails, &k, &v);
	if (rc)
		return ms__lmdb(t->ms, rc, "read tail");
	rc = ms__block_parse(v.mv_data, v.mv_size, NULL, out);
	return rc ? ms__fail(t->ms, rc, "tail failed verification") : 0;
}

int ms_session_head(ms_txn *t, int64_t id, ms_session_info *out)
{
	if (!t || !out)
		return MS_EINVAL;
	struct ms__head h;
	int rc = ms__head_read(t->ms, t->txn, id, &h);
	if (rc)
		return rc;
	memset(out, 0, sizeof(*out));
	out->id = id;
	memcpy(out->fingerprint, h.fingerprint, 16);
	out->n_tokens = h.n_tokens;
	out->n_blocks = h.n_blocks;
	memcpy(out->head.b, h.head_key, 16);
	head_geom(&h, &out->geom);
	return 0;
}

int ms_prefix_match(ms_txn *t, const uint8_t fingerprint[16],
		    const uint32_t *tokens, size_t n, uint32_t block_tokens,
		    uint64_t *n_blocks, uint64_t *n_tokens_matched)
{
	if (!t || !fingerprint || (!tokens && n) || block_tokens < 1 ||
	    block_tokens > MS__MAX_B || !n_blocks || !n_tokens_matched)
		return MS_EINVAL;
	*n_blocks = *n_tokens_matched = 0;
	ms_key parent, key;
	for (size_t pos = 0; pos < n; pos += block_tokens) {
		uint32_t len = n - pos < block_tokens ? (uint32_t)(n - pos) :
			       block_tokens;
		ms_block_key(fingerprint, pos ? &parent : NULL, tokens + pos,
			     len, pos, &key);
		struct ms__pfx p;
		int rc = pfx_read(t->ms, t->txn, key.b, &p);
		if (rc == MS_ENOTFOUND)
			break;
		if (rc)
			return rc;
		if (p.n_tokens != len)
			break;
		(*n_blocks)++;
		*n_tokens_matched += len;
		parent = key;
	}
	return 0;
}

int ms_summary_scan(ms_txn *t, int64_t id, uint64_t first, ms_summary_fn fn,
		    void *arg)
{
	if (!t || !fn)
		return MS_EINVAL;
	MDB_cursor *c;
	int rc = mdb_cursor_open(t->txn, t->ms->db_sums, &c);
	if (rc)
		return ms__lmdb(t->ms, rc, "cursor");
	struct ms__sidx sk;
	ms__sidx(&sk, id, first);
	MDB_val k = { 16, sk.b }, v;
	rc = mdb_cursor_get(c, &k, &v, MDB_SET_RANGE);
	while (rc == 0 && k.mv_size == 16 && memcmp(k.mv_data, sk.b, 8) == 0) {
		struct ms__sum_hdr h;
		if (v.mv_size < sizeof(h)) {
			rc = ms__fail(t->ms, MS_ECORRUPT, "short summary");
			goto out;
		}
		memcpy(&h, v.mv_data, sizeof(h));
		ms_geom g = { h.n_layers, h.n_kv_heads, h.head_dim, 0, 0 };
		if (h.magic != MS__SUM_MAGIC || h.version != MS_FORMAT_VERSION ||
		    v.mv_size != ms__summary_size(&g)) {
			rc = ms__fail(t->ms, MS_ECORRUPT, "bad summary record");
			goto out;
		}
		ms_summary s = {
			.index = (uint64_t)ms__sid_get((const uint8_t *)k.mv_data + 8),
			.position = h.position, .n_tokens = h.n_tokens,
			.n_layers = h.n_layers, .n_kv_heads = h.n_kv_heads,
			.head_dim = h.head_dim,
			.data = (const uint8_t *)v.mv_data + sizeof(h),
		};
		memcpy(s.key.b, h.key, 16);
		if ((rc = fn(arg, &s)))
			goto out;
		rc = mdb_cursor_get(c, &k, &v, MDB_NEXT);
	}
	rc = rc == MDB_NOTFOUND ? 0 : ms__lmdb(t->ms, rc, "summary scan");
out:
	mdb_cursor_close(c);
	return rc;
}
