/*
 * Prints MemoryContextStats(TopMemoryContext) for a known tree to stderr,
 * and to stdout the numbers the test compares it with:
 *   "total <MemoryContextMemAllocated(TopMemoryContext, true)>".
 * The tree: TopMemoryContext with, newest first, "many" (120 children
 * "leaf": only 100 are listed), "bump", "slab", "generation" and
 * "with ident" (identifier "id: 42"), then ErrorContext.
 */
#include "mcxt.h"

#include <stdio.h>

int
main(void)
{
	MemoryContext ident,
				gen,
				slab,
				bump,
				many;

	MemoryContextInit();
	ident = AllocSetContextCreate(TopMemoryContext, "with ident", ALLOCSET_SMALL_SIZES);
	MemoryContextSetIdentifier(ident, "id: 42");
	(void) MemoryContextAlloc(ident, 100);
	gen = GenerationContextCreate(TopMemoryContext, "generation", ALLOCSET_DEFAULT_SIZES);
	(void) MemoryContextAlloc(gen, 100);
	(void) MemoryContextAlloc(gen, 200);
	slab = SlabContextCreate(TopMemoryContext, "slab", SLAB_DEFAULT_BLOCK_SIZE, 64);
	(void) MemoryContextAlloc(slab, 64);
	bump = BumpContextCreate(TopMemoryContext, "bump", ALLOCSET_DEFAULT_SIZES);
	(void) MemoryContextAlloc(bump, 1000);
	many = AllocSetContextCreate(TopMemoryContext, "many", ALLOCSET_SMALL_SIZES);
	for (int i = 0; i < 120; i++)
		(void) MemoryContextAlloc(AllocSetContextCreate(many, "leaf", ALLOCSET_SMALL_SIZES), 10);
	(void) palloc(50);

	MemoryContextStats(TopMemoryContext);
	printf("total %zu\n", MemoryContextMemAllocated(TopMemoryContext, true));
	MemoryContextDelete(TopMemoryContext);
	return 0;
}
