/* Tiny test helpers shared by the C test programs. */
#ifndef MCXT_TEST_CHECK_H
#define MCXT_TEST_CHECK_H

#include <stdio.h>

static int	check_failures = 0;

#define CHECK(cond) \
	do { \
		if (!(cond)) \
		{ \
			fprintf(stderr, "%s:%d: CHECK failed: %s\n", __FILE__, __LINE__, #cond); \
			check_failures++; \
		} \
	} while (0)

/* Exit status of main: 0 when every CHECK passed. */
#define CHECK_RESULT() (check_failures == 0 ? 0 : 1)

#endif
