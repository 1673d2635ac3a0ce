/* engine.h - the whole public API of the engram engine (prefix eng_).
 *
 * The engine owns GGUF models, tokenizers, the transformer forward pass,
 * quantized kernels and sampling.  Design notes: docs/ARCHITECTURE.md.
 *
 * Conventions, as in every engram module:
 *  - Functions return int: 0 on success, a negative ENG_E* code on failure.
 *    eng_strerror() and eng_errname() turn a code into text.
 *  - Objects come in _open/_close (or _new/_free) pairs; the caller owns what
 *    an _open or _new returns and gives it back with the matching call.
 *  - Borrowed pointers say how long they live.
 */
#ifndef ENGRAM_ENGINE_H
#define ENGRAM_ENGINE_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes: -1000 .. -1099.  The list only grows at the end. */
#define ENG_ERRNO_MAP(X)                                              \
	X(-1000, ENG_EINVAL,    "invalid argument")                      \
	X(-1001, ENG_ENOMEM,    "out of memory")                         \
	X(-1002, ENG_EIO,       "input/output error")                    \
	X(-1003, ENG_EFORMAT,   "malformed model file")                  \
	X(-1004, ENG_EUNSUP,    "unsupported model")                     \
	X(-1005, ENG_ENOKEY,    "required metadata key missing")         \
	X(-1006, ENG_ERANGE,    "value out of range")                    \
	X(-1007, ENG_ECANCELED, "operation cancelled")

enum {
#define ENG__ENUM(code, name, msg) name = (code),
	ENG_ERRNO_MAP(ENG__ENUM)
#undef ENG__ENUM
};

/* A static string describing an error code; never NULL. */
const char *eng_strerror(int err);
/* The code's symbolic name ("ENG_EFORMAT"); never NULL. */
const char *eng_errname(int err);

/* The engine's version string, e.g. "0.1.0"; static storage. */
const char *eng_version(void);

#ifdef __cplusplus
}
#endif
#endif /* ENGRAM_ENGINE_H */
