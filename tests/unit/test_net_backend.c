/*
 * The backend's common part: the policy runs before the backend sees a frame, and frames for a
 * receiver without room wait in a queue that is capped in frames and bytes, keeps order, and
 * drops (and counts) what does not fit instead of growing.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdlib.h>
#include <string.h>

#include "net/backend.h"
#include "test_net_frames.h"

struct fake_backend {
    struct net_backend be;
    unsigned sent;
    bool destroyed;
};

static void fake_send(struct net_backend *be, const uint8_t *frame, size_t len)
{
    (void)frame;
    (void)len;
    ((struct fake_backend *)be)->sent++;
}

static void fake_destroy(struct net_backend *be) { ((struct fake_backend *)be)->destroyed = true; }

static const struct net_backend_ops fake_ops = {.send = fake_send, .destroy = fake_destroy};

struct receiver {
    bool room;
    unsigned got;
    uint32_t last_seq; /* the first four payload bytes of the last frame taken */
    bool in_order;
};

static bool receive(void *opaque, const uint8_t *frame, size_t len)
{
    struct receiver *r = opaque;
    if (!r->room)
        return false;
    uint32_t seq = frame_be32(frame + 14);
    if (r->got && seq != r->last_seq + 1)
        r->in_order = false;
    r->last_seq = seq;
    r->got++;
    (void)len;
    return true;
}

static void deliver_seq(struct net_backend *be, uint32_t seq, size_t len)
{
    static uint8_t frame[NET_FRAME_MAX];
    frame[14] = (uint8_t)(seq >> 24);
    frame[15] = (uint8_t)(seq >> 16);
    frame[16] = (uint8_t)(seq >> 8);
    frame[17] = (uint8_t)seq;
    net_backend_deliver(be, frame, len);
}

static void init(struct fake_backend *fb, struct receiver *r, enum net_policy_mode mode)
{
    struct net_policy policy = {mode, IP4(10, 0, 2, 2), IP4(10, 0, 2, 3)};
    memset(fb, 0, sizeof(*fb));
    net_backend_init(&fb->be, &fake_ops, &policy);
    *r = (struct receiver){.in_order = true};
    net_backend_set_receiver(&fb->be, receive, r);
}

static void test_policy_before_backend(void **state)
{
    (void)state;
    struct fake_backend fb;
    struct receiver r;
    init(&fb, &r, NET_POLICY_HOST_ONLY);
    uint8_t f[FRAME_BUF];
    net_backend_send(&fb.be, f, frame_tcp_syn(f, IP4(10, 0, 2, 15), 1, IP4(1, 1, 1, 1), 80));
    net_backend_send(&fb.be, f, frame_tcp_syn(f, IP4(10, 0, 2, 15), 1, IP4(10, 0, 2, 2), 80));
    net_backend_send(&fb.be, f, 3);
    assert_int_equal(fb.sent, 1);
    const struct net_stats *s = net_backend_stats(&fb.be);
    assert_int_equal(s->tx_frames, 1);
    assert_int_equal(s->tx_dropped_policy, 1);
    assert_int_equal(s->tx_dropped_malformed, 1);
    net_backend_free(&fb.be);
    assert_true(fb.destroyed);
}

static void test_direct_delivery(void **state)
{
    (void)state;
    struct fake_backend fb;
    struct receiver r;
    init(&fb, &r, NET_POLICY_OPEN);
    r.room = true;
    for (uint32_t i = 0; i < 1000; i++)
        deliver_seq(&fb.be, i, 60);
    assert_int_equal(r.got, 1000);
    assert_true(r.in_order);
    assert_int_equal(fb.be.rxq_count, 0);
    net_backend_free(&fb.be);
}

/* 1000 frames for a receiver without room: the cap is kept, the rest dropped and counted, and
 * the kept ones arrive in order once there is room. */
static void test_queue_capped_in_frames(void **state)
{
    (void)state;
    struct fake_backend fb;
    struct receiver r;
    init(&fb, &r, NET_POLICY_OPEN);
    for (uint32_t i = 0; i < 1000; i++)
        deliver_seq(&fb.be, i, 60);
    assert_int_equal(fb.be.rxq_count, NET_RXQ_MAX_FRAMES);
    assert_int_equal(net_backend_stats(&fb.be)->rx_dropped, 1000 - NET_RXQ_MAX_FRAMES);
    r.room = true;
    net_backend_rx_ready(&fb.be);
    assert_int_equal(r.got, NET_RXQ_MAX_FRAMES);
    assert_true(r.in_order);
    assert_int_equal(r.last_seq, NET_RXQ_MAX_FRAMES - 1);
    assert_int_equal(fb.be.rxq_bytes, 0);
    net_backend_free(&fb.be);
}

static void test_queue_capped_in_bytes(void **state)
{
    (void)state;
    struct fake_backend fb;
    struct receiver r;
    init(&fb, &r, NET_POLICY_OPEN);
    for (uint32_t i = 0; i < 100; i++)
        deliver_seq(&fb.be, i, NET_FRAME_MAX);
    assert_true(fb.be.rxq_bytes <= NET_RXQ_MAX_BYTES);
    assert_int_equal(fb.be.rxq_count, NET_RXQ_MAX_BYTES / NET_FRAME_MAX);
    /* Impossible sizes are dropped outright. */
    deliver_seq(&fb.be, 0, NET_FRAME_MAX + 1);
    deliver_seq(&fb.be, 0, 13);
    assert_int_equal(net_backend_stats(&fb.be)->rx_dropped, 100 - fb.be.rxq_count + 2);
    net_backend_rx_purge(&fb.be);
    assert_int_equal(fb.be.rxq_count, 0);
    assert_int_equal(fb.be.rxq_bytes, 0);
    net_backend_free(&fb.be);
}

/* A frame never overtakes the queued ones, even when the receiver has room again. */
static void test_order_kept_behind_queue(void **state)
{
    (void)state;
    struct fake_backend fb;
    struct receiver r;
    init(&fb, &r, NET_POLICY_OPEN);
    deliver_seq(&fb.be, 0, 60);
    r.room = true;
    deliver_seq(&fb.be, 1, 60);
    assert_int_equal(r.got, 0);
    net_backend_rx_ready(&fb.be);
    assert_int_equal(r.got, 2);
    assert_true(r.in_order);
    net_backend_free(&fb.be);
}

static unsigned drained_calls;

static void count_drained(struct net_backend *be)
{
    (void)be;
    drained_calls++;
}

/* rx_drained (what lets a backend resume reading its source) comes once the queue is empty,
 * after the receiver took everything or after a purge, and not while frames still wait. */
static void test_rx_drained(void **state)
{
    (void)state;
    static const struct net_backend_ops ops = {
        .send = fake_send, .destroy = fake_destroy, .rx_drained = count_drained};
    struct fake_backend fb;
    struct receiver r;
    init(&fb, &r, NET_POLICY_OPEN);
    fb.be.ops = &ops;
    drained_calls = 0;
    deliver_seq(&fb.be, 1, 60);
    deliver_seq(&fb.be, 2, 60);
    assert_int_equal(fb.be.rxq_count, 2);
    net_backend_rx_ready(&fb.be); /* still no room */
    assert_int_equal(drained_calls, 0);
    r.room = true;
    net_backend_rx_ready(&fb.be);
    assert_int_equal(r.got, 2);
    assert_int_equal(drained_calls, 1);
    r.room = false;
    deliver_seq(&fb.be, 3, 60);
    net_backend_rx_purge(&fb.be);
    assert_int_equal(fb.be.rxq_count, 0);
    assert_int_equal(drained_calls, 2);
    net_backend_free(&fb.be);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_policy_before_backend),
        cmocka_unit_test(test_direct_delivery),
        cmocka_unit_test(test_queue_capped_in_frames),
        cmocka_unit_test(test_queue_capped_in_bytes),
        cmocka_unit_test(test_order_kept_behind_queue),
        cmocka_unit_test(test_rx_drained),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
