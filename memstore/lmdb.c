/* lmdb.c - the LMDB side of the store: the environment and its named
 * databases, write transactions that grow the map within the disk budget,
 * read transactions and zero-copy block views.
 * Design and lifetimes: the top of memstore.h. */
#include "config.h"
#include <errno.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <sys/sysmacros.h>
#include <unistd.h>
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

/* The kernel's readahead is off for the map (MDB_NORDAHEAD): our reads
 * are random (a B-tree page here, a 196 KB block record there), and on a
 * disk whose read_ahead_kb is large (8 MB on the bench VM) every fault on
 * a cold page read megabytes around it: at 1.17M tokens the first
 * question's lookups cost 0.6 s of CPU in the page cache alone.  What we
 * read whole, we ask for whole before touching it. */
void ms__willneed(const void *p, size_t n)
{
	/* The kernel reads at most max(readahead, device request) per call
	 * and drops the rest, and that can be 128 KB: ask piece by piece. */
	enum { PIECE = 128 << 10 };
	long pg = sysconf(_SC_PAGESIZE);
	if (pg <= 0 || !n)
		return;
	uintptr_t a = (uintptr_t)p & ~(uintptr_t)(pg - 1);
	uintptr_t e = (uintptr_t)p + n;
	for (; a < e; a += PIECE)
		(void)madvise((void *)a, e - a < PIECE ? e - a : PIECE,
		    MADV_WILLNEED);
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
	{ "sumpacks", offsetof(ms_store, db_packs) },
	{ "checkpoints", offsetof(ms_store, db_ckpts) },
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

/* A data file shorter than the pages its meta page counts (a copy cut
 * short, a restore from a partial backup) is refused here: LMDB reads it
 * through the map, and the first read past the file's end would kill
 * the process with SIGBUS rather than return an error.  LMDB read the
 * meta pages with read(2), so they are checked already. */
static int env_check_size(ms_store *ms, const char *dir,
			  const MDB_envinfo *info)
{
	mdb_filehandle_t fd;
	MDB_stat es;
	struct stat st;
	if (mdb_env_get_fd(ms->env, &fd) || fstat(fd, &st) ||
	    mdb_env_stat(ms->env, &es))
		return ms__fail(ms, MS_EIO, "%s/data.mdb: %s", dir,
				strerror(errno));
	unsigned long long need = ((unsigned long long)info->me_last_pgno + 1) *
				  es.ms_psize;
	if ((unsigned long long)st.st_size < need)
		return ms__fail(ms, MS_ECORRUPT, "%s/data.mdb is %lld bytes, "
				"shorter than the %llu its pages take: the file "
				"was cut short (restore it from a copy, or move "
				"the store away to start afresh)", dir,
				(long long)st.st_size, need);
	return 0;
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
	    (rc = mdb_env_open(ms->env, path, MDB_NOTLS | MDB_NORDAHEAD,
				0600))) {
		rc = ms__lmdb(ms, rc, "mdb_env_open");
		goto fail;
	}
	int dead;
	mdb_reader_check(ms->env, &dead);	/* slots of killed processes */
	MDB_envinfo info;
	mdb_env_info(ms->env, &info);
	ms->map_size = info.me_mapsize;
	if ((rc = env_check_size(ms, path, &info)) ||
	    (rc = env_init_dbs(ms)))
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

int ms_trim(ms_store *ms)
{
	if (!ms || !ms->env)
		return MS_EINVAL;
	/* LMDB does not say where it mapped the file (mdb_env_info's
	 * me_mapaddr is only the MDB_FIXEDMAP address): the map is what
	 * /proc/self/maps lists for the data file's device and inode
	 * (elsewhere there is nothing to do). */
	mdb_filehandle_t fd;
	struct stat st;
	char line[4400];
	int rc = 0;
	if (mdb_env_get_fd(ms->env, &fd) || fstat(fd, &st))
		return ms__fail(ms, MS_EIO, "trim: the data file: %s",
				strerror(errno));
	FILE *f = fopen("/proc/self/maps", "r");
	if (!f)
		return 0;
	while (!rc && fgets(line, sizeof(line), f)) {
		unsigned long a, b, maj, min, ino;
		if (sscanf(line, "%lx-%lx %*s %*x %lx:%lx %lu", &a, &b, &maj,
			   &min, &ino) == 5 && ino == (unsigned long)st.st_ino &&
		    maj == major(st.st_dev) && min == minor(st.st_dev) &&
		    madvise((void *)a, b - a, MADV_DONTNEED))
			rc = ms__fail(ms, MS_EIO, "trim: madvise: %s",
				      strerror(errno));
	}
	fclose(f);
	return rc;
}

/* Records a scan of the map reads between two trims.  A record's first
 * touch maps more than its page: with the file in the page cache (a store
 * written moments ago) the kernel's fault-around maps the 64 KB around
 * each fault, and a large folio whole (Linux 6.18: up to 2 MB; the cache
 * holds a file read sequentially, or written in large pieces, in such
 * folios), so one pass over a 1M-token session's 18K summary headers put
 * 1.2 GB in engramd's RSS.  256 records: 16 MB between trims at 64 KB a
 * record, the records' span of the file at most; a few hundred trims (a
 * /proc/self/maps read and an madvise each) at 1M. */
#define MS__SCAN_TRIM 256

/* The i-th record of a scan: every MS__SCAN_TRIM, the map's pages out of
 * RSS (ms_trim; best effort, a scan does not fail for its RSS).  Safe
 * inside a write: the map is read-only and shared, a page read again
 * faults the same bytes back, and the map does not move within a
 * transaction. */
void ms__scan_trim(ms_store *ms, uint64_t i)
{
	if (i % MS__SCAN_TRIM == MS__SCAN_TRIM - 1)
		(void)ms_trim(ms);
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

/* The key of block index of session id, from its chain. */
static int chain_read(ms_store *ms, MDB_txn *txn, int64_t id, uint64_t index,
		      uint8_t key[16])
{
	struct ms__sidx sk;
	ms__sidx(&sk, id, index);
	MDB_val k = { 16, sk.b }, v;
	int rc = mdb_get(txn, ms->db_chain, &k, &v);
	if (rc)
		return ms__lmdb(ms, rc, "read chain");
	if (v.mv_size != 16)
		return ms__fail(ms, MS_ECORRUPT, "chain entry size");
	memcpy(key, v.mv_data, 16);
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
	/* a checkpoint lives as long as the block it ends */
	rc = mdb_del(txn, ms->db_ckpts, &k, NULL);
	if (rc && rc != MDB_NOTFOUND)
		return ms__lmdb(ms, rc, "delete checkpoint");
	return 0;
}

/* 1 if the session (id: 8 bytes, big-endian) has a pack of records
 * before index first only: dropping records from first leaves it true
 * (a turn kept after a partial last block drops that block's record). */
static int pack_before(MDB_txn *txn, ms_store *ms, const uint8_t *id,
		       uint64_t first)
{
	struct ms__pack_hdr ph;
	MDB_val pk = { 8, (void *)id }, v;
	if (mdb_get(txn, ms->db_packs, &pk, &v) || v.mv_size < sizeof(ph))
		return 0;
	memcpy(&ph, v.mv_data, sizeof(ph));
	return ph.magic == MS__PACK_MAGIC && ph.n && ph.n <= first;
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
	if (dbi == ms->db_sums && !pack_before(txn, ms, sk.b, first)) {
		/* a pack copies the summaries: it goes with any it holds */
		MDB_val pk = { 8, sk.b };
		rc = mdb_del(txn, ms->db_packs, &pk, NULL);
		if (rc && rc != MDB_NOTFOUND) {
			mdb_cursor_close(c);
			return ms__lmdb(ms, rc, "delete summary pack");
		}
	}
	for (uint64_t n = 0;; ms__scan_trim(ms, n++)) {
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

/* ---- append / pop / tail / commit / truncate / fork ------------------ */

/* The helpers below work inside the caller's write transaction on a head
 * read into memory; the caller writes the head back once, last.  Every
 * public write is one ms__write of one _w function built from them, so it
 * is all or nothing. */

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

/* Writes the block's record under its key (new, or over a damaged one). */
static int block_put(ms_store *ms, MDB_txn *txn, const ms_geom *g,
		     const uint8_t fp[16], const struct piece *pc)
{
	MDB_val k = { 16, (void *)pc->key.b }, v;
	v.mv_size = ms_block_record_size(g, pc->n);
	int rc = mdb_put(txn, ms->db_blocks, &k, &v, MDB_RESERVE);
	if (rc)
		return ms__lmdb(ms, rc, "put block");
	/* Encoded straight into the map: no intermediate copy. */
	rc = ms__block_encode_strided(v.mv_data, g, fp, pc->parent, pc->pos,
				      pc->tokens, pc->n, pc->k, pc->v,
				      pc->stride);
	return rc ? ms__fail(ms, rc, "encode block: %s", ms_strerror(rc)) : 0;
}

/* Adds a reference to an existing block after checking its shape, or
 * writes the block.  An existing record that fails verification (a bit
 * flipped on disk, a page overwritten) is written again from the one
 * just computed, the same bytes as a sound one under that key: so
 * prefilling a damaged session again (prefill --no-reuse) repairs the
 * blocks it shares with others too; the checksum costs ~20 us a block. */
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
		ms_block ob;
		if (ms__block_parse(v.mv_data, v.mv_size, &pc->key, &ob)) {
			if ((rc = block_put(ms, txn, g, fp, pc)))
				return rc;
		} else if (ob.geom.n_layers != g->n_layers ||
			   ob.geom.n_kv_heads != g->n_kv_heads ||
			   ob.geom.head_dim != g->head_dim ||
			   ob.n_tokens != pc->n) {
			return ms__fail(ms, MS_EMISMATCH, "a block with this key "
					"has another geometry");
		}
		p.refcount++;
		v.mv_size = sizeof(p);
		v.mv_data = &p;
		return ms__lmdb(ms, mdb_put(txn, ms->db_prefix, &k, &v, 0),
				"write prefix");
	}
	if (rc != MS_ENOTFOUND)
		return rc;
	if ((rc = block_put(ms, txn, g, fp, pc)))
		return rc;
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
	v.mv_size = ms__summary_size(g, pc->n);
	if ((rc = mdb_put(txn, ms->db_sums, &k, &v, MDB_RESERVE)))
		return ms__lmdb(ms, rc, "put summary");
	ms__summary_encode(v.mv_data, g, pc->n, pc->pos, &pc->key, pc->k,
			   pc->stride);
	h->n_blocks++;
	h->n_tokens += pc->n;
	memcpy(h->head_key, pc->key.b, 16);
	return 0;
}

/* MS_ESTATE unless the session is empty or its last block is full: only
 * then may blocks follow it. */
static int last_block_full(ms_store *ms, MDB_txn *txn, const struct ms__head *h)
{
	if (!h->n_blocks)
		return 0;
	struct ms__pfx p;
	int rc = pfx_read(ms, txn, h->head_key, &p);
	if (rc)
		return rc == MS_ENOTFOUND ?
		       ms__fail(ms, MS_ECORRUPT, "head block missing") : rc;
	if (p.n_tokens != h->block_tokens)
		return ms__fail(ms, MS_ESTATE, "last block is partial (%u "
				"of %u tokens): pop it first",
				p.n_tokens, h->block_tokens);
	return 0;
}

/* Appends tokens[0..n) with K/V [layer][head][n][head_dim] as blocks of B
 * (the last may be partial) after the head, which last_block_full has
 * accepted; advances h in memory.  *n_blocks receives the blocks added. */
static int blocks_append(ms_store *ms, MDB_txn *txn, int64_t id,
			 struct ms__head *h, const uint32_t *tokens, uint64_t n,
			 const float *k, const float *v, uint64_t *n_blocks)
{
	ms_geom g;
	head_geom(h, &g);
	ms_key parent;
	memcpy(parent.b, h->head_key, 16);
	*n_blocks = 0;
	for (uint64_t off = 0; off < n; off += g.block_tokens) {
		size_t d = g.head_dim;
		struct piece pc = {
			.tokens = tokens + off,
			.n = (uint32_t)(n - off < g.block_tokens ?
					n - off : g.block_tokens),
			.k = k + off * d, .v = v + off * d,
			.stride = n * d, .pos = h->n_tokens,
			.parent = h->n_blocks ? &parent : NULL,
		};
		int rc = append_piece(ms, txn, id, h, &g, &pc);
		if (rc)
			return rc;
		parent = pc.key;
		(*n_blocks)++;
	}
	return 0;
}

/* Drops the blocks of index >= keep (chain entries with their references,
 * freeing blocks that reach 0, and summaries) and moves h back to end at
 * block keep - 1.  Every block but the last is full (ms_check verifies
 * it), so the blocks kept hold keep * B tokens. */
static int blocks_cut(ms_store *ms, MDB_txn *txn, int64_t id,
		      struct ms__head *h, uint64_t keep)
{
	if (keep >= h->n_blocks)
		return 0;
	int rc;
	if ((rc = range_drop(ms, txn, ms->db_chain, id, keep, 1)) ||
	    (rc = range_drop(ms, txn, ms->db_sums, id, keep, 0)))
		return rc;
	h->n_blocks = keep;
	h->n_tokens = keep * h->block_tokens;
	memset(h->head_key, 0, 16);
	if (keep && (rc = chain_read(ms, txn, id, keep - 1, h->head_key)))
		return rc;
	return 0;
}

/* Replaces the session's tail record; g is valid with block_tokens 0. */
static int tail_write(ms_store *ms, MDB_txn *txn, int64_t id,
		      const uint8_t fp[16], const ms_geom *g, uint64_t pos,
		      const uint32_t *tokens, uint32_t n, const float *k,
		      const float *v)
{
	uint8_t kb[8];
	ms__sid(kb, id);
	MDB_val key = { 8, kb }, val = { ms_block_record_size(g, n), NULL };
	int rc = mdb_put(txn, ms->db_tails, &key, &val, MDB_RESERVE);
	if (rc)
		return ms__lmdb(ms, rc, "put tail");
	rc = ms__block_encode(val.mv_data, g, fp, NULL, pos, tokens, n, k, v);
	return rc ? ms__fail(ms, rc, "encode tail: %s", ms_strerror(rc)) : 0;
}

static int tail_delete(ms_store *ms, MDB_txn *txn, int64_t id)
{
	uint8_t kb[8];
	ms__sid(kb, id);
	MDB_val k = { 8, kb };
	int rc = mdb_del(txn, ms->db_tails, &k, NULL);
	return rc && rc != MDB_NOTFOUND ? ms__lmdb(ms, rc, "delete tail") : 0;
}

/* Checks a tail's arguments; *tg receives g with block_tokens 0. */
static int tail_args(ms_store *ms, const ms_geom *g, const uint32_t *tokens,
		     uint32_t n, const float *k, const float *v, ms_geom *tg)
{
	if (!g || !tokens || !k || !v || n < 1 || n > MS__MAX_TAIL_TOKENS)
		return ms__fail(ms, MS_EINVAL, "tail: bad argument");
	*tg = *g;
	tg->block_tokens = 0;
	if (!ms__geom_valid(tg, MS__MAX_TAIL_TOKENS))
		return ms__fail(ms, MS_EINVAL, "tail: bad geometry");
	return 0;
}

/* A head read for a write that needs B (a corrupt 0 would divide by 0). */
static int head_read_b(ms_store *ms, MDB_txn *txn, int64_t id,
		       struct ms__head *h)
{
	int rc = ms__head_read(ms, txn, id, h);
	if (rc)
		return rc;
	if (h->block_tokens < 1 || h->block_tokens > MS__MAX_B)
		return ms__fail(ms, MS_ECORRUPT, "head of session %lld: block "
				"size %u", (long long)id, h->block_tokens);
	return 0;
}

struct append_arg {
	int64_t id;
	const uint32_t *tokens;
	uint64_t n;		/* tokens in all */
	uint32_t max_n;		/* refuse more than this (0: no limit) */
	const float *k, *v;	/* [layer][head][n][head_dim] */
	ms_key key;		/* the head's after */
	uint64_t n_tokens;	/* the session's, after */
	uint64_t n_blocks;	/* blocks appended */
	struct ms__head h;
};

static int append_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	struct append_arg *a = arg;
	struct ms__head *h = &a->h;
	int rc = head_read_b(ms, txn, a->id, h);
	if (rc)
		return rc;
	if (a->max_n && a->n > h->block_tokens)
		return ms__fail(ms, MS_EINVAL, "%llu tokens > block size %u",
				(unsigned long long)a->n, h->block_tokens);
	if ((rc = last_block_full(ms, txn, h)) ||
	    (rc = blocks_append(ms, txn, a->id, h, a->tokens, a->n, a->k, a->v,
				&a->n_blocks)))
		return rc;
	memcpy(a->key.b, h->head_key, 16);
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
	int rc = head_read_b(ms, txn, a->id, h);
	if (rc)
		return rc;
	if (!h->n_blocks)
		return ms__fail(ms, MS_ENOTFOUND, "session is empty");
	if ((rc = blocks_cut(ms, txn, a->id, h, h->n_blocks - 1)))
		return rc;
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
	return tail_write(ms, txn, a->id, h.fingerprint, a->g, a->pos,
			  a->tokens, a->n, a->k, a->v);
}

int ms_tail_put(ms_store *ms, int64_t id, const ms_geom *g, uint64_t position,
		const uint32_t *tokens, uint32_t n_tokens, const float *k,
		const float *v)
{
	if (!ms)
		return MS_EINVAL;
	ms_geom tg;
	int rc = tail_args(ms, g, tokens, n_tokens, k, v, &tg);
	if (rc)
		return rc;
	struct tail_arg a = { id, &tg, position, tokens, n_tokens, k, v };
	return ms__write(ms, tail_w, &a);
}

/* Keeps the tail as the checkpoint of the session's last block (the
 * block key names the whole prefix, so any session with this prefix may
 * start from it: ms_session_adopt). */
static int ckpt_write(ms_store *ms, MDB_txn *txn, int64_t id,
		      const struct ms__head *h, const ms_geom *tg,
		      const ms_tail *t)
{
	struct ms__ckpt_hdr ch = { MS__CKPT_MAGIC, MS_FORMAT_VERSION, id };
	MDB_val key = { 16, (void *)h->head_key },
		val = { sizeof(ch) + ms_block_record_size(tg, t->n_tokens), NULL };
	int rc = mdb_put(txn, ms->db_ckpts, &key, &val, MDB_RESERVE);
	if (rc)
		return ms__lmdb(ms, rc, "put checkpoint");
	memcpy(val.mv_data, &ch, sizeof(ch));
	rc = ms__block_encode((uint8_t *)val.mv_data + sizeof(ch), tg,
			      h->fingerprint, NULL, t->position, t->tokens,
			      t->n_tokens, t->k, t->v);
	return rc ? ms__fail(ms, rc, "encode checkpoint: %s",
			     ms_strerror(rc)) : 0;
}

struct commit_arg {
	struct append_arg ap;	/* id, tokens, n, k, v in; key, n_* out */
	uint64_t first;
	const ms_tail *tail;	/* NULL: leave the tail alone */
	ms_geom tg;		/* tail->geom with block_tokens 0 */
};

static int commit_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	struct commit_arg *a = arg;
	struct append_arg *ap = &a->ap;
	struct ms__head *h = &ap->h;
	int rc = head_read_b(ms, txn, ap->id, h);
	if (rc)
		return rc;
	/* Blocks restart at the last full-block boundary (a partial last
	 * block is re-sent by the caller); a tail-only commit adds nothing. */
	uint64_t want = ap->n ? h->n_tokens - h->n_tokens % h->block_tokens :
			h->n_tokens;
	if (a->first != want)
		return ms__fail(ms, MS_ESTATE, "commit at token %llu: session "
				"%lld holds %llu tokens, so first must be %llu",
				(unsigned long long)a->first, (long long)ap->id,
				(unsigned long long)h->n_tokens,
				(unsigned long long)want);
	ap->n_blocks = 0;
	if (ap->n) {
		if (h->n_tokens != want &&
		    (rc = blocks_cut(ms, txn, ap->id, h, h->n_blocks - 1)))
			return rc;
		if ((rc = last_block_full(ms, txn, h)) ||
		    (rc = blocks_append(ms, txn, ap->id, h, ap->tokens, ap->n,
					ap->k, ap->v, &ap->n_blocks)) ||
		    (rc = head_write(ms, txn, ap->id, h)))
			return rc;
	}
	if (a->tail && (rc = tail_write(ms, txn, ap->id, h->fingerprint, &a->tg,
					a->tail->position, a->tail->tokens,
					a->tail->n_tokens, a->tail->k,
					a->tail->v)))
		return rc;
	if (a->tail && a->tail->checkpoint) {
		if (!h->n_blocks || a->tail->position + a->tail->n_tokens !=
		    h->n_tokens)
			return ms__fail(ms, MS_EINVAL, "checkpoint: the tail "
					"must end where the session ends");
		if ((rc = ckpt_write(ms, txn, ap->id, h, &a->tg, a->tail)))
			return rc;
	}
	memcpy(ap->key.b, h->head_key, 16);
	ap->n_tokens = h->n_tokens;
	return 0;
}

int ms_session_commit(ms_store *ms, int64_t id, uint64_t first,
		      const uint32_t *tokens, uint64_t n_tokens, const float *k,
		      const float *v, const ms_tail *tail, uint64_t *n_blocks)
{
	if (!ms)
		return MS_EINVAL;
	if ((n_tokens && (!tokens || !k || !v)) ||
	    n_tokens > MS_APPEND_MAX_TOKENS || (!n_tokens && !tail))
		return ms__fail(ms, MS_EINVAL, "commit: bad argument");
	struct commit_arg a = {
		.ap = { .id = id, .tokens = tokens, .n = n_tokens, .k = k,
			.v = v },
		.first = first, .tail = tail,
	};
	int rc;
	if (tail && (rc = tail_args(ms, &tail->geom, tail->tokens,
				    tail->n_tokens, tail->k, tail->v, &a.tg)))
		return rc;
	if ((rc = ms__write(ms, commit_w, &a)))
		return rc;
	if (n_blocks)
		*n_blocks = a.ap.n_blocks;
	if (n_tokens)
		ms__cat_set_count(ms, id, a.ap.n_tokens, a.ap.key.b);
	return 0;
}

static int truncate_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	struct append_arg *a = arg;	/* n: the cut; n_blocks: 1 if cut */
	struct ms__head *h = &a->h;
	int rc = head_read_b(ms, txn, a->id, h);
	if (rc)
		return rc;
	a->n_blocks = 0;
	if (a->n >= h->n_tokens)
		return 0;	/* nothing past the cut: an empty commit */
	if ((rc = blocks_cut(ms, txn, a->id, h, a->n / h->block_tokens)) ||
	    (rc = tail_delete(ms, txn, a->id)))
		return rc;
	a->n_blocks = 1;
	memcpy(a->key.b, h->head_key, 16);
	a->n_tokens = h->n_tokens;
	return head_write(ms, txn, a->id, h);
}

int ms_session_truncate(ms_store *ms, int64_t id, uint64_t n_tokens)
{
	if (!ms)
		return MS_EINVAL;
	struct append_arg a = { .id = id, .n = n_tokens };
	int rc = ms__write(ms, truncate_w, &a);
	if (rc)
		return rc;
	if (a.n_blocks)
		ms__cat_set_count(ms, id, a.n_tokens, a.key.b);
	return 0;
}

/* A growing buffer for copies of records. */
struct vbuf {
	uint8_t *buf;
	size_t cap;
};

/* Copies v into b: a value read in a write transaction may sit in a
 * dirty page that the next put rewrites, so it is never put from there. */
static int val_copy(ms_store *ms, struct vbuf *b, const MDB_val *v)
{
	if (v->mv_size > b->cap) {
		uint8_t *nb = realloc(b->buf, v->mv_size);
		if (!nb)
			return ms__fail(ms, MS_ENOMEM, "copy: %zu bytes",
					v->mv_size);
		b->buf = nb;
		b->cap = v->mv_size;
	}
	memcpy(b->buf, v->mv_data, v->mv_size);
	return 0;
}

struct fork_arg {
	int64_t from, to;
	struct ms__head h;	/* from's, then to's */
	struct vbuf cb;		/* copies of records */
};

static int fork_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	struct fork_arg *a = arg;
	struct ms__head *h = &a->h;
	struct ms__head old;
	int rc = ms__head_read(ms, txn, a->to, &old);
	if (rc != MS_ENOTFOUND)
		return rc ? rc : ms__fail(ms, MS_EEXIST, "session %lld already "
					  "has a head", (long long)a->to);
	if ((rc = ms__head_read(ms, txn, a->from, h)))
		return rc;
	for (uint64_t i = 0; i < h->n_blocks; i++) {
		struct ms__sidx sf, st;
		ms__sidx(&sf, a->from, i);
		ms__sidx(&st, a->to, i);
		MDB_val kf = { 16, sf.b }, kt = { 16, st.b }, v;
		uint8_t key[16];
		if ((rc = chain_read(ms, txn, a->from, i, key)))
			return rc;
		struct ms__pfx p;
		if ((rc = pfx_read(ms, txn, key, &p)))
			return rc == MS_ENOTFOUND ? ms__fail(ms, MS_ECORRUPT,
				"fork: block %llu missing",
				(unsigned long long)i) : rc;
		p.refcount++;
		MDB_val pk = { 16, key }, pv = { sizeof(p), &p };
		v.mv_size = 16;
		v.mv_data = key;
		if ((rc = mdb_put(txn, ms->db_prefix, &pk, &pv, 0)) ||
		    (rc = mdb_put(txn, ms->db_chain, &kt, &v, 0)))
			return ms__lmdb(ms, rc, "fork: put chain");
		if ((rc = mdb_get(txn, ms->db_sums, &kf, &v)))
			return rc == MDB_NOTFOUND ? ms__fail(ms, MS_ECORRUPT,
				"fork: summary %llu missing",
				(unsigned long long)i) :
			       ms__lmdb(ms, rc, "fork: read summary");
		if ((rc = val_copy(ms, &a->cb, &v)))
			return rc;
		v.mv_data = a->cb.buf;
		if ((rc = mdb_put(txn, ms->db_sums, &kt, &v, 0)))
			return ms__lmdb(ms, rc, "fork: put summary");
		ms__scan_trim(ms, i);
	}
	uint8_t kf[8], kt[8];
	ms__sid(kf, a->from);
	ms__sid(kt, a->to);
	MDB_val tk = { 8, kf }, tv;
	rc = mdb_get(txn, ms->db_tails, &tk, &tv);
	if (rc == 0) {
		if ((rc = val_copy(ms, &a->cb, &tv)))
			return rc;
		tk.mv_data = kt;
		tv.mv_data = a->cb.buf;
		if ((rc = mdb_put(txn, ms->db_tails, &tk, &tv, 0)))
			return ms__lmdb(ms, rc, "fork: put tail");
	} else if (rc != MDB_NOTFOUND) {
		return ms__lmdb(ms, rc, "fork: read tail");
	}
	return head_write(ms, txn, a->to, h);
}

int ms__session_fork_w(ms_store *ms, int64_t from, int64_t to,
		       uint64_t *n_tokens, uint8_t head[16])
{
	struct fork_arg a = { .from = from, .to = to };
	int rc = ms__write(ms, fork_w, &a);
	free(a.cb.buf);
	if (rc)
		return rc;
	*n_tokens = a.h.n_tokens;
	memcpy(head, a.h.head_key, 16);
	return 0;
}

/* ---- checkpoints: adopt, rewind -------------------------------------- */

uint64_t ms__ckpt_end(const MDB_val *v)
{
	struct ms__ckpt_hdr ch;
	struct ms__block_hdr bh;
	if (v->mv_size < sizeof(ch) + sizeof(bh))
		return 0;
	memcpy(&ch, v->mv_data, sizeof(ch));
	memcpy(&bh, (const uint8_t *)v->mv_data + sizeof(ch), sizeof(bh));
	if (ch.magic != MS__CKPT_MAGIC || ch.version != MS_FORMAT_VERSION)
		return 0;
	return bh.position + bh.n_tokens;
}

/* Makes a copy (val_copy) of a checkpoint record, len bytes, session
 * id's tail. */
static int ckpt_to_tail(ms_store *ms, MDB_txn *txn, int64_t id,
			const uint8_t *copy, size_t len)
{
	size_t skip = sizeof(struct ms__ckpt_hdr);
	uint8_t kb[8];
	ms__sid(kb, id);
	MDB_val tk = { 8, kb }, tv = { len - skip, (void *)(copy + skip) };
	return ms__lmdb(ms, mdb_put(txn, ms->db_tails, &tk, &tv, 0),
			"put tail");
}

struct adopt_arg {
	int64_t id;
	const uint32_t *tokens;
	uint64_t n;
	ms_key *keys;		/* [n / B + 1]: the context's block keys */
	struct vbuf cb;		/* copies of records */
	float *kf;		/* one block's keys, decoded */
	size_t kf_cap;		/* floats */
	uint64_t taken;		/* out: positions adopted by this stretch */
	uint64_t n_tokens;	/* out: the session's length after it */
	ms_key head;		/* out: the last adopted block's key */
};

/* The next stretch of the context that the store holds, from block from
 * (the session's end) to the first checkpoint past it: *nb blocks in all,
 * *end tokens (*nb == from: none).  Keys are hashed from the start (a
 * key names its whole prefix); those from block from on are looked up
 * until the first missing or the first with a checkpoint at its end. */
static int adopt_find(ms_store *ms, MDB_txn *txn, struct adopt_arg *a,
		      const struct ms__head *h, uint64_t from, uint64_t *nb,
		      uint64_t *end)
{
	uint32_t B = h->block_tokens;
	*nb = from;
	*end = from * B;
	for (uint64_t j = 0, off = 0; off < a->n; j++, off += B) {
		uint32_t len = a->n - off < B ? (uint32_t)(a->n - off) : B;
		struct ms__pfx p;
		ms_block_key(h->fingerprint, j ? &a->keys[j - 1] : NULL,
			     a->tokens + off, len, off, &a->keys[j]);
		if (j + 1 < from)
			continue;
		if (j + 1 == from) {
			if (memcmp(a->keys[j].b, h->head_key, 16))
				return ms__fail(ms, MS_EMISMATCH, "adopt: the "
						"session's KV is not a prefix "
						"of its context");
			continue;
		}
		int rc = pfx_read(ms, txn, a->keys[j].b, &p);
		if (rc == MS_ENOTFOUND || (!rc && p.n_tokens != len))
			break;
		if (rc)
			return rc;
		MDB_val k = { 16, a->keys[j].b }, v;
		if (!mdb_get(txn, ms->db_ckpts, &k, &v) &&
		    ms__ckpt_end(&v) == off + len) {
			*nb = j + 1;
			*end = off + len;
			break;
		}
	}
	return 0;
}

/* Block i's summary for the adopting session: the source session's copy
 * while it holds the same block at i (and it has codes), else made again
 * from the block (ms__summary_remake). */
static int adopt_summary(ms_store *ms, MDB_txn *txn, struct adopt_arg *a,
			 const ms_geom *g, int64_t src, uint64_t i)
{
	struct ms__sidx sf, st;
	ms__sidx(&sf, src, i);
	ms__sidx(&st, a->id, i);
	MDB_val kf = { 16, sf.b }, kt = { 16, st.b }, v;
	int rc = mdb_get(txn, ms->db_sums, &kf, &v);
	if (rc && rc != MDB_NOTFOUND)
		return ms__lmdb(ms, rc, "adopt: read summary");
	/* a copy only of a record with codes: one without is made again */
	if (!rc && v.mv_size >= sizeof(struct ms__sum_hdr)) {
		struct ms__sum_hdr sh;
		memcpy(&sh, v.mv_data, sizeof(sh));
		if (sh.magic == MS__SUM_MAGIC && sh.version > MS__SUM_CODES)
			return ms__sum_newer(ms, sh.version);
		if (sh.magic == MS__SUM_MAGIC && sh.version == MS__SUM_CODES &&
		    v.mv_size == ms__summary_size(g, sh.n_tokens) &&
		    !memcmp(sh.key, a->keys[i].b, 16)) {
			if ((rc = val_copy(ms, &a->cb, &v)))
				return rc;
			v.mv_data = a->cb.buf;
			return ms__lmdb(ms, mdb_put(txn, ms->db_sums, &kt, &v, 0),
					"adopt: put summary");
		}
	}
	return ms__summary_remake(ms, txn, &a->keys[i], g, &kt, &a->kf,
			      &a->kf_cap, i, "adopt");
}

static int adopt_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	struct adopt_arg *a = arg;
	struct ms__head h;
	uint64_t from, nb, end;
	int rc = head_read_b(ms, txn, a->id, &h);
	if (rc)
		return rc;
	a->taken = 0;
	a->n_tokens = h.n_tokens;
	/* a partial last block ends the session's blocks for good */
	from = h.n_blocks;
	if (h.n_tokens != from * h.block_tokens || h.n_tokens >= a->n)
		return 0;
	/* kept across the retries of a write that grew the map */
	if (!a->keys && !(a->keys = calloc(a->n / h.block_tokens + 1,
					   sizeof(*a->keys))))
		return ms__fail(ms, MS_ENOMEM, "adopt");
	if ((rc = adopt_find(ms, txn, a, &h, from, &nb, &end)) || nb == from)
		return rc;
	MDB_val ck = { 16, a->keys[nb - 1].b }, cv;
	struct ms__ckpt_hdr ch;
	ms_block tb;
	if ((rc = mdb_get(txn, ms->db_ckpts, &ck, &cv)))
		return ms__lmdb(ms, rc, "adopt: read checkpoint");
	memcpy(&ch, cv.mv_data, sizeof(ch));
	ms__willneed(cv.mv_data, cv.mv_size);
	if ((rc = ms__block_parse((const uint8_t *)cv.mv_data + sizeof(ch),
				  cv.mv_size - sizeof(ch), NULL, &tb)))
		return ms__fail(ms, rc, "adopt: checkpoint at %llu failed "
				"verification", (unsigned long long)end);
	if (memcmp(tb.fingerprint, h.fingerprint, 16))
		return ms__fail(ms, MS_EMISMATCH, "adopt: checkpoint of "
				"another model");
	ms_geom g;
	head_geom(&h, &g);
	for (uint64_t i = from; i < nb; i++) {
		struct ms__pfx p;
		struct ms__sidx st;
		if ((rc = pfx_read(ms, txn, a->keys[i].b, &p)))
			return rc;
		p.refcount++;
		ms__sidx(&st, a->id, i);
		MDB_val pk = { 16, a->keys[i].b }, pv = { sizeof(p), &p };
		MDB_val kt = { 16, st.b }, kv = { 16, a->keys[i].b };
		if ((rc = mdb_put(txn, ms->db_prefix, &pk, &pv, 0)) ||
		    (rc = mdb_put(txn, ms->db_chain, &kt, &kv, 0)))
			return ms__lmdb(ms, rc, "adopt: put chain");
		if ((rc = adopt_summary(ms, txn, a, &g, ch.source, i)))
			return rc;
		ms__scan_trim(ms, i);
	}
	/* The checkpoint becomes the tail: looked up again, since the puts
	 * above may have moved what the first lookup pointed at. */
	if ((rc = mdb_get(txn, ms->db_ckpts, &ck, &cv)))
		return ms__lmdb(ms, rc, "adopt: read checkpoint");
	if ((rc = val_copy(ms, &a->cb, &cv)) ||
	    (rc = ckpt_to_tail(ms, txn, a->id, a->cb.buf, cv.mv_size)))
		return rc;
	h.n_blocks = nb;
	h.n_tokens = end;
	memcpy(h.head_key, a->keys[nb - 1].b, 16);
	a->taken = end - from * h.block_tokens;
	a->n_tokens = end;
	a->head = a->keys[nb - 1];
	return head_write(ms, txn, a->id, &h);
}

int ms_session_adopt(ms_store *ms, int64_t id, const uint32_t *tokens,
		     uint64_t n_tokens, uint64_t *n_adopted)
{
	if (n_adopted)
		*n_adopted = 0;
	if (!ms || (n_tokens && !tokens))
		return ms__fail(ms, MS_EINVAL, "adopt: bad argument");
	struct adopt_arg a = { .id = id, .tokens = tokens, .n = n_tokens };
	int rc = ms__write(ms, adopt_w, &a);
	free(a.keys);
	free(a.cb.buf);
	free(a.kf);
	if (rc)
		return rc;
	if (a.taken)
		ms__cat_set_count(ms, id, a.n_tokens, a.head.b);
	if (n_adopted)
		*n_adopted = a.taken;
	return 0;
}

struct ckdrop_arg {
	int64_t id;
	uint64_t position;
	int dropped;		/* out */
};

static int ckdrop_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	struct ckdrop_arg *a = arg;
	struct ms__head h;
	struct ms__ckpt_hdr ch;
	int rc = head_read_b(ms, txn, a->id, &h);
	if (rc)
		return rc;
	a->dropped = 0;
	if (!a->position || a->position % h.block_tokens ||
	    a->position > h.n_tokens)
		return 0;
	uint8_t key[16];
	if ((rc = chain_read(ms, txn, a->id, a->position / h.block_tokens - 1,
			     key)))
		return rc;
	MDB_val ck = { 16, key }, cv;
	if (mdb_get(txn, ms->db_ckpts, &ck, &cv) ||
	    ms__ckpt_end(&cv) != a->position)
		return 0;
	memcpy(&ch, cv.mv_data, sizeof(ch));
	if (ch.source != a->id)
		return 0;	/* another session's: theirs to keep */
	if ((rc = mdb_del(txn, ms->db_ckpts, &ck, NULL)))
		return ms__lmdb(ms, rc, "delete checkpoint");
	a->dropped = 1;
	return 0;
}

int ms_checkpoint_drop(ms_store *ms, int64_t id, uint64_t position,
		       int *dropped)
{
	if (!ms)
		return MS_EINVAL;
	struct ckdrop_arg a = { .id = id, .position = position };
	int rc = ms__write(ms, ckdrop_w, &a);
	if (dropped)
		*dropped = rc ? 0 : a.dropped;
	return rc;
}

struct rewind_arg {
	int64_t id;
	uint64_t max;		/* keep at most this many tokens */
	uint64_t n_tokens;	/* out: the session's length after */
	ms_key head;		/* out */
	struct vbuf cb;
};

static int rewind_w(ms_store *ms, MDB_txn *txn, void *arg)
{
	struct rewind_arg *a = arg;
	struct ms__head h;
	uint64_t keep = 0;
	MDB_val cv = { 0, NULL };
	int rc = head_read_b(ms, txn, a->id, &h);
	if (rc)
		return rc;
	a->n_tokens = h.n_tokens;
	memcpy(a->head.b, h.head_key, 16);
	if (a->max >= h.n_tokens)
		return 0;
	/* The last whole block at or below max that ends at a checkpoint. */
	for (uint64_t i = a->max / h.block_tokens; i-- > 0;) {
		uint8_t key[16];
		if ((rc = chain_read(ms, txn, a->id, i, key)))
			return rc;
		MDB_val ck = { 16, key };
		if (!mdb_get(txn, ms->db_ckpts, &ck, &cv) &&
		    ms__ckpt_end(&cv) == (i + 1) * h.block_tokens) {
			keep = i + 1;
			break;
		}
	}
	/* copied before the cut changes the pages under it */
	if (keep && (rc = val_copy(ms, &a->cb, &cv)))
		return rc;
	if ((rc = blocks_cut(ms, txn, a->id, &h, keep)) ||
	    (rc = tail_delete(ms, txn, a->id)))
		return rc;
	if (keep && (rc = ckpt_to_tail(ms, txn, a->id, a->cb.buf,
				       cv.mv_size)))
		return rc;
	a->n_tokens = h.n_tokens;
	memcpy(a->head.b, h.head_key, 16);
	return head_write(ms, txn, a->id, &h);
}

int ms_session_rewind(ms_store *ms, int64_t id, uint64_t max_tokens,
		      uint64_t *n_tokens)
{
	if (!ms)
		return MS_EINVAL;
	struct rewind_arg a = { .id = id, .max = max_tokens };
	int rc = ms__write(ms, rewind_w, &a);
	free(a.cb.buf);
	if (rc)
		return rc;
	ms__cat_set_count(ms, id, a.n_tokens, a.head.b);
	if (n_tokens)
		*n_tokens = a.n_tokens;
	return 0;
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
	ms__willneed(v.mv_data, v.mv_size);
	rc = ms__block_parse(v.mv_data, v.mv_size, key, out);
	if (rc)
		return ms__fail(t->ms, rc, "block failed verification");
	return 0;
}

/* chain_read in a read snapshot. */
static int chain_key(ms_txn *t, int64_t id, uint64_t index, ms_key *key)
{
	return chain_read(t->ms, t->txn, id, index, key->b);
}

int ms_session_block(ms_txn *t, int64_t id, uint64_t index, ms_block *out)
{
	if (!t || !out)
		return MS_EINVAL;
	ms_key key;
	int rc = chain_key(t, id, index, &key);
	return rc ? rc : ms_block_get(t, &key, out);
}

int ms_session_block_willneed(ms_txn *t, int64_t id, uint64_t index)
{
	if (!t)
		return MS_EINVAL;
	ms_key key;
	int rc = chain_key(t, id, index, &key);
	if (rc)
		return rc;
	/* a big record's address is computed from its leaf: nothing of the
	 * record itself is read here */
	MDB_val bk = { 16, key.b }, bv;
	if ((rc = mdb_get(t->txn, t->ms->db_blocks, &bk, &bv)))
		return ms__lmdb(t->ms, rc, "read block");
	ms__willneed(bv.mv_data, bv.mv_size);
	return 0;
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
	ms__willneed(v.mv_data, v.mv_size);
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
