/*
 * The exported C functions of libmcxt.
 *
 * Every function of mcxt.h is defined here, as a thin wrapper around an
 * internal Rust function (mcxt__*, src/lib.rs).  The Rust functions never
 * raise: they return NULL or -1 and leave an error record in a
 * thread-local slot.  The wrappers below then call the error handler
 * (raise_pending) from this C frame, after the Rust function has
 * returned, so a handler that longjmps skips only C frames of this file,
 * which hold no state.  The one place where Rust frames are below a C
 * frame is a reset/delete callback run by the library; errors raised
 * while a callback runs abort instead of calling the handler
 * (callback_depth).
 */
#include "mcxt.h"

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define likely(x)	__builtin_expect(!!(x), 1)
#define unlikely(x) __builtin_expect(!!(x), 0)

/* ---- The Rust side (src/lib.rs) ----------------------------------------- */

/* Kinds of context for mcxt__create. */
enum
{
	KIND_ALLOC_SET = 0,
	KIND_GENERATION = 1,
	KIND_SLAB = 2,
	KIND_BUMP = 3,
};

/* Error classes returned by mcxt__take_error. */
enum
{
	ERROR_OTHER = 0,
	ERROR_OUT_OF_MEMORY = 1,
};

extern void *mcxt__alloc(MemoryContext context, Size size);
extern void *mcxt__alloc_zero(MemoryContext context, Size size);
extern void *mcxt__alloc_extended(MemoryContext context, Size size, int flags);
extern void *mcxt__alloc_aligned(MemoryContext context, Size size, Size alignto, int flags);
extern int	mcxt__free(void *pointer);
extern void *mcxt__realloc(void *pointer, Size size);
extern void *mcxt__realloc_extended(void *pointer, Size size, int flags);
extern MemoryContext mcxt__create(MemoryContext parent, const char *name, int kind, Size a, Size b, Size c);
extern int	mcxt__reset(MemoryContext context, MemoryContext *const *globals, size_t n);
extern int	mcxt__reset_only(MemoryContext context);
extern int	mcxt__reset_children(MemoryContext context);
extern int	mcxt__delete(MemoryContext context, MemoryContext *const *globals, size_t n);
extern int	mcxt__delete_children(MemoryContext context, MemoryContext *const *globals, size_t n);
extern int	mcxt__set_parent(MemoryContext context, MemoryContext new_parent);
extern int	mcxt__get_parent(MemoryContext context, MemoryContext *parent);
extern int	mcxt__set_ident(MemoryContext context, const char *id);
extern int	mcxt__allow_in_critical_section(MemoryContext context, bool allow);
extern int	mcxt__register_callback(MemoryContext context, MemoryContextCallback *cb);
extern int	mcxt__unregister_callback(MemoryContext context, MemoryContextCallback *cb);
extern int	mcxt__mem_allocated(MemoryContext context, bool recurse, Size *bytes);
extern int	mcxt__is_empty(MemoryContext context, bool *empty);
extern int	mcxt__set_limit(MemoryContext context, Size limit);
extern int	mcxt__retain_on_reset(MemoryContext context, Size max_bytes);
extern Size mcxt__cached_bytes(void);
extern void mcxt__release_cached(void);
extern Size mcxt__set_block_cache_limit(Size max_bytes);
extern MemoryContext mcxt__chunk_context(void *pointer);
extern int	mcxt__chunk_space(void *pointer, Size *space);
extern int	mcxt__stats(MemoryContext context, size_t max_level, size_t max_children);
extern int	mcxt__check(MemoryContext context);
extern int	mcxt__take_error(char *buf, size_t cap, int *kind);

/* ---- Thread-local state ------------------------------------------------- */

MCXT_THREAD_LOCAL MemoryContext CurrentMemoryContext = NULL;
MCXT_THREAD_LOCAL MemoryContext TopMemoryContext = NULL;
MCXT_THREAD_LOCAL MemoryContext ErrorContext = NULL;

static MCXT_THREAD_LOCAL mcxt_error_handler error_handler = NULL;
static MCXT_THREAD_LOCAL void *error_handler_arg = NULL;

/*
 * Depth of reset/delete operations in progress on this thread: while it is
 * non-zero, a callback may be running with library frames below it.
 */
static MCXT_THREAD_LOCAL int callback_depth = 0;

/* The variables that must not dangle when their context is deleted. */
#define GLOBALS \
	((MemoryContext *const[]) {&CurrentMemoryContext, &TopMemoryContext, &ErrorContext})
#define NGLOBALS 3

/* ---- Raising errors ----------------------------------------------------- */

/* Longest message passed to the handler (longer ones are cut). */
#define MESSAGE_MAX 512

static void
default_error_handler(const char *message, void *arg)
{
	(void) arg;
	fprintf(stderr, "ERROR:  %s\n", message);
	fflush(stderr);
	abort();
}

/* Calls the error handler with message; never returns. */
__attribute__((noreturn, noinline, cold))
static void
raise_message(const char *message, int kind)
{
	mcxt_error_handler handler;

	if (callback_depth > 0)
	{
		/* Library frames are live below us: nobody may longjmp over them. */
		fprintf(stderr,
				"ERROR:  %s\n"
				"FATAL:  error raised inside a memory context reset callback; "
				"it cannot be handled, aborting\n", message);
		fflush(stderr);
		abort();
	}
	if (kind == ERROR_OUT_OF_MEMORY && TopMemoryContext != NULL)
	{
		/* As PostgreSQL does before reporting out of memory. */
		if (mcxt__stats(TopMemoryContext, 100, 100) != 0)
		{
			char		ignored[8];
			int			ignored_kind;

			(void) mcxt__take_error(ignored, sizeof ignored, &ignored_kind);
		}
	}
	handler = error_handler != NULL ? error_handler : default_error_handler;
	handler(message, error_handler_arg);
	fprintf(stderr,
			"ERROR:  %s\nFATAL:  the memory context error handler returned; aborting\n",
			message);
	fflush(stderr);
	abort();
}

/* Raises the error the Rust side recorded; never returns. */
__attribute__((noreturn, noinline, cold))
static void
raise_pending(void)
{
	char		message[MESSAGE_MAX];
	int			kind = ERROR_OTHER;

	if (!mcxt__take_error(message, sizeof message, &kind))
		snprintf(message, sizeof message, "internal error: failure without an error record");
	raise_message(message, kind);
}

/* Raises the recorded error, if any (NULL can be a NO_OOM result). */
__attribute__((noinline, cold))
static void
raise_if_pending(void)
{
	char		message[MESSAGE_MAX];
	int			kind = ERROR_OTHER;

	if (mcxt__take_error(message, sizeof message, &kind))
		raise_message(message, kind);
}

static inline void *
check_ptr(void *p)
{
	if (unlikely(p == NULL))
		raise_pending();
	return p;
}

static inline void
check_status(int status)
{
	if (unlikely(status != 0))
		raise_pending();
}

void
mcxt_set_error_handler(mcxt_error_handler handler, void *arg)
{
	error_handler = handler;
	error_handler_arg = arg;
}

mcxt_error_handler
mcxt_get_error_handler(void **arg)
{
	if (arg != NULL)
		*arg = error_handler_arg;
	return error_handler;
}

/* ---- Allocation --------------------------------------------------------- */

void *
MemoryContextAlloc(MemoryContext context, Size size)
{
	return check_ptr(mcxt__alloc(context, size));
}

void *
MemoryContextAllocZero(MemoryContext context, Size size)
{
	return check_ptr(mcxt__alloc_zero(context, size));
}

void *
MemoryContextAllocExtended(MemoryContext context, Size size, int flags)
{
	void	   *p = mcxt__alloc_extended(context, size, flags);

	if (unlikely(p == NULL))
		raise_if_pending();
	return p;
}

void *
MemoryContextAllocHuge(MemoryContext context, Size size)
{
	return check_ptr(mcxt__alloc_extended(context, size, MCXT_ALLOC_HUGE));
}

void *
MemoryContextAllocAligned(MemoryContext context, Size size, Size alignto, int flags)
{
	void	   *p = mcxt__alloc_aligned(context, size, alignto, flags);

	if (unlikely(p == NULL))
		raise_if_pending();
	return p;
}

void *
palloc(Size size)
{
	return check_ptr(mcxt__alloc(CurrentMemoryContext, size));
}

void *
palloc0(Size size)
{
	return check_ptr(mcxt__alloc_zero(CurrentMemoryContext, size));
}

void *
palloc_extended(Size size, int flags)
{
	return MemoryContextAllocExtended(CurrentMemoryContext, size, flags);
}

void *
palloc_aligned(Size size, Size alignto, int flags)
{
	return MemoryContextAllocAligned(CurrentMemoryContext, size, alignto, flags);
}

void *
repalloc(void *pointer, Size size)
{
	return check_ptr(mcxt__realloc(pointer, size));
}

void *
repalloc_extended(void *pointer, Size size, int flags)
{
	void	   *p = mcxt__realloc_extended(pointer, size, flags);

	if (unlikely(p == NULL))
		raise_if_pending();
	return p;
}

void *
repalloc_huge(void *pointer, Size size)
{
	return check_ptr(mcxt__realloc_extended(pointer, size, MCXT_ALLOC_HUGE));
}

void
pfree(void *pointer)
{
	check_status(mcxt__free(pointer));
}

/* ---- Strings ------------------------------------------------------------ */

char *
MemoryContextStrdup(MemoryContext context, const char *string)
{
	size_t		len;
	char	   *copy;

	if (unlikely(string == NULL))
		raise_message("MemoryContextStrdup called with a NULL string", ERROR_OTHER);
	len = strlen(string) + 1;
	copy = MemoryContextAlloc(context, len);
	memcpy(copy, string, len);
	return copy;
}

char *
pstrdup(const char *in)
{
	return MemoryContextStrdup(CurrentMemoryContext, in);
}

char *
pnstrdup(const char *in, Size len)
{
	char	   *out;

	if (unlikely(in == NULL))
		raise_message("pnstrdup called with a NULL string", ERROR_OTHER);
	len = strnlen(in, len);
	out = palloc(len + 1);
	memcpy(out, in, len);
	out[len] = '\0';
	return out;
}

char *
psprintf(const char *fmt, ...)
{
	size_t		len = 128;

	if (unlikely(fmt == NULL))
		raise_message("psprintf called with a NULL format", ERROR_OTHER);
	for (;;)
	{
		char	   *result = palloc(len);
		va_list		args;
		int			needed;

		va_start(args, fmt);
		needed = vsnprintf(result, len, fmt, args);
		va_end(args);
		if (unlikely(needed < 0))
		{
			pfree(result);
			raise_message("psprintf: vsnprintf failed", ERROR_OTHER);
		}
		if ((size_t) needed < len)
			return result;
		pfree(result);
		len = (size_t) needed + 1;
	}
}

/* ---- Contexts ----------------------------------------------------------- */

void
MemoryContextInit(void)
{
	if (TopMemoryContext != NULL)
		return;
	TopMemoryContext = AllocSetContextCreate(NULL, "TopMemoryContext", ALLOCSET_DEFAULT_SIZES);
	CurrentMemoryContext = TopMemoryContext;
	/* Always keep 8 KB reserved, and allow allocation in critical sections. */
	ErrorContext = AllocSetContextCreate(TopMemoryContext, "ErrorContext", 8 * 1024, 8 * 1024, 8 * 1024);
	MemoryContextAllowInCriticalSection(ErrorContext, true);
}

MemoryContext
AllocSetContextCreateInternal(MemoryContext parent, const char *name,
							  Size minContextSize, Size initBlockSize, Size maxBlockSize)
{
	return check_ptr(mcxt__create(parent, name, KIND_ALLOC_SET,
								  minContextSize, initBlockSize, maxBlockSize));
}

MemoryContext
GenerationContextCreate(MemoryContext parent, const char *name,
						Size minContextSize, Size initBlockSize, Size maxBlockSize)
{
	return check_ptr(mcxt__create(parent, name, KIND_GENERATION,
								  minContextSize, initBlockSize, maxBlockSize));
}

MemoryContext
SlabContextCreate(MemoryContext parent, const char *name, Size blockSize, Size chunkSize)
{
	return check_ptr(mcxt__create(parent, name, KIND_SLAB, blockSize, chunkSize, 0));
}

MemoryContext
BumpContextCreate(MemoryContext parent, const char *name,
				  Size minContextSize, Size initBlockSize, Size maxBlockSize)
{
	return check_ptr(mcxt__create(parent, name, KIND_BUMP,
								  minContextSize, initBlockSize, maxBlockSize));
}

/*
 * The operations that may run reset callbacks count themselves in
 * callback_depth while the Rust side runs.
 */

void
MemoryContextReset(MemoryContext context)
{
	int			status;

	callback_depth++;
	status = mcxt__reset(context, GLOBALS, NGLOBALS);
	callback_depth--;
	check_status(status);
}

void
MemoryContextResetOnly(MemoryContext context)
{
	int			status;

	callback_depth++;
	status = mcxt__reset_only(context);
	callback_depth--;
	check_status(status);
}

void
MemoryContextResetChildren(MemoryContext context)
{
	int			status;

	callback_depth++;
	status = mcxt__reset_children(context);
	callback_depth--;
	check_status(status);
}

void
MemoryContextDelete(MemoryContext context)
{
	int			status;

	callback_depth++;
	status = mcxt__delete(context, GLOBALS, NGLOBALS);
	callback_depth--;
	check_status(status);
}

void
MemoryContextDeleteChildren(MemoryContext context)
{
	int			status;

	callback_depth++;
	status = mcxt__delete_children(context, GLOBALS, NGLOBALS);
	callback_depth--;
	check_status(status);
}

void
MemoryContextSetParent(MemoryContext context, MemoryContext new_parent)
{
	check_status(mcxt__set_parent(context, new_parent));
}

MemoryContext
MemoryContextGetParent(MemoryContext context)
{
	MemoryContext parent = NULL;

	check_status(mcxt__get_parent(context, &parent));
	return parent;
}

void
MemoryContextSetIdentifier(MemoryContext context, const char *id)
{
	check_status(mcxt__set_ident(context, id));
}

void
MemoryContextAllowInCriticalSection(MemoryContext context, bool allow)
{
	check_status(mcxt__allow_in_critical_section(context, allow));
}

void
MemoryContextRegisterResetCallback(MemoryContext context, MemoryContextCallback *cb)
{
	check_status(mcxt__register_callback(context, cb));
}

void
MemoryContextUnregisterResetCallback(MemoryContext context, MemoryContextCallback *cb)
{
	check_status(mcxt__unregister_callback(context, cb));
}

Size
MemoryContextMemAllocated(MemoryContext context, bool recurse)
{
	Size		bytes = 0;

	check_status(mcxt__mem_allocated(context, recurse, &bytes));
	return bytes;
}

bool
MemoryContextIsEmpty(MemoryContext context)
{
	bool		empty = false;

	check_status(mcxt__is_empty(context, &empty));
	return empty;
}

MemoryContext
GetMemoryChunkContext(void *pointer)
{
	return check_ptr(mcxt__chunk_context(pointer));
}

Size
GetMemoryChunkSpace(void *pointer)
{
	Size		space = 0;

	check_status(mcxt__chunk_space(pointer, &space));
	return space;
}

void
MemoryContextStats(MemoryContext context)
{
	check_status(mcxt__stats(context, 100, 100));
}

void
MemoryContextCheck(MemoryContext context)
{
	check_status(mcxt__check(context));
}

void
mcxt_set_limit(MemoryContext context, Size limit)
{
	check_status(mcxt__set_limit(context, limit));
}

void
mcxt_retain_on_reset(MemoryContext context, Size max_bytes)
{
	check_status(mcxt__retain_on_reset(context, max_bytes));
}

Size
mcxt_cached_bytes(void)
{
	return mcxt__cached_bytes();
}

void
mcxt_release_cached(void)
{
	mcxt__release_cached();
}

Size
mcxt_set_block_cache_limit(Size max_bytes)
{
	return mcxt__set_block_cache_limit(max_bytes);
}
