/* ingest.h - the whole public API of engram's ingest module (prefix ing_):
 * walking trees, extracting text, framing documents, source maps.
 *
 * Conventions as in engine.h: int returns, 0 on success, a negative
 * ING_E* code on failure; _open/_close pairs; the caller owns what an
 * _open returns.  Design notes: docs/ARCHITECTURE.md; the framing format
 * (the exact text the model reads) and the tokenization contract are in
 * docs/FRAMING.md.
 *
 * The pipeline, run by an ing_job on one worker thread:
 *
 *   roots --walk--> files --sort (mtime, path)--> read --extract--> UTF-8
 *   text with lines (and pages) --frame--> header + body chunks
 *   --tokenize (caller's callback)--> token ids + spans (source map)
 *
 * The module depends on no other engram module: the tokenizer is a
 * callback, and spans and manifests are plain structs that the daemon
 * stores where it likes.  Nothing here keeps global state except libxml2's
 * one-time initialisation (done under pthread_once), so independent jobs
 * may run on several threads at once.
 */
#ifndef ENGRAM_ING_H
#define ENGRAM_ING_H

#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Error codes: -1200 .. -1299.  The list only grows at the end.
 * The same codes serve as reasons in per-file reports (ing_report_fn):
 * ING_EIGNORED .. ING_ECHANGED say why a file was skipped or failed. */
#define ING_ERRNO_MAP(X)                                                   \
	X(-1200, ING_EINVAL,     "invalid argument")                      \
	X(-1201, ING_ENOMEM,     "out of memory")                         \
	X(-1202, ING_EIO,        "input/output error")                    \
	X(-1203, ING_ECANCELED,  "operation cancelled")                   \
	X(-1204, ING_EIGNORED,   "ignored by an ignore rule")             \
	X(-1205, ING_EBUILDDIR,  "version-control or build-output folder") \
	X(-1206, ING_EBINARY,    "binary file")                           \
	X(-1207, ING_ETOOBIG,    "file larger than the size limit")       \
	X(-1208, ING_ESPECIAL,   "not a regular file (FIFO, device, socket)") \
	X(-1209, ING_ELOOP,      "symbolic link loop")                    \
	X(-1210, ING_EESCAPE,    "symbolic link leads outside the roots") \
	X(-1211, ING_EACCES,     "permission denied")                     \
	X(-1212, ING_ENOENT,     "file vanished or dangling link")        \
	X(-1213, ING_ECHANGED,   "file changed while being read")         \
	X(-1214, ING_EDEPTH,     "directory tree too deep")               \
	X(-1215, ING_ENAMETOOLONG, "path too long")                       \
	X(-1216, ING_EDUPLICATE, "already ingested through another path") \
	X(-1217, ING_EFORMAT,    "malformed document")                    \
	X(-1218, ING_ENOTEXT,    "document has no text layer")            \
	X(-1219, ING_EBOMB,      "decompressed size over the limit")      \
	X(-1220, ING_EENCRYPTED, "document is encrypted")                 \
	X(-1221, ING_ETOKENIZE,  "tokenizer callback failed")             \
	X(-1222, ING_ERANGE,     "value out of range")                    \
	X(-1223, ING_ESTALE,     "manifest does not match this stream")

enum {
#define ING__ENUM(code, name, msg) name = (code),
	ING_ERRNO_MAP(ING__ENUM)
#undef ING__ENUM
};

/* A static string describing an error code; never NULL.  Codes above -1000
 * are negative errno values and get strerror()'s text. */
const char *ing_strerror(int err);
/* The code's symbolic name ("ING_EBINARY"); never NULL. */
const char *ing_errname(int err);

/* ------------------------------------------------------------------ */
/* Settings: every default is set, and explained, in ing_settings_init(). */

typedef struct ing_settings {
	uint64_t max_file_bytes;	/* larger files: ING_ETOOBIG, never read */
	uint64_t max_text_bytes;	/* extracted text of one document */
	uint64_t max_zip_entry_bytes;	/* DOCX: decompressed XML part (zip bombs) */
	uint32_t max_zip_entries;	/* DOCX: zip entries looked at */
	uint32_t max_depth;		/* directory levels below a root */
	uint32_t chunk_lines;		/* lines per tokenizer call (>= 1) */
	uint32_t chunk_max_bytes;	/* bytes per tokenizer call (>= 64) */
	int follow_symlinks;		/* follow links that stay inside the roots */
	int use_ignore_files;		/* honour .gitignore and .engramignore */
	int skip_vcs_build_dirs;	/* skip ing_build_dirs (below) */
	int trust_mtime;		/* same size+mtime+inode as the previous
					 * manifest: reuse its hash unread */
} ing_settings;

/* Fills s with the defaults.  Never fails. */
void ing_settings_init(ing_settings *s);

/* Folders skipped by name when skip_vcs_build_dirs is set (a NULL-ended
 * static list; names match whole path components, case-sensitively):
 * version control (.git .hg .svn .bzr CVS _darcs .jj), dependencies and
 * build output (node_modules bower_components target build dist out-of-tree
 * caches __pycache__ .venv venv .tox .nox .mypy_cache .pytest_cache
 * .ruff_cache .gradle .next .nuxt .terraform .eggs CMakeFiles
 * autom4te.cache .deps .libs), editor state (.idea .vs).  Exactly the
 * contents of this array; docs/FRAMING.md repeats it. */
extern const char *const ing_build_dirs[];

/* ------------------------------------------------------------------ */
/* Reports: every file or folder the walk or the job does not turn into a
 * document is reported once, with a reason. */

enum ing_severity {
	ING_SKIPPED = 1,	/* by policy: ignored, binary, too big, special */
	ING_FAILED = 2,		/* could not be read or understood */
	ING_NOTE = 3,		/* ingested, with a remark (e.g. bytes replaced) */
};

/* path: the display path (see ing_file); code: an ING_E* reason (0 for
 * some ING_NOTE remarks); msg: a
 * human sentence with details.  Both strings are borrowed for the call.
 * Called on the thread running the walk or job. */
typedef void (*ing_report_fn)(void *arg, enum ing_severity sev,
			      const char *path, int code, const char *msg);

/* ------------------------------------------------------------------ */
/* Ignore rules (.gitignore syntax, gitignore(5)). */

typedef struct ing_ignore ing_ignore;	/* opaque: one file's patterns */

/* Parses the text of one ignore file.  base is the folder holding it,
 * relative to the walk's root ("" for the root, "src/net" below); it is
 * copied.  Lines that cannot be patterns are dropped, as git does.  The
 * caller frees *out with ing_ignore_free. */
int ing_ignore_parse(const char *text, size_t len, const char *base,
		     ing_ignore **out);
void ing_ignore_free(ing_ignore *ig);
/* Matches a path relative to the walk's root (no leading '/').  Returns 1
 * if the last matching pattern ignores it, -1 if the last matching pattern
 * is a negation ("!pat": re-included), 0 if no pattern matches. */
int ing_ignore_match(const ing_ignore *ig, const char *relpath, int is_dir);
/* The glob matcher alone (wildmatch with pathname semantics: '*' and '?'
 * do not cross '/', "**" spans folders, [a-z] [!x] [^x] classes, '\'
 * escapes).  Returns 1 on a match, 0 otherwise; bounded time
 * (O(len(pattern) * len(path))). */
int ing_glob_match(const char *pattern, const char *path);

/* ------------------------------------------------------------------ */
/* Walk: roots -> a sorted list of candidate regular files. */

typedef struct ing_file {
	char *path;		/* display path: basename of the root ("@2",
				 * "@3"... added when an earlier root had the
				 * same name), '/', the path inside it; owned;
				 * bytes as on disk (may hold
				 * newlines or invalid UTF-8; the frame header
				 * escapes them) */
	char *fspath;		/* owned; path to open (a followed link's
				 * resolved target) */
	uint64_t size;		/* from lstat/stat at walk time */
	int64_t mtime_ns;
	uint64_t dev, ino;
} ing_file;

typedef struct ing_file_list {
	ing_file *v;		/* owned; n entries */
	size_t n, cap;
} ing_file_list;

/* Walks the roots (files or folders) and appends every regular file that
 * passes the rules to out, in deterministic order: roots in the order
 * given, folders in byte order of names, depth first.  Everything skipped
 * is reported through report (may be NULL).  Never opens anything but
 * folders and ignore files; never opens a FIFO or device.  cancel (may be
 * NULL) is read between entries.  Returns 0 even if files were skipped;
 * ING_EINVAL, ING_ENOMEM, ING_ECANCELED, or ING_ENOENT when no root
 * exists at all. */
int ing_walk(const char *const *roots, size_t n_roots,
	     const ing_settings *s, ing_file_list *out,
	     ing_report_fn report, void *report_arg,
	     const volatile int *cancel);
/* Frees the entries and the array; the list can be reused. */
void ing_file_list_free(ing_file_list *l);

/* ------------------------------------------------------------------ */
/* Extract: bytes of one file -> UTF-8 text with '\n' line ends. */

enum ing_kind {
	ING_KIND_TEXT = 1,	/* source code and plain text */
	ING_KIND_MARKDOWN = 2,
	ING_KIND_HTML = 3,
	ING_KIND_PDF = 4,
	ING_KIND_DOCX = 5,
	ING_KIND_EML = 6,
};

typedef struct ing_doc {
	char *text;		/* owned, UTF-8, NUL-terminated; every line
				 * ends with '\n' (none when len is 0); no
				 * '\r', no NUL bytes */
	size_t len;		/* bytes of text, without the NUL */
	enum ing_kind kind;
	const char *type;	/* static: "C", "Python", "PDF", "text"... */
	const char *encoding;	/* static: source encoding ("UTF-8",
				 * "UTF-16LE", "windows-1252", ...) */
	uint64_t n_replaced;	/* bytes/units replaced by U+FFFD */
	uint32_t n_lines;
	uint32_t n_pages;	/* paged formats (PDF); 0 otherwise */
	size_t *page_off;	/* owned; n_pages byte offsets into text where
				 * page 1.. starts; NULL when unpaged */
	uint32_t n_empty_pages;	/* PDF pages without any text */
} ing_doc;

/* The document kind for a file name (by extension) and its first bytes
 * (magic numbers win over names). */
enum ing_kind ing_kind_guess(const char *name, const void *data, size_t len);
/* The language or format name shown in frame headers ("C", "Markdown"). */
const char *ing_type_name(const char *name, enum ing_kind kind);

/* Extracts the text of data[0..len) (borrowed for the call).  name is used
 * for the kind and type name only.  On success *doc is filled and owned by
 * the caller (ing_doc_free); on failure *doc is zeroed and the code says
 * why: ING_EBINARY, ING_EFORMAT, ING_ENOTEXT, ING_EBOMB, ING_EENCRYPTED,
 * ING_ETOOBIG (text over max_text_bytes), ING_ENOMEM.  Thread-safe. */
int ing_extract(const void *data, size_t len, const char *name,
		const ing_settings *s, ing_doc *doc);
/* The same with the kind forced (fuzzers, tests). */
int ing_extract_kind(const void *data, size_t len, enum ing_kind kind,
		     const ing_settings *s, ing_doc *doc);
void ing_doc_free(ing_doc *doc);

/* ------------------------------------------------------------------ */
/* Frame: the header text the model reads before each document.  The exact
 * format is in docs/FRAMING.md and versioned by ING_FRAMING_VERSION;
 * changing a byte of it bumps the version (and so invalidates manifests). */

#define ING_FRAMING_VERSION 1

/* Writes "<<< file: PATH (TYPE, N lines) >>>\n" (or "N pages" for paged
 * documents) into a malloc'd NUL-terminated string *out, with PATH
 * escaped.  The caller frees *out. */
int ing_frame_header(const char *path, const ing_doc *doc, char **out,
		     size_t *out_len);
/* "<<< page N >>>\n" into buf (cap >= 32); returns the length. */
size_t ing_frame_page(uint32_t page, char *buf, size_t cap);
/* "<<< end of file: PATH >>>\n\n", malloc'd like ing_frame_header. */
int ing_frame_footer(const char *path, char **out, size_t *out_len);

/* ------------------------------------------------------------------ */
/* Tokenizer callback and the source map. */

/* Tokenizes text[0..len) (borrowed for the call; UTF-8, may hold '\n')
 * into ids[0..cap).  Must be a pure function of the text: the same text
 * gives the same ids every time.  Must not add BOS/EOS.  Returns 0 with
 * *n_ids set, or, when cap is too small, any nonzero value with *n_ids set
 * to the count needed (> cap): the caller grows ids and calls again.  Any
 * other failure: nonzero with *n_ids <= cap; the job stops with
 * ING_ETOKENIZE.  The job calls it with cap >= len + 16. */
typedef int (*ing_tokenize_fn)(void *arg, const char *text, size_t len,
			       int32_t *ids, size_t cap, size_t *n_ids);

/* One span: tokens [token_start, token_end) of the session stream came from
 * lines line_start..line_end (1-based, inclusive) of document doc_index, on
 * page `page` (1-based; 0 for unpaged documents).  For paged documents,
 * lines count from the top of each page.  line_start == line_end == 0
 * marks framing text (a header, page marker or footer).  The map is exact
 * because the stream is, by definition, the concatenation of the token ids
 * of each chunk tokenized on its own (docs/FRAMING.md). */
typedef struct ing_span {
	uint64_t token_start, token_end;
	uint32_t doc_index;
	uint32_t page;
	uint32_t line_start, line_end;
} ing_span;

/* A growing, sorted array of spans covering a stream without gaps between
 * its first and last token. */
typedef struct ing_srcmap {
	ing_span *v;		/* owned; n entries, ascending, contiguous */
	size_t n, cap;
} ing_srcmap;

void ing_srcmap_init(ing_srcmap *m);
void ing_srcmap_free(ing_srcmap *m);
/* Appends a span.  Empty spans (start == end) are dropped.  A span must
 * start where the last one ended (or anywhere on an empty map): otherwise
 * ING_EINVAL. */
int ing_srcmap_append(ing_srcmap *m, const ing_span *sp);
/* The index of the span holding token pos, by binary search; ING_ERANGE
 * when pos is outside the map. */
int ing_srcmap_lookup(const ing_srcmap *m, uint64_t pos, size_t *index);
/* Drops every span at or after token pos (a span straddling pos is cut
 * short).  Used to keep a map's unchanged prefix across runs. */
void ing_srcmap_truncate(ing_srcmap *m, uint64_t pos);

/* ------------------------------------------------------------------ */
/* Manifest: what a run put in the stream, to make the next run incremental.
 *
 * Entries are in stream order: files sorted by (mtime_ns, path), oldest
 * first, so that the files that change least come first and an edit only
 * invalidates the stream from the edited file on.  Files skipped by policy
 * or failure are kept too (status != 0, no tokens) so an unchanged tree is
 * not read again. */

typedef struct ing_manifest_entry {
	char *path;		/* owned; display path */
	uint64_t hash;		/* XXH3-64 of the file's bytes (0 if unread) */
	uint64_t size;
	int64_t mtime_ns;
	uint64_t ino;
	uint64_t token_start, token_end;	/* equal when no tokens */
	int32_t status;		/* 0: in the stream; else the ING_E* reason */
	uint32_t doc_index;	/* stream documents only */
} ing_manifest_entry;

typedef struct ing_manifest {
	ing_manifest_entry *v;	/* owned; n entries in stream order */
	size_t n, cap;
	uint64_t tokenizer_id;	/* caller's fingerprint of the tokenizer */
	uint64_t settings_id;	/* hash of the settings that shape text */
	uint32_t framing_version;
	uint64_t token_base;	/* first token of the stream */
	uint64_t token_end;	/* one past the last token */
	uint32_t n_docs;	/* documents in the stream */
} ing_manifest;

void ing_manifest_init(ing_manifest *m);
void ing_manifest_free(ing_manifest *m);
/* Serialises to a malloc'd buffer (a versioned little-endian format with a
 * checksum); the caller frees *buf. */
int ing_manifest_encode(const ing_manifest *m, void **buf, size_t *len);
/* Parses what ing_manifest_encode wrote; bad input gives ING_EFORMAT.
 * *m must be initialised; it is replaced. */
int ing_manifest_decode(const void *buf, size_t len, ing_manifest *m);

enum ing_change_kind {
	ING_CHANGE_ADDED = 1,
	ING_CHANGE_REMOVED = 2,
	ING_CHANGE_MODIFIED = 3,	/* content or status differs */
	ING_CHANGE_MOVED = 4,		/* same content, but after the first
					 * change: re-tokenized at a new place */
};

typedef struct ing_change {
	char *path;		/* owned */
	enum ing_change_kind kind;
} ing_change;

typedef struct ing_diff {
	size_t prefix_entries;	/* leading manifest entries kept as they are */
	uint32_t prefix_docs;	/* documents among them */
	uint64_t prefix_tokens;	/* the stream is unchanged up to here */
	size_t n_added, n_removed, n_modified, n_moved;
	ing_change *v;		/* owned; n entries, sorted by path */
	size_t n;
	int unchanged;		/* 1 when nothing at all changed */
} ing_diff;

void ing_diff_free(ing_diff *d);
/* Compares two manifests in stream order: the longest common prefix of
 * entries with equal path, status, and (for documents) hash, or (for
 * skipped files) size and mtime; and the changes by path.  If the
 * tokenizer, settings or framing differ, the prefix is empty. */
int ing_manifest_diff(const ing_manifest *old, const ing_manifest *cur,
		      ing_diff *out);

/* ------------------------------------------------------------------ */
/* Job: the whole pipeline, for a worker thread. */

/* Called with every chunk's token ids as they are produced, in stream
 * order, with the span they form (ids and sp borrowed for the call).
 * Return 0 to go on; nonzero cancels the job (ing_job_run returns
 * ING_ECANCELED). */
typedef int (*ing_emit_fn)(void *arg, const int32_t *ids, size_t n,
			   const ing_span *sp);

/* Test hook, called for each file just before it is opened; lets tests
 * delete or rewrite files between the walk and the read. */
typedef void (*ing_hook_fn)(void *arg, const ing_file *f);

typedef struct ing_job_config {
	const char *const *roots;	/* borrowed until ing_job_close */
	size_t n_roots;
	ing_settings settings;		/* start from ing_settings_init() */
	ing_tokenize_fn tokenize;	/* required */
	void *tokenize_arg;
	uint64_t tokenizer_id;		/* recorded in the manifest */
	ing_emit_fn emit;		/* may be NULL */
	void *emit_arg;
	ing_report_fn report;		/* may be NULL */
	void *report_arg;
	const ing_manifest *prev;	/* may be NULL; borrowed until run ends */
	uint64_t token_base;		/* stream start when prev is NULL */
	ing_hook_fn before_read;	/* tests only; NULL otherwise */
	void *hook_arg;
} ing_job_config;

/* Counters readable from any thread while the job runs (relaxed atomic
 * loads; each counter is exact, the set is not a single snapshot). */
typedef struct ing_progress {
	uint64_t files_seen;	/* files the walk produced */
	uint64_t files_done;	/* in the stream (tokenized now or kept) */
	uint64_t files_kept;	/* of those, reused from the previous run */
	uint64_t files_skipped;
	uint64_t files_failed;
	uint64_t bytes_read;
	uint64_t tokens;	/* new tokens produced by this run */
	int running;		/* 1 between the start and the end of run */
} ing_progress;

typedef struct ing_job ing_job;

/* Creates a job; copies cfg (not the strings it points to).  The caller
 * frees it with ing_job_close. */
int ing_job_open(const ing_job_config *cfg, ing_job **out);
/* Runs the whole job on the calling thread; once per job.  Returns 0, or
 * ING_ECANCELED, ING_ETOKENIZE, ING_ENOMEM, ING_EINVAL.  Per-file problems
 * are reported, not returned. */
int ing_job_run(ing_job *job);
/* Asks the job to stop at the next check (between files, between chunks
 * of a file).  Any thread, any time before ing_job_close. */
void ing_job_cancel(ing_job *job);
/* Any thread, any time before ing_job_close. */
void ing_job_progress(const ing_job *job, ing_progress *p);
/* Results, valid after ing_job_run returned 0 and until ing_job_close.
 * The srcmap holds the spans of the new tokens only (from
 * diff->prefix_tokens on); the manifest describes the whole stream; the
 * diff compares it with cfg->prev (or an empty manifest). */
const ing_srcmap *ing_job_srcmap(const ing_job *job);
const ing_manifest *ing_job_manifest(const ing_job *job);
const ing_diff *ing_job_diff(const ing_job *job);
/* Takes the manifest out of the job (the caller frees it with
 * ing_manifest_free); the job's copy becomes empty. */
void ing_job_take_manifest(ing_job *job, ing_manifest *out);
void ing_job_close(ing_job *job);

#ifdef __cplusplus
}
#endif
#endif
