/* sockeye-bench: a one-process libevent load generator for Socket.IO v5
 * servers (sockeye's examples/echo_server and the reference Node server
 * tests/bench/ref_server.mjs), speaking Engine.IO v4 over raw WebSockets.
 *
 *   sockeye-bench SCENARIO --port N [--server-pid PID] [options]
 *
 * Scenarios: idle, connect, echo, fanout, slow (see tests/bench/README.md
 * and usage() below). Each prints one JSON line of results and one human
 * line starting with "# " on stdout, error details on stderr, and exits 0
 * when every check passed, 1 when one failed, 2 on a usage error.
 *
 * With --server-pid the generator reads the server's /proc/PID/{status,stat,io}
 * itself at the phase boundaries only it knows (all clients connected, start
 * and end of a measurement window), so the server figures line up exactly
 * with the client-side ones.
 */
#define _GNU_SOURCE /* memmem */
#include <errno.h>
#include <inttypes.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sys/resource.h>
#include <unistd.h>

#include <event2/event.h>

#include "hist.h"
#include "wsclient.h"

#define MAX_ERRORS_SHOWN 10
#define ECHO_WINDOW      256 /* outstanding acks per client in paced mode */
#define TICK_US          1000
#define SAMPLE_US        10000

enum scenario { SC_IDLE, SC_CONNECT, SC_ECHO, SC_FANOUT, SC_SLOW };

static const char *const scenario_names[] = {"idle", "connect", "echo", "fanout", "slow"};

struct opts {
    enum scenario sc;
    unsigned port;
    unsigned server_pid; /* 0: no server statistics */
    unsigned clients;    /* idle/connect/echo: clients; fanout/slow: receivers */
    unsigned concurrency;
    unsigned messages;
    unsigned payload;
    unsigned rate; /* per second; 0 = closed loop (echo) or burst (fanout) */
    unsigned duration_ms;
    unsigned warmup_ms;
    unsigned settle_ms;
    unsigned timeout_ms;
    unsigned deadline_ms;
    unsigned slow_pct;
    unsigned rcvbuf;
};

struct proc_stats {
    bool ok;
    uint64_t rss_kb;
    uint64_t hwm_kb;
    uint64_t cpu_ticks; /* utime + stime */
    uint64_t syscw;
};

struct pending {
    uint64_t id;
    uint64_t t;
};

struct client {
    struct bench *b;
    struct wsc *ws;
    unsigned idx;
    bool receiver;
    bool slow;
    bool was_ready;
    bool failed;
    bool done;
    uint64_t next_id;
    uint64_t next_seq;
    struct pending *q; /* ring of outstanding acks, oldest first */
    unsigned q_head;
    unsigned q_len;
    unsigned q_cap;
};

struct bench {
    struct opts o;
    struct event_base *base;
    struct wsc_ctx ctx;
    struct client *clients;
    unsigned n;

    /* connect phase */
    unsigned launched, inflight, ready, connect_failed;
    bool connected;
    uint64_t t_connect_start, t_connect_end;

    struct event *phase_timer, *deadline_timer, *tick_timer, *sample_timer, *step_timer;
    const char *phase;
    int step; /* which step_timer firing comes next */

    unsigned errors;
    char first_error[256];
    bool finished;

    struct hist *handshake;
    struct hist *latency;

    /* echo */
    char *payload_json;
    size_t payload_len;
    char *sendbuf;
    size_t sendbuf_cap;
    bool measuring, stopping;
    uint64_t t_run_start, t_measure_start, t_measure_end;
    uint64_t sent, outstanding, acks_measured, skipped;
    unsigned rr;
    struct rusage ru_start, ru_end;

    /* fanout / slow */
    unsigned receivers, healthy, slow, joined, healthy_done, healthy_lost, slow_lost;
    uint64_t deliveries, seq_sent;
    uint64_t t_send_start, t_send_end, t_last_delivery;
    uint64_t rss_peak_kb;

    struct proc_stats before, after;
};

/* ---- errors and timers ---------------------------------------------- */

static void bench_error(struct bench *b, const char *fmt, ...)
    __attribute__((format(printf, 2, 3)));

static void bench_error(struct bench *b, const char *fmt, ...)
{
    char msg[256];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (b->errors == 0)
        snprintf(b->first_error, sizeof(b->first_error), "%s", msg);
    if (b->errors < MAX_ERRORS_SHOWN)
        fprintf(stderr, "sockeye-bench: %s\n", msg);
    else if (b->errors == MAX_ERRORS_SHOWN)
        fprintf(stderr, "sockeye-bench: (further errors not shown)\n");
    b->errors++;
}

static void finish(struct bench *b)
{
    if (b->finished)
        return;
    b->finished = true;
    event_base_loopbreak(b->base);
}

static void arm(struct event *ev, uint64_t us)
{
    struct timeval tv = {.tv_sec = (time_t)(us / 1000000u),
                         .tv_usec = (suseconds_t)(us % 1000000u)};
    event_add(ev, &tv);
}

static void arm_phase(struct bench *b, const char *phase)
{
    b->phase = phase;
    arm(b->phase_timer, (uint64_t)b->o.timeout_ms * 1000u);
}

static void on_phase_timeout(evutil_socket_t fd, short what, void *arg)
{
    struct bench *b = arg;
    bench_error(b,
                "timeout after %u ms in phase '%s' (ready %u/%u, joined %u, deliveries %" PRIu64
                ", outstanding acks %" PRIu64 ")",
                b->o.timeout_ms, b->phase, b->ready, b->n, b->joined, b->deliveries,
                b->outstanding);
    finish(b);
}

static void on_deadline(evutil_socket_t fd, short what, void *arg)
{
    struct bench *b = arg;
    bench_error(b, "global deadline of %u ms reached in phase '%s'", b->o.deadline_ms, b->phase);
    finish(b);
}

/* ---- server statistics from /proc --------------------------------------- */

static bool read_file(unsigned pid, const char *what, char *buf, size_t cap)
{
    char path[64];
    snprintf(path, sizeof(path), "/proc/%u/%s", pid, what);
    FILE *f = fopen(path, "r");
    if (!f)
        return false;
    size_t n = fread(buf, 1, cap - 1, f);
    fclose(f);
    buf[n] = '\0';
    return n > 0;
}

static uint64_t field_after(const char *text, const char *name)
{
    const char *p = strstr(text, name);
    return p ? strtoull(p + strlen(name), NULL, 10) : 0;
}

static struct proc_stats read_proc(unsigned pid)
{
    struct proc_stats s = {0};
    char buf[4096];
    if (!pid || !read_file(pid, "status", buf, sizeof(buf)))
        return s;
    s.rss_kb = field_after(buf, "\nVmRSS:");
    s.hwm_kb = field_after(buf, "\nVmHWM:");
    if (!read_file(pid, "stat", buf, sizeof(buf)))
        return s;
    /* utime and stime are fields 14 and 15; the command name (field 2) may
     * hold spaces, so count from the last ')'. */
    const char *p = strrchr(buf, ')');
    for (int field = 2; p && field < 14; field++)
        p = strchr(p + 1, ' ');
    if (!p)
        return s;
    char *end;
    uint64_t utime = strtoull(p + 1, &end, 10);
    uint64_t stime = strtoull(end, NULL, 10);
    s.cpu_ticks = utime + stime;
    if (!read_file(pid, "io", buf, sizeof(buf)))
        return s;
    s.syscw = field_after(buf, "syscw:");
    s.ok = true;
    return s;
}

static double cpu_us(const struct proc_stats *a, const struct proc_stats *z)
{
    return (double)(z->cpu_ticks - a->cpu_ticks) * 1e6 / (double)sysconf(_SC_CLK_TCK);
}

static double rusage_us(const struct rusage *a, const struct rusage *z)
{
    double u = (double)(z->ru_utime.tv_sec - a->ru_utime.tv_sec) * 1e6 +
               (double)(z->ru_utime.tv_usec - a->ru_utime.tv_usec);
    double s = (double)(z->ru_stime.tv_sec - a->ru_stime.tv_sec) * 1e6 +
               (double)(z->ru_stime.tv_usec - a->ru_stime.tv_usec);
    return u + s;
}

static void on_sample(evutil_socket_t fd, short what, void *arg)
{
    struct bench *b = arg;
    struct proc_stats s = read_proc(b->o.server_pid);
    if (s.rss_kb > b->rss_peak_kb)
        b->rss_peak_kb = s.rss_kb;
}

/* ---- connect phase ---------------------------------------------------- */

static void after_connect(struct bench *b);

static void launch_more(struct bench *b)
{
    while (b->launched < b->n && b->inflight < b->o.concurrency) {
        struct client *c = &b->clients[b->launched++];
        const char *err = NULL;
        c->ws = wsc_new(&b->ctx, c->slow ? (int)b->o.rcvbuf : 0, c, &err);
        if (!c->ws) {
            bench_error(b, "client %u: %s", c->idx, err);
            c->failed = true;
            b->connect_failed++;
            continue;
        }
        b->inflight++;
    }
}

static void check_connected(struct bench *b)
{
    if (b->connected || b->ready + b->connect_failed < b->n)
        return;
    b->connected = true;
    b->t_connect_end = wsc_now_us();
    event_del(b->phase_timer);
    if (b->connect_failed && b->o.sc != SC_IDLE && b->o.sc != SC_CONNECT) {
        finish(b);
        return;
    }
    after_connect(b);
}

static void start_connect(struct bench *b)
{
    arm_phase(b, "connect");
    b->t_connect_start = wsc_now_us();
    launch_more(b);
    check_connected(b);
}

/* ---- echo ------------------------------------------------------------- */

/* Writes 42<id>["echo", (no NUL) and returns its length; without
 * snprintf, which was the generator's largest user-space cost per ack. */
static size_t put_echo_head(char *out, uint64_t id)
{
    char digits[20];
    size_t n = 0;
    do
        digits[n++] = (char)('0' + id % 10);
    while ((id /= 10) > 0);
    size_t h = 0;
    out[h++] = '4';
    out[h++] = '2';
    while (n > 0)
        out[h++] = digits[--n];
    memcpy(out + h, "[\"echo\",", 8);
    return h + 8;
}

static int send_echo(struct bench *b, struct client *c)
{
    if (c->q_len == c->q_cap)
        return -1;
    size_t h = put_echo_head(b->sendbuf, c->next_id);
    memcpy(b->sendbuf + h, b->payload_json, b->payload_len);
    b->sendbuf[h + b->payload_len] = ']';
    struct pending *p = &c->q[(c->q_head + c->q_len) % c->q_cap];
    p->id = c->next_id++;
    p->t = wsc_now_us();
    c->q_len++;
    b->outstanding++;
    b->sent++;
    if (wsc_send_text(c->ws, b->sendbuf, h + b->payload_len + 1) < 0)
        bench_error(b, "client %u: send failed", c->idx);
    return 0;
}

static void echo_ack(struct bench *b, struct client *c, uint64_t id, const char *data, size_t len)
{
    uint64_t now = wsc_now_us();
    if (c->q_len == 0 || c->q[c->q_head].id != id) {
        bench_error(b, "client %u: ack %" PRIu64 " out of order or unexpected", c->idx, id);
        return;
    }
    if (len != b->payload_len + 2 || memcmp(data + 1, b->payload_json, b->payload_len) != 0)
        bench_error(b, "client %u: ack %" PRIu64 " does not echo the payload", c->idx, id);
    uint64_t t_sent = c->q[c->q_head].t;
    c->q_head = (c->q_head + 1) % c->q_cap;
    c->q_len--;
    b->outstanding--;
    if (b->measuring) {
        hist_add(b->latency, now - t_sent);
        b->acks_measured++;
    }
    if (!b->stopping && b->o.rate == 0)
        send_echo(b, c);
    if (b->stopping && b->outstanding == 0)
        finish(b);
}

static void on_tick_echo(evutil_socket_t fd, short what, void *arg)
{
    struct bench *b = arg;
    if (b->stopping)
        return;
    uint64_t due = (wsc_now_us() - b->t_run_start) * b->o.rate / 1000000u;
    while (b->sent + b->skipped < due) {
        struct client *c = &b->clients[b->rr++ % b->n];
        if (c->failed || send_echo(b, c) < 0)
            b->skipped++;
    }
}

/* The echo run is a sequence of timed steps: warm-up ends (measure), the
 * window ends (stop sending, drain the outstanding acks). */
static void on_step_echo(evutil_socket_t fd, short what, void *arg)
{
    struct bench *b = arg;
    if (b->step == 0) {
        b->step = 1;
        b->before = read_proc(b->o.server_pid);
        getrusage(RUSAGE_SELF, &b->ru_start);
        b->t_measure_start = wsc_now_us();
        b->measuring = true;
        arm(b->step_timer, (uint64_t)b->o.duration_ms * 1000u);
        return;
    }
    b->t_measure_end = wsc_now_us();
    b->after = read_proc(b->o.server_pid);
    getrusage(RUSAGE_SELF, &b->ru_end);
    b->measuring = false;
    b->stopping = true;
    if (b->tick_timer)
        event_del(b->tick_timer);
    if (b->outstanding == 0) {
        finish(b);
        return;
    }
    arm_phase(b, "drain acks");
}

static void start_echo(struct bench *b)
{
    b->phase = "echo";
    b->t_run_start = wsc_now_us();
    b->step = 0;
    arm(b->step_timer, (uint64_t)b->o.warmup_ms * 1000u);
    if (b->o.rate == 0) {
        for (unsigned i = 0; i < b->n; i++)
            send_echo(b, &b->clients[i]);
        return;
    }
    b->tick_timer = event_new(b->base, -1, EV_PERSIST, on_tick_echo, b);
    arm(b->tick_timer, TICK_US);
}

/* ---- fan-out ------------------------------------------------------------ */

static void fanout_check_done(struct bench *b)
{
    if (b->seq_sent < b->o.messages || b->healthy_done + b->healthy_lost < b->healthy)
        return;
    b->after = read_proc(b->o.server_pid);
    getrusage(RUSAGE_SELF, &b->ru_end);
    if (b->sample_timer)
        event_del(b->sample_timer);
    finish(b);
}

static void send_msg(struct bench *b)
{
    struct client *sender = &b->clients[0];
    unsigned pad = b->o.payload > 40 ? b->o.payload - 40 : 0;
    int n = snprintf(b->sendbuf, b->sendbuf_cap,
                     "42[\"msg\",\"r\",{\"seq\":%" PRIu64 ",\"t\":%" PRIu64 ",\"pad\":\"%.*s\"}]",
                     b->seq_sent, wsc_now_us(), (int)pad, b->payload_json + 1);
    b->seq_sent++;
    if (wsc_send_text(sender->ws, b->sendbuf, (size_t)n) < 0)
        bench_error(b, "sender: send failed");
}

static void sending_done(struct bench *b)
{
    b->t_send_end = wsc_now_us();
    if (b->tick_timer)
        event_del(b->tick_timer);
    arm_phase(b, "deliver");
    fanout_check_done(b);
}

static void on_tick_fanout(evutil_socket_t fd, short what, void *arg)
{
    struct bench *b = arg;
    uint64_t due = (wsc_now_us() - b->t_send_start) * b->o.rate / 1000000u + 1;
    while (b->seq_sent < due && b->seq_sent < b->o.messages)
        send_msg(b);
    if (b->seq_sent == b->o.messages)
        sending_done(b);
}

static void start_sending(struct bench *b)
{
    event_del(b->phase_timer);
    b->phase = "send";
    b->before = read_proc(b->o.server_pid);
    b->rss_peak_kb = b->before.rss_kb;
    getrusage(RUSAGE_SELF, &b->ru_start);
    if (b->o.server_pid) {
        b->sample_timer = event_new(b->base, -1, EV_PERSIST, on_sample, b);
        arm(b->sample_timer, SAMPLE_US);
    }
    b->t_send_start = wsc_now_us();
    if (b->o.rate == 0) {
        wsc_batch_writes(b->clients[0].ws);
        while (b->seq_sent < b->o.messages)
            send_msg(b);
        sending_done(b);
        return;
    }
    b->tick_timer = event_new(b->base, -1, EV_PERSIST, on_tick_fanout, b);
    arm(b->tick_timer, TICK_US);
    on_tick_fanout(-1, 0, b);
}

static void start_join(struct bench *b)
{
    arm_phase(b, "join");
    for (unsigned i = 1; i < b->n; i++) {
        struct client *c = &b->clients[i];
        char join[32];
        int n = snprintf(join, sizeof(join), "42%" PRIu64 "[\"join\",\"r\"]", c->next_id++);
        if (wsc_send_text(c->ws, join, (size_t)n) < 0)
            bench_error(b, "receiver %u: send failed", c->idx);
    }
}

static void fanout_ack(struct bench *b, struct client *c, uint64_t id)
{
    if (!c->receiver || c->next_id == 0 || id != c->next_id - 1 || b->joined >= b->receivers) {
        bench_error(b, "client %u: unexpected ack %" PRIu64, c->idx, id);
        return;
    }
    b->joined++;
    if (c->slow)
        wsc_stop_reading(c->ws);
    if (b->joined == b->receivers)
        start_sending(b);
}

/* data is the EVENT's JSON array; only ["msg",{"seq":N,"t":T,...}] counts. */
static void fanout_event(struct bench *b, struct client *c, const char *data, size_t len)
{
    static const char prefix[] = "[\"msg\",";
    if (c->slow || len < sizeof(prefix) - 1 || memcmp(data, prefix, sizeof(prefix) - 1) != 0)
        return; /* a slow receiver's late reads do not count */
    uint64_t now = wsc_now_us();
    const char *seq = memmem(data, len, "\"seq\":", 6);
    const char *t = memmem(data, len, "\"t\":", 4);
    if (!c->receiver || !seq || !t || data[len - 1] != ']') {
        bench_error(b, "client %u: malformed msg event", c->idx);
        return;
    }
    uint64_t s = strtoull(seq + 6, NULL, 10);
    uint64_t sent_at = strtoull(t + 4, NULL, 10);
    if (s != c->next_seq) {
        bench_error(b, "receiver %u: got seq %" PRIu64 ", expected %" PRIu64, c->idx, s,
                    c->next_seq);
        if (s < c->next_seq)
            return;
    }
    c->next_seq = s + 1;
    b->deliveries++;
    b->t_last_delivery = now;
    hist_add(b->latency, now - sent_at);
    if (s + 1 == b->o.messages && !c->done && !c->slow) {
        c->done = true;
        b->healthy_done++;
        fanout_check_done(b);
    }
}

/* ---- client callbacks ------------------------------------------------ */

static void cb_ready(struct wsc *ws, void *ud)
{
    struct client *c = ud;
    struct bench *b = c->b;
    c->was_ready = true;
    b->inflight--;
    b->ready++;
    hist_add(b->handshake, wsc_handshake_us(ws));
    launch_more(b);
    check_connected(b);
}

static void cb_event(struct wsc *ws, const char *data, size_t len, void *ud)
{
    struct client *c = ud;
    if (c->b->o.sc == SC_FANOUT || c->b->o.sc == SC_SLOW)
        fanout_event(c->b, c, data, len);
}

static void cb_ack(struct wsc *ws, uint64_t id, const char *data, size_t len, void *ud)
{
    struct client *c = ud;
    if (c->b->o.sc == SC_ECHO)
        echo_ack(c->b, c, id, data, len);
    else if (c->b->o.sc == SC_FANOUT || c->b->o.sc == SC_SLOW)
        fanout_ack(c->b, c, id);
    else
        bench_error(c->b, "client %u: unexpected ack", c->idx);
}

static void cb_closed(struct wsc *ws, const char *reason, void *ud)
{
    struct client *c = ud;
    struct bench *b = c->b;
    if (b->finished)
        return;
    if (!c->was_ready) {
        bench_error(b, "client %u: handshake failed: %s", c->idx, reason);
        c->failed = true;
        b->inflight--;
        b->connect_failed++;
        launch_more(b);
        check_connected(b);
        return;
    }
    if (c->slow) {
        b->slow_lost++; /* the server may drop a slow consumer: that is allowed */
        return;
    }
    c->failed = true;
    bench_error(b, "client %u: closed: %s", c->idx, reason);
    if ((b->o.sc == SC_FANOUT || b->o.sc == SC_SLOW) && c->idx == 0) {
        finish(b); /* without the sender nothing more will arrive */
        return;
    }
    if (b->o.sc == SC_ECHO) {
        b->outstanding -= c->q_len;
        c->q_len = 0;
        if (b->stopping && b->outstanding == 0)
            finish(b);
    } else if ((b->o.sc == SC_FANOUT || b->o.sc == SC_SLOW) && c->receiver && !c->done) {
        b->healthy_lost++;
        fanout_check_done(b);
    }
}

static const struct wsc_callbacks callbacks = {
    .ready = cb_ready,
    .event = cb_event,
    .ack = cb_ack,
    .closed = cb_closed,
};

/* ---- idle --------------------------------------------------------------- */

static void on_step_idle(evutil_socket_t fd, short what, void *arg)
{
    struct bench *b = arg;
    if (b->step == 0) {
        b->step = 1;
        b->after = read_proc(b->o.server_pid);
        b->phase = "hold";
        arm(b->step_timer, (uint64_t)b->o.duration_ms * 1000u);
        return;
    }
    unsigned alive = 0;
    for (unsigned i = 0; i < b->n; i++)
        alive += b->clients[i].ws && wsc_is_ready(b->clients[i].ws);
    if (alive != b->ready)
        bench_error(b, "%u of %u clients dropped while idle", b->ready - alive, b->ready);
    finish(b);
}

static void after_connect(struct bench *b)
{
    switch (b->o.sc) {
    case SC_IDLE:
        b->phase = "settle";
        b->step = 0;
        arm(b->step_timer, (uint64_t)b->o.settle_ms * 1000u);
        return;
    case SC_CONNECT:
        finish(b);
        return;
    case SC_ECHO:
        start_echo(b);
        return;
    case SC_FANOUT:
    case SC_SLOW:
        start_join(b);
        return;
    }
}

/* ---- results ------------------------------------------------------------ */

struct out {
    char text[4096];
    size_t len;
};

static void out_add(struct out *o, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void out_add(struct out *o, const char *fmt, ...)
{
    if (o->len >= sizeof(o->text))
        return;
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(o->text + o->len, sizeof(o->text) - o->len, fmt, ap);
    va_end(ap);
    if (n > 0)
        o->len += (size_t)n;
}

static void json_num(struct out *o, const char *key, double v)
{
    out_add(o, ",\"%s\":%.6g", key, v);
}

static void json_latency(struct out *o, const char *prefix, const struct hist *h)
{
    char key[64];
    static const struct {
        const char *name;
        double p;
    } pcts[] = {{"p50", 50}, {"p99", 99}, {"p999", 99.9}};
    for (size_t i = 0; i < sizeof(pcts) / sizeof(pcts[0]); i++) {
        snprintf(key, sizeof(key), "%s_%s_us", prefix, pcts[i].name);
        json_num(o, key, (double)hist_percentile(h, pcts[i].p));
    }
    snprintf(key, sizeof(key), "%s_max_us", prefix);
    json_num(o, key, (double)h->max * (h->count > 0));
}

/* Escapes the few characters an error message could hold. */
static void json_string(struct out *o, const char *key, const char *v)
{
    out_add(o, ",\"%s\":\"", key);
    for (; *v; v++) {
        if (*v == '"' || *v == '\\')
            out_add(o, "\\%c", *v);
        else if ((unsigned char)*v < 0x20)
            out_add(o, " ");
        else
            out_add(o, "%c", *v);
    }
    out_add(o, "\"");
}

static double secs(uint64_t from, uint64_t to)
{
    return to > from ? (double)(to - from) / 1e6 : 0.0;
}

static void report_idle(struct bench *b, struct out *j, struct out *h)
{
    double bpc = b->ready && b->after.ok ? ((double)b->after.rss_kb - (double)b->before.rss_kb) *
                                               1024.0 / (double)b->ready
                                         : 0;
    json_num(j, "connected", b->ready);
    json_num(j, "connect_s", secs(b->t_connect_start, b->t_connect_end));
    json_num(j, "rss_before_kb", (double)b->before.rss_kb);
    json_num(j, "rss_after_kb", (double)b->after.rss_kb);
    json_num(j, "bytes_per_client", bpc);
    out_add(h,
            "%u idle clients connected in %.2f s; server RSS %" PRIu64 " -> %" PRIu64
            " kB = %.0f B/client",
            b->ready, secs(b->t_connect_start, b->t_connect_end), b->before.rss_kb, b->after.rss_kb,
            bpc);
}

static void report_connect(struct bench *b, struct out *j, struct out *h)
{
    double s = secs(b->t_connect_start, b->t_connect_end);
    double rate = s > 0 ? b->ready / s : 0;
    json_num(j, "connected", b->ready);
    json_num(j, "concurrency", b->o.concurrency);
    json_num(j, "elapsed_s", s);
    json_num(j, "connections_per_s", rate);
    json_latency(j, "handshake", b->handshake);
    out_add(h,
            "%u handshakes (%u in flight) in %.2f s = %.0f/s; p50 %" PRIu64 " us, p99 %" PRIu64
            " us",
            b->ready, b->o.concurrency, s, rate, hist_percentile(b->handshake, 50),
            hist_percentile(b->handshake, 99));
}

static void report_echo(struct bench *b, struct out *j, struct out *h)
{
    double s = secs(b->t_measure_start, b->t_measure_end);
    double rate = s > 0 ? (double)b->acks_measured / s : 0;
    double cpu = b->after.ok && b->acks_measured ? cpu_us(&b->before, &b->after) : 0;
    double gen = s > 0 ? rusage_us(&b->ru_start, &b->ru_end) / (s * 1e6) * 100 : 0;
    json_num(j, "clients", b->n);
    json_num(j, "target_rate", b->o.rate);
    json_num(j, "payload_bytes", (double)b->payload_len);
    json_num(j, "window_s", s);
    json_num(j, "acks", (double)b->acks_measured);
    json_num(j, "acks_per_s", rate);
    json_num(j, "skipped", (double)b->skipped);
    json_latency(j, "latency", b->latency);
    json_num(j, "server_cpu_pct", s > 0 ? cpu / (s * 1e6) * 100 : 0);
    json_num(j, "server_cpu_us_per_ack", b->acks_measured ? cpu / (double)b->acks_measured : 0);
    json_num(j, "generator_cpu_pct", gen);
    out_add(h,
            "%s, %u clients: %.0f acks/s; latency p50 %" PRIu64 " p99 %" PRIu64 " p99.9 %" PRIu64
            " us; server %.2f us CPU/ack, CPU %.0f%%; generator CPU %.0f%%",
            b->o.rate ? "paced" : "closed loop", b->n, rate, hist_percentile(b->latency, 50),
            hist_percentile(b->latency, 99), hist_percentile(b->latency, 99.9),
            b->acks_measured ? cpu / (double)b->acks_measured : 0,
            s > 0 ? cpu / (s * 1e6) * 100 : 0, gen);
    if (b->skipped)
        out_add(h, " (%" PRIu64 " sends skipped: the server fell behind)", b->skipped);
}

static void report_fanout(struct bench *b, struct out *j, struct out *h)
{
    double s = secs(b->t_send_start, b->t_last_delivery);
    double rate = s > 0 ? (double)b->deliveries / s : 0;
    uint64_t expected = (uint64_t)b->healthy * b->o.messages;
    uint64_t syscw = b->after.ok ? b->after.syscw - b->before.syscw : 0;
    double per = b->deliveries ? (double)syscw / (double)b->deliveries : 0;
    double gen = s > 0 ? rusage_us(&b->ru_start, &b->ru_end) / (s * 1e6) * 100 : 0;
    json_num(j, "receivers", b->receivers);
    json_num(j, "slow_receivers", b->slow);
    json_num(j, "slow_disconnected", b->slow_lost);
    json_num(j, "messages", b->o.messages);
    json_num(j, "target_rate", b->o.rate);
    json_num(j, "expected_deliveries", (double)expected);
    json_num(j, "deliveries", (double)b->deliveries);
    json_num(j, "deliveries_per_s", rate);
    json_num(j, "all_received_ms", s * 1e3);
    json_latency(j, "latency", b->latency);
    json_num(j, "server_syscw", (double)syscw);
    json_num(j, "syscw_per_delivery", per);
    json_num(j, "server_cpu_us_per_delivery",
             b->after.ok && b->deliveries ? cpu_us(&b->before, &b->after) / (double)b->deliveries
                                          : 0);
    json_num(j, "server_cpu_pct",
             b->after.ok && s > 0 ? cpu_us(&b->before, &b->after) / (s * 1e6) * 100 : 0);
    json_num(j, "generator_cpu_pct", gen);
    json_num(j, "rss_before_kb", (double)b->before.rss_kb);
    json_num(j, "rss_peak_kb", (double)b->rss_peak_kb);
    json_num(j, "rss_hwm_kb", (double)b->after.hwm_kb);
    out_add(h,
            "%s, %u receivers (%u slow) x %u msgs: %" PRIu64 "/%" PRIu64
            " delivered in %.0f ms = %.0f/s; p50 %" PRIu64 " p99 %" PRIu64
            " us; %.3f writes/delivery; RSS peak %" PRIu64 " kB; generator CPU %.0f%%",
            b->o.rate ? "paced" : "burst", b->receivers, b->slow, b->o.messages, b->deliveries,
            expected, s * 1e3, rate, hist_percentile(b->latency, 50),
            hist_percentile(b->latency, 99), per, b->rss_peak_kb, gen);
}

static void report(struct bench *b)
{
    struct out j = {.len = 0}, h = {.len = 0};
    bool ok = b->errors == 0;
    out_add(&j, "{\"scenario\":\"%s\"", scenario_names[b->o.sc]);
    out_add(&j, ",\"ok\":%s", ok ? "true" : "false");
    json_num(&j, "errors", b->errors);
    json_string(&j, "first_error", b->first_error);
    json_num(&j, "server_pid", b->o.server_pid);
    out_add(&h, "# %s: ", scenario_names[b->o.sc]);
    switch (b->o.sc) {
    case SC_IDLE:
        report_idle(b, &j, &h);
        break;
    case SC_CONNECT:
        report_connect(b, &j, &h);
        break;
    case SC_ECHO:
        report_echo(b, &j, &h);
        break;
    case SC_FANOUT:
    case SC_SLOW:
        report_fanout(b, &j, &h);
        break;
    }
    out_add(&j, "}");
    out_add(&h, " -- %s", ok ? "OK" : "FAILED: ");
    if (!ok)
        out_add(&h, "%u error(s), first: %s", b->errors, b->first_error);
    printf("%s\n%s\n", j.text, h.text);
    fflush(stdout);
}

/* ---- set-up ------------------------------------------------------------ */

static void usage(FILE *f)
{
    fprintf(f,
            "usage: sockeye-bench SCENARIO --port N [--server-pid PID] [options]\n"
            "scenarios:\n"
            "  idle     connect --clients (10000) and hold them idle --duration ms; server\n"
            "           RSS before and --settle ms after all connected -> bytes/client\n"
            "  connect  connect --clients (5000) with --concurrency (50) handshakes in flight\n"
            "  echo     --clients (100) send echo(payload) with ack: closed loop, or\n"
            "           --rate acks/s in total; --warmup ms then --duration ms measured\n"
            "  fanout   --clients receivers (1000) join room r; one sender emits --messages\n"
            "           (1000) msg events of ~--payload bytes: burst, or --rate msgs/s\n"
            "  slow     fanout where --slow-percent (10) of receivers never read\n"
            "           (SO_RCVBUF --rcvbuf bytes)\n"
            "options: --concurrency N --payload BYTES --timeout MS (per phase, 30000)\n"
            "         --deadline MS (whole run, 300000) --settle MS --warmup MS --duration MS\n");
}

static int parse_uint(const char *flag, const char *text, unsigned *out)
{
    char *end;
    errno = 0;
    unsigned long v = strtoul(text, &end, 10);
    if (errno || end == text || *end || text[0] == '-' || v > 0xffffffffUL) {
        fprintf(stderr, "sockeye-bench: %s: invalid number '%s'\n", flag, text);
        return -1;
    }
    *out = (unsigned)v;
    return 0;
}

static void set_defaults(struct opts *o)
{
    static const unsigned clients[] = {10000, 5000, 100, 1000, 1000};
    o->clients = clients[o->sc];
    o->concurrency = o->sc == SC_IDLE ? 100 : 50;
    o->messages = 1000;
    o->payload = o->sc == SC_ECHO ? 64 : 100;
    o->duration_ms = o->sc == SC_IDLE ? 2000 : 5000;
    o->warmup_ms = 1000;
    o->settle_ms = 1000;
    o->timeout_ms = 30000;
    o->deadline_ms = 300000;
    o->slow_pct = o->sc == SC_SLOW ? 10 : 0;
    o->rcvbuf = 4096;
}

static int parse_args(int argc, char **argv, struct opts *o)
{
    static const struct {
        const char *flag;
        size_t off;
    } flags[] = {
        {"--port", offsetof(struct opts, port)},
        {"--server-pid", offsetof(struct opts, server_pid)},
        {"--clients", offsetof(struct opts, clients)},
        {"--concurrency", offsetof(struct opts, concurrency)},
        {"--messages", offsetof(struct opts, messages)},
        {"--payload", offsetof(struct opts, payload)},
        {"--rate", offsetof(struct opts, rate)},
        {"--duration", offsetof(struct opts, duration_ms)},
        {"--warmup", offsetof(struct opts, warmup_ms)},
        {"--settle", offsetof(struct opts, settle_ms)},
        {"--timeout", offsetof(struct opts, timeout_ms)},
        {"--deadline", offsetof(struct opts, deadline_ms)},
        {"--slow-percent", offsetof(struct opts, slow_pct)},
        {"--rcvbuf", offsetof(struct opts, rcvbuf)},
    };
    if (argc < 2) {
        usage(stderr);
        return -1;
    }
    if (strcmp(argv[1], "-h") == 0 || strcmp(argv[1], "--help") == 0) {
        usage(stdout);
        exit(0);
    }
    size_t k = 0;
    while (k < sizeof(scenario_names) / sizeof(scenario_names[0]) &&
           strcmp(argv[1], scenario_names[k]) != 0)
        k++;
    if (k == sizeof(scenario_names) / sizeof(scenario_names[0])) {
        fprintf(stderr, "sockeye-bench: unknown scenario '%s'\n", argv[1]);
        usage(stderr);
        return -1;
    }
    o->sc = (enum scenario)k;
    set_defaults(o);
    for (int i = 2; i < argc; i += 2) {
        size_t f = 0;
        while (f < sizeof(flags) / sizeof(flags[0]) && strcmp(argv[i], flags[f].flag) != 0)
            f++;
        if (f == sizeof(flags) / sizeof(flags[0]) || i + 1 >= argc) {
            fprintf(stderr, "sockeye-bench: unknown option or missing value: %s\n", argv[i]);
            return -1;
        }
        if (parse_uint(argv[i], argv[i + 1], (unsigned *)((char *)o + flags[f].off)) < 0)
            return -1;
    }
    if (o->port == 0 || o->port > 65535 || o->clients == 0 || o->concurrency == 0 ||
        o->slow_pct > 100 || ((o->sc == SC_FANOUT || o->sc == SC_SLOW) && o->messages == 0) ||
        o->payload > 1000000 || o->timeout_ms == 0 || o->deadline_ms == 0) {
        fprintf(stderr, "sockeye-bench: need --port 1..65535, non-zero counts, --payload <= 1e6, "
                        "--slow-percent <= 100\n");
        return -1;
    }
    return 0;
}

/* Raises the soft descriptor limit to what the run needs, if the hard limit
 * allows. */
static int ensure_fds(unsigned needed)
{
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) < 0)
        return -1;
    if (rl.rlim_cur >= needed)
        return 0;
    if (rl.rlim_max != RLIM_INFINITY && rl.rlim_max < needed) {
        fprintf(stderr,
                "sockeye-bench: %u file descriptors needed, hard limit is %llu "
                "(raise it: ulimit -Hn)\n",
                needed, (unsigned long long)rl.rlim_max);
        return -1;
    }
    rl.rlim_cur = needed;
    return setrlimit(RLIMIT_NOFILE, &rl);
}

/* The payload of echo (and the padding of msg): a JSON string of
 * --payload bytes including its quotes. */
static int make_payload(struct bench *b)
{
    size_t n = b->o.payload < 2 ? 2 : b->o.payload;
    b->payload_json = malloc(n + 1);
    b->sendbuf_cap = n + 256;
    b->sendbuf = malloc(b->sendbuf_cap);
    if (!b->payload_json || !b->sendbuf)
        return -1;
    memset(b->payload_json, 'x', n);
    b->payload_json[0] = '"';
    b->payload_json[n - 1] = '"';
    b->payload_json[n] = '\0';
    b->payload_len = n;
    return 0;
}

static int setup_clients(struct bench *b)
{
    bool fan = b->o.sc == SC_FANOUT || b->o.sc == SC_SLOW;
    b->n = b->o.clients + (fan ? 1 : 0);
    b->clients = calloc(b->n, sizeof(*b->clients));
    if (!b->clients)
        return -1;
    unsigned qcap = b->o.sc != SC_ECHO ? 0 : b->o.rate ? ECHO_WINDOW : 1;
    for (unsigned i = 0; i < b->n; i++) {
        struct client *c = &b->clients[i];
        c->b = b;
        c->idx = i;
        c->receiver = fan && i > 0;
        if (c->receiver) {
            /* Spread the slow receivers evenly: receiver r is slow when r * pct
             * crosses a multiple of 100. */
            unsigned r = i - 1;
            c->slow = (r + 1) * b->o.slow_pct / 100 != r * b->o.slow_pct / 100;
            b->receivers++;
            b->slow += c->slow;
        }
        if (qcap) {
            c->q = calloc(qcap, sizeof(*c->q));
            if (!c->q)
                return -1;
            c->q_cap = qcap;
        }
    }
    b->healthy = b->receivers - b->slow;
    return 0;
}

static void cleanup(struct bench *b)
{
    if (b->clients) {
        for (unsigned i = 0; i < b->n; i++) {
            wsc_free(b->clients[i].ws);
            free(b->clients[i].q);
        }
        free(b->clients);
    }
    struct event *timers[] = {b->phase_timer, b->deadline_timer, b->tick_timer, b->sample_timer,
                              b->step_timer};
    for (size_t i = 0; i < sizeof(timers) / sizeof(timers[0]); i++)
        if (timers[i])
            event_free(timers[i]);
    free(b->handshake);
    free(b->latency);
    free(b->payload_json);
    free(b->sendbuf);
    if (b->base)
        event_base_free(b->base);
}

static int setup(struct bench *b)
{
    b->base = event_base_new();
    b->handshake = malloc(sizeof(*b->handshake));
    b->latency = malloc(sizeof(*b->latency));
    if (!b->base || !b->handshake || !b->latency || make_payload(b) < 0 || setup_clients(b) < 0)
        return -1;
    hist_init(b->handshake);
    hist_init(b->latency);
    if (wsc_ctx_init(&b->ctx, b->base, (uint16_t)b->o.port, &callbacks) < 0)
        return -1;
    event_callback_fn step = b->o.sc == SC_IDLE ? on_step_idle : on_step_echo;
    b->phase_timer = evtimer_new(b->base, on_phase_timeout, b);
    b->deadline_timer = evtimer_new(b->base, on_deadline, b);
    b->step_timer = evtimer_new(b->base, step, b);
    return b->phase_timer && b->deadline_timer && b->step_timer ? 0 : -1;
}

int main(int argc, char **argv)
{
    struct bench b = {0};
    if (parse_args(argc, argv, &b.o) < 0)
        return 2;
    if (ensure_fds(b.o.clients + 64) < 0)
        return 2;
    if (b.o.server_pid && !read_proc(b.o.server_pid).ok) {
        fprintf(stderr, "sockeye-bench: cannot read /proc/%u (status, stat, io)\n", b.o.server_pid);
        return 2;
    }
    if (setup(&b) < 0) {
        fprintf(stderr, "sockeye-bench: set-up failed (out of memory?)\n");
        cleanup(&b);
        return 2;
    }
    arm(b.deadline_timer, (uint64_t)b.o.deadline_ms * 1000u);
    b.before = read_proc(b.o.server_pid);
    start_connect(&b);
    if (!b.finished)
        event_base_dispatch(b.base);
    if (!b.finished)
        bench_error(&b, "event loop ended early in phase '%s'", b.phase);
    report(&b);
    cleanup(&b);
    return b.errors ? 1 : 0;
}
