/* memstore.h - the whole public API of engram's memstore module (prefix ms_):
 * KV blocks in LMDB, the catalog in SQLite.
 *
 * Conventions as in engine.h: int returns, 0 on success, a negative
 * MS_E* code on failure; _open/_close pairs; the caller owns what an
 * _open returns.  Design notes: docs/ARCHITECTURE.md and below.
 *
 * DESIGN
 * ======
 * A store is a directory holding two databases:
 *
 *   DIR/kv/data.mdb      LMDB: the KV blocks and everything that must agree
 *                        with them, in named databases:
 *     "meta"       "format" -> u32 on-disk format version (MS_FORMAT_VERSION)
 *     "blocks"     block key (16 B) -> block record (below)
 *     "prefix"     block key (16 B) -> ms__pfx {refcount, n_tokens, position,
 *                  parent key}: the prefix index; small so that prefix
 *                  matching and refcounting never touch block pages
 *     "chain"      (session id u64 BE, block index u64 BE) -> block key
 *     "summaries"  (session id u64 BE, block index u64 BE) -> summary record
 *                  (per layer and head the keys' per-channel min, max
 *                  and mean, f16, then each key's 2-bit codes: ms_summary;
 *                  records written before codes have none);
 *                  big-endian keys make one session's summaries one
 *                  sequential cursor scan, in block order
 *     "heads"      session id u64 BE -> session head {geometry, fingerprint,
 *                  n_blocks, n_tokens, key of the last block}
 *     "tails"      session id u64 BE -> block record holding the last W
 *                  positions of the sliding-window layers (overwritten)
 *     "sumpacks"   session id u64 BE -> {magic "EGSP", pack version 2, n,
 *                  record size, head size} + the heads (header and
 *                  min/max/mean) of the session's first n summary records
 *                  back to back, then their codes back to back
 *                  (ms_summary_pack): one read at open, the codes only
 *                  when wanted; a version 1 pack (whole records) is not
 *                  used
 *     "checkpoints" block key (16 B) -> {magic "EGCP", format version,
 *                  source session id} + a tail record ending where that
 *                  block ends (ms_tail.checkpoint): the window layers'
 *                  state after the prefix the key names, from which
 *                  another session with that prefix starts without
 *                  computing it (ms_session_adopt); freed with its block
 *   DIR/catalog.db       SQLite (WAL, foreign keys, PRAGMA user_version is the
 *                        schema version, migrated forward at open): sessions,
 *                        documents, spans, jobs, audit log.
 *
 * Block record (little-endian; big-endian hosts are refused at build time):
 *   72-byte header (struct ms__block_hdr in ms_internal.h, size asserted):
 *   magic "EGKB", format version, mode, xxh3-64 checksum of every other byte
 *   of the record, model fingerprint, parent key, first position,
 *   n_tokens, n_layers, n_kv_heads, head_dim, payload size; then the token
 *   ids (u32 each); then for each stored layer l, each KV head h, one
 *   fixed-size section: the keys, then the values (layout per mode at
 *   ms_mode).  A record whose checksum, magic, version or sizes do not verify
 *   is reported as MS_ECORRUPT and its bytes are never handed out.
 *
 * Block key = XXH3-128 over (model fingerprint 16 B, parent key 16 B (zeros
 * for the first block), the block's token ids as u32 LE, the position of its
 * first token as u64 LE).  Equal prefixes in two sessions therefore give
 * equal keys and the block is stored once; "prefix" holds its refcount =
 * the number of "chain" entries naming it.  The key does not cover the
 * encoding mode: a block already present is reused as is (its record says
 * how to decode it), provided its geometry matches.
 *
 * ONE TRUTH (the LMDB and SQLite writes are not one transaction)
 * --------------------------------------------------------------
 *  - SQLite is the truth for a session's EXISTENCE and NAME; LMDB is the
 *    truth for its CONTENT (blocks, chain, head, token count).
 *  - create: the SQLite row is committed first (state 'active'), then the
 *    LMDB head (empty).
 *  - append/pop/tail: one LMDB write transaction puts the block (or bumps
 *    its refcount), the chain entry, the summary and the advanced head
 *    together; only after it commits is the SQLite row's n_tokens/head
 *    updated, which is advisory.
 *  - commit (ms_session_commit): the pop of a partial last block, the new
 *    blocks, their chain entries and summaries, the tail and the head are
 *    ONE LMDB write transaction, so after a crash the tail read back is
 *    always the one committed with the head it was written for.  truncate
 *    likewise cuts blocks and deletes the tail in one transaction.  The
 *    catalog row is updated afterwards (advisory), as for append.
 *  - fork: the new row (state 'active') together with copies of the
 *    source's stream chunks, spans and manifest is ONE SQLite transaction;
 *    then one LMDB transaction writes the head, the chain (the same block
 *    keys, refcount + 1 each), the summaries and the tail.  A crash between
 *    the two leaves an active row without a head: recovery gives it an
 *    empty one, so the fork exists, empty but consistent (its stream,
 *    spans and manifest are there; its KV is not) and can be prefilled
 *    again or deleted.  If the LMDB transaction fails without a crash the
 *    row is deleted again (its stream, spans and manifest cascade).
 *  - delete: the SQLite row is first marked state 'deleting'; then one LMDB
 *    transaction drops the head, chain, summaries, tail and decrements the
 *    refcounts (freeing blocks that reach 0); then the row is deleted.
 *  - RECOVERY (ms_open): rows in state 'deleting' are finished (the LMDB
 *    part is idempotent); an 'active' row without an LMDB head gets an empty
 *    one; the advisory n_tokens/head of every row is repaired from LMDB; an
 *    LMDB head whose session has no row is an orphan and is deleted with its
 *    chain.  So after a crash at any point the catalog and the blocks agree,
 *    and the head never names a block that was not committed with it.
 *
 * Lifetimes (LMDB style): a block view (ms_block) and a summary handed to an
 * ms_summary_fn point into the memory map and are valid only until the read
 * transaction (ms_txn) they came from ends.  While any ms_txn is open the map
 * cannot be grown: a write that needs a bigger map then fails with MS_EBUSY
 * (end the read transactions and retry).  Readers never block the writer
 * otherwise (LMDB MVCC).
 *
 * Threads: an ms_store is used by one thread at a time (the daemon's store
 * thread); an ms_txn may be read from another thread while it lives (the env
 * is opened with MDB_NOTLS) but must be ended through its store's thread.
 */
#ifndef ENGRAM_MS_H
#define ENGRAM_MS_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes: -1100 .. -1199.  The list only grows at the end. */
#define MS_ERRNO_MAP(X)                                       \
	X(-1100, MS_EINVAL,  "invalid argument")                 \
	X(-1101, MS_ENOMEM,  "out of memory")                    \
	X(-1102, MS_EIO,     "input/output error")               \
	X(-1103, MS_ECORRUPT, "stored record failed verification") \
	X(-1104, MS_ENOTFOUND, "not found")                       \
	X(-1105, MS_EEXIST,  "already exists")                   \
	X(-1106, MS_EFULL,   "disk budget exhausted")             \
	X(-1107, MS_EBUSY,   "map must grow: read transactions are open") \
	X(-1108, MS_ENAME,   "invalid name")                     \
	X(-1109, MS_EMISMATCH, "model fingerprint or geometry mismatch") \
	X(-1110, MS_EVERSION, "store written by a newer format")  \
	X(-1111, MS_ELMDB,   "LMDB error")                       \
	X(-1112, MS_ESQLITE, "SQLite error")                     \
	X(-1113, MS_ESTATE,  "operation not allowed in this state") \
	X(-1114, MS_ECHECK,  "store check found inconsistencies") \
	X(-1115, MS_ERANGE,  "value out of range")

enum {
#define MS__ENUM(code, name, msg) name = (code),
	MS_ERRNO_MAP(MS__ENUM)
#undef MS__ENUM
};

/* A static string describing an error code; never NULL. */
const char *ms_strerror(int err);
/* The code's symbolic name ("MS_ECORRUPT"); never NULL. */
const char *ms_errname(int err);

/* The on-disk block/head/summary format version written by this build.
 * Records of another version are refused (MS_ECORRUPT for a record,
 * MS_EVERSION for a whole store of a newer format), except summary
 * records, which are written as version 2 (with the keys' codes, see
 * ms_summary) and read as 1 or 2 (a later version: MS_EVERSION, never
 * rewritten); a build older than codes refuses a version-2 summary as
 * corrupt. */
#define MS_FORMAT_VERSION 1
/* The SQLite catalog schema version (PRAGMA user_version). */
#define MS_SCHEMA_VERSION 2

/* ------------------------------------------------------------------ */
/* Settings                                                            */

typedef struct ms_settings {
	size_t map_size_initial;	/* first LMDB map size, bytes */
	size_t disk_budget;		/* the map never grows beyond this; a
					 * write that would need more fails
					 * with MS_EFULL and changes nothing */
	unsigned max_readers;		/* LMDB reader slots */
	int sqlite_busy_ms;		/* SQLite busy timeout */
} ms_settings;

/* Fills every field with its default (see settings.c for the reasons). */
void ms_settings_init(ms_settings *s);

/* ------------------------------------------------------------------ */
/* Store                                                               */

typedef struct ms_store ms_store;

/* Opens (creating if needed) the store under DIR, which must exist or be
 * creatable (mode 0700), and runs recovery (see ONE TRUTH above).
 * settings may be NULL for defaults.  On success *out is the store, freed
 * by ms_close.  On failure *out is NULL and, if err is not NULL, a
 * NUL-terminated message of at most errlen bytes is written there. */
int ms_open(const char *dir, const ms_settings *settings, ms_store **out,
	    char *err, size_t errlen);
/* Closes the store.  Every ms_txn of it must have ended.  NULL is a no-op. */
void ms_close(ms_store *ms);
/* The detail message of the last failing call on ms (static until the next
 * call on ms); never NULL. */
const char *ms_errmsg(const ms_store *ms);

/* What ms_open's recovery repaired (zero after a clean shutdown). */
typedef struct ms_recovery {
	uint64_t deletes_finished;	/* 'deleting' rows completed */
	uint64_t heads_created;		/* active rows that had no head */
	uint64_t counts_repaired;	/* advisory n_tokens/head fixed */
	uint64_t orphans_removed;	/* LMDB heads without a row */
} ms_recovery;
void ms_recovery_get(const ms_store *ms, ms_recovery *out);

/* ------------------------------------------------------------------ */
/* Geometry and encodings                                              */

/* How K and V are stored in a block.  T = tokens of the block, D = head_dim;
 * each (layer, head) section is, in order:
 *  MS_MODE_F16: K[T][D] f16, V[T][D] f16 (reference, 4 bytes/element pair).
 *  MS_MODE_Q8:  the KIVI split.  K per channel over the block: kmin[D] f16,
 *               kscale[D] f16, K[T][D] u8; V per token: vmin[T] f16,
 *               vscale[T] f16, V[T][D] u8.  x = min + q * scale.
 *  MS_MODE_Q4:  as Q8 with 4-bit codes packed two per byte (low nibble
 *               first), and V scaled per token per group of 32 channels
 *               (vmin[T][D/32], vscale[T][D/32]) when D % 32 == 0, else per
 *               token.  D must be even.
 * Values must be finite with |x| <= 65504 (the f16 range): MS_ERANGE if not.
 * Effect on the default model's logits (bench/memstore/kv_effect, golden
 * prompts of 618-7,680 tokens): Q8 max 0.78, mean 0.13; Q4 max 1.59, mean
 * 0.25; an f32 cache instead of f16 moves them by up to 1.88 (mean 0.35). */
typedef enum ms_mode {
	MS_MODE_F16 = 0,
	MS_MODE_Q8 = 1,
	MS_MODE_Q4 = 2,
} ms_mode;

/* The shape of the blocks of a session.  For Gemma 3 270M: the 3 global
 * layers (5, 11, 17) are stored, 1 KV head, head_dim 256. */
typedef struct ms_geom {
	uint32_t n_layers;	/* layers stored per block, 1..256 */
	uint32_t n_kv_heads;	/* 1..256 */
	uint32_t head_dim;	/* 2..4096, even */
	uint32_t block_tokens;	/* B, 1..4096: tokens per full block */
	ms_mode mode;
} ms_geom;

/* The default B, from bench/memstore (Gemma 3 270M, Q8; table in
 * bench/RESULTS.md): at B = 64 a record costs 1601 B/token against 1564 at
 * B = 256 (+2.4%) and 1749 at B = 16 (+12%); on disk, with the 72.6
 * B/token of summaries and page rounding, 1802 against 1605 and 2335
 * (measured before key codes, which add 2 bits per stored key channel:
 * 192 B/token for the default model, whatever B).  Retrieval then works at 64-token granularity (Quest pages 16, InfLLM
 * units 128).  Put throughput is set by the commit (fsync), not by B: use
 * ms_session_append_n to commit many blocks at once. */
#define MS_DEFAULT_BLOCK_TOKENS 64

/* Bytes of a block record of n_tokens tokens with geometry g (header,
 * token ids and payload), or 0 if g is invalid. */
size_t ms_block_record_size(const ms_geom *g, uint32_t n_tokens);

/* A 128-bit block key. */
typedef struct ms_key {
	uint8_t b[16];
} ms_key;

/* Computes a block key (see DESIGN).  parent NULL means the first block. */
void ms_block_key(const uint8_t fingerprint[16], const ms_key *parent,
		  const uint32_t *tokens, uint32_t n_tokens, uint64_t position,
		  ms_key *out);

/* ------------------------------------------------------------------ */
/* Sessions (catalog + LMDB head)                                      */

/* Session and job names: [A-Za-z0-9._-]{1,128}, not starting with '.'. */
int ms_name_valid(const char *name);

typedef struct ms_session_info {
	int64_t id;			/* never reused */
	char name[129];
	uint8_t fingerprint[16];
	int64_t created;		/* unix seconds */
	uint64_t n_tokens;		/* from LMDB (the truth) */
	uint64_t n_blocks;
	ms_key head;			/* last block; zeros if none */
	ms_geom geom;
} ms_session_info;

/* Creates an empty session.  MS_ENAME for a bad name, MS_EEXIST if taken,
 * MS_EINVAL for a bad geometry.  *id_out (may be NULL) receives its id. */
int ms_session_create(ms_store *ms, const char *name,
		      const uint8_t fingerprint[16], const ms_geom *geom,
		      int64_t *id_out);
/* Looks a session up by name (MS_ENOTFOUND if none). */
int ms_session_get(ms_store *ms, const char *name, ms_session_info *out);
/* All sessions, ordered by name.  *out is malloc'd (free with ms_free),
 * NULL when *n is 0. */
int ms_session_list(ms_store *ms, ms_session_info **out, size_t *n);
int ms_session_rename(ms_store *ms, const char *from, const char *to);
/* Deletes the session, its spans, tail and chain; blocks no other session
 * uses are freed in the same LMDB transaction. */
int ms_session_delete(ms_store *ms, const char *name);

/* Appends one block to session id: n_tokens (1..B) token ids and their K
 * and V as floats laid out [layer][head][token][head_dim] (n_layers *
 * n_kv_heads * n_tokens * head_dim floats each).  The previous last block
 * must be full (B tokens), else MS_ESTATE (pop it and append a longer one).
 * The block position is the session's n_tokens.  If a block with the same
 * key exists it is shared (refcount + 1) and k/v are only used for the
 * summary, unless its record fails verification (damaged on disk): then
 * k/v write it again, for every session sharing it.  key_out (may be NULL) receives the block key.  When this
 * returns 0 the block and the new head are durable. */
int ms_session_append(ms_store *ms, int64_t id, const uint32_t *tokens,
		      uint32_t n_tokens, const float *k, const float *v,
		      ms_key *key_out);
/* Appends n_tokens tokens as consecutive blocks of B (the last one may be
 * partial) in ONE LMDB transaction: one durable commit instead of one per
 * block (bench/memstore: a commit costs milliseconds of fsync).  k and v are
 * [layer][head][n_tokens][head_dim].  The same rules as ms_session_append;
 * all or nothing.  *n_blocks (may be NULL) receives the blocks appended. */
#define MS_APPEND_MAX_TOKENS 65536
int ms_session_append_n(ms_store *ms, int64_t id, const uint32_t *tokens,
			uint64_t n_tokens, const float *k, const float *v,
			uint64_t *n_blocks);
/* Drops the last block of the session (MS_ENOTFOUND if empty). */
int ms_session_pop(ms_store *ms, int64_t id);
/* Overwrites the session's tail record: the sliding-window layers' last
 * positions.  g describes the tail (its n_layers local layers, block_tokens
 * is ignored, n_tokens up to 65535); position is that of tokens[0]. */
int ms_tail_put(ms_store *ms, int64_t id, const ms_geom *g, uint64_t position,
		const uint32_t *tokens, uint32_t n_tokens, const float *k,
		const float *v);

/* A session's tail as ms_session_commit takes it: what ms_tail_put's
 * arguments are, in one struct.  geom gives its n_layers, n_kv_heads,
 * head_dim and mode (block_tokens is ignored); position is that of
 * tokens[0]; n_tokens is 1..65535; k and v are [layer][head][n_tokens]
 * [head_dim] floats each.  Every pointer is the caller's, read only during
 * the call. */
typedef struct ms_tail {
	ms_geom geom;
	uint64_t position;
	const uint32_t *tokens;
	uint32_t n_tokens;
	const float *k, *v;
	/* Non-zero: also keep it as the checkpoint of the session's last
	 * block (it must then end where the session ends, else MS_EINVAL),
	 * so that ms_session_adopt can start other sessions from it. */
	int checkpoint;
} ms_tail;

/* One step of a prefill, in ONE LMDB write transaction (see ONE TRUTH):
 * appends blocks and replaces the tail together, so that after a crash the
 * tail always belongs to the head it was committed with.
 *
 * first is the position of tokens[0] and must be the session's n_tokens
 * rounded down to a multiple of B, else MS_ESTATE (ms_errmsg says which
 * value was expected):
 *  - if the last block is full (or the session is empty), first ==
 *    n_tokens and the blocks follow it;
 *  - if the last block is partial, first is its position: that block is
 *    popped in the same transaction (its reference dropped, the block
 *    freed if no other session uses it) and tokens/k/v must start with its
 *    tokens and K/V again, followed by the new ones.
 * tokens[0..n_tokens) with k and v laid out [layer][head][n_tokens]
 * [head_dim] (the session's geometry) are then appended as blocks of B,
 * the last possibly partial, exactly as by ms_session_append_n (sharing,
 * refcounts, summaries; n_tokens at most MS_APPEND_MAX_TOKENS).
 * n_tokens may be 0 (tokens, k, v may then be NULL): nothing is popped or
 * appended, first must equal the session's n_tokens, and only the tail is
 * replaced.
 * tail (may be NULL: the tail record is left alone) then replaces the
 * tail record; it is stored with the session's fingerprint.  memstore does
 * not relate tail->position to the blocks; the caller keeps
 * tail->position + tail->n_tokens equal to the session's new n_tokens if
 * it needs that (engram's prefill does).  n_tokens 0 with tail NULL is
 * MS_EINVAL.
 * All or nothing: on any error (MS_ESTATE, MS_ERANGE for a non-finite or
 * out-of-f16-range value in the blocks or the tail, MS_EFULL, MS_EINVAL
 * for a bad tail geometry, MS_ENOTFOUND for no such session, ...) neither
 * blocks, head nor tail change.  When this returns 0 all of it is durable;
 * *n_blocks (may be NULL) receives the blocks appended, the re-sent one
 * included.  The catalog's advisory count is then updated. */
int ms_session_commit(ms_store *ms, int64_t id, uint64_t first,
		      const uint32_t *tokens, uint64_t n_tokens, const float *k,
		      const float *v, const ms_tail *tail, uint64_t *n_blocks);

/* Grows session id by KV already stored, with no compute: tokens[0..
 * n_tokens) is its context (as its blocks will hold it).  From the
 * session's end on (0 when empty), finds the blocks of the context that
 * the store holds (same model, same B: the keys name the prefix) up to the
 * first one with a checkpoint at its end, and makes them the session's
 * next KV in ONE LMDB transaction, as a fork would: the blocks by
 * reference, their summaries (copied from the session that wrote the
 * checkpoint while it holds the same block at the same index, else made
 * again from the block: the same bits for f16 blocks), and the checkpoint
 * as the tail.  One call takes one stretch, from one checkpoint to the
 * next (65,536 positions with engramd's defaults), so that a caller
 * taking a 1M prefix lets other users of the store in between: call again
 * until *n_adopted is 0.  *n_adopted (may be NULL) receives the positions
 * taken; 0 when the store holds no further stretch, when the session ends
 * in a partial block or is as long as the context, and then nothing
 * changes.  The stream and spans are the caller's.  MS_EMISMATCH if the
 * session's blocks are not a prefix of the context, MS_ENOTFOUND if it has
 * no head, MS_ECORRUPT if the chosen checkpoint or a block fails
 * verification; the catalog's count follows as for a commit. */
int ms_session_adopt(ms_store *ms, int64_t id, const uint32_t *tokens,
		     uint64_t n_tokens, uint64_t *n_adopted);

/* Deletes the checkpoint at the end of session id's block ending at
 * position, if this session wrote it (the source in its header; one
 * written by another session is left alone).  For checkpoints that only
 * marked where a job ended: once the session has grown past them, they
 * would otherwise stay as long as the block.  *dropped (may be NULL)
 * says whether one went; 0 also when there was none. */
int ms_checkpoint_drop(ms_store *ms, int64_t id, uint64_t position,
		       int *dropped);

/* Cuts the session's KV back to the longest prefix of at most max_tokens
 * tokens that ends at a checkpoint (ms_tail.checkpoint) of one of its whole
 * blocks, in ONE LMDB transaction: later blocks are dropped as by
 * ms_session_truncate and the checkpoint becomes the tail, so that a
 * prefill resumes there exactly.  Without such a checkpoint the session is
 * emptied.  Nothing changes if max_tokens >= its length.  *n_tokens (may be
 * NULL) receives its length after.  For "the stream changed at position
 * max_tokens": what comes before stays prefilled. */
int ms_session_rewind(ms_store *ms, int64_t id, uint64_t max_tokens,
		      uint64_t *n_tokens);

/* Cuts the session's KV back to before position n_tokens, in one LMDB
 * transaction: keeps the blocks that lie entirely below n_tokens, drops
 * the others (their references, summaries and chain entries; blocks no
 * other session uses are freed) and deletes the tail record (it described
 * the old end).  The session then holds floor(n_tokens / B) * B tokens.
 * If n_tokens >= the session's length nothing changes (0).  For "the
 * token stream changed at position n_tokens: throw away the KV past it";
 * the stream and spans are the caller's (ms_stream_truncate,
 * ms_span_truncate). */
int ms_session_truncate(ms_store *ms, int64_t id, uint64_t n_tokens);

/* Creates session `to` as a copy of session `from` that shares its KV by
 * reference: the same fingerprint and geometry, the same blocks (each
 * block's refcount + 1, nothing re-encoded), copies of its summaries and
 * tail, and copies of its token stream, spans (naming the same document
 * rows) and manifest.  The write order is in ONE TRUTH.  Afterwards the
 * two are independent: appending to, truncating or deleting either never
 * changes the other (a block is freed when its last reference goes).
 * MS_ENAME for a bad name, MS_ENOTFOUND if from does not exist, MS_EEXIST
 * if to is taken.  *id_out (may be NULL) receives the new id. */
int ms_session_fork(ms_store *ms, const char *from, const char *to,
		    int64_t *id_out);

/* ------------------------------------------------------------------ */
/* Reading: transactions and zero-copy block views                     */

typedef struct ms_txn ms_txn;

/* Starts a read transaction: a consistent snapshot.  End it with
 * ms_read_end; views taken from it die with it. */
int ms_read_begin(ms_store *ms, ms_txn **out);
void ms_read_end(ms_txn *txn);

/* A verified block record.  rec points into the map: valid only until the
 * ms_txn it came from ends; never write through it. */
typedef struct ms_block {
	const uint8_t *rec;	/* the whole record */
	size_t len;
	ms_key key;
	ms_key parent;
	uint8_t fingerprint[16];
	uint64_t position;	/* of its first token */
	uint32_t n_tokens;
	ms_geom geom;		/* block_tokens is 0: blocks do not know B */
} ms_block;

/* Reads and verifies the block with this key: MS_ENOTFOUND, or MS_ECORRUPT
 * if its checksum or structure is wrong (its bytes are then not exposed). */
int ms_block_get(ms_txn *txn, const ms_key *key, ms_block *out);
/* The index-th block of a session. */
int ms_session_block(ms_txn *txn, int64_t id, uint64_t index, ms_block *out);
/* Asks the kernel to read block index of session id into the page cache
 * (madvise WILLNEED) without reading or checking it here, so that the
 * blocks a step is about to use are fetched from the disk together. */
int ms_session_block_willneed(ms_txn *txn, int64_t id, uint64_t index);
/* The session's tail record (MS_ENOTFOUND if none was put). */
int ms_tail_get(ms_txn *txn, int64_t id, ms_block *out);
/* The session head as LMDB has it (the truth) in this snapshot. */
int ms_session_head(ms_txn *txn, int64_t id, ms_session_info *out);

/* Copies the block's token ids to out[n_tokens]. */
void ms_block_tokens(const ms_block *b, uint32_t *out);
/* Dequantizes one (layer, head) of a block into k[n_tokens][head_dim] and
 * v[n_tokens][head_dim] (either may be NULL). */
int ms_block_decode(const ms_block *b, uint32_t layer, uint32_t head,
		    float *k, float *v);

/* Zero-copy access to an MS_MODE_F16 block: *k and *v point at the
 * (layer, head) section's keys and values, n_tokens rows of head_dim f16
 * (2-byte aligned: the record starts on a page of the map), valid as
 * b->rec is.  MS_EINVAL for another mode. */
int ms_block_f16(const ms_block *b, uint32_t layer, uint32_t head,
		 const uint8_t **k, const uint8_t **v);

/* Longest cached prefix: computes the chained keys of tokens[0..n) in
 * blocks of B and counts how many leading blocks exist in the store.  A
 * trailing partial block counts if it is stored with exactly those tokens.
 * *n_blocks and *n_tokens_matched receive the match. */
int ms_prefix_match(ms_txn *txn, const uint8_t fingerprint[16],
		    const uint32_t *tokens, size_t n, uint32_t block_tokens,
		    uint64_t *n_blocks, uint64_t *n_tokens_matched);

/* Block summary for retrieval, per stored layer and KV head: per-channel
 * min, max and mean of the block's keys (computed from the floats given to
 * ms_session_append, before quantization), f16.  data points into the map
 * (valid for the txn): [layer][head][3][head_dim] u16 (f16 bits, may be
 * unaligned: read with ms_f16_load).  codes: each key's 2-bit codes
 * within the block's bounds, [layer][head][n_tokens][2 * ceil(head_dim/8)]
 * bytes, the bit planes of eng_kv_code_block (engine.h), which computes the
 * same bits from the same floats: u = floor(4 (x - min) / (max - min)),
 * 0..3, with min and max as stored (f16, rounded outward); NULL in a
 * record written before codes (ms_summary_codes adds them).  A sparse
 * question ranks far blocks by them without reading the blocks. */
typedef struct ms_summary {
	uint64_t index;		/* block index in the session */
	uint64_t position;
	uint32_t n_tokens;
	uint32_t n_layers, n_kv_heads, head_dim;
	ms_key key;
	const uint8_t *data;
	const uint8_t *codes;
} ms_summary;
/* Called per block in index order; return nonzero to stop (that value is
 * returned by ms_summary_scan). */
typedef int (*ms_summary_fn)(void *arg, const ms_summary *s);
/* One sequential scan over a session's summaries from block index first
 * (from the session's pack as far as it goes, see ms_summary_pack).
 * codes 0: ms_summary.codes is NULL and the codes are not read (they are
 * 3.6 times the rest for the default model). */
int ms_summary_scan(ms_txn *txn, int64_t id, uint64_t first, int codes,
		    ms_summary_fn fn, void *arg);
/* The codes of the session's first *n summary records in place, from its
 * pack (ms_summary_pack): record i's codes (as ms_summary.codes) at
 * *codes + i * *stride, valid while txn is, asked of the disk at once
 * (madvise).  *n = 0 (and *codes NULL) where the session has no pack, or
 * one of records before codes.  Every record in a pack is as long as the
 * first, so one with codes means all have them. */
int ms_summary_pack_codes(ms_txn *txn, int64_t id, const uint8_t **codes,
			  size_t *stride, uint64_t *n);
/* The min/max/mean of the session's first *n summary records in place,
 * from its pack: record i's (as ms_summary.data, for n_layers x
 * n_kv_heads heads of head_dim) at *data + i * *stride, valid while txn
 * is, asked of the disk at once (madvise): so that opening a long
 * session copies none of them.  *n = 0 (and *data NULL) where the
 * session has no pack or its records are of another geometry. */
int ms_summary_pack_vectors(ms_txn *txn, int64_t id, uint32_t n_layers,
			    uint32_t n_kv_heads, uint32_t head_dim,
			    const uint8_t **data, size_t *stride, uint64_t *n);
/* Writes the session's summary pack: a copy of its summaries, in block
 * order, as one record (their min/max/mean first, then their codes), so
 * that opening a long session reads them in one sequence rather than a
 * page or two per block scattered through the map (1.4 s at 18K blocks
 * with the page cache dropped), and without their codes unless asked.
 * Any later drop of summaries it holds (truncate, pop, delete) drops the
 * pack (a drop of later ones only, such as a kept turn's of a partial
 * last block, leaves it); blocks appended after it are read from
 * "summaries" as before.  Worth it once a prefill ends. */
int ms_summary_pack(ms_store *ms, int64_t id);
/* Gives the session's summaries written before codes (ms_summary.codes
 * NULL) their codes, each made again from its block (decoded: a quantized
 * block's keys are near the floats the summary was first made from, so
 * its bounds and mean may move by a rounding), in write transactions of
 * at most 256 records; records with codes are left as they are.  Its
 * summary pack no longer matches: write it again (ms_summary_pack).
 * *n_added (may be NULL) receives how many records changed; 0 for a
 * session written with codes.  An interrupted run leaves every record
 * whole, some with codes: run it again. */
int ms_summary_codes(ms_store *ms, int64_t id, uint64_t *n_added);
/* min/max/mean of channel c of (layer, head) of a summary. */
void ms_summary_channel(const ms_summary *s, uint32_t layer, uint32_t head,
			uint32_t c, float *mn, float *mx, float *mean);
/* The same for every channel at once: mn, mx and mean receive head_dim
 * floats each (F16C where the CPU has it: a session's summaries are read
 * this way when it is opened). */
void ms_summary_vectors(const ms_summary *s, uint32_t layer, uint32_t head,
			float *mn, float *mx, float *mean);

/* f16 helpers (round to nearest even; inf/NaN preserved). */
uint16_t ms_f16_from_f32(float f);
float ms_f16_to_f32(uint16_t h);
float ms_f16_load(const uint8_t *p);

/* ------------------------------------------------------------------ */
/* Maintenance                                                         */

typedef struct ms_stats {
	uint64_t sessions;	/* LMDB heads */
	uint64_t blocks;	/* unique blocks stored */
	uint64_t shared_blocks;	/* blocks with refcount > 1 */
	uint64_t block_refs;	/* chain entries (sum of refcounts) */
	uint64_t tokens_stored;	/* sum of unique blocks' tokens */
	uint64_t block_bytes;	/* sum of block record sizes */
	uint64_t tails, tail_bytes;
	uint64_t packs;		/* sessions with a summary pack */
	uint64_t checkpoints, checkpoint_bytes;
	uint64_t bytes_on_disk;	/* size of data.mdb */
	uint64_t map_size;	/* current LMDB map size */
	uint64_t map_used;	/* (last page + 1) * page size */
	double bytes_per_token;	/* block_bytes / tokens_stored */
} ms_stats;
int ms_stats_get(ms_store *ms, ms_stats *out);

/* fsck: verifies every block's checksum (if deep), that "blocks" and
 * "prefix" hold the same keys, that each refcount equals the number of
 * chain entries naming the block, that every chain is contiguous from 0,
 * parent-linked and ends at its head's key with the head's counts, that
 * summaries match chains, that every checkpoint's block exists and it
 * ends where the block ends (deep: its checksum), and that heads and
 * catalog rows agree.
 * Returns 0 if all holds, MS_ECHECK if not (*problems, may be NULL, gets
 * the count; ms_errmsg names the first), or another error. */
int ms_check(ms_store *ms, int deep, uint64_t *problems);

/* Frees what no session reaches: blocks without refs, prefix entries
 * without blocks, chains/summaries/tails without a head, checkpoints
 * without a block.  *freed (may be NULL) receives the number of records
 * removed. */
int ms_gc(ms_store *ms, uint64_t *freed);
/* ms_gc, then rewrites the LMDB file compactly (mdb_env_copy2 with
 * MDB_CP_COMPACT to a temporary file, then rename over data.mdb and
 * reopen).  No ms_txn may be open (MS_EBUSY). */
int ms_compact(ms_store *ms);

/* Drops this process's mappings of the map's pages (MADV_DONTNEED) and
 * nothing else: the page cache keeps them, and a view read afterwards
 * faults its pages back in with the same bytes, so views of open read
 * transactions stay valid.  Every page a process reads through the map
 * stays in its RSS until then: a 1M-token prefill, whose sparse attention
 * reads most blocks at some point, ended with 3.8 GB of them.  Unmapped,
 * they are also the first the kernel reclaims.  Linux only (the map is
 * found in /proc/self/maps); elsewhere it does nothing.  Call it on the
 * store's thread (a map grown meanwhile would move under it).  The passes
 * over every record of a session (ms_summary_codes, ms_summary_pack,
 * ms_session_fork, ms_session_adopt, the deletes of ms_session_delete
 * and ms_session_truncate) call it every 256 records: each
 * record's first read maps the 64 KB around it where the file is in the
 * page cache (the kernel's fault-around), or the whole folio where the
 * cache holds it in large ones (Linux 6.18 maps them whole: up to 2 MB
 * per touch on ext4).  Errors: MS_EINVAL, MS_EIO. */
int ms_trim(ms_store *ms);

/* ------------------------------------------------------------------ */
/* Catalog: documents, spans, jobs, audit                              */

typedef struct ms_document {
	int64_t id;
	char path[4097];	/* any UTF-8 without NUL, 1..4096 bytes */
	char content_hash[129];	/* lowercase hex, 1..128 digits */
	int64_t size, mtime;
	char kind[33];		/* a name, e.g. "pdf", "docx", "text" */
} ms_document;

/* Adds a document (id, if set, is ignored) and sets d->id; the same (path,
 * content_hash) added twice gives the existing id. */
int ms_document_add(ms_store *ms, ms_document *d);
int ms_document_get(ms_store *ms, int64_t id, ms_document *out);

/* A span: tokens [tok_start, tok_end) of a session came from a document's
 * lines [line_start, line_end] and/or page (0 when unknown).  Spans of one
 * session never overlap (MS_EEXIST otherwise). */
typedef struct ms_span {
	int64_t session_id;
	uint64_t tok_start, tok_end;
	int64_t document_id;
	int64_t line_start, line_end, page;
} ms_span;
int ms_span_add(ms_store *ms, const ms_span *spans, size_t n);
/* The span containing token position pos (an index search: log time). */
int ms_span_lookup(ms_store *ms, int64_t session_id, uint64_t pos,
		   ms_span *out);

typedef enum ms_job_state {
	MS_JOB_QUEUED = 0, MS_JOB_RUNNING, MS_JOB_DONE, MS_JOB_FAILED,
	MS_JOB_CANCELED,
} ms_job_state;
typedef struct ms_job {
	int64_t id;
	char kind[129];		/* a name */
	int64_t session_id;	/* 0 if none */
	ms_job_state state;
	uint64_t done, total;	/* progress */
	char error[1024];	/* "" unless failed */
	int64_t created, updated;
} ms_job;
/* Creates a queued job; sets j->id. */
int ms_job_create(ms_store *ms, ms_job *j);
/* Updates state, done, total and error of job j->id. */
int ms_job_update(ms_store *ms, const ms_job *j);
int ms_job_get(ms_store *ms, int64_t id, ms_job *out);
/* Jobs, newest first, at most limit (1..10000); *out malloc'd, ms_free. */
int ms_job_list(ms_store *ms, size_t limit, ms_job **out, size_t *n);

/* An audit record: who asked what of which session, with which model and
 * settings.  Strings are copied; bounded at 4096 bytes each (MS_ERANGE). */
typedef struct ms_audit {
	int64_t id, ts;		/* set by ms_audit_append */
	char who[129];
	char action[129];
	char session[129];	/* name, "" if none: survives deletion */
	char model[257];
	char settings[4097];	/* e.g. JSON */
} ms_audit;
int ms_audit_append(ms_store *ms, ms_audit *a);
/* Records of one session ("" or NULL: all), newest first, at most limit. */
int ms_audit_list(ms_store *ms, const char *session, size_t limit,
		  ms_audit **out, size_t *n);

/* Frees what a *_list function returned. */
void ms_free(void *p);

/* ------------------------------------------------------------------ */
/* Token stream and manifest (catalog; stream.c)                       */

/* A session's token stream: the token ids ingest produced, in order,
 * before (and independently of) prefill.  Stored in the catalog in chunks
 * of MS_STREAM_CHUNK ids (int32 little-endian); every chunk but the last
 * is full, so the length is read from the last chunk alone.  Deleting the
 * session deletes its stream and manifest. */
#define MS_STREAM_CHUNK 4096
/* The longest stream, in tokens (and the bound on one append). */
#define MS_STREAM_MAX ((uint64_t)1 << 40)

/* Appends ids[0..n) to session id's stream in one SQLite transaction (all
 * or nothing).  MS_ENOTFOUND if there is no such session, MS_ERANGE past
 * MS_STREAM_MAX.  n may be 0. */
int ms_stream_append(ms_store *ms, int64_t id, const int32_t *ids, size_t n);
/* The stream's length in tokens (0 for a session without one). */
int ms_stream_length(ms_store *ms, int64_t id, uint64_t *n);
/* Copies up to n ids from position start into out[0..n); *got receives
 * how many (fewer at the end of the stream, 0 past it). */
int ms_stream_read(ms_store *ms, int64_t id, uint64_t start, size_t n,
		   int32_t *out, size_t *got);
/* Cuts the stream to its first n tokens (a no-op when it is shorter). */
int ms_stream_truncate(ms_store *ms, int64_t id, uint64_t n);

/* Appends spans after every existing span of their session, in one
 * transaction with one prepared statement (ms_span_add checks each span
 * against its neighbours, which costs two index probes per span).  The
 * spans must be of one session, ascending and non-overlapping, and start
 * at or after the end of its last span (MS_EINVAL otherwise; MS_ENOTFOUND
 * for an unknown session or document).  All or nothing. */
int ms_span_append(ms_store *ms, const ms_span *spans, size_t n);
/* Drops the session's spans at or after token pos; a span straddling pos
 * is cut short to end there. */
int ms_span_truncate(ms_store *ms, int64_t session_id, uint64_t pos);
/* One past the last token the session's spans cover (0 without spans). */
int ms_span_end(ms_store *ms, int64_t session_id, uint64_t *end);
/* The number of spans of a session and the number of distinct documents
 * they name. */
int ms_span_count(ms_store *ms, int64_t session_id, uint64_t *n_spans,
		  uint64_t *n_docs);
/* The documents of a session (those its spans name), in stream order,
 * with the first and last token of each: at most limit (1..100000); *out
 * malloc'd (ms_free), NULL when *n is 0. */
typedef struct ms_session_doc {
	ms_document doc;
	uint64_t tok_start, tok_end;
} ms_session_doc;
int ms_session_docs(ms_store *ms, int64_t session_id, size_t limit,
		    ms_session_doc **out, size_t *n);

/* The session's manifest: an opaque blob (ingest's ing_manifest_encode
 * output), at most MS_MANIFEST_MAX bytes (MS_ERANGE).  put replaces it;
 * get hands a malloc'd copy (ms_free) or MS_ENOTFOUND; del is a no-op when
 * there is none. */
#define MS_MANIFEST_MAX ((size_t)1 << 30)
int ms_manifest_put(ms_store *ms, int64_t id, const void *data, size_t len);
int ms_manifest_get(ms_store *ms, int64_t id, void **data, size_t *len);
int ms_manifest_del(ms_store *ms, int64_t id);

#ifdef __cplusplus
}
#endif
#endif
