/* Generated code, the way a JIT makes it: write machine code into a mapping, make it
 * executable, call it; rewrite it (through mprotect, and in an RWX mapping without one)
 * and call it again; MAP_FIXED over an existing mapping replaces it. Prints "PASS jit". */
#define _GNU_SOURCE
#include <stdint.h>
#include <sys/mman.h>
#include <unistd.h>
#include "check.h"

typedef int (*fn)(void);

static void emit_return(unsigned char *p, int value) {     /* mov eax, imm32; ret */
    p[0] = 0xb8;
    memcpy(p + 1, &value, 4);
    p[5] = 0xc3;
}

int main(void) {
    unsigned char *code = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(code != MAP_FAILED);
    emit_return(code, 11);
    CHECK(mprotect(code, 4096, PROT_READ | PROT_EXEC) == 0);
    CHECK(((fn)code)() == 11);
    CHECK(mprotect(code, 4096, PROT_READ | PROT_WRITE) == 0);
    emit_return(code, 22);
    CHECK(mprotect(code, 4096, PROT_READ | PROT_EXEC) == 0);
    CHECK(((fn)code)() == 22);                    /* not the old translation */

    unsigned char *rwx = mmap(NULL, 4096, PROT_READ | PROT_WRITE | PROT_EXEC, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    CHECK(rwx != MAP_FAILED);
    for (int i = 0; i < 50; i++) {
        emit_return(rwx, i);
        CHECK(((fn)rwx)() == i);                  /* self-modifying code */
    }

    /* MAP_FIXED replaces what was there: fresh zero page, new protection */
    unsigned char *again = mmap(code, 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
    CHECK(again == code && code[0] == 0);
    emit_return(code, 33);
    CHECK(mprotect(code, 4096, PROT_READ | PROT_EXEC) == 0 && ((fn)code)() == 33);
    CHECK(mmap(code, 4096, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED_NOREPLACE, -1, 0) == MAP_FAILED);
    CHECK(errno == EEXIST);
    CHECK(munmap(code, 4096) == 0 && munmap(rwx, 4096) == 0);
    printf("PASS jit\n");
    return 0;
}
