/* ingest.h - the whole public API of engram's ingest module (prefix ing_):
 * walking trees, extracting text, framing documents, source maps.
 *
 * Conventions as in engine.h: int returns, 0 on success, a negative
 * ING_E* code on failure; _open/_close pairs; the caller owns what an
 * _open returns.  Design notes: docs/ARCHITECTURE.md.
 */
#ifndef ENGRAM_ING_H
#define ENGRAM_ING_H

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes: -1200 .. -1299.  The list only grows at the end. */
#define ING_ERRNO_MAP(X)                                       \
	X(-1200, ING_EINVAL,  "invalid argument")                 \
	X(-1201, ING_ENOMEM,  "out of memory")                    \
	X(-1202, ING_EIO,     "input/output error")

enum {
#define ING__ENUM(code, name, msg) name = (code),
	ING_ERRNO_MAP(ING__ENUM)
#undef ING__ENUM
};

/* A static string describing an error code; never NULL. */
const char *ing_strerror(int err);

#ifdef __cplusplus
}
#endif
#endif
