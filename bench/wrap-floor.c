/*
 * The least a wrapper that records a command the way `promdrop run` does
 * can cost, for bench/wrap: start the command, replace DIR/job.prom with a
 * 3 kB file (create, write, rename over) while it starts, wait for it, then
 * replace the file again, this time with fdatasync before the rename and an
 * fsync of the directory after it. No parsing, no locks, no index, no
 * validation.
 *
 * Usage: wrap-floor DIR COMMAND [ARGS...]; exits with the command's status.
 */
#include <fcntl.h>
#include <spawn.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

extern char **environ;

static void replace(const char *dir, int durable) {
    static char content[3072];
    char temp[4096], target[4096];
    memset(content, 'x', sizeof content - 1);
    content[sizeof content - 1] = '\n';
    snprintf(temp, sizeof temp, "%s/.floor-%ld.tmp", dir, (long)getpid());
    snprintf(target, sizeof target, "%s/job.prom", dir);
    int fd = open(temp, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0644);
    if (fd < 0 || write(fd, content, sizeof content) != (ssize_t)sizeof content ||
        (durable && fdatasync(fd) != 0) || close(fd) != 0 || rename(temp, target) != 0) {
        perror("wrap-floor: replace");
        exit(3);
    }
    if (durable) {
        int dirfd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
        if (dirfd < 0 || fsync(dirfd) != 0) {
            perror("wrap-floor: fsync the directory");
            exit(3);
        }
        close(dirfd);
    }
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: wrap-floor DIR COMMAND [ARGS...]\n");
        return 2;
    }
    pid_t child;
    int status;
    if (posix_spawn(&child, argv[2], NULL, NULL, argv + 2, environ) != 0) {
        perror("wrap-floor: spawn");
        return 127;
    }
    replace(argv[1], 0);
    if (waitpid(child, &status, 0) < 0) {
        perror("wrap-floor: wait");
        return 3;
    }
    replace(argv[1], 1);
    return WIFEXITED(status) ? WEXITSTATUS(status) : 128 + WTERMSIG(status);
}
