/*
 * An error handler that longjmps out, as PostgreSQL's PG_TRY/PG_CATCH do:
 * every kind of error is raised, caught, and the program then goes on
 * allocating correctly.  Exit status 0 when all checks pass.  Must run
 * clean under Valgrind memcheck.
 */
#include "mcxt.h"
#include "check.h"

#include <setjmp.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static jmp_buf *catch_point = NULL;
static char last_message[1024];
static int	handler_calls = 0;
static int	handler_arg_ok = 1;
static int	token;

static void
longjmp_handler(const char *message, void *arg)
{
	handler_calls++;
	if (arg != &token)
		handler_arg_ok = 0;
	snprintf(last_message, sizeof last_message, "%s", message);
	if (catch_point == NULL)
		abort();
	longjmp(*catch_point, 1);
}

/*
 * Runs stmt; it must raise an error whose message contains expected.
 * The jmp_buf lives in this block; catch_point is restored afterwards.
 */
#define EXPECT_ERROR(stmt, expected) \
	do { \
		jmp_buf		env_; \
		jmp_buf    *saved_ = catch_point; \
		int			calls_ = handler_calls; \
		catch_point = &env_; \
		if (setjmp(env_) == 0) \
		{ \
			stmt; \
			fprintf(stderr, "%s:%d: no error from %s\n", __FILE__, __LINE__, #stmt); \
			check_failures++; \
		} \
		else \
		{ \
			if (strstr(last_message, expected) == NULL) \
			{ \
				fprintf(stderr, "%s:%d: error \"%s\" does not contain \"%s\"\n", \
						__FILE__, __LINE__, last_message, expected); \
				check_failures++; \
			} \
			CHECK(handler_calls == calls_ + 1); \
		} \
		catch_point = saved_; \
	} while (0)

/* Allocates and checks a batch of chunks: the context still works. */
static void
exercise(MemoryContext cxt)
{
	char	   *chunks[200];

	for (int i = 0; i < 200; i++)
	{
		chunks[i] = MemoryContextAlloc(cxt, 1 + (i * 37) % 3000);
		memset(chunks[i], i & 0xff, 1 + (i * 37) % 3000);
	}
	for (int i = 0; i < 200; i++)
	{
		const unsigned char *b = (const unsigned char *) chunks[i];

		CHECK(b[0] == (i & 0xff) && b[(i * 37) % 3000] == (i & 0xff));
		if (i % 2 == 0)
			pfree(chunks[i]);
	}
	MemoryContextResetOnly(cxt);	/* keeps the children (ErrorContext) */
	MemoryContextCheck(TopMemoryContext);
}

static void
callback(void *arg)
{
	(void) arg;
}

int
main(void)
{
	MemoryContext cxt,
				child,
				slab,
				limited;
	Size		before;
	char	   *zeroed;
	void	   *p;
	MemoryContextCallback cb = {callback, NULL, NULL};

	mcxt_set_error_handler(longjmp_handler, &token);

	/* No current context yet. */
	EXPECT_ERROR(palloc(10), "no current memory context");
	EXPECT_ERROR(pstrdup("x"), "no current memory context");

	MemoryContextInit();
	cxt = AllocSetContextCreate(TopMemoryContext, "work", ALLOCSET_DEFAULT_SIZES);
	MemoryContextSwitchTo(cxt);
	p = palloc(100);
	before = MemoryContextMemAllocated(TopMemoryContext, true);

	/* Invalid sizes: the messages name the size and the context. */
	EXPECT_ERROR(palloc(MaxAllocSize + 1),
				 "invalid memory alloc request size 1073741824 in memory context \"work\"");
	EXPECT_ERROR(palloc0(MaxAllocSize + 1), "invalid memory alloc request size");
	EXPECT_ERROR(MemoryContextAlloc(cxt, (Size) -1), "invalid memory alloc request size");
	EXPECT_ERROR(MemoryContextAllocExtended(cxt, MaxAllocHugeSize + 1, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM),
				 "invalid memory alloc request size");
	EXPECT_ERROR(repalloc(p, MaxAllocSize + 1), "invalid memory alloc request size");
	EXPECT_ERROR(palloc_aligned(10, 3, 0), "alignment must be a power of two");
	CHECK(MemoryContextMemAllocated(TopMemoryContext, true) == before);
	memset(p, 7, 100);			/* p survived the failed repalloc */
	pfree(p);

	/* Out of memory: a byte limit, then malloc itself. */
	limited = AllocSetContextCreate(cxt, "limited", ALLOCSET_DEFAULT_SIZES);
	mcxt_set_limit(limited, 32 * 1024);
	EXPECT_ERROR(MemoryContextAlloc(limited, 1 << 20), "memory limit exceeded: request of size 1048576 in memory context \"limited\"");
	EXPECT_ERROR(MemoryContextAllocZero(limited, 1 << 20), "memory limit exceeded");
	CHECK(MemoryContextAllocExtended(limited, 1 << 20, MCXT_ALLOC_NO_OOM) == NULL);
	{
		Size		huge = (Size) 1 << 60;	/* malloc refuses it */

		EXPECT_ERROR(MemoryContextAllocHuge(cxt, huge), "out of memory: failed on request of size 1152921504606846976 in memory context \"work\"");
		CHECK(palloc_extended(huge, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM) == NULL);
		p = palloc(10);
		EXPECT_ERROR(repalloc_huge(p, huge), "out of memory");
		CHECK(repalloc_extended(p, huge, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM) == NULL);
		pfree(p);
	}

	/* Invalid pointers. */
	EXPECT_ERROR(pfree(NULL), "pfree called with a NULL pointer");
	EXPECT_ERROR(repalloc(NULL, 10), "repalloc called with a NULL pointer");
	EXPECT_ERROR(GetMemoryChunkContext(NULL), "NULL pointer");
	EXPECT_ERROR(GetMemoryChunkSpace(NULL), "NULL pointer");
	zeroed = palloc0(64);
	EXPECT_ERROR(pfree(zeroed + 16), "invalid pointer");
	EXPECT_ERROR(repalloc(zeroed + 16, 100), "invalid pointer");
	EXPECT_ERROR(GetMemoryChunkContext(zeroed + 32), "invalid pointer");
	EXPECT_ERROR(GetMemoryChunkSpace(zeroed + 32), "invalid pointer");
	pfree(zeroed);

	/* Invalid contexts and parameters. */
	EXPECT_ERROR(MemoryContextAlloc(NULL, 10), "no current memory context");
	EXPECT_ERROR(MemoryContextReset(NULL), "MemoryContextReset called with a NULL memory context");
	EXPECT_ERROR(MemoryContextStats(NULL), "NULL memory context");
	EXPECT_ERROR(AllocSetContextCreate(cxt, "bad", 0, 100, 8192), "invalid parameters for memory context \"bad\"");
	EXPECT_ERROR(AllocSetContextCreateInternal(cxt, NULL, ALLOCSET_DEFAULT_SIZES), "NULL context name");
	EXPECT_ERROR(GenerationContextCreate(cxt, "bad gen", 0, 8192, 100), "invalid parameters");
	EXPECT_ERROR(BumpContextCreate(cxt, "bad bump", 0, 10, 10), "invalid parameters");
	EXPECT_ERROR(SlabContextCreate(cxt, "bad slab", 64, 1024), "bad slab");
	EXPECT_ERROR(pnstrdup(NULL, 3), "NULL string");
	EXPECT_ERROR(MemoryContextStrdup(cxt, NULL), "NULL string");
	EXPECT_ERROR(MemoryContextRegisterResetCallback(cxt, NULL), "NULL callback");
	EXPECT_ERROR(MemoryContextUnregisterResetCallback(cxt, &cb), "not registered");

	/* A slab allocation of the wrong size; a reparenting cycle. */
	slab = SlabContextCreate(cxt, "slab", SLAB_DEFAULT_BLOCK_SIZE, 64);
	EXPECT_ERROR(MemoryContextAlloc(slab, 100), "slab");
	child = AllocSetContextCreate(cxt, "child", ALLOCSET_SMALL_SIZES);
	EXPECT_ERROR(MemoryContextSetParent(cxt, child), "cannot make \"child\" the parent of memory context \"work\"");
	CHECK(MemoryContextGetParent(child) == cxt);
	CHECK(MemoryContextGetParent(cxt) == TopMemoryContext);

	/* Errors in a loop: nothing leaks, the stack does not grow. */
	for (volatile int i = 0; i < 1000; i++)
		EXPECT_ERROR(palloc(MaxAllocSize + 1 + (Size) i), "invalid memory alloc request size");

	/* After all that, everything still works. */
	exercise(cxt);
	exercise(TopMemoryContext);
	exercise(ErrorContext);
	cxt = AllocSetContextCreate(TopMemoryContext, "fresh", ALLOCSET_SMALL_SIZES);
	exercise(cxt);
	p = psprintf("%s %d", "done", 1);
	CHECK(strcmp(p, "done 1") == 0);

	CHECK(handler_arg_ok);
	MemoryContextDelete(TopMemoryContext);
	return CHECK_RESULT();
}
