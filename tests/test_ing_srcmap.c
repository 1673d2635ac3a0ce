/* test_ing_srcmap.c - the source map and framing: append/lookup/truncate,
 * and exactness end to end: for every span produced by a job, the text of
 * its tokens is exactly the framing text or the document lines it names
 * (whole lines, long lines in pieces, pages of a PDF). */
#include "config.h"
#include "test_ing_util.h"

START_TEST(test_map_basics)
{
	ing_srcmap m;
	size_t ix;
	ing_srcmap_init(&m);
	ck_assert_int_eq(ing_srcmap_lookup(&m, 0, &ix), ING_ERANGE);
	for (uint32_t i = 0; i < 1000; i++) {
		ing_span sp = { 10 + 3ull * i, 10 + 3ull * i + (i % 4 ? 3 : 3), 0, 0, i + 1, i + 1 };
		ck_assert_int_eq(ing_srcmap_append(&m, &sp), 0);
	}
	ing_span empty = { 3010, 3010, 0, 0, 5, 5 };
	ck_assert_int_eq(ing_srcmap_append(&m, &empty), 0);	/* dropped */
	ck_assert_uint_eq(m.n, 1000);
	ing_span gap = { 3011, 3012, 0, 0, 1, 1 };
	ck_assert_int_eq(ing_srcmap_append(&m, &gap), ING_EINVAL);
	ck_assert_int_eq(ing_srcmap_lookup(&m, 9, &ix), ING_ERANGE);
	ck_assert_int_eq(ing_srcmap_lookup(&m, 3010, &ix), ING_ERANGE);
	for (uint64_t pos = 10; pos < 3010; pos++) {
		ck_assert_int_eq(ing_srcmap_lookup(&m, pos, &ix), 0);
		ck_assert_uint_eq(ix, (pos - 10) / 3);
		ck_assert(m.v[ix].token_start <= pos && pos < m.v[ix].token_end);
	}
	ing_srcmap_truncate(&m, 2000);
	ck_assert_uint_eq(m.v[m.n - 1].token_end, 2000);
	ck_assert_int_eq(ing_srcmap_lookup(&m, 2000, &ix), ING_ERANGE);
	ck_assert_int_eq(ing_srcmap_lookup(&m, 1999, &ix), 0);
	ing_srcmap_truncate(&m, 0);
	ck_assert_uint_eq(m.n, 0);
	ing_srcmap_free(&m);
}
END_TEST

START_TEST(test_frame_text)
{
	ing_doc d = { .type = "C", .n_lines = 412 };
	char *h;
	size_t n;
	ck_assert_int_eq(ing_frame_header("src/net/conn.c", &d, &h, &n), 0);
	ck_assert_str_eq(h, "<<< file: src/net/conn.c (C, 412 lines) >>>\n");
	free(h);
	d.n_lines = 1;
	ck_assert_int_eq(ing_frame_header("a\\b\n>c\xff", &d, &h, &n), 0);
	ck_assert_str_eq(h, "<<< file: a\\\\b\\x0a\\x3ec\\xff (C, 1 line) >>>\n");
	free(h);
	ing_doc p = { .type = "PDF", .n_pages = 12, .n_lines = 300 };
	ck_assert_int_eq(ing_frame_header("c.pdf", &p, &h, &n), 0);
	ck_assert_str_eq(h, "<<< file: c.pdf (PDF, 12 pages) >>>\n");
	free(h);
	char pg[32];
	ck_assert_uint_eq(ing_frame_page(3, pg, sizeof(pg)), 15);
	ck_assert_str_eq(pg, "<<< page 3 >>>\n");
	ck_assert_int_eq(ing_frame_footer("c.pdf", &h, &n), 0);
	ck_assert_str_eq(h, "<<< end of file: c.pdf >>>\n\n");
	free(h);
}
END_TEST

/* Text of tokens [a, b). */
static char *tok_text(const struct tu_tok *t, uint64_t a, uint64_t b)
{
	size_t n = 1;
	for (uint64_t i = a; i < b; i++)
		n += strlen(t->text[i]);
	char *s = malloc(n);
	s[0] = '\0';
	for (uint64_t i = a; i < b; i++)
		strcat(s, t->text[i]);
	return s;
}

static size_t count_nl(const char *s)
{
	size_t n = 0;
	for (; *s; s++)
		n += *s == '\n';
	return n;
}

/* Checks every span of a finished job against the documents' text. */
static void check_exact(const char *dir, const ing_srcmap *m,
			const ing_manifest *man, const struct tu_tok *t,
			uint64_t base)
{
	ck_assert_uint_eq(m->n ? m->v[0].token_start : base, base);
	ck_assert_uint_eq(m->v[m->n - 1].token_end - base, t->n);
	for (size_t di = 0; di < man->n; di++) {
		const ing_manifest_entry *e = &man->v[di];
		if (e->status)
			continue;
		/* The document's text, as the extractor gives it. */
		const char *rel = strchr(e->path, '/') + 1;
		char *p = tu_path(dir, rel);
		FILE *fp = fopen(p, "rb");
		ck_assert_ptr_nonnull(fp);
		char *raw = malloc(1 << 20);
		size_t rl = fread(raw, 1, 1 << 20, fp);
		fclose(fp);
		ing_doc d;
		ck_assert_int_eq(ing_extract(raw, rl, e->path, NULL, &d), 0);
		size_t ix;
		ck_assert_int_eq(ing_srcmap_lookup(m, e->token_start, &ix), 0);
		ck_assert_uint_eq(m->v[ix].token_start, e->token_start);
		uint32_t page = 0, line = 1;
		size_t off = 0, end = d.len;
		int mid_line = 0;
		for (; ix < m->n && m->v[ix].token_start < e->token_end; ix++) {
			const ing_span *sp = &m->v[ix];
			ck_assert_uint_eq(sp->doc_index, e->doc_index);
			char *s = tok_text(t, sp->token_start - base, sp->token_end - base);
			if (sp->line_start == 0) {
				ck_assert(!strncmp(s, "<<< ", 4));
				if (sp->page) {	/* a page marker: the page's text follows */
					char pg[32];
					ing_frame_page(sp->page, pg, sizeof(pg));
					ck_assert_str_eq(s, pg);
					ck_assert_uint_eq(off, page ? d.page_off[page] : 0);
					page = sp->page;
					off = d.page_off[page - 1];
					end = page < d.n_pages ? d.page_off[page] : d.len;
					line = 1;
				} else if (sp->token_start == e->token_start) {
					ck_assert(!strncmp(s, "<<< file: ", 10));
				} else {	/* the footer: body done */
					ck_assert(!strncmp(s, "<<< end of file: ", 17));
					ck_assert_uint_eq(off, end);
				}
			} else {
				ck_assert_uint_eq(sp->page, page);
				ck_assert_uint_eq(sp->line_start, line);
				size_t sl = strlen(s);
				ck_assert_uint_le(off + sl, end);
				ck_assert_int_eq(memcmp(d.text + off, s, sl), 0);
				size_t nl = count_nl(s);
				if (nl == 0) {	/* a piece of a long line */
					ck_assert_uint_eq(sp->line_end, sp->line_start);
					mid_line = 1;
				} else {
					ck_assert_uint_eq(nl, sp->line_end - sp->line_start + 1);
					ck_assert(s[sl - 1] == '\n');
					line = sp->line_end + 1;
					mid_line = 0;
				}
				off += sl;
			}
			free(s);
		}
		ck_assert(!mid_line);
		ck_assert_uint_eq(off, end);
		ck_assert_uint_eq(m->v[ix - 1].token_end, e->token_end);
		ing_doc_free(&d);
		free(raw);
		free(p);
	}
}

static void run_exact(uint32_t chunk_lines, uint32_t chunk_max, int small_first)
{
	char *d = tu_tmpdir();
	char longline[3000];
	for (int i = 0; i < 2999; i++)
		longline[i] = i % 7 == 6 ? ' ' : (char)('a' + i % 26);
	longline[2999] = '\0';
	tu_writes(d, "a.c", "int a;\n\n  x = 1;  \nlast line without newline");
	tu_writes(d, "b.txt", longline);
	tu_writes(d, "c.md", "# T\n\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"
		  "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"
		  "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9"
		  "\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\xC3\xA9\n\n\nend\n");
	tu_writes(d, "empty.txt", "");
	const char *pages[] = { "First page", "", "Third page" };
	size_t len;
	char *pdf = tu_pdf(pages, 3, &len);
	tu_write(d, "p.pdf", pdf, len);
	free(pdf);
	tu_mtime(d, "a.c", 1000);
	tu_mtime(d, "b.txt", 2000);
	tu_mtime(d, "c.md", 3000);
	tu_mtime(d, "empty.txt", 3000);
	tu_mtime(d, "p.pdf", 500);

	struct tu_tok t = { .small_first = small_first };
	const char *roots[] = { d };
	ing_job_config c = { .roots = roots, .n_roots = 1, .tokenize = tu_tokenize,
			     .tokenize_arg = &t, .token_base = 7 };
	ing_settings_init(&c.settings);
	c.settings.chunk_lines = chunk_lines;
	c.settings.chunk_max_bytes = chunk_max;
	ing_job *j;
	ck_assert_int_eq(ing_job_open(&c, &j), 0);
	ck_assert_int_eq(ing_job_run(j), 0);
	const ing_manifest *man = ing_job_manifest(j);
	ck_assert_uint_eq(man->n, 5);
	/* Oldest first, then by path. */
	ck_assert(strstr(man->v[0].path, "p.pdf"));
	ck_assert(strstr(man->v[1].path, "a.c"));
	ck_assert(strstr(man->v[3].path, "c.md"));
	ck_assert(strstr(man->v[4].path, "empty.txt"));
	for (size_t i = 0; i < man->n; i++)
		ck_assert_uint_eq(man->v[i].doc_index, i);
	check_exact(d, ing_job_srcmap(j), man, &t, 7);
	ing_job_close(j);
	tu_tok_free(&t);
	tu_rmtree(d);
	free(d);
}

START_TEST(test_exact_one_line)
{
	run_exact(1, 4096, 0);
}
END_TEST

START_TEST(test_exact_groups_and_pieces)
{
	run_exact(3, 64, 1);	/* the first call asks for more room */
	run_exact(1000, 100, 0);
}
END_TEST

TU_MAIN("ing_srcmap", test_map_basics, test_frame_text, test_exact_one_line,
	test_exact_groups_and_pieces)
