/*
 * Exercises every function, variable and macro of mcxt.h (except the
 * error paths: see longjmp.c) and checks the results.  Exit status 0 when
 * all checks pass.  Must run clean under Valgrind memcheck.
 */
#include "mcxt.h"
#include "check.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

/* ---- Reset callbacks ---------------------------------------------------- */

static int	callback_log[32];
static int	callback_count = 0;

static void
record_callback(void *arg)
{
	callback_log[callback_count++] = (int) (intptr_t) arg;
}

static void
set_callback(MemoryContextCallback *cb, int id)
{
	cb->func = record_callback;
	cb->arg = (void *) (intptr_t) id;
	cb->next = NULL;
}

static int
all_bytes(const void *p, int value, size_t n)
{
	const unsigned char *b = p;

	for (size_t i = 0; i < n; i++)
		if (b[i] != (unsigned char) value)
			return 0;
	return 1;
}

static int
aligned(const void *p, size_t align)
{
	return ((uintptr_t) p % align) == 0;
}

static void
dummy_handler(const char *message, void *arg)
{
	(void) message;
	(void) arg;
	abort();
}

/* ---- Sections ----------------------------------------------------------- */

static void
test_init(void)
{
	MemoryContext top;

	CHECK(CurrentMemoryContext == NULL);
	CHECK(TopMemoryContext == NULL);
	CHECK(ErrorContext == NULL);
	MemoryContextInit();
	CHECK(TopMemoryContext != NULL);
	CHECK(CurrentMemoryContext == TopMemoryContext);
	CHECK(ErrorContext != NULL);
	CHECK(MemoryContextGetParent(ErrorContext) == TopMemoryContext);
	CHECK(MemoryContextGetParent(TopMemoryContext) == NULL);
	/* ErrorContext always holds its 8 KB block. */
	CHECK(MemoryContextMemAllocated(ErrorContext, false) == 8192);
	CHECK(MemoryContextMemAllocated(TopMemoryContext, true) ==
		  MemoryContextMemAllocated(TopMemoryContext, false) + 8192);
	CHECK(MemoryContextIsEmpty(ErrorContext));
	MemoryContextAllowInCriticalSection(ErrorContext, true);

	top = TopMemoryContext;
	MemoryContextInit();		/* a second call changes nothing */
	CHECK(TopMemoryContext == top);
}

static void
test_palloc(void)
{
	char	   *p;
	int		   *z;
	void	   *empty;

	p = palloc(100);
	memset(p, 'a', 100);
	CHECK(aligned(p, 8));
	CHECK(GetMemoryChunkContext(p) == TopMemoryContext);
	CHECK(GetMemoryChunkSpace(p) >= 100 + 8);
	p = repalloc(p, 1000);
	CHECK(all_bytes(p, 'a', 100));
	p = repalloc(p, 50);
	CHECK(all_bytes(p, 'a', 50));
	pfree(p);

	z = palloc0(64 * sizeof(int));
	CHECK(all_bytes(z, 0, 64 * sizeof(int)));
	pfree(z);

	/* palloc(0) gives a valid chunk that can be freed or grown. */
	empty = palloc(0);
	CHECK(empty != NULL);
	empty = repalloc(empty, 16);
	memset(empty, 1, 16);
	pfree(empty);

	p = palloc_extended(300, MCXT_ALLOC_ZERO);
	CHECK(all_bytes(p, 0, 300));
	p = repalloc_extended(p, 20000, 0);
	CHECK(all_bytes(p, 0, 300));
	p = repalloc_huge(p, 40000);
	CHECK(all_bytes(p, 0, 300));
	pfree(p);

	p = palloc_extended(64, MCXT_ALLOC_HUGE | MCXT_ALLOC_NO_OOM);
	CHECK(p != NULL);
	pfree(p);

	/* Aligned chunks: free, context, space and realloc follow them. */
	p = palloc_aligned(100, 64, 0);
	CHECK(aligned(p, 64));
	memset(p, 'b', 100);
	CHECK(GetMemoryChunkContext(p) == TopMemoryContext);
	CHECK(GetMemoryChunkSpace(p) >= 100);
	p = repalloc(p, 5000);
	CHECK(aligned(p, 64));
	CHECK(all_bytes(p, 'b', 100));
	pfree(p);
	p = palloc_aligned(3000, 4096, MCXT_ALLOC_ZERO);
	CHECK(aligned(p, 4096));
	CHECK(all_bytes(p, 0, 3000));
	pfree(p);

	CHECK(AllocSizeIsValid(MaxAllocSize));
	CHECK(!AllocSizeIsValid(MaxAllocSize + 1));
	CHECK(AllocHugeSizeIsValid(MaxAllocSize + 1));
	CHECK(!AllocHugeSizeIsValid(MaxAllocHugeSize + 1));
}

static void
test_strings(void)
{
	char		long_text[301];
	char	   *s;

	s = pstrdup("hello");
	CHECK(strcmp(s, "hello") == 0);
	pfree(s);
	s = pnstrdup("hello world", 5);
	CHECK(strcmp(s, "hello") == 0);
	pfree(s);
	s = pnstrdup("hi", 10);
	CHECK(strcmp(s, "hi") == 0);
	pfree(s);
	s = MemoryContextStrdup(ErrorContext, "in the error context");
	CHECK(strcmp(s, "in the error context") == 0);
	CHECK(GetMemoryChunkContext(s) == ErrorContext);
	pfree(s);
	s = psprintf("%d-%s-%.1f", 42, "x", 1.5);
	CHECK(strcmp(s, "42-x-1.5") == 0);
	pfree(s);

	/* Longer than psprintf's first guess. */
	memset(long_text, 'z', 300);
	long_text[300] = '\0';
	s = psprintf("<%s|%s>", long_text, long_text);
	CHECK(strlen(s) == 603);
	CHECK(s[0] == '<' && s[301] == '|' && s[602] == '>');
	pfree(s);
}

static void
test_kinds(void)
{
	MemoryContext aset,
				small,
				start_small,
				gen,
				slab,
				big_slab,
				bump,
				old;
	void	   *chunks[100];
	char	   *p;

	aset = AllocSetContextCreate(TopMemoryContext, "aset", ALLOCSET_DEFAULT_SIZES);
	small = AllocSetContextCreate(aset, "small", ALLOCSET_SMALL_SIZES);
	start_small = AllocSetContextCreate(aset, "start small", ALLOCSET_START_SMALL_SIZES);
	gen = GenerationContextCreate(TopMemoryContext, "generation", ALLOCSET_DEFAULT_SIZES);
	slab = SlabContextCreate(TopMemoryContext, "slab", SLAB_DEFAULT_BLOCK_SIZE, 48);
	big_slab = SlabContextCreate(TopMemoryContext, "big slab", SLAB_LARGE_BLOCK_SIZE, 1024);
	bump = BumpContextCreate(TopMemoryContext, "bump", ALLOCSET_DEFAULT_SIZES);
	CHECK(MemoryContextGetParent(small) == aset);
	CHECK(MemoryContextGetParent(start_small) == aset);
	/* What the AllocSetContextCreate macro expands to. */
	MemoryContextDelete(AllocSetContextCreateInternal(aset, "internal", 0, 1024, 8192));

	/* MemoryContextAlloc* in each context. */
	p = MemoryContextAlloc(small, 10);
	memset(p, 1, 10);
	CHECK(GetMemoryChunkContext(p) == small);
	p = MemoryContextAllocZero(start_small, 2000);
	CHECK(all_bytes(p, 0, 2000));
	p = MemoryContextAllocExtended(aset, 100, MCXT_ALLOC_ZERO);
	CHECK(all_bytes(p, 0, 100));
	p = MemoryContextAllocHuge(aset, 100000);
	CHECK(GetMemoryChunkContext(p) == aset);
	CHECK(GetMemoryChunkSpace(p) >= 100000);
	pfree(p);
	p = MemoryContextAllocAligned(gen, 10, 256, MCXT_ALLOC_ZERO);
	CHECK(aligned(p, 256) && all_bytes(p, 0, 10));
	CHECK(GetMemoryChunkContext(p) == gen);
	pfree(p);

	/* Generation: allocate, free in order, the context empties. */
	for (int i = 0; i < 100; i++)
	{
		chunks[i] = MemoryContextAlloc(gen, 16 + i);
		memset(chunks[i], i, 16 + i);
	}
	for (int i = 0; i < 100; i++)
	{
		CHECK(all_bytes(chunks[i], i, 16 + i));
		pfree(chunks[i]);
	}
	CHECK(MemoryContextIsEmpty(gen));

	/* Slab: fixed-size chunks. */
	for (int i = 0; i < 100; i++)
		chunks[i] = MemoryContextAlloc(slab, 48);
	CHECK(GetMemoryChunkContext(chunks[7]) == slab);
	CHECK(GetMemoryChunkSpace(chunks[7]) >= 48);
	CHECK(!MemoryContextIsEmpty(slab));
	for (int i = 0; i < 100; i++)
		pfree(chunks[i]);
	CHECK(MemoryContextIsEmpty(slab));
	p = MemoryContextAllocZero(big_slab, 1024);
	CHECK(all_bytes(p, 0, 1024));
	pfree(p);

	/* Bump: no pfree, only reset. */
	CHECK(MemoryContextIsEmpty(bump));
	old = MemoryContextSwitchTo(bump);
	CHECK(old == TopMemoryContext);
	CHECK(CurrentMemoryContext == bump);
	for (int i = 0; i < 1000; i++)
	{
		p = palloc(24);
		memset(p, 2, 24);
	}
	p = palloc_aligned(64, 128, 0);
	CHECK(aligned(p, 128));
	CHECK(MemoryContextSwitchTo(old) == bump);
	CHECK(!MemoryContextIsEmpty(bump));
	CHECK(MemoryContextMemAllocated(bump, false) >= 24000);
	MemoryContextReset(bump);
	CHECK(MemoryContextIsEmpty(bump));

	/* Accounting. */
	CHECK(MemoryContextMemAllocated(aset, true) ==
		  MemoryContextMemAllocated(aset, false) +
		  MemoryContextMemAllocated(small, true) +
		  MemoryContextMemAllocated(start_small, true));
	CHECK(MemoryContextMemAllocated(TopMemoryContext, true) >
		  MemoryContextMemAllocated(TopMemoryContext, false));

	/* Reparenting. */
	MemoryContextSetParent(start_small, gen);
	CHECK(MemoryContextGetParent(start_small) == gen);
	MemoryContextSetParent(start_small, NULL);
	CHECK(MemoryContextGetParent(start_small) == NULL);
	MemoryContextSetParent(start_small, aset);
	CHECK(MemoryContextGetParent(start_small) == aset);

	MemoryContextSetIdentifier(aset, "identifier");
	MemoryContextSetIdentifier(aset, NULL);
	MemoryContextSetIdentifier(aset, "identifier 2");

	/* Reset deletes the children and frees the chunks. */
	MemoryContextReset(aset);
	CHECK(MemoryContextIsEmpty(aset));
	CHECK(MemoryContextMemAllocated(aset, true) == MemoryContextMemAllocated(aset, false));

	MemoryContextCheck(TopMemoryContext);
	MemoryContextDelete(aset);
	MemoryContextDelete(gen);
	MemoryContextDelete(slab);
	MemoryContextDelete(big_slab);
	MemoryContextDelete(bump);
}

static void
test_reset_and_delete(void)
{
	MemoryContext parent,
				child,
				grandchild;
	MemoryContextCallback cbs[6];
	char	   *p;

	parent = AllocSetContextCreate(TopMemoryContext, "parent", ALLOCSET_SMALL_SIZES);
	child = AllocSetContextCreate(parent, "child", ALLOCSET_SMALL_SIZES);
	grandchild = AllocSetContextCreate(child, "grandchild", ALLOCSET_SMALL_SIZES);

	/* Callbacks: newest first, children's before their parent's. */
	callback_count = 0;
	set_callback(&cbs[0], 1);
	set_callback(&cbs[1], 2);
	set_callback(&cbs[2], 3);
	set_callback(&cbs[3], 4);
	MemoryContextRegisterResetCallback(parent, &cbs[0]);
	MemoryContextRegisterResetCallback(child, &cbs[1]);
	MemoryContextRegisterResetCallback(child, &cbs[2]);
	MemoryContextRegisterResetCallback(grandchild, &cbs[3]);
	CHECK(!MemoryContextIsEmpty(parent));
	MemoryContextReset(parent);
	CHECK(callback_count == 4);
	CHECK(callback_log[0] == 4 && callback_log[1] == 3 && callback_log[2] == 2 && callback_log[3] == 1);
	CHECK(MemoryContextIsEmpty(parent));

	/* Unregistered callbacks do not run. */
	callback_count = 0;
	set_callback(&cbs[4], 5);
	MemoryContextRegisterResetCallback(parent, &cbs[4]);
	MemoryContextUnregisterResetCallback(parent, &cbs[4]);
	MemoryContextReset(parent);
	CHECK(callback_count == 0);

	/* ResetOnly keeps the children; ResetChildren resets them. */
	child = AllocSetContextCreate(parent, "child", ALLOCSET_SMALL_SIZES);
	p = MemoryContextAlloc(child, 5000);
	memset(p, 3, 5000);
	set_callback(&cbs[5], 6);
	MemoryContextRegisterResetCallback(parent, &cbs[5]);
	(void) MemoryContextAlloc(parent, 100);
	MemoryContextResetOnly(parent);
	CHECK(callback_count == 1 && callback_log[0] == 6);
	CHECK(MemoryContextGetParent(child) == parent);
	CHECK(all_bytes(p, 3, 5000));
	CHECK(!MemoryContextIsEmpty(child));
	MemoryContextResetChildren(parent);
	CHECK(MemoryContextIsEmpty(child));
	CHECK(!MemoryContextIsEmpty(parent));	/* it has a child */

	/* DeleteChildren. */
	MemoryContextDeleteChildren(parent);
	CHECK(MemoryContextIsEmpty(parent));

	/*
	 * Deleting the current context, or an ancestor of it, leaves
	 * CurrentMemoryContext NULL rather than dangling.
	 */
	child = AllocSetContextCreate(parent, "child", ALLOCSET_SMALL_SIZES);
	grandchild = AllocSetContextCreate(child, "grandchild", ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(grandchild);
	MemoryContextReset(child);
	CHECK(CurrentMemoryContext == NULL);
	MemoryContextSwitchTo(child);
	MemoryContextDelete(child);
	CHECK(CurrentMemoryContext == NULL);
	child = AllocSetContextCreate(parent, "child", ALLOCSET_SMALL_SIZES);
	MemoryContextSwitchTo(child);
	MemoryContextDeleteChildren(parent);
	CHECK(CurrentMemoryContext == NULL);
	MemoryContextSwitchTo(parent);
	MemoryContextReset(parent);
	CHECK(CurrentMemoryContext == parent);	/* a reset context survives */
	MemoryContextSwitchTo(TopMemoryContext);

	MemoryContextDelete(parent);
}

static void
test_limits_and_no_oom(void)
{
	MemoryContext limited = AllocSetContextCreate(TopMemoryContext, "limited", ALLOCSET_DEFAULT_SIZES);
	Size		before;
	char	   *p;

	mcxt_set_limit(limited, 64 * 1024);
	before = MemoryContextMemAllocated(limited, true);
	CHECK(MemoryContextAllocExtended(limited, 100 * 1024, MCXT_ALLOC_NO_OOM) == NULL);
	CHECK(MemoryContextMemAllocated(limited, true) == before);

	p = MemoryContextAlloc(limited, 100);
	memset(p, 4, 100);
	CHECK(repalloc_extended(p, 100 * 1024, MCXT_ALLOC_NO_OOM) == NULL);
	CHECK(all_bytes(p, 4, 100));	/* the old chunk is untouched */

	MemoryContextSwitchTo(limited);
	CHECK(palloc_extended(200 * 1024, MCXT_ALLOC_NO_OOM | MCXT_ALLOC_ZERO) == NULL);
	CHECK(palloc_aligned(200 * 1024, 64, MCXT_ALLOC_NO_OOM) == NULL);
	MemoryContextSwitchTo(TopMemoryContext);

	mcxt_set_limit(limited, MCXT_NO_LIMIT);
	p = repalloc_extended(p, 100 * 1024, MCXT_ALLOC_NO_OOM);
	CHECK(p != NULL && all_bytes(p, 4, 100));
	pfree(p);
	MemoryContextDelete(limited);
}

static void
test_bump_retention(void)
{
	MemoryContext bump = BumpContextCreate(TopMemoryContext, "bump kept", ALLOCSET_DEFAULT_SIZES);
	Size		first = MemoryContextMemAllocated(bump, false);
	Size		kept = 0;
	int			cycle;

	mcxt_retain_on_reset(bump, 1024 * 1024);
	for (cycle = 0; cycle < 3; cycle++)
	{
		int			i;

		for (i = 0; i < 10000; i++)
			memset(MemoryContextAlloc(bump, 48), i, 48);
		MemoryContextReset(bump);
		if (cycle == 0)
			kept = MemoryContextMemAllocated(bump, false);
	}
	CHECK(kept > first + 10000 * 48);	/* every block was kept */
	CHECK(MemoryContextMemAllocated(bump, false) == kept);	/* and reused */
	CHECK(MemoryContextIsEmpty(bump));
	mcxt_retain_on_reset(bump, 0);	/* lowering the bound frees them */
	CHECK(MemoryContextMemAllocated(bump, false) == first);
	MemoryContextDelete(bump);
}

static void
test_thread_caches(void)
{
	MemoryContext cx;
	Size		before;
	int			i;

	mcxt_release_cached();
	CHECK(mcxt_cached_bytes() == 0);
	cx = AllocSetContextCreate(TopMemoryContext, "grown", ALLOCSET_DEFAULT_SIZES);
	for (i = 0; i < 200; i++)
		memset(MemoryContextAlloc(cx, 1000), i, 1000);
	MemoryContextDelete(cx);
	before = mcxt_cached_bytes();
	CHECK(before > 0);			/* the context and its blocks are kept */
	CHECK(mcxt_set_block_cache_limit(0) == 8 * 1024 * 1024);
	CHECK(mcxt_cached_bytes() < before);	/* blocks returned, context kept */
	CHECK(mcxt_set_block_cache_limit(8 * 1024 * 1024) == 0);
	mcxt_release_cached();
	CHECK(mcxt_cached_bytes() == 0);
}

static void
test_error_handler_registry(void)
{
	void	   *arg = NULL;
	int			token;

	CHECK(mcxt_get_error_handler(&arg) == NULL);
	mcxt_set_error_handler(dummy_handler, &token);
	CHECK(mcxt_get_error_handler(&arg) == dummy_handler);
	CHECK(arg == &token);
	CHECK(mcxt_get_error_handler(NULL) == dummy_handler);
	mcxt_set_error_handler(NULL, NULL);
	CHECK(mcxt_get_error_handler(&arg) == NULL);
	CHECK(arg == NULL);
}

int
main(void)
{
	test_init();
	test_palloc();
	test_strings();
	test_kinds();
	test_reset_and_delete();
	test_limits_and_no_oom();
	test_bump_retention();
	test_thread_caches();
	test_error_handler_registry();

	MemoryContextStats(TopMemoryContext);
	MemoryContextCheck(TopMemoryContext);

	/* Not done by PostgreSQL, but leaves nothing for Valgrind to report. */
	MemoryContextDelete(TopMemoryContext);
	CHECK(TopMemoryContext == NULL);
	CHECK(ErrorContext == NULL);
	CHECK(CurrentMemoryContext == NULL);
	return CHECK_RESULT();
}
