/* test_frame.c - line framing: partial lines across reads, every split
 * point, over-long lines, NUL bytes, garbage. */
#include "config.h"
#include <check.h>
#include <stdlib.h>
#include <string.h>
#include "frame.h"

#define MAXL 32

struct seen {
	int n;
	char lines[64][MAXL + 1];
	size_t lens[64];
	int toolong[64];
};

static int collect(void *arg, enum ed_frame_kind kind, const char *d, size_t len)
{
	struct seen *s = arg;
	ck_assert_int_lt(s->n, 64);
	s->toolong[s->n] = kind == ED_FRAME_TOO_LONG;
	if (kind == ED_FRAME_LINE) {
		ck_assert_uint_le(len, MAXL);
		memcpy(s->lines[s->n], d, len);
	}
	s->lens[s->n] = len;
	s->n++;
	return 0;
}

START_TEST(test_whole_lines)
{
	ed_frame f;
	struct seen s = { 0 };
	ed_frame_init(&f, MAXL);
	ck_assert_int_eq(ed_frame_feed(&f, "ab\ncd\n\n", 7, collect, &s, NULL), 0);
	ck_assert_int_eq(s.n, 3);
	ck_assert_str_eq(s.lines[0], "ab");
	ck_assert_str_eq(s.lines[1], "cd");
	ck_assert_uint_eq(s.lens[2], 0);
	ck_assert_uint_eq(ed_frame_pending(&f), 0);
	ed_frame_free(&f);
}
END_TEST

/* The same input split at every byte, and fed byte by byte, gives the same
 * lines. */
START_TEST(test_every_split)
{
	const char in[] = "{\"id\":1}\nx\0y\n\nlast line here\npartial";
	size_t n = sizeof(in) - 1;
	for (size_t cut = 0; cut <= n; cut++) {
		ed_frame f;
		struct seen s = { 0 };
		ed_frame_init(&f, MAXL);
		ck_assert_int_eq(ed_frame_feed(&f, in, cut, collect, &s, NULL), 0);
		ck_assert_int_eq(ed_frame_feed(&f, in + cut, n - cut, collect, &s, NULL), 0);
		ck_assert_int_eq(s.n, 4);
		ck_assert_str_eq(s.lines[0], "{\"id\":1}");
		ck_assert_uint_eq(s.lens[1], 3);
		ck_assert_int_eq(memcmp(s.lines[1], "x\0y", 3), 0);
		ck_assert_uint_eq(s.lens[2], 0);
		ck_assert_str_eq(s.lines[3], "last line here");
		ck_assert_uint_eq(ed_frame_pending(&f), 7);
		ed_frame_free(&f);
	}
	ed_frame f;
	struct seen s = { 0 };
	ed_frame_init(&f, MAXL);
	for (size_t i = 0; i < n; i++)
		ck_assert_int_eq(ed_frame_feed(&f, in + i, 1, collect, &s, NULL), 0);
	ck_assert_int_eq(s.n, 4);
	ck_assert_str_eq(s.lines[3], "last line here");
	ed_frame_free(&f);
}
END_TEST

/* A line over the limit is reported once, wherever the reads split it, and
 * the next line is framed normally. */
START_TEST(test_too_long)
{
	char in[200];
	memset(in, 'a', 100);
	in[100] = '\n';
	memcpy(in + 101, "ok\n", 3);
	size_t n = 104;
	for (size_t cut = 0; cut <= n; cut++) {
		ed_frame f;
		struct seen s = { 0 };
		ed_frame_init(&f, MAXL);
		ed_frame_feed(&f, in, cut, collect, &s, NULL);
		ed_frame_feed(&f, in + cut, n - cut, collect, &s, NULL);
		ck_assert_int_eq(s.n, 2);
		ck_assert(s.toolong[0]);
		ck_assert(!s.toolong[1]);
		ck_assert_str_eq(s.lines[1], "ok");
		ck_assert_uint_le(f.cap, MAXL);
		ed_frame_free(&f);
	}
}
END_TEST

/* Exactly max_line bytes is accepted; one more is not. */
START_TEST(test_limit_edge)
{
	char in[MAXL + 2];
	ed_frame f;
	struct seen s = { 0 };
	memset(in, 'b', sizeof(in));
	in[MAXL] = '\n';
	ed_frame_init(&f, MAXL);
	ed_frame_feed(&f, in, MAXL + 1, collect, &s, NULL);
	ck_assert_int_eq(s.n, 1);
	ck_assert(!s.toolong[0]);
	ck_assert_uint_eq(s.lens[0], MAXL);
	in[MAXL + 1] = '\n';
	in[MAXL] = 'b';
	ed_frame_feed(&f, in, MAXL + 2, collect, &s, NULL);
	ck_assert_int_eq(s.n, 2);
	ck_assert(s.toolong[1]);
	ed_frame_free(&f);
}
END_TEST

static int stop_after_first(void *arg, enum ed_frame_kind kind, const char *d, size_t len)
{
	(*(int *)arg)++;
	return 7;
}

/* A callback can stop the feed; *used says where to resume. */
START_TEST(test_stop)
{
	ed_frame f;
	int calls = 0;
	size_t used = 0;
	ed_frame_init(&f, MAXL);
	ck_assert_int_eq(ed_frame_feed(&f, "a\nbb\nc", 6, stop_after_first, &calls, &used), 7);
	ck_assert_int_eq(calls, 1);
	ck_assert_uint_eq(used, 2);
	ed_frame_free(&f);
}
END_TEST

/* Random garbage never breaks the bound and every byte is accounted for. */
START_TEST(test_garbage)
{
	srand(42);
	for (int round = 0; round < 200; round++) {
		char buf[512];
		size_t n = rand() % sizeof(buf);
		for (size_t i = 0; i < n; i++)
			buf[i] = (rand() % 10 == 0) ? '\n' : (char)rand();
		ed_frame f;
		struct seen s;
		memset(&s, 0, sizeof(s));
		ed_frame_init(&f, MAXL);
		size_t off = 0;
		while (off < n && s.n < 60) {
			size_t k = 1 + rand() % 40;
			if (k > n - off)
				k = n - off;
			ck_assert_int_eq(ed_frame_feed(&f, buf + off, k, collect, &s, NULL), 0);
			off += k;
			ck_assert_uint_le(ed_frame_pending(&f), MAXL);
		}
		ed_frame_free(&f);
	}
}
END_TEST

int main(void)
{
	Suite *s = suite_create("frame");
	TCase *tc = tcase_create("frame");
	tcase_add_test(tc, test_whole_lines);
	tcase_add_test(tc, test_every_split);
	tcase_add_test(tc, test_too_long);
	tcase_add_test(tc, test_limit_edge);
	tcase_add_test(tc, test_stop);
	tcase_add_test(tc, test_garbage);
	suite_add_tcase(s, tc);
	SRunner *sr = srunner_create(s);
	srunner_run_all(sr, CK_NORMAL);
	int failed = srunner_ntests_failed(sr);
	srunner_free(sr);
	return failed ? 1 : 0;
}
