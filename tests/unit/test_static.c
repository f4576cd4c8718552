/* Unit tests for src/static: a real event base and http_server on
 * socketpairs, a raw client, and a temporary tree with an app root, a fake
 * client bundle, and files and symlinks outside the root that must never be
 * served. The real socket.io-client dist folder is tested too when it is
 * installed (tests/e2e: npm ci), else that test is skipped. */
#define _GNU_SOURCE /* memmem */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/bufferevent.h>
#include <event2/event.h>
#include <zlib.h>

#include "http.h"
#include "static.h"

#define WAIT_MS      3000
#define BUNDLE_MOUNT "/socket.io/"

struct fx {
    struct event_base *base;
    struct http_server *hs;
    struct static_files *app;
    struct static_files *bundle;
    char dir[64];  /* the temporary tree */
    char root[96]; /* dir/root: the app */
    char dist[96]; /* dir/dist: a fake client bundle */
    char *big_text;
    size_t big_len;
};

struct resp {
    int status;
    char *head; /* NUL-terminated */
    size_t head_len;
    char *body;
    size_t body_len;
    size_t extra; /* bytes after the response (must be 0) */
};

/* --- harness ------------------------------------------------------------- */

static long now_ms(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static void on_request(struct http_request *req, void *arg)
{
    struct fx *f = arg;
    size_t len;
    const char *path = http_request_path(req, &len);
    const size_t mlen = strlen(BUNDLE_MOUNT);
    bool served;
    if (len >= mlen && memcmp(path, BUNDLE_MOUNT, mlen) == 0)
        served = static_files_serve(f->bundle, req, path + mlen, len - mlen);
    else
        served = static_files_serve(f->app, req, path, len);
    if (!served)
        http_respond(req, 404, "text/plain", NULL, "Not Found", 9, 0);
}

static void write_file(const char *dir, const char *name, const void *data, size_t len)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    FILE *fp = fopen(path, "wb");
    assert_non_null(fp);
    assert_int_equal(fwrite(data, 1, len, fp), len);
    assert_int_equal(fclose(fp), 0);
}

static void write_str(const char *dir, const char *name, const char *s)
{
    write_file(dir, name, s, strlen(s));
}

static void make_dir(const char *dir, const char *name)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(mkdir(path, 0755), 0);
}

static void make_link(const char *dir, const char *name, const char *target)
{
    char path[256];
    snprintf(path, sizeof(path), "%s/%s", dir, name);
    assert_int_equal(symlink(target, path), 0);
}

static int setup(void **state)
{
    struct fx *f = calloc(1, sizeof(*f));
    assert_non_null(f);
    strcpy(f->dir, "/tmp/sockeye-static-XXXXXX");
    assert_non_null(mkdtemp(f->dir));
    snprintf(f->root, sizeof(f->root), "%s/root", f->dir);
    snprintf(f->dist, sizeof(f->dist), "%s/dist", f->dir);
    make_dir(f->dir, "root");
    make_dir(f->dir, "dist");
    write_str(f->dir, "secret.txt", "top secret\n");

    /* A text file well over compress_min (1024). */
    f->big_len = 8192;
    f->big_text = malloc(f->big_len);
    for (size_t i = 0; i < f->big_len; i++)
        f->big_text[i] = "console.log('sockeye');\n"[i % 24];
    char bin[2048];
    for (size_t i = 0; i < sizeof(bin); i++)
        bin[i] = (char)(i * 7 + 3);

    const char *r = f->root;
    write_str(r, "index.html", "<!doctype html><title>root</title>\n");
    write_file(r, "app.js", f->big_text, f->big_len);
    write_str(r, "style.css", "body { color: red; }\n");
    write_file(r, "logo.png", bin, sizeof(bin));
    write_str(r, "data", "raw");
    write_str(r, "my file.txt", "spaced");
    write_str(r, ".env", "SECRET=1");
    make_dir(r, "sub");
    make_dir(r, "sub/empty");
    write_str(r, "sub/index.html", "<p>sub</p>");
    write_str(r, "sub/page.txt", "page");
    make_link(r, "inner.js", "app.js");       /* stays inside: served */
    make_link(r, "escape", "../secret.txt");  /* leaves the root */
    make_link(r, "escdir", "..");             /* a directory outside */
    make_link(r, "abs", "/etc/passwd");       /* absolute, outside */
    make_link(r, "dangling", "nowhere.html"); /* inside, missing */
    char fifo[256];
    snprintf(fifo, sizeof(fifo), "%s/fifo", r);
    assert_int_equal(mkfifo(fifo, 0600), 0);

    write_file(f->dist, "socket.io.js", f->big_text, f->big_len);
    write_str(f->dist, "socket.io.min.js", "/* min */");
    write_str(f->dist, "socket.io.min.js.map", "{\"version\":3}");
    write_str(f->dist, "socket.io.msgpack.min.js", "/* not listed */");
    write_str(f->dist, "package.json", "{}");
    make_dir(f->dist, "socket.io.esm.min.js"); /* a listed name that is a directory */

    static const char *const bundle_files[] = {STATIC_BUNDLE_FILES};
    char err[256];
    f->app = static_files_new(f->root, NULL, 0, err, sizeof(err));
    assert_non_null(f->app);
    f->bundle = static_files_new(f->dist, bundle_files,
                                 sizeof(bundle_files) / sizeof(*bundle_files), err, sizeof(err));
    assert_non_null(f->bundle);

    f->base = event_base_new();
    struct http_config cfg;
    http_config_default(&cfg);
    const struct http_callbacks cb = {.on_request = on_request};
    f->hs = http_server_new(f->base, &cfg, &cb, f);
    *state = f;
    return f->base && f->hs ? 0 : -1;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    return remove(path);
}

static int teardown(void **state)
{
    struct fx *f = *state;
    http_server_free(f->hs);
    event_base_free(f->base);
    static_files_free(f->app);
    static_files_free(f->bundle);
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f->big_text);
    free(f);
    return 0;
}

static void run_for(struct fx *f, unsigned ms)
{
    struct timeval tv = {.tv_sec = ms / 1000, .tv_usec = (ms % 1000) * 1000};
    event_base_loopexit(f->base, &tv);
    event_base_dispatch(f->base);
}

/* Splits buf into one response; returns false while it is incomplete. */
static bool parse_resp(const char *buf, size_t len, bool head, struct resp *r)
{
    const char *end = memmem(buf, len, "\r\n\r\n", 4);
    if (!end)
        return false;
    size_t head_len = (size_t)(end - buf) + 4;
    const char *cl = memmem(buf, head_len, "\r\nContent-Length: ", 18);
    size_t body = cl && !head ? strtoul(cl + 18, NULL, 10) : 0;
    if (head_len + body > len)
        return false;
    assert_int_equal(sscanf(buf, "HTTP/1.1 %d ", &r->status), 1);
    r->head = strndup(buf, head_len);
    r->head_len = head_len;
    r->body = malloc(body + 1);
    memcpy(r->body, buf + head_len, body);
    r->body[body] = '\0';
    r->body_len = body;
    r->extra = len - head_len - body;
    return true;
}

/* Sends one raw request on a new connection and returns its response. For
 * HEAD the loop runs a little longer so that a body sent by mistake would
 * show up in r->extra. */
static struct resp request(struct fx *f, const char *raw)
{
    int sv[2];
    assert_int_equal(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
    evutil_make_socket_nonblocking(sv[0]);
    evutil_make_socket_nonblocking(sv[1]);
    struct bufferevent *bev = bufferevent_socket_new(f->base, sv[0], BEV_OPT_CLOSE_ON_FREE);
    http_server_accept(f->hs, bev, NULL, 0, false);
    size_t rawlen = strlen(raw);
    assert_int_equal(send(sv[1], raw, rawlen, MSG_NOSIGNAL), (ssize_t)rawlen);

    bool head = strncmp(raw, "HEAD ", 5) == 0;
    size_t cap = 1 << 16, len = 0;
    char *buf = malloc(cap);
    struct resp r = {0};
    long deadline = now_ms() + WAIT_MS, settle = 0;
    for (;;) {
        run_for(f, 1);
        for (;;) {
            if (cap - len < 4096)
                buf = realloc(buf, cap *= 2);
            ssize_t n = recv(sv[1], buf + len, cap - len, 0);
            if (n <= 0)
                break;
            len += (size_t)n;
        }
        if (settle == 0 && parse_resp(buf, len, head, &r)) {
            if (!head)
                break;
            free(r.head);
            free(r.body);
            settle = now_ms() + 50;
        }
        if (settle && now_ms() > settle) {
            assert_true(parse_resp(buf, len, head, &r));
            break;
        }
        assert_true(now_ms() < deadline);
    }
    free(buf);
    close(sv[1]);
    run_for(f, 1); /* let the server see the close */
    return r;
}

static struct resp get(struct fx *f, const char *path, const char *headers)
{
    if (!headers)
        headers = "";
    size_t cap = 32 + strlen(path) + strlen(headers) + 1;
    char *raw = malloc(cap);
    snprintf(raw, cap, "GET %s HTTP/1.1\r\nHost: t\r\n%s\r\n", path, headers);
    struct resp r = request(f, raw);
    free(raw);
    return r;
}

static void resp_free(struct resp *r)
{
    free(r->head);
    free(r->body);
}

static bool has(const struct resp *r, const char *line)
{
    return strstr(r->head, line) != NULL;
}

/* The value of a response header (up to the CR), copied into out. */
static const char *header(const struct resp *r, const char *name, char *out, size_t cap)
{
    char key[64];
    snprintf(key, sizeof(key), "\r\n%s: ", name);
    const char *p = strstr(r->head, key);
    if (!p)
        return NULL;
    p += strlen(key);
    size_t n = strcspn(p, "\r");
    assert_true(n < cap);
    memcpy(out, p, n);
    out[n] = '\0';
    return out;
}

static void expect(struct fx *f, const char *path, int status, const char *type, const char *body)
{
    struct resp r = get(f, path, NULL);
    if (r.status != status)
        fail_msg("%s: status %d, want %d", path, r.status, status);
    if (type) {
        char want[128];
        snprintf(want, sizeof(want), "\r\nContent-Type: %s\r\n", type);
        if (!has(&r, want))
            fail_msg("%s: no %s in\n%s", path, want + 2, r.head);
    }
    if (body) {
        assert_int_equal(r.body_len, strlen(body));
        assert_memory_equal(r.body, body, r.body_len);
    }
    assert_int_equal(r.extra, 0);
    resp_free(&r);
}

static char *gunzip(const char *data, size_t len, size_t *out_len)
{
    z_stream zs = {0};
    assert_int_equal(inflateInit2(&zs, 15 + 16), Z_OK);
    size_t cap = 1 << 20;
    char *out = malloc(cap);
    zs.next_in = (Bytef *)data;
    zs.avail_in = (uInt)len;
    zs.next_out = (Bytef *)out;
    zs.avail_out = (uInt)cap;
    assert_int_equal(inflate(&zs, Z_FINISH), Z_STREAM_END);
    *out_len = zs.total_out;
    inflateEnd(&zs);
    return out;
}

static char *slurp(const char *path, size_t *len)
{
    FILE *fp = fopen(path, "rb");
    assert_non_null(fp);
    fseek(fp, 0, SEEK_END);
    long n = ftell(fp);
    fseek(fp, 0, SEEK_SET);
    char *buf = malloc((size_t)n + 1);
    assert_int_equal(fread(buf, 1, (size_t)n, fp), (size_t)n);
    fclose(fp);
    *len = (size_t)n;
    return buf;
}

/* --- construction and types ---------------------------------------------- */

static void test_new_errors(void **state)
{
    struct fx *f = *state;
    char err[256], path[128];
    snprintf(path, sizeof(path), "%s/missing", f->dir);
    assert_null(static_files_new(path, NULL, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "missing: No such file or directory"));
    snprintf(path, sizeof(path), "%s/secret.txt", f->dir);
    assert_null(static_files_new(path, NULL, 0, err, sizeof(err)));
    assert_non_null(strstr(err, "secret.txt: not a directory"));
    assert_null(static_files_new("", NULL, 0, err, sizeof(err)));

    static const char *const bad[][1] = {{"../x"}, {"a/b"}, {".hidden"}, {""}, {"a\\b"}};
    for (size_t i = 0; i < sizeof(bad) / sizeof(bad[0]); i++) {
        err[0] = '\0';
        assert_null(static_files_new(f->root, bad[i], 1, err, sizeof(err)));
        assert_non_null(strstr(err, "invalid file name"));
    }
    /* err may be NULL; free(NULL) is a no-op */
    assert_null(static_files_new(path, NULL, 0, NULL, 0));
    static_files_free(NULL);
}

static void test_content_types(void **state)
{
    static const struct {
        const char *name, *type;
        bool compress;
    } cases[] = {
        {"index.html", "text/html; charset=utf-8", true},
        {"a/b.HTM", "text/html; charset=utf-8", true},
        {"app.js", "text/javascript; charset=utf-8", true},
        {"mod.mjs", "text/javascript; charset=utf-8", true},
        {"s.css", "text/css; charset=utf-8", true},
        {"d.json", "application/json; charset=utf-8", true},
        {"socket.io.min.js.map", "application/json; charset=utf-8", true},
        {"i.svg", "image/svg+xml; charset=utf-8", true},
        {"r.txt", "text/plain; charset=utf-8", true},
        {"m.wasm", "application/wasm", true},
        {"p.png", "image/png", false},
        {"p.JPG", "image/jpeg", false},
        {"p.jpeg", "image/jpeg", false},
        {"g.gif", "image/gif", false},
        {"favicon.ico", "image/x-icon", true},
        {"w.webp", "image/webp", false},
        {"f.woff", "font/woff", false},
        {"f.woff2", "font/woff2", false},
        {"noext", "application/octet-stream", false},
        {"dir.d/noext", "application/octet-stream", false},
        {".htaccess", "application/octet-stream", false},
        {"x.unknown", "application/octet-stream", false},
        {"trailing.", "application/octet-stream", false},
    };
    for (size_t i = 0; i < sizeof(cases) / sizeof(cases[0]); i++) {
        bool compress = !cases[i].compress;
        assert_string_equal(static_content_type(cases[i].name, &compress), cases[i].type);
        assert_int_equal(compress, cases[i].compress);
    }
    assert_string_equal(static_content_type("x.css", NULL), "text/css; charset=utf-8");
}

/* --- serving ------------------------------------------------------------- */

static void test_get_files(void **state)
{
    struct fx *f = *state;
    struct resp r = get(f, "/style.css", NULL);
    assert_int_equal(r.status, 200);
    assert_true(has(&r, "\r\nContent-Type: text/css; charset=utf-8\r\n"));
    assert_true(has(&r, "\r\nCache-Control: no-cache\r\n"));
    assert_true(has(&r, "\r\nX-Content-Type-Options: nosniff\r\n"));
    assert_true(has(&r, "\r\nETag: W/\""));
    assert_true(has(&r, "\r\nContent-Length: 21\r\n"));
    assert_string_equal(r.body, "body { color: red; }\n");
    /* Last-Modified is the file's mtime as an IMF-fixdate */
    char lm[64], want[64];
    struct stat st;
    char path[128];
    snprintf(path, sizeof(path), "%s/style.css", f->root);
    assert_int_equal(stat(path, &st), 0);
    struct tm tm;
    gmtime_r(&st.st_mtime, &tm);
    strftime(want, sizeof(want), "%a, %d %b %Y %H:%M:%S GMT", &tm);
    assert_string_equal(header(&r, "Last-Modified", lm, sizeof(lm)), want);
    resp_free(&r);

    r = get(f, "/logo.png", NULL);
    assert_int_equal(r.status, 200);
    assert_true(has(&r, "\r\nContent-Type: image/png\r\n"));
    assert_int_equal(r.body_len, 2048);
    for (size_t i = 0; i < 2048; i++)
        assert_int_equal((unsigned char)r.body[i], (unsigned char)(i * 7 + 3));
    resp_free(&r);

    expect(f, "/data", 200, "application/octet-stream", "raw");
    expect(f, "/my%20file.txt", 200, "text/plain; charset=utf-8", "spaced");
    expect(f, "/sub/page.txt?x=1&y=%2e%2e", 200, "text/plain; charset=utf-8", "page");
    expect(f, "/%73tyle.css", 200, "text/css; charset=utf-8", NULL);
    expect(f, "//sub///page.txt", 200, NULL, "page");
    /* a symlink that stays inside the root is served, even through a
     * detour outside it */
    expect(f, "/inner.js", 200, "text/javascript; charset=utf-8", NULL);
    expect(f, "/escdir/root/index.html", 200, NULL, "<!doctype html><title>root</title>\n");
}

static void test_index_and_dirs(void **state)
{
    struct fx *f = *state;
    expect(f, "/", 200, "text/html; charset=utf-8", "<!doctype html><title>root</title>\n");
    expect(f, "/sub/", 200, "text/html; charset=utf-8", "<p>sub</p>");
    expect(f, "//sub//", 200, NULL, "<p>sub</p>");
    expect(f, "/sub%2f", 200, NULL, "<p>sub</p>");
    expect(f, "/sub/empty/", 404, NULL, NULL); /* no index, no listing */

    char loc[128];
    struct resp r = get(f, "/sub", NULL);
    assert_int_equal(r.status, 301);
    assert_string_equal(header(&r, "Location", loc, sizeof(loc)), "./sub/");
    resp_free(&r);
    r = get(f, "/sub/empty?a=b", NULL);
    assert_int_equal(r.status, 301);
    assert_string_equal(header(&r, "Location", loc, sizeof(loc)), "./empty/?a=b");
    resp_free(&r);
}

static void test_missing(void **state)
{
    struct fx *f = *state;
    expect(f, "/nope.html", 404, NULL, "Not Found");
    expect(f, "/sub/nope", 404, NULL, NULL);
    expect(f, "/style.css/x", 404, NULL, NULL); /* ENOTDIR */
    expect(f, "/dangling", 404, NULL, NULL);
}

static void test_conditional(void **state)
{
    struct fx *f = *state;
    struct resp r = get(f, "/app.js", NULL);
    assert_int_equal(r.status, 200);
    char etag[128], lm[64], hdr[256];
    assert_non_null(header(&r, "ETag", etag, sizeof(etag)));
    assert_non_null(header(&r, "Last-Modified", lm, sizeof(lm)));
    assert_memory_equal(etag, "W/\"", 3);
    resp_free(&r);

    /* matches: 304 with the validators, no body, no Content-Length */
    const char *before[] = {"", "\"nope\", ", "", ""};
    const char *after[] = {"", "", " , \"nope\"", ""};
    for (size_t i = 0; i < sizeof(before) / sizeof(before[0]); i++) {
        snprintf(hdr, sizeof(hdr), "If-None-Match: %s%s%s\r\n", before[i], i == 3 ? "*" : etag,
                 after[i]);
        r = get(f, "/app.js", hdr);
        assert_int_equal(r.status, 304);
        assert_int_equal(r.body_len, 0);
        assert_int_equal(r.extra, 0);
        assert_false(has(&r, "Content-Length"));
        char got[128];
        assert_string_equal(header(&r, "ETag", got, sizeof(got)), etag);
        assert_true(has(&r, "\r\nCache-Control: no-cache\r\n"));
        assert_true(has(&r, "\r\nVary: Accept-Encoding\r\n"));
        resp_free(&r);
    }
    /* weak comparison: the strong form of our tag matches too */
    snprintf(hdr, sizeof(hdr), "If-None-Match: %s\r\n", etag + 2);
    r = get(f, "/app.js", hdr);
    assert_int_equal(r.status, 304);
    resp_free(&r);
    /* no match, or a malformed list: 200 */
    r = get(f, "/app.js", "If-None-Match: \"other\"\r\n");
    assert_int_equal(r.status, 200);
    assert_int_equal(r.body_len, f->big_len);
    resp_free(&r);
    r = get(f, "/app.js", "If-None-Match: garbage\r\n");
    assert_int_equal(r.status, 200);
    resp_free(&r);

    /* If-Modified-Since: with Last-Modified 304; older 200; unparsable 200 */
    snprintf(hdr, sizeof(hdr), "If-Modified-Since: %s\r\n", lm);
    r = get(f, "/app.js", hdr);
    assert_int_equal(r.status, 304);
    resp_free(&r);
    r = get(f, "/app.js", "If-Modified-Since: Sun, 06 Nov 1994 08:49:37 GMT\r\n");
    assert_int_equal(r.status, 200);
    resp_free(&r);
    r = get(f, "/app.js", "If-Modified-Since: yesterday\r\n");
    assert_int_equal(r.status, 200);
    resp_free(&r);
    /* If-None-Match wins over If-Modified-Since */
    snprintf(hdr, sizeof(hdr), "If-None-Match: \"other\"\r\nIf-Modified-Since: %s\r\n", lm);
    r = get(f, "/app.js", hdr);
    assert_int_equal(r.status, 200);
    resp_free(&r);

    /* a changed file gets a new tag, and the old one no longer matches */
    write_str(f->root, "app.js", "changed();\n");
    snprintf(hdr, sizeof(hdr), "If-None-Match: %s\r\n", etag);
    r = get(f, "/app.js", hdr);
    assert_int_equal(r.status, 200);
    assert_string_equal(r.body, "changed();\n");
    char etag2[128];
    assert_string_not_equal(header(&r, "ETag", etag2, sizeof(etag2)), etag);
    resp_free(&r);
}

static void test_head(void **state)
{
    struct fx *f = *state;
    struct resp r = request(f, "HEAD /app.js HTTP/1.1\r\nHost: t\r\nAccept-Encoding: gzip\r\n\r\n");
    assert_int_equal(r.status, 200);
    assert_true(has(&r, "\r\nContent-Length: 8192\r\n"));
    assert_true(has(&r, "\r\nContent-Type: text/javascript; charset=utf-8\r\n"));
    assert_true(has(&r, "\r\nETag: W/\""));
    assert_int_equal(r.extra, 0); /* no body */
    resp_free(&r);
    r = request(f, "HEAD /nope HTTP/1.1\r\nHost: t\r\n\r\n");
    assert_int_equal(r.status, 404);
    resp_free(&r);
}

static void test_methods(void **state)
{
    struct fx *f = *state;
    static const char *const reqs[] = {
        "POST /style.css HTTP/1.1\r\nHost: t\r\nContent-Length: 2\r\n\r\nhi",
        "PUT / HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n",
        "DELETE /sub/page.txt HTTP/1.1\r\nHost: t\r\n\r\n",
        "OPTIONS /sub HTTP/1.1\r\nHost: t\r\n\r\n",
    };
    for (size_t i = 0; i < sizeof(reqs) / sizeof(reqs[0]); i++) {
        struct resp r = request(f, reqs[i]);
        assert_int_equal(r.status, 405);
        assert_true(has(&r, "\r\nAllow: GET, HEAD\r\n"));
        resp_free(&r);
    }
    /* no such file: not answered, the caller's 404 */
    struct resp r = request(f, "POST /nope HTTP/1.1\r\nHost: t\r\nContent-Length: 0\r\n\r\n");
    assert_int_equal(r.status, 404);
    resp_free(&r);
}

static void test_traversal_refused(void **state)
{
    struct fx *f = *state;
    static const char *const paths[] = {
        "/../etc/passwd",
        "/../secret.txt",
        "/%2e%2e/secret.txt",
        "/%2E%2E/secret.txt",
        "/a/../../secret.txt",
        "/sub/../../secret.txt",
        "/..%2fsecret.txt",
        "/%2e%2e%2fsecret.txt",
        "/sub/%2e%2e/%2e%2e/secret.txt",
        "/..",
        "/sub/..",
        "/./style.css",
        "/%00",
        "/style.css%00.png",
        "/%5c..%5csecret.txt",
        "/..%5csecret.txt",
        "/%zz",
        "/%2",
        "/%",
        "/.env",
        "/%2eenv",
        "/escape",            /* symlink to ../secret.txt */
        "/escdir/secret.txt", /* symlink to .. */
        "/abs",               /* symlink to /etc/passwd */
        "/fifo",
    };
    for (size_t i = 0; i < sizeof(paths) / sizeof(paths[0]); i++) {
        struct resp r = get(f, paths[i], NULL);
        if (r.status != 403)
            fail_msg("%s: status %d, want 403", paths[i], r.status);
        assert_null(strstr(r.body, "secret"));
        assert_null(strstr(r.body, "root:"));
        resp_free(&r);
    }
    /* a path too long for the file system is refused, not truncated */
    size_t n = 5000;
    char *longp = malloc(n + 1);
    longp[0] = '/';
    memset(longp + 1, 'a', n - 1);
    longp[n] = '\0';
    struct resp r = get(f, longp, NULL);
    free(longp);
    assert_int_equal(r.status, 403);
    resp_free(&r);
}

static void test_gzip(void **state)
{
    struct fx *f = *state;
    struct resp r = get(f, "/app.js", "Accept-Encoding: gzip, deflate\r\n");
    assert_int_equal(r.status, 200);
    assert_true(has(&r, "\r\nContent-Encoding: gzip\r\n"));
    assert_true(has(&r, "\r\nVary: Accept-Encoding\r\n"));
    assert_true(r.body_len < f->big_len / 4);
    size_t n;
    char *plain = gunzip(r.body, r.body_len, &n);
    assert_int_equal(n, f->big_len);
    assert_memory_equal(plain, f->big_text, n);
    free(plain);
    resp_free(&r);

    /* not accepted: identity */
    r = get(f, "/app.js", NULL);
    assert_false(has(&r, "Content-Encoding"));
    assert_int_equal(r.body_len, f->big_len);
    resp_free(&r);
    /* small text, or a binary type: identity */
    r = get(f, "/style.css", "Accept-Encoding: gzip\r\n");
    assert_false(has(&r, "Content-Encoding"));
    resp_free(&r);
    r = get(f, "/logo.png", "Accept-Encoding: gzip\r\n");
    assert_false(has(&r, "Content-Encoding"));
    assert_int_equal(r.body_len, 2048);
    resp_free(&r);
}

static void test_too_big(void **state)
{
    struct fx *f = *state;
    char path[128];
    snprintf(path, sizeof(path), "%s/huge.bin", f->root);
    int fd = open(path, O_CREAT | O_WRONLY, 0644);
    assert_true(fd >= 0);
    assert_int_equal(ftruncate(fd, (off_t)STATIC_MAX_FILE + 1), 0); /* sparse */
    close(fd);
    expect(f, "/huge.bin", 500, NULL, NULL);
}

static void test_bundle_allow_list(void **state)
{
    struct fx *f = *state;
    struct resp r = get(f, "/socket.io/socket.io.min.js", NULL);
    assert_int_equal(r.status, 200);
    assert_true(has(&r, "\r\nContent-Type: text/javascript; charset=utf-8\r\n"));
    assert_true(has(&r, "\r\nCache-Control: public, max-age=3600\r\n"));
    assert_true(has(&r, "\r\nETag: W/\""));
    assert_string_equal(r.body, "/* min */");
    resp_free(&r);
    expect(f, "/socket.io/socket.io.min.js.map", 200, "application/json; charset=utf-8",
           "{\"version\":3}");
    expect(f, "/socket.io/socket.io.js?v=1", 200, NULL, NULL);

    r = get(f, "/socket.io/socket.io.js", "Accept-Encoding: gzip\r\n");
    assert_true(has(&r, "\r\nContent-Encoding: gzip\r\n"));
    resp_free(&r);

    /* present in the folder but not listed, missing, directories: 404 */
    expect(f, "/socket.io/socket.io.msgpack.min.js", 404, NULL, NULL);
    expect(f, "/socket.io/package.json", 404, NULL, NULL);
    expect(f, "/socket.io/socket.io.esm.min.js.map", 404, NULL, NULL);
    expect(f, "/socket.io/socket.io.esm.min.js", 404, NULL, NULL); /* a directory here */
    expect(f, "/socket.io/", 404, NULL, NULL);
    expect(f, "/socket.io/x/socket.io.js", 404, NULL, NULL);
    /* traversal out of the bundle folder is refused like anywhere else */
    expect(f, "/socket.io/../root/index.html", 403, NULL, NULL);
    expect(f, "/socket.io/%2e%2e/secret.txt", 403, NULL, NULL);

    struct resp p = request(f, "POST /socket.io/socket.io.js HTTP/1.1\r\nHost: t\r\n"
                               "Content-Length: 0\r\n\r\n");
    assert_int_equal(p.status, 405);
    resp_free(&p);
}

/* The real socket.io-client dist folder, when tests/e2e has been set up. */
static void test_bundle_real(void **state)
{
    struct fx *f = *state;
    char dist[512];
    const char *env = getenv("SOCKEYE_CLIENT_DIST");
    const char *top = getenv("top_srcdir");
    if (env)
        snprintf(dist, sizeof(dist), "%s", env);
    else
        snprintf(dist, sizeof(dist), "%s/tests/e2e/node_modules/socket.io-client/dist",
                 top && *top ? top : "..");
    struct stat st;
    if (stat(dist, &st) != 0) {
        print_message("skipped: %s not installed (npm ci in tests/e2e)\n", dist);
        skip();
    }
    static const char *const files[] = {STATIC_BUNDLE_FILES};
    char err[256];
    static_files_free(f->bundle);
    f->bundle = static_files_new(dist, files, sizeof(files) / sizeof(*files), err, sizeof(err));
    assert_non_null(f->bundle);

    for (size_t i = 0; i < sizeof(files) / sizeof(*files); i++) {
        char url[128], path[640];
        snprintf(url, sizeof(url), "/socket.io/%s", files[i]);
        snprintf(path, sizeof(path), "%s/%s", dist, files[i]);
        size_t len;
        char *want = slurp(path, &len);
        struct resp r = get(f, url, "Accept-Encoding: gzip\r\n");
        assert_int_equal(r.status, 200);
        assert_true(has(&r, "\r\nContent-Encoding: gzip\r\n"));
        assert_true(has(&r, strstr(files[i], ".map") ? "application/json" : "text/javascript"));
        size_t n;
        char *plain = gunzip(r.body, r.body_len, &n);
        assert_int_equal(n, len);
        assert_memory_equal(plain, want, len);
        free(plain);

        char etag[128], hdr[200];
        assert_non_null(header(&r, "ETag", etag, sizeof(etag)));
        resp_free(&r);
        snprintf(hdr, sizeof(hdr), "If-None-Match: %s\r\n", etag);
        r = get(f, url, hdr);
        assert_int_equal(r.status, 304);
        resp_free(&r);
        free(want);
    }
    expect(f, "/socket.io/socket.io.msgpack.min.js", 404, NULL, NULL);
    expect(f, "/socket.io/socket.io.msgpack.min.js.map", 404, NULL, NULL);
}

int main(void)
{
#define T(name) cmocka_unit_test_setup_teardown(name, setup, teardown)
    const struct CMUnitTest tests[] = {
        T(test_new_errors),
        cmocka_unit_test(test_content_types),
        T(test_get_files),
        T(test_index_and_dirs),
        T(test_missing),
        T(test_conditional),
        T(test_head),
        T(test_methods),
        T(test_traversal_refused),
        T(test_gzip),
        T(test_too_big),
        T(test_bundle_allow_list),
        T(test_bundle_real),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
