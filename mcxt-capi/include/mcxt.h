/*
 * mcxt.h - PostgreSQL's memory contexts (palloc, pfree, MemoryContext...)
 * for C programs, backed by the mcxt Rust library.
 *
 *     #include "mcxt.h"            and link with  -lmcxt
 *
 * The API is PostgreSQL's (palloc.h and memutils.h, PostgreSQL 18), with
 * PostgreSQL's semantics, plus a few mcxt_* extensions:
 *
 *   - Call MemoryContextInit() once per thread before palloc(): it creates
 *     TopMemoryContext and ErrorContext and makes TopMemoryContext current.
 *   - CurrentMemoryContext, TopMemoryContext and ErrorContext are variables
 *     that C code reads and writes directly; MemoryContextSwitchTo() is a
 *     static inline function.  They are thread-local: a context tree
 *     belongs to one thread (contexts are not thread-safe), and each
 *     thread that allocates calls MemoryContextInit() (or creates its own
 *     root contexts and switches to them).
 *   - Errors (out of memory, invalid size, invalid pointer...) never
 *     return: they call the error handler (mcxt_set_error_handler), which
 *     may longjmp out, like PostgreSQL's ereport(ERROR).  The default
 *     handler prints the message to stderr and aborts.  Only
 *     MCXT_ALLOC_NO_OOM requests return NULL, on out of memory.
 *   - Unlike PostgreSQL, deleting the current context (or one of its
 *     ancestors) sets CurrentMemoryContext to NULL instead of leaving it
 *     dangling, and likewise for TopMemoryContext and ErrorContext; palloc
 *     with no current context is an error.
 *
 * Every function is implemented by the library; this header holds only
 * declarations, the inline MemoryContextSwitchTo and constant macros.
 */
#ifndef MCXT_H
#define MCXT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* Thread-local storage class of the context variables. */
#if defined(__GNUC__)
#define MCXT_THREAD_LOCAL __thread
#elif defined(__cplusplus)
#define MCXT_THREAD_LOCAL thread_local
#else
#define MCXT_THREAD_LOCAL _Thread_local
#endif

#if defined(__GNUC__)
#define MCXT_PRINTF(fmt, args) __attribute__((format(printf, fmt, args)))
#else
#define MCXT_PRINTF(fmt, args)
#endif

/* ---- Types -------------------------------------------------------------- */

/* Sizes of requests and of memory. */
typedef size_t Size;

/* A memory context (opaque handle). */
typedef struct MemoryContextData *MemoryContext;

/* Reset/delete callback: called with the record's arg. */
typedef void (*MemoryContextCallbackFunction) (void *arg);

/*
 * A reset/delete callback record, owned by the caller; usually allocated
 * in the very context it is registered on.  It must stay valid until the
 * callback has run.  Callbacks run newest first, children's before their
 * parent's.  A callback must return normally: it runs inside the library's
 * reset or delete, so it must not longjmp out (an error raised inside a
 * callback, e.g. by a failing palloc, aborts the process), and it must not
 * reset, delete or reparent the contexts being reset or deleted.
 */
typedef struct MemoryContextCallback
{
	MemoryContextCallbackFunction func; /* function to call */
	void	   *arg;			/* argument to pass it */
	struct MemoryContextCallback *next; /* managed by the library */
} MemoryContextCallback;

/* ---- Constants ---------------------------------------------------------- */

/* Flags of palloc_extended, MemoryContextAllocExtended, ... */
#define MCXT_ALLOC_HUGE			0x01	/* allow up to MaxAllocHugeSize */
#define MCXT_ALLOC_NO_OOM		0x02	/* return NULL on out of memory */
#define MCXT_ALLOC_ZERO			0x04	/* zero the memory */

/* Largest request without MCXT_ALLOC_HUGE (1 GB - 1), as in PostgreSQL. */
#define MaxAllocSize			((Size) 0x3fffffff)
/* Largest request with MCXT_ALLOC_HUGE (SIZE_MAX / 2), as in PostgreSQL. */
#define MaxAllocHugeSize		((Size) (SIZE_MAX / 2))
#define AllocSizeIsValid(size)	((Size) (size) <= MaxAllocSize)
#define AllocHugeSizeIsValid(size)	((Size) (size) <= MaxAllocHugeSize)

/* AllocSet (and Generation, Bump) block sizes: min, init, max. */
#define ALLOCSET_DEFAULT_MINSIZE   0
#define ALLOCSET_DEFAULT_INITSIZE  (8 * 1024)
#define ALLOCSET_DEFAULT_MAXSIZE   (8 * 1024 * 1024)
#define ALLOCSET_DEFAULT_SIZES \
	ALLOCSET_DEFAULT_MINSIZE, ALLOCSET_DEFAULT_INITSIZE, ALLOCSET_DEFAULT_MAXSIZE
#define ALLOCSET_SMALL_MINSIZE	 0
#define ALLOCSET_SMALL_INITSIZE  (1 * 1024)
#define ALLOCSET_SMALL_MAXSIZE	 (8 * 1024)
#define ALLOCSET_SMALL_SIZES \
	ALLOCSET_SMALL_MINSIZE, ALLOCSET_SMALL_INITSIZE, ALLOCSET_SMALL_MAXSIZE
#define ALLOCSET_START_SMALL_SIZES \
	ALLOCSET_SMALL_MINSIZE, ALLOCSET_SMALL_INITSIZE, ALLOCSET_DEFAULT_MAXSIZE
/* Requests above this always get a dedicated block in an AllocSet. */
#define ALLOCSET_SEPARATE_THRESHOLD  8192

/* Slab block sizes. */
#define SLAB_DEFAULT_BLOCK_SIZE		(8 * 1024)
#define SLAB_LARGE_BLOCK_SIZE		(8 * 1024 * 1024)

/* mcxt_set_limit: no limit. */
#define MCXT_NO_LIMIT			SIZE_MAX

/* ---- The standard contexts (thread-local variables) --------------------- */

/* Where palloc allocates; NULL until MemoryContextInit(). */
extern MCXT_THREAD_LOCAL MemoryContext CurrentMemoryContext;
/* Root of the tree made by MemoryContextInit(); never reset or deleted. */
extern MCXT_THREAD_LOCAL MemoryContext TopMemoryContext;
/* Child of TopMemoryContext with 8 KB always reserved, for error recovery. */
extern MCXT_THREAD_LOCAL MemoryContext ErrorContext;

/* Makes context current and returns the previous current context. */
static inline MemoryContext
MemoryContextSwitchTo(MemoryContext context)
{
	MemoryContext old = CurrentMemoryContext;

	CurrentMemoryContext = context;
	return old;
}

/* ---- Allocation (palloc.h) ---------------------------------------------- */

/*
 * All of these raise an error on out-of-memory or an invalid size (see
 * mcxt_set_error_handler); only MCXT_ALLOC_NO_OOM makes them return NULL.
 * palloc(0) returns a valid chunk.  Chunks of Bump contexts must not be
 * passed to pfree, repalloc, GetMemoryChunkContext or GetMemoryChunkSpace.
 */
extern void *MemoryContextAlloc(MemoryContext context, Size size);
extern void *MemoryContextAllocZero(MemoryContext context, Size size);
extern void *MemoryContextAllocExtended(MemoryContext context, Size size, int flags);
extern void *MemoryContextAllocHuge(MemoryContext context, Size size);
extern void *MemoryContextAllocAligned(MemoryContext context, Size size, Size alignto, int flags);

extern void *palloc(Size size);
extern void *palloc0(Size size);
extern void *palloc_extended(Size size, int flags);
extern void *palloc_aligned(Size size, Size alignto, int flags);
extern void *repalloc(void *pointer, Size size);
extern void *repalloc_extended(void *pointer, Size size, int flags);
extern void *repalloc_huge(void *pointer, Size size);
extern void pfree(void *pointer);

extern char *MemoryContextStrdup(MemoryContext context, const char *string);
extern char *pstrdup(const char *in);
extern char *pnstrdup(const char *in, Size len);
extern char *psprintf(const char *fmt, ...) MCXT_PRINTF(1, 2);

/* ---- Context management (memutils.h) ------------------------------------ */

/* Creates TopMemoryContext, ErrorContext; sets CurrentMemoryContext. */
extern void MemoryContextInit(void);

/*
 * Context creation.  The name must be a string constant (it is never
 * copied and must live forever, as in PostgreSQL); put variable text in
 * the identifier (MemoryContextSetIdentifier).  parent may be NULL for a
 * new root.
 */
extern MemoryContext AllocSetContextCreateInternal(MemoryContext parent, const char *name, Size minContextSize, Size initBlockSize, Size maxBlockSize);
extern MemoryContext GenerationContextCreate(MemoryContext parent, const char *name, Size minContextSize, Size initBlockSize, Size maxBlockSize);
extern MemoryContext SlabContextCreate(MemoryContext parent, const char *name, Size blockSize, Size chunkSize);
extern MemoryContext BumpContextCreate(MemoryContext parent, const char *name, Size minContextSize, Size initBlockSize, Size maxBlockSize);

#if defined(__GNUC__) && !defined(__cplusplus) && !defined(MCXT_NO_NAME_CHECK)
/* As in PostgreSQL: reject non-constant names at compile time. */
#define AllocSetContextCreate(parent, name, ...) \
	((void) __extension__ ({ \
		_Static_assert(__builtin_constant_p(name), \
					   "memory context names must be constant strings"); \
		1; }), \
	 AllocSetContextCreateInternal(parent, name, __VA_ARGS__))
#else
#define AllocSetContextCreate(parent, name, ...) \
	AllocSetContextCreateInternal(parent, name, __VA_ARGS__)
#endif

extern void MemoryContextReset(MemoryContext context);
extern void MemoryContextResetOnly(MemoryContext context);
extern void MemoryContextResetChildren(MemoryContext context);
extern void MemoryContextDelete(MemoryContext context);
extern void MemoryContextDeleteChildren(MemoryContext context);
extern void MemoryContextSetParent(MemoryContext context, MemoryContext new_parent);
extern MemoryContext MemoryContextGetParent(MemoryContext context);
extern void MemoryContextSetIdentifier(MemoryContext context, const char *id);
extern void MemoryContextAllowInCriticalSection(MemoryContext context, bool allow);
extern void MemoryContextRegisterResetCallback(MemoryContext context, MemoryContextCallback *cb);
extern void MemoryContextUnregisterResetCallback(MemoryContext context, MemoryContextCallback *cb);
extern Size MemoryContextMemAllocated(MemoryContext context, bool recurse);
extern bool MemoryContextIsEmpty(MemoryContext context);
extern MemoryContext GetMemoryChunkContext(void *pointer);
extern Size GetMemoryChunkSpace(void *pointer);

/* Prints the tree under context to stderr (PostgreSQL's format, 100 levels, 100 children). */
extern void MemoryContextStats(MemoryContext context);

/*
 * Checks the tree under context and prints a WARNING to stderr for each
 * problem found: links, byte accounting, every block and chunk header;
 * with a library built with the `checking` feature, also every chunk's
 * sentinels and the clobber pattern of freed chunks.
 */
extern void MemoryContextCheck(MemoryContext context);

/* ---- mcxt extensions ----------------------------------------------------- */

/*
 * Error handler: called with the error message (naming the context and
 * the request size) and the arg given to mcxt_set_error_handler.  It must
 * not return: it may longjmp out (no frame of the library is skipped and
 * no state is half-updated when it runs) or exit; if it returns, the
 * process aborts.  The handler is per thread; NULL restores the default,
 * which prints "ERROR:  <message>" to stderr and aborts.  As in
 * PostgreSQL, out-of-memory errors first print MemoryContextStats of
 * TopMemoryContext to stderr.
 */
typedef void (*mcxt_error_handler) (const char *message, void *arg);
extern void mcxt_set_error_handler(mcxt_error_handler handler, void *arg);
extern mcxt_error_handler mcxt_get_error_handler(void **arg);

/*
 * Limits the bytes the subtree of context may hold (MCXT_NO_LIMIT: none);
 * an allocation that would need a block past the limit fails as out of
 * memory.
 */
extern void mcxt_set_limit(MemoryContext context, Size limit);

/*
 * Bump contexts: lets each reset keep up to max_bytes of the context's
 * blocks for reuse instead of freeing them (0, the default: keep none, as
 * PostgreSQL does). A context filled and reset in a loop then stops
 * calling malloc and free for its blocks. Kept blocks count as memory
 * held (MemoryContextMemAllocated, limits) and are freed by delete. An
 * error for contexts of other kinds.
 */
extern void mcxt_retain_on_reset(MemoryContext context, Size max_bytes);

/*
 * This thread's caches: deleted AllocSet contexts kept for reuse, and
 * freed blocks kept for the next request of the same size (so that a
 * context deleted and built again does not go through malloc, free, and
 * glibc trimming its heap). mcxt_cached_bytes is what they hold; memory
 * mcxt holds from malloc is that plus what the live contexts hold.
 * mcxt_release_cached returns all of it to malloc.
 * mcxt_set_block_cache_limit bounds the block cache (default 8 MiB; 0
 * turns it off, returning what it holds) and returns the previous bound.
 * The block cache never raises the peak: before a request it cannot
 * serve is passed to malloc, it frees at least as many bytes. A block
 * request of 64 KiB or more is served instead, when a larger block is
 * cached, by shrinking that block with realloc (in place in glibc),
 * whose pages are already mapped.
 */
extern Size mcxt_cached_bytes(void);
extern void mcxt_release_cached(void);
extern Size mcxt_set_block_cache_limit(Size max_bytes);

#ifdef __cplusplus
}
#endif

#endif							/* MCXT_H */
