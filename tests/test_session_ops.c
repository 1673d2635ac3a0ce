/* test_session_ops.c - ingest jobs, sessions and the store through engramd
 * and engramctl, on the default model (ENGRAM_TEST_MODEL): a real tree
 * built here (C files, .gitignore, HTML, PDF, a binary), progress and
 * summaries, incremental runs, the source map checked against the files'
 * lines through detokenized spans, jobs (detach, follow, leave, cancel),
 * kill -9 and SIGTERM during a job, and bad input of every kind. */
#include "config.h"
#include <check.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>
#include "daemon_harness.h"
#include "test_ing_util.h"

static th_daemon D;
static char *tree, *big;

#include "ops_util.h"

static void start(int with_model)
{
	const char *model = getenv("ENGRAM_TEST_MODEL");
	ck_assert_msg(!with_model || (model && access(model, R_OK) == 0),
		      "ENGRAM_TEST_MODEL must name the default model's GGUF (scripts/test sets it)");
	const char *extra[] = { "--model", with_model ? model : "none", "--workers", "4", NULL };
	th_start(&D, extra);
}

static void setup(void)
{
	memset(&D, 0, sizeof(D));
	tree = big = NULL;
}

static void teardown(void)
{
	if (D.pid > 0)
		th_signal_wait(&D, SIGKILL);
	if (D.dir[0])
		th_rmdir(D.dir);
	if (tree)
		tu_rmtree(tree);
	if (big)
		tu_rmtree(big);
	free(tree);
	free(big);
	memset(&D, 0, sizeof(D));
}

/* ---- helpers ---- */

/* Polls `job` until its state is not "running"; returns the last reply. */
static json_t *job_wait(long long id)
{
	for (int i = 0; i < 1200; i++) {
		json_t *ev = rq("{\"id\":1,\"op\":\"job\",\"job\":%lld}", id);
		ck_assert_str_eq(ev_name(ev), "done");
		if (strcmp(jstr(ev, "state"), "running"))
			return ev;
		json_decref(ev);
		usleep(100000);
	}
	ck_abort_msg("job %lld never ended", id);
	return NULL;
}

/* Polls until a running job has produced at least n tokens. */
static void job_wait_tokens(long long id, long long n)
{
	for (int i = 0; i < 1200; i++) {
		json_t *ev = rq("{\"id\":1,\"op\":\"job\",\"job\":%lld}", id);
		ck_assert_str_eq(jstr(ev, "state"), "running");
		long long t = jint(ev, "tokens");
		json_decref(ev);
		if (t >= n)
			return;
		usleep(50000);
	}
	ck_abort_msg("job %lld stalled", id);
}

static long long ingest_detached(const char *session, const char *path)
{
	json_t *ev = rq("{\"id\":1,\"op\":\"ingest\",\"session\":\"%s\",\"paths\":[\"%s\"],"
			"\"detach\":true}", session, path);
	ck_assert_msg(!strcmp(ev_name(ev), "done"), "%s", json_dumps(ev, JSON_COMPACT));
	long long id = jint(ev, "job");
	ck_assert_int_gt(id, 0);
	json_decref(ev);
	return id;
}

/* engramctl --json ingest: the final event, with the count of progress
 * events and whether a "job" event came first. */
static json_t *ctl_ingest(const char *session, const char *path, int *n_progress)
{
	char *out = NULL, *err = NULL;
	int rc = ctl(&out, &err, "--json", "ingest", "--name", session, path, NULL);
	ck_assert_msg(rc == 0, "ingest exit %d: %s", rc, err);
	json_t *done = NULL;
	int first = 1;
	*n_progress = 0;
	for (char *line = strtok(out, "\n"); line; line = strtok(NULL, "\n")) {
		json_t *ev = json_loads(line, 0, NULL);
		ck_assert_ptr_nonnull(ev);
		if (first)
			ck_assert_str_eq(ev_name(ev), "job");
		first = 0;
		if (!strcmp(ev_name(ev), "progress"))
			(*n_progress)++;
		if (!strcmp(ev_name(ev), "done")) {
			done = ev;
			continue;
		}
		json_decref(ev);
	}
	ck_assert_ptr_nonnull(done);
	free(out);
	free(err);
	return done;
}

static int report_has(json_t *done, const char *suffix, const char *code)
{
	json_t *e;
	size_t i;
	json_array_foreach(json_object_get(done, "report"), i, e) {
		const char *p = jstr(e, "path");
		size_t a = strlen(p), b = strlen(suffix);
		if (a >= b && !strcmp(p + a - b, suffix) && !strcmp(jstr(e, "code"), code))
			return 1;
	}
	return 0;
}

/* The small real tree: mtimes fix the stream order (oldest first). */
static char *small_tree(void)
{
	char *t = tu_tmpdir();
	const char *pages[] = { "First page of the report", "Second page, more text" };
	size_t plen;
	char *pdf = tu_pdf(pages, 2, &plen);
	tu_writes(t, ".gitignore", "*.o\nbuild/\n");
	c_file(t, "include/util.h", 12, 1);
	c_file(t, "src/util.c", 90, 2);
	c_file(t, "src/main.c", 60, 3);
	tu_writes(t, "page.html", "<html><head><title>T</title></head><body><h1>Heading</h1>"
		  "<p>A paragraph of text.</p><ul><li>one</li><li>two</li></ul></body></html>\n");
	tu_write(t, "doc.pdf", pdf, plen);
	tu_writes(t, "main.o", "object code\n");
	tu_writes(t, "build/gen.c", "int generated;\n");
	tu_write(t, "blob.bin", "\x00\x01\x02\x03\xff\xfe\x00\x00binary", 14);
	const char *order[] = { ".gitignore", "include/util.h", "src/util.c", "src/main.c",
				"page.html", "doc.pdf", "blob.bin" };
	for (int i = 0; i < 7; i++)
		tu_mtime(t, order[i], 1700000000 + 1000 * i);
	free(pdf);
	return t;
}

/* A tree of n files of about 24 KB of text each. */
static char *big_tree(int n)
{
	char *t = tu_tmpdir();
	char rel[64];
	for (int i = 0; i < n; i++) {
		snprintf(rel, sizeof(rel), "d%02d/file%04d.c", i % 10, i);
		c_file(t, rel, 600, i);
		tu_mtime(t, rel, 1700000000 + i);	/* stream order: file0000 first */
	}
	return t;
}

/* Lines a..b (1-based, inclusive) of a file, each with its '\n'. */
static char *file_lines(const char *path, long long a, long long b)
{
	FILE *f = fopen(path, "r");
	ck_assert_ptr_nonnull(f);
	char *line = NULL, *out = calloc(1, 1);
	size_t cap = 0, len = 0;
	long long no = 0;
	ssize_t k;
	while ((k = getline(&line, &cap, f)) > 0) {
		if (++no < a)
			continue;
		if (no > b)
			break;
		out = realloc(out, len + (size_t)k + 1);
		memcpy(out + len, line, (size_t)k + 1);
		len += (size_t)k;
	}
	free(line);
	fclose(f);
	return out;
}

/* `source` at positions spread over the stream, pipelined on one
 * connection: each non-framing span of a C file detokenizes to exactly
 * its lines of the file.  Returns how many spans were compared. */
static int check_source_map(const char *session, const char *root, long long len)
{
	int fd = th_connect(D.sock);
	long long step = len / 80 > 0 ? len / 80 : 1, n = 0;
	char line[512];
	int compared = 0;
	for (long long p = 0; p < len; p += step, n++) {
		int k = snprintf(line, sizeof(line), "{\"id\":%lld,\"op\":\"source\",\"session\":\"%s\","
				 "\"pos\":%lld,\"with_text\":true}\n", p, session, p);
		th_send(fd, line, (size_t)k);
	}
	const char *base = strrchr(root, '/') + 1;
	for (long long i = 0; i < n; i++) {
		json_t *ev = th_read_json(fd, 20000);
		ck_assert_ptr_nonnull(ev);
		ck_assert_msg(!strcmp(ev_name(ev), "done"), "%s", json_dumps(ev, JSON_COMPACT));
		long long pos = jint(ev, "pos");
		ck_assert(jint(ev, "tok_start") <= pos && pos < jint(ev, "tok_end"));
		const char *path = jstr(ev, "path");
		/* The display path is the root's name, then the path inside. */
		ck_assert_msg(!strncmp(path, base, strlen(base)), "path %s", path);
		size_t pl = strlen(path);
		int is_c = pl > 2 && (!strcmp(path + pl - 2, ".c") || !strcmp(path + pl - 2, ".h"));
		if (json_is_false(json_object_get(ev, "framing")) && is_c) {
			char fs[4096];
			snprintf(fs, sizeof(fs), "%s%s", root, path + strlen(base));
			char *want = file_lines(fs, jint(ev, "line_start"), jint(ev, "line_end"));
			ck_assert_msg(jint(ev, "line_start") >= 1 &&
				      jint(ev, "line_end") >= jint(ev, "line_start"), "lines");
			ck_assert_msg(!strcmp(want, jstr(ev, "text")),
				      "pos %lld in %s lines %lld-%lld:\nwant <%s>\ngot  <%s>", pos, path,
				      jint(ev, "line_start"), jint(ev, "line_end"), want, jstr(ev, "text"));
			free(want);
			compared++;
		} else if (json_is_true(json_object_get(ev, "framing"))) {
			ck_assert_int_eq(jint(ev, "line_start"), 0);
			ck_assert_msg(strstr(jstr(ev, "text"), "<<<") != NULL, "framing text %s",
				      jstr(ev, "text"));
		}
		json_decref(ev);
	}
	th_close(fd);
	return compared;
}

static long long session_tokens(const char *name, long long *docs)
{
	json_t *ev = rq("{\"id\":1,\"op\":\"session_show\",\"session\":\"%s\"}", name);
	ck_assert_msg(!strcmp(ev_name(ev), "done"), "%s", json_dumps(ev, JSON_COMPACT));
	long long t = jint(ev, "stream_tokens");
	if (docs)
		*docs = jint(ev, "documents");
	json_decref(ev);
	return t;
}

/* ---- tests ---- */

START_TEST(test_ingest_incremental)
{
	int np;
	start(1);
	tree = small_tree();

	json_t *d = ctl_ingest("t", tree, &np);
	ck_assert_str_eq(jstr(d, "state"), "done");
	/* .gitignore, util.h, util.c, main.c, page.html, doc.pdf */
	ck_assert_int_eq(jint(d, "documents"), 6);
	ck_assert_int_eq(jint(d, "files_kept"), 0);
	long long tokens = jint(d, "tokens");
	ck_assert_int_gt(tokens, 2000);
	ck_assert_int_eq(jint(d, "stream_tokens"), tokens);
	ck_assert_msg(report_has(d, "/main.o", "ING_EIGNORED"), "main.o not reported ignored");
	ck_assert_msg(report_has(d, "/blob.bin", "ING_EBINARY"), "blob.bin not reported binary");
	ck_assert_int_ge(jint(d, "skipped"), 3);	/* main.o, build/, blob.bin */
	/* The six documents; blob.bin is skipped, not added. */
	ck_assert_int_eq(jint(json_object_get(d, "changes"), "added"), 6);
	json_decref(d);

	/* The source map, checked against the files through the stream. */
	long long docs;
	ck_assert_int_eq(session_tokens("t", &docs), tokens);
	ck_assert_int_eq(docs, 6);
	ck_assert_int_ge(check_source_map("t", tree, tokens), 20);
	/* The PDF's spans carry pages. */
	json_t *show = rq("{\"id\":1,\"op\":\"session_show\",\"session\":\"t\"}");
	json_t *e, *pdf = NULL;
	size_t i;
	json_array_foreach(json_object_get(show, "document_list"), i, e)
		if (strstr(jstr(e, "path"), "doc.pdf"))
			pdf = e;
	ck_assert_ptr_nonnull(pdf);
	long long pdf_a = jint(pdf, "tok_start"), pdf_b = jint(pdf, "tok_end");
	int saw_page2 = 0;
	for (long long p = pdf_a; p < pdf_b; p++) {
		json_t *s = rq("{\"id\":1,\"op\":\"source\",\"session\":\"t\",\"pos\":%lld}", p);
		ck_assert_str_eq(ev_name(s), "done");
		saw_page2 |= jint(s, "page") == 2 && json_is_false(json_object_get(s, "framing"));
		json_decref(s);
	}
	ck_assert(saw_page2);
	json_decref(show);

	/* Unchanged tree: no work. */
	d = ctl_ingest("t", tree, &np);
	ck_assert_int_eq(jint(d, "tokens"), 0);
	ck_assert_int_eq(jint(d, "files_kept"), 6);
	ck_assert_int_eq(jint(d, "stream_tokens"), tokens);
	ck_assert(json_is_true(json_object_get(json_object_get(d, "changes"), "unchanged")));
	json_decref(d);

	/* Modify src/util.c, keeping its mtime (its place in the stream): the
	 * files before it are kept, it is re-read, later ones move. */
	show = rq("{\"id\":1,\"op\":\"session_show\",\"session\":\"t\"}");
	long long util_start = -1;
	json_array_foreach(json_object_get(show, "document_list"), i, e)
		if (strstr(jstr(e, "path"), "src/util.c"))
			util_start = jint(e, "tok_start");
	json_decref(show);
	ck_assert_int_gt(util_start, 0);
	c_file(tree, "src/util.c", 95, 2);
	tu_mtime(tree, "src/util.c", 1700000000 + 2000);
	d = ctl_ingest("t", tree, &np);
	json_t *ch = json_object_get(d, "changes");
	ck_assert_int_eq(jint(ch, "modified"), 1);
	ck_assert_int_eq(jint(ch, "added") + jint(ch, "removed"), 0);
	json_t *chp;
	int n_mod = 0;
	json_array_foreach(json_object_get(ch, "paths"), i, chp)
		if (!strcmp(jstr(chp, "change"), "modified")) {
			ck_assert_msg(strstr(jstr(chp, "path"), "src/util.c"), "%s", jstr(chp, "path"));
			n_mod++;
		}
	ck_assert_int_eq(n_mod, 1);
	ck_assert_int_eq(jint(ch, "moved"), 3);	/* main.c, page.html, doc.pdf (blob.bin is skipped) */
	ck_assert_int_eq(jint(d, "kept_tokens"), util_start);
	ck_assert_int_eq(jint(d, "files_kept"), 2);
	long long t2 = jint(d, "stream_tokens");
	ck_assert_int_gt(t2, tokens);	/* 5 more lines */
	json_decref(d);
	ck_assert_int_eq(session_tokens("t", NULL), t2);
	ck_assert_int_ge(check_source_map("t", tree, t2), 20);

	/* Remove the last document: the stream is cut, nothing tokenized. */
	show = rq("{\"id\":1,\"op\":\"session_show\",\"session\":\"t\"}");
	json_array_foreach(json_object_get(show, "document_list"), i, e)
		if (strstr(jstr(e, "path"), "doc.pdf"))
			pdf_a = jint(e, "tok_start");
	json_decref(show);
	char *p = tu_path(tree, "doc.pdf");
	ck_assert_int_eq(unlink(p), 0);
	free(p);
	d = ctl_ingest("t", tree, &np);
	ck_assert_int_eq(jint(json_object_get(d, "changes"), "removed"), 1);
	ck_assert_int_eq(jint(d, "tokens"), 0);
	ck_assert_int_eq(jint(d, "stream_tokens"), pdf_a);
	json_decref(d);
	ck_assert_int_eq(session_tokens("t", &docs), pdf_a);
	ck_assert_int_eq(docs, 5);
	expect_error(rq("{\"id\":1,\"op\":\"source\",\"session\":\"t\",\"pos\":%lld}", pdf_a),
		     "not_found");

	/* A path that does not exist is reported; the job goes on. */
	d = rq("{\"id\":1,\"op\":\"ingest\",\"session\":\"t2\",\"paths\":[\"%s/src\",\"%s/nope\"]}",
	       tree, tree);
	ck_assert_str_eq(ev_name(d), "job");
	json_decref(d);
	char *out = NULL;
	char nope[4200];
	snprintf(nope, sizeof(nope), "%s/nope", tree);
	char src[4200];
	snprintf(src, sizeof(src), "%s/src", tree);
	ck_assert_int_eq(ctl(&out, NULL, "--json", "ingest", "--name", "t3", src, nope, NULL), 0);
	ck_assert_msg(strstr(out, "ING_ENOENT") && strstr(out, "\"documents\":2"), "%s", out);
	free(out);
	/* No path that exists: an error, and no session made or emptied. */
	expect_error(rq("{\"id\":1,\"op\":\"ingest\",\"session\":\"t4\",\"paths\":[\"%s\",\"%s/nope2\"]}",
			nope, tree), "not_found");
	expect_error(rq("{\"id\":1,\"op\":\"session_show\",\"session\":\"t4\"}"), "not_found");
	char *err = NULL;
	ck_assert_int_eq(ctl(&out, &err, "ingest", "--name", "t3", nope, NULL), 1);
	ck_assert_msg(strstr(err, "not_found") && strstr(err, "No such file"), "%s", err);
	free(out);
	free(err);
	ck_assert_int_eq(session_tokens("t3", &docs) > 0, 1);
	ck_assert_int_eq(docs, 2);
	/* Readable output says the same. */
	ck_assert_int_eq(ctl(&out, NULL, "ingest", "--name", "t3", src, NULL), 0);
	ck_assert_msg(strstr(out, "done") && strstr(out, "0 new tokens"), "%s", out);
	free(out);
	/* Named after the path without --name; a hidden folder's name
	 * without its dot (it was silently "default"). */
	char hid[4200], file[4300];
	snprintf(hid, sizeof(hid), "%s/.hid", tree);
	ck_assert_int_eq(mkdir(hid, 0755), 0);
	snprintf(file, sizeof(file), "%s/a.txt", hid);
	FILE *f = fopen(file, "w");
	fputs("hidden text\n", f);
	fclose(f);
	/* and a file whose name holds a newline: listed on one line */
	snprintf(file, sizeof(file), "%s/new\nline.txt", hid);
	f = fopen(file, "w");
	fputs("more text\n", f);
	fclose(f);
	/* and links back to a parent and out of the root: skipped, each
	 * reason said once ("symbolic link loop - symbolic link loop: ...") */
	snprintf(file, sizeof(file), "%s/sub", hid);
	ck_assert_int_eq(mkdir(file, 0755), 0);
	snprintf(file, sizeof(file), "%s/sub/up", hid);
	ck_assert_int_eq(symlink("..", file), 0);
	snprintf(file, sizeof(file), "%s/out", hid);
	ck_assert_int_eq(symlink("..", file), 0);
	ck_assert_int_eq(ctl(&out, NULL, "ingest", hid, NULL), 0);
	ck_assert_msg(strstr(out, "session hid,"), "%s", out);
	ck_assert_msg(strstr(out, "new\\nline.txt\n"), "%s", out);
	ck_assert_msg(strstr(out, "up: symbolic link loop - leads back to a parent folder\n"),
		      "%s", out);
	ck_assert_msg(strstr(out, "out: symbolic link leads outside the roots - to /"),
		      "%s", out);
	free(out);
	ck_assert_int_eq(th_signal_wait(&D, SIGTERM), 0);
}
END_TEST

START_TEST(test_jobs)
{
	start(1);
	big = big_tree(60);
	tree = small_tree();

	/* Followed over a socket: a job event, progress, the summary. */
	int fd = th_connect(D.sock);
	char line[4400];
	int k = snprintf(line, sizeof(line), "{\"id\":5,\"op\":\"ingest\",\"session\":\"big\","
			 "\"paths\":[\"%s\"]}\n", big);
	th_send(fd, line, (size_t)k);
	json_t *ev = th_read_json(fd, 20000);
	ck_assert_str_eq(ev_name(ev), "job");
	long long job = jint(ev, "job");
	json_decref(ev);
	int progress = 0;
	long long last_tokens = -1;
	for (;;) {
		ev = th_read_json(fd, 60000);
		ck_assert_ptr_nonnull(ev);
		ck_assert_int_eq(jint(ev, "id"), 5);
		if (strcmp(ev_name(ev), "progress"))
			break;
		progress++;
		ck_assert_int_eq(jint(ev, "job"), job);
		ck_assert_int_ge(jint(ev, "tokens"), last_tokens);
		last_tokens = jint(ev, "tokens");
		ck_assert(json_is_number(json_object_get(ev, "rate")));
		json_decref(ev);
	}
	th_close(fd);
	ck_assert_str_eq(ev_name(ev), "done");
	ck_assert_int_ge(progress, 1);
	ck_assert_int_eq(jint(ev, "documents"), 60);
	long long big_tokens = jint(ev, "tokens");
	ck_assert_int_ge(big_tokens, last_tokens);
	json_decref(ev);

	/* A run cancelled midway keeps the unchanged prefix (files 0-2) and
	 * the next run resumes from there. */
	long long kept_end = -1;
	json_t *show = rq("{\"id\":1,\"op\":\"session_show\",\"session\":\"big\"}");
	json_t *e;
	size_t i;
	json_array_foreach(json_object_get(show, "document_list"), i, e)
		if (strstr(jstr(e, "path"), "file0002.c"))
			kept_end = jint(e, "tok_end");
	json_decref(show);
	ck_assert_int_gt(kept_end, 0);
	c_file(big, "d03/file0003.c", 601, 3);
	tu_mtime(big, "d03/file0003.c", 1700000000 + 3);
	long long jr = ingest_detached("big", big);
	job_wait_tokens(jr, 70000);
	json_decref(rq("{\"id\":1,\"op\":\"cancel\",\"job\":%lld}", jr));
	ev = job_wait(jr);
	ck_assert_str_eq(jstr(ev, "state"), "cancelled");
	json_decref(ev);
	ck_assert_int_eq(session_tokens("big", NULL), kept_end);
	int np;
	ev = ctl_ingest("big", big, &np);
	ck_assert_int_eq(jint(ev, "kept_tokens"), kept_end);
	ck_assert_int_eq(jint(ev, "files_kept"), 3);
	ck_assert_int_eq(jint(ev, "documents"), 60);
	json_decref(ev);

	/* A follower that leaves: the job goes on to the end. */
	tu_writes(big, "d00/new.c", "int added_later;\n");
	fd = th_connect(D.sock);
	k = snprintf(line, sizeof(line), "{\"id\":6,\"op\":\"ingest\",\"session\":\"big2\","
		     "\"paths\":[\"%s\"]}\n", big);
	th_send(fd, line, (size_t)k);
	ev = th_read_json(fd, 20000);
	ck_assert_str_eq(ev_name(ev), "job");
	long long job2 = jint(ev, "job");
	json_decref(ev);
	th_close(fd);
	ev = job_wait(job2);
	ck_assert_str_eq(jstr(ev, "state"), "done");
	ck_assert_int_eq(jint(ev, "documents"), 61);
	json_decref(ev);

	/* Detach and cancel. */
	long long job3 = ingest_detached("big3", big);
	ev = rq("{\"id\":1,\"op\":\"cancel\",\"job\":%lld}", job3);
	ck_assert_str_eq(ev_name(ev), "done");
	json_decref(ev);
	ev = job_wait(job3);
	ck_assert_str_eq(jstr(ev, "state"), "cancelled");
	json_decref(ev);
	/* Its unmapped tokens were cut off: what remains is mapped. */
	ck_assert_int_eq(session_tokens("big3", NULL), 0);
	/* Cancelling an ended job says so; unknown ids are not found. */
	char *out = NULL;
	char id3[32];
	snprintf(id3, sizeof(id3), "%lld", job3);
	ck_assert_int_eq(ctl(&out, NULL, "cancel", id3, NULL), 0);
	ck_assert_msg(strstr(out, "already ended"), "%s", out);
	free(out);
	expect_error(rq("{\"id\":1,\"op\":\"cancel\",\"job\":99999}"), "not_found");
	expect_error(rq("{\"id\":1,\"op\":\"job\",\"job\":99999}"), "not_found");
	expect_error(rq("{\"id\":1,\"op\":\"job\"}"), "missing_field");
	expect_error(rq("{\"id\":1,\"op\":\"job\",\"job\":\"x\"}"), "invalid_argument");
	expect_error(rq("{\"id\":1,\"op\":\"cancel\",\"job\":-3}"), "invalid_argument");
	ck_assert_int_eq(ctl(NULL, NULL, "job", "99999", NULL), 1);
	ck_assert_int_eq(ctl(NULL, NULL, "job", "abc", NULL), 2);
	ck_assert_int_eq(ctl(NULL, NULL, "cancel", NULL), 2);

	/* Detach, then poll to done; one job per session at a time. */
	long long job4 = ingest_detached("small", tree);
	ev = job_wait(job4);
	ck_assert_str_eq(jstr(ev, "state"), "done");
	ck_assert_int_eq(jint(ev, "documents"), 6);
	/* `job` has the full report. */
	ck_assert_msg(report_has(ev, "/blob.bin", "ING_EBINARY"), "report");
	json_decref(ev);
	long long job5 = ingest_detached("big4", big);
	expect_error(rq("{\"id\":1,\"op\":\"ingest\",\"session\":\"big4\",\"paths\":[\"%s\"]}", big),
		     "busy");
	expect_error(rq("{\"id\":1,\"op\":\"session_rm\",\"session\":\"big4\"}"), "busy");
	/* At most workers / 2 jobs at once (--workers 4). */
	long long job6 = ingest_detached("big5", big);
	expect_error(rq("{\"id\":1,\"op\":\"ingest\",\"session\":\"big6\",\"paths\":[\"%s\"]}", big),
		     "busy");
	json_decref(rq("{\"id\":1,\"op\":\"cancel\",\"job\":%lld}", job6));
	json_decref(job_wait(job6));
	json_decref(rq("{\"id\":1,\"op\":\"cancel\",\"job\":%lld}", job5));
	json_decref(job_wait(job5));

	/* jobs lists them all, newest first. */
	ck_assert_int_eq(ctl(&out, NULL, "jobs", NULL), 0);
	ck_assert_msg(strstr(out, "cancelled") && strstr(out, "done"), "%s", out);
	free(out);
	ev = rq("{\"id\":1,\"op\":\"jobs\"}");
	ck_assert_int_eq(json_array_size(json_object_get(ev, "jobs")), 8);
	ck_assert_int_eq(jint(json_array_get(json_object_get(ev, "jobs"), 0), "job"), job6);
	json_decref(ev);
	expect_error(rq("{\"id\":1,\"op\":\"jobs\",\"limit\":0}"), "invalid_argument");
	/* A clean stop (exit 0: no leak reported by the sanitizers). */
	ck_assert_int_eq(th_signal_wait(&D, SIGTERM), 0);
}
END_TEST

START_TEST(test_sessions_and_bad_input)
{
	start(1);
	tree = small_tree();
	char *out = NULL, *err = NULL;
	int np;
	json_decref(ctl_ingest("alpha", tree, &np));

	ck_assert_int_eq(ctl(&out, NULL, "sessions", NULL), 0);
	ck_assert_msg(strstr(out, "alpha"), "%s", out);
	free(out);
	ck_assert_int_eq(ctl(&out, NULL, "session", "show", "alpha", NULL), 0);
	ck_assert_msg(strstr(out, "src/main.c") && strstr(out, "3 layers"), "%s", out);
	free(out);
	ck_assert_int_eq(ctl(&out, NULL, "source", "alpha", "0", NULL), 0);
	ck_assert_msg(strstr(out, ".gitignore: framing text"), "%s", out);
	free(out);
	ck_assert_int_eq(ctl(&out, NULL, "store", NULL), 0);
	ck_assert_msg(strstr(out, "sessions        1"), "%s", out);
	free(out);
	json_t *ev = rq("{\"id\":1,\"op\":\"store\"}");
	ck_assert_int_eq(jint(ev, "sessions"), 1);
	ck_assert_int_gt(jint(ev, "stream_tokens"), 0);
	ck_assert_int_gt(jint(ev, "bytes_on_disk"), 0);
	json_decref(ev);
	ck_assert_int_eq(ctl(&out, NULL, "gc", "--compact", NULL), 0);
	ck_assert_msg(strstr(out, "compacted"), "%s", out);
	free(out);

	ck_assert_int_eq(ctl(NULL, NULL, "session", "rename", "alpha", "beta", NULL), 0);
	expect_error(rq("{\"id\":1,\"op\":\"session_show\",\"session\":\"alpha\"}"), "not_found");
	long long docs;
	ck_assert_int_gt(session_tokens("beta", &docs), 0);
	ck_assert_int_eq(docs, 6);
	/* The audit trail has the ingest and the rename. */
	ck_assert_int_eq(ctl(NULL, NULL, "session", "rm", "beta", NULL), 0);
	expect_error(rq("{\"id\":1,\"op\":\"session_show\",\"session\":\"beta\"}"), "not_found");
	ck_assert_int_eq(ctl(NULL, &err, "session", "rm", "beta", NULL), 1);
	ck_assert_msg(strstr(err, "not_found"), "%s", err);
	free(err);

	/* Bad input. */
	expect_error(rq("{\"id\":1,\"op\":\"ingest\",\"paths\":[\"/tmp\"]}"), "missing_field");
	expect_error(rq("{\"id\":1,\"op\":\"ingest\",\"session\":\"../x\",\"paths\":[\"/tmp\"]}"),
		     "invalid_argument");
	expect_error(rq("{\"id\":1,\"op\":\"ingest\",\"session\":\".hidden\",\"paths\":[\"/tmp\"]}"),
		     "invalid_argument");
	expect_error(rq("{\"id\":1,\"op\":\"ingest\",\"session\":7,\"paths\":[\"/tmp\"]}"),
		     "invalid_argument");
	expect_error(rq("{\"id\":1,\"op\":\"ingest\",\"session\":\"s\"}"), "missing_field");
	expect_error(rq("{\"id\":1,\"op\":\"ingest\",\"session\":\"s\",\"paths\":[]}"),
		     "invalid_argument");
	expect_error(rq("{\"id\":1,\"op\":\"ingest\",\"session\":\"s\",\"paths\":\"/tmp\"}"),
		     "invalid_argument");
	expect_error(rq("{\"id\":1,\"op\":\"ingest\",\"session\":\"s\",\"paths\":[3]}"),
		     "invalid_argument");
	expect_error(rq("{\"id\":1,\"op\":\"ingest\",\"session\":\"s\",\"paths\":[\"\"]}"),
		     "invalid_argument");
	expect_error(rq("{\"id\":1,\"op\":\"ingest\",\"session\":\"s\",\"paths\":[\"rel\"]}"),
		     "invalid_argument");
	expect_error(rq("{\"id\":1,\"op\":\"ingest\",\"session\":\"s\",\"paths\":[\"rel\"],"
			"\"cwd\":\"not/absolute\"}"), "invalid_argument");
	expect_error(rq("{\"id\":1,\"op\":\"ingest\",\"session\":\"s\",\"paths\":[\"/tmp\"],"
			"\"detach\":\"yes\"}"), "invalid_argument");
	expect_error(rq("{\"id\":1,\"op\":\"session_show\"}"), "missing_field");
	expect_error(rq("{\"id\":1,\"op\":\"session_show\",\"session\":\"a/b\"}"), "invalid_argument");
	expect_error(rq("{\"id\":1,\"op\":\"session_rename\",\"session\":\"x\"}"), "missing_field");
	expect_error(rq("{\"id\":1,\"op\":\"session_rename\",\"session\":\"x\",\"to\":\"y\"}"),
		     "not_found");
	expect_error(rq("{\"id\":1,\"op\":\"source\",\"session\":\"x\",\"pos\":0}"), "not_found");
	expect_error(rq("{\"id\":1,\"op\":\"source\",\"session\":\"x\"}"), "missing_field");
	expect_error(rq("{\"id\":1,\"op\":\"source\",\"session\":\"x\",\"pos\":-1}"),
		     "invalid_argument");
	expect_error(rq("{\"id\":1,\"op\":\"gc\",\"compact\":1}"), "invalid_argument");
	/* A relative path with cwd, and a rename onto a taken name. */
	json_decref(ctl_ingest("one", tree, &np));
	char rel[4200];
	snprintf(rel, sizeof(rel), "%s", strrchr(tree, '/') + 1);
	ev = rq("{\"id\":1,\"op\":\"ingest\",\"session\":\"two\",\"paths\":[\"%s/src\"],"
		"\"cwd\":\"/tmp\",\"detach\":true}", rel);
	ck_assert_str_eq(ev_name(ev), "done");
	long long job2 = jint(ev, "job");
	json_decref(ev);
	ev = job_wait(job2);
	ck_assert_int_eq(jint(ev, "documents"), 2);
	json_decref(ev);
	expect_error(rq("{\"id\":1,\"op\":\"session_rename\",\"session\":\"one\",\"to\":\"two\"}"),
		     "invalid_argument");
	/* Hostile file names: not UTF-8, a newline, quotes. */
	char *w = tu_tmpdir();
	tu_writes(w, "caf\xe9.txt", "latin-1 name\n");
	tu_writes(w, "new\nline \"q\".txt", "odd name\n");
	json_decref(ctl_ingest("weird", w, &np));
	ev = rq("{\"id\":1,\"op\":\"session_show\",\"session\":\"weird\"}");
	ck_assert_str_eq(ev_name(ev), "done");
	ck_assert_int_eq(jint(ev, "documents"), 2);
	ck_assert_msg(strstr(jstr(json_array_get(json_object_get(ev, "document_list"), 0), "path"),
			     "caf?.txt") || strstr(jstr(json_array_get(json_object_get(ev,
			     "document_list"), 1), "path"), "caf?.txt"), "paths");
	json_decref(ev);
	ev = rq("{\"id\":1,\"op\":\"source\",\"session\":\"weird\",\"pos\":3}");
	ck_assert_str_eq(ev_name(ev), "done");
	json_decref(ev);
	tu_rmtree(w);
	free(w);
	/* engramctl usage errors. */
	ck_assert_int_eq(ctl(NULL, NULL, "ingest", NULL), 2);
	ck_assert_int_eq(ctl(NULL, NULL, "ingest", "--bogus", "x", NULL), 2);
	ck_assert_int_eq(ctl(NULL, NULL, "session", "frob", "x", NULL), 2);
	ck_assert_int_eq(ctl(NULL, NULL, "source", "one", "x", NULL), 2);
	ck_assert_int_eq(ctl(NULL, NULL, "gc", "--now", NULL), 2);
	ck_assert_int_eq(ctl(&out, NULL, "ingest", "--help", NULL), 0);
	ck_assert_msg(strstr(out, "--detach"), "%s", out);
	free(out);
	ck_assert_int_eq(ctl(NULL, &err, "--name", "x", "ingest", "/tmp", NULL), 2);
	free(err);
	ck_assert_int_eq(ctl(NULL, &err, "ingest", "--name", "bad/name", tree, NULL), 1);
	ck_assert_msg(strstr(err, "invalid_argument"), "%s", err);
	free(err);
	ck_assert_int_eq(th_signal_wait(&D, SIGTERM), 0);
}
END_TEST

START_TEST(test_kill9_and_shutdown)
{
	start(1);
	big = big_tree(60);

	/* kill -9 in the middle of a job. */
	long long job = ingest_detached("k", big);
	job_wait_tokens(job, 140000);
	ck_assert_int_eq(th_signal_wait(&D, SIGKILL), 128 + SIGKILL);
	D.pid = 0;
	start(1);
	/* The first op after the restart (any session op) runs the repair. */
	json_t *ev = rq("{\"id\":1,\"op\":\"sessions\"}");
	ck_assert_int_eq(jint(json_array_get(json_object_get(ev, "sessions"), 0), "stream_tokens"), 0);
	json_decref(ev);
	ev = rq("{\"id\":1,\"op\":\"job\",\"job\":%lld}", job);
	ck_assert_str_eq(jstr(ev, "state"), "interrupted");
	json_decref(ev);
	/* Its unmapped tokens are gone: the session is a mapped stream. */
	ck_assert_int_eq(session_tokens("k", NULL), 0);
	int np;
	json_t *d = ctl_ingest("k", big, &np);
	ck_assert_str_eq(jstr(d, "state"), "done");
	ck_assert_int_eq(jint(d, "documents"), 60);
	long long total = jint(d, "stream_tokens");
	json_decref(d);
	ck_assert_int_eq(session_tokens("k", NULL), total);
	d = ctl_ingest("k", big, &np);
	ck_assert_int_eq(jint(d, "tokens"), 0);
	json_decref(d);

	/* SIGTERM during a job: engramd stops (exit 0), the job is recorded
	 * as cancelled, and the next run completes the session. */
	int fd = th_connect(D.sock);
	char line[4400];
	int k = snprintf(line, sizeof(line), "{\"id\":9,\"op\":\"ingest\",\"session\":\"k2\","
			 "\"paths\":[\"%s\"]}\n", big);
	th_send(fd, line, (size_t)k);
	ev = th_read_json(fd, 20000);
	ck_assert_str_eq(ev_name(ev), "job");
	job = jint(ev, "job");
	json_decref(ev);
	job_wait_tokens(job, 70000);
	ck_assert_int_eq(th_signal_wait(&D, SIGTERM), 0);
	D.pid = 0;
	/* The follower got its final event: cancelled, because of the stop. */
	while ((ev = th_read_json(fd, 5000)) && !strcmp(ev_name(ev), "progress"))
		json_decref(ev);
	ck_assert_ptr_nonnull(ev);
	ck_assert_str_eq(th_err_code(ev), "cancelled");
	ck_assert_msg(strstr(json_string_value(json_object_get(json_object_get(ev, "error"),
			     "message")), "stopping"), "%s", json_dumps(ev, JSON_COMPACT));
	json_decref(ev);
	th_close(fd);
	start(1);
	ev = rq("{\"id\":1,\"op\":\"job\",\"job\":%lld}", job);
	ck_assert_str_eq(jstr(ev, "state"), "cancelled");
	json_decref(ev);
	ck_assert_int_eq(session_tokens("k2", NULL), 0);
	d = ctl_ingest("k2", big, &np);
	ck_assert_int_eq(jint(d, "stream_tokens"), total);
	json_decref(d);
	ck_assert_int_ge(check_source_map("k2", big, total), 20);
	ck_assert_int_eq(th_signal_wait(&D, SIGTERM), 0);
}
END_TEST

START_TEST(test_no_model)
{
	start(0);
	tree = small_tree();
	char *err = NULL;
	ck_assert_int_eq(ctl(NULL, &err, "ingest", tree, NULL), 1);
	ck_assert_msg(strstr(err, "no_model"), "%s", err);
	free(err);
	char *out = NULL;
	ck_assert_int_eq(ctl(&out, NULL, "sessions", NULL), 0);
	free(out);
	ck_assert_int_eq(ctl(&out, NULL, "store", NULL), 0);
	free(out);
	ck_assert_int_eq(ctl(&out, NULL, "jobs", NULL), 0);
	free(out);
	ck_assert_int_eq(th_signal_wait(&D, SIGTERM), 0);
}
END_TEST

int main(void)
{
	Suite *s = suite_create("session_ops");
	TCase *tc = tcase_create("session_ops");
	tcase_add_checked_fixture(tc, setup, teardown);
	tcase_set_timeout(tc, 300);
	tcase_add_test(tc, test_ingest_incremental);
	tcase_add_test(tc, test_jobs);
	tcase_add_test(tc, test_sessions_and_bad_input);
	tcase_add_test(tc, test_kill9_and_shutdown);
	tcase_add_test(tc, test_no_model);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
