/* System calls the personality does not implement return -1/ENOSYS, as on an older kernel.
 * Prints "PASS unimplemented". */
#include <sys/syscall.h>
#include <unistd.h>
#include "check.h"

int main(void) {
    char params[120] = {0};
    errno = 0;
    CHECK(syscall(SYS_io_uring_setup, 8, params) == -1 && errno == ENOSYS);
    CHECK(syscall(SYS_io_uring_setup, 8, params) == -1 && errno == ENOSYS);
    errno = 0;
    CHECK(syscall(SYS_add_key, "user", "k", "v", 1, 0) == -1 && errno == ENOSYS);
    errno = 0;
    CHECK(syscall(999) == -1 && errno == ENOSYS);
    printf("PASS unimplemented\n");
    return 0;
}
