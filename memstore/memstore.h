/* memstore.h - the whole public API of engram's memstore module (prefix ms_):
 * KV blocks in LMDB, the catalog in SQLite.
 *
 * Conventions as in engine.h: int returns, 0 on success, a negative
 * MS_E* code on failure; _open/_close pairs; the caller owns what an
 * _open returns.  Design notes: docs/ARCHITECTURE.md.
 */
#ifndef ENGRAM_MS_H
#define ENGRAM_MS_H

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes: -1100 .. -1199.  The list only grows at the end. */
#define MS_ERRNO_MAP(X)                                       \
	X(-1100, MS_EINVAL,  "invalid argument")                 \
	X(-1101, MS_ENOMEM,  "out of memory")                    \
	X(-1102, MS_EIO,     "input/output error")

enum {
#define MS__ENUM(code, name, msg) name = (code),
	MS_ERRNO_MAP(MS__ENUM)
#undef MS__ENUM
};

/* A static string describing an error code; never NULL. */
const char *ms_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
