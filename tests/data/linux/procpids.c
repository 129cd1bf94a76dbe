#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <dirent.h>
#include <sys/wait.h>
static void show(const char *path) { char buf[4096]; FILE *f = fopen(path, "r"); if (!f) { printf("%s: missing\n", path); return; } size_t n = fread(buf, 1, sizeof buf - 1, f); buf[n] = 0; fclose(f); for (size_t i = 0; i < n; i++) if (!buf[i]) buf[i] = ' '; printf("%s: %.60s\n", path, buf); }
int main(void) {
    int p[2]; pipe(p);
    pid_t c = fork();
    if (c == 0) { char x; read(p[0], &x, 1); _exit(0); }
    char path[64];
    snprintf(path, sizeof path, "/proc/%d/cmdline", c); show(path);
    snprintf(path, sizeof path, "/proc/%d/status", c);
    FILE *f = fopen(path, "r"); char line[256]; int ppid = -1; while (f && fgets(line, sizeof line, f)) if (!strncmp(line, "PPid:", 5)) ppid = atoi(line + 5); if (f) fclose(f);
    printf("child's PPid is me: %d\n", ppid == getpid());
    snprintf(path, sizeof path, "/proc/%d/exe", c); char exe[256]; ssize_t n = readlink(path, exe, sizeof exe - 1); exe[n > 0 ? n : 0] = 0; printf("exe ends with procs: %d\n", n > 5 && !strcmp(exe + n - 5, "procs"));
    DIR *d = opendir("/proc"); int mine = 0, kid = 0; struct dirent *e; while ((e = readdir(d))) { if (atoi(e->d_name) == getpid()) mine = 1; if (atoi(e->d_name) == c) kid = 1; } closedir(d);
    printf("/proc lists me %d and my child %d\n", mine, kid);
    write(p[1], "x", 1); waitpid(c, NULL, 0);
    snprintf(path, sizeof path, "/proc/%d/cmdline", c); show(path);
    return 0;
}
