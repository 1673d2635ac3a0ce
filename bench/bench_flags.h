/* bench_flags.h - the numeric command-line flags of the bench programs:
 * a whole number in range or a message and exit 1, never atoi's silent
 * 0.  Header-only (static): each bench program is one file. */
#ifndef BENCH_FLAGS_H
#define BENCH_FLAGS_H

#include <stdio.h>
#include <stdlib.h>

/* Flags' upper bound where nothing tighter applies. */
#define BENCH_BIG (1ul << 30)

/* The value of flag (its text v) for program prog: a whole number from 0
 * to max, or a message on stderr and exit 1. */
static inline unsigned long bench_num(const char *prog, const char *flag,
    const char *v, unsigned long max)
{
	char *end;
	unsigned long x = strtoul(v, &end, 10);

	if (!*v || *end || *v == '-' || x > max) {
		fprintf(stderr, "%s: %s wants a number from 0 to %lu\n", prog,
		    flag, max);
		exit(1);
	}
	return x;
}

#endif
