/*
 * i8042 controller: a command byte, an output port and a one-byte output buffer. Every
 * command produces at most one byte of output, so one byte of buffer is enough and the guest
 * cannot make it grow.
 */
#include "devices/i8042.h"

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>

#include "arch/x86_64/layout.h"

#define STATUS_OBF 0x01      /* output buffer full: data waits at port 0x60 */
#define STATUS_SYSFLAG 0x04  /* mirrors command byte bit 2 (POST passed) */
#define STATUS_CMD 0x08      /* the last write went to the command port */
#define STATUS_UNLOCKED 0x10 /* keyboard not inhibited by the key lock */

#define CB_SYSFLAG 0x04
#define CB_KBD_DISABLE 0x10
#define CB_AUX_DISABLE 0x20
#define CB_DEFAULT 0x45 /* keyboard interrupt, POST passed, scancode translation */

#define OUTPORT_RESET 0x01 /* active low: clearing it resets the CPU */
#define OUTPORT_DEFAULT 0xcf

#define CMD_READ_CB 0x20
#define CMD_WRITE_CB 0x60
#define CMD_AUX_DISABLE 0xa7
#define CMD_AUX_ENABLE 0xa8
#define CMD_SELF_TEST 0xaa
#define CMD_KBD_TEST 0xab
#define CMD_KBD_DISABLE 0xad
#define CMD_KBD_ENABLE 0xae
#define CMD_READ_OUTPORT 0xd0
#define CMD_WRITE_OUTPORT 0xd1
#define CMD_WRITE_KBD_OBUF 0xd2
#define CMD_WRITE_AUX_OBUF 0xd3
#define CMD_WRITE_AUX 0xd4
#define CMD_PULSE_BASE 0xf0 /* 0xf0-0xff pulse output lines; a clear bit 0 pulses reset */

#define SELF_TEST_OK 0x55
#define KBD_TEST_OK 0x00

struct i8042 {
    pthread_mutex_t lock;
    struct machine_sink sink;
    uint8_t cb;          /* controller command byte */
    uint8_t outport;
    uint8_t pending_cmd; /* command waiting for its parameter on port 0x60; 0 when none */
    uint8_t obuf;
    bool obf;
    bool last_was_cmd;
};

static void push_output(struct i8042 *k, uint8_t byte)
{
    k->obuf = byte;
    k->obf = true;
}

static void set_bit(uint8_t *reg, uint8_t bit, bool on)
{
    *reg = on ? (*reg | bit) : (*reg & ~bit);
}

/* Returns true when the command asks for a machine reset. */
static bool run_command(struct i8042 *k, uint8_t cmd)
{
    k->pending_cmd = 0; /* a new command abandons one still waiting for its parameter */
    switch (cmd) {
    case CMD_READ_CB: push_output(k, k->cb); break;
    case CMD_AUX_DISABLE: set_bit(&k->cb, CB_AUX_DISABLE, true); break;
    case CMD_AUX_ENABLE: set_bit(&k->cb, CB_AUX_DISABLE, false); break;
    case CMD_SELF_TEST: push_output(k, SELF_TEST_OK); break;
    case CMD_KBD_TEST: push_output(k, KBD_TEST_OK); break;
    case CMD_KBD_DISABLE: set_bit(&k->cb, CB_KBD_DISABLE, true); break;
    case CMD_KBD_ENABLE: set_bit(&k->cb, CB_KBD_DISABLE, false); break;
    case CMD_READ_OUTPORT: push_output(k, k->outport); break;
    case CMD_WRITE_CB:
    case CMD_WRITE_OUTPORT:
    case CMD_WRITE_KBD_OBUF:
    case CMD_WRITE_AUX_OBUF:
    case CMD_WRITE_AUX: k->pending_cmd = cmd; break;
    default: return cmd >= CMD_PULSE_BASE && !(cmd & OUTPORT_RESET);
    }
    return false;
}

/* A data byte is either a pending command's parameter or meant for the (absent) keyboard. */
static bool write_data(struct i8042 *k, uint8_t val)
{
    uint8_t cmd = k->pending_cmd;

    k->pending_cmd = 0;
    switch (cmd) {
    case CMD_WRITE_CB: k->cb = val; break;
    case CMD_WRITE_OUTPORT:
        k->outport = val;
        return !(val & OUTPORT_RESET);
    case CMD_WRITE_KBD_OBUF:
    case CMD_WRITE_AUX_OBUF: push_output(k, val); break;
    default: break; /* no device answers; the guest's own timeout handles it */
    }
    return false;
}

static uint8_t read_status(const struct i8042 *k)
{
    return STATUS_UNLOCKED | (k->cb & CB_SYSFLAG ? STATUS_SYSFLAG : 0) |
           (k->last_was_cmd ? STATUS_CMD : 0) | (k->obf ? STATUS_OBF : 0);
}

static uint8_t read_data(struct i8042 *k)
{
    k->obf = false;
    return k->obuf; /* with nothing new, the last byte is read again as on hardware */
}

static void fire_reset(struct i8042 *k, bool reset)
{
    if (reset && k->sink.event)
        k->sink.event(k->sink.ctx, MACHINE_EVENT_RESET);
}

/* Each range is one port; a wide access cannot reach here because the bus rejects it. */
static void data_read(void *opaque, uint64_t offset, uint8_t *data, unsigned size)
{
    struct i8042 *k = opaque;

    (void)offset;
    (void)size;
    pthread_mutex_lock(&k->lock);
    data[0] = read_data(k);
    pthread_mutex_unlock(&k->lock);
}

static void data_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned size)
{
    struct i8042 *k = opaque;
    bool reset;

    (void)offset;
    (void)size;
    pthread_mutex_lock(&k->lock);
    k->last_was_cmd = false;
    reset = write_data(k, data[0]);
    pthread_mutex_unlock(&k->lock);
    fire_reset(k, reset);
}

static void command_read(void *opaque, uint64_t offset, uint8_t *data, unsigned size)
{
    struct i8042 *k = opaque;

    (void)offset;
    (void)size;
    pthread_mutex_lock(&k->lock);
    data[0] = read_status(k);
    pthread_mutex_unlock(&k->lock);
}

static void command_write(void *opaque, uint64_t offset, const uint8_t *data, unsigned size)
{
    struct i8042 *k = opaque;
    bool reset;

    (void)offset;
    (void)size;
    pthread_mutex_lock(&k->lock);
    k->last_was_cmd = true;
    reset = run_command(k, data[0]);
    pthread_mutex_unlock(&k->lock);
    fire_reset(k, reset);
}

struct i8042 *i8042_new(const struct machine_sink *sink)
{
    struct i8042 *k;

    if (!sink)
        return NULL;
    k = calloc(1, sizeof(*k));
    if (!k)
        return NULL;
    if (pthread_mutex_init(&k->lock, NULL)) {
        free(k);
        return NULL;
    }
    k->sink = *sink;
    k->cb = CB_DEFAULT;
    k->outport = OUTPORT_DEFAULT;
    return k;
}

void i8042_free(struct i8042 *i8042)
{
    if (!i8042)
        return;
    pthread_mutex_destroy(&i8042->lock);
    free(i8042);
}

int i8042_register(struct i8042 *i8042, struct io_bus *pio)
{
    int err = io_bus_register(pio, X86_I8042_DATA_PORT, 1, data_read, data_write, i8042);

    if (err)
        return err;
    return io_bus_register(pio, X86_I8042_COMMAND_PORT, 1, command_read, command_write, i8042);
}

#define TAG_I8042 SNAP_TAG('8', '0', '4', '2')

void i8042_save(struct i8042 *k, struct snap_writer *w)
{
    pthread_mutex_lock(&k->lock);
    snap_begin(w, TAG_I8042);
    const uint8_t regs[] = {k->cb, k->outport, k->pending_cmd, k->obuf, k->obf, k->last_was_cmd};
    snap_put_bytes(w, regs, sizeof(regs));
    snap_end(w);
    pthread_mutex_unlock(&k->lock);
}

bool i8042_restore(struct i8042 *k, struct snap_reader *r)
{
    struct snap_reader s;
    snap_section(r, TAG_I8042, &s);
    uint8_t regs[6];
    snap_get_bytes(&s, regs, sizeof(regs));
    if (!snap_reader_ok(&s, true))
        return snap_reject(r);
    pthread_mutex_lock(&k->lock);
    k->cb = regs[0];
    k->outport = regs[1];
    k->pending_cmd = regs[2];
    k->obuf = regs[3];
    k->obf = regs[4] != 0;
    k->last_was_cmd = regs[5] != 0;
    pthread_mutex_unlock(&k->lock);
    return true;
}
