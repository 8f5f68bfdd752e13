/* 16550A UART, driven through a real port bus with a fake machine sink. */
#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <sched.h>
#include <semaphore.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <signal.h>
#include <stdbool.h>
#include <time.h>
#include <string.h>
#include <unistd.h>

#include <cmocka.h>

#include "arch/x86_64/layout.h"
#include "devices/uart.h"
#include "fake_machine.h"

#define THR (X86_COM1_PORT + 0)
#define IER (X86_COM1_PORT + 1)
#define IIR (X86_COM1_PORT + 2)
#define LCR (X86_COM1_PORT + 3)
#define MCR (X86_COM1_PORT + 4)
#define LSR (X86_COM1_PORT + 5)
#define MSR (X86_COM1_PORT + 6)
#define SCR (X86_COM1_PORT + 7)

struct fixture {
    struct fake_machine fm;
    struct uart *uart;
    int pipe_fds[2]; /* the uart writes to [1]; the test reads [0] */
    int callbacks;
};

static int setup(void **state)
{
    struct fixture *f = test_calloc(1, sizeof(*f));

    fm_init(&f->fm, FM_NO_EVENTS); /* the uart raises no machine event */
    if (pipe2(f->pipe_fds, O_NONBLOCK))
        return -1;
    f->uart = uart_new(&f->fm.sink, X86_COM1_IRQ, f->pipe_fds[1]);
    if (!f->uart || uart_register(f->uart, &f->fm.bus))
        return -1;
    *state = f;
    return 0;
}

static int teardown(void **state)
{
    struct fixture *f = *state;

    uart_free(f->uart);
    fm_destroy(&f->fm);
    close(f->pipe_fds[0]);
    close(f->pipe_fds[1]);
    test_free(f);
    return 0;
}

static ssize_t drain_pipe(struct fixture *f, char *buf, size_t len)
{
    ssize_t n = read(f->pipe_fds[0], buf, len);

    return n < 0 && errno == EAGAIN ? 0 : n;
}

static void test_transmit_to_fd(void **state)
{
    struct fixture *f = *state;
    char buf[16];

    fm_out8(&f->fm, THR, 'h');
    fm_out8(&f->fm, THR, 'i');
    fm_out8(&f->fm, THR, '\n');
    assert_int_equal(drain_pipe(f, buf, sizeof(buf)), 3);
    assert_memory_equal(buf, "hi\n", 3);
}

/* ---- A stalled reader must not keep the vCPU in write() past a kick. ---- */

static void on_kick(int sig) { (void)sig; }

struct blocked_writer {
    struct fake_machine *fm;
    sem_t done;
};

static void *write_one_byte(void *arg)
{
    struct blocked_writer *w = arg;
    fm_out8(w->fm, THR, 'z');
    sem_post(&w->done);
    return NULL;
}

static void test_kick_ends_blocked_write(void **state)
{
    struct fixture *f = *state;
    /* A full pipe in blocking mode: the next byte waits for a reader that never comes. */
    char fill[4096] = {0};
    while (write(f->pipe_fds[1], fill, sizeof(fill)) > 0)
        ;
    while (write(f->pipe_fds[1], fill, 1) > 0)
        ;
    assert_int_equal(fcntl(f->pipe_fds[1], F_SETFL, 0), 0);
    struct sigaction sa = {.sa_handler = on_kick}, old; /* no SA_RESTART, like libcove's */
    sigemptyset(&sa.sa_mask);
    assert_int_equal(sigaction(SIGUSR1, &sa, &old), 0);
    struct blocked_writer w = {.fm = &f->fm};
    sem_init(&w.done, 0, 0);
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, write_one_byte, &w), 0);
    usleep(100 * 1000); /* let it block */
    struct timespec deadline;
    bool ended = false;
    for (int kick = 0; kick < 20 && !ended; kick++) { /* a kick before write() is not enough */
        pthread_kill(thread, SIGUSR1);
        clock_gettime(CLOCK_REALTIME, &deadline);
        deadline.tv_nsec += 100 * 1000 * 1000;
        if (deadline.tv_nsec >= 1000000000L) {
            deadline.tv_sec++;
            deadline.tv_nsec -= 1000000000L;
        }
        ended = sem_timedwait(&w.done, &deadline) == 0;
    }
    if (!ended) { /* let the thread finish so the test can end, then fail */
        char drain[65536];
        while (read(f->pipe_fds[0], drain, sizeof(drain)) == (ssize_t)sizeof(drain))
            ;
    }
    pthread_join(thread, NULL);
    sigaction(SIGUSR1, &old, NULL);
    sem_destroy(&w.done);
    assert_true(ended);
}

static void test_divisor_latch(void **state)
{
    struct fixture *f = *state;
    char buf[4];

    fm_out8(&f->fm, LCR, 0x83); /* DLAB | 8N1 */
    fm_out8(&f->fm, THR, 0x01);
    fm_out8(&f->fm, IER, 0x02);
    assert_int_equal(fm_in8(&f->fm, THR), 0x01);
    assert_int_equal(fm_in8(&f->fm, IER), 0x02);
    assert_int_equal(f->fm.rises[X86_COM1_IRQ], 0); /* DLM, not IER: no THRE interrupt enabled */
    assert_int_equal(drain_pipe(f, buf, sizeof(buf)), 0); /* DLL write is not a transmit */

    fm_out8(&f->fm, LCR, 0x03);
    assert_int_equal(fm_in8(&f->fm, LCR), 0x03);
    assert_int_equal(fm_in8(&f->fm, IER), 0x00);
    fm_out8(&f->fm, IER, 0xff);
    /* Only four enable bits exist (Linux probes this). */
    assert_int_equal(fm_in8(&f->fm, IER), 0x0f);
    fm_out8(&f->fm, LCR, 0x83);
    assert_int_equal(fm_in8(&f->fm, THR), 0x01);
    assert_int_equal(fm_in8(&f->fm, IER), 0x02);
}

static void test_lsr_and_scratch(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(fm_in8(&f->fm, LSR), 0x60); /* THRE | TEMT, no data */
    fm_out8(&f->fm, THR, 'x');
    assert_int_equal(fm_in8(&f->fm, LSR) & 0x60, 0x60); /* transmission is instantaneous */
    fm_out8(&f->fm, SCR, 0x5a);
    assert_int_equal(fm_in8(&f->fm, SCR), 0x5a);
    assert_int_equal(fm_in8(&f->fm, MSR), 0xb0); /* DCD | DSR | CTS: a connected line */
}

static void test_thre_interrupt(void **state)
{
    struct fixture *f = *state;

    assert_int_equal(fm_in8(&f->fm, IIR), 0x01);
    fm_out8(&f->fm, IER, 0x02);
    assert_int_equal(f->fm.rises[X86_COM1_IRQ], 1);
    assert_int_equal(f->fm.level[X86_COM1_IRQ], 1);
    assert_int_equal(f->fm.last_gsi, X86_COM1_IRQ);

    assert_int_equal(fm_in8(&f->fm, IIR), 0x02);
    assert_int_equal(f->fm.level[X86_COM1_IRQ], 0); /* reading IIR acknowledged THRE */
    assert_int_equal(fm_in8(&f->fm, IIR), 0x01);

    fm_out8(&f->fm, THR, 'a'); /* each transmit makes THR empty again: a new interrupt */
    assert_int_equal(f->fm.rises[X86_COM1_IRQ], 2);
    assert_int_equal(fm_in8(&f->fm, IIR), 0x02);

    /* Linux's THRE test: IER off then on again must re-latch the interrupt. */
    fm_out8(&f->fm, IER, 0x00);
    fm_out8(&f->fm, IER, 0x02);
    assert_int_equal(f->fm.rises[X86_COM1_IRQ], 3);
    assert_int_equal(fm_in8(&f->fm, IIR), 0x02);

    fm_out8(&f->fm, IIR, 0x01); /* FCR: enable FIFOs, shown in IIR's top bits */
    assert_int_equal(fm_in8(&f->fm, IIR), 0xc1);
}

static void test_receive(void **state)
{
    struct fixture *f = *state;

    fm_out8(&f->fm, IER, 0x01);
    assert_int_equal(f->fm.rises[X86_COM1_IRQ], 0);
    assert_int_equal(uart_receive(f->uart, (const uint8_t *)"abc", 3), 3);
    assert_int_equal(f->fm.rises[X86_COM1_IRQ], 1);
    assert_int_equal(fm_in8(&f->fm, IIR), 0x04);
    assert_int_equal(fm_in8(&f->fm, LSR) & 0x01, 0x01);
    assert_int_equal(fm_in8(&f->fm, THR), 'a');
    assert_int_equal(fm_in8(&f->fm, THR), 'b');
    assert_int_equal(f->fm.level[X86_COM1_IRQ], 1);
    assert_int_equal(fm_in8(&f->fm, THR), 'c');
    assert_int_equal(fm_in8(&f->fm, LSR) & 0x01, 0x00);
    assert_int_equal(f->fm.level[X86_COM1_IRQ], 0);
    assert_int_equal(fm_in8(&f->fm, IIR), 0x01);
    assert_int_equal(uart_rx_space(f->uart), UART_RX_CAPACITY);
}

/* With the line already high, a new source must still produce a fresh 0 -> 1 edge. */
static void test_new_source_while_high_gives_edge(void **state)
{
    struct fixture *f = *state;

    fm_out8(&f->fm, IER, 0x01);
    uart_receive(f->uart, (const uint8_t *)"x", 1);
    assert_int_equal(f->fm.rises[X86_COM1_IRQ], 1);
    uart_receive(f->uart, (const uint8_t *)"y", 1); /* more data while the guest is busy */
    assert_int_equal(f->fm.rises[X86_COM1_IRQ], 2);
    fm_out8(&f->fm, IER, 0x03); /* THRE joins while RDI holds the line high */
    assert_int_equal(f->fm.rises[X86_COM1_IRQ], 3);
    assert_int_equal(f->fm.level[X86_COM1_IRQ], 1);
    assert_int_equal(fm_in8(&f->fm, IIR), 0x04); /* received data outranks THRE */
}

static void callback(void *opaque)
{
    ((struct fixture *)opaque)->callbacks++;
}

static void test_receive_bound_and_space_callback(void **state)
{
    struct fixture *f = *state;
    static uint8_t big[UART_RX_CAPACITY + 1000];
    size_t i;

    for (i = 0; i < sizeof(big); i++)
        big[i] = (uint8_t)(i * 7);
    uart_set_rx_space_cb(f->uart, callback, f);
    assert_int_equal(uart_receive(f->uart, big, sizeof(big)), UART_RX_CAPACITY);
    assert_int_equal(uart_rx_space(f->uart), 0);
    assert_int_equal(uart_receive(f->uart, big, 10), 0);
    assert_int_equal(f->callbacks, 0);

    for (i = 0; i < UART_RX_CAPACITY - UART_RX_WAKE_SPACE; i++) {
        assert_int_equal(f->callbacks, 0);
        assert_int_equal(fm_in8(&f->fm, THR), (uint8_t)(i * 7));
    }
    assert_int_equal(f->callbacks, 1);
    assert_int_equal(uart_rx_space(f->uart), UART_RX_WAKE_SPACE);
    for (; i < UART_RX_CAPACITY; i++)
        assert_int_equal(fm_in8(&f->fm, THR), (uint8_t)(i * 7));
    assert_int_equal(f->callbacks, 1); /* once per time the buffer filled, not per byte */
    assert_int_equal(fm_in8(&f->fm, LSR) & 0x01, 0);

    /* Input that never fills the buffer never triggers the callback. */
    assert_int_equal(uart_receive(f->uart, big, 100), 100);
    for (i = 0; i < 100; i++)
        fm_in8(&f->fm, THR);
    assert_int_equal(f->callbacks, 1);
}

/* A producer that offers exactly the free space is never refused, yet must still be woken. */
static void test_space_callback_after_exact_fill(void **state)
{
    struct fixture *f = *state;
    static uint8_t big[UART_RX_CAPACITY];

    uart_set_rx_space_cb(f->uart, callback, f);
    assert_int_equal(uart_receive(f->uart, big, 100), 100);
    assert_int_equal(uart_receive(f->uart, big, uart_rx_space(f->uart)), UART_RX_CAPACITY - 100);
    assert_int_equal(uart_rx_space(f->uart), 0);
    for (int i = 0; i < UART_RX_CAPACITY; i++)
        fm_in8(&f->fm, THR);
    assert_int_equal(f->callbacks, 1);
}

static void test_loopback(void **state)
{
    struct fixture *f = *state;
    char buf[4];

    fm_out8(&f->fm, MCR, 0x1a); /* LOOP | OUT2 | RTS, as Linux's 8250 probe does */
    assert_int_equal(fm_in8(&f->fm, MSR) & 0xf0, 0x90);
    fm_out8(&f->fm, MCR, 0x15); /* LOOP | OUT1 | DTR */
    assert_int_equal(fm_in8(&f->fm, MSR) & 0xf0, 0x60);

    fm_out8(&f->fm, IER, 0x01);
    fm_out8(&f->fm, THR, 'q');
    assert_int_equal(drain_pipe(f, buf, sizeof(buf)), 0); /* nothing leaves in loopback */
    assert_int_equal(f->fm.rises[X86_COM1_IRQ], 1);
    assert_int_equal(fm_in8(&f->fm, LSR) & 0x01, 0x01);
    assert_int_equal(fm_in8(&f->fm, THR), 'q');

    /* The external line is disconnected: host input is taken and lost. */
    assert_int_equal(uart_receive(f->uart, (const uint8_t *)"zz", 2), 2);
    assert_int_equal(fm_in8(&f->fm, LSR) & 0x01, 0x00);

    fm_out8(&f->fm, MCR, 0x00);
    fm_out8(&f->fm, THR, 'o');
    assert_int_equal(drain_pipe(f, buf, sizeof(buf)), 1);
    assert_int_equal(buf[0], 'o');
}

static void test_loopback_overrun(void **state)
{
    struct fixture *f = *state;

    fm_out8(&f->fm, MCR, 0x10);
    for (int i = 0; i < UART_RX_CAPACITY + 5; i++)
        fm_out8(&f->fm, THR, (uint8_t)i);
    assert_int_equal(uart_rx_space(f->uart), 0);
    assert_int_equal(fm_in8(&f->fm, LSR) & 0x03, 0x03); /* DR | OE */
    assert_int_equal(fm_in8(&f->fm, LSR) & 0x02, 0x00); /* OE clears on read */
    assert_int_equal(fm_in8(&f->fm, THR), 0);
}

static void test_fifo_clear_drops_only_fifo(void **state)
{
    struct fixture *f = *state;
    uint8_t data[40];

    for (int i = 0; i < 40; i++)
        data[i] = (uint8_t)i;
    assert_int_equal(uart_receive(f->uart, data, 40), 40);
    fm_out8(&f->fm, IIR, 0x07); /* FCR: enable, clear receive and transmit FIFOs */
    assert_int_equal(uart_rx_space(f->uart), UART_RX_CAPACITY - 24);
    assert_int_equal(fm_in8(&f->fm, THR), 16);
}

/* --- back-pressure end to end: a producer thread and a "guest" reading concurrently ------- */

#define STREAM_LEN 100000

struct producer {
    struct fixture *f;
    sem_t space;
};

static void post_space(void *opaque)
{
    sem_post(&((struct producer *)opaque)->space);
}

static void *produce(void *arg)
{
    struct producer *p = arg;
    uint8_t chunk[1000];
    size_t sent = 0;

    while (sent < STREAM_LEN) {
        size_t len = STREAM_LEN - sent < sizeof(chunk) ? STREAM_LEN - sent : sizeof(chunk);
        size_t off = 0;
        for (size_t i = 0; i < len; i++)
            chunk[i] = (uint8_t)((sent + i) % 251);
        while (off < len) {
            size_t n = uart_receive(p->f->uart, chunk + off, len - off);
            off += n;
            if (off < len)
                sem_wait(&p->space); /* a full buffer is always followed by a callback */
        }
        sent += len;
    }
    return NULL;
}

static void test_backpressure_threads(void **state)
{
    struct fixture *f = *state;
    struct producer p = {.f = f};
    pthread_t thread;

    assert_int_equal(sem_init(&p.space, 0, 0), 0);
    uart_set_rx_space_cb(f->uart, post_space, &p);
    assert_int_equal(pthread_create(&thread, NULL, produce, &p), 0);
    for (size_t got = 0; got < STREAM_LEN;) {
        if (!(fm_in8(&f->fm, LSR) & 0x01)) {
            sched_yield();
            continue;
        }
        assert_int_equal(fm_in8(&f->fm, THR), (uint8_t)(got % 251));
        got++;
    }
    assert_int_equal(pthread_join(thread, NULL), 0);
    uart_set_rx_space_cb(f->uart, NULL, NULL);
    sem_destroy(&p.space);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test_setup_teardown(test_transmit_to_fd, setup, teardown),
        cmocka_unit_test_setup_teardown(test_kick_ends_blocked_write, setup, teardown),
        cmocka_unit_test_setup_teardown(test_divisor_latch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_lsr_and_scratch, setup, teardown),
        cmocka_unit_test_setup_teardown(test_thre_interrupt, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receive, setup, teardown),
        cmocka_unit_test_setup_teardown(test_new_source_while_high_gives_edge, setup, teardown),
        cmocka_unit_test_setup_teardown(test_receive_bound_and_space_callback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_space_callback_after_exact_fill, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loopback, setup, teardown),
        cmocka_unit_test_setup_teardown(test_loopback_overrun, setup, teardown),
        cmocka_unit_test_setup_teardown(test_fifo_clear_drops_only_fifo, setup, teardown),
        cmocka_unit_test_setup_teardown(test_backpressure_threads, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
