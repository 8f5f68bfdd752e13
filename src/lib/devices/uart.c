/*
 * 16550A UART. Register semantics follow the National Semiconductor PC16550D data sheet,
 * restricted to what a guest can observe with instantaneous transmission and no line errors
 * other than receiver overrun.
 */
#include "devices/uart.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "arch/x86_64/layout.h"

#define UART_NR_PORTS 8

/* Register offsets. */
#define REG_RBR_THR 0 /* DLL when LCR.DLAB */
#define REG_IER 1     /* DLM when LCR.DLAB */
#define REG_IIR_FCR 2
#define REG_LCR 3
#define REG_MCR 4
#define REG_LSR 5
#define REG_MSR 6
#define REG_SCR 7

#define IER_RDI 0x01  /* received data available */
#define IER_THRI 0x02 /* transmitter holding register empty */
#define IER_RLSI 0x04 /* receiver line status */
#define IER_MASK 0x0f

#define IIR_NO_INT 0x01
#define IIR_THRI 0x02
#define IIR_RDI 0x04
#define IIR_RLSI 0x06
#define IIR_FIFO_ENABLED 0xc0

#define FCR_ENABLE 0x01
#define FCR_CLEAR_RX 0x02

#define LCR_DLAB 0x80

#define MCR_DTR 0x01
#define MCR_RTS 0x02
#define MCR_OUT1 0x04
#define MCR_OUT2 0x08
#define MCR_LOOP 0x10
#define MCR_MASK 0x1f

#define LSR_DR 0x01
#define LSR_OE 0x02
#define LSR_THRE 0x20
#define LSR_TEMT 0x40

#define MSR_CTS 0x10
#define MSR_DSR 0x20
#define MSR_RI 0x40
#define MSR_DCD 0x80

#define HW_FIFO_SIZE 16
#define DEFAULT_DIVISOR 12 /* 9600 baud */

/* Interrupt sources as bits, to spot sources that have just become pending. */
#define SRC_RLS 0x1
#define SRC_RDI 0x2
#define SRC_THRI 0x4

struct uart {
    pthread_mutex_t lock;
    struct machine_sink sink;
    unsigned gsi;
    int out_fd;

    uint8_t ier, lcr, mcr, scr, dll, dlm, fcr;
    uint8_t last_rx;   /* RBR keeps its last value once the buffer is empty */
    bool thri_pending; /* THRE interrupt latched, cleared by IIR read or THR write */
    bool overrun;      /* LSR.OE, cleared by reading LSR */
    unsigned sources;  /* interrupt sources pending at the last update */
    int irq_level;

    uint8_t rx[UART_RX_CAPACITY];
    size_t rx_head, rx_count;
    bool rx_was_full; /* the buffer filled up; the producer may be waiting for the callback */
    void (*space_cb)(void *opaque);
    void *space_opaque;
};

static void raise_line(struct uart *u, int level)
{
    u->irq_level = level;
    if (u->sink.set_irq)
        u->sink.set_irq(u->sink.ctx, u->gsi, level);
}

static unsigned pending_sources(const struct uart *u)
{
    unsigned s = 0;

    if ((u->ier & IER_RLSI) && u->overrun)
        s |= SRC_RLS;
    if ((u->ier & IER_RDI) && u->rx_count)
        s |= SRC_RDI;
    if ((u->ier & IER_THRI) && u->thri_pending)
        s |= SRC_THRI;
    return s;
}

/*
 * Recomputes the interrupt line. KVM's IOAPIC treats ISA IRQ 4 as edge-triggered, so a source
 * that becomes pending while the line is already high (or fresh data while the guest is mid
 * handler) must be signalled by dropping and re-raising the line; otherwise it would be lost.
 */
static void update_irq(struct uart *u, bool fresh_event)
{
    unsigned now = pending_sources(u);
    bool fresh = fresh_event || (now & ~u->sources);
    int level = now != 0;

    u->sources = now;
    if (level && u->irq_level && fresh)
        raise_line(u, 0);
    if (level != u->irq_level)
        raise_line(u, level);
}

static uint8_t read_iir(struct uart *u)
{
    unsigned s = pending_sources(u);
    uint8_t fifo = (u->fcr & FCR_ENABLE) ? IIR_FIFO_ENABLED : 0;

    if (s & SRC_RLS)
        return fifo | IIR_RLSI;
    if (s & SRC_RDI)
        return fifo | IIR_RDI;
    if (s & SRC_THRI) {
        /* Reading IIR acknowledges THRE when it is the source reported. */
        u->thri_pending = false;
        update_irq(u, false);
        return fifo | IIR_THRI;
    }
    return fifo | IIR_NO_INT;
}

static bool rx_push(struct uart *u, uint8_t byte)
{
    if (u->rx_count == UART_RX_CAPACITY)
        return false;
    u->rx[(u->rx_head + u->rx_count) % UART_RX_CAPACITY] = byte;
    u->rx_count++;
    /* A producer that sees no space stops offering input until the callback says so. */
    if (u->rx_count == UART_RX_CAPACITY)
        u->rx_was_full = true;
    return true;
}

/*
 * Whether the buffer has drained far enough since it was last full for the producer to
 * resume; claims the wake-up. Waiting for half the buffer rather than one byte saves the I/O
 * thread a wake-up per byte the guest reads.
 */
static bool take_space_wakeup(struct uart *u)
{
    if (!u->rx_was_full || UART_RX_CAPACITY - u->rx_count < UART_RX_WAKE_SPACE)
        return false;
    u->rx_was_full = false;
    return u->space_cb != NULL;
}

static uint8_t read_rbr(struct uart *u, bool *wake)
{
    if (u->rx_count) {
        u->last_rx = u->rx[u->rx_head];
        u->rx_head = (u->rx_head + 1) % UART_RX_CAPACITY;
        u->rx_count--;
        update_irq(u, false);
        *wake |= take_space_wakeup(u);
    }
    return u->last_rx;
}

static uint8_t read_lsr(struct uart *u)
{
    uint8_t lsr = LSR_THRE | LSR_TEMT;

    if (u->rx_count)
        lsr |= LSR_DR;
    if (u->overrun) {
        lsr |= LSR_OE;
        u->overrun = false;
        update_irq(u, false);
    }
    return lsr;
}

/* In loopback the modem control outputs feed the modem status inputs (Linux probes this). */
static uint8_t read_msr(const struct uart *u)
{
    uint8_t m = u->mcr;

    if (!(m & MCR_LOOP))
        return MSR_DCD | MSR_DSR | MSR_CTS; /* a permanently connected line */
    return ((m & MCR_DTR) ? MSR_DSR : 0) | ((m & MCR_RTS) ? MSR_CTS : 0) |
           ((m & MCR_OUT1) ? MSR_RI : 0) | ((m & MCR_OUT2) ? MSR_DCD : 0);
}

static uint8_t read_reg(struct uart *u, uint64_t reg, bool *wake)
{
    bool dlab = u->lcr & LCR_DLAB;

    switch (reg) {
    case REG_RBR_THR: return dlab ? u->dll : read_rbr(u, wake);
    case REG_IER: return dlab ? u->dlm : u->ier;
    case REG_IIR_FCR: return read_iir(u);
    case REG_LCR: return u->lcr;
    case REG_MCR: return u->mcr;
    case REG_LSR: return read_lsr(u);
    case REG_MSR: return read_msr(u);
    default: return u->scr;
    }
}

/*
 * A vCPU must never wait on a broken or stalled console, so one write, never retried. A write
 * into a full pipe or terminal blocks this vCPU, and what interrupts it (EINTR) is the kick
 * that stops or pauses the VM: retrying would keep a VM whose console reader stalled from
 * ever stopping. The byte is dropped instead, as a full non-blocking out_fd drops it (EAGAIN).
 */
static void emit(int fd, uint8_t byte)
{
    if (fd >= 0 && write(fd, &byte, 1) < 0) {
        /* dropped: see above */
    }
}

static void write_thr(struct uart *u, uint8_t byte)
{
    if (u->mcr & MCR_LOOP) {
        if (!rx_push(u, byte))
            u->overrun = true;
    } else {
        emit(u->out_fd, byte);
    }
    /* The byte left at once; the transmitter is empty again, which is a new THRE event. */
    u->thri_pending = true;
    update_irq(u, (u->mcr & MCR_LOOP) != 0);
}

static void write_ier(struct uart *u, uint8_t val)
{
    uint8_t changed = (u->ier ^ val) & IER_MASK;

    u->ier = val & IER_MASK;
    /* Enabling THRE with the holding register empty (always, here) latches the interrupt. */
    if (changed & IER_THRI)
        u->thri_pending = (u->ier & IER_THRI) != 0;
    update_irq(u, false);
}

/*
 * Clearing the receive FIFO drops what the hardware FIFO would hold, not the whole host-side
 * buffer: the rest models bytes still on their way, which a real FIFO reset cannot reach.
 */
static void write_fcr(struct uart *u, uint8_t val, bool *wake)
{
    u->fcr = val & FCR_ENABLE;
    if (val & FCR_CLEAR_RX) {
        size_t n = u->rx_count < HW_FIFO_SIZE ? u->rx_count : HW_FIFO_SIZE;
        u->rx_head = (u->rx_head + n) % UART_RX_CAPACITY;
        u->rx_count -= n;
        update_irq(u, false);
        *wake |= take_space_wakeup(u);
    }
}

static void write_reg(struct uart *u, uint64_t reg, uint8_t val, bool *wake)
{
    bool dlab = u->lcr & LCR_DLAB;

    switch (reg) {
    case REG_RBR_THR:
        if (dlab)
            u->dll = val;
        else
            write_thr(u, val);
        break;
    case REG_IER:
        if (dlab)
            u->dlm = val;
        else
            write_ier(u, val);
        break;
    case REG_IIR_FCR: write_fcr(u, val, wake); break;
    case REG_LCR: u->lcr = val; break;
    case REG_MCR: u->mcr = val & MCR_MASK; break;
    case REG_SCR: u->scr = val; break;
    default: break; /* LSR and MSR writes are factory-test only */
    }
}

/* The wake-up callback, captured under the lock and run after it is dropped. */
struct space_wakeup {
    void (*cb)(void *opaque);
    void *opaque;
};

static struct space_wakeup claim_space_wakeup(struct uart *u, bool wake)
{
    struct space_wakeup w = {NULL, NULL};

    if (wake) {
        w.cb = u->space_cb;
        w.opaque = u->space_opaque;
    }
    return w;
}

static void notify_space(struct space_wakeup w)
{
    if (w.cb)
        w.cb(w.opaque);
}

/* Wide accesses behave like consecutive byte accesses, as the ISA bus would split them. */
static void uart_io_read(void *opaque, uint64_t offset, uint8_t *data, unsigned size)
{
    struct uart *u = opaque;
    struct space_wakeup w;
    bool wake = false;

    pthread_mutex_lock(&u->lock);
    for (unsigned i = 0; i < size; i++)
        data[i] = read_reg(u, offset + i, &wake);
    w = claim_space_wakeup(u, wake);
    pthread_mutex_unlock(&u->lock);
    notify_space(w);
}

static void uart_io_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned size)
{
    struct uart *u = opaque;
    struct space_wakeup w;
    bool wake = false;

    pthread_mutex_lock(&u->lock);
    for (unsigned i = 0; i < size; i++)
        write_reg(u, offset + i, data[i], &wake);
    w = claim_space_wakeup(u, wake);
    pthread_mutex_unlock(&u->lock);
    notify_space(w);
}

struct uart *uart_new(const struct machine_sink *sink, unsigned gsi, int out_fd)
{
    struct uart *u;

    if (!sink)
        return NULL;
    u = calloc(1, sizeof(*u));
    if (!u)
        return NULL;
    if (pthread_mutex_init(&u->lock, NULL)) {
        free(u);
        return NULL;
    }
    u->sink = *sink;
    u->gsi = gsi;
    u->out_fd = out_fd;
    u->dll = DEFAULT_DIVISOR;
    return u;
}

void uart_free(struct uart *uart)
{
    if (!uart)
        return;
    pthread_mutex_destroy(&uart->lock);
    free(uart);
}

int uart_register(struct uart *uart, struct io_bus *pio)
{
    return io_bus_register(pio, X86_COM1_PORT, UART_NR_PORTS, uart_io_read, uart_io_write, uart);
}

size_t uart_receive(struct uart *uart, const uint8_t *buf, size_t len)
{
    size_t taken = 0;

    pthread_mutex_lock(&uart->lock);
    if (uart->mcr & MCR_LOOP) {
        taken = len; /* the serial line is disconnected in loopback: input is lost */
    } else {
        while (taken < len && rx_push(uart, buf[taken]))
            taken++;
        if (taken)
            update_irq(uart, true);
    }
    pthread_mutex_unlock(&uart->lock);
    return taken;
}

size_t uart_rx_space(struct uart *uart)
{
    size_t space;

    pthread_mutex_lock(&uart->lock);
    space = UART_RX_CAPACITY - uart->rx_count;
    pthread_mutex_unlock(&uart->lock);
    return space;
}

void uart_set_rx_space_cb(struct uart *uart, void (*cb)(void *opaque), void *opaque)
{
    pthread_mutex_lock(&uart->lock);
    uart->space_cb = cb;
    uart->space_opaque = opaque;
    pthread_mutex_unlock(&uart->lock);
}

#define TAG_UART SNAP_TAG('u', 'a', 'r', 't')

void uart_save(struct uart *u, struct snap_writer *w)
{
    pthread_mutex_lock(&u->lock);
    snap_begin(w, TAG_UART);
    const uint8_t regs[] = {u->ier, u->lcr, u->mcr, u->scr, u->dll, u->dlm, u->fcr, u->last_rx};
    snap_put_bytes(w, regs, sizeof(regs));
    snap_put_u8(w, u->thri_pending);
    snap_put_u8(w, u->overrun);
    snap_put_u8(w, (uint8_t)u->sources);
    snap_put_u8(w, (uint8_t)u->irq_level);
    snap_put_u32(w, (uint32_t)u->rx_count);
    for (size_t i = 0; i < u->rx_count; i++)
        snap_put_u8(w, u->rx[(u->rx_head + i) % UART_RX_CAPACITY]);
    snap_end(w);
    pthread_mutex_unlock(&u->lock);
}

bool uart_restore(struct uart *u, struct snap_reader *r)
{
    struct snap_reader s;
    snap_section(r, TAG_UART, &s);
    uint8_t regs[8];
    snap_get_bytes(&s, regs, sizeof(regs));
    bool thri_pending = snap_get_u8(&s), overrun = snap_get_u8(&s);
    unsigned sources = snap_get_u8(&s);
    int irq_level = snap_get_u8(&s) != 0;
    uint32_t rx_count = snap_get_u32(&s);
    if (rx_count > UART_RX_CAPACITY || !snap_reader_ok(&s, false))
        return snap_reject(r);
    uint8_t rx[UART_RX_CAPACITY];
    snap_get_bytes(&s, rx, rx_count);
    if (!snap_reader_ok(&s, true))
        return snap_reject(r);
    pthread_mutex_lock(&u->lock);
    u->ier = regs[0] & IER_MASK;
    u->lcr = regs[1];
    u->mcr = regs[2] & MCR_MASK;
    u->scr = regs[3];
    u->dll = regs[4];
    u->dlm = regs[5];
    u->fcr = regs[6];
    u->last_rx = regs[7];
    u->thri_pending = thri_pending;
    u->overrun = overrun;
    u->sources = sources & (SRC_RLS | SRC_RDI | SRC_THRI);
    u->irq_level = irq_level;
    memcpy(u->rx, rx, rx_count);
    u->rx_head = 0;
    u->rx_count = rx_count;
    pthread_mutex_unlock(&u->lock);
    return true;
}
