/* test_ing_walk.c - the bad-input corpus, made at test time in a temp dir:
 * sparse 2 GiB files, FIFOs and devices, permission denied, names with
 * newlines and invalid UTF-8, deep trees, symlink loops and escapes, hard
 * links, broken PDFs and DOCX, a zip bomb, files deleted or rewritten
 * between the walk and the read.  Each is reported per file with a reason
 * and the walk and the job go on. */
#include "config.h"
#include <sys/sysmacros.h>
#include <sys/wait.h>
#include "test_ing_util.h"

static void mk_sparse(const char *d, const char *rel, off_t size)
{
	char *p = tu_path(d, rel);
	int fd = open(p, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	ck_assert_int_ge(fd, 0);
	ck_assert_int_eq(ftruncate(fd, size), 0);
	close(fd);
	free(p);
}

static void mk_link(const char *d, const char *target, const char *rel)
{
	char *p = tu_path(d, rel);
	ck_assert_int_eq(symlink(target, p), 0);
	free(p);
}

START_TEST(test_special_files)
{
	char *d = tu_tmpdir();
	ing_file_list l = { 0 };
	struct tu_reports r = { 0 };
	tu_writes(d, "ok.c", "int ok;\n");
	mk_sparse(d, "sparse.bin", (off_t)2 << 30);
	char *fifo = tu_path(d, "pipe");
	ck_assert_int_eq(mkfifo(fifo, 0644), 0);	/* no writer: open would block */
	mk_link(d, "/dev/null", "devnull");
	mk_link(d, "/etc", "escape");
	mk_link(d, "missing-target", "dangling");
	mk_link(d, "self", "self");
	tu_writes(d, "sub/in.txt", "inside\n");
	mk_link(d, "..", "sub/up");		/* a loop back to the root */
	mk_link(d, "sub/in.txt", "alias.txt");	/* inside the root: followed */
	char *a = tu_path(d, "ok.c"), *b = tu_path(d, "hard.c");
	ck_assert_int_eq(link(a, b), 0);
	free(a);
	free(b);
	if (geteuid() == 0) {
		char *dev = tu_path(d, "chardev");
		ck_assert_int_eq(mknod(dev, S_IFCHR | 0644, makedev(1, 3)), 0);
		free(dev);
	}
	const char *roots[] = { d };
	ck_assert_int_eq(ing_walk(roots, 1, NULL, &l, tu_report, &r, NULL), 0);
	ck_assert_int_eq(tu_code_for(&r, "/sparse.bin"), ING_ETOOBIG);
	ck_assert_int_eq(tu_code_for(&r, "/pipe"), ING_ESPECIAL);
	ck_assert_int_eq(tu_code_for(&r, "/devnull"), ING_EESCAPE);
	ck_assert_int_eq(tu_code_for(&r, "/escape"), ING_EESCAPE);
	ck_assert_int_eq(tu_code_for(&r, "/dangling"), ING_ENOENT);
	ck_assert_int_eq(tu_code_for(&r, "/self"), ING_ELOOP);
	ck_assert_int_eq(tu_code_for(&r, "/sub/up"), ING_ELOOP);
	if (geteuid() == 0)
		ck_assert_int_eq(tu_code_for(&r, "/chardev"), ING_ESPECIAL);
	/* alias.txt comes first in byte order, so sub/in.txt is the copy. */
	ck_assert(tu_has_file(&l, "/alias.txt"));
	ck_assert_int_eq(tu_code_for(&r, "/sub/in.txt"), ING_EDUPLICATE);
	ck_assert(tu_has_file(&l, "/hard.c"));
	ck_assert_int_eq(tu_code_for(&r, "/ok.c"), ING_EDUPLICATE);
	ck_assert_uint_eq(l.n, 2);
	for (int i = 0; i < r.n; i++)
		ck_assert(r.sev[i] == ING_SKIPPED || r.sev[i] == ING_FAILED);
	ing_file_list_free(&l);
	tu_reports_free(&r);
	free(fifo);
	tu_rmtree(d);
	free(d);
}
END_TEST

START_TEST(test_odd_names)
{
	char *d = tu_tmpdir();
	ing_file_list l = { 0 };
	tu_writes(d, "new\nline.txt", "x\n");
	tu_writes(d, "bad\xff\xfe.txt", "y\n");
	tu_writes(d, "gt>>> evil.txt", "z\n");
	const char *roots[] = { d };
	ck_assert_int_eq(ing_walk(roots, 1, NULL, &l, NULL, NULL, NULL), 0);
	ck_assert_uint_eq(l.n, 3);
	ing_doc doc = { .type = "text", .n_lines = 1 };
	for (size_t i = 0; i < l.n; i++) {
		char *h;
		size_t hl;
		ck_assert_int_eq(ing_frame_header(l.v[i].path, &doc, &h, &hl), 0);
		/* One line, valid UTF-8, ">>>" only at its end. */
		ck_assert_ptr_eq(strchr(h, '\n'), h + hl - 1);
		ck_assert_ptr_eq(strstr(h, ">>>"), h + hl - 4);
		ing_doc chk;
		ck_assert_int_eq(ing_extract(h, hl, "h.txt", NULL, &chk), 0);
		ck_assert_uint_eq(chk.n_replaced, 0);
		ing_doc_free(&chk);
		free(h);
	}
	ing_file_list_free(&l);
	tu_rmtree(d);
	free(d);
}
END_TEST

START_TEST(test_deep_tree)
{
	char *d = tu_tmpdir();
	size_t cap = 300 * 2 + 32;
	char *rel = calloc(1, cap);
	for (int i = 0; i < 300; i++)
		strcat(rel, "d/");
	strcat(rel, "leaf.txt");
	tu_writes(d, rel, "deep\n");
	ing_file_list l = { 0 };
	struct tu_reports r = { 0 };
	const char *roots[] = { d };
	ck_assert_int_eq(ing_walk(roots, 1, NULL, &l, tu_report, &r, NULL), 0);
	ck_assert_uint_eq(l.n, 1);
	ck_assert(tu_has_file(&l, "/d/d/d/leaf.txt"));
	ing_file_list_free(&l);
	/* With a lower limit the walk stops there and says so. */
	ing_settings s;
	ing_settings_init(&s);
	s.max_depth = 100;
	ck_assert_int_eq(ing_walk(roots, 1, &s, &l, tu_report, &r, NULL), 0);
	ck_assert_uint_eq(l.n, 0);
	ck_assert_int_eq(r.code[r.n - 1], ING_EDEPTH);
	ing_file_list_free(&l);
	tu_reports_free(&r);
	free(rel);
	tu_rmtree(d);
	free(d);
}
END_TEST

START_TEST(test_roots)
{
	char *d = tu_tmpdir();
	tu_writes(d, "one.txt", "1\n");
	tu_writes(d, "dir/two.txt", "2\n");
	char *f = tu_path(d, "one.txt"), *dd = tu_path(d, "dir");
	const char *roots[] = { f, "/nonexistent/root", dd };
	ing_file_list l = { 0 };
	struct tu_reports r = { 0 };
	ck_assert_int_eq(ing_walk(roots, 3, NULL, &l, tu_report, &r, NULL), 0);
	ck_assert_uint_eq(l.n, 2);
	ck_assert_str_eq(l.v[0].path, "one.txt");
	ck_assert_str_eq(l.v[1].path, "dir/two.txt");
	ck_assert_int_eq(tu_code_for(&r, "/nonexistent/root"), ING_ENOENT);
	ing_file_list_free(&l);
	/* Two roots with the same name stay apart. */
	tu_writes(d, "x/same/a.txt", "1\n");
	tu_writes(d, "y/same/a.txt", "2\n");
	char *s1 = tu_path(d, "x/same"), *s2 = tu_path(d, "y/same");
	const char *twins[] = { s1, s2 };
	ck_assert_int_eq(ing_walk(twins, 2, NULL, &l, NULL, NULL, NULL), 0);
	ck_assert_uint_eq(l.n, 2);
	ck_assert_str_eq(l.v[0].path, "same/a.txt");
	ck_assert_str_eq(l.v[1].path, "same@2/a.txt");
	ing_file_list_free(&l);
	free(s1);
	free(s2);
	const char *none[] = { "/nonexistent/x" };
	ck_assert_int_eq(ing_walk(none, 1, NULL, &l, NULL, NULL, NULL), ING_ENOENT);
	volatile int cancel = 1;
	const char *droot[] = { d };
	ck_assert_int_eq(ing_walk(droot, 1, NULL, &l, NULL, NULL, &cancel), ING_ECANCELED);
	ing_file_list_free(&l);
	tu_reports_free(&r);
	free(f);
	free(dd);
	tu_rmtree(d);
	free(d);
}
END_TEST

/* ---- the job over the whole bad corpus ---- */

struct hook { char *del, *rewrite; int calls; };

static void hook_fn(void *arg, const ing_file *f)
{
	struct hook *h = arg;
	h->calls++;
	size_t n = strlen(f->path);
	if (n >= 10 && !strcmp(f->path + n - 10, "/vanish.md"))
		ck_assert_int_eq(unlink(h->del), 0);
	if (n >= 12 && !strcmp(f->path + n - 12, "/rewrite.txt")) {
		FILE *fp = fopen(h->rewrite, "w");
		ck_assert_ptr_nonnull(fp);
		fputs("rewritten between walk and read\nsecond line\n", fp);
		fclose(fp);
	}
}

static int run_corpus_job(const char *d, struct tu_reports *r, ing_manifest *man)
{
	struct tu_tok t = { 0 };
	struct hook h = { tu_path(d, "vanish.md"), tu_path(d, "rewrite.txt"), 0 };
	const char *roots[] = { d };
	ing_job_config c = { .roots = roots, .n_roots = 1, .tokenize = tu_tokenize,
			     .tokenize_arg = &t, .report = tu_report, .report_arg = r,
			     .before_read = hook_fn, .hook_arg = &h };
	ing_settings_init(&c.settings);
	c.settings.max_zip_entry_bytes = 8u << 20;
	ing_job *j;
	ck_assert_int_eq(ing_job_open(&c, &j), 0);
	int rc = ing_job_run(j);
	if (rc == 0)
		ing_job_take_manifest(j, man);
	ing_progress p;
	ing_job_progress(j, &p);
	ck_assert_uint_eq(p.tokens, t.n);
	ing_job_close(j);
	tu_tok_free(&t);
	free(h.del);
	free(h.rewrite);
	return rc;
}

static const ing_manifest_entry *entry(const ing_manifest *m, const char *suffix)
{
	size_t sl = strlen(suffix);
	for (size_t i = 0; i < m->n; i++) {
		size_t pl = strlen(m->v[i].path);
		if (pl >= sl && !strcmp(m->v[i].path + pl - sl, suffix))
			return &m->v[i];
	}
	return NULL;
}

START_TEST(test_bad_corpus_job)
{
	char *d = tu_tmpdir();
	size_t len;
	tu_writes(d, "good.c", "int main(void) { return 0; }\n");
	tu_writes(d, "vanish.md", "# gone before read\n");
	tu_writes(d, "rewrite.txt", "old\n");
	const char *pages[] = { "Page one text" };
	char *pdf = tu_pdf(pages, 1, &len);
	tu_write(d, "good.pdf", pdf, len);
	tu_write(d, "trunc.pdf", pdf, len / 3);
	free(pdf);
	const char *scan[] = { "" };
	pdf = tu_pdf(scan, 1, &len);
	tu_write(d, "scan.pdf", pdf, len);
	free(pdf);
	tu_writes(d, "junk.pdf", "%PDF-1.7 this is not really a pdf");
	char *z = tu_docx("<w:p><w:r><w:t>docx text</w:t></w:r></w:p>", &len);
	tu_write(d, "good.docx", z, len);
	tu_write(d, "trunc.docx", z, len / 2);
	free(z);
	/* Zip bomb: 256 MiB of zeros, size not declared. */
	{
		size_t blk = 1 << 20;
		char *zeros = calloc(1, blk), *buf = malloc(4 << 20);
		struct archive *a = archive_write_new();
		archive_write_set_format_zip(a);
		archive_write_open_memory(a, buf, 4 << 20, &len);
		struct archive_entry *en = archive_entry_new();
		archive_entry_set_pathname(en, "word/document.xml");
		archive_entry_set_filetype(en, AE_IFREG);
		archive_write_header(a, en);
		for (int i = 0; i < 256; i++)
			archive_write_data(a, zeros, blk);
		archive_entry_free(en);
		archive_write_close(a);
		archive_write_free(a);
		tu_write(d, "bomb.docx", buf, len);
		free(buf);
		free(zeros);
	}
	char bin[64] = "ELF\0\0\0binary";
	tu_write(d, "prog.bin", bin, sizeof(bin));
	mk_sparse(d, "huge.log", (off_t)2 << 30);
	char *fifo = tu_path(d, "fifo.txt");
	ck_assert_int_eq(mkfifo(fifo, 0644), 0);
	free(fifo);
	tu_writes(d, "noread.txt", "secret\n");
	tu_writes(d, "closed/inner.txt", "inner\n");
	char *nr = tu_path(d, "noread.txt"), *cl = tu_path(d, "closed");
	chmod(nr, 0);
	chmod(cl, 0);
	free(nr);
	free(cl);

	/* Permission checks do not apply to root: run as nobody, in a child. */
	int as_child = geteuid() == 0;
	if (as_child) {
		/* nobody must be able to delete and rewrite in the hook. */
		ck_assert_int_eq(chmod(d, 0777), 0);
		char *rw = tu_path(d, "rewrite.txt");
		ck_assert_int_eq(chmod(rw, 0666), 0);
		free(rw);
		pid_t pid = fork();
		ck_assert_int_ge(pid, 0);
		if (pid == 0) {
			if (setgid(65534) || setuid(65534))
				_exit(90);
			struct tu_reports r = { 0 };
			ing_manifest m;
			ing_manifest_init(&m);
			if (run_corpus_job(d, &r, &m) != 0)
				_exit(91);
			if (tu_code_for(&r, "/noread.txt") != ING_EACCES)
				_exit(92);
			if (tu_code_for(&r, "/closed") != ING_EACCES)
				_exit(93);
			if (!entry(&m, "/good.c") || entry(&m, "/good.c")->status)
				_exit(94);
			ing_manifest_free(&m);
			tu_reports_free(&r);
			_exit(0);
		}
		int st;
		ck_assert_int_eq(waitpid(pid, &st, 0), pid);
		ck_assert_msg(WIFEXITED(st) && WEXITSTATUS(st) == 0,
			      "unprivileged child failed: status %d", st);
		/* Restore the tree for the privileged run below. */
		tu_writes(d, "vanish.md", "# gone before read\n");
	}
	struct tu_reports r = { 0 };
	ing_manifest m;
	ing_manifest_init(&m);
	ck_assert_int_eq(run_corpus_job(d, &r, &m), 0);
	if (!as_child)
		ck_assert_int_eq(tu_code_for(&r, "/noread.txt"), ING_EACCES);
	ck_assert_int_eq(tu_code_for(&r, "/vanish.md"), ING_ENOENT);
	ck_assert_int_eq(tu_code_for(&r, "/trunc.pdf"), ING_EFORMAT);
	ck_assert_int_eq(tu_code_for(&r, "/junk.pdf"), ING_EFORMAT);
	ck_assert_int_eq(tu_code_for(&r, "/scan.pdf"), ING_ENOTEXT);
	ck_assert_int_eq(tu_code_for(&r, "/trunc.docx"), ING_EFORMAT);
	ck_assert_int_eq(tu_code_for(&r, "/bomb.docx"), ING_EBOMB);
	ck_assert_int_eq(tu_code_for(&r, "/prog.bin"), ING_EBINARY);
	ck_assert_int_eq(tu_code_for(&r, "/huge.log"), ING_ETOOBIG);
	ck_assert_int_eq(tu_code_for(&r, "/fifo.txt"), ING_ESPECIAL);
	const char *good[] = { "/good.c", "/good.pdf", "/good.docx", "/rewrite.txt" };
	for (size_t i = 0; i < 4; i++) {
		const ing_manifest_entry *e = entry(&m, good[i]);
		ck_assert_msg(e && e->status == 0, "%s not in the stream", good[i]);
		ck_assert_uint_gt(e->token_end, e->token_start);
	}
	/* The rewritten file was read as it is now (2 lines). */
	ck_assert_uint_eq(entry(&m, "/rewrite.txt")->size, 44);
	/* As root, noread.txt and closed/inner.txt are readable too. */
	ck_assert_uint_eq(m.n_docs, as_child ? 6 : 4);
	ing_manifest_free(&m);
	tu_reports_free(&r);
	tu_rmtree(d);
	free(d);
}
END_TEST

TU_MAIN("ing_walk", test_special_files, test_odd_names, test_deep_tree,
	test_roots, test_bad_corpus_job)
