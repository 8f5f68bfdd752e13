/* mmap_cat FILE: writes FILE to stdout by mapping it, not by read(2): run inside a guest on a
 * virtio-fs share, it proves that mmap of a shared file sees the host's bytes. Static, so the
 * guest needs nothing else; tests/e2e/cases/121-share-ops.sh carries it in through the share. */
#include <fcntl.h>
#include <stdio.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

static int write_all(const char *data, size_t len)
{
    while (len > 0) {
        ssize_t n = write(STDOUT_FILENO, data, len);
        if (n < 0)
            return -1;
        data += n;
        len -= (size_t)n;
    }
    return 0;
}

int main(int argc, char **argv)
{
    if (argc != 2) {
        fprintf(stderr, "usage: mmap_cat FILE\n");
        return 2;
    }
    int fd = open(argv[1], O_RDONLY);
    struct stat st;
    if (fd < 0 || fstat(fd, &st) < 0) {
        perror(argv[1]);
        return 1;
    }
    if (st.st_size == 0)
        return 0;
    char *map = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_SHARED, fd, 0);
    if (map == MAP_FAILED) {
        perror("mmap");
        return 1;
    }
    if (write_all(map, (size_t)st.st_size) < 0) {
        perror("write");
        return 1;
    }
    return 0;
}
