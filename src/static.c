/* static: serving files from a directory (contract in static.h). */
#define _GNU_SOURCE /* timegm */
#include "static.h"

#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <event2/buffer.h>

/* Room for "ETag: ...\r\nLast-Modified: ...\r\n" in front of the fixed
 * headers: an ETag of three 64-bit hex numbers and an IMF-fixdate. */
#define VARIABLE_HEADERS_MAX 160

struct static_files {
    char *root;
    char **allow; /* NULL: any file */
    size_t n_allow;
    char *fixed_headers; /* "Cache-Control: ...\r\nX-Content-Type-Options: nosniff\r\n" */
    char *headers;       /* scratch: the variable headers, then fixed_headers */
    size_t headers_cap;
};

struct type_entry {
    const char *ext;
    const char *type;
    bool compressible;
};

/* JavaScript is text/javascript (RFC 9239); .map files are JSON. */
static const struct type_entry types[] = {
    {"html", "text/html; charset=utf-8", true},
    {"htm", "text/html; charset=utf-8", true},
    {"js", "text/javascript; charset=utf-8", true},
    {"mjs", "text/javascript; charset=utf-8", true},
    {"css", "text/css; charset=utf-8", true},
    {"json", "application/json; charset=utf-8", true},
    {"map", "application/json; charset=utf-8", true},
    {"webmanifest", "application/manifest+json; charset=utf-8", true},
    {"txt", "text/plain; charset=utf-8", true},
    {"xml", "application/xml; charset=utf-8", true},
    {"svg", "image/svg+xml; charset=utf-8", true},
    {"wasm", "application/wasm", true},
    {"ico", "image/x-icon", true},
    {"png", "image/png", false},
    {"jpg", "image/jpeg", false},
    {"jpeg", "image/jpeg", false},
    {"gif", "image/gif", false},
    {"webp", "image/webp", false},
    {"avif", "image/avif", false},
    {"woff", "font/woff", false},
    {"woff2", "font/woff2", false},
};

const char *static_content_type(const char *name, bool *compressible)
{
    const char *slash = strrchr(name, '/');
    const char *base = slash ? slash + 1 : name;
    const char *dot = strrchr(base, '.');
    if (dot && dot != base) {
        for (size_t i = 0; i < sizeof(types) / sizeof(types[0]); i++) {
            if (strcasecmp(dot + 1, types[i].ext) == 0) {
                if (compressible)
                    *compressible = types[i].compressible;
                return types[i].type;
            }
        }
    }
    if (compressible)
        *compressible = false;
    return "application/octet-stream";
}

/* --- construction ------------------------------------------------------- */

static void set_err(char *err, size_t errlen, const char *fmt, ...)
    __attribute__((format(printf, 3, 4)));

static void set_err(char *err, size_t errlen, const char *fmt, ...)
{
    if (!err || errlen == 0)
        return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, errlen, fmt, ap);
    va_end(ap);
}

static bool allow_name_valid(const char *name)
{
    return name[0] != '\0' && name[0] != '.' && !strchr(name, '/') && !strchr(name, '\\');
}

struct static_files *static_files_new(const char *root_dir, const char *const *allow,
                                      size_t n_allow, char *err, size_t errlen)
{
    struct stat st;
    if (!root_dir || !root_dir[0]) {
        set_err(err, errlen, "static root: empty path");
        return NULL;
    }
    if (stat(root_dir, &st) != 0) {
        set_err(err, errlen, "%s: %s", root_dir, strerror(errno));
        return NULL;
    }
    if (!S_ISDIR(st.st_mode)) {
        set_err(err, errlen, "%s: not a directory", root_dir);
        return NULL;
    }
    const char *cache_control = allow ? STATIC_CACHE_BUNDLE : STATIC_CACHE_APP;
    for (size_t i = 0; allow && i < n_allow; i++) {
        if (!allow[i] || !allow_name_valid(allow[i])) {
            set_err(err, errlen, "%s: invalid file name \"%s\"", root_dir,
                    allow[i] ? allow[i] : "(null)");
            return NULL;
        }
    }

    struct static_files *sf = calloc(1, sizeof(*sf));
    if (!sf)
        goto oom;
    sf->root = strdup(root_dir);
    size_t fixed_len =
        strlen("Cache-Control: \r\nX-Content-Type-Options: nosniff\r\n") + strlen(cache_control);
    sf->fixed_headers = malloc(fixed_len + 1);
    sf->headers_cap = VARIABLE_HEADERS_MAX + fixed_len + 1;
    sf->headers = malloc(sf->headers_cap);
    if (!sf->root || !sf->fixed_headers || !sf->headers)
        goto oom;
    snprintf(sf->fixed_headers, fixed_len + 1,
             "Cache-Control: %s\r\nX-Content-Type-Options: nosniff\r\n", cache_control);
    if (allow) {
        /* An empty allow-list serves nothing, which is still not "any file". */
        sf->allow = calloc(n_allow ? n_allow : 1, sizeof(*sf->allow));
        if (!sf->allow)
            goto oom;
        for (size_t i = 0; i < n_allow; i++) {
            sf->allow[i] = strdup(allow[i]);
            if (!sf->allow[i])
                goto oom;
            sf->n_allow = i + 1;
        }
    }
    return sf;

oom:
    static_files_free(sf);
    set_err(err, errlen, "%s: out of memory", root_dir);
    return NULL;
}

void static_files_free(struct static_files *sf)
{
    if (!sf)
        return;
    for (size_t i = 0; i < sf->n_allow; i++)
        free(sf->allow[i]);
    free(sf->allow);
    free(sf->root);
    free(sf->fixed_headers);
    free(sf->headers);
    free(sf);
}

/* --- paths -------------------------------------------------------------- */

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/* Percent-decodes path into out (NUL-terminated), collapsing empty segments
 * and dropping leading slashes, and checks every decoded segment: decoding
 * comes first so that encoded dots, slashes and NULs are seen for what they
 * are. Sets *dir when the path names a directory (empty, or a trailing '/').
 * Returns false when the path must be refused. */
static bool clean_path(const char *path, size_t len, char *out, size_t cap, bool *dir)
{
    size_t n = 0;
    size_t seg = 0; /* start of the current segment in out */
    bool trailing_slash = true;
    for (size_t i = 0; i <= len; i++) {
        char c;
        if (i == len) {
            c = '/'; /* closes the last segment */
        } else if (path[i] == '%') {
            int hi = i + 2 < len ? hex_value(path[i + 1]) : -1;
            int lo = hi >= 0 ? hex_value(path[i + 2]) : -1;
            if (lo < 0)
                return false;
            c = (char)(hi * 16 + lo);
            i += 2;
        } else {
            c = path[i];
        }
        if (c == '\0' || c == '\\')
            return false;
        if (i < len)
            trailing_slash = c == '/';
        if (c != '/') {
            if (n + 1 >= cap)
                return false;
            out[n++] = c;
            continue;
        }
        if (n == seg) /* empty segment */
            continue;
        /* ".", ".." and hidden files alike: none of them is ever served. */
        if (out[seg] == '.')
            return false;
        if (n + 1 >= cap)
            return false;
        out[n++] = '/';
        seg = n;
    }
    /* Every segment was closed with a '/'; drop the last one. */
    if (n > 0)
        n--;
    out[n] = '\0';
    *dir = n == 0 || trailing_slash;
    return true;
}

static bool on_allow_list(const struct static_files *sf, const char *name)
{
    for (size_t i = 0; i < sf->n_allow; i++)
        if (strcmp(sf->allow[i], name) == 0)
            return true;
    return false;
}

static bool under_root(const char *root, const char *file)
{
    size_t n = strlen(root);
    if (n == 1 && root[0] == '/')
        return true;
    return strncmp(file, root, n) == 0 && (file[n] == '/' || file[n] == '\0');
}

/* --- conditional requests ----------------------------------------------- */

static const char *const day_names[] = {"Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"};
static const char *const month_names[] = {"Jan", "Feb", "Mar", "Apr", "May", "Jun",
                                          "Jul", "Aug", "Sep", "Oct", "Nov", "Dec"};

/* IMF-fixdate, spelled out by hand: strftime's names follow the locale. */
static void format_http_date(time_t t, char *out, size_t cap)
{
    struct tm tm;
    if (!gmtime_r(&t, &tm)) {
        out[0] = '\0';
        return;
    }
    snprintf(out, cap, "%s, %02d %s %04d %02d:%02d:%02d GMT", day_names[tm.tm_wday], tm.tm_mday,
             month_names[tm.tm_mon], tm.tm_year + 1900, tm.tm_hour, tm.tm_min, tm.tm_sec);
}

/* Parses an IMF-fixdate ("Sun, 06 Nov 1994 08:49:37 GMT"). The obsolete
 * forms are not parsed: ignoring If-Modified-Since only costs a 200. */
static bool parse_http_date(const char *s, time_t *out)
{
    char day[4], mon[4];
    int mday, year, hh, mm, ss, end = 0;
    if (strlen(s) != 29 ||
        sscanf(s, "%3[A-Za-z], %2d %3[A-Za-z] %4d %2d:%2d:%2d GMT%n", day, &mday, mon, &year, &hh,
               &mm, &ss, &end) != 7 ||
        end != 29)
        return false;
    int m = -1;
    for (int i = 0; i < 12; i++)
        if (strcmp(mon, month_names[i]) == 0)
            m = i;
    if (m < 0 || mday < 1 || mday > 31 || year < 1970 || hh > 23 || mm > 59 || ss > 60 || hh < 0 ||
        mm < 0 || ss < 0)
        return false;
    struct tm tm = {.tm_year = year - 1900,
                    .tm_mon = m,
                    .tm_mday = mday,
                    .tm_hour = hh,
                    .tm_min = mm,
                    .tm_sec = ss};
    time_t t = timegm(&tm);
    if (t == (time_t)-1)
        return false;
    *out = t;
    return true;
}

/* If-None-Match uses the weak comparison (RFC 9110 13.1.2): the opaque tags
 * are compared, ignoring W/ on either side. etag is ours ("W/\"...\""). */
static bool etag_matches(const char *list, const char *etag)
{
    const char *opaque = etag + 2;
    size_t olen = strlen(opaque);
    const char *p = list;
    for (;;) {
        p += strspn(p, " \t,");
        if (!*p)
            return false;
        if (*p == '*')
            return true;
        if (p[0] == 'W' && p[1] == '/')
            p += 2;
        if (*p != '"')
            return false; /* malformed: stop rather than guess */
        const char *close = strchr(p + 1, '"');
        if (!close)
            return false;
        size_t n = (size_t)(close - p) + 1;
        if (n == olen && memcmp(p, opaque, n) == 0)
            return true;
        p = close + 1;
    }
}

/* --- responses ---------------------------------------------------------- */

static void respond_status(struct http_request *req, int status, const char *extra)
{
    const char *reason = http_status_reason(status);
    http_respond(req, status, "text/plain; charset=utf-8", extra, reason, strlen(reason), 0);
}

/* Reads the whole file (from offset 0) into a new buffer; NULL on error. A
 * file that changes size meanwhile is sent as read: Content-Length comes
 * from the buffer, so the response stays well-formed. */
static struct evbuffer *read_file(int fd, size_t size)
{
    struct evbuffer *buf = evbuffer_new();
    if (!buf)
        return NULL;
    if (size == 0)
        return buf;
    struct evbuffer_iovec v;
    if (evbuffer_reserve_space(buf, (ev_ssize_t)size, &v, 1) != 1 || v.iov_len < size)
        goto fail;
    size_t got = 0;
    while (got < size) {
        ssize_t n = read(fd, (char *)v.iov_base + got, size - got);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            goto fail;
        if (n == 0)
            break;
        got += (size_t)n;
    }
    v.iov_len = got;
    if (evbuffer_commit_space(buf, &v, 1) != 0)
        goto fail;
    return buf;
fail:
    evbuffer_free(buf);
    return NULL;
}

/* A relative Location ("./name/?query") cannot be turned into a redirect to
 * another host the way "//host/" could, and "./" keeps a name with a colon
 * from being read as a scheme. */
static void redirect_to_dir(struct http_request *req, const char *path, size_t len)
{
    size_t start = len;
    while (start > 0 && path[start - 1] != '/')
        start--;
    size_t qlen;
    const char *query = http_request_query(req, &qlen);
    size_t cap = strlen("Location: ./") + (len - start) + 2 + qlen + 3;
    char *loc = malloc(cap);
    if (!loc) {
        respond_status(req, 500, NULL);
        return;
    }
    snprintf(loc, cap, "Location: ./%.*s/%s%.*s\r\n", (int)(len - start), path + start,
             qlen ? "?" : "", (int)qlen, query);
    respond_status(req, 301, loc);
    free(loc);
}

static void serve_fd(struct static_files *sf, struct http_request *req, int fd,
                     const struct stat *st, const char *name)
{
    char etag[80], date[40];
    snprintf(etag, sizeof(etag), "W/\"%llx-%llx-%llx\"", (unsigned long long)st->st_ino,
             (unsigned long long)st->st_size,
             (unsigned long long)st->st_mtim.tv_sec * 1000000000ull +
                 (unsigned long long)st->st_mtim.tv_nsec);
    format_http_date(st->st_mtim.tv_sec, date, sizeof(date));
    bool compressible;
    const char *type = static_content_type(name, &compressible);
    snprintf(sf->headers, sf->headers_cap, "ETag: %s\r\nLast-Modified: %s\r\n%s", etag, date,
             sf->fixed_headers);

    const char *inm = http_request_header(req, "If-None-Match");
    const char *ims = http_request_header(req, "If-Modified-Since");
    time_t since;
    bool not_modified = inm ? etag_matches(inm, etag)
                            : ims && parse_http_date(ims, &since) && st->st_mtim.tv_sec <= since;
    if (not_modified) {
        /* A 304 carries the Vary its 200 would have had (RFC 9110 15.4.5);
         * the http layer adds it only to bodies it may compress. */
        if (compressible) {
            size_t n = strlen(sf->headers);
            snprintf(sf->headers + n, sf->headers_cap - n, "Vary: Accept-Encoding\r\n");
        }
        http_respond(req, 304, NULL, sf->headers, NULL, 0, 0);
        return;
    }
    struct evbuffer *body = read_file(fd, (size_t)st->st_size);
    if (!body) {
        respond_status(req, 500, NULL);
        return;
    }
    http_respond_buffer(req, 200, type, sf->headers, body, compressible ? HTTP_RESP_COMPRESS : 0);
    evbuffer_free(body);
}

bool static_files_serve(struct static_files *sf, struct http_request *req, const char *path,
                        size_t len)
{
    char rel[PATH_MAX];
    bool dir;
    if (!clean_path(path, len, rel, sizeof(rel) - sizeof("/index.html"), &dir)) {
        respond_status(req, 403, NULL);
        return true;
    }
    if (sf->allow && (dir || strchr(rel, '/') || !on_allow_list(sf, rel)))
        return false;
    if (dir)
        strcat(rel, rel[0] ? "/index.html" : "index.html");

    /* The root is resolved per request so that a symlinked root switched by
     * a deployment is followed; a root that vanished has no files. */
    char root_real[PATH_MAX], candidate[PATH_MAX], file_real[PATH_MAX];
    if (!realpath(sf->root, root_real))
        return false;
    if ((size_t)snprintf(candidate, sizeof(candidate), "%s/%s", root_real, rel) >=
        sizeof(candidate)) {
        respond_status(req, 403, NULL);
        return true;
    }
    if (!realpath(candidate, file_real)) {
        if (errno == ENOENT || errno == ENOTDIR)
            return false;
        respond_status(req, 403, NULL);
        return true;
    }
    if (!under_root(root_real, file_real)) {
        respond_status(req, 403, NULL);
        return true;
    }
    /* Open the resolved name, without following a symlink swapped in since
     * realpath; O_NONBLOCK keeps a FIFO from blocking the event loop. */
    int fd = open(file_real, O_RDONLY | O_CLOEXEC | O_NOFOLLOW | O_NONBLOCK | O_NOCTTY);
    if (fd < 0) {
        if (errno == ENOENT)
            return false;
        respond_status(req, 403, NULL);
        return true;
    }
    struct stat st;
    bool answered = true;
    if (fstat(fd, &st) != 0) {
        respond_status(req, 500, NULL);
    } else if (S_ISDIR(st.st_mode) && (dir || sf->allow)) {
        answered = false; /* an "index.html" directory, or a listed name that is one */
    } else if (!S_ISDIR(st.st_mode) && !S_ISREG(st.st_mode)) {
        respond_status(req, 403, NULL);
    } else if (http_request_method(req) != HTTP_M_GET && http_request_method(req) != HTTP_M_HEAD) {
        respond_status(req, 405, "Allow: GET, HEAD\r\n");
    } else if (S_ISDIR(st.st_mode)) {
        redirect_to_dir(req, path, len);
    } else if ((uintmax_t)st.st_size > STATIC_MAX_FILE) {
        respond_status(req, 500, NULL);
    } else {
        serve_fd(sf, req, fd, &st, rel);
    }
    close(fd);
    return answered;
}
