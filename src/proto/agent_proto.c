#include "agent_proto.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <unistd.h>

/* ---- encoding ---- */

void agent_buf_init(struct agent_buf *buf, uint8_t *data, size_t cap)
{
    buf->data = data;
    buf->len = 0;
    buf->cap = cap;
    buf->overflow = false;
}

void agent_put_bytes(struct agent_buf *buf, const void *data, size_t len)
{
    if (buf->overflow || len > buf->cap - buf->len) {
        buf->overflow = true;
        return;
    }
    if (len > 0)
        memcpy(buf->data + buf->len, data, len);
    buf->len += len;
}

void agent_put_u16(struct agent_buf *buf, uint16_t value)
{
    uint8_t bytes[2] = {(uint8_t)value, (uint8_t)(value >> 8)};
    agent_put_bytes(buf, bytes, sizeof(bytes));
}

void agent_put_u32(struct agent_buf *buf, uint32_t value)
{
    uint8_t bytes[4] = {(uint8_t)value, (uint8_t)(value >> 8), (uint8_t)(value >> 16),
                        (uint8_t)(value >> 24)};
    agent_put_bytes(buf, bytes, sizeof(bytes));
}

void agent_put_string(struct agent_buf *buf, const char *text)
{
    agent_put_bytes(buf, text, strlen(text) + 1);
}

static void store_u32(uint8_t *at, uint32_t value)
{
    at[0] = (uint8_t)value;
    at[1] = (uint8_t)(value >> 8);
    at[2] = (uint8_t)(value >> 16);
    at[3] = (uint8_t)(value >> 24);
}

size_t agent_frame_begin(struct agent_buf *buf, uint16_t type)
{
    size_t start = buf->len;
    agent_put_u32(buf, 0); /* the length, filled in by agent_frame_end */
    agent_put_u16(buf, type);
    agent_put_u16(buf, 0);
    return start;
}

bool agent_frame_end(struct agent_buf *buf, size_t start)
{
    if (buf->overflow || buf->len - start > AGENT_FRAME_MAX) {
        buf->overflow = true;
        buf->len = start; /* drop the partial frame */
        return false;
    }
    store_u32(buf->data + start, (uint32_t)(buf->len - start - AGENT_HEADER_SIZE));
    return true;
}

bool agent_encode_empty(struct agent_buf *buf, uint16_t type)
{
    return agent_frame_end(buf, agent_frame_begin(buf, type));
}

bool agent_encode_resume(struct agent_buf *buf, const struct agent_resume *resume)
{
    size_t start = agent_frame_begin(buf, AGENT_RESUME);
    uint64_t sec = (uint64_t)resume->realtime_sec;
    agent_put_u32(buf, (uint32_t)sec);
    agent_put_u32(buf, (uint32_t)(sec >> 32));
    agent_put_u32(buf, resume->realtime_nsec);
    agent_put_bytes(buf, resume->entropy, sizeof(resume->entropy));
    return agent_frame_end(buf, start);
}

bool agent_encode_u32(struct agent_buf *buf, uint16_t type, uint32_t value)
{
    size_t start = agent_frame_begin(buf, type);
    agent_put_u32(buf, value);
    return agent_frame_end(buf, start);
}

bool agent_encode_data(struct agent_buf *buf, uint16_t type, const void *data, size_t len)
{
    if (len > AGENT_CHUNK_MAX) {
        buf->overflow = true;
        return false;
    }
    size_t start = agent_frame_begin(buf, type);
    agent_put_bytes(buf, data, len);
    return agent_frame_end(buf, start);
}

bool agent_encode_hello(struct agent_buf *buf, const struct agent_hello *hello)
{
    size_t start = agent_frame_begin(buf, AGENT_HELLO);
    agent_put_u32(buf, hello->version);
    agent_put_u32(buf, hello->frame_max);
    return agent_frame_end(buf, start);
}

bool agent_encode_exec(struct agent_buf *buf, const struct agent_exec_request *request)
{
    size_t start = agent_frame_begin(buf, AGENT_EXEC);
    agent_put_u32(buf, request->flags);
    agent_put_u32(buf, request->uid);
    agent_put_u32(buf, request->gid);
    agent_put_u16(buf, request->rows);
    agent_put_u16(buf, request->cols);
    agent_put_u32(buf, request->argc);
    agent_put_u32(buf, request->envc);
    agent_put_string(buf, request->cwd);
    for (uint32_t i = 0; i < request->argc; i++)
        agent_put_string(buf, request->argv[i]);
    for (uint32_t i = 0; i < request->envc; i++)
        agent_put_string(buf, request->env[i]);
    return agent_frame_end(buf, start);
}

bool agent_encode_failure(struct agent_buf *buf, uint16_t type, const struct agent_failure *failure)
{
    size_t start = agent_frame_begin(buf, type);
    agent_put_u32(buf, (uint32_t)failure->err);
    if (type == AGENT_EXEC_FAILED)
        agent_put_u32(buf, failure->step);
    size_t len = strnlen(failure->message, AGENT_MAX_MESSAGE);
    agent_put_bytes(buf, failure->message, len);
    agent_put_bytes(buf, "", 1);
    return agent_frame_end(buf, start);
}

bool agent_encode_exit(struct agent_buf *buf, const struct agent_exit *exit_status)
{
    size_t start = agent_frame_begin(buf, AGENT_EXIT);
    agent_put_u32(buf, exit_status->kind);
    agent_put_u32(buf, (uint32_t)exit_status->code);
    return agent_frame_end(buf, start);
}

bool agent_encode_winsize(struct agent_buf *buf, uint16_t rows, uint16_t cols)
{
    size_t start = agent_frame_begin(buf, AGENT_WINSIZE);
    agent_put_u16(buf, rows);
    agent_put_u16(buf, cols);
    return agent_frame_end(buf, start);
}

bool agent_encode_file(struct agent_buf *buf, uint16_t type, const struct agent_file_request *file)
{
    size_t start = agent_frame_begin(buf, type);
    if (type == AGENT_FILE_PUT)
        agent_put_u32(buf, file->mode);
    agent_put_string(buf, file->path);
    return agent_frame_end(buf, start);
}

/* ---- decoding ---- */

static uint16_t load_u16(const uint8_t *at)
{
    return (uint16_t)(at[0] | at[1] << 8);
}

static uint32_t load_u32(const uint8_t *at)
{
    return (uint32_t)at[0] | (uint32_t)at[1] << 8 | (uint32_t)at[2] << 16 |
           (uint32_t)at[3] << 24;
}

bool agent_type_known(uint16_t type)
{
    return agent_type_name(type) != NULL;
}

const char *agent_type_name(uint16_t type)
{
    switch (type) {
    case AGENT_HELLO: return "HELLO";
    case AGENT_ERROR: return "ERROR";
    case AGENT_OK: return "OK";
    case AGENT_EXEC: return "EXEC";
    case AGENT_STARTED: return "STARTED";
    case AGENT_EXEC_FAILED: return "EXEC_FAILED";
    case AGENT_EXIT: return "EXIT";
    case AGENT_STDIN: return "STDIN";
    case AGENT_STDIN_EOF: return "STDIN_EOF";
    case AGENT_STDIN_ACK: return "STDIN_ACK";
    case AGENT_STDOUT: return "STDOUT";
    case AGENT_STDERR: return "STDERR";
    case AGENT_SIGNAL: return "SIGNAL";
    case AGENT_WINSIZE: return "WINSIZE";
    case AGENT_FILE_PUT: return "FILE_PUT";
    case AGENT_FILE_GET: return "FILE_GET";
    case AGENT_DATA: return "DATA";
    case AGENT_DATA_END: return "DATA_END";
    case AGENT_SHUTDOWN: return "SHUTDOWN";
    case AGENT_RESUME: return "RESUME";
    default: return NULL;
    }
}

ssize_t agent_frame_decode(const uint8_t *data, size_t len, struct agent_frame *frame)
{
    if (len < AGENT_HEADER_SIZE)
        return 0;
    uint32_t length = load_u32(data);
    uint16_t type = load_u16(data + 4);
    uint16_t flags = load_u16(data + 6);
    if (length > AGENT_PAYLOAD_MAX)
        return -EMSGSIZE;
    if (flags != 0 || !agent_type_known(type))
        return -EPROTO;
    if (len - AGENT_HEADER_SIZE < length)
        return 0;
    frame->type = type;
    frame->length = length;
    frame->payload = data + AGENT_HEADER_SIZE;
    return (ssize_t)(AGENT_HEADER_SIZE + length);
}

/* A cursor over a payload; any read past its end marks it bad. */
struct cursor {
    const uint8_t *at;
    size_t left;
    bool bad;
};

static struct cursor cursor_of(const struct agent_frame *frame)
{
    return (struct cursor){.at = frame->payload, .left = frame->length, .bad = false};
}

static uint32_t take_u32(struct cursor *c)
{
    if (c->bad || c->left < 4) {
        c->bad = true;
        return 0;
    }
    uint32_t value = load_u32(c->at);
    c->at += 4;
    c->left -= 4;
    return value;
}

static uint16_t take_u16(struct cursor *c)
{
    if (c->bad || c->left < 2) {
        c->bad = true;
        return 0;
    }
    uint16_t value = load_u16(c->at);
    c->at += 2;
    c->left -= 2;
    return value;
}

/* A NUL-terminated string of at most max bytes before its terminator. */
static const char *take_string(struct cursor *c, size_t max)
{
    if (c->bad)
        return NULL;
    size_t scan = c->left < max + 1 ? c->left : max + 1;
    const uint8_t *nul = memchr(c->at, '\0', scan);
    if (nul == NULL) {
        c->bad = true;
        return NULL;
    }
    const char *text = (const char *)c->at;
    size_t used = (size_t)(nul - c->at) + 1;
    c->at += used;
    c->left -= used;
    return text;
}

/* The payload was consumed exactly and nothing went wrong. */
static int cursor_done(const struct cursor *c)
{
    return c->bad || c->left != 0 ? -EPROTO : 0;
}

int agent_parse_empty(const struct agent_frame *frame)
{
    return frame->length == 0 ? 0 : -EPROTO;
}

int agent_parse_resume(const struct agent_frame *frame, struct agent_resume *resume)
{
    if (frame->type != AGENT_RESUME || frame->length != 12 + AGENT_RESUME_ENTROPY)
        return -EPROTO;
    struct cursor c = cursor_of(frame);
    uint64_t low = take_u32(&c);
    uint64_t high = take_u32(&c);
    resume->realtime_sec = (int64_t)(high << 32 | low);
    resume->realtime_nsec = take_u32(&c);
    memcpy(resume->entropy, c.at, AGENT_RESUME_ENTROPY);
    c.left -= AGENT_RESUME_ENTROPY;
    if (resume->realtime_nsec >= 1000000000u || resume->realtime_sec < 0)
        return -EPROTO;
    return cursor_done(&c);
}

int agent_parse_u32(const struct agent_frame *frame, uint32_t *value)
{
    struct cursor c = cursor_of(frame);
    *value = take_u32(&c);
    return cursor_done(&c);
}

int agent_parse_hello(const struct agent_frame *frame, struct agent_hello *hello)
{
    if (frame->type != AGENT_HELLO)
        return -EPROTO;
    struct cursor c = cursor_of(frame);
    hello->version = take_u32(&c);
    hello->frame_max = take_u32(&c);
    return cursor_done(&c);
}

static bool valid_env_entry(const char *entry)
{
    const char *equals = strchr(entry, '=');
    return equals != NULL && equals != entry;
}

int agent_parse_exec(const struct agent_frame *frame, struct agent_exec_request *request)
{
    if (frame->type != AGENT_EXEC)
        return -EPROTO;
    struct cursor c = cursor_of(frame);
    request->flags = take_u32(&c);
    request->uid = take_u32(&c);
    request->gid = take_u32(&c);
    request->rows = take_u16(&c);
    request->cols = take_u16(&c);
    request->argc = take_u32(&c);
    request->envc = take_u32(&c);
    if (c.bad || (request->flags & ~(AGENT_EXEC_TTY | AGENT_EXEC_STDIN)) != 0 ||
        request->argc < 1 || request->argc > AGENT_MAX_ARGS || request->envc > AGENT_MAX_ENV)
        return -EPROTO;
    request->cwd = take_string(&c, AGENT_MAX_PATH);
    if (c.bad || request->cwd[0] != '/')
        return -EPROTO;
    for (uint32_t i = 0; i < request->argc; i++)
        request->argv[i] = take_string(&c, AGENT_MAX_STRING);
    request->argv[request->argc] = NULL;
    if (c.bad || request->argv[0][0] == '\0')
        return -EPROTO;
    for (uint32_t i = 0; i < request->envc; i++) {
        request->env[i] = take_string(&c, AGENT_MAX_STRING);
        if (c.bad || !valid_env_entry(request->env[i]))
            return -EPROTO;
    }
    request->env[request->envc] = NULL;
    return cursor_done(&c);
}

int agent_parse_failure(const struct agent_frame *frame, struct agent_failure *failure)
{
    if (frame->type != AGENT_ERROR && frame->type != AGENT_EXEC_FAILED)
        return -EPROTO;
    struct cursor c = cursor_of(frame);
    failure->err = (int32_t)take_u32(&c);
    failure->step = frame->type == AGENT_EXEC_FAILED ? take_u32(&c) : AGENT_STEP_EXEC;
    failure->message = take_string(&c, AGENT_MAX_MESSAGE);
    if (failure->step > AGENT_STEP_IDS)
        return -EPROTO;
    return cursor_done(&c);
}

int agent_parse_exit(const struct agent_frame *frame, struct agent_exit *exit_status)
{
    if (frame->type != AGENT_EXIT)
        return -EPROTO;
    struct cursor c = cursor_of(frame);
    exit_status->kind = take_u32(&c);
    exit_status->code = (int32_t)take_u32(&c);
    if (exit_status->kind == AGENT_EXIT_CODE && (exit_status->code < 0 || exit_status->code > 255))
        return -EPROTO;
    if (exit_status->kind == AGENT_EXIT_SIGNAL && (exit_status->code < 1 || exit_status->code > 64))
        return -EPROTO;
    if (exit_status->kind > AGENT_EXIT_SIGNAL)
        return -EPROTO;
    return cursor_done(&c);
}

int agent_parse_signal(const struct agent_frame *frame, int *signo)
{
    uint32_t value = 0;
    if (frame->type != AGENT_SIGNAL || agent_parse_u32(frame, &value) < 0 || value < 1 ||
        value > 64)
        return -EPROTO;
    *signo = (int)value;
    return 0;
}

int agent_parse_winsize(const struct agent_frame *frame, uint16_t *rows, uint16_t *cols)
{
    if (frame->type != AGENT_WINSIZE)
        return -EPROTO;
    struct cursor c = cursor_of(frame);
    *rows = take_u16(&c);
    *cols = take_u16(&c);
    if (cursor_done(&c) < 0 || *rows == 0 || *cols == 0)
        return -EPROTO;
    return 0;
}

int agent_parse_file(const struct agent_frame *frame, struct agent_file_request *file)
{
    if (frame->type != AGENT_FILE_PUT && frame->type != AGENT_FILE_GET)
        return -EPROTO;
    struct cursor c = cursor_of(frame);
    file->mode = frame->type == AGENT_FILE_PUT ? take_u32(&c) : 0;
    file->path = take_string(&c, AGENT_MAX_PATH);
    if (cursor_done(&c) < 0 || file->mode > 07777 || file->path[0] == '\0')
        return -EPROTO;
    return 0;
}

int agent_parse_data(const struct agent_frame *frame)
{
    return frame->length <= AGENT_CHUNK_MAX ? 0 : -EPROTO;
}

/* ---- the incremental reader ---- */

int agent_reader_init(struct agent_reader *reader)
{
    reader->buf = malloc(AGENT_FRAME_MAX);
    reader->start = 0;
    reader->end = 0;
    return reader->buf != NULL ? 0 : -ENOMEM;
}

void agent_reader_destroy(struct agent_reader *reader)
{
    free(reader->buf);
    reader->buf = NULL;
}

ssize_t agent_reader_fill(struct agent_reader *reader, int fd)
{
    if (reader->start > 0) {
        memmove(reader->buf, reader->buf + reader->start, reader->end - reader->start);
        reader->end -= reader->start;
        reader->start = 0;
    }
    if (reader->end == AGENT_FRAME_MAX)
        return -ENOBUFS; /* cannot happen: a complete frame is always taken first */
    ssize_t n;
    do {
        n = read(fd, reader->buf + reader->end, AGENT_FRAME_MAX - reader->end);
    } while (n < 0 && errno == EINTR);
    if (n < 0)
        return -errno;
    reader->end += (size_t)n;
    return n;
}

int agent_reader_next(struct agent_reader *reader, struct agent_frame *frame)
{
    ssize_t size = agent_frame_decode(reader->buf + reader->start, reader->end - reader->start,
                                      frame);
    if (size <= 0)
        return (int)size;
    reader->start += (size_t)size;
    return 1;
}

size_t agent_reader_pending(const struct agent_reader *reader)
{
    return reader->end - reader->start;
}

/* ---- stream helpers ---- */

int agent_write_all(int fd, const void *data, size_t len, agent_wait_fn wait, void *opaque)
{
    const uint8_t *at = data;
    bool socket = true; /* until the descriptor says otherwise */
    while (len > 0) {
        ssize_t n = socket ? send(fd, at, len, MSG_NOSIGNAL) : write(fd, at, len);
        if (n < 0 && errno == ENOTSOCK && socket) {
            socket = false;
            continue;
        }
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN && wait != NULL) {
            int err = wait(fd, opaque);
            if (err < 0)
                return err;
            continue;
        }
        if (n < 0)
            return -errno;
        at += n;
        len -= (size_t)n;
    }
    return 0;
}

int agent_read_frame(struct agent_reader *reader, int fd, struct agent_frame *frame,
                     agent_wait_fn wait, void *opaque)
{
    for (;;) {
        int got = agent_reader_next(reader, frame);
        if (got != 0)
            return got;
        ssize_t n = agent_reader_fill(reader, fd);
        if (n == -EAGAIN && wait != NULL) {
            int err = wait(fd, opaque);
            if (err < 0)
                return err;
            continue;
        }
        if (n == 0 && agent_reader_pending(reader) > 0)
            return -EPROTO; /* the stream ended inside a frame */
        if (n <= 0)
            return (int)n;
    }
}
