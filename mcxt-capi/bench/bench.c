/*
 * palloc/pfree against malloc/free, in C.
 *
 *   pair     N times: p = alloc(size); touch; free(p)            (64 bytes)
 *   mixed    the same with sizes cycling over 16..1024 bytes
 *   tuple    per-tuple loop: 16 allocations of 16..256 bytes, then
 *            MemoryContextReset (mcxt) or 16 frees (malloc); ns per
 *            allocation
 *
 * Prints one line per case: name, ns/op for mcxt, ns/op for malloc.
 * Build with bench/run.sh, or run the ignored test `bench` of mcxt-capi.
 */
#include "mcxt.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

/* Keeps the compiler from eliding allocations. */
static void *volatile sink;

static double
now_ns(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (double) ts.tv_sec * 1e9 + (double) ts.tv_nsec;
}

static const size_t mixed_sizes[8] = {16, 24, 40, 64, 100, 200, 512, 1024};
static const size_t tuple_sizes[16] = {16, 24, 32, 48, 64, 16, 80, 128,
	24, 256, 40, 32, 16, 96, 64, 200};

#define TUPLE_ALLOCS 16

static double
bench_pair_palloc(long n, size_t size)
{
	double		start = now_ns();

	for (long i = 0; i < n; i++)
	{
		char	   *p = palloc(size);

		p[0] = (char) i;
		sink = p;
		pfree(p);
	}
	return (now_ns() - start) / (double) n;
}

static double
bench_pair_malloc(long n, size_t size)
{
	double		start = now_ns();

	for (long i = 0; i < n; i++)
	{
		char	   *p = malloc(size);

		p[0] = (char) i;
		sink = p;
		free(p);
	}
	return (now_ns() - start) / (double) n;
}

static double
bench_mixed_palloc(long n)
{
	double		start = now_ns();

	for (long i = 0; i < n; i++)
	{
		char	   *p = palloc(mixed_sizes[i & 7]);

		p[0] = (char) i;
		sink = p;
		pfree(p);
	}
	return (now_ns() - start) / (double) n;
}

static double
bench_mixed_malloc(long n)
{
	double		start = now_ns();

	for (long i = 0; i < n; i++)
	{
		char	   *p = malloc(mixed_sizes[i & 7]);

		p[0] = (char) i;
		sink = p;
		free(p);
	}
	return (now_ns() - start) / (double) n;
}

static double
bench_tuple_palloc(long tuples)
{
	MemoryContext per_tuple = AllocSetContextCreate(TopMemoryContext, "per tuple", ALLOCSET_DEFAULT_SIZES);
	MemoryContext old = MemoryContextSwitchTo(per_tuple);
	double		start = now_ns();

	for (long t = 0; t < tuples; t++)
	{
		for (int i = 0; i < TUPLE_ALLOCS; i++)
		{
			char	   *p = palloc(tuple_sizes[i]);

			p[0] = (char) i;
			sink = p;
		}
		MemoryContextReset(per_tuple);
	}
	start = (now_ns() - start) / (double) (tuples * TUPLE_ALLOCS);
	MemoryContextSwitchTo(old);
	MemoryContextDelete(per_tuple);
	return start;
}

static double
bench_tuple_malloc(long tuples)
{
	char	   *live[TUPLE_ALLOCS];
	double		start = now_ns();

	for (long t = 0; t < tuples; t++)
	{
		for (int i = 0; i < TUPLE_ALLOCS; i++)
		{
			live[i] = malloc(tuple_sizes[i]);
			live[i][0] = (char) i;
			sink = live[i];
		}
		for (int i = 0; i < TUPLE_ALLOCS; i++)
			free(live[i]);
	}
	return (now_ns() - start) / (double) (tuples * TUPLE_ALLOCS);
}

/* Best of three runs. */
#define BEST(expr) \
	({ double best_ = 1e300; \
	   for (int r_ = 0; r_ < 3; r_++) { double v_ = (expr); if (v_ < best_) best_ = v_; } \
	   best_; })

int
main(int argc, char **argv)
{
	long		n = argc > 1 ? atol(argv[1]) : 20000000;

	MemoryContextInit();
	printf("%-34s %10s %10s\n", "case (ns/op, best of 3)", "mcxt", "malloc");
	printf("%-34s %10.2f %10.2f\n", "palloc+pfree pair, 64 B",
		   BEST(bench_pair_palloc(n, 64)), BEST(bench_pair_malloc(n, 64)));
	printf("%-34s %10.2f %10.2f\n", "palloc+pfree pair, 16..1024 B",
		   BEST(bench_mixed_palloc(n)), BEST(bench_mixed_malloc(n)));
	printf("%-34s %10.2f %10.2f\n", "per-tuple: 16 allocs + reset",
		   BEST(bench_tuple_palloc(n / TUPLE_ALLOCS)), BEST(bench_tuple_malloc(n / TUPLE_ALLOCS)));
	MemoryContextDelete(TopMemoryContext);
	return 0;
}
