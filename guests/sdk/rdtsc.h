/* The TSC helper lives in cpu.h; this header exists so drivers read as one file each. */
#ifndef VMRR_RDTSC_H
#define VMRR_RDTSC_H
#include "cpu.h"
#define TSC_HZ 1000000000ULL
#endif
