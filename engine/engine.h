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

#include <stdatomic.h>
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

/* ------------------------------------------------------------------------
 * Tensor types
 *
 * Quantized types store elements in blocks: eng_type_block_size() elements
 * take eng_type_size() bytes.  A row of n elements (n a multiple of the block
 * size) takes n / block_size * type_size bytes.
 * ------------------------------------------------------------------------ */

/* Elements per block of type t; 0 for an id that is not a known type. */
size_t eng_type_block_size(int t);
/* Bytes per block of type t; 0 for an id that is not a known type. */
size_t eng_type_size(int t);
/* The type's name as ggml spells it ("Q4_K"); "?" for an unknown id.
 * Static storage. */
const char *eng_type_name(int t);

/* ------------------------------------------------------------------------
 * GGUF files
 *
 * eng_gguf_open() maps a GGUF file (versions 2 and 3, little-endian) read
 * only and checks all of it before returning: every count, length, offset
 * and size is checked against the file size, so that no later lookup can
 * read outside the map.  Nothing is allocated in proportion to a count read
 * from the file unless the count has first been bounded by the bytes left
 * in the file.  A refused file gives ENG_EFORMAT (or ENG_EUNSUP for a
 * version or type id we do not know, ENG_EIO for a file that cannot be
 * read) and a message in err naming the offset and the key or tensor.
 *
 * An eng_gguf is immutable once open: any number of threads may read it at
 * once.  Every pointer it hands out (names, strings, array and tensor data)
 * points into the map or into the eng_gguf and stays valid until
 * eng_gguf_close().  Strings in GGUF are not NUL-terminated: they come with
 * a length.  Keys and tensor names are the exception: the reader copies them
 * and NUL-terminates them.  Data pointers into the map need not be aligned
 * for their element type except tensor data (aligned to the file's
 * general.alignment, 32 by default, relative to the file start): read array
 * elements with memcpy.
 * ------------------------------------------------------------------------ */

typedef struct eng_gguf eng_gguf;

/* Metadata value types, numbered as in GGUF files. */
typedef enum eng_gguf_vtype {
	ENG_GGUF_UINT8   = 0,
	ENG_GGUF_INT8    = 1,
	ENG_GGUF_UINT16  = 2,
	ENG_GGUF_INT16   = 3,
	ENG_GGUF_UINT32  = 4,
	ENG_GGUF_INT32   = 5,
	ENG_GGUF_FLOAT32 = 6,
	ENG_GGUF_BOOL    = 7,
	ENG_GGUF_STRING  = 8,
	ENG_GGUF_ARRAY   = 9,
	ENG_GGUF_UINT64  = 10,
	ENG_GGUF_INT64   = 11,
	ENG_GGUF_FLOAT64 = 12,
} eng_gguf_vtype;

/* Arrays may nest (an array of arrays); deeper nesting is refused. */
#define ENG_GGUF_MAX_DEPTH 8
/* At most this many dimensions per tensor (as ggml). */
#define ENG_GGUF_MAX_DIMS 4

/* One tensor's description.  name is NUL-terminated; data points into the
 * map (n_bytes long, aligned to the file's alignment). ne[i] for i >= n_dims
 * is 1.  ne[0] is the fastest-varying (row) dimension, as in ggml. */
typedef struct eng_gguf_tensor {
	const char *name;
	eng_type    type;
	uint32_t    n_dims;
	uint64_t    ne[ENG_GGUF_MAX_DIMS];
	uint64_t    n_elements;
	uint64_t    offset;	/* from the start of the file */
	uint64_t    n_bytes;
	const void *data;
} eng_gguf_tensor;

/* Open and check the GGUF file at path.  On success *out is the caller's,
 * to be given back with eng_gguf_close().  On failure *out is NULL and, if
 * err is not NULL, err holds a NUL-terminated message (truncated to errlen). */
int eng_gguf_open(const char *path, eng_gguf **out, char *err, size_t errlen);
/* The same over a buffer the caller owns; the buffer must stay valid and
 * unchanged until eng_gguf_close().  Used by tests and the fuzzer. */
int eng_gguf_open_mem(const void *data, size_t size, eng_gguf **out,
    char *err, size_t errlen);
/* Unmap and free; NULL is a no-op. */
void eng_gguf_close(eng_gguf *g);

/* The format version (2 or 3), the data alignment, and the whole file as
 * mapped (for hashing). */
uint32_t eng_gguf_version(const eng_gguf *g);
uint32_t eng_gguf_alignment(const eng_gguf *g);
const void *eng_gguf_bytes(const eng_gguf *g, size_t *size);

/* Metadata: keys are numbered 0 .. eng_gguf_kv_count()-1 in file order. */
size_t eng_gguf_kv_count(const eng_gguf *g);
/* Index of key, or -1 if absent. */
long eng_gguf_find_key(const eng_gguf *g, const char *key);
/* The key's name (NUL-terminated) and value type; NULL / -1 for a bad index. */
const char *eng_gguf_kv_key(const eng_gguf *g, size_t idx);
int eng_gguf_kv_type(const eng_gguf *g, size_t idx);

/* Typed getters by key.  Return 0, ENG_ENOKEY if the key is absent,
 * ENG_EFORMAT if it holds another kind of value, ENG_ERANGE if an integer
 * does not fit.  Integer getters accept any integer type whose value fits;
 * eng_gguf_get_f32 accepts FLOAT32 and FLOAT64. */
int eng_gguf_get_u32(const eng_gguf *g, const char *key, uint32_t *out);
int eng_gguf_get_i64(const eng_gguf *g, const char *key, int64_t *out);
int eng_gguf_get_f32(const eng_gguf *g, const char *key, float *out);
int eng_gguf_get_bool(const eng_gguf *g, const char *key, int *out);
/* A STRING value: *s points into the map, *len bytes, not NUL-terminated. */
int eng_gguf_get_str(const eng_gguf *g, const char *key, const char **s,
    size_t *len);
/* An ARRAY value: element type and count; *data points at the first
 * element in the map (for arrays of scalars: count packed little-endian
 * elements, possibly unaligned).  For arrays of STRING use
 * eng_gguf_arr_str(); arrays of ARRAY are checked but not indexable. */
int eng_gguf_get_arr(const eng_gguf *g, const char *key, int *elem_type,
    uint64_t *count, const void **data);
/* Element i of the string array under key. */
int eng_gguf_arr_str(const eng_gguf *g, const char *key, uint64_t i,
    const char **s, size_t *len);

/* Tensors, numbered in file order. */
size_t eng_gguf_tensor_count(const eng_gguf *g);
const eng_gguf_tensor *eng_gguf_tensor_at(const eng_gguf *g, size_t idx);
/* By name; NULL if absent. */
const eng_gguf_tensor *eng_gguf_tensor_find(const eng_gguf *g,
    const char *name);
/* Tells the kernel that [p, p + n) of a mapped file's tensor data will not
 * be read again soon: its whole pages leave the process's resident set
 * (the next read faults them in again from the page cache).  Nothing for
 * a GGUF opened in memory, or outside the file. */
void eng_gguf_release(const eng_gguf *g, const void *p, size_t n);

/* ------------------------------------------------------------------------
 * Tokenizers (eng_vocab)
 *
 * Built from a GGUF's tokenizer.ggml.* metadata; ids equal llama.cpp's
 * (src/llama-vocab.cpp) byte for byte.  Two kinds:
 *  - "llama": SentencePiece-style BPE over scores with <0xNN> byte fallback
 *    (Gemma 3, Llama 2): spaces become U+2581, a space is prefixed to each
 *    text fragment that follows a special token or the start when
 *    tokenizer.ggml.add_space_prefix says so (default true).
 *  - "gpt2": byte-level BPE with merges (Llama 3, Qwen 2.5) and the
 *    pre-tokenizer named by tokenizer.ggml.pre: llama-bpe/llama3, qwen2,
 *    default.
 * Token attributes come from tokenizer.ggml.token_type.  CONTROL tokens are
 * matched in text only with ENG_TOK_PARSE_SPECIAL; USER_DEFINED tokens are
 * always matched (as llama.cpp does).
 *
 * An eng_vocab borrows the eng_gguf it was built from (token strings are
 * read from the map): close the vocab before the gguf.  It is immutable:
 * any number of threads may tokenize at once.
 * ------------------------------------------------------------------------ */

typedef struct eng_vocab eng_vocab;

/* Token attributes (llama.cpp's llama_token_attr bits). */
#define ENG_TOKATTR_UNDEFINED    0
#define ENG_TOKATTR_UNKNOWN      (1 << 0)
#define ENG_TOKATTR_UNUSED       (1 << 1)
#define ENG_TOKATTR_NORMAL       (1 << 2)
#define ENG_TOKATTR_CONTROL      (1 << 3)
#define ENG_TOKATTR_USER_DEFINED (1 << 4)
#define ENG_TOKATTR_BYTE         (1 << 5)

/* eng_tokenize() flags. */
#define ENG_TOK_ADD_SPECIAL   1	/* add BOS/EOS as the model asks */
#define ENG_TOK_PARSE_SPECIAL 2	/* match CONTROL tokens in the text */

enum { ENG_VOCAB_SPM = 1, ENG_VOCAB_BPE = 2 };

int eng_vocab_open(const eng_gguf *g, eng_vocab **out, char *err,
    size_t errlen);
void eng_vocab_close(eng_vocab *v);

int eng_vocab_kind(const eng_vocab *v);	/* ENG_VOCAB_SPM or _BPE */
uint32_t eng_vocab_size(const eng_vocab *v);
/* Special ids, -1 when the model has none. */
int32_t eng_vocab_bos(const eng_vocab *v);
int32_t eng_vocab_eos(const eng_vocab *v);
int32_t eng_vocab_eot(const eng_vocab *v);	/* <end_of_turn> etc. */
int eng_vocab_add_bos(const eng_vocab *v);
int eng_vocab_add_eos(const eng_vocab *v);
/* The token's text as stored (not unescaped) and its attribute bits;
 * ENG_EINVAL for an id out of range.  *s lives as long as v. */
int eng_vocab_token(const eng_vocab *v, int32_t id, const char **s,
    size_t *len, int *attr);
/* Id of the token whose text is exactly s[0..len), or -1. */
int32_t eng_vocab_find(const eng_vocab *v, const char *s, size_t len);

/* Tokenize text[0..len) (any bytes; invalid UTF-8 is handled as
 * llama.cpp does).  On success *ids is a malloc'ed array of *n ids that the
 * caller free()s (NULL when *n is 0).  Inputs over 256 MiB give ENG_ERANGE. */
int eng_tokenize(const eng_vocab *v, const char *text, size_t len,
    int flags, int32_t **ids, size_t *n);

/* The bytes token id stands for (llama_token_to_piece with lstrip 0):
 * CONTROL/UNKNOWN tokens give nothing unless special is set; byte tokens
 * give their byte; SPM pieces have U+2581 turned back into spaces; BPE
 * pieces are byte-decoded.  Writes at most cap bytes to buf and sets *len
 * to the piece's full length: if *len > cap, call again with a bigger
 * buffer.  ENG_EINVAL for a bad id. */
int eng_token_to_piece(const eng_vocab *v, int32_t id, int special,
    char *buf, size_t cap, size_t *len);

/* Streaming detokenizer: fed one id at a time, hands back text that ends on
 * a UTF-8 character boundary, holding back the start of a character whose
 * remaining bytes may come with the next token (byte tokens <0xNN> of one
 * character).  Bytes that can never form a valid character are passed on
 * as they are.  One decoder per stream; not thread-safe. */
typedef struct eng_detok eng_detok;
int eng_detok_open(const eng_vocab *v, int special, eng_detok **out);
void eng_detok_close(eng_detok *d);
/* Feed id; *text (*len bytes, possibly 0) is valid until the next call on
 * d. */
int eng_detok_push(eng_detok *d, int32_t id, const char **text, size_t *len);
/* End of stream: hand back whatever is held. */
int eng_detok_flush(eng_detok *d, const char **text, size_t *len);

/* ------------------------------------------------------------------------
 * Models
 *
 * eng_model_open() opens a GGUF, reads the hyperparameters of a supported
 * architecture (gemma3, llama, qwen2), builds its tokenizer and computes its
 * fingerprint: XXH3-128 (xxHash's XXH3_128bits, seed 0) over every byte of
 * the file, metadata and tensor data alike, as 32 lowercase hex digits
 * (the canonical big-endian form, as `xxhsum -H2` prints it).  Any other
 * architecture gives ENG_EUNSUP, a missing required key ENG_ENOKEY; err
 * names the architecture or key.
 * ------------------------------------------------------------------------ */

typedef enum eng_arch {
	ENG_ARCH_GEMMA3 = 1,
	ENG_ARCH_LLAMA  = 2,
	ENG_ARCH_QWEN2  = 3,
} eng_arch;

typedef enum eng_rope_scaling {
	ENG_ROPE_SCALING_NONE   = 0,
	ENG_ROPE_SCALING_LINEAR = 1,
	ENG_ROPE_SCALING_YARN   = 2,
	ENG_ROPE_SCALING_LLAMA3 = 3,
} eng_rope_scaling;

typedef struct eng_hparams {
	eng_arch arch;
	uint32_t n_layer;	/* {arch}.block_count */
	uint32_t n_embd;	/* {arch}.embedding_length */
	uint32_t n_head;	/* {arch}.attention.head_count */
	uint32_t n_head_kv;	/* .head_count_kv, default n_head */
	uint32_t head_dim_k;	/* .key_length, default n_embd / n_head */
	uint32_t head_dim_v;	/* .value_length, default head_dim_k */
	uint32_t n_ff;		/* {arch}.feed_forward_length */
	uint32_t n_ctx_train;	/* {arch}.context_length */
	uint32_t n_vocab;	/* tokenizer.ggml.tokens length */
	uint32_t n_rot;		/* {arch}.rope.dimension_count, default head_dim_k */
	float    rms_eps;	/* .attention.layer_norm_rms_epsilon */
	float    rope_base;	/* {arch}.rope.freq_base (global layers) */
	float    rope_base_local;	/* gemma3 local layers: 1e4 (fixed); else = rope_base */
	uint32_t sliding_window;	/* gemma3: .attention.sliding_window; else 0 */
	uint32_t swa_pattern;	/* gemma3: 6 (fixed): layer il is global iff
				 * (il + 1) % swa_pattern == 0; else 0 = all global */
	eng_rope_scaling rope_scaling;	/* {arch}.rope.scaling.type */
	float    rope_scale_factor;	/* .rope.scaling.factor, 1 if none */
	uint32_t rope_orig_ctx;		/* .rope.scaling.original_context_length */
	int      has_rope_freqs;	/* a rope_freqs.weight tensor (llama3) */
} eng_hparams;

/* One tensor type and how many tensors use it. */
typedef struct eng_type_count {
	eng_type type;
	uint32_t n_tensors;
} eng_type_count;

/* What `engramctl model` shows.  Strings are NUL-terminated and live as
 * long as the model. */
typedef struct eng_model_info {
	const char *name;	/* general.name, "" if absent */
	const char *arch;	/* general.architecture */
	uint64_t    n_params;	/* sum of tensor element counts */
	uint32_t    n_ctx_train;
	uint32_t    n_vocab;
	size_t      n_types;	/* entries used in types[] */
	eng_type_count types[16];	/* by type id, ascending */
	char        fingerprint[33];	/* XXH3-128, hex */
	uint64_t    file_size;
} eng_model_info;

typedef struct eng_model eng_model;

int eng_model_open(const char *path, eng_model **out, char *err,
    size_t errlen);
/* The same over a GGUF the caller has opened: the model takes ownership of
 * g (and closes it in eng_model_close, or at once on failure). */
int eng_model_open_gguf(eng_gguf *g, eng_model **out, char *err,
    size_t errlen);
void eng_model_close(eng_model *m);
/* Borrowed, valid until eng_model_close(). */
const eng_hparams *eng_model_hparams(const eng_model *m);
/* 1 if layer il attends over the whole context, 0 if over a sliding
 * window only (gemma3's local layers).  The global layers are the ones
 * whose keys a session keeps whole and sparse attention serves. */
int eng_hparams_layer_global(const eng_hparams *hp, uint32_t il);
/* How many of the layers are global (>= 1 for any model that loads). */
uint32_t eng_hparams_n_global(const eng_hparams *hp);
const eng_model_info *eng_model_info_get(const eng_model *m);
const eng_gguf *eng_model_gguf(const eng_model *m);

/* What eng_model_pack packs. */
#define ENG_PACK_HEAD   1u	/* the output head (output.weight, or the
				 * token embeddings it is tied to) */
#define ENG_PACK_LAYERS 2u	/* the blocks' matrices whose pack is about
				 * their own size (q8_0; q5_0, kept at 5
				 * bits); not those it would widen */

/* Packs the model's matrices named by what (ENG_PACK_*) whole in the
 * layout of the interleaved integer kernels (kernels.h, eng_qpack_make),
 * memory the model owns, so that decode reads them at memory speed:
 * the output head of the default model, 168M weights read at every
 * token, is then read in ~2/3 of the time.  Matrices of types or on CPUs
 * without such kernels (below AVX-512 VNNI) are left as they are.  The
 * packed matrices' pages of the mapped file are then released
 * (eng_gguf_release): the head tied to the embeddings is read a row per
 * token after that.  *bytes (may be NULL) gets the memory the packs
 * hold, 0 if nothing was packed.
 *
 * Call it before any eng_fwd is opened on m (an eng_fwd reads the packs
 * it finds when it opens), from one thread; after it the model is
 * read-only again.  n_threads share the work (0: one per CPU).  A second call
 * packs only what the first did not.  Errors: ENG_EINVAL, ENG_ENOMEM
 * (what was packed before stays). */
int eng_model_pack(eng_model *m, unsigned what, int n_threads,
    size_t *bytes);
const eng_vocab *eng_model_vocab(const eng_model *m);

/* ------------------------------------------------------------------------
 * KV cache interface
 *
 * The forward pass reads and writes keys and values only through these
 * operations, so that a store can keep them anywhere (memory, LMDB blocks)
 * and keep any subset of them (sliding windows, sparse attention).
 *
 * A cache holds one sequence: positions 0 .. n_pos-1.  A forward step over
 * positions [p0, p0+n) with p0 == n_pos first calls write() for every layer,
 * then view() any number of times, then commit(p0+n).  Keys of a position
 * are n_head_kv rows of head_dim_k elements, values n_head_kv rows of
 * head_dim_v; they are written as f32 and stored as the cache's type
 * (F16 rounds to nearest even, as llama.cpp's default F16 cache does).
 *
 * Which positions a layer keeps is the store's choice: view() of a position
 * it does not hold gives ENG_ERANGE.  A layer with a sliding window of W
 * must keep at least positions p-W+1 .. p for every p being computed.
 *
 * Threading: one forward step at a time per cache.  During a step, view()
 * may be called from several pool threads at once (it must not modify the
 * store); write() and commit() come from the caller's thread.
 * ------------------------------------------------------------------------ */

typedef struct eng_kv eng_kv;

/* Positions [pos0, pos0+n) of one layer and kv head, contiguous in memory:
 * position pos0+i has its key at (char *)k + i*k_stride and its value at
 * (char *)v + i*v_stride, elements of the cache's type.  Valid until the
 * next write(), commit() or close of the cache. */
typedef struct eng_kv_span {
	const void *k;
	const void *v;
	size_t k_stride;	/* bytes */
	size_t v_stride;	/* bytes */
	uint32_t n;		/* positions in this span, >= 1 */
} eng_kv_span;

/* A layer and kv head's per-block records in two runs (the summary rows
 * of eng_kv_ops.summary, the key codes of eng_kv_ops.codes): blocks
 * [0, n_lo) at lo + b * lo_stride, blocks [n_lo, n) at
 * hi + (b - n_lo) * hi_stride, strides in bytes.  Two runs so that a
 * store can give its stored blocks' records in place, from its map, and
 * its own for the blocks after them; an in-memory cache has one run
 * (n_lo 0). */
typedef struct eng_kv_runs {
	const uint8_t *lo, *hi;
	size_t lo_stride, hi_stride;
	uint32_t n_lo, n;
} eng_kv_runs;

/* The record of block b < r->n. */
static inline const uint8_t *eng_kv_run_at(const eng_kv_runs *r, uint32_t b)
{
	return b < r->n_lo ? r->lo + (size_t)b * r->lo_stride :
	    r->hi + (size_t)(b - r->n_lo) * r->hi_stride;
}

/* Block b's summary row: ENG_KV_SUM_ROW(head_dim_k) f16, 2-byte aligned
 * (the summary op's promise). */
static inline const uint16_t *eng_kv_sum_at(const eng_kv_runs *r, uint32_t b)
{
	return (const uint16_t *)(const void *)eng_kv_run_at(r, b);
}

typedef struct eng_kv_ops {
	/* Store n positions starting at pos0 of layer: k is n rows of
	 * n_head_kv*head_dim_k f32, v n rows of n_head_kv*head_dim_v f32
	 * (borrowed for the call). */
	int (*write)(eng_kv *kv, uint32_t layer, uint32_t pos0, uint32_t n,
	    const float *k, const float *v);
	/* The longest contiguous run of positions starting at pos0 (at most
	 * n of them) of layer and kv head kvh; ENG_ERANGE if pos0 is not
	 * held.  Callers loop until they have the range they need. */
	int (*view)(eng_kv *kv, uint32_t layer, uint32_t kvh, uint32_t pos0,
	    uint32_t n, eng_kv_span *out);
	/* Optional (NULL: the store keeps no summaries; attention is then
	 * always dense).  Summaries of the keys of the complete blocks of
	 * block_tokens positions of a layer and kv head (block b covers
	 * positions b*block_tokens ..), in *sums (eng_kv_sum_at): per block
	 * a row of three per-channel vectors of its keys, the min rounded
	 * down to f16, the max rounded up and the mean rounded to nearest
	 * (eng_kv_summary_row: memstore's record, which a store can give in
	 * place).  sparse.c takes centre, radius and variance from them in
	 * f32.  sums->n is the committed complete blocks; valid as span
	 * views are.  Read from the caller's thread between write() and
	 * commit(). */
	int (*summary)(eng_kv *kv, uint32_t layer, uint32_t kvh,
	    eng_kv_runs *sums);
	/* Optional (NULL: none).  The 2-bit key codes of the same complete
	 * blocks (eng_kv_code_block), [block_tokens][ENG_KV_CODE_ROW
	 * (head_dim_k)] bytes a block, in *codes (eng_kv_run_at);
	 * codes->n the blocks that have them, counted from block
	 * 0 (fewer than the summaries' where a store written before codes
	 * lacks them).  Valid and read as summary's rows are. */
	int (*codes)(eng_kv *kv, uint32_t layer, uint32_t kvh,
	    eng_kv_runs *codes);
	/* Sets the sequence length to n_pos: after a step (n_pos grows), or
	 * to drop positions n_pos.. (ENG_ERANGE if the store can no longer
	 * serve a sequence of that length, e.g. a ring that was overwritten).
	 * Positions at or beyond n_pos are forgotten. */
	int (*commit)(eng_kv *kv, uint32_t n_pos);
	/* Frees the store and kv itself. */
	void (*close)(eng_kv *kv);
	/* Optional (NULL: none): a hint that positions pos0..pos0+n-1 of
	 * (layer, kvh) will be viewed soon, so that a store on disk can
	 * start reading them all at once.  Called by the forward pass with a
	 * sparse plan's ranges (and, before a question scores every
	 * candidate by its keys, with all of them), from the caller's
	 * thread, before the views.
	 * Errors are the store's to report at view time; returns nothing. */
	void (*prefetch)(eng_kv *kv, uint32_t layer, uint32_t kvh,
	    uint32_t pos0, uint32_t n);
} eng_kv_ops;

/* The common head of every store; an implementation embeds it first. */
struct eng_kv {
	const eng_kv_ops *ops;
	eng_type type;		/* ENG_TYPE_F16 or ENG_TYPE_F32 */
	uint32_t n_layer;
	uint32_t n_head_kv;
	uint32_t head_dim_k;
	uint32_t head_dim_v;
	uint32_t n_ctx;		/* most positions the store accepts */
	uint32_t n_pos;		/* committed length of the sequence */
	uint32_t block_tokens;	/* summary granularity; 0: no summaries */
};

/* An in-memory cache for model m: up to n_ctx positions, type F16 or F32.
 * Global layers grow their buffers as positions arrive; sliding-window
 * layers keep a ring of window + n_batch positions (a step of up to
 * n_batch tokens still sees each token's whole window).  n_batch must be
 * the eng_fwd's (or larger).  Free with eng_kv_close. */
int eng_kv_mem_open(const eng_model *m, uint32_t n_ctx, uint32_t n_batch,
    eng_type type, eng_kv **out);
/* Makes an in-memory cache keep per-block key summaries of its global
 * layers (blocks of block_tokens, 1..4096), so that sparse attention can
 * run on it.  Call before the first step. */
int eng_kv_mem_summaries(eng_kv *kv, uint32_t block_tokens);
/* f16 elements of a summary row for keys of hd channels. */
#define ENG_KV_SUM_ROW(hd) (3 * (size_t)(hd))
/* One block's summary row (see eng_kv_ops.summary) from the per-channel
 * min, max and mean of its keys: the min rounded down to f16, the max
 * rounded up (so that they still bound: the codes are made within them),
 * the mean to nearest, hd f16 each, as memstore's summary record has
 * them: a summary made from a block's keys and one read from the store
 * are the same bits. */
void eng_kv_summary_row(uint16_t *row, const float *kmin, const float *kmax,
    const float *kmean, uint32_t hd);
/* The summary row of a block from its n key rows (f32, row i at
 * k + i*hd): min, max and the mean as memstore computes it (a double sum
 * in position order, then divided).  hd <= ENG_KV_HD_MAX (the stores
 * refuse wider heads). */
void eng_kv_summarize_block(uint16_t *row, const float *k, uint32_t n,
    uint32_t hd);
/* Bytes of one key's codes: two bit planes of hd bits, the high bits of
 * every channel's code, then the low bits (bit c%8 of byte c/8). */
#define ENG_KV_CODE_ROW(hd) (2 * (((size_t)(hd) + 7) / 8))
/* The 2-bit codes of a block's n key rows (f32, row i at k + i*hd) into
 * codes (n rows of ENG_KV_CODE_ROW(hd) bytes): channel c of a key is
 * u = floor(4 (x - lo) / (hi - lo)), clamped to 0..3, where lo and hi are
 * the channel's min and max over the block rounded outward to f16 (as
 * memstore stores them; memstore computes the same codes the same way, so
 * codes made here and codes loaded from the store are the same bits;
 * in floats: x' = (x - lo) * 4, u = x' / (hi - lo) truncated where x' > 0
 * and hi > lo, else 0, at most 3).  A key is
 * then about lo + (hi - lo)(u + 1/2)/4, i.e. the summary's centre +
 * radius (u/2 - 3/4): enough to rank a question's candidate blocks by
 * their best keys without reading the keys (sparse.c). */
void eng_kv_code_block(uint8_t *codes, const float *k, uint32_t n,
    uint32_t hd);
/* Key width a summary supports (summaries are made with stack rows). */
#define ENG_KV_HD_MAX 4096
/* A copy of an in-memory cache (a branch point: the copy goes on
 * independently).  ENG_EINVAL for another kind of store. */
int eng_kv_mem_clone(const eng_kv *src, eng_kv **out);
/* Frees any store through its ops; NULL is a no-op. */
void eng_kv_close(eng_kv *kv);
/* Committed length. */
uint32_t eng_kv_length(const eng_kv *kv);
/* Forget positions n_pos..; see eng_kv_ops.commit. */
int eng_kv_truncate(eng_kv *kv, uint32_t n_pos);

/* ------------------------------------------------------------------------
 * Forward pass
 *
 * An eng_fwd holds a model's weights (borrowed from the model's map: the
 * model must outlive it), scratch buffers for up to n_batch tokens per step
 * and a thread pool.  One thread at a time may use an eng_fwd (the daemon's
 * worker); several eng_fwd over one model may run at once.
 * ------------------------------------------------------------------------ */

typedef struct eng_fwd eng_fwd;

/* How attention rounds.  ENG_ATTN_LLAMACPP reproduces llama.cpp's CPU
 * flash attention with an F16 cache: steps of fewer than 64 tokens round
 * queries to f16 and accumulate values in f16 (its one-chunk kernel),
 * longer steps work in f32 (its tiled kernel); greedy outputs then agree
 * with llama.cpp's far more often.  ENG_ATTN_F32 is f32 throughout, so a
 * prefill equals the same tokens decoded one by one up to float order. */
typedef enum eng_attn_mode {
	ENG_ATTN_LLAMACPP = 0,
	ENG_ATTN_F32 = 1,
} eng_attn_mode;

/* Block-sparse attention (engine/sparse.c).  On a layer that attends over
 * the whole context, once the context is longer than dense_max and the
 * cache keeps summaries (eng_kv.block_tokens), the queries of a step attend
 * to the first `sink` positions, the last `local` ones before the step (and
 * the step itself, causally) and the top_k blocks whose summaries score
 * highest for the step's mean query q.  A question or decode step (at
 * most ENG_SPARSE_FEW tokens) scores by the Gaussian estimate of the
 * block's attention mass at the model's own scale s of q.k
 * (1/sqrt(head_dim), or 1 for gemma3, whose queries are scaled first),
 * q.mean + s sum_c q_c^2 var_c / 2; a longer step (a prefill chunk,
 * whose mean query stands for many different ones) by
 * Quest's bound over the keys' box, q.centre + |q|.radius.  The highest
 * of the group's heads wins.  (Quest's bound alone ranks the block
 * holding a passkey in code no better than chance for a question on two
 * of the default model's three global layers; the mass estimate alone,
 * for prefill chunks too, finds fewer passkeys: bench/RESULTS.md.)
 * A question (2..ENG_SPARSE_FEW tokens) whose candidate blocks hold at
 * most scan_max positions is scored exactly instead: each block by its
 * best key, the highest q.k over its keys and the group's heads, for the
 * step's last query (the token the answer grows from), every candidate
 * key read through the store's views.  No summary kept the passkey: at
 * 32K in code the estimate and Quest's bound rank its block 23..303 of
 * 494 on the three global layers, its best key 0, 0 and 61; 4 to 16
 * keys per block chosen from the keys alone (farthest from the mean, or
 * from each other) rank it 0..249.  A question then costs one q.k per
 * candidate key and head (1M keys: 3 x 1G multiply-adds on the default
 * model, 0.1 s in memory; through engramd, where the first scan of a
 * session touches every stored block, 0.1-0.2 s at 146K and 2.2 s at
 * 767K), hence scan_max 256K by default; decode steps still score by
 * summaries.
 * Steps of one token also attend the blocks the last step of several
 * tokens (the question) picked, or every candidate while there are fewer
 * than that step would have picked (it attended them all: at 8K a
 * question's 256 cover the 111 candidates, and decode steps that saw 64 of
 * them lost a needle the question had found).  A question picks
 * question_top_k blocks, 4x a decode step's by default: on code, where the
 * blocks that look most like the question are other uses of "key", 64
 * leave the passkey too small a share (32K of code: 4 of 20 found with 64,
 * 11 of 20 with 256, as many as dense attention; bench/RESULTS.md,
 * Sessions IX).  It costs a question one step over 16K more positions, and
 * its decode steps attend those as well.  Only a question that scans takes
 * them: one that ranks by summaries (more candidates than scan_max) takes
 * top_k, since past the first few dozen those ranks are noise (256 such
 * blocks made the default model end every answer at once on a 1.2M
 * session; Sessions X).  With a shortlist, such a question scans the
 * shortlist positions ranked highest and takes top_k of them by their
 * best keys (256 made the same answers end at once, ranked either way).
 * Ranked by summaries, at 1M of C headers the needle 52K-210K back that a
 * scan of everything finds was among 128K or 256K shortlisted positions
 * at only 1 or 2 of 4 depths (bench/RESULTS.md, Sessions XI, XII).
 * Where the store keeps key codes for every candidate (eng_kv_ops.codes)
 * and codes is set, the shortlist is ranked by them instead: each block
 * by its best key as the 2-bit codes estimate it (sparse.c), one pass
 * over 64 bytes per key at 256 channels (a sixteenth of its f16 key and
 * value), no key read.  Ranked so, 16K positions (256 blocks) held the
 * needle at every depth of 1M and 128K that a scan of every key found
 * (Sessions XIII), hence shortlist 16384 by default.  A prefill chunk's
 * local run is prefill_local
 * positions where that is longer: tokens made from too little of their own
 * context derail later answers (bench/RESULTS.md: at 32K a passkey dense
 * attention finds was missed with 1024 local positions for prefill, found
 * with 8192).
 *
 * Placement: keys are stored rotated at their true positions.  Retrieved
 * positions may appear at most `reach` positions before the local run: the
 * blocks within reach keep their true positions; the sink and farther
 * blocks are moved up, in order, to the start of the reach (the query is
 * rotated back by a range's shift, so its keys look that much later), so
 * that every distance the model sees stays below reach + local + n_batch
 * however long the session.  reach is at most the model's trained
 * context less the longer local run and n_batch (0 asks for that much);
 * it is never less than sink + k*B, k the step's blocks (the tightest
 * packing: everything just before the local run); UINT32_MAX keeps every
 * true position.  The default, 8192, shows far blocks closer than the
 * trained context allows: the default model finds a passkey 9K positions
 * back more reliably than one 25K back (filler: 20 of 20 against 16 of 20
 * with reach 0 at 32K, 20 of 20 against 14 of 20 at 128K;
 * bench/RESULTS.md, Sessions IX).  Within reach, placement
 * is the identity, and with every block selected the result equals
 * dense attention exactly.  (Packing tighter than needed costs recall:
 * on code at 8K the model finds a passkey at its true distance that it
 * misses when the same blocks are packed; bench/RESULTS.md.)  A block
 * beyond the reach is also scored as it will be attended, as if moved up
 * to the start of the reach (the query rotated back by that shift), by a
 * question's best keys and a prefill chunk's bound: scored where it
 * stands, its distance is beyond the trained context and its score
 * noise, and past ~50K tokens such blocks displaced the passkey's
 * (bench/RESULTS.md, Sessions VIII).  A decode step picks only blocks
 * within the reach (scored in place, which is as placed there): it keeps
 * the question's picks, in place a farther block's score is noise, and a
 * rotation per block per token would almost triple its cost at 1M.
 * squeeze 1 keeps the reach however many blocks a step takes: the sink
 * and the blocks from beyond the reach go evenly between its start and
 * the first block within it, overlapping where they must (RoPE sees
 * distances only; InfLLM shows all its retrieved blocks at one
 * distance).  Off by default: a question's 256 blocks (16K positions)
 * then reach ~16K back, and squeezed into 8K the needle's share of the
 * answer's attention doubles where it is far back, but overlapping
 * blocks also blend ("sit in a chair" for "sit in Dolores Park"): 19 of
 * 20 needles in 128K of prose against 17, 18 of 20 at 32K against 20,
 * 12 of 20 passkeys in 32K of code against 11 (bench/RESULTS.md,
 * Sessions XI). */
/* Steps of at most this many tokens score blocks by estimated mass. */
#define ENG_SPARSE_FEW 64
typedef struct eng_sparse_params {
	uint32_t top_k;		/* blocks retrieved per step; 0: always dense */
	uint32_t sink;		/* first positions always attended */
	uint32_t local;		/* recent positions always attended */
	uint32_t prefill_local;	/* the same for a prefill chunk (a step of
				 * more than ENG_SPARSE_FEW tokens), if
				 * more than local */
	uint32_t prefill_top_k;	/* blocks retrieved per prefill chunk;
				 * 0: top_k */
	uint32_t question_top_k;	/* blocks retrieved by a question (a
				 * step of 2..ENG_SPARSE_FEW tokens) that
				 * scans (see scan_max), kept by its
				 * decode steps; 0: top_k */
	uint32_t dense_max;	/* contexts up to this are attended densely */
	uint32_t reach;		/* see above; 0: all the trained context
				 * allows */
	uint32_t scan_max;	/* a question whose candidates hold at most
				 * this many positions scores them exactly
				 * (see above); 0: never */
	uint32_t shortlist;	/* a question with more candidate positions
				 * than scan_max scans this many, the blocks
				 * ranked highest (codes, summaries), and
				 * takes top_k of them; 0: it ranks by
				 * summaries and takes top_k */
	uint32_t codes;		/* 1: a shortlist is ranked by the
				 * candidates' key codes where the store
				 * keeps them for every candidate (see
				 * above); 0: by their summaries */
	uint32_t squeeze;	/* 1: blocks moved up overlap rather than
				 * reach farther than `reach` (see above);
				 * 0: the reach grows to sink + k*B */
} eng_sparse_params;

/* The defaults measured in bench/RESULTS.md (engramd.conf(5) gives the
 * same): top_k 64, sink 64, local 1024, prefill_local 8192,
 * prefill_top_k 0 (top_k), question_top_k 256, dense_max 4096, reach 8192,
 * scan_max 262144, shortlist 16384, codes 1, squeeze 0.
 * Sparse attention is off until such params are given to
 * eng_fwd_set_sparse or eng_fwd_params.sparse. */
void eng_sparse_params_init(eng_sparse_params *sp);

typedef struct eng_fwd_params {
	int n_threads;		/* pool size; <= 0: one per online CPU */
	uint32_t n_batch;	/* tokens per step (ubatch); default 512 */
	eng_attn_mode attn_mode;	/* default ENG_ATTN_LLAMACPP */
	eng_sparse_params sparse;	/* default: top_k 0 (dense) */
	/* Added to every position RoPE sees (default 0).  RoPE is relative,
	 * so this changes results by rounding only: a diagnostic of how a
	 * model behaves at large absolute positions (bench/needle).  At
	 * most 2^30 (ENG_ERANGE). */
	uint32_t rope_offset;
} eng_fwd_params;

/* Defaults: n_threads 0 (all CPUs), n_batch 512, ENG_ATTN_LLAMACPP,
 * dense attention. */
void eng_fwd_params_init(eng_fwd_params *p);

/* Checks that every tensor the architecture needs is present with the
 * right shape and a supported type.  ENG_EFORMAT / ENG_EUNSUP with a
 * message naming the tensor.  p may be NULL (defaults). */
int eng_fwd_open(const eng_model *m, const eng_fwd_params *p, eng_fwd **out,
    char *err, size_t errlen);
void eng_fwd_close(eng_fwd *f);
uint32_t eng_fwd_n_batch(const eng_fwd *f);
uint32_t eng_fwd_n_vocab(const eng_fwd *f);
/* Changes the sparse-attention settings of f (between calls). */
void eng_fwd_set_sparse(eng_fwd *f, const eng_sparse_params *sp);

/* What the last token of the last step attended on the global layers:
 * eng_fwd_record(f, 1) turns recording on (it costs one extra pass of that
 * token's attention per global layer).  eng_fwd_attended() then gives the
 * blocks (of the cache's block_tokens, or 64) with the most attention mass,
 * averaged over global layers and query heads, heaviest first, at most cap
 * of them; *n_keys receives the positions that token attended per global
 * layer and head (averaged). */
typedef struct eng_attn_block {
	uint32_t pos0, n;	/* positions of the block */
	float weight;		/* share of the attention, 0..1 */
} eng_attn_block;
void eng_fwd_record(eng_fwd *f, int on);
/* Attention on positions below n is left out of the record (the BOS and
 * preamble soak up attention as a sink; they are not content).  The
 * weights then sum to the share of attention on what is left. */
void eng_fwd_record_skip(eng_fwd *f, uint32_t n);
int eng_fwd_attended(const eng_fwd *f, eng_attn_block *out, uint32_t cap,
    uint32_t *n_out, uint64_t *n_keys);
/* How the last recorded step (eng_fwd_record) chose the blocks it
 * attended on the global layers, the least exact way any layer used:
 * NONE: it attended every position (dense, or too few candidates);
 * KEYS: by their best keys, every candidate key read (a question up to
 * scan_max); CODES: by the key codes' estimate of those (a shortlist);
 * SUMMARIES: by summaries (decode steps, prefill chunks, a question
 * without codes).  A shortlist is then scanned exactly, but what reached
 * it was ranked so. */
typedef enum eng_rank {
	ENG_RANK_NONE = 0,
	ENG_RANK_KEYS = 1,
	ENG_RANK_CODES = 2,
	ENG_RANK_SUMMARIES = 3,
} eng_rank;
eng_rank eng_fwd_ranked(const eng_fwd *f);
/* "dense", "keys", "codes" or "summaries". */
const char *eng_rank_name(eng_rank r);

/* Runs tokens[0..n) at positions kv->n_pos .. kv->n_pos+n-1, in steps of
 * at most n_batch tokens, storing their keys and values in kv and
 * committing them.  ids are checked against the vocabulary (ENG_EINVAL)
 * and n_pos+n against kv->n_ctx (ENG_ERANGE) before anything is computed.
 *
 * Logits: with all_logits 0, *logits (if logits is not NULL) is n_vocab
 * floats for the last token; with all_logits 1, n * n_vocab floats (token
 * i's row at i*n_vocab).  The array belongs to f and is valid until the
 * next call on f.  If cancel is not NULL and becomes nonzero, the call
 * stops between steps with ENG_ECANCELED; the steps already done stay
 * committed.  On another error the cache is rolled back to its length at
 * the start of the failed step. */
int eng_fwd_eval(eng_fwd *f, eng_kv *kv, const int32_t *tokens, uint32_t n,
    int all_logits, const float **logits, const atomic_int *cancel);

/* ------------------------------------------------------------------------
 * Sampling
 *
 * A sampler turns a logits row into a token id.  Order (as llama.cpp's
 * default chain): repetition penalty over the last repeat_last_n accepted
 * tokens, top-k, top-p, min-p, temperature, then a draw from the seeded
 * PRNG (xoshiro256**).  temperature <= 0 is greedy (argmax; ties go to the
 * lowest id).  The same seed and inputs give the same tokens.  One thread
 * at a time per sampler.
 * ------------------------------------------------------------------------ */

typedef struct eng_sampler eng_sampler;

typedef struct eng_sampler_params {
	float temperature;	/* default 0.8; <= 0 greedy */
	int32_t top_k;		/* default 40; <= 0 off */
	float top_p;		/* default 0.95; >= 1 off */
	float min_p;		/* default 0.05; <= 0 off */
	float repeat_penalty;	/* default 1.0 (off) */
	int32_t repeat_last_n;	/* default 64; 0 off, -1 all (last 65536) */
	uint64_t seed;		/* default 0 */
} eng_sampler_params;

void eng_sampler_params_init(eng_sampler_params *p);
/* ENG_EINVAL for values out of range (negative penalty, top_p < 0...). */
int eng_sampler_open(const eng_sampler_params *p, uint32_t n_vocab,
    eng_sampler **out);
void eng_sampler_close(eng_sampler *s);
/* Picks a token from logits[0..n_vocab) (not modified). */
int eng_sampler_sample(eng_sampler *s, const float *logits, int32_t *id);
/* Adds id to the penalty history (generate calls this for prompt and
 * output tokens). */
void eng_sampler_accept(eng_sampler *s, int32_t id);
/* Clears the history and reseeds. */
void eng_sampler_reset(eng_sampler *s);

/* ------------------------------------------------------------------------
 * Chat templates
 *
 * Built in per family, chosen from the model's architecture and vocabulary:
 * gemma3: <start_of_turn>user\n...<end_of_turn>\n (a system message is
 * prepended to the first user turn, as Gemma's template does), "model" for
 * the assistant; llama with <|start_header_id|>: Llama 3 headers;
 * qwen2 (or any vocabulary with <|im_start|>): ChatML.  The text does not
 * hold BOS: tokenize it with ENG_TOK_ADD_SPECIAL | ENG_TOK_PARSE_SPECIAL.
 * ------------------------------------------------------------------------ */

typedef struct eng_chat_msg {
	const char *role;	/* "system", "user" or "assistant" */
	const char *content;	/* NUL-terminated */
} eng_chat_msg;

/* *out is malloc'ed, NUL-terminated, *len bytes; the caller free()s it.
 * With add_assistant, ends with the opening of the assistant's turn.
 * ENG_EUNSUP if the model has no known template. */
int eng_chat_apply(const eng_model *m, const eng_chat_msg *msgs, size_t n,
    int add_assistant, char **out, size_t *len);

/* ------------------------------------------------------------------------
 * Generation
 *
 * eng_generate() runs a prompt through the model and samples up to
 * max_tokens tokens, calling on_token for each with its id and the text
 * it released (possibly empty: text is held back while it may be the start
 * of a stop string or an incomplete UTF-8 character); text is valid only
 * during the call.  A last call with id -1 hands over text still held at
 * the end (not after a stop string or a callback stop).  EOS/EOT tokens are
 * not passed on, so an answer whose first token is one (or max_tokens 0)
 * makes no call at all: a caller that waits for a first token looks
 * again when this returns.  Stops at the
 * vocabulary's EOS/EOT, at a stop string (its text is not passed on), at
 * max_tokens, when on_token returns nonzero, or when *cancel becomes
 * nonzero (ENG_ECANCELED; checked between forward steps).  Runs on the
 * caller's thread (the daemon's worker); f, kv and s are used by this call
 * only.  The prompt is appended to whatever kv already holds; where
 * attention on kv is sparse, a prompt of more than ENG_SPARSE_FEW tokens
 * ends in a step of ENG_SPARSE_FEW, so that its blocks are picked as a
 * question's are (by the last query), not as a prefill chunk's.
 * ------------------------------------------------------------------------ */

typedef int (*eng_token_cb)(void *ud, int32_t id, const char *text,
    size_t len);

#define ENG_GEN_MAX_STOP 8

typedef struct eng_gen_params {
	uint32_t max_tokens;	/* default 256 */
	const char *stop[ENG_GEN_MAX_STOP];	/* NULL-terminated list or NULLs */
	int special;		/* render control tokens as text; default 0 */
} eng_gen_params;

typedef enum eng_stop_reason {
	ENG_STOP_NONE = 0,
	ENG_STOP_EOS = 1,	/* end-of-sequence/turn token */
	ENG_STOP_STRING = 2,
	ENG_STOP_MAX_TOKENS = 3,
	ENG_STOP_CALLBACK = 4,
	ENG_STOP_CANCEL = 5,
	ENG_STOP_CONTEXT = 6,	/* the cache is full */
} eng_stop_reason;

typedef struct eng_gen_stats {
	uint32_t n_prompt;
	double prompt_ms;
	uint32_t n_gen;
	double gen_ms;
	double prompt_tps;	/* prompt tokens per second */
	double gen_tps;		/* generated tokens per second */
	eng_stop_reason stop;
} eng_gen_stats;

void eng_gen_params_init(eng_gen_params *p);
/* stats may be NULL. */
int eng_generate(eng_fwd *f, eng_kv *kv, eng_sampler *s,
    const eng_vocab *vocab, const int32_t *prompt, uint32_t n_prompt,
    const eng_gen_params *gp, eng_token_cb on_token, void *ud,
    const atomic_int *cancel, eng_gen_stats *stats);

#ifdef __cplusplus
}
#endif
#endif /* ENGRAM_ENGINE_H */
