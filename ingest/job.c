/* job.c - the ingest pipeline for a worker thread: walk, order by (mtime,
 * path), keep the unchanged prefix of the previous run, then read, extract,
 * frame, tokenize in chunks and record spans and the manifest.
 *
 * Invariants: tokens are numbered from the previous stream's unchanged
 * prefix end (or cfg.token_base); every token produced is covered by
 * exactly one span; a document's manifest entry covers its header, body
 * and footer tokens.  Counters are atomics so other threads can read them;
 * the cancel flag is read between files and between chunks. */
#include "config.h"
#include <errno.h>
#include <fcntl.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <xxhash.h>
#include "ing_internal.h"

#define READ_CHUNK (1u << 20)

struct ing_job {
	ing_job_config cfg;
	volatile int cancel;		/* written by any thread */
	_Atomic uint64_t files_seen, files_done, files_kept, files_skipped,
		files_failed, bytes_read, tokens;
	_Atomic int running;
	int ran;
	ing_srcmap map;
	ing_manifest man;
	ing_diff diff;
	/* Run state. */
	uint64_t pos;			/* next token position */
	uint32_t next_doc;
	int32_t *ids;
	size_t ids_cap;
};

static int cancelled(ing_job *j)
{
	return __atomic_load_n(&j->cancel, __ATOMIC_RELAXED) != 0;
}

static void jreport(ing_job *j, enum ing_severity sev, const char *path,
		    int code, const char *msg)
{
	if (sev == ING_SKIPPED)
		atomic_fetch_add_explicit(&j->files_skipped, 1, memory_order_relaxed);
	else if (sev == ING_FAILED)
		atomic_fetch_add_explicit(&j->files_failed, 1, memory_order_relaxed);
	if (j->cfg.report)
		j->cfg.report(j->cfg.report_arg, sev, path, code, msg);
}

/* Walk reports go through here to be counted. */
static void walk_report(void *arg, enum ing_severity sev, const char *path,
			int code, const char *msg)
{
	jreport(arg, sev, path, code, msg);
}

int ing_job_open(const ing_job_config *cfg, ing_job **out)
{
	ing_job *j;

	if (!cfg || !out || !cfg->roots || !cfg->n_roots || !cfg->tokenize ||
	    cfg->settings.chunk_lines < 1 || cfg->settings.chunk_max_bytes < 64)
		return ING_EINVAL;
	if (!(j = calloc(1, sizeof(*j))))
		return ING_ENOMEM;
	j->cfg = *cfg;
	ing_srcmap_init(&j->map);
	ing_manifest_init(&j->man);
	*out = j;
	return 0;
}

void ing_job_close(ing_job *j)
{
	if (!j)
		return;
	ing_srcmap_free(&j->map);
	ing_manifest_free(&j->man);
	ing_diff_free(&j->diff);
	free(j->ids);
	free(j);
}

void ing_job_cancel(ing_job *j)
{
	if (j)
		__atomic_store_n(&j->cancel, 1, __ATOMIC_RELAXED);
}

void ing_job_progress(const ing_job *j, ing_progress *p)
{
	ing_job *m = (ing_job *)j;	/* atomic loads need a non-const object */
	memset(p, 0, sizeof(*p));
	if (!j)
		return;
	p->files_seen = atomic_load_explicit(&m->files_seen, memory_order_relaxed);
	p->files_done = atomic_load_explicit(&m->files_done, memory_order_relaxed);
	p->files_kept = atomic_load_explicit(&m->files_kept, memory_order_relaxed);
	p->files_skipped = atomic_load_explicit(&m->files_skipped, memory_order_relaxed);
	p->files_failed = atomic_load_explicit(&m->files_failed, memory_order_relaxed);
	p->bytes_read = atomic_load_explicit(&m->bytes_read, memory_order_relaxed);
	p->tokens = atomic_load_explicit(&m->tokens, memory_order_relaxed);
	p->running = atomic_load_explicit(&m->running, memory_order_relaxed);
}

const ing_srcmap *ing_job_srcmap(const ing_job *j) { return j ? &j->map : NULL; }
const ing_manifest *ing_job_manifest(const ing_job *j) { return j ? &j->man : NULL; }
const ing_diff *ing_job_diff(const ing_job *j) { return j ? &j->diff : NULL; }

void ing_job_take_manifest(ing_job *j, ing_manifest *out)
{
	*out = j->man;
	ing_manifest_init(&j->man);
}

/* ---- tokenizing ---- */

/* Tokenizes one chunk and records its span. */
static int emit_chunk(ing_job *j, const char *text, size_t len, uint32_t doc,
		      uint32_t page, uint32_t l0, uint32_t l1)
{
	size_t n = 0, need = len + 16;
	int rc;

	if (cancelled(j))
		return ING_ECANCELED;
	for (int attempt = 0; attempt < 2; attempt++) {
		if (need > j->ids_cap) {
			int32_t *nv = realloc(j->ids, need * sizeof(*nv));
			if (!nv)
				return ING_ENOMEM;
			j->ids = nv;
			j->ids_cap = need;
		}
		n = 0;
		rc = j->cfg.tokenize(j->cfg.tokenize_arg, text, len, j->ids,
				     j->ids_cap, &n);
		if (rc == 0 && n <= j->ids_cap)
			break;
		/* No tokenizer makes more than a few tokens per byte: a bigger
		 * request is a broken callback, not a reason to allocate. */
		if (n <= j->ids_cap || attempt == 1 || n > 4 * len + 1024)
			return ING_ETOKENIZE;
		need = n;
	}
	ing_span sp = { j->pos, j->pos + n, doc, page, l0, l1 };
	if ((rc = ing_srcmap_append(&j->map, &sp)) < 0)
		return rc;
	if (n && j->cfg.emit && j->cfg.emit(j->cfg.emit_arg, j->ids, n, &sp))
		return ING_ECANCELED;
	j->pos += n;
	atomic_fetch_add_explicit(&j->tokens, n, memory_order_relaxed);
	return 0;
}

/* Where to cut a line longer than max bytes: at a UTF-8 boundary, after
 * whitespace when there is some in the second half. */
static size_t cut_point(const char *p, size_t len, size_t max)
{
	size_t k = max;
	if (len <= max)
		return len;
	for (size_t i = max; i > max / 2; i--)
		if (p[i - 1] == ' ' || p[i - 1] == '\t')
			return i;
	while (k > 1 && ((unsigned char)p[k] & 0xC0) == 0x80)
		k--;
	return k;
}

/* The body text[0..len) of one page (or of an unpaged document), in
 * chunks of whole lines; lines are numbered from 1. */
static int emit_body(ing_job *j, const char *text, size_t len, uint32_t doc,
		     uint32_t page)
{
	const ing_settings *s = &j->cfg.settings;
	uint32_t line = 1;
	size_t i = 0;
	int rc;

	while (i < len) {
		size_t start = i;
		uint32_t l0 = line, nl = 0;
		/* Take whole lines while they fit. */
		while (i < len && nl < s->chunk_lines) {
			const char *e = memchr(text + i, '\n', len - i);
			size_t ll = e ? (size_t)(e - (text + i)) + 1 : len - i;
			if (i > start && i - start + ll > s->chunk_max_bytes)
				break;
			if (i == start && ll > s->chunk_max_bytes) {
				/* One long line, in pieces of the same line. */
				size_t off = 0;
				while (off < ll) {
					size_t k = cut_point(text + i + off, ll - off,
							     s->chunk_max_bytes);
					if ((rc = emit_chunk(j, text + i + off, k, doc,
							     page, line, line)) < 0)
						return rc;
					off += k;
				}
				i += ll;
				line++;
				nl = 0;
				start = i;
				l0 = line;
				break;
			}
			i += ll;
			nl++;
			line++;
		}
		if (i > start && (rc = emit_chunk(j, text + start, i - start,
						  doc, page, l0, line - 1)) < 0)
			return rc;
	}
	return 0;
}

static int emit_doc(ing_job *j, const char *path, const ing_doc *d,
		    uint32_t doc)
{
	char *hdr = NULL, *ftr = NULL, pg[48];
	size_t hl, fl;
	int rc;

	if ((rc = ing_frame_header(path, d, &hdr, &hl)) < 0)
		goto fail;
	if ((rc = ing_frame_footer(path, &ftr, &fl)) < 0)
		goto fail;
	if ((rc = emit_chunk(j, hdr, hl, doc, 0, 0, 0)) < 0)
		goto fail;
	if (d->n_pages && d->page_off) {
		for (uint32_t p = 0; p < d->n_pages; p++) {
			size_t a = d->page_off[p];
			size_t b = p + 1 < d->n_pages ? d->page_off[p + 1] : d->len;
			size_t n = ing_frame_page(p + 1, pg, sizeof(pg));
			if ((rc = emit_chunk(j, pg, n, doc, p + 1, 0, 0)) < 0)
				goto fail;
			if ((rc = emit_body(j, d->text + a, b - a, doc, p + 1)) < 0)
				goto fail;
		}
	} else if ((rc = emit_body(j, d->text, d->len, doc, 0)) < 0) {
		goto fail;
	}
	rc = emit_chunk(j, ftr, fl, doc, 0, 0, 0);
fail:
	free(hdr);
	free(ftr);
	return rc;
}

/* ---- reading ---- */

/* Reads a whole regular file without ever blocking on a FIFO; checks that
 * it did not change under us.  On success *data is malloc'd. */
static int read_file(ing_job *j, const ing_file *f, char **data, size_t *len,
		     struct stat *st, char *why, size_t why_cap)
{
	for (int attempt = 0; attempt < 2; attempt++) {
		struct stat st2;
		char *buf = NULL;
		size_t got = 0;
		int fd = open(f->fspath, O_RDONLY | O_NONBLOCK | O_NOFOLLOW |
				  O_CLOEXEC | O_NOCTTY);
		if (fd < 0) {
			int e = errno;
			snprintf(why, why_cap, "cannot open: %s", strerror(e));
			return e == EACCES || e == EPERM ? ING_EACCES :
			       e == ENOENT ? ING_ENOENT :
			       e == ELOOP ? ING_ECHANGED : ING_EIO;
		}
		if (fstat(fd, st) < 0 || !S_ISREG(st->st_mode)) {
			close(fd);
			snprintf(why, why_cap, "no longer a regular file");
			return ING_ESPECIAL;
		}
		if ((uint64_t)st->st_size > j->cfg.settings.max_file_bytes) {
			close(fd);
			snprintf(why, why_cap, "grew over the size limit");
			return ING_ETOOBIG;
		}
		/* One byte more than the size: growth is noticed. */
		size_t want = (size_t)st->st_size + 1;
		if (!(buf = malloc(want))) {
			close(fd);
			return ING_ENOMEM;
		}
		int rc = 0;
		while (got < want) {
			if (cancelled(j)) {
				rc = ING_ECANCELED;
				break;
			}
			size_t ask = want - got < READ_CHUNK ? want - got : READ_CHUNK;
			ssize_t k = read(fd, buf + got, ask);
			if (k < 0 && errno == EINTR)
				continue;
			if (k < 0) {
				snprintf(why, why_cap, "read failed: %s", strerror(errno));
				rc = errno == EACCES ? ING_EACCES : ING_EIO;
				break;
			}
			if (k == 0)
				break;
			got += (size_t)k;
			atomic_fetch_add_explicit(&j->bytes_read, (uint64_t)k,
						  memory_order_relaxed);
		}
		int same = rc == 0 && fstat(fd, &st2) == 0 &&
			   got == (size_t)st->st_size && st2.st_size == st->st_size &&
			   st2.st_mtim.tv_sec == st->st_mtim.tv_sec &&
			   st2.st_mtim.tv_nsec == st->st_mtim.tv_nsec;
		close(fd);
		if (rc < 0) {
			free(buf);
			return rc;
		}
		if (same) {
			*data = buf;
			*len = got;
			return 0;
		}
		free(buf);
	}
	snprintf(why, why_cap, "size or time changed while reading, twice");
	return ING_ECHANGED;
}

static int cmp_file(const void *a, const void *b)
{
	const ing_file *x = a, *y = b;
	if (x->mtime_ns != y->mtime_ns)
		return x->mtime_ns < y->mtime_ns ? -1 : 1;
	return strcmp(x->path, y->path);
}

/* Is f, at stream position i, the same as the previous run's entry there
 * by its stat data alone? */
static const ing_manifest_entry *prev_entry(ing_job *j, size_t i,
					    const ing_file *f)
{
	const ing_manifest *pm = j->cfg.prev;
	if (!pm || i >= pm->n || strcmp(pm->v[i].path, f->path))
		return NULL;
	return &pm->v[i];
}

/* One file: reuse, or read + extract + tokenize.  in_prefix is cleared the
 * first time the stream departs from the previous run. */
static int do_file(ing_job *j, size_t i, const ing_file *f, int *in_prefix)
{
	const ing_settings *s = &j->cfg.settings;
	const ing_manifest_entry *pe = *in_prefix ? prev_entry(j, i, f) : NULL;
	ing_manifest_entry e = { .path = f->path, .size = f->size,
				 .mtime_ns = f->mtime_ns, .ino = f->ino };
	char *data = NULL, why[256] = "";
	size_t len = 0;
	struct stat st;
	ing_doc d = { 0 };
	int rc = 0, code;

	if (!pe)
		*in_prefix = 0;
	/* Same size, time and inode as last time: same bytes (git's rule). */
	if (pe && s->trust_mtime && pe->size == f->size &&
	    pe->mtime_ns == f->mtime_ns && pe->ino == f->ino &&
	    ing__status_is_content(pe->status))
		goto keep;
	if (j->cfg.before_read)
		j->cfg.before_read(j->cfg.hook_arg, f);
	code = read_file(j, f, &data, &len, &st, why, sizeof(why));
	if (code == ING_ECANCELED || code == ING_ENOMEM) {
		rc = code;
		goto done;
	}
	if (code < 0) {
		e.status = code;
		jreport(j, code == ING_ESPECIAL || code == ING_ETOOBIG ?
			ING_SKIPPED : ING_FAILED, f->path, code, why);
		goto record;
	}
	e.size = (uint64_t)st.st_size;
	e.mtime_ns = (int64_t)st.st_mtim.tv_sec * 1000000000 + st.st_mtim.tv_nsec;
	e.hash = XXH3_64bits(data, len);
	if (pe && pe->hash == e.hash && ing__status_is_content(pe->status) &&
	    pe->hash) {
		free(data);
		data = NULL;
		e.status = pe->status;
		goto keep_as;
	}
	*in_prefix = 0;
	code = ing_extract(data, len, f->path, s, &d);
	free(data);
	data = NULL;
	if (code == ING_ENOMEM) {
		rc = code;
		goto done;
	}
	if (code < 0) {
		e.status = code;
		jreport(j, code == ING_EBINARY ? ING_SKIPPED : ING_FAILED,
			f->path, code, ing_strerror(code));
		goto record;
	}
	if (d.n_replaced || d.n_empty_pages) {
		snprintf(why, sizeof(why), "%llu invalid bytes replaced by U+FFFD; %u page(s) without text",
			 (unsigned long long)d.n_replaced, d.n_empty_pages);
		jreport(j, ING_NOTE, f->path, 0, why);
	}
	e.doc_index = j->next_doc;
	e.token_start = j->pos;
	if ((rc = emit_doc(j, f->path, &d, j->next_doc)) < 0)
		goto done;
	e.token_end = j->pos;
	j->next_doc++;
	j->man.n_docs++;
	atomic_fetch_add_explicit(&j->files_done, 1, memory_order_relaxed);
	goto record;

keep:
	e.hash = pe->hash;
	e.status = pe->status;
keep_as:
	/* The previous run's tokens stand as they are. */
	e.token_start = pe->token_start;
	e.token_end = pe->token_end;
	e.doc_index = pe->doc_index;
	if (pe->status == 0) {
		j->pos = pe->token_end;
		j->next_doc = pe->doc_index + 1;
		j->man.n_docs++;
		atomic_fetch_add_explicit(&j->files_done, 1, memory_order_relaxed);
		atomic_fetch_add_explicit(&j->files_kept, 1, memory_order_relaxed);
	} else {
		jreport(j, pe->status == ING_EBINARY ? ING_SKIPPED : ING_FAILED,
			f->path, pe->status, "unchanged since the last run");
	}
record:
	/* The prefix ends at the first entry the diff will see as changed. */
	if (*in_prefix && (!pe || !ing__entry_same(pe, &e)))
		*in_prefix = 0;
	rc = ing__manifest_add(&j->man, &e);
done:
	ing_doc_free(&d);
	free(data);
	return rc;
}

int ing_job_run(ing_job *j)
{
	ing_file_list files = { 0 };
	int rc, in_prefix;

	if (!j || j->ran)
		return ING_EINVAL;
	j->ran = 1;
	atomic_store(&j->running, 1);
	j->man.tokenizer_id = j->cfg.tokenizer_id;
	j->man.settings_id = ing__settings_id(&j->cfg.settings);
	j->man.framing_version = ING_FRAMING_VERSION;
	j->man.token_base = j->cfg.prev ? j->cfg.prev->token_base : j->cfg.token_base;
	j->pos = j->man.token_base;
	in_prefix = j->cfg.prev &&
		    j->cfg.prev->tokenizer_id == j->man.tokenizer_id &&
		    j->cfg.prev->settings_id == j->man.settings_id &&
		    j->cfg.prev->framing_version == j->man.framing_version;
	rc = ing_walk(j->cfg.roots, j->cfg.n_roots, &j->cfg.settings, &files,
		      walk_report, j, &j->cancel);
	if (rc == ING_ENOENT)
		rc = 0;		/* reported; an empty stream */
	if (rc < 0)
		goto done;
	atomic_store(&j->files_seen, files.n);
	if (files.n > 1)	/* files.v is NULL when none was found */
		qsort(files.v, files.n, sizeof(*files.v), cmp_file);
	for (size_t i = 0; i < files.n && rc == 0; i++) {
		if (cancelled(j)) {
			rc = ING_ECANCELED;
			break;
		}
		rc = do_file(j, i, &files.v[i], &in_prefix);
	}
	if (rc < 0)
		goto done;
	j->man.token_end = j->pos;
	rc = ing_manifest_diff(j->cfg.prev, &j->man, &j->diff);
	/* The map holds only the new tokens. */
	if (rc == 0 && j->map.n && j->map.v[0].token_start < j->diff.prefix_tokens)
		rc = ING_EINVAL;	/* cannot happen: a bug */
done:
	ing_file_list_free(&files);
	atomic_store(&j->running, 0);
	return rc;
}
