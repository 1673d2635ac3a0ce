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

/* Tensor element types, numbered as in GGUF files (ggml's type ids), so a
 * value read from a file is used as is.  Ids not listed are refused. */
typedef enum eng_type {
	ENG_TYPE_F32  = 0,
	ENG_TYPE_F16  = 1,
	ENG_TYPE_Q4_0 = 2,
	ENG_TYPE_Q4_1 = 3,
	ENG_TYPE_Q5_0 = 6,
	ENG_TYPE_Q5_1 = 7,
	ENG_TYPE_Q8_0 = 8,
	ENG_TYPE_Q8_1 = 9,	/* activations only, never in a file we load */
	ENG_TYPE_Q2_K = 10,
	ENG_TYPE_Q3_K = 11,
	ENG_TYPE_Q4_K = 12,
	ENG_TYPE_Q5_K = 13,
	ENG_TYPE_Q6_K = 14,
	ENG_TYPE_Q8_K = 15,	/* activations only */
	ENG_TYPE_BF16 = 30,
} eng_type;

/* The engine's version string, e.g. "0.1.0"; static storage. */
const char *eng_version(void);

#ifdef __cplusplus
}
#endif
#endif /* ENGRAM_ENGINE_H */
