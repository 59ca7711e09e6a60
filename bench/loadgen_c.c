/* A cheap load generator for bench/gateway_load.py: N JT/T 808 (2013) devices on loopback,
 * one thread, epoll. Compiled at run time by bench/loadgen_c.py with the machine's gcc.
 *
 * Honest like bench/loadgen.py: each device connects, registers (0x0100) unless it holds an
 * auth code, authenticates (0x0102) with the code the platform gave it, then sends a real
 * 0x0200 (header, BCD phone, serial, check code, escaping; alarm, status, position, BCD
 * Beijing time, three additional items) every --interval seconds, spread evenly; every
 * frame received is unescaped and its check code verified, and a 0x0200 counts as
 * acknowledged only when a 0x8001 answers its serial with result 0. A device whose
 * connection ends reconnects after a random delay (0..--reconnect s), authenticating with
 * its code. Prints one JSON line a second (the same fields as loadgen.py, plus
 * authentications, reconnects, skipped), and with --acks FILE writes every acknowledged
 * position (device index, unix time, latitude and longitude in 1e-6 degrees: 4 x int32)
 * for the no-loss check.
 *
 *   loadgen --port P --devices N --first 13800000000 --interval 1 --duration 120
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define RING 256        /* serials remembered per device (send times of 0x0200) */
#define INBUF 2048
#define OUTBUF 1024
#define MAXLAT_BUCKETS 60000  /* latency histogram: 1 ms buckets, the last one is "more" */

enum { IDLE, CONNECTING, REGISTERING, AUTHENTICATING, ACTIVE };

typedef struct {
    int fd, state, index;
    uint16_t serial, auth_serial;
    char phone_bcd[6];
    char code[64];
    int code_len;
    uint32_t n;
    double sent_at[RING];
    uint16_t sent_serial[RING];
    int32_t sent_pos[RING][3];  /* unix time, latitude, longitude: what an ack stands for */
    unsigned char in[INBUF];
    int in_len;
    unsigned char out[OUTBUF];
    int out_len;
    int watching_out;  /* EPOLLOUT asked for */
    double retry_at;
} Device;

static Device *devs;
static int ndev, port, epfd;
static long long first_phone;
static double interval = 2.0, duration = 120, connect_rate = 2000, reconnect = 5.0;
static long long c_connected, c_authenticated, c_sent, c_acked, c_refused, c_errors, c_auths,
    c_reconnects, c_skipped;
static long long lat_hist[MAXLAT_BUCKETS];
static FILE *acks;
static volatile sig_atomic_t stopping;

static void on_term(int sig) { (void)sig; stopping = 1; }

static double now_mono(void) {
    struct timespec t;
    clock_gettime(CLOCK_MONOTONIC, &t);
    return t.tv_sec + t.tv_nsec / 1e9;
}

static int escape_frame(const unsigned char *raw, int n, unsigned char *out) {
    int j = 0;
    out[j++] = 0x7e;
    for (int i = 0; i < n; i++) {
        if (raw[i] == 0x7e) { out[j++] = 0x7d; out[j++] = 0x02; }
        else if (raw[i] == 0x7d) { out[j++] = 0x7d; out[j++] = 0x01; }
        else out[j++] = raw[i];
    }
    out[j++] = 0x7e;
    return j;
}

/* header (2013: 12 bytes) + body + check code, escaped and framed, into out; its length */
static int build(Device *d, uint16_t msg_id, const unsigned char *body, int blen,
                 unsigned char *out, uint16_t *serial_out) {
    unsigned char raw[512];
    d->serial = (uint16_t)(d->serial + 1);
    raw[0] = msg_id >> 8; raw[1] = msg_id & 0xff;
    raw[2] = (blen >> 8) & 0x03; raw[3] = blen & 0xff;
    memcpy(raw + 4, d->phone_bcd, 6);
    raw[10] = d->serial >> 8; raw[11] = d->serial & 0xff;
    memcpy(raw + 12, body, blen);
    unsigned char x = 0;
    for (int i = 0; i < 12 + blen; i++) x ^= raw[i];
    raw[12 + blen] = x;
    if (serial_out) *serial_out = d->serial;
    return escape_frame(raw, 13 + blen, out);
}

static void close_device(Device *d, double now);

/* write what is pending; 0 ok (maybe partly pending), -1 the connection failed */
static int flush(Device *d) {
    while (d->out_len > 0) {
        ssize_t w = write(d->fd, d->out, d->out_len);
        if (w < 0) {
            if (errno == EAGAIN) break;
            return -1;
        }
        memmove(d->out, d->out + w, d->out_len - w);
        d->out_len -= w;
    }
    int want = d->out_len > 0;
    if (want != d->watching_out) {  /* a system call only when it changes */
        struct epoll_event ev = {.events = EPOLLIN | (want ? EPOLLOUT : 0), .data.u32 = d->index};
        epoll_ctl(epfd, EPOLL_CTL_MOD, d->fd, &ev);
        d->watching_out = want;
    }
    return 0;
}

static int queue(Device *d, const unsigned char *frame, int n) {
    if (d->out_len + n > OUTBUF) return -1;
    memcpy(d->out + d->out_len, frame, n);
    d->out_len += n;
    return 0;
}

static void send_frame(Device *d, uint16_t msg_id, const unsigned char *body, int blen,
                       uint16_t *serial, double now) {
    unsigned char frame[1100];
    int n = build(d, msg_id, body, blen, frame, serial);
    if (queue(d, frame, n) < 0 || flush(d) < 0) close_device(d, now);
}

static void send_register(Device *d, double now) {
    unsigned char b[64];
    memset(b, 0, sizeof b);
    b[0] = 0; b[1] = 44; b[2] = 300 >> 8; b[3] = 300 & 0xff;  /* province, city */
    memcpy(b + 4, "BENCH", 5);                                /* manufacturer (5) */
    memcpy(b + 9, "LG", 2);                                   /* model (20) */
    memcpy(b + 29, "T1", 2);                                  /* terminal id (7) */
    b[36] = 1;                                                /* plate colour */
    b[37] = 'B';                                              /* plate */
    d->state = REGISTERING;
    send_frame(d, 0x0100, b, 38, NULL, now);
}

static void send_auth(Device *d, double now) {
    d->state = AUTHENTICATING;
    send_frame(d, 0x0102, (unsigned char *)d->code, d->code_len, &d->auth_serial, now);
}

static unsigned char bcd(int v) { return (unsigned char)(((v / 10) << 4) | (v % 10)); }

static void put32(unsigned char *p, uint32_t v) { p[0] = v >> 24; p[1] = v >> 16; p[2] = v >> 8; p[3] = v; }
static void put16(unsigned char *p, uint16_t v) { p[0] = v >> 8; p[1] = v; }

static void report(Device *d, time_t unix_now, double now) {
    if (d->out_len) { c_skipped++; return; }  /* the socket is full: offered less, counted */
    unsigned char b[64];
    d->n++;
    uint32_t lat = 22500000 + (d->index % 1000) * 100 + d->n * 10;
    uint32_t lon = 114000000 + d->n * 10;
    struct tm bj;
    time_t t = unix_now + 8 * 3600;  /* Beijing time, as the standard says */
    gmtime_r(&t, &bj);
    put32(b, 0); put32(b + 4, 3); put32(b + 8, lat); put32(b + 12, lon);
    put16(b + 16, 20); put16(b + 18, 400); put16(b + 20, 90);
    b[22] = bcd(bj.tm_year % 100); b[23] = bcd(bj.tm_mon + 1); b[24] = bcd(bj.tm_mday);
    b[25] = bcd(bj.tm_hour); b[26] = bcd(bj.tm_min); b[27] = bcd(bj.tm_sec);
    b[28] = 0x01; b[29] = 4; put32(b + 30, d->n);  /* mileage */
    b[34] = 0x30; b[35] = 1; b[36] = 25;           /* signal */
    b[37] = 0x31; b[38] = 1; b[39] = 12;           /* satellites */
    uint16_t serial;
    unsigned char frame[256];
    int n = build(d, 0x0200, b, 40, frame, &serial);
    d->sent_at[serial % RING] = now;
    d->sent_serial[serial % RING] = serial;
    if (queue(d, frame, n) < 0 || flush(d) < 0) { close_device(d, now); return; }
    c_sent++;
    d->sent_pos[serial % RING][0] = (int32_t)unix_now;
    d->sent_pos[serial % RING][1] = (int32_t)lat;
    d->sent_pos[serial % RING][2] = (int32_t)lon;
}

static void on_frame(Device *d, unsigned char *raw, int n, double now) {
    if (n < 13) { c_errors++; return; }
    unsigned char x = 0;
    for (int i = 0; i < n - 1; i++) x ^= raw[i];
    if (x != raw[n - 1]) { c_errors++; return; }
    uint16_t msg_id = (raw[0] << 8) | raw[1];
    uint16_t props = (raw[2] << 8) | raw[3];
    int blen = props & 0x3ff, hlen = 12;
    if (props & 0x4000) hlen = 17;       /* 2019 header: never sent to a 2013 device */
    if (props & 0x2000) hlen += 4;
    if (hlen + blen + 1 != n) { c_errors++; return; }
    unsigned char *body = raw + hlen;
    if (msg_id == 0x8001 && blen >= 5) {
        uint16_t rs = (body[0] << 8) | body[1], rid = (body[2] << 8) | body[3];
        int result = body[4];
        if (rid == 0x0200) {
            int slot = rs % RING;
            if (d->sent_serial[slot] == rs && d->sent_at[slot] > 0) {
                if (result == 0) {
                    c_acked++;
                    if (acks) {
                        int32_t rec[4] = {d->index, d->sent_pos[slot][0], d->sent_pos[slot][1], d->sent_pos[slot][2]};
                        fwrite(rec, sizeof rec, 1, acks);
                    }
                    int ms = (int)((now - d->sent_at[slot]) * 1000);
                    lat_hist[ms < MAXLAT_BUCKETS ? ms : MAXLAT_BUCKETS - 1]++;
                } else c_refused++;
                d->sent_at[slot] = 0;
            }
        } else if (rid == 0x0102 && rs == d->auth_serial && d->state == AUTHENTICATING) {
            if (result == 0) {
                d->state = ACTIVE;
                c_authenticated++;
                c_auths++;
            } else {
                c_refused++;
                d->code_len = 0;  /* register again next time */
                close_device(d, now);
            }
        }
    } else if (msg_id == 0x8100 && blen >= 3) {
        if (body[2] == 0 && blen > 3 && blen - 3 < (int)sizeof d->code) {
            d->code_len = blen - 3;
            memcpy(d->code, body + 3, d->code_len);
            send_auth(d, now);
        } else {
            c_errors++;
            close_device(d, now);
        }
    }
}

static void on_readable(Device *d, double now) {
    for (;;) {
        if (d->in_len == INBUF) { c_errors++; close_device(d, now); return; }
        ssize_t r = read(d->fd, d->in + d->in_len, INBUF - d->in_len);
        if (r == 0) { close_device(d, now); return; }
        if (r < 0) {
            if (errno == EAGAIN) break;
            close_device(d, now);
            return;
        }
        d->in_len += r;
    }
    /* cut frames between 0x7e flags, unescape, hand over */
    int start = -1, consumed = 0;
    for (int i = 0; i < d->in_len; i++) {
        if (d->in[i] != 0x7e) continue;
        if (start >= 0 && i - start > 1) {
            unsigned char raw[INBUF];
            int n = 0, bad = 0;
            for (int k = start + 1; k < i; k++) {
                if (d->in[k] == 0x7d && k + 1 < i) {
                    k++;
                    if (d->in[k] == 0x01) raw[n++] = 0x7d;
                    else if (d->in[k] == 0x02) raw[n++] = 0x7e;
                    else bad = 1;
                } else raw[n++] = d->in[k];
            }
            if (bad) c_errors++;
            else on_frame(d, raw, n, now);
            if (d->fd < 0) return;
            start = -1;
            consumed = i + 1;
        } else {
            start = i;
            consumed = i;
        }
    }
    if (start < 0) consumed = d->in_len;
    memmove(d->in, d->in + consumed, d->in_len - consumed);
    d->in_len -= consumed;
}

static void close_device(Device *d, double now) {
    if (d->fd >= 0) {
        epoll_ctl(epfd, EPOLL_CTL_DEL, d->fd, NULL);
        close(d->fd);
        if (d->state != CONNECTING) c_connected--;
    }
    if (d->state == ACTIVE) c_authenticated--;
    d->fd = -1;
    d->state = IDLE;
    d->in_len = d->out_len = 0;
    d->watching_out = 0;
    d->retry_at = now + reconnect * (rand() / (double)RAND_MAX);
    for (int i = 0; i < RING; i++) d->sent_at[i] = 0;
}

static void start_connect(Device *d, double now) {
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK, 0);
    if (fd < 0) { c_errors++; d->retry_at = now + 1; return; }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    struct sockaddr_in a = {.sin_family = AF_INET, .sin_port = htons(port)};
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    d->fd = fd;
    d->state = CONNECTING;
    int r = connect(fd, (struct sockaddr *)&a, sizeof a);
    struct epoll_event ev = {.events = EPOLLOUT | EPOLLIN, .data.u32 = d->index};
    epoll_ctl(epfd, EPOLL_CTL_ADD, fd, &ev);
    if (r < 0 && errno != EINPROGRESS) { c_errors++; close_device(d, now); }
}

static void connected(Device *d, double now) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(d->fd, SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) { d->state = CONNECTING; close_device(d, now); return; }
    c_connected++;
    d->watching_out = 1;  /* registered with EPOLLOUT for the connect; flush() drops it */
    if (d->n || d->code_len) c_reconnects++;
    if (d->code_len) send_auth(d, now);
    else send_register(d, now);
}

static void print_stats(void) {
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    double cpu = ru.ru_utime.tv_sec + ru.ru_utime.tv_usec / 1e6 + ru.ru_stime.tv_sec + ru.ru_stime.tv_usec / 1e6;
    printf("{\"t\": %.3f, \"connected\": %lld, \"authenticated\": %lld, \"sent\": %lld, \"acked\": %lld,"
           " \"refused\": %lld, \"errors\": %lld, \"authentications\": %lld, \"reconnects\": %lld,"
           " \"skipped\": %lld, \"cpu\": %.3f, \"latency\": {",
           (double)time(NULL), c_connected, c_authenticated, c_sent, c_acked, c_refused, c_errors,
           c_auths, c_reconnects, c_skipped, cpu);
    int first = 1;
    for (int i = 0; i < MAXLAT_BUCKETS; i++) {
        if (lat_hist[i]) {
            printf("%s\"%d\": %lld", first ? "" : ", ", i, lat_hist[i]);
            first = 0;
            lat_hist[i] = 0;
        }
    }
    printf("}}\n");
    fflush(stdout);
}

int main(int argc, char **argv) {
    const char *acks_path = NULL;
    for (int i = 1; i + 1 < argc; i += 2) {
        if (!strcmp(argv[i], "--port")) port = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--devices")) ndev = atoi(argv[i + 1]);
        else if (!strcmp(argv[i], "--first")) first_phone = atoll(argv[i + 1]);
        else if (!strcmp(argv[i], "--interval")) interval = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--duration")) duration = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--connect-rate")) connect_rate = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--reconnect")) reconnect = atof(argv[i + 1]);
        else if (!strcmp(argv[i], "--acks")) acks_path = argv[i + 1];
        else { fprintf(stderr, "unknown option %s\n", argv[i]); return 2; }
    }
    if (!port || ndev <= 0 || interval <= 0) { fprintf(stderr, "--port and --devices are required\n"); return 2; }
    struct rlimit rl;
    getrlimit(RLIMIT_NOFILE, &rl);
    rl.rlim_cur = rl.rlim_max;
    setrlimit(RLIMIT_NOFILE, &rl);
    if (acks_path && !(acks = fopen(acks_path, "wb"))) { perror(acks_path); return 2; }
    devs = calloc(ndev, sizeof(Device));
    for (int i = 0; i < ndev; i++) {
        Device *d = &devs[i];
        d->fd = -1;
        d->index = i;
        char digits[13];
        snprintf(digits, sizeof digits, "%012lld", first_phone + i);
        for (int k = 0; k < 6; k++) d->phone_bcd[k] = ((digits[2 * k] - '0') << 4) | (digits[2 * k + 1] - '0');
        d->retry_at = -1;
    }
    epfd = epoll_create1(0);
    double t0 = now_mono(), next_tick = t0, next_print = t0 + 1;
    const double tick = 0.01;
    int slots = (int)(interval / tick); if (slots < 1) slots = 1;
    int slot = 0, launched = 0;
    double launch_credit = 0;
    struct epoll_event evs[1024];
    signal(SIGTERM, on_term);
    signal(SIGPIPE, SIG_IGN);
    while (!stopping && now_mono() - t0 < duration) {
        double now = now_mono();
        int timeout = (int)((next_tick - now) * 1000);
        int n = epoll_wait(epfd, evs, 1024, timeout > 0 ? timeout : 0);
        now = now_mono();
        for (int i = 0; i < n; i++) {
            Device *d = &devs[evs[i].data.u32];
            if (d->fd < 0) continue;
            if (d->state == CONNECTING) {
                if (evs[i].events & (EPOLLOUT | EPOLLERR | EPOLLHUP)) connected(d, now);
                continue;
            }
            if (evs[i].events & EPOLLOUT) { if (flush(d) < 0) { close_device(d, now); continue; } }
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) on_readable(d, now);
        }
        if (now >= next_tick) {
            next_tick += tick;
            if (next_tick < now) next_tick = now + tick;
            launch_credit += connect_rate * tick;
            while (launched < ndev && launch_credit >= 1) {
                start_connect(&devs[launched++], now);
                launch_credit -= 1;
            }
            if (launch_credit > connect_rate) launch_credit = connect_rate;
            for (int i = 0; i < launched; i++) {  /* reconnections, paced like first contacts */
                Device *d = &devs[i];
                if (d->fd < 0 && d->retry_at >= 0 && d->retry_at <= now && launch_credit >= 1) {
                    d->retry_at = -1;
                    start_connect(d, now);
                    launch_credit -= 1;
                }
            }
            time_t unix_now = time(NULL);
            for (int i = slot; i < launched; i += slots)
                if (devs[i].state == ACTIVE) report(&devs[i], unix_now, now);
            slot = (slot + 1) % slots;
        }
        if (now >= next_print) { print_stats(); next_print += 1; }
    }
    print_stats();
    if (acks) fclose(acks);
    return 0;
}
