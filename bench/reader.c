/*
 * A compiled SSE reader: many streams from one thread, to measure how late a server's
 * events arrive without the reader's own delay in the figure.
 *
 * The Python load generator (bench/loadgen.py) checks every stream against the market,
 * and for that it parses everything it reads: at a million events a second it needs its
 * whole core, so the moment it reads an event can trail the moment the event arrived by
 * as much as the server's own pass. This reader does the least: one recv per readiness
 * on a level-triggered epoll, HTTP/1.1 chunks undone, and for each `price` event the
 * quote's "ts" (the market's clock, milliseconds) taken from the receive time. It checks
 * nothing else; bench/latency.py runs it beside the same market and servers.
 *
 *   reader HOST PORT PATHS WARMUP_S WINDOW_S BATCH
 *
 * PATHS is a file with one request target per line (one stream each). Streams are opened
 * in batches of BATCH, each once the one before has its first bytes, from 250 loopback
 * addresses when HOST is a loopback one (as the Python generator). It prints "start"
 * and "end" as the measured window begins and ends, then one JSON object.
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define LINE_MAX_BYTES 4096 /* a price line is a few hundred bytes; longer ones are skipped */
#define BUCKETS 1000000     /* latency in tenths of a millisecond, up to 100 s */
#define READ_BYTES (256 * 1024)

enum { CONNECTING, HEADERS, SIZE, DATA, DATA_END, DONE };

typedef struct {
    int fd;
    int state;
    int opened;   /* its first body bytes arrived */
    int failed;
    int price;    /* the event being read is a price */
    int skipping; /* the line being read is too long to keep (a snapshot) */
    int matched;  /* of "\r\n\r\n", at the end of the headers */
    long left;    /* bytes of the current chunk still to come */
    long size;
    int status_len;
    char status[16];
    int len;
    char line[LINE_MAX_BYTES];
    const char *request;
} conn_t;

static uint32_t histogram[BUCKETS];
static uint64_t latencies, events;
static int64_t worst = -1;
static int measuring;
static int64_t now10; /* realtime, tenths of a millisecond, at the last read */

static double monotonic_s(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec / 1e9;
}

static int64_t realtime10(void) {
    struct timespec ts;
    clock_gettime(CLOCK_REALTIME, &ts);
    return (int64_t)ts.tv_sec * 10000 + ts.tv_nsec / 100000;
}

static void price(const char *data, int len) {
    /* the "ts" field of a quote: {"symbol":..., "ts":1700000000123, ...} */
    const char *at = memmem(data, len, "\"ts\":", 5);
    if (!at)
        return;
    at += 5;
    int64_t ts = 0;
    while (at < data + len && *at >= '0' && *at <= '9')
        ts = ts * 10 + (*at++ - '0');
    if (!measuring)
        return;
    events++;
    int64_t late = now10 - ts * 10;
    if (late < 0)
        late = 0;
    if (late > worst)
        worst = late;
    histogram[late < BUCKETS ? late : BUCKETS - 1]++;
    latencies++;
}

static void line(conn_t *c, const char *text, int len) {
    if (len == 0)
        c->price = 0; /* the end of an event */
    else if (len >= 12 && memcmp(text, "event: price", 12) == 0)
        c->price = 1;
    else if (c->price && len > 5 && memcmp(text, "data:", 5) == 0)
        price(text, len);
}

static void sse(conn_t *c, const char *data, long n) {
    while (n > 0) {
        const char *nl = memchr(data, '\n', n);
        long take = nl ? nl - data : n;
        if (c->skipping) {
            if (nl)
                c->skipping = 0;
        } else if (c->len == 0 && nl) {
            line(c, data, take); /* a whole line in place: the usual case */
        } else if (c->len + take > LINE_MAX_BYTES) {
            c->len = 0;
            c->skipping = !nl;
        } else {
            memcpy(c->line + c->len, data, take);
            c->len += take;
            if (nl) {
                line(c, c->line, c->len);
                c->len = 0;
            }
        }
        data += take + (nl ? 1 : 0);
        n -= take + (nl ? 1 : 0);
    }
}

/* Undo the HTTP framing of what a stream received; 0 once the stream has ended. */
static int feed(conn_t *c, const char *data, long n) {
    while (n > 0) {
        switch (c->state) {
        case HEADERS: {
            char ch = *data++;
            n--;
            if (c->status_len < (int)sizeof c->status)
                c->status[c->status_len++] = ch;
            c->matched = (ch == "\r\n\r\n"[c->matched]) ? c->matched + 1 : (ch == '\r');
            if (c->matched == 4) {
                if (c->status_len < 12 || memcmp(c->status + 9, "200", 3) != 0)
                    return 0;
                c->state = SIZE;
                c->size = 0;
            }
            break;
        }
        case SIZE: {
            char ch = *data++;
            n--;
            if (ch == '\n') {
                if (c->size == 0)
                    return 0; /* the last chunk */
                c->left = c->size;
                c->state = DATA;
                c->opened = 1;
            } else if (ch >= '0' && ch <= '9') {
                c->size = c->size * 16 + (ch - '0');
            } else if ((ch | 32) >= 'a' && (ch | 32) <= 'f') {
                c->size = c->size * 16 + ((ch | 32) - 'a' + 10);
            }
            break;
        }
        case DATA: {
            long take = n < c->left ? n : c->left;
            sse(c, data, take);
            data += take;
            n -= take;
            c->left -= take;
            if (c->left == 0) {
                c->state = DATA_END;
                c->left = 2;
            }
            break;
        }
        case DATA_END:
            data++;
            n--;
            if (--c->left == 0) {
                c->state = SIZE;
                c->size = 0;
            }
            break;
        default:
            return 0;
        }
    }
    return 1;
}

static int epfd;
static long failed_count, dropped_count;

static void fail(conn_t *c) {
    if (c->failed)
        return;
    c->failed = 1;
    if (c->opened)
        dropped_count++;
    else
        failed_count++;
    epoll_ctl(epfd, EPOLL_CTL_DEL, c->fd, NULL);
    close(c->fd);
    c->state = DONE;
}

static char buffer[READ_BYTES];

static void poll_once(conn_t *conns, int timeout_ms) {
    struct epoll_event ready[1024];
    int count = epoll_wait(epfd, ready, 1024, timeout_ms);
    if (count <= 0)
        return;
    now10 = realtime10();
    for (int i = 0; i < count; i++) {
        conn_t *c = &conns[ready[i].data.u32];
        if (c->failed)
            continue;
        if (c->state == CONNECTING) {
            int error = 0;
            socklen_t size = sizeof error;
            getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &error, &size);
            if (error || send(c->fd, c->request, strlen(c->request), 0) < 0) {
                fail(c);
                continue;
            }
            c->state = HEADERS;
            struct epoll_event ev = {.events = EPOLLIN, .data.u32 = ready[i].data.u32};
            epoll_ctl(epfd, EPOLL_CTL_MOD, c->fd, &ev);
            continue;
        }
        ssize_t got = recv(c->fd, buffer, sizeof buffer, 0);
        if (got < 0 && (errno == EAGAIN || errno == EINTR))
            continue;
        if (got <= 0 || !feed(c, buffer, got))
            fail(c);
    }
}

static int open_stream(conn_t *c, int index, struct sockaddr_in *server, int loopback) {
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (c->fd < 0)
        return -1;
    if (loopback) {
        struct sockaddr_in local = {.sin_family = AF_INET};
        local.sin_addr.s_addr = htonl(0x7f000000u | (uint32_t)(index % 250 + 2));
        bind(c->fd, (struct sockaddr *)&local, sizeof local);
    }
    if (connect(c->fd, (struct sockaddr *)server, sizeof *server) < 0 && errno != EINPROGRESS) {
        close(c->fd);
        return -1;
    }
    c->state = CONNECTING;
    struct epoll_event ev = {.events = EPOLLOUT, .data.u32 = (uint32_t)index};
    epoll_ctl(epfd, EPOLL_CTL_ADD, c->fd, &ev);
    return 0;
}

static double percentile(double q) {
    if (!latencies)
        return -1;
    uint64_t rank = (uint64_t)(q * latencies), seen = 0;
    for (int i = 0; i < BUCKETS; i++) {
        seen += histogram[i];
        if (seen > rank)
            return i / 10.0;
    }
    return (BUCKETS - 1) / 10.0;
}

static double cpu_s(void) {
    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    return usage.ru_utime.tv_sec + usage.ru_utime.tv_usec / 1e6 + usage.ru_stime.tv_sec +
           usage.ru_stime.tv_usec / 1e6;
}

int main(int argc, char **argv) {
    if (argc != 7) {
        fprintf(stderr, "usage: %s HOST PORT PATHS WARMUP_S WINDOW_S BATCH\n", argv[0]);
        return 2;
    }
    const char *host = argv[1];
    double warmup = atof(argv[4]), window = atof(argv[5]);
    int batch = atoi(argv[6]);
    FILE *paths = fopen(argv[3], "r");
    if (!paths) {
        perror(argv[3]);
        return 2;
    }
    int streams = 0, capacity = 1024;
    conn_t *conns = calloc(capacity, sizeof *conns);
    char target[65536];
    while (fgets(target, sizeof target, paths)) {
        target[strcspn(target, "\n")] = 0;
        if (streams == capacity)
            conns = realloc(conns, (capacity *= 2) * sizeof *conns);
        memset(&conns[streams], 0, sizeof *conns);
        char *request = malloc(strlen(target) + strlen(host) + 80);
        sprintf(request, "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n\r\n",
                target, host);
        conns[streams++].request = request;
    }
    fclose(paths);

    struct rlimit limit;
    getrlimit(RLIMIT_NOFILE, &limit);
    limit.rlim_cur = limit.rlim_max;
    setrlimit(RLIMIT_NOFILE, &limit);
    if (limit.rlim_max < (rlim_t)streams + 16) {
        fprintf(stderr, "%d streams need more descriptors than %ld\n", streams,
                (long)limit.rlim_max);
        return 2;
    }

    struct sockaddr_in server = {.sin_family = AF_INET, .sin_port = htons(atoi(argv[2]))};
    if (inet_pton(AF_INET, host, &server.sin_addr) != 1) {
        fprintf(stderr, "HOST must be an IPv4 address, not %s\n", host);
        return 2;
    }
    int loopback = (ntohl(server.sin_addr.s_addr) >> 24) == 127;
    epfd = epoll_create1(0);

    double ramp_start = monotonic_s();
    for (int first = 0; first < streams; first += batch) {
        int last = first + batch < streams ? first + batch : streams;
        for (int i = first; i < last; i++)
            if (open_stream(&conns[i], i, &server, loopback) < 0) {
                conns[i].failed = 1;
                failed_count++;
            }
        double deadline = monotonic_s() + 60;
        for (;;) {
            int waiting = 0;
            for (int i = first; i < last; i++)
                waiting += !conns[i].opened && !conns[i].failed;
            if (!waiting || monotonic_s() > deadline)
                break;
            poll_once(conns, 50);
        }
    }
    double ramp_s = monotonic_s() - ramp_start;

    double t0 = monotonic_s() + warmup, t1 = t0 + window;
    while (monotonic_s() < t0)
        poll_once(conns, 10);
    double cpu0 = cpu_s(), started = monotonic_s();
    measuring = 1;
    printf("start\n"); /* the caller samples the server as the window begins and ends */
    fflush(stdout);
    while (monotonic_s() < t1)
        poll_once(conns, 10);
    measuring = 0;
    double elapsed = monotonic_s() - started, cpu = cpu_s() - cpu0;
    printf("end\n");
    fflush(stdout);

    long opened = 0;
    for (int i = 0; i < streams; i++)
        opened += conns[i].opened;
    printf("{\"streams\": %d, \"opened\": %ld, \"refused\": %ld, \"dropped\": %ld, "
           "\"ramp_s\": %.2f, \"window_s\": %.3f, \"events\": %lu, \"events_per_s\": %.0f, "
           "\"latency_ms\": {\"p50\": %.1f, \"p99\": %.1f, \"max\": %.1f}, "
           "\"reader_cpu\": %.3f}\n",
           streams, opened, failed_count, dropped_count, ramp_s, elapsed,
           (unsigned long)events, events / elapsed, percentile(0.50), percentile(0.99),
           worst / 10.0, cpu / elapsed);
    return 0;
}
