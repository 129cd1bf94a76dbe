/* Opens and closes a file and a directory argv[3] times each (argv[1], argv[2]): every
 * close must free what the open took, on the host too. Prints "PASS reopen". */
#include <dirent.h>
#include <fcntl.h>
#include <unistd.h>
#include "check.h"

int main(int argc, char **argv) {
    CHECK(argc == 4);
    int times = atoi(argv[3]);
    for (int i = 0; i < times; i++) {
        int fd = open(argv[1], O_RDONLY);
        CHECK(fd == 3 && close(fd) == 0);
        DIR *d = opendir(argv[2]);
        CHECK(d != NULL && closedir(d) == 0);
    }
    printf("PASS reopen\n");
    return 0;
}
