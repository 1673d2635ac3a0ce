/* ing_internal.h - helpers shared by the files of the ingest module (ing__
 * prefix); not part of the API.  Invariant of ing__buf: p is NUL-terminated
 * whenever it is non-NULL, len never exceeds limit. */
#ifndef ENGRAM_ING_INTERNAL_H
#define ENGRAM_ING_INTERNAL_H

#include <stddef.h>
#include <stdint.h>
#include "ingest.h"

/* A growable byte string with a hard size limit. */
typedef struct ing__buf {
	char *p;
	size_t len, cap;
	size_t limit;		/* appends past this fail with ING_ETOOBIG */
} ing__buf;

void ing__buf_init(ing__buf *b, size_t limit);
void ing__buf_free(ing__buf *b);
int ing__buf_add(ing__buf *b, const void *p, size_t n);
int ing__buf_addc(ing__buf *b, char c);
int ing__buf_adds(ing__buf *b, const char *s);
int ing__buf_addcp(ing__buf *b, uint32_t cp);	/* a code point as UTF-8 */
/* Detaches the string (never NULL on success: "" for empty). */
int ing__buf_take(ing__buf *b, char **out, size_t *len);

/* Length of the valid UTF-8 sequence at s[0..n), 0 if invalid; *cp gets
 * the code point. */
size_t ing__utf8_dec(const unsigned char *s, size_t n, uint32_t *cp);

/* Appends bytes known to be text in some encoding to a clean UTF-8 buffer:
 * invalid sequences become U+FFFD (counted in *n_bad), "\r\n" and "\r"
 * become "\n", NUL and other C0 controls except \t \n \f become U+FFFD...
 * see extract_text.c.  enc: ING__ENC_*. */
enum { ING__ENC_UTF8 = 1, ING__ENC_UTF16LE, ING__ENC_UTF16BE,
       ING__ENC_CP1252, ING__ENC_LATIN1 };
int ing__text_append(ing__buf *b, const void *data, size_t len, int enc,
		     uint64_t *n_bad);
/* Chooses an encoding for raw text bytes (BOM, UTF-8 validity, else
 * windows-1252); *skip is the BOM length.  Returns ING_EBINARY for binary
 * data (NUL bytes in the first 8 KiB, or more than 30% non-text). */
int ing__text_sniff(const void *data, size_t len, int *enc, size_t *skip);
const char *ing__enc_name(int enc);

/* Finishes a document: normalises the text in b (ends with '\n'), counts
 * lines, and moves it into doc. */
int ing__doc_finish(ing__buf *b, ing_doc *doc);

/* Extractors; each fills doc->text/len (and pages) or returns a code. */
int ing__extract_text(const void *data, size_t len, const ing_settings *s,
		      ing_doc *doc);
int ing__extract_html(const void *data, size_t len, const ing_settings *s,
		      ing_doc *doc);
/* HTML to text into an existing buffer (used by the e-mail extractor). */
int ing__html_to_text(const void *data, size_t len, const char *encoding,
		      ing__buf *out);
int ing__extract_docx(const void *data, size_t len, const ing_settings *s,
		      ing_doc *doc);
int ing__extract_pdf(const void *data, size_t len, const ing_settings *s,
		     ing_doc *doc);
int ing__extract_eml(const void *data, size_t len, const ing_settings *s,
		     ing_doc *doc);

/* libxml2's one-time initialisation (thread-safe). */
void ing__xml_init(void);

/* A hash of the settings that shape the text and the token stream. */
uint64_t ing__settings_id(const ing_settings *s);

/* Appends a copy of e (its path duplicated) to m. */
int ing__manifest_add(ing_manifest *m, const ing_manifest_entry *e);
/* Entries that mean the same place in the stream (the prefix rule). */
int ing__entry_same(const ing_manifest_entry *a, const ing_manifest_entry *b);
/* Statuses that depend only on content (kept if size+mtime are equal);
 * I/O failures are retried on the next run. */
int ing__status_is_content(int status);

#endif
