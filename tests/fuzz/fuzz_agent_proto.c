/*
 * libFuzzer target for the cove-agent protocol's codec (src/proto/agent_proto.c): the input is
 * a byte stream as cove-agent or libcove would receive it. Frames are decoded one after the
 * other, every message parser runs on each, and what parses is encoded again and must parse
 * to the same message. Built with ASan+UBSan, so a read past a frame or a string is a crash.
 */
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "agent_proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

static uint8_t encoded[AGENT_FRAME_MAX];
static struct agent_exec_request request, again;

static struct agent_frame reencoded(const struct agent_buf *buf)
{
    struct agent_frame frame;
    if (buf->overflow || agent_frame_decode(buf->data, buf->len, &frame) != (ssize_t)buf->len)
        abort();
    return frame;
}

static void check_exec(const struct agent_frame *frame)
{
    if (agent_parse_exec(frame, &request) != 0)
        return;
    struct agent_buf buf;
    agent_buf_init(&buf, encoded, sizeof(encoded));
    if (!agent_encode_exec(&buf, &request))
        abort(); /* what was received fits again */
    struct agent_frame copy = reencoded(&buf);
    if (copy.length != frame->length || memcmp(copy.payload, frame->payload, frame->length) != 0)
        abort(); /* the encoding is canonical */
    if (agent_parse_exec(&copy, &again) != 0 || again.argc != request.argc ||
        again.envc != request.envc || strcmp(again.cwd, request.cwd) != 0 ||
        again.argv[again.argc] != NULL || again.env[again.envc] != NULL)
        abort();
}

static void check_small(const struct agent_frame *frame)
{
    struct agent_hello hello;
    struct agent_failure failure;
    struct agent_exit exit_status;
    struct agent_file_request file;
    uint32_t value;
    int signo;
    uint16_t rows, cols;
    struct agent_resume resume;
    struct agent_buf buf;
    agent_buf_init(&buf, encoded, sizeof(encoded));

    if (agent_parse_hello(frame, &hello) == 0)
        agent_encode_hello(&buf, &hello);
    else if (agent_parse_failure(frame, &failure) == 0)
        agent_encode_failure(&buf, frame->type, &failure);
    else if (agent_parse_exit(frame, &exit_status) == 0)
        agent_encode_exit(&buf, &exit_status);
    else if (agent_parse_file(frame, &file) == 0)
        agent_encode_file(&buf, frame->type, &file);
    else if (agent_parse_signal(frame, &signo) == 0)
        agent_encode_u32(&buf, AGENT_SIGNAL, (uint32_t)signo);
    else if (agent_parse_winsize(frame, &rows, &cols) == 0)
        agent_encode_winsize(&buf, rows, cols);
    else if (agent_parse_resume(frame, &resume) == 0)
        agent_encode_resume(&buf, &resume);
    else if (frame->type != AGENT_EXEC && agent_parse_data(frame) == 0)
        agent_encode_data(&buf, frame->type, frame->payload, frame->length);
    (void)agent_parse_empty(frame);
    (void)agent_parse_u32(frame, &value);
    if (buf.len == 0)
        return;
    struct agent_frame copy = reencoded(&buf);
    if (copy.type != frame->type || copy.length != frame->length ||
        memcmp(copy.payload, frame->payload, frame->length) != 0)
        abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    /* A copy of exactly the input's size, so any read past it is caught. */
    uint8_t *stream = malloc(size ? size : 1);
    if (stream == NULL)
        return 0;
    memcpy(stream, data, size);
    size_t at = 0;
    for (;;) {
        struct agent_frame frame;
        ssize_t used = agent_frame_decode(stream + at, size - at, &frame);
        if (used <= 0)
            break;
        if ((size_t)used > size - at || frame.length != (size_t)used - AGENT_HEADER_SIZE)
            abort();
        check_exec(&frame);
        check_small(&frame);
        at += (size_t)used;
    }
    free(stream);
    return 0;
}
