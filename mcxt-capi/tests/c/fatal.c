/*
 * Errors that end the process.  argv[1] selects the case:
 *   default    no handler set: the default handler prints the message
 *              and aborts;
 *   callback   an error raised inside a reset callback, with a longjmp
 *              handler set: library frames are live below the callback,
 *              so the library aborts instead of calling the handler;
 *   returning  a handler that returns: the library aborts.
 * Each case must die of SIGABRT; the test checks stderr.
 */
#include "mcxt.h"

#include <setjmp.h>
#include <stdio.h>
#include <string.h>

static jmp_buf env;

static void
longjmp_handler(const char *message, void *arg)
{
	(void) arg;
	fprintf(stderr, "handler called: %s\n", message);
	longjmp(env, 1);
}

static void
returning_handler(const char *message, void *arg)
{
	(void) arg;
	fprintf(stderr, "handler returning: %s\n", message);
}

static void
failing_callback(void *arg)
{
	(void) arg;
	(void) palloc(MaxAllocSize + 1);
}

int
main(int argc, char **argv)
{
	const char *mode = argc > 1 ? argv[1] : "";

	MemoryContextInit();
	if (strcmp(mode, "default") == 0)
	{
		(void) palloc(MaxAllocSize + 1);
	}
	else if (strcmp(mode, "callback") == 0)
	{
		MemoryContext cxt = AllocSetContextCreate(TopMemoryContext, "doomed", ALLOCSET_SMALL_SIZES);
		MemoryContextCallback *cb = MemoryContextAlloc(cxt, sizeof(MemoryContextCallback));

		cb->func = failing_callback;
		cb->arg = NULL;
		MemoryContextRegisterResetCallback(cxt, cb);
		mcxt_set_error_handler(longjmp_handler, NULL);
		if (setjmp(env) == 0)
			MemoryContextDelete(cxt);
		fprintf(stderr, "longjmp over the library happened\n");
		return 3;
	}
	else if (strcmp(mode, "returning") == 0)
	{
		mcxt_set_error_handler(returning_handler, NULL);
		(void) pfree(NULL);
	}
	else
	{
		fprintf(stderr, "unknown mode \"%s\"\n", mode);
		return 2;
	}
	fprintf(stderr, "the error returned\n");
	return 4;
}
