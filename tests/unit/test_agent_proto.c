/* Unit tests of the cove-agent protocol's codec (src/proto/agent_proto.c). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "agent_proto.h"

static uint8_t frame_data[AGENT_FRAME_MAX + 64];

/* Decodes the one frame buf holds, which must be all of it. */
static struct agent_frame decode_one(const struct agent_buf *buf)
{
    assert_false(buf->overflow);
    struct agent_frame frame;
    assert_int_equal(agent_frame_decode(buf->data, buf->len, &frame), (ssize_t)buf->len);
    return frame;
}

static struct agent_buf fresh_buf(void)
{
    struct agent_buf buf;
    agent_buf_init(&buf, frame_data, sizeof(frame_data));
    return buf;
}

/* A frame with a hand-made payload. */
static struct agent_frame raw_frame(uint16_t type, const void *payload, size_t len)
{
    return (struct agent_frame){.type = type, .length = (uint32_t)len, .payload = payload};
}

/* ---- round trips ---- */

static void hello_round_trip(void **state)
{
    (void)state;
    struct agent_buf buf = fresh_buf();
    struct agent_hello in = {.version = AGENT_PROTO_VERSION, .frame_max = AGENT_FRAME_MAX};
    assert_true(agent_encode_hello(&buf, &in));
    assert_int_equal(buf.len, AGENT_HEADER_SIZE + 8);
    /* little endian on the wire, whatever the host */
    assert_int_equal(buf.data[0], 8);
    assert_int_equal(buf.data[4], AGENT_HELLO);
    struct agent_frame frame = decode_one(&buf);
    struct agent_hello out;
    assert_int_equal(agent_parse_hello(&frame, &out), 0);
    assert_int_equal(out.version, in.version);
    assert_int_equal(out.frame_max, in.frame_max);
}

static void exec_round_trip(void **state)
{
    (void)state;
    static struct agent_exec_request in, out;
    in = (struct agent_exec_request){
        .flags = AGENT_EXEC_TTY | AGENT_EXEC_STDIN, .uid = 1000, .gid = 100, .rows = 50,
        .cols = 132, .cwd = "/srv", .argc = 3, .envc = 2,
        .argv = {"sh", "-c", "echo \"$A\""}, .env = {"A=1=2", "EMPTY="}};
    struct agent_buf buf = fresh_buf();
    assert_true(agent_encode_exec(&buf, &in));
    struct agent_frame frame = decode_one(&buf);
    assert_int_equal(agent_parse_exec(&frame, &out), 0);
    assert_int_equal(out.flags, in.flags);
    assert_int_equal(out.uid, 1000);
    assert_int_equal(out.gid, 100);
    assert_int_equal(out.rows, 50);
    assert_int_equal(out.cols, 132);
    assert_string_equal(out.cwd, "/srv");
    assert_int_equal(out.argc, 3);
    assert_string_equal(out.argv[2], "echo \"$A\"");
    assert_null(out.argv[3]);
    assert_int_equal(out.envc, 2);
    assert_string_equal(out.env[0], "A=1=2");
    assert_string_equal(out.env[1], "EMPTY=");
    assert_null(out.env[2]);
}

static void exec_at_the_count_limits(void **state)
{
    (void)state;
    static struct agent_exec_request in, out;
    in = (struct agent_exec_request){.cwd = "/", .argc = AGENT_MAX_ARGS,
                                     .envc = AGENT_MAX_ENV};
    for (int i = 0; i < AGENT_MAX_ARGS; i++)
        in.argv[i] = "a";
    for (int i = 0; i < AGENT_MAX_ENV; i++)
        in.env[i] = "V=1";
    struct agent_buf buf = fresh_buf();
    assert_true(agent_encode_exec(&buf, &in));
    struct agent_frame frame = decode_one(&buf);
    assert_int_equal(agent_parse_exec(&frame, &out), 0);
    assert_int_equal(out.argc, AGENT_MAX_ARGS);
    assert_int_equal(out.envc, AGENT_MAX_ENV);
}

static void exec_too_large_does_not_encode(void **state)
{
    (void)state;
    static struct agent_exec_request in;
    static char big[AGENT_FRAME_MAX];
    memset(big, 'x', sizeof(big) - 1);
    in = (struct agent_exec_request){.cwd = "/", .argc = 1, .argv = {big}};
    struct agent_buf buf = fresh_buf();
    assert_false(agent_encode_exec(&buf, &in));
    assert_true(buf.overflow);
    assert_int_equal(buf.len, 0); /* the partial frame was dropped */
}

static void small_messages_round_trip(void **state)
{
    (void)state;
    struct agent_buf buf = fresh_buf();
    struct agent_failure failed = {.err = ENOENT, .step = AGENT_STEP_CWD, .message = "no dir"};
    assert_true(agent_encode_failure(&buf, AGENT_EXEC_FAILED, &failed));
    struct agent_frame frame = decode_one(&buf);
    struct agent_failure failure;
    assert_int_equal(agent_parse_failure(&frame, &failure), 0);
    assert_int_equal(failure.err, ENOENT);
    assert_int_equal(failure.step, AGENT_STEP_CWD);
    assert_string_equal(failure.message, "no dir");
    /* A step the protocol does not define is malformed. */
    buf = fresh_buf();
    failed.step = AGENT_STEP_IDS + 1;
    assert_true(agent_encode_failure(&buf, AGENT_EXEC_FAILED, &failed));
    frame = decode_one(&buf);
    assert_int_equal(agent_parse_failure(&frame, &failure), -EPROTO);
    /* ERROR carries no step. */
    buf = fresh_buf();
    failed.step = AGENT_STEP_CWD;
    assert_true(agent_encode_failure(&buf, AGENT_ERROR, &failed));
    frame = decode_one(&buf);
    assert_int_equal(agent_parse_failure(&frame, &failure), 0);
    assert_int_equal(failure.step, AGENT_STEP_EXEC);
    assert_int_equal(frame.length, 4 + strlen("no dir") + 1);

    buf = fresh_buf();
    struct agent_exit exit_in = {.kind = AGENT_EXIT_SIGNAL, .code = 9}, exit_out;
    assert_true(agent_encode_exit(&buf, &exit_in));
    frame = decode_one(&buf);
    assert_int_equal(agent_parse_exit(&frame, &exit_out), 0);
    assert_int_equal(exit_out.kind, AGENT_EXIT_SIGNAL);
    assert_int_equal(exit_out.code, 9);

    buf = fresh_buf();
    assert_true(agent_encode_u32(&buf, AGENT_SIGNAL, 15));
    frame = decode_one(&buf);
    int signo;
    assert_int_equal(agent_parse_signal(&frame, &signo), 0);
    assert_int_equal(signo, 15);

    buf = fresh_buf();
    assert_true(agent_encode_winsize(&buf, 24, 80));
    frame = decode_one(&buf);
    uint16_t rows, cols;
    assert_int_equal(agent_parse_winsize(&frame, &rows, &cols), 0);
    assert_int_equal(rows, 24);
    assert_int_equal(cols, 80);

    buf = fresh_buf();
    struct agent_file_request file_in = {.mode = 0755, .path = "/usr/bin/tool"}, file_out;
    assert_true(agent_encode_file(&buf, AGENT_FILE_PUT, &file_in));
    frame = decode_one(&buf);
    assert_int_equal(agent_parse_file(&frame, &file_out), 0);
    assert_int_equal(file_out.mode, 0755);
    assert_string_equal(file_out.path, "/usr/bin/tool");

    buf = fresh_buf();
    assert_true(agent_encode_file(&buf, AGENT_FILE_GET, &file_in));
    frame = decode_one(&buf);
    assert_int_equal(agent_parse_file(&frame, &file_out), 0);
    assert_int_equal(file_out.mode, 0);

    buf = fresh_buf();
    assert_true(agent_encode_empty(&buf, AGENT_SHUTDOWN));
    frame = decode_one(&buf);
    assert_int_equal(agent_parse_empty(&frame), 0);
}

static void data_round_trip_and_limit(void **state)
{
    (void)state;
    static uint8_t chunk[AGENT_CHUNK_MAX + 1];
    for (size_t i = 0; i < sizeof(chunk); i++)
        chunk[i] = (uint8_t)(i * 7);
    struct agent_buf buf = fresh_buf();
    assert_true(agent_encode_data(&buf, AGENT_STDOUT, chunk, AGENT_CHUNK_MAX));
    struct agent_frame frame = decode_one(&buf);
    assert_int_equal(agent_parse_data(&frame), 0);
    assert_memory_equal(frame.payload, chunk, AGENT_CHUNK_MAX);

    buf = fresh_buf();
    assert_false(agent_encode_data(&buf, AGENT_STDOUT, chunk, AGENT_CHUNK_MAX + 1));
    frame = raw_frame(AGENT_STDIN, chunk, AGENT_CHUNK_MAX + 1);
    assert_int_equal(agent_parse_data(&frame), -EPROTO);
}

static void long_failure_message_is_cut(void **state)
{
    (void)state;
    char message[1000];
    memset(message, 'm', sizeof(message) - 1);
    message[sizeof(message) - 1] = '\0';
    struct agent_buf buf = fresh_buf();
    struct agent_failure long_one = {.err = EIO, .message = message};
    assert_true(agent_encode_failure(&buf, AGENT_ERROR, &long_one));
    struct agent_frame frame = decode_one(&buf);
    struct agent_failure failure;
    assert_int_equal(agent_parse_failure(&frame, &failure), 0);
    assert_int_equal(strlen(failure.message), AGENT_MAX_MESSAGE);
}

/* ---- frame-level malformations ---- */

static void truncated_frames_need_more(void **state)
{
    (void)state;
    struct agent_buf buf = fresh_buf();
    struct agent_hello hello = {.version = 1, .frame_max = 2};
    agent_encode_hello(&buf, &hello);
    struct agent_frame frame;
    for (size_t len = 0; len < buf.len; len++)
        assert_int_equal(agent_frame_decode(buf.data, len, &frame), 0);
}

static void bad_headers_are_rejected(void **state)
{
    (void)state;
    struct agent_frame frame;
    const uint8_t oversized[] = {0xf9, 0xff, 0x03, 0x00, AGENT_STDOUT, 0, 0, 0};
    assert_int_equal(agent_frame_decode(oversized, sizeof(oversized), &frame), -EMSGSIZE);
    const uint8_t huge[] = {0xff, 0xff, 0xff, 0xff, AGENT_STDOUT, 0, 0, 0};
    assert_int_equal(agent_frame_decode(huge, sizeof(huge), &frame), -EMSGSIZE);
    const uint8_t unknown[] = {0, 0, 0, 0, 99, 0, 0, 0};
    assert_int_equal(agent_frame_decode(unknown, sizeof(unknown), &frame), -EPROTO);
    const uint8_t zero_type[] = {0, 0, 0, 0, 0, 0, 0, 0};
    assert_int_equal(agent_frame_decode(zero_type, sizeof(zero_type), &frame), -EPROTO);
    const uint8_t high_type[] = {0, 0, 0, 0, AGENT_OK, 1, 0, 0};
    assert_int_equal(agent_frame_decode(high_type, sizeof(high_type), &frame), -EPROTO);
    const uint8_t flags[] = {0, 0, 0, 0, AGENT_OK, 0, 0, 0x80};
    assert_int_equal(agent_frame_decode(flags, sizeof(flags), &frame), -EPROTO);

    /* the largest payload allowed is accepted */
    static uint8_t largest[AGENT_FRAME_MAX];
    largest[0] = (uint8_t)AGENT_PAYLOAD_MAX;
    largest[1] = (uint8_t)(AGENT_PAYLOAD_MAX >> 8);
    largest[2] = (uint8_t)(AGENT_PAYLOAD_MAX >> 16);
    largest[4] = AGENT_DATA;
    assert_int_equal(agent_frame_decode(largest, sizeof(largest), &frame), AGENT_FRAME_MAX);
}

/* ---- payload malformations ---- */

/* A valid EXEC payload built by hand, to be damaged by each case. */
static size_t exec_payload(uint8_t *out, uint32_t flags, uint32_t argc, uint32_t envc,
                           const char *strings, size_t strings_len)
{
    struct agent_buf buf;
    agent_buf_init(&buf, out, 4096);
    agent_put_u32(&buf, flags);
    agent_put_u32(&buf, 0);
    agent_put_u32(&buf, 0);
    agent_put_u16(&buf, 24);
    agent_put_u16(&buf, 80);
    agent_put_u32(&buf, argc);
    agent_put_u32(&buf, envc);
    agent_put_bytes(&buf, strings, strings_len);
    assert_false(buf.overflow);
    return buf.len;
}

static int parse_exec_bytes(const uint8_t *payload, size_t len)
{
    static struct agent_exec_request request;
    struct agent_frame frame = raw_frame(AGENT_EXEC, payload, len);
    return agent_parse_exec(&frame, &request);
}

#define STRINGS(s) s, sizeof(s) - 1 /* with the embedded NULs, without C's final one */

static void exec_malformations_are_rejected(void **state)
{
    (void)state;
    uint8_t p[4096];
    size_t len = exec_payload(p, 0, 1, 1, STRINGS("/\0true\0A=1\0"));
    assert_int_equal(parse_exec_bytes(p, len), 0);
    for (size_t cut = 0; cut < len; cut++) /* every truncation */
        assert_int_equal(parse_exec_bytes(p, cut), -EPROTO);

    len = exec_payload(p, 0, 1, 1, STRINGS("/\0true\0A=1\0extra"));
    assert_int_equal(parse_exec_bytes(p, len), -EPROTO); /* trailing bytes */
    len = exec_payload(p, 4, 1, 0, STRINGS("/\0true\0"));
    assert_int_equal(parse_exec_bytes(p, len), -EPROTO); /* unknown flag */
    len = exec_payload(p, 0, 0, 0, STRINGS("/\0"));
    assert_int_equal(parse_exec_bytes(p, len), -EPROTO); /* no argv */
    len = exec_payload(p, 0, AGENT_MAX_ARGS + 1, 0, STRINGS("/\0true\0"));
    assert_int_equal(parse_exec_bytes(p, len), -EPROTO); /* too many args */
    len = exec_payload(p, 0, 1, AGENT_MAX_ENV + 1, STRINGS("/\0true\0"));
    assert_int_equal(parse_exec_bytes(p, len), -EPROTO); /* too many env entries */
    len = exec_payload(p, 0, 0xffffffffu, 0, STRINGS("/\0true\0"));
    assert_int_equal(parse_exec_bytes(p, len), -EPROTO); /* absurd count */
    len = exec_payload(p, 0, 2, 0, STRINGS("/\0true\0"));
    assert_int_equal(parse_exec_bytes(p, len), -EPROTO); /* fewer strings than argc */
    len = exec_payload(p, 0, 1, 0, STRINGS("/\0true"));
    assert_int_equal(parse_exec_bytes(p, len), -EPROTO); /* no terminator */
    len = exec_payload(p, 0, 1, 0, STRINGS("relative\0true\0"));
    assert_int_equal(parse_exec_bytes(p, len), -EPROTO); /* cwd not absolute */
    len = exec_payload(p, 0, 1, 0, STRINGS("/\0\0"));
    assert_int_equal(parse_exec_bytes(p, len), -EPROTO); /* empty argv[0] */
    len = exec_payload(p, 0, 1, 1, STRINGS("/\0true\0NOEQUALS\0"));
    assert_int_equal(parse_exec_bytes(p, len), -EPROTO);
    len = exec_payload(p, 0, 1, 1, STRINGS("/\0true\0=value\0"));
    assert_int_equal(parse_exec_bytes(p, len), -EPROTO);

    struct agent_frame wrong_type = raw_frame(AGENT_FILE_GET, p, len);
    static struct agent_exec_request request;
    assert_int_equal(agent_parse_exec(&wrong_type, &request), -EPROTO);
}

static void string_limits(void **state)
{
    (void)state;
    static uint8_t p[AGENT_FRAME_MAX];
    static struct agent_exec_request request;
    /* an argument of exactly AGENT_MAX_STRING bytes passes, one more does not */
    for (size_t extra = 0; extra < 2; extra++) {
        struct agent_buf buf;
        agent_buf_init(&buf, p, sizeof(p));
        size_t header = exec_payload(p, 0, 1, 0, STRINGS("/\0"));
        buf.len = header;
        size_t n = AGENT_MAX_STRING + extra;
        memset(p + buf.len, 'a', n);
        buf.len += n;
        p[buf.len++] = '\0';
        struct agent_frame frame = raw_frame(AGENT_EXEC, p, buf.len);
        assert_int_equal(agent_parse_exec(&frame, &request), extra ? -EPROTO : 0);
    }
    /* a path over AGENT_MAX_PATH */
    struct agent_buf buf;
    agent_buf_init(&buf, p, sizeof(p));
    for (int i = 0; i <= AGENT_MAX_PATH; i++)
        agent_put_bytes(&buf, "/", 1);
    agent_put_bytes(&buf, "", 1);
    struct agent_frame frame = raw_frame(AGENT_FILE_GET, p, buf.len);
    struct agent_file_request file;
    assert_int_equal(agent_parse_file(&frame, &file), -EPROTO);
    frame.length--; /* the same slashes without a terminator */
    assert_int_equal(agent_parse_file(&frame, &file), -EPROTO);
    p[AGENT_MAX_PATH] = '\0';
    frame.length = AGENT_MAX_PATH + 1;
    assert_int_equal(agent_parse_file(&frame, &file), 0);
}

static void small_message_malformations(void **state)
{
    (void)state;
    const uint8_t bytes[16] = {0};
    struct agent_frame frame;
    struct agent_hello hello;
    frame = raw_frame(AGENT_HELLO, bytes, 7);
    assert_int_equal(agent_parse_hello(&frame, &hello), -EPROTO);
    frame = raw_frame(AGENT_HELLO, bytes, 9);
    assert_int_equal(agent_parse_hello(&frame, &hello), -EPROTO);
    frame = raw_frame(AGENT_OK, bytes, 8);
    assert_int_equal(agent_parse_hello(&frame, &hello), -EPROTO);

    frame = raw_frame(AGENT_OK, bytes, 1);
    assert_int_equal(agent_parse_empty(&frame), -EPROTO);

    int signo;
    frame = raw_frame(AGENT_SIGNAL, bytes, 4); /* signal 0 */
    assert_int_equal(agent_parse_signal(&frame, &signo), -EPROTO);
    const uint8_t sig65[] = {65, 0, 0, 0};
    frame = raw_frame(AGENT_SIGNAL, sig65, 4);
    assert_int_equal(agent_parse_signal(&frame, &signo), -EPROTO);

    uint16_t rows, cols;
    frame = raw_frame(AGENT_WINSIZE, bytes, 4); /* 0 x 0 */
    assert_int_equal(agent_parse_winsize(&frame, &rows, &cols), -EPROTO);
    frame = raw_frame(AGENT_WINSIZE, bytes, 3);
    assert_int_equal(agent_parse_winsize(&frame, &rows, &cols), -EPROTO);

    struct agent_exit exit_status;
    const uint8_t exit_256[] = {0, 0, 0, 0, 0, 1, 0, 0};
    frame = raw_frame(AGENT_EXIT, exit_256, 8);
    assert_int_equal(agent_parse_exit(&frame, &exit_status), -EPROTO);
    const uint8_t bad_kind[] = {2, 0, 0, 0, 0, 0, 0, 0};
    frame = raw_frame(AGENT_EXIT, bad_kind, 8);
    assert_int_equal(agent_parse_exit(&frame, &exit_status), -EPROTO);
    const uint8_t signal_0[] = {1, 0, 0, 0, 0, 0, 0, 0};
    frame = raw_frame(AGENT_EXIT, signal_0, 8);
    assert_int_equal(agent_parse_exit(&frame, &exit_status), -EPROTO);

    struct agent_failure failure;
    const uint8_t unterminated[] = {2, 0, 0, 0, 'a', 'b'};
    frame = raw_frame(AGENT_ERROR, unterminated, sizeof(unterminated));
    assert_int_equal(agent_parse_failure(&frame, &failure), -EPROTO);
    frame = raw_frame(AGENT_ERROR, bytes, 3);
    assert_int_equal(agent_parse_failure(&frame, &failure), -EPROTO);

    struct agent_file_request file;
    const uint8_t bad_mode[] = {0, 0x10, 0, 0, '/', 0}; /* 010000: more than permissions */
    frame = raw_frame(AGENT_FILE_PUT, bad_mode, sizeof(bad_mode));
    assert_int_equal(agent_parse_file(&frame, &file), -EPROTO);
    const uint8_t empty_path[] = {0};
    frame = raw_frame(AGENT_FILE_GET, empty_path, sizeof(empty_path));
    assert_int_equal(agent_parse_file(&frame, &file), -EPROTO);
}

static void resume_round_trip_and_malformations(void **state)
{
    (void)state;
    struct agent_buf buf = fresh_buf();
    struct agent_resume in = {.realtime_sec = 0x123456789aLL, .realtime_nsec = 999999999};
    for (unsigned i = 0; i < AGENT_RESUME_ENTROPY; i++)
        in.entropy[i] = (uint8_t)(i * 7 + 1);
    assert_true(agent_encode_resume(&buf, &in));
    assert_int_equal(buf.len, AGENT_HEADER_SIZE + 12 + AGENT_RESUME_ENTROPY);
    struct agent_frame frame = decode_one(&buf);
    struct agent_resume out;
    assert_int_equal(agent_parse_resume(&frame, &out), 0);
    assert_true(out.realtime_sec == in.realtime_sec);
    assert_int_equal(out.realtime_nsec, in.realtime_nsec);
    assert_memory_equal(out.entropy, in.entropy, AGENT_RESUME_ENTROPY);

    uint8_t bytes[12 + AGENT_RESUME_ENTROPY + 1];
    memcpy(bytes, buf.data + AGENT_HEADER_SIZE, sizeof(bytes) - 1);
    bytes[sizeof(bytes) - 1] = 0;
    frame = raw_frame(AGENT_RESUME, bytes, sizeof(bytes) - 2); /* one byte short */
    assert_int_equal(agent_parse_resume(&frame, &out), -EPROTO);
    frame = raw_frame(AGENT_RESUME, bytes, sizeof(bytes)); /* one byte long */
    assert_int_equal(agent_parse_resume(&frame, &out), -EPROTO);
    frame = raw_frame(AGENT_OK, bytes, sizeof(bytes) - 1); /* right length, wrong type */
    assert_int_equal(agent_parse_resume(&frame, &out), -EPROTO);
    bytes[8] = 0x00, bytes[9] = 0xca, bytes[10] = 0x9a, bytes[11] = 0x3b; /* exactly 1e9 ns */
    frame = raw_frame(AGENT_RESUME, bytes, sizeof(bytes) - 1);
    assert_int_equal(agent_parse_resume(&frame, &out), -EPROTO);
    bytes[8] = 0xff, bytes[9] = 0xc9; /* 999999999 again */
    bytes[7] = 0x80;                   /* a negative time */
    assert_int_equal(agent_parse_resume(&frame, &out), -EPROTO);
}

static void every_type_has_a_name(void **state)
{
    (void)state;
    int known = 0;
    for (unsigned type = 0; type <= 0xffff; type++)
        if (agent_type_known((uint16_t)type)) {
            known++;
            assert_non_null(agent_type_name((uint16_t)type));
        }
    assert_int_equal(known, 20);
    assert_string_equal(agent_type_name(AGENT_STDIN_ACK), "STDIN_ACK");
}

/* ---- the incremental reader ---- */

static void reader_reassembles_split_frames(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    struct agent_buf buf = fresh_buf();
    agent_encode_u32(&buf, AGENT_STDIN_ACK, 1234);
    agent_encode_data(&buf, AGENT_STDERR, "oops", 4);
    agent_encode_empty(&buf, AGENT_DATA_END);

    struct agent_reader reader;
    assert_int_equal(agent_reader_init(&reader), 0);
    struct agent_frame frame;
    uint16_t seen[3];
    int count = 0;
    for (size_t i = 0; i < buf.len; i++) { /* one byte at a time */
        assert_int_equal(write(fds[1], buf.data + i, 1), 1);
        assert_int_equal(agent_reader_fill(&reader, fds[0]), 1);
        while (agent_reader_next(&reader, &frame) == 1)
            seen[count++] = frame.type;
    }
    assert_int_equal(count, 3);
    assert_int_equal(seen[0], AGENT_STDIN_ACK);
    assert_int_equal(seen[1], AGENT_STDERR);
    assert_int_equal(seen[2], AGENT_DATA_END);
    assert_int_equal(agent_reader_pending(&reader), 0);

    close(fds[1]);
    assert_int_equal(agent_reader_fill(&reader, fds[0]), 0);
    close(fds[0]);
    agent_reader_destroy(&reader);
}

static void reader_reports_garbage(void **state)
{
    (void)state;
    int fds[2];
    assert_int_equal(pipe(fds), 0);
    struct agent_reader reader;
    assert_int_equal(agent_reader_init(&reader), 0);
    assert_int_equal(write(fds[1], "\xff\xff\xff\xff\x01\x00\x00\x00", 8), 8);
    assert_int_equal(agent_reader_fill(&reader, fds[0]), 8);
    struct agent_frame frame;
    assert_int_equal(agent_reader_next(&reader, &frame), -EMSGSIZE);
    agent_reader_destroy(&reader);
    close(fds[0]);
    close(fds[1]);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hello_round_trip),
        cmocka_unit_test(exec_round_trip),
        cmocka_unit_test(exec_at_the_count_limits),
        cmocka_unit_test(exec_too_large_does_not_encode),
        cmocka_unit_test(small_messages_round_trip),
        cmocka_unit_test(data_round_trip_and_limit),
        cmocka_unit_test(long_failure_message_is_cut),
        cmocka_unit_test(truncated_frames_need_more),
        cmocka_unit_test(bad_headers_are_rejected),
        cmocka_unit_test(exec_malformations_are_rejected),
        cmocka_unit_test(string_limits),
        cmocka_unit_test(small_message_malformations),
        cmocka_unit_test(resume_round_trip_and_malformations),
        cmocka_unit_test(every_type_has_a_name),
        cmocka_unit_test(reader_reassembles_split_frames),
        cmocka_unit_test(reader_reports_garbage),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
