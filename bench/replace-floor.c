/*
 * The most file publications per second this filesystem allows one thread,
 * for bench/serve: write a 10-series group file the way promdrop publishes
 * one without fsync (create a temp file beside the target, write it, rename
 * it over the target), cycling through 1,000 target names, as the push
 * benchmark cycles through 1,000 groups; the temp files are in a
 * subdirectory, as promdrop's are. No HTTP, no parsing, no checks. Every
 * timed publication replaces a file: one untimed round of 1,000 comes first.
 *
 * With "safe", each publication also makes the other system calls that
 * strace shows for one push to `promdrop --no-fsync serve` (2026-12-07),
 * with no work between them: the group's lock file opened, locked and
 * stat'ed; the old file opened, stat'ed and its first 8 KiB read; the temp
 * file locked, its mode set and stat'ed; the directory lock taken, the
 * directory's inotify watch read until empty, and the file its last event
 * names stat'ed, around the rename; the lock and the old file closed.
 *
 * Usage: replace-floor DIR COUNT [safe], DIR a new directory; prints the
 * rate in publications per second.
 */
#define _GNU_SOURCE
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/inotify.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#define GROUPS 1000
#define OPEN_FLAGS (O_RDONLY | O_NONBLOCK | O_NOFOLLOW | O_CLOEXEC)

static const char *dir;
static char body[4096];
static int len, safe, watch = -1, dir_lock = -1;

static void fail(const char *what) {
    perror(what);
    exit(1);
}

static void publish(long i) {
    char temp[4096], target[4096], path[4096];
    int lock = -1, old = -1;
    struct stat st;
    snprintf(temp, sizeof temp, "%s/tmp/.tmp-%ld", dir, i);
    snprintf(target, sizeof target, "%s/g%04ld.prom", dir, i % GROUPS);
    if (safe) {
        snprintf(path, sizeof path, "%s/locks/g%04ld.lock", dir, i % GROUPS);
        if ((lock = open(path, OPEN_FLAGS)) < 0 || flock(lock, LOCK_EX | LOCK_NB) != 0 ||
            fstat(lock, &st) != 0)
            fail("replace-floor: lock");
        char first[8192];
        if ((old = open(target, OPEN_FLAGS)) >= 0 &&
            (fstat(old, &st) != 0 || read(old, first, sizeof first) < 0))
            fail("replace-floor: old file");
    }
    int fd = open(temp, O_RDWR | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
    if (fd < 0 || (safe && flock(fd, LOCK_EX | LOCK_NB) != 0) || write(fd, body, len) != len ||
        fchmod(fd, 0644) != 0 || (safe && fstat(fd, &st) != 0))
        fail("replace-floor: temp file");
    if (safe) {
        char events[4096], last[256] = "";
        ssize_t n;
        if (flock(dir_lock, LOCK_EX | LOCK_NB) != 0)
            fail("replace-floor: directory lock");
        while ((n = read(watch, events, sizeof events)) > 0)
            for (char *p = events; p < events + n;) {
                struct inotify_event *e = (struct inotify_event *)p;
                if (e->len)
                    snprintf(last, sizeof last, "%s", e->name);
                p += sizeof *e + e->len;
            }
        snprintf(path, sizeof path, "%s/%s", dir, last);
        if (last[0])
            stat(path, &st);
    }
    if (rename(temp, target) != 0 || close(fd) != 0)
        fail("replace-floor: rename");
    if (safe && (flock(dir_lock, LOCK_UN) != 0 || close(lock) != 0 || (old >= 0 && close(old) != 0)))
        fail("replace-floor: unlock");
}

int main(int argc, char **argv) {
    if (argc < 3 || argc > 4 || (argc == 4 && strcmp(argv[3], "safe") != 0)) {
        fprintf(stderr, "usage: replace-floor DIR COUNT [safe]\n");
        return 2;
    }
    dir = argv[1];
    long count = atol(argv[2]);
    safe = argc == 4;
    len = snprintf(body, sizeof body, "# HELP m Bench.\n# TYPE m gauge\n");
    for (int i = 0; i < 10; i++)
        len += snprintf(body + len, sizeof body - len,
                        "m{instance=\"i0000\",job=\"bench\",l=\"v%d\"} %d\n", i, i);
    char path[4096];
    snprintf(path, sizeof path, "%s/tmp", dir);
    if (mkdir(dir, 0755) != 0 || mkdir(path, 0755) != 0)
        fail("replace-floor: mkdir");
    if (safe) {
        snprintf(path, sizeof path, "%s/locks", dir);
        if (mkdir(path, 0755) != 0)
            fail("replace-floor: mkdir");
        for (int g = 0; g < GROUPS; g++) {
            snprintf(path, sizeof path, "%s/locks/g%04d.lock", dir, g);
            int fd = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644);
            if (fd < 0 || close(fd) != 0)
                fail("replace-floor: lock file");
        }
        snprintf(path, sizeof path, "%s/locks/directory.lock", dir);
        if ((dir_lock = open(path, O_RDONLY | O_CREAT | O_CLOEXEC, 0644)) < 0)
            fail("replace-floor: directory lock");
        uint32_t mask = IN_CREATE | IN_DELETE | IN_MOVED_FROM | IN_MOVED_TO | IN_MODIFY |
                        IN_CLOSE_WRITE | IN_ATTRIB | IN_DELETE_SELF | IN_MOVE_SELF;
        if ((watch = inotify_init1(IN_NONBLOCK | IN_CLOEXEC)) < 0 ||
            inotify_add_watch(watch, dir, mask) < 0)
            fail("replace-floor: inotify");
    }
    for (long i = 0; i < GROUPS; i++)
        publish(count + i);
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (long i = 0; i < count; i++)
        publish(i);
    clock_gettime(CLOCK_MONOTONIC, &end);
    double secs = (end.tv_sec - start.tv_sec) + (end.tv_nsec - start.tv_nsec) / 1e9;
    printf("%.0f\n", count / secs);
    return 0;
}
