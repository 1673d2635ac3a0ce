/* test_ing_util.h - helpers for the ingest suites: temp dirs, files, a
 * tiny fake tokenizer, and fixture builders (a PDF with a text layer, a
 * DOCX zip) made at test time.  Everything is static: each suite includes
 * this once. */
#ifndef ENGRAM_TEST_ING_UTIL_H
#define ENGRAM_TEST_ING_UTIL_H

#include <check.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <archive.h>
#include <archive_entry.h>
#include "ingest.h"

#define UNUSED __attribute__((unused))

/* ---- files ---- */

static UNUSED char *tu_tmpdir(void)
{
	const char *base = getenv("TMPDIR");
	char *p = malloc(4096);
	snprintf(p, 4096, "%s/ingtest.XXXXXX", base && *base ? base : "/tmp");
	ck_assert_ptr_nonnull(mkdtemp(p));
	return p;
}

static int tu_rm_cb(const char *p, const struct stat *st, int flag,
		    struct FTW *f)
{
	(void)st; (void)f;
	if (flag == FTW_DP || flag == FTW_DNR || flag == FTW_D)
		chmod(p, 0700), rmdir(p);
	else
		unlink(p);
	return 0;
}

static UNUSED void tu_rmtree(const char *dir)
{
	/* Give back permissions first so that nftw can enter everything. */
	char cmd[4200];
	snprintf(cmd, sizeof(cmd), "chmod -R u+rwx '%s' 2>/dev/null", dir);
	if (system(cmd)) { /* best effort */ }
	nftw(dir, tu_rm_cb, 64, FTW_DEPTH | FTW_PHYS);
}

static UNUSED char *tu_path(const char *dir, const char *rel)
{
	size_t n = strlen(dir) + strlen(rel) + 2;
	char *p = malloc(n);
	snprintf(p, n, "%s/%s", dir, rel);
	return p;
}

/* Writes data to dir/rel, creating parent folders. */
static UNUSED void tu_write(const char *dir, const char *rel, const void *data,
			    size_t len)
{
	char *p = tu_path(dir, rel);
	for (char *s = p + strlen(dir) + 1; (s = strchr(s, '/')); s++) {
		*s = '\0';
		mkdir(p, 0755);
		*s = '/';
	}
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_msg(fd >= 0, "cannot create %s", p);
	ck_assert_int_eq(write(fd, data, len), (ssize_t)len);
	close(fd);
	free(p);
}

static UNUSED void tu_writes(const char *dir, const char *rel, const char *s)
{
	tu_write(dir, rel, s, strlen(s));
}

/* Sets a file's mtime to a fixed second (to order documents). */
static UNUSED void tu_mtime(const char *dir, const char *rel, long sec)
{
	char *p = tu_path(dir, rel);
	struct timespec ts[2] = { { sec, 0 }, { sec, 0 } };
	ck_assert_int_eq(utimensat(AT_FDCWD, p, ts, AT_SYMLINK_NOFOLLOW), 0);
	free(p);
}

/* ---- reports ---- */

#define TU_MAXREP 4096
struct tu_reports {
	int n;
	char *path[TU_MAXREP];
	int code[TU_MAXREP];
	int sev[TU_MAXREP];
};

static UNUSED void tu_report(void *arg, enum ing_severity sev, const char *path,
			     int code, const char *msg)
{
	struct tu_reports *r = arg;
	(void)msg;
	ck_assert_ptr_nonnull(path);
	ck_assert_ptr_nonnull(msg);
	if (r->n < TU_MAXREP) {
		r->path[r->n] = strdup(path);
		r->code[r->n] = code;
		r->sev[r->n] = sev;
		r->n++;
	}
}

/* The code reported for a path (suffix match), or 1 if none. */
static UNUSED int tu_code_for(const struct tu_reports *r, const char *suffix)
{
	size_t sl = strlen(suffix);
	for (int i = 0; i < r->n; i++) {
		size_t pl = strlen(r->path[i]);
		if (pl >= sl && !strcmp(r->path[i] + pl - sl, suffix))
			return r->code[i];
	}
	return 1;
}

static UNUSED void tu_reports_free(struct tu_reports *r)
{
	for (int i = 0; i < r->n; i++)
		free(r->path[i]);
	r->n = 0;
}

static UNUSED int tu_has_file(const ing_file_list *l, const char *suffix)
{
	size_t sl = strlen(suffix);
	for (size_t i = 0; i < l->n; i++) {
		size_t pl = strlen(l->v[i].path);
		if (pl >= sl && !strcmp(l->v[i].path + pl - sl, suffix))
			return 1;
	}
	return 0;
}

/* ---- fake tokenizer ----
 * One token per run of spaces/tabs, per run of other non-newline bytes,
 * and per '\n'.  Token id = the run's byte length * 3 + class.  It records
 * the text of every token it emits, in order, when rec is set. */

struct tu_tok {
	int calls;
	int fail_after;		/* fail on this call (0: never) */
	int small_first;	/* report "need more" once per call */
	/* The stream text of every token, in call order. */
	char **text;
	size_t n, cap;
};

static int tu_class(char c)
{
	return c == '\n' ? 0 : (c == ' ' || c == '\t') ? 1 : 2;
}

static UNUSED int tu_tokenize(void *arg, const char *text, size_t len,
			      int32_t *ids, size_t cap, size_t *n_ids)
{
	struct tu_tok *t = arg;
	size_t n = 0;
	t->calls++;
	if (t->fail_after && t->calls >= t->fail_after)
		return -1;
	for (size_t i = 0; i < len;) {
		size_t j = i + 1;
		int c = tu_class(text[i]);
		if (c)
			while (j < len && tu_class(text[j]) == c)
				j++;
		n++;
		i = j;
	}
	if (t->small_first && cap >= len + 16 && n > 0) {
		/* Pretend to need more than offered, once. */
		*n_ids = cap + 1;
		t->small_first = 0;
		return 1;
	}
	*n_ids = n;
	if (n > cap)
		return 1;
	n = 0;
	for (size_t i = 0; i < len;) {
		size_t j = i + 1;
		int c = tu_class(text[i]);
		if (c)
			while (j < len && tu_class(text[j]) == c)
				j++;
		ids[n++] = (int32_t)((j - i) * 3 + c);
		if (t->cap == t->n) {
			t->cap = t->cap ? t->cap * 2 : 1024;
			t->text = realloc(t->text, t->cap * sizeof(char *));
		}
		t->text[t->n++] = strndup(text + i, j - i);
		i = j;
	}
	return 0;
}

static UNUSED void tu_tok_free(struct tu_tok *t)
{
	for (size_t i = 0; i < t->n; i++)
		free(t->text[i]);
	free(t->text);
	memset(t, 0, sizeof(*t));
}

/* ---- fixtures ---- */

/* A valid PDF with one page per string; an empty string gives a page with
 * a drawing but no text.  Offsets in the xref are computed.  *len set;
 * the caller frees. */
static UNUSED char *tu_pdf(const char *const *pages, int n, size_t *len)
{
	size_t cap = 65536, off[64];
	char *b = malloc(cap);
	size_t p = 0;
	int obj = 0;
#define OUT(...) (p += (size_t)snprintf(b + p, cap - p, __VA_ARGS__))
	OUT("%%PDF-1.4\n");
	off[++obj] = p;
	OUT("1 0 obj\n<< /Type /Catalog /Pages 2 0 R >>\nendobj\n");
	off[++obj] = p;
	OUT("2 0 obj\n<< /Type /Pages /Kids [");
	for (int i = 0; i < n; i++)
		OUT("%d 0 R ", 4 + 2 * i);
	OUT("] /Count %d >>\nendobj\n", n);
	off[++obj] = p;
	OUT("3 0 obj\n<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>\nendobj\n");
	for (int i = 0; i < n; i++) {
		char content[1024];
		if (pages[i][0])
			snprintf(content, sizeof(content),
				 "BT /F1 18 Tf 72 700 Td (%s) Tj ET", pages[i]);
		else
			snprintf(content, sizeof(content), "0 0 100 100 re f");
		off[++obj] = p;
		OUT("%d 0 obj\n<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] "
		    "/Contents %d 0 R /Resources << /Font << /F1 3 0 R >> >> >>\nendobj\n",
		    obj, obj + 1);
		off[++obj] = p;
		OUT("%d 0 obj\n<< /Length %zu >>\nstream\n%s\nendstream\nendobj\n",
		    obj, strlen(content), content);
	}
	size_t xref = p;
	OUT("xref\n0 %d\n0000000000 65535 f \n", obj + 1);
	for (int i = 1; i <= obj; i++)
		OUT("%010zu 00000 n \n", off[i]);
	OUT("trailer\n<< /Size %d /Root 1 0 R >>\nstartxref\n%zu\n%%%%EOF\n",
	    obj + 1, xref);
#undef OUT
	*len = p;
	return b;
}

/* A zip with the given entries (name, data, len, declared size or -1 for
 * "unknown": streamed with a data descriptor). */
struct tu_zent { const char *name; const void *data; size_t len; int64_t declared; };

static UNUSED char *tu_zip(const struct tu_zent *e, int n, size_t cap,
			   size_t *len)
{
	char *buf = malloc(cap);
	struct archive *a = archive_write_new();
	ck_assert_int_eq(archive_write_set_format_zip(a), ARCHIVE_OK);
	ck_assert_int_eq(archive_write_open_memory(a, buf, cap, len), ARCHIVE_OK);
	for (int i = 0; i < n; i++) {
		struct archive_entry *en = archive_entry_new();
		archive_entry_set_pathname(en, e[i].name);
		archive_entry_set_filetype(en, AE_IFREG);
		archive_entry_set_perm(en, 0644);
		if (e[i].declared >= 0)
			archive_entry_set_size(en, e[i].declared);
		ck_assert_int_eq(archive_write_header(a, en), ARCHIVE_OK);
		if (e[i].len)
			ck_assert_int_eq(archive_write_data(a, e[i].data, e[i].len),
					 (la_ssize_t)e[i].len);
		archive_entry_free(en);
	}
	ck_assert_int_eq(archive_write_close(a), ARCHIVE_OK);
	archive_write_free(a);
	return buf;
}

static UNUSED char *tu_docx(const char *body_xml, size_t *len)
{
	static const char ct[] =
		"<?xml version=\"1.0\"?><Types xmlns=\"http://schemas.openxmlformats.org/package/2006/content-types\"/>";
	char *xml = malloc(strlen(body_xml) + 512);
	sprintf(xml, "<?xml version=\"1.0\" encoding=\"UTF-8\" standalone=\"yes\"?>"
		"<w:document xmlns:w=\"http://schemas.openxmlformats.org/wordprocessingml/2006/main\">"
		"<w:body>%s</w:body></w:document>", body_xml);
	struct tu_zent e[] = {
		{ "[Content_Types].xml", ct, sizeof(ct) - 1, (int64_t)sizeof(ct) - 1 },
		{ "word/document.xml", xml, strlen(xml), (int64_t)strlen(xml) },
	};
	char *z = tu_zip(e, 2, 1 << 20, len);
	free(xml);
	return z;
}

/* Runs a Check suite made of one TCase holding the given tests. */
#define TU_MAIN(name, ...)                                                 \
	int main(void)                                                     \
	{                                                                  \
		Suite *s = suite_create(name);                             \
		TCase *tc = tcase_create(name);                            \
		const TTest *tests[] = { __VA_ARGS__ };                     \
		tcase_set_timeout(tc, 120);                                \
		for (size_t i = 0; i < sizeof(tests) / sizeof(tests[0]); i++) \
			tcase_add_test(tc, tests[i]);                      \
		suite_add_tcase(s, tc);                                    \
		SRunner *sr = srunner_create(s);                           \
		srunner_run_all(sr, CK_NORMAL);                            \
		int failed = srunner_ntests_failed(sr);                    \
		srunner_free(sr);                                          \
		return failed ? 1 : 0;                                     \
	}

#endif
