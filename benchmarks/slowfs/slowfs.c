/*
 * slowfs: a read-only FUSE passthrough that makes every metadata call wait.
 *
 * It stands in for network storage (NFS, SMB, Lustre) in benchmarks: every lookup/getattr,
 * opendir/readdir, readlink and open sleeps a fixed time before it is answered, and the
 * kernel is told to cache nothing (entry, attribute and negative timeouts 0), so every stat
 * and every path component costs one round trip, as on a NAS without client caching. Reads
 * pass through at local speed. The daemon is multithreaded, and the waits are sleeps, not
 * spins: many calls in flight overlap, so a client with more requests in flight finishes
 * sooner, as it would against a real server. A Python FUSE server was measured at about
 * 275 us of CPU per call, which would hide exactly that.
 *
 * Build: gcc -O2 -Wall -o slowfs slowfs.c $(pkg-config --cflags --libs fuse3)
 * Use:   slowfs SOURCE MOUNTPOINT [-o delay_us=1000] [-o max_threads=256] [-f]
 */
#define FUSE_USE_VERSION 31
#define _GNU_SOURCE

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <fuse.h>
#include <limits.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/statvfs.h>
#include <time.h>
#include <unistd.h>

struct slowfs_options {
    char *source;
    long delay_us;
};

static struct slowfs_options options = {NULL, 1000};
static int source_fd = -1;

/* Paths from FUSE start with "/"; relative to the source folder's descriptor they must not. */
static const char *rel(const char *path)
{
    while (*path == '/')
        path++;
    return *path ? path : ".";
}

/* The round trip: a sleep, so that waiting threads cost no CPU and overlap freely. */
static void wait_round_trip(void)
{
    if (options.delay_us <= 0)
        return;
    struct timespec t = {options.delay_us / 1000000, (options.delay_us % 1000000) * 1000};
    while (nanosleep(&t, &t) == -1 && errno == EINTR)
        ;
}

static void *slowfs_init(struct fuse_conn_info *conn, struct fuse_config *cfg)
{
    (void)conn;
    /* Nothing cached by the kernel: every lookup and stat reaches the daemon. */
    cfg->entry_timeout = 0;
    cfg->attr_timeout = 0;
    cfg->negative_timeout = 0;
    cfg->use_ino = 1;
    return NULL;
}

/* The high-level library turns every kernel lookup into a getattr, so this is both. */
static int slowfs_getattr(const char *path, struct stat *st, struct fuse_file_info *fi)
{
    wait_round_trip();
    int r = fi ? fstat((int)fi->fh, st) : fstatat(source_fd, rel(path), st, AT_SYMLINK_NOFOLLOW);
    return r == -1 ? -errno : 0;
}

static int slowfs_readlink(const char *path, char *buf, size_t size)
{
    wait_round_trip();
    ssize_t n = readlinkat(source_fd, rel(path), buf, size - 1);
    if (n == -1)
        return -errno;
    buf[n] = '\0';
    return 0;
}

static int slowfs_opendir(const char *path, struct fuse_file_info *fi)
{
    wait_round_trip();
    int fd = openat(source_fd, rel(path), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd == -1)
        return -errno;
    DIR *dir = fdopendir(fd);
    if (dir == NULL) {
        int err = errno;
        close(fd);
        return -err;
    }
    fi->fh = (uint64_t)(uintptr_t)dir;
    return 0;
}

/* One wait per readdir call: the kernel asks for a page of entries at a time, as an NFS
 * client asks for a READDIR reply's worth. */
static int slowfs_readdir(const char *path, void *buf, fuse_fill_dir_t fill, off_t offset,
                          struct fuse_file_info *fi, enum fuse_readdir_flags flags)
{
    (void)path;
    (void)flags;
    wait_round_trip();
    DIR *dir = (DIR *)(uintptr_t)fi->fh;
    if (offset == 0)
        rewinddir(dir);
    else
        seekdir(dir, offset);
    struct dirent *entry;
    while ((entry = readdir(dir)) != NULL) {
        struct stat st;
        memset(&st, 0, sizeof st);
        st.st_ino = entry->d_ino;
        st.st_mode = (mode_t)DTTOIF(entry->d_type);
        if (fill(buf, entry->d_name, &st, telldir(dir), 0))
            break;
    }
    return 0;
}

static int slowfs_releasedir(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    closedir((DIR *)(uintptr_t)fi->fh);
    return 0;
}

static int slowfs_open(const char *path, struct fuse_file_info *fi)
{
    wait_round_trip();
    if ((fi->flags & O_ACCMODE) != O_RDONLY)
        return -EROFS;
    int fd = openat(source_fd, rel(path), fi->flags | O_CLOEXEC);
    if (fd == -1)
        return -errno;
    fi->fh = (uint64_t)fd;
    return 0;
}

static int slowfs_read(const char *path, char *buf, size_t size, off_t offset,
                       struct fuse_file_info *fi)
{
    (void)path;
    ssize_t n = pread((int)fi->fh, buf, size, offset);
    return n == -1 ? -errno : (int)n;
}

static int slowfs_release(const char *path, struct fuse_file_info *fi)
{
    (void)path;
    close((int)fi->fh);
    return 0;
}

static int slowfs_statfs(const char *path, struct statvfs *st)
{
    (void)path;
    return fstatvfs(source_fd, st) == -1 ? -errno : 0;
}

static const struct fuse_operations slowfs_ops = {
    .init = slowfs_init,
    .getattr = slowfs_getattr,
    .readlink = slowfs_readlink,
    .opendir = slowfs_opendir,
    .readdir = slowfs_readdir,
    .releasedir = slowfs_releasedir,
    .open = slowfs_open,
    .read = slowfs_read,
    .release = slowfs_release,
    .statfs = slowfs_statfs,
};

#define OPTION(t, p) {t, offsetof(struct slowfs_options, p), 1}
static const struct fuse_opt option_spec[] = {
    OPTION("delay_us=%ld", delay_us),
    FUSE_OPT_END,
};

/* The first non-option argument is the source folder; the rest go to FUSE. */
static int take_source(void *data, const char *arg, int key, struct fuse_args *outargs)
{
    (void)data;
    (void)outargs;
    if (key == FUSE_OPT_KEY_NONOPT && options.source == NULL) {
        options.source = realpath(arg, NULL);
        if (options.source == NULL) {
            fprintf(stderr, "slowfs: source folder %s: %s\n", arg, strerror(errno));
            exit(2);
        }
        return 0;
    }
    return 1;
}

int main(int argc, char *argv[])
{
    struct fuse_args args = FUSE_ARGS_INIT(argc, argv);
    if (fuse_opt_parse(&args, &options, option_spec, take_source) == -1)
        return 2;
    if (options.source == NULL) {
        fprintf(stderr, "usage: slowfs SOURCE MOUNTPOINT [-o delay_us=N] [FUSE options]\n");
        return 2;
    }
    source_fd = open(options.source, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (source_fd == -1) {
        fprintf(stderr, "slowfs: cannot open %s: %s\n", options.source, strerror(errno));
        return 2;
    }
    int ret = fuse_main(args.argc, args.argv, &slowfs_ops, NULL);
    fuse_opt_free_args(&args);
    return ret;
}
