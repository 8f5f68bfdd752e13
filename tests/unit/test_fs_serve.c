/*
 * cove_fs_serve over a real Unix socket, with the test as the front-end: a message that
 * arrives in pieces is served; a front-end that sends part of a message and stops can neither
 * keep a stop from being seen nor hold the server for ever.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

#include <cove/cove.h>

#define GET_FEATURES 1
#define SET_FEATURES 2
#define HEADER_SIZE 12
#define REPLY_FLAG 0x4

struct bench {
    char dir[64];
    char socket_path[80];
    int stop_fd;
    int conn;
    pthread_t server;
    pid_t server_tid;
    int result;
    cove_error error;
    bool ended; /* guarded by lock */
    pthread_mutex_t lock;
    pthread_cond_t cond;
};

static void *server_thread(void *arg)
{
    struct bench *b = arg;
    b->server_tid = (pid_t)syscall(SYS_gettid);
    cove_fs_serve_options options;
    cove_fs_serve_options_init(&options);
    options.socket_path = b->socket_path;
    options.host_dir = b->dir;
    options.stop_fd = b->stop_fd;
    b->result = cove_fs_serve(&options, &b->error);
    pthread_mutex_lock(&b->lock);
    b->ended = true;
    pthread_cond_broadcast(&b->cond);
    pthread_mutex_unlock(&b->lock);
    return NULL;
}

/* Starts the server and connects to it as its front-end. */
static int setup(void **state)
{
    struct bench *b = calloc(1, sizeof(*b));
    assert_non_null(b);
    strcpy(b->dir, "/tmp/cove-fs-serve-XXXXXX");
    assert_non_null(mkdtemp(b->dir));
    snprintf(b->socket_path, sizeof(b->socket_path), "%s/vu.sock", b->dir);
    b->stop_fd = eventfd(0, EFD_CLOEXEC);
    assert_true(b->stop_fd >= 0);
    pthread_mutex_init(&b->lock, NULL);
    pthread_cond_init(&b->cond, NULL);
    assert_int_equal(pthread_create(&b->server, NULL, server_thread, b), 0);

    struct sockaddr_un addr = {.sun_family = AF_UNIX};
    strcpy(addr.sun_path, b->socket_path);
    b->conn = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    assert_true(b->conn >= 0);
    int tries = 500;
    while (connect(b->conn, (struct sockaddr *)&addr, sizeof(addr)) < 0 && --tries > 0)
        usleep(10000); /* until the server listens */
    assert_true(tries > 0);
    *state = b;
    return 0;
}

static int teardown(void **state)
{
    struct bench *b = *state;
    if (b->conn >= 0)
        close(b->conn);
    pthread_join(b->server, NULL);
    close(b->stop_fd);
    rmdir(b->dir);
    pthread_mutex_destroy(&b->lock);
    pthread_cond_destroy(&b->cond);
    free(b);
    return 0;
}

/* Whether the server returned within `seconds`. */
static bool server_ends_within(struct bench *b, int seconds)
{
    struct timespec deadline;
    clock_gettime(CLOCK_REALTIME, &deadline);
    deadline.tv_sec += seconds;
    pthread_mutex_lock(&b->lock);
    int r = 0;
    while (!b->ended && r != ETIMEDOUT)
        r = pthread_cond_timedwait(&b->cond, &b->lock, &deadline);
    bool ended = b->ended;
    pthread_mutex_unlock(&b->lock);
    return ended;
}

static void put_header(uint8_t *buf, uint32_t request, uint32_t size)
{
    uint32_t flags = 0x1; /* version 1 */
    memcpy(buf, &request, 4);
    memcpy(buf + 4, &flags, 4);
    memcpy(buf + 8, &size, 4);
}

static void send_bytes(struct bench *b, const void *buf, size_t len)
{
    assert_int_equal(send(b->conn, buf, len, MSG_NOSIGNAL), (ssize_t)len);
}

/* The kernel's name for what the server thread waits in: its system call number. */
static long server_syscall(struct bench *b)
{
    char path[64], line[256];
    snprintf(path, sizeof(path), "/proc/self/task/%d/syscall", (int)b->server_tid);
    FILE *f = fopen(path, "r");
    if (!f)
        return -1;
    long nr = -1;
    if (!fgets(line, sizeof(line), f) || sscanf(line, "%ld", &nr) != 1)
        nr = -1;
    fclose(f);
    return nr;
}

/* Sends the header of a SET_FEATURES (an 8-byte payload) and no payload, then waits until
 * the server waits for the rest: it is in poll(), no longer in its loop's epoll_wait(). */
static void send_half_message(struct bench *b)
{
    uint8_t header[HEADER_SIZE];
    put_header(header, SET_FEATURES, 8);
    send_bytes(b, header, sizeof(header));
    send_bytes(b, "1234", 4);
    int tries = 500;
    long nr;
    while ((nr = server_syscall(b)) != SYS_poll && nr != SYS_ppoll && --tries > 0)
        usleep(10000);
    assert_true(tries > 0);
}

/* GET_FEATURES with its header in two pieces and a pause between: served all the same. */
static void test_message_in_pieces_served(void **state)
{
    struct bench *b = *state;
    uint8_t header[HEADER_SIZE];
    put_header(header, GET_FEATURES, 0);
    send_bytes(b, header, 5);
    usleep(50000);
    send_bytes(b, header + 5, sizeof(header) - 5);
    uint8_t reply[HEADER_SIZE + 8];
    size_t got = 0;
    while (got < sizeof(reply)) {
        ssize_t n = recv(b->conn, reply + got, sizeof(reply) - got, 0);
        assert_true(n > 0);
        got += (size_t)n;
    }
    uint32_t request, flags, size;
    memcpy(&request, reply, 4);
    memcpy(&flags, reply + 4, 4);
    memcpy(&size, reply + 8, 4);
    assert_int_equal(request, GET_FEATURES);
    assert_true(flags & REPLY_FLAG);
    assert_int_equal(size, 8);
    uint64_t features;
    memcpy(&features, reply + HEADER_SIZE, 8);
    assert_true(features & (1ULL << 32)); /* VIRTIO_F_VERSION_1 */
    close(b->conn);
    b->conn = -1;
    assert_true(server_ends_within(b, 10)); /* the front-end's end ends the session */
    assert_int_equal(b->result, 0);
}

/* A stop while the server waits for the rest of a message ends serving, cleanly. */
static void test_stop_seen_mid_message(void **state)
{
    struct bench *b = *state;
    send_half_message(b);
    uint64_t one = 1;
    assert_int_equal(write(b->stop_fd, &one, sizeof(one)), sizeof(one));
    assert_true(server_ends_within(b, 3));
    assert_int_equal(b->result, 0);
    struct stat st;
    assert_int_equal(stat(b->socket_path, &st), -1); /* nothing left behind */
}

/* Without a stop, a front-end that stops mid-message is given up on with one clear line. */
static void test_stalled_front_end_given_up(void **state)
{
    struct bench *b = *state;
    send_half_message(b);
    assert_true(server_ends_within(b, 20));
    assert_int_equal(b->result, -EPROTO);
    assert_non_null(strstr(b->error.message, "sent part of a message, then nothing for 5 s"));
}

int main(void)
{
#define T(fn) cmocka_unit_test_setup_teardown(fn, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_message_in_pieces_served),
        T(test_stop_seen_mid_message),
        T(test_stalled_front_end_given_up),
    };
#undef T
    return cmocka_run_group_tests(tests, NULL, NULL);
}
