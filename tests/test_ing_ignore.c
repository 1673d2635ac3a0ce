/* test_ing_ignore.c - .gitignore semantics: the glob matcher against a
 * table of patterns and paths, ignore files (negation, folder-only,
 * anchoring, escapes, precedence), and nested ignore files in a real walk. */
#include "config.h"
#include "test_ing_util.h"

static const struct { const char *pat, *path; int want; } globs[] = {
	{ "*.c", "a.c", 1 }, { "*.c", "a.h", 0 }, { "*.c", "dir/a.c", 0 },
	{ "a?c", "abc", 1 }, { "a?c", "a/c", 0 }, { "a?c", "ac", 0 },
	{ "[abc].txt", "b.txt", 1 }, { "[abc].txt", "d.txt", 0 },
	{ "[!abc].txt", "d.txt", 1 }, { "[^abc].txt", "a.txt", 0 },
	{ "[a-f]*", "dog", 1 }, { "[a-f]*", "zoo", 0 },
	{ "[]]x", "]x", 1 }, { "[[:digit:]]z", "7z", 1 }, { "[[:digit:]]z", "az", 0 },
	{ "\\*lit", "*lit", 1 }, { "\\*lit", "xlit", 0 }, { "\\#x", "#x", 1 },
	{ "**/foo", "foo", 1 }, { "**/foo", "a/b/foo", 1 }, { "**/foo", "a/foox", 0 },
	{ "**/foo/bar", "x/foo/bar", 1 }, { "**/foo/bar", "foo/bar", 1 },
	{ "abc/**", "abc/x", 1 }, { "abc/**", "abc/x/y", 1 }, { "abc/**", "abc", 0 },
	{ "a/**/b", "a/b", 1 }, { "a/**/b", "a/x/b", 1 }, { "a/**/b", "a/x/y/b", 1 },
	{ "a/**/b", "a/x/y/c", 0 }, { "a**b", "axxb", 1 }, { "a**b", "ax/xb", 0 },
	{ "doc/*.txt", "doc/a.txt", 1 }, { "doc/*.txt", "doc/s/a.txt", 0 },
	{ "*", "anything", 1 }, { "**", "a/b/c", 1 }, { "", "", 1 }, { "", "a", 0 },
	{ "[unterminated", "[unterminated", 1 }, { "a*b*c*d*e*f", "axbxcxdxexf", 1 },
	{ "*a*a*a*a*a*a*a*a*b", "aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa", 0 },
};

START_TEST(test_glob_table)
{
	for (size_t i = 0; i < sizeof(globs) / sizeof(globs[0]); i++)
		ck_assert_msg(ing_glob_match(globs[i].pat, globs[i].path) == globs[i].want,
			      "glob %s vs %s: want %d", globs[i].pat, globs[i].path,
			      globs[i].want);
}
END_TEST

/* Pathological patterns stay fast: one long path, many stars (bounded by
 * O(pattern * path); a backtracking matcher would take forever). */
START_TEST(test_glob_no_blowup)
{
	char path[4001], pat[201];
	memset(path, 'a', 4000);
	path[4000] = '\0';
	for (int i = 0; i < 100; i++) {
		pat[2 * i] = '*';
		pat[2 * i + 1] = 'a';
	}
	pat[200] = '\0';
	pat[199] = 'b';
	ck_assert_int_eq(ing_glob_match(pat, path), 0);
	char dpath[4001];
	for (int i = 0; i < 2000; i++) {
		dpath[2 * i] = 'a';
		dpath[2 * i + 1] = '/';
	}
	dpath[3999] = '\0';
	ck_assert_int_eq(ing_glob_match("**/**/**/**/**/**/**/b", dpath), 0);
	ck_assert_int_eq(ing_glob_match("**/a", dpath), 1);
}
END_TEST

struct icase { const char *path; int is_dir; int want; };

static void check_ignore(const char *text, const char *base,
			 const struct icase *c, size_t n)
{
	ing_ignore *ig;
	ck_assert_int_eq(ing_ignore_parse(text, strlen(text), base, &ig), 0);
	for (size_t i = 0; i < n; i++)
		ck_assert_msg(ing_ignore_match(ig, c[i].path, c[i].is_dir) == c[i].want,
			      "%s (dir %d): want %d", c[i].path, c[i].is_dir, c[i].want);
	ing_ignore_free(ig);
}

START_TEST(test_ignore_rules)
{
	const char *text =
		"# a comment\n"
		"\n"
		"*.o\n"
		"!keep.o\n"
		"build/\n"
		"/root-only.txt\n"
		"docs/*.tmp\n"
		"trailing.txt   \n"
		"space\\ \n"
		"\\!bang\n"
		"\\#hash\n"
		"logs/**\n"
		"!logs/important.log\n"
		"**/gen/*.c\r\n";
	const struct icase c[] = {
		{ "a.o", 0, 1 }, { "src/deep/a.o", 0, 1 }, { "keep.o", 0, -1 },
		{ "src/keep.o", 0, -1 }, { "build", 1, 1 }, { "src/build", 1, 1 },
		{ "build", 0, 0 },	/* a file named build: folder-only rule */
		{ "root-only.txt", 0, 1 }, { "sub/root-only.txt", 0, 0 },
		{ "docs/x.tmp", 0, 1 }, { "docs/sub/x.tmp", 0, 0 },
		{ "trailing.txt", 0, 1 }, { "space ", 0, 1 }, { "space", 0, 0 },
		{ "!bang", 0, 1 }, { "#hash", 0, 1 }, { "a comment", 0, 0 },
		{ "logs/x.log", 0, 1 }, { "logs/important.log", 0, -1 },
		{ "logs", 1, 0 }, { "a/gen/x.c", 0, 1 }, { "gen/x.c", 0, 1 },
		{ "a.c", 0, 0 },
	};
	check_ignore(text, "", c, sizeof(c) / sizeof(c[0]));

	/* A nested file applies to its own folder only, relative to it. */
	const struct icase c2[] = {
		{ "sub/a.log", 0, 1 }, { "a.log", 0, 0 }, { "other/a.log", 0, 0 },
		{ "sub/x/a.log", 0, 1 }, { "sub/only-here", 0, 1 },
		{ "sub/x/only-here", 0, 0 }, { "subway/a.log", 0, 0 },
	};
	check_ignore("*.log\n/only-here\n", "sub", c2, sizeof(c2) / sizeof(c2[0]));
}
END_TEST

/* The same rules through a real walk: nested files, precedence of deeper
 * files, negation, .engramignore, skipped build folders. */
START_TEST(test_walk_nested_ignores)
{
	char *d = tu_tmpdir();
	ing_file_list l = { 0 };
	struct tu_reports r = { 0 };
	tu_writes(d, ".gitignore", "*.log\nsecret/\n/top.txt\n");
	tu_writes(d, ".engramignore", "*.bak\n");
	tu_writes(d, "a.c", "int a;\n");
	tu_writes(d, "x.log", "log\n");
	tu_writes(d, "top.txt", "top\n");
	tu_writes(d, "b.bak", "bak\n");
	tu_writes(d, "secret/s.txt", "s\n");
	tu_writes(d, "sub/top.txt", "not anchored here\n");
	tu_writes(d, "sub/.gitignore", "!keep.log\n*.c\n");
	tu_writes(d, "sub/keep.log", "kept: deeper file wins\n");
	tu_writes(d, "sub/drop.log", "dropped\n");
	tu_writes(d, "sub/z.c", "ignored below sub\n");
	tu_writes(d, "node_modules/m.js", "x\n");
	tu_writes(d, ".git/HEAD", "ref\n");
	tu_writes(d, "target/t.txt", "x\n");
	const char *roots[] = { d };
	ck_assert_int_eq(ing_walk(roots, 1, NULL, &l, tu_report, &r, NULL), 0);
	ck_assert(tu_has_file(&l, "/a.c"));
	ck_assert(tu_has_file(&l, "/sub/top.txt"));
	ck_assert(tu_has_file(&l, "/sub/keep.log"));
	ck_assert(tu_has_file(&l, "/.gitignore"));
	ck_assert(!tu_has_file(&l, "/x.log"));
	ck_assert_int_eq(tu_code_for(&r, "/top.txt"), ING_EIGNORED);
	ck_assert(!tu_has_file(&l, "/b.bak"));
	ck_assert(!tu_has_file(&l, "/secret/s.txt"));
	ck_assert_int_eq(tu_code_for(&r, "/secret"), ING_EIGNORED);
	ck_assert(!tu_has_file(&l, "/sub/drop.log"));
	ck_assert(!tu_has_file(&l, "/sub/z.c"));
	ck_assert_int_eq(tu_code_for(&r, "/node_modules"), ING_EBUILDDIR);
	ck_assert_int_eq(tu_code_for(&r, "/.git"), ING_EBUILDDIR);
	ck_assert_int_eq(tu_code_for(&r, "/target"), ING_EBUILDDIR);
	/* Deterministic order: byte order of names, depth first. */
	for (size_t i = 1; i < l.n; i++)
		ck_assert_ptr_nonnull(l.v[i].path);
	ck_assert_uint_eq(l.n, 6);	/* 2 ignore files, a.c, sub/: .gitignore keep.log top.txt */
	ing_file_list_free(&l);
	tu_reports_free(&r);
	tu_rmtree(d);
	free(d);
}
END_TEST

TU_MAIN("ing_ignore", test_glob_table, test_glob_no_blowup, test_ignore_rules,
	test_walk_nested_ignores)
