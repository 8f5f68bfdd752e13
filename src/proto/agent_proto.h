/*
 * The cove-agent protocol's codec (docs/agent-protocol.md), shared by libcove (host) and
 * cove-agent (guest). It turns bytes into messages and back, plus the stream helpers both
 * sides share; how long to wait is always the caller's choice. No global state, and it never
 * allocates more than its fixed limits allow.
 *
 * A frame is an 8-byte header (u32 payload length, u16 type, u16 flags that must be zero,
 * all little endian) followed by the payload. Strings in payloads end with a NUL byte, so a
 * parsed message points straight into the frame it came from.
 */
#ifndef COVE_AGENT_PROTO_H
#define COVE_AGENT_PROTO_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/types.h>

#define AGENT_PROTO_VERSION 1

#define AGENT_HEADER_SIZE 8
#define AGENT_FRAME_MAX (256u * 1024)                        /* header included */
#define AGENT_PAYLOAD_MAX (AGENT_FRAME_MAX - AGENT_HEADER_SIZE)
#define AGENT_CHUNK_MAX (64u * 1024)   /* data in one STDIN/STDOUT/STDERR/DATA frame */
#define AGENT_STDIN_WINDOW (256u * 1024) /* STDIN bytes the host may have unacknowledged */
#define AGENT_MAX_ARGS 1024
#define AGENT_MAX_ENV 1024
#define AGENT_MAX_STRING (32u * 1024) /* one argv or env entry, terminator excluded */
#define AGENT_MAX_PATH 4095           /* cwd and file paths, terminator excluded */
#define AGENT_MAX_MESSAGE 255         /* ERROR / EXEC_FAILED text, terminator excluded */

enum agent_type {
    AGENT_HELLO = 1,
    AGENT_ERROR = 2,
    AGENT_OK = 3,
    AGENT_EXEC = 16,
    AGENT_STARTED = 17,
    AGENT_EXEC_FAILED = 18,
    AGENT_EXIT = 19,
    AGENT_STDIN = 20,
    AGENT_STDIN_EOF = 21,
    AGENT_STDIN_ACK = 22,
    AGENT_STDOUT = 23,
    AGENT_STDERR = 24,
    AGENT_SIGNAL = 25,
    AGENT_WINSIZE = 26,
    AGENT_FILE_PUT = 32,
    AGENT_FILE_GET = 33,
    AGENT_DATA = 34,
    AGENT_DATA_END = 35,
    AGENT_SHUTDOWN = 48,
    AGENT_RESUME = 49,
};

#define AGENT_EXEC_TTY 1u   /* run on a pseudo-terminal */
#define AGENT_EXEC_STDIN 2u /* the host sends stdin; without it the command reads EOF */

#define AGENT_EXIT_CODE 0u   /* exited: code is the status */
#define AGENT_EXIT_SIGNAL 1u /* killed: code is the signal number */

/* One frame; payload points into the buffer it was decoded from. */
struct agent_frame {
    uint16_t type;
    uint32_t length;
    const uint8_t *payload;
};

struct agent_hello {
    uint32_t version;
    uint32_t frame_max;
};

struct agent_exec_request {
    uint32_t flags;
    uint32_t uid;
    uint32_t gid;
    uint16_t rows;
    uint16_t cols;
    const char *cwd;
    uint32_t argc;
    uint32_t envc;
    const char *argv[AGENT_MAX_ARGS + 1]; /* NULL-terminated */
    const char *env[AGENT_MAX_ENV + 1];   /* NULL-terminated */
};

/* Which step of starting a command failed (EXEC_FAILED). */
#define AGENT_STEP_EXEC 0u /* execvp: ENOENT means the command was not found */
#define AGENT_STEP_CWD 1u  /* chdir to the requested working directory */
#define AGENT_STEP_IDS 2u  /* switching to the requested uid/gid */

/* ERROR and EXEC_FAILED: an errno and one line; EXEC_FAILED also names the step. */
struct agent_failure {
    int32_t err;
    uint32_t step; /* AGENT_STEP_*; AGENT_STEP_EXEC for ERROR */
    const char *message;
};

struct agent_exit {
    uint32_t kind; /* AGENT_EXIT_* */
    int32_t code;
};

struct agent_file_request {
    uint32_t mode; /* FILE_PUT only */
    const char *path;
};

/* RESUME: the guest was restored from a snapshot; the host's clock and fresh entropy. */
#define AGENT_RESUME_ENTROPY 32
struct agent_resume {
    int64_t realtime_sec; /* CLOCK_REALTIME on the host */
    uint32_t realtime_nsec;
    uint8_t entropy[AGENT_RESUME_ENTROPY];
};

/* ---- encoding: a frame is built into a caller-owned buffer ---- */

struct agent_buf {
    uint8_t *data;
    size_t len;
    size_t cap;
    bool overflow; /* something did not fit: the frame must not be sent */
};

void agent_buf_init(struct agent_buf *buf, uint8_t *data, size_t cap);
/* Starts a frame of type at buf->len; agent_frame_end fills in its length. Returns the
 * frame's offset for agent_frame_end. */
size_t agent_frame_begin(struct agent_buf *buf, uint16_t type);
/* Returns false when the frame overflowed the buffer or AGENT_FRAME_MAX. */
bool agent_frame_end(struct agent_buf *buf, size_t start);
void agent_put_u16(struct agent_buf *buf, uint16_t value);
void agent_put_u32(struct agent_buf *buf, uint32_t value);
void agent_put_bytes(struct agent_buf *buf, const void *data, size_t len);
void agent_put_string(struct agent_buf *buf, const char *text); /* with its terminator */

/* Whole messages; each returns false if it did not fit. */
bool agent_encode_empty(struct agent_buf *buf, uint16_t type);
bool agent_encode_u32(struct agent_buf *buf, uint16_t type, uint32_t value);
bool agent_encode_data(struct agent_buf *buf, uint16_t type, const void *data, size_t len);
bool agent_encode_hello(struct agent_buf *buf, const struct agent_hello *hello);
bool agent_encode_exec(struct agent_buf *buf, const struct agent_exec_request *request);
/* ERROR, or EXEC_FAILED with failure->step; a longer message is cut at AGENT_MAX_MESSAGE. */
bool agent_encode_failure(struct agent_buf *buf, uint16_t type, const struct agent_failure *failure);
bool agent_encode_exit(struct agent_buf *buf, const struct agent_exit *exit_status);
bool agent_encode_winsize(struct agent_buf *buf, uint16_t rows, uint16_t cols);
bool agent_encode_file(struct agent_buf *buf, uint16_t type, const struct agent_file_request *file);
bool agent_encode_resume(struct agent_buf *buf, const struct agent_resume *resume);

/* ---- decoding ---- */

/*
 * Decodes one frame from the start of data. Returns the frame's size when it is complete, 0
 * when more bytes are needed, or -EPROTO (nonzero flags, unknown type) / -EMSGSIZE (longer
 * than AGENT_FRAME_MAX) when the stream cannot be trusted any further.
 */
ssize_t agent_frame_decode(const uint8_t *data, size_t len, struct agent_frame *frame);
bool agent_type_known(uint16_t type);
const char *agent_type_name(uint16_t type);

/* The parsers check the payload completely (lengths, counts, terminators, limits, no trailing
 * bytes) and return 0 or -EPROTO. Strings point into the frame. */
int agent_parse_empty(const struct agent_frame *frame);
int agent_parse_u32(const struct agent_frame *frame, uint32_t *value);
int agent_parse_hello(const struct agent_frame *frame, struct agent_hello *hello);
int agent_parse_exec(const struct agent_frame *frame, struct agent_exec_request *request);
int agent_parse_failure(const struct agent_frame *frame, struct agent_failure *failure);
int agent_parse_exit(const struct agent_frame *frame, struct agent_exit *exit_status);
int agent_parse_signal(const struct agent_frame *frame, int *signo);
int agent_parse_winsize(const struct agent_frame *frame, uint16_t *rows, uint16_t *cols);
int agent_parse_file(const struct agent_frame *frame, struct agent_file_request *file);
/* RESUME: exactly the fields above, nanoseconds below one second. */
int agent_parse_resume(const struct agent_frame *frame, struct agent_resume *resume);
/* STDIN/STDOUT/STDERR/DATA: at most AGENT_CHUNK_MAX bytes. */
int agent_parse_data(const struct agent_frame *frame);

/* ---- an incremental frame reader over a stream ---- */

struct agent_reader {
    uint8_t *buf; /* AGENT_FRAME_MAX bytes */
    size_t start;
    size_t end;
};

int agent_reader_init(struct agent_reader *reader); /* 0 or -ENOMEM */
void agent_reader_destroy(struct agent_reader *reader);
/* One read() from fd. Returns the bytes read, 0 at end of stream, or a negative errno
 * (-EAGAIN on a nonblocking fd with nothing to read). Invalidates earlier frames. */
ssize_t agent_reader_fill(struct agent_reader *reader, int fd);
/* The next complete frame: 1, 0 when more bytes are needed, or a negative errno as for
 * agent_frame_decode. The frame stays valid until the next fill. */
int agent_reader_next(struct agent_reader *reader, struct agent_frame *frame);
/* Bytes received that are not part of a returned frame yet. */
size_t agent_reader_pending(const struct agent_reader *reader);

/* ---- stream helpers ---- */

/* Called when fd would block: waits until it may be ready (the caller's events and time
 * limit), returning 0 to try again or a negative errno to give up. */
typedef int (*agent_wait_fn)(int fd, void *opaque);

/* Writes all of data, across short writes and EINTR; on EAGAIN asks wait (NULL: gives up with
 * -EAGAIN). Sockets are written with MSG_NOSIGNAL, so a peer that left gives -EPIPE and no
 * SIGPIPE. Returns 0 or a negative errno. */
int agent_write_all(int fd, const void *data, size_t len, agent_wait_fn wait, void *opaque);
/* The next frame from fd through reader, asking wait on EAGAIN: 1, 0 at the end of the
 * stream between frames, -EPROTO when it ends inside one, or a negative errno (a malformed
 * frame as for agent_frame_decode). */
int agent_read_frame(struct agent_reader *reader, int fd, struct agent_frame *frame,
                     agent_wait_fn wait, void *opaque);

#endif
