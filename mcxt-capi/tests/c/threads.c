/*
 * CurrentMemoryContext, TopMemoryContext and ErrorContext are per thread:
 * each thread calls MemoryContextInit and works in its own tree.
 */
#include "mcxt.h"
#include "check.h"

#include <pthread.h>
#include <stdint.h>
#include <string.h>

#define NTHREADS 4

static void *
worker(void *arg)
{
	int			id = (int) (intptr_t) arg;
	MemoryContext per_tuple;
	intptr_t	ok = 1;

	if (CurrentMemoryContext != NULL || TopMemoryContext != NULL)
		return (void *) 0;
	MemoryContextInit();
	per_tuple = AllocSetContextCreate(TopMemoryContext, "per tuple", ALLOCSET_DEFAULT_SIZES);
	for (int round = 0; round < 200; round++)
	{
		MemoryContext old = MemoryContextSwitchTo(per_tuple);
		char	   *rows[50];

		for (int i = 0; i < 50; i++)
		{
			rows[i] = psprintf("thread %d round %d row %d", id, round, i);
		}
		for (int i = 0; i < 50; i++)
		{
			char		expected[64];

			snprintf(expected, sizeof expected, "thread %d round %d row %d", id, round, i);
			if (strcmp(rows[i], expected) != 0 || GetMemoryChunkContext(rows[i]) != per_tuple)
				ok = 0;
		}
		MemoryContextSwitchTo(old);
		MemoryContextReset(per_tuple);
	}
	if (CurrentMemoryContext != TopMemoryContext)
		ok = 0;
	MemoryContextCheck(TopMemoryContext);
	MemoryContextDelete(TopMemoryContext);
	return (void *) ok;
}

int
main(void)
{
	pthread_t	threads[NTHREADS];
	MemoryContext mine;

	MemoryContextInit();
	mine = TopMemoryContext;
	for (int i = 0; i < NTHREADS; i++)
		CHECK(pthread_create(&threads[i], NULL, worker, (void *) (intptr_t) i) == 0);
	for (int i = 0; i < NTHREADS; i++)
	{
		void	   *ok = NULL;

		CHECK(pthread_join(threads[i], &ok) == 0);
		CHECK(ok == (void *) 1);
	}
	/* The other threads' trees did not touch this thread's variables. */
	CHECK(TopMemoryContext == mine);
	CHECK(CurrentMemoryContext == mine);
	MemoryContextDelete(TopMemoryContext);
	return CHECK_RESULT();
}
