/* gguf_writer.h - a small GGUF writer for test fixtures (tests only).
 *
 * gw_new() starts a file in memory; gw_kv_*() add metadata in call order,
 * gw_tensor() adds tensor infos and data; gw_finish() lays the file out
 * (header, metadata, tensor infos, padding to the alignment, data, each
 * tensor's data padded to the alignment) and returns it.  The gw_buf_*
 * helpers write raw little-endian fields, for building hostile files by hand.
 */
#ifndef ENGRAM_GGUF_WRITER_H
#define ENGRAM_GGUF_WRITER_H

#include <stddef.h>
#include <stdint.h>

struct gw_buf {
	uint8_t *p;
	size_t   n, cap;
};

void gw_buf_put(struct gw_buf *b, const void *p, size_t n);
void gw_buf_u32(struct gw_buf *b, uint32_t v);
void gw_buf_u64(struct gw_buf *b, uint64_t v);
/* A GGUF string: u64 length, then the bytes. */
void gw_buf_str(struct gw_buf *b, const char *s);
void gw_buf_strn(struct gw_buf *b, const char *s, size_t n);

typedef struct gw gw;

/* version is written as is (2 and 3 are valid). */
gw *gw_new(uint32_t version);
void gw_free(gw *w);

void gw_kv_u8(gw *w, const char *key, uint8_t v);
void gw_kv_i8(gw *w, const char *key, int8_t v);
void gw_kv_u16(gw *w, const char *key, uint16_t v);
void gw_kv_i16(gw *w, const char *key, int16_t v);
void gw_kv_u32(gw *w, const char *key, uint32_t v);
void gw_kv_i32(gw *w, const char *key, int32_t v);
void gw_kv_f32(gw *w, const char *key, float v);
void gw_kv_bool(gw *w, const char *key, int v);
void gw_kv_u64(gw *w, const char *key, uint64_t v);
void gw_kv_i64(gw *w, const char *key, int64_t v);
void gw_kv_f64(gw *w, const char *key, double v);
void gw_kv_str(gw *w, const char *key, const char *s);
/* An array of count scalars of elem_type, packed little-endian in data. */
void gw_kv_arr(gw *w, const char *key, uint32_t elem_type, uint64_t count,
    const void *data);
/* An array of strings (lens may be NULL for NUL-terminated strings). */
void gw_kv_arr_str(gw *w, const char *key, const char *const *s,
    const size_t *lens, size_t n);
/* A value written raw after the type field (nested arrays, hostile data). */
void gw_kv_raw(gw *w, const char *key, uint32_t type, const void *val,
    size_t n);
/* Sets the alignment used for layout (write general.alignment yourself to
 * tell readers; the default 32 needs no key). */
void gw_set_alignment(gw *w, uint32_t a);

/* A tensor; data of the type's size for ne (NULL: a byte pattern). */
void gw_tensor(gw *w, const char *name, uint32_t type, uint32_t n_dims,
    const uint64_t *ne, const void *data);

/* Lay out the file; the caller free()s the result.  Offsets of the
 * tensor-info section and data section come back for patching. */
uint8_t *gw_finish(gw *w, size_t *size);
size_t gw_tensor_info_offset(const gw *w);

/* Write bytes to a new file at path; 0 or -1. */
int gw_write_file(const char *path, const void *p, size_t n);

#endif /* ENGRAM_GGUF_WRITER_H */
