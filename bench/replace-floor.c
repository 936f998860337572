/*
 * The most file publications per second this filesystem allows one thread,
 * for bench/serve: write a 10-series group file the way promdrop publishes
 * one without fsync (create a temp file beside the target, write it, rename
 * it over the target), cycling through 1,000 target names, as the push
 * benchmark cycles through 1,000 groups; the temp files are in a
 * subdirectory, as promdrop's are. No HTTP, no parsing, no locks.
 *
 * Usage: replace-floor DIR COUNT, DIR a new directory; prints the rate in
 * publications per second.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

int main(int argc, char **argv) {
    if (argc != 3) {
        fprintf(stderr, "usage: replace-floor DIR COUNT\n");
        return 2;
    }
    const char *dir = argv[1];
    long count = atol(argv[2]);
    char body[4096];
    int len = snprintf(body, sizeof body, "# HELP m Bench.\n# TYPE m gauge\n");
    for (int i = 0; i < 10; i++)
        len += snprintf(body + len, sizeof body - len,
                        "m{instance=\"i0000\",job=\"bench\",l=\"v%d\"} %d\n", i, i);
    char temp[4096], target[4096];
    snprintf(temp, sizeof temp, "%s/tmp", dir);
    if (mkdir(dir, 0755) != 0 || mkdir(temp, 0755) != 0) {
        perror("replace-floor: mkdir");
        return 1;
    }
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < count; i++) {
        snprintf(temp, sizeof temp, "%s/tmp/.tmp-%ld", dir, i);
        snprintf(target, sizeof target, "%s/g%04ld.prom", dir, i % 1000);
        int fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
        if (fd < 0 || write(fd, body, len) != len || fchmod(fd, 0644) != 0 ||
            rename(temp, target) != 0 || close(fd) != 0) {
            perror("replace-floor");
            return 1;
        }
    }
    clock_gettime(CLOCK_MONOTONIC, &end);
    double secs = (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
    printf("%.0f\n", count / secs);
    return 0;
}
