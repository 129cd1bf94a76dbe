/* Shared by the Linux test programs: CHECK fails the program with a message naming the line. */
#ifndef VMRR_TEST_CHECK_H
#define VMRR_TEST_CHECK_H
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define CHECK(cond) do { if (!(cond)) { \
    printf("FAIL %s:%d: %s (errno %d %s)\n", __FILE__, __LINE__, #cond, errno, strerror(errno)); \
    fflush(stdout); exit(1); } } while (0)
#endif
