/*
 * dns_responder: the smallest DNS server the network cases need (busybox has no dnsd here).
 *
 *   dns_responder ADDR PORT NAME IPV4 [SECONDS]
 *   dns_responder query ADDR PORT NAME
 *
 * Serves UDP on ADDR:PORT: a query for NAME (any case) of type A gets one A record IPV4, of
 * another type an empty answer; any other name NXDOMAIN. Prints READY once bound, and one line
 * "QUERY name type" per question on stderr. Exits after SECONDS (default 120) so it never
 * outlives a case.
 *
 * `query` is the client the UDP port-forward check uses: it sends one A query for NAME to
 * ADDR:PORT (again each second, up to 10 times) and prints "ANSWER a.b.c.d", or "NXDOMAIN";
 * status 0 when an answer came, 1 when none did.
 *
 * Its input is whatever reaches the port, so every length is checked before it is read: a
 * query must be one question, no compression in it, labels of 1..63 bytes, a name of at most
 * 255; anything else is dropped without an answer.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <netinet/in.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/time.h>
#include <unistd.h>

#define HDR 12
#define MAX_NAME 255
#define TYPE_A 1
#define CLASS_IN 1

static uint16_t be16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static void put16(uint8_t *p, uint16_t v)
{
    p[0] = (uint8_t)(v >> 8);
    p[1] = (uint8_t)v;
}

/* The question's name as "a.b.c" in name (at least MAX_NAME + 1 bytes); returns the offset
 * just past the name in msg, or 0 when it is malformed. */
static size_t parse_name(const uint8_t *msg, size_t len, char *name)
{
    size_t off = HDR, out = 0;
    for (;;) {
        if (off >= len)
            return 0;
        uint8_t label = msg[off++];
        if (label == 0)
            break;
        if (label > 63 || label > len - off || out + label + 1 > MAX_NAME)
            return 0; /* compression (top bits set), overrun, or too long */
        if (out)
            name[out++] = '.';
        for (uint8_t i = 0; i < label; i++) {
            char c = (char)msg[off + i];
            name[out++] = (c == '.' || !isprint((unsigned char)c)) ? '?' : c;
        }
        off += label;
    }
    name[out] = '\0';
    return off;
}

/* Builds the answer to one query in reply; returns its length, or 0 for no answer. */
static size_t answer(const uint8_t *msg, size_t len, const char *want, struct in_addr addr,
                     uint8_t *reply)
{
    if (len < HDR || (msg[2] & 0x80) || ((msg[2] >> 3) & 0xf) != 0 || be16(msg + 4) != 1)
        return 0; /* a response, not a standard query, or not exactly one question */
    char name[MAX_NAME + 1];
    size_t end = parse_name(msg, len, name);
    if (end == 0 || len - end < 4)
        return 0;
    uint16_t type = be16(msg + end), class = be16(msg + end + 2);
    end += 4;
    fprintf(stderr, "QUERY %s %u\n", name, type);
    bool ours = strcasecmp(name, want) == 0 && class == CLASS_IN;
    bool record = ours && type == TYPE_A;
    memcpy(reply, msg, end); /* id and the question; later sections are not echoed */
    reply[2] = (uint8_t)(0x84 | (msg[2] & 0x01)); /* QR, AA, RD as asked */
    reply[3] = ours ? 0 : 3;                      /* NOERROR or NXDOMAIN */
    put16(reply + 6, record ? 1 : 0);
    put16(reply + 8, 0);
    put16(reply + 10, 0);
    if (!record)
        return end;
    uint8_t *rr = reply + end;
    put16(rr, 0xc000 | HDR); /* the name: a pointer to the question's */
    put16(rr + 2, TYPE_A);
    put16(rr + 4, CLASS_IN);
    put16(rr + 6, 0);
    put16(rr + 8, 60); /* TTL */
    put16(rr + 10, 4);
    memcpy(rr + 12, &addr, 4);
    return end + 16;
}

/* An A query for name (dotted) in msg; returns its length, 0 when the name does not fit. */
static size_t build_query(const char *name, uint8_t *msg, size_t cap)
{
    memset(msg, 0, HDR);
    put16(msg, 0x4242);
    msg[2] = 0x01; /* RD */
    put16(msg + 4, 1);
    size_t off = HDR;
    for (const char *p = name; *p;) {
        size_t label = strcspn(p, ".");
        if (label == 0 || label > 63 || off + 1 + label + 5 > cap)
            return 0;
        msg[off++] = (uint8_t)label;
        memcpy(msg + off, p, label);
        off += label;
        p += label + (p[label] == '.');
    }
    msg[off++] = 0;
    put16(msg + off, TYPE_A);
    put16(msg + off + 2, CLASS_IN);
    return off + 4;
}

/* Prints what a reply to build_query's query says; false when it is not such a reply. */
static bool print_reply(const uint8_t *msg, size_t len, size_t query_len)
{
    if (len < query_len || be16(msg) != 0x4242 || !(msg[2] & 0x80))
        return false;
    if ((msg[3] & 0xf) == 3) {
        printf("NXDOMAIN\n");
        return true;
    }
    /* The answer this server writes: a pointer name, then type, class, TTL, length 4. */
    if (be16(msg + 6) < 1 || len < query_len + 16 || be16(msg + query_len + 2) != TYPE_A ||
        be16(msg + query_len + 10) != 4)
        return false;
    char text[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, msg + query_len + 12, text, sizeof(text));
    printf("ANSWER %s\n", text);
    return true;
}

static int query(const char *host, const char *port, const char *name)
{
    struct sockaddr_in to = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(port))};
    uint8_t msg[512];
    size_t len = build_query(name, msg, sizeof(msg));
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    struct timeval second = {.tv_sec = 1};
    if (inet_pton(AF_INET, host, &to.sin_addr) != 1 || len == 0 || s < 0 ||
        setsockopt(s, SOL_SOCKET, SO_RCVTIMEO, &second, sizeof(second)) < 0) {
        fprintf(stderr, "dns_responder: query: bad address or name\n");
        return 2;
    }
    for (int attempt = 0; attempt < 10; attempt++) {
        sendto(s, msg, len, 0, (struct sockaddr *)&to, sizeof(to));
        uint8_t reply[512];
        ssize_t n = recv(s, reply, sizeof(reply), 0);
        if (n > 0 && print_reply(reply, (size_t)n, len))
            return 0;
    }
    fprintf(stderr, "dns_responder: query: no answer from %s:%s\n", host, port);
    return 1;
}

int main(int argc, char **argv)
{
    if (argc == 5 && strcmp(argv[1], "query") == 0)
        return query(argv[2], argv[3], argv[4]);
    if (argc != 5 && argc != 6) {
        fprintf(stderr, "usage: dns_responder ADDR PORT NAME IPV4 [SECONDS]\n");
        return 2;
    }
    struct sockaddr_in sa = {.sin_family = AF_INET, .sin_port = htons((uint16_t)atoi(argv[2]))};
    struct in_addr addr;
    if (inet_pton(AF_INET, argv[1], &sa.sin_addr) != 1 || inet_pton(AF_INET, argv[4], &addr) != 1 ||
        strlen(argv[3]) > MAX_NAME) {
        fprintf(stderr, "dns_responder: bad address or name\n");
        return 2;
    }
    alarm(argc == 6 ? (unsigned)atoi(argv[5]) : 120);
    int s = socket(AF_INET, SOCK_DGRAM, 0);
    if (s < 0 || bind(s, (struct sockaddr *)&sa, sizeof(sa)) < 0) {
        perror("dns_responder: bind");
        return 1;
    }
    printf("READY\n");
    fflush(stdout);
    for (;;) {
        uint8_t msg[512], reply[512 + 16];
        struct sockaddr_in from;
        socklen_t from_len = sizeof(from);
        ssize_t n = recvfrom(s, msg, sizeof(msg), 0, (struct sockaddr *)&from, &from_len);
        if (n <= 0)
            continue;
        size_t r = answer(msg, (size_t)n, argv[3], addr, reply);
        if (r)
            sendto(s, reply, r, 0, (struct sockaddr *)&from, from_len);
    }
}
