/* ms_internal.h - what the memstore files share: on-disk structs (sizes
 * asserted), the store object, and the internal calls between files.
 * The design is at the top of memstore.h. */
#ifndef ENGRAM_MS_INTERNAL_H
#define ENGRAM_MS_INTERNAL_H

#include <assert.h>
#include <lmdb.h>
#include <sqlite3.h>
#include <stdio.h>
#include "memstore.h"

#if !defined(__BYTE_ORDER__) || __BYTE_ORDER__ != __ORDER_LITTLE_ENDIAN__
#error "memstore's on-disk format is little-endian; port the codecs first"
#endif

#define MS__BLOCK_MAGIC 0x424b4745u	/* "EGKB" */
#define MS__HEAD_MAGIC 0x44484745u	/* "EGHD" */
#define MS__SUM_MAGIC 0x4d534745u	/* "EGSM" */
#define MS__MAX_TAIL_TOKENS 65535u
#define MS__MAX_B 4096u

/* Every on-disk struct is read and written with memcpy (records in the map
 * are not aligned) and never holds padding. */
struct ms__block_hdr {
	uint32_t magic;
	uint16_t version;
	uint8_t mode;
	uint8_t flags;		/* 0 */
	uint64_t checksum;	/* XXH3-64 of bytes [16, len), seed = bytes [0, 8) */
	uint8_t fingerprint[16];
	uint8_t parent[16];
	uint64_t position;
	uint16_t n_tokens;
	uint16_t n_layers;
	uint16_t n_kv_heads;
	uint16_t head_dim;
	uint32_t payload_bytes;
	uint32_t reserved;	/* 0 */
};
static_assert(sizeof(struct ms__block_hdr) == 72, "block header size");

/* "prefix" value: refcount and structure of a block. */
struct ms__pfx {
	uint32_t refcount;
	uint16_t n_tokens;
	uint16_t reserved;
	uint64_t position;
	uint8_t parent[16];
};
static_assert(sizeof(struct ms__pfx) == 32, "prefix record size");

/* "heads" value. */
struct ms__head {
	uint32_t magic;
	uint16_t version;
	uint8_t mode;
	uint8_t flags;
	uint8_t fingerprint[16];
	uint8_t head_key[16];
	uint64_t n_blocks;
	uint64_t n_tokens;
	uint32_t n_layers, n_kv_heads, head_dim, block_tokens;
};
static_assert(sizeof(struct ms__head) == 72, "head record size");

/* "summaries" value header, followed by [layer][head][min,max,mean][D] f16
 * and, in a record of version MS__SUM_CODES, the keys' 2-bit codes
 * [layer][head][n_tokens][MS__CODE_ROW(D)] (ms_summary.codes).  A record
 * of MS_FORMAT_VERSION (1) has no codes: written before them, read as
 * before. */
#define MS__SUM_CODES 2
#define MS__CODE_ROW(d) (2 * (((size_t)(d) + 7) / 8))
struct ms__sum_hdr {
	uint32_t magic;
	uint16_t version;
	uint16_t n_layers;
	uint16_t n_kv_heads;
	uint16_t head_dim;
	uint32_t n_tokens;
	uint64_t position;
	uint8_t key[16];
};
static_assert(sizeof(struct ms__sum_hdr) == 40, "summary header size");

/* Header of a "sumpacks" record: copies of the session's first n
 * "summaries" records, of rec bytes each, split: the first head bytes of
 * every record back to back (header and min/max/mean), then the rest of
 * every record (the codes; rec == head for records without), so that a
 * reader that wants no codes reads only the first part.  Version
 * MS__PACK_SPLIT; a pack of another version (records whole, before
 * codes) is not used. */
#define MS__PACK_MAGIC 0x50534745u	/* "EGSP" */
#define MS__PACK_SPLIT 2
struct ms__pack_hdr {
	uint32_t magic;
	uint32_t version;
	uint64_t n;
	uint64_t rec;
	uint64_t head;
};
static_assert(sizeof(struct ms__pack_hdr) == 32, "pack header size");

/* Header of a "checkpoints" record, followed by a tail record (a block
 * record of the window layers) that ends where the keyed block ends.
 * source: the session that wrote it, whose summaries adoption copies
 * while that session still holds the same blocks. */
#define MS__CKPT_MAGIC 0x50434745u	/* "EGCP" */
struct ms__ckpt_hdr {
	uint32_t magic;
	uint32_t version;
	int64_t source;
};
static_assert(sizeof(struct ms__ckpt_hdr) == 16, "checkpoint header size");

/* (session, index) big-endian key of "chain" and "summaries". */
struct ms__sidx {
	uint8_t b[16];
};

struct ms_store {
	char *dir;
	ms_settings set;
	MDB_env *env;
	MDB_dbi db_meta, db_blocks, db_prefix, db_chain, db_sums, db_heads,
		db_tails, db_packs, db_ckpts;
	size_t map_size;
	int live_txns;		/* open ms_txn: the map cannot grow */
	sqlite3 *db;
	ms_recovery rec;
	char errmsg[512];
};

struct ms_txn {
	ms_store *ms;
	MDB_txn *txn;
};

/* Sets ms->errmsg (printf style) and returns code. */
int ms__fail(ms_store *ms, int code, const char *fmt, ...)
	__attribute__((format(printf, 3, 4)));
/* Maps an LMDB return code to an MS code, recording the message. */
int ms__lmdb(ms_store *ms, int rc, const char *what);

/* codec.c */
int ms__geom_valid(const ms_geom *g, uint32_t max_tokens);
size_t ms__section_bytes(ms_mode mode, uint32_t n_tokens, uint32_t d);
/* Whether every K/V value is finite and within the f16 range. */
int ms__kv_valid(const ms_geom *g, uint32_t n_tokens, const float *k,
		 const float *v, size_t stride);
/* Encodes a whole record into rec (ms_block_record_size bytes). */
int ms__block_encode(uint8_t *rec, const ms_geom *g, const uint8_t fp[16],
		     const ms_key *parent, uint64_t position,
		     const uint32_t *tokens, uint32_t n_tokens,
		     const float *k, const float *v);
/* The same, with section s = (layer, head) of K and V starting at
 * k + s * stride (floats): a block cut out of a longer [l][h][n][d] array. */
int ms__block_encode_strided(uint8_t *rec, const ms_geom *g,
			     const uint8_t fp[16], const ms_key *parent,
			     uint64_t position, const uint32_t *tokens,
			     uint32_t n_tokens, const float *k, const float *v,
			     size_t stride);
/* Verifies a record and fills a view. */
int ms__block_parse(const uint8_t *rec, size_t len, const ms_key *key,
		    ms_block *out);
/* Bytes of a summary record of n_tokens with codes; of one without (as
 * written before codes) when n_tokens is 0. */
size_t ms__summary_size(const ms_geom *g, uint32_t n_tokens);
/* Encodes a summary record with codes (ms__summary_size(g, n_tokens)). */
void ms__summary_encode(uint8_t *rec, const ms_geom *g, uint32_t n_tokens,
			uint64_t position, const ms_key *key, const float *k,
			size_t stride);

/* lmdb.c */
/* Where checkpoint record v ends (the position after its tail), or 0 if
 * its header is not one. */
uint64_t ms__ckpt_end(const MDB_val *v);
/* Asks the kernel to read [p, p + n) of the map now, in one go. */
void ms__willneed(const void *p, size_t n);
void ms__sidx(struct ms__sidx *o, int64_t id, uint64_t index);
void ms__sid(uint8_t o[8], int64_t id);
int64_t ms__sid_get(const uint8_t *p);
int ms__env_open(ms_store *ms);
void ms__env_close(ms_store *ms);
/* Runs fn(ms, txn, arg) inside a write transaction, growing the map on
 * MDB_MAP_FULL within the budget and retrying. */
typedef int (*ms__write_fn)(ms_store *ms, MDB_txn *txn, void *arg);
int ms__write(ms_store *ms, ms__write_fn fn, void *arg);
int ms__head_read(ms_store *ms, MDB_txn *txn, int64_t id, struct ms__head *h);
int ms__session_drop(ms_store *ms, MDB_txn *txn, int64_t id);
int ms__head_create(ms_store *ms, int64_t id, const uint8_t fp[16],
		    const ms_geom *g);
int ms__session_drop_w(ms_store *ms, int64_t id);
/* The LMDB half of ms_session_fork, one write transaction: to (which must
 * have no head) gets from's head, chain (refcount + 1 per entry),
 * summaries and tail.  *n_tokens and head receive to's, for the catalog. */
int ms__session_fork_w(ms_store *ms, int64_t from, int64_t to,
		       uint64_t *n_tokens, uint8_t head[16]);
/* The i-th record of a pass over many records (a session's, or a whole
 * database's for stats, check and gc): every 256, the map's pages out of
 * the RSS (ms_trim, best effort).  Safe inside a write transaction. */
void ms__scan_trim(ms_store *ms, uint64_t i);

/* summary.c */
/* Block index i's summary, with codes, made again from the block named
 * key and put at dst in db_sums; *kf (*kf_cap floats) is the caller's
 * scratch for the keys (realloc'ed here, freed by the caller). */
int ms__summary_remake(ms_store *ms, MDB_txn *txn, const ms_key *key,
		       const ms_geom *g, MDB_val *dst, float **kf,
		       size_t *kf_cap, uint64_t i, const char *what);
/* MS_EVERSION for a summary record of a version after this build's. */
int ms__sum_newer(ms_store *ms, uint32_t version);

/* catalog.c */
int ms__cat_open(ms_store *ms);
void ms__cat_close(ms_store *ms);
int ms__recover(ms_store *ms);
int ms__cat_set_count(ms_store *ms, int64_t id, uint64_t n_tokens,
		      const uint8_t head[16]);
/* Number of rows in sessions; and whether a given id has a row. */
int ms__cat_has_session(ms_store *ms, int64_t id, int *has);

/* stream.c: inside the caller's SQLite transaction, copies session from's
 * stream chunks, spans (documents are shared rows) and manifest to to. */
int ms__stream_copy(ms_store *ms, int64_t from, int64_t to);

/* catalog.c: SQLite errors as MS_E* codes with the message kept in ms;
 * on_constraint is the code a failed constraint means to the caller. */
int ms__sql_fail(ms_store *ms, const char *what, int on_constraint);
int ms__sql_exec(ms_store *ms, const char *sql, int on_constraint);
int ms__sql_prep(ms_store *ms, const char *sql, sqlite3_stmt **st);
/* Steps st to its end, each row given to row() at the next of elem bytes
 * of *out (malloc'ed, the caller's; NULL for none), and finalizes it. */
int ms__sql_collect(ms_store *ms, sqlite3_stmt *st, size_t elem,
    void (*row)(sqlite3_stmt *, void *), const char *what, void **out,
    size_t *n);

#endif
