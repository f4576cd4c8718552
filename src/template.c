/* template: see template.h for the contract.
 *
 * A template compiles into a tree of nodes mirroring the setting; strings
 * become either literal text, one whole-value expression, or a list of parts
 * (literal runs and expressions). Expressions compile into a struct expr:
 * the source (args, data, room_size, ...) plus a pre-split path, so that
 * evaluating one walks cJSON trees and reads the socket without parsing or
 * allocating. Values found are borrowed (struct val) and only copied when
 * they become part of the result. */
#include "template.h"

#include "buf.h"
#include "json.h"

#include <ctype.h>
#include <math.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sockeye.h"

/* Limits of the expression language, checked at compile time. */
#define TMPL_EXPR_MAX  256 /* characters between "{{" and "}}" */
#define TMPL_PATH_MAX  16  /* keys in a path after its source */
#define TMPL_DEPTH_MAX 64  /* nested groups/lists (libconfig bounds it too) */
/* Array indexes are parsed up to this many digits; longer digit runs are
 * kept as object keys only (no array has that many members). */
#define TMPL_INDEX_DIGITS 9

enum src {
    SRC_ARGS,
    SRC_REST,
    SRC_ACK,
    SRC_AUTH,
    SRC_DATA,
    SRC_QUERY,
    SRC_HEADER,
    SRC_ID,
    SRC_NSP,
    SRC_EVENT,
    SRC_ADDRESS,
    SRC_NSP_SIZE,
    SRC_ROOM_SIZE,
};

struct seg {
    const char *key; /* object key (points into the expr's storage) */
    long index;      /* array index when the key is all digits, else -1 */
};

/* One allocation: the struct, then the segments, then their key strings. */
struct expr {
    enum src src;
    unsigned n_segs;
    struct seg *segs;
    const char *name;  /* QUERY/HEADER: parameter or header name; ROOM_SIZE: literal room */
    struct expr *room; /* ROOM_SIZE: room name from a path expression (owned) */
};

enum node_kind {
    T_STRING, /* literal text (escapes resolved) */
    T_NUMBER,
    T_BOOL,
    T_EXPR,   /* the string is exactly one "{{expr}}" */
    T_INTERP, /* text with expressions */
    T_OBJECT,
    T_ARRAY,
};

struct part {
    struct expr *expr; /* NULL: literal text[off..off+len) */
    size_t off, len;
};

struct tmpl {
    enum node_kind kind;
    bool client_input; /* this node or one below reads client input */
    bool constant;     /* no expression in this node or below */
    union {
        char *text; /* T_STRING */
        double number;
        bool boolean;
        struct expr *expr; /* T_EXPR */
        struct {
            char *text; /* literal runs, concatenated */
            struct part *parts;
            size_t n;
        } interp;
        struct {
            struct tmpl **items;
            char **keys; /* T_OBJECT only */
            size_t n;
        } kids;
    } u;
};

/* ---- growable string buffer with inline storage ---------------------------
 * Interpolation results are usually short: the inline buffer makes them cost
 * no allocation beyond the final cJSON string. */

struct sbuf {
    char *p;
    size_t len, cap;
    bool failed;
    char local[256];
};

static void sb_init(struct sbuf *b)
{
    b->p = b->local;
    b->len = 0;
    b->cap = sizeof(b->local);
    b->failed = false;
    b->p[0] = '\0';
}

static void sb_cleanup(struct sbuf *b)
{
    if (b->p != b->local)
        free(b->p);
}

static void sb_add(struct sbuf *b, const char *s, size_t n)
{
    if (b->failed)
        return;
    if (n >= b->cap - b->len) {
        if (n > SIZE_MAX / 2 - b->len) {
            b->failed = true;
            return;
        }
        size_t cap = b->cap * 2;
        if (cap < b->len + n + 1)
            cap = b->len + n + 1;
        char *p;
        if (b->p == b->local) {
            p = malloc(cap);
            if (p)
                memcpy(p, b->local, b->len + 1);
        } else {
            p = realloc(b->p, cap);
        }
        if (!p) {
            b->failed = true;
            return;
        }
        b->p = p;
        b->cap = cap;
    }
    memcpy(b->p + b->len, s, n);
    b->len += n;
    b->p[b->len] = '\0';
}

static void sb_str(struct sbuf *b, const char *s)
{
    sb_add(b, s, strlen(s));
}

/* The buffer's text as a malloc'd string (NULL on failure); b is cleaned. */
static char *sb_steal(struct sbuf *b)
{
    char *s = NULL;
    if (!b->failed) {
        if (b->p == b->local) {
            s = malloc(b->len + 1);
            if (s)
                memcpy(s, b->p, b->len + 1);
        } else {
            s = b->p;
            b->p = b->local;
        }
    }
    sb_cleanup(b);
    return s;
}

/* ---- compilation ----------------------------------------------------------- */

struct cc {
    char *err;
    size_t errlen;
    char path[160]; /* where in the setting we are, for messages: "[0].numUsers" */
    size_t plen;
};

__attribute__((format(printf, 2, 3))) static void fail(struct cc *c, const char *fmt, ...)
{
    if (!c->err || !c->errlen)
        return;
    char msg[512];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof(msg), fmt, ap);
    va_end(ap);
    if (c->plen)
        snprintf(c->err, c->errlen, "%s: %s", c->path, msg);
    else
        snprintf(c->err, c->errlen, "%s", msg);
}

/* The expression text starting at p, up to its "}}" (or the end), trimmed
 * and shortened, for error messages. */
static void raw_text(const char *p, const char *end, char *out, size_t outlen)
{
    const char *close = p;
    while (close < end && !(close[0] == '}' && close + 1 < end && close[1] == '}'))
        close++;
    while (p < close && isspace((unsigned char)*p))
        p++;
    while (close > p && isspace((unsigned char)close[-1]))
        close--;
    size_t n = (size_t)(close - p);
    if (n > 64)
        snprintf(out, outlen, "%.64s...", p);
    else
        snprintf(out, outlen, "%.*s", (int)n, p);
}

/* Expression parser state. lim is where the expression must have ended
 * (TMPL_EXPR_MAX characters plus "}}"), or the end of the text. */
struct parser {
    const char *p, *start, *end, *lim;
    struct cc *c;
};

static void p_ws(struct parser *ps)
{
    while (ps->p < ps->lim && isspace((unsigned char)*ps->p))
        ps->p++;
}

/* Reports why the parser ran out of text: the expression is too long, or
 * the template ends inside it. */
static void fail_end(struct parser *ps)
{
    if (ps->lim < ps->end)
        fail(ps->c, "expression too long (max %d characters)", TMPL_EXPR_MAX);
    else
        fail(ps->c, "unterminated '{{'");
}

static void fail_invalid(struct parser *ps, const char *what)
{
    char raw[80];
    raw_text(ps->start, ps->end, raw, sizeof(raw));
    fail(ps->c, "%s '%s'", what, raw);
}

struct pseg {
    const char *key;
    size_t len;
};

/* A path expression's parts before it is packed into a struct expr. */
struct pexpr {
    enum src src;
    unsigned n;
    struct pseg segs[TMPL_PATH_MAX];
    char name[TMPL_EXPR_MAX + 1]; /* QUERY/HEADER name or room literal */
    size_t name_len;
    bool has_name;
    struct expr *room;
};

static const struct {
    const char *word;
    enum src src;
} sources[] = {
    {"args", SRC_ARGS},           {"rest", SRC_REST},       {"ack", SRC_ACK},
    {"auth", SRC_AUTH},           {"data", SRC_DATA},       {"query", SRC_QUERY},
    {"header", SRC_HEADER},       {"id", SRC_ID},           {"nsp", SRC_NSP},
    {"event", SRC_EVENT},         {"address", SRC_ADDRESS}, {"nsp_size", SRC_NSP_SIZE},
    {"room_size", SRC_ROOM_SIZE},
};

static bool key_char(char ch, bool in_paren)
{
    return ch != '.' && ch != '}' && !isspace((unsigned char)ch) && !(in_paren && ch == ')');
}

static bool all_digits(const char *s, size_t n)
{
    for (size_t i = 0; i < n; i++)
        if (!isdigit((unsigned char)s[i]))
            return false;
    return n > 0;
}

static void expr_free(struct expr *e)
{
    if (!e)
        return;
    expr_free(e->room);
    free(e);
}

static struct expr *expr_pack(struct pexpr *pe, struct cc *c)
{
    size_t bytes = sizeof(struct expr) + pe->n * sizeof(struct seg);
    for (unsigned i = 0; i < pe->n; i++)
        bytes += pe->segs[i].len + 1;
    if (pe->has_name)
        bytes += pe->name_len + 1;
    struct expr *e = calloc(1, bytes);
    if (!e) {
        fail(c, "out of memory");
        return NULL;
    }
    e->src = pe->src;
    e->n_segs = pe->n;
    e->segs = (struct seg *)(void *)(e + 1);
    char *store = (char *)(e->segs + pe->n);
    for (unsigned i = 0; i < pe->n; i++) {
        memcpy(store, pe->segs[i].key, pe->segs[i].len);
        store[pe->segs[i].len] = '\0';
        e->segs[i].key = store;
        e->segs[i].index = -1;
        if (all_digits(store, pe->segs[i].len) && pe->segs[i].len <= TMPL_INDEX_DIGITS)
            e->segs[i].index = strtol(store, NULL, 10);
        store += pe->segs[i].len + 1;
    }
    if (pe->has_name) {
        memcpy(store, pe->name, pe->name_len);
        store[pe->name_len] = '\0';
        e->name = store;
    }
    e->room = pe->room;
    pe->room = NULL;
    return e;
}

static bool reads_client_input(const struct expr *e)
{
    for (; e; e = e->room) {
        switch (e->src) {
        case SRC_ARGS:
        case SRC_REST:
        case SRC_ACK:
        case SRC_AUTH:
        case SRC_QUERY:
        case SRC_HEADER:
            return true;
        default:
            break;
        }
    }
    return false;
}

static struct expr *parse_source(struct parser *ps, bool in_paren);

/* room_size( 'literal' | path ) */
static int parse_room_arg(struct parser *ps, struct pexpr *pe)
{
    p_ws(ps);
    if (ps->p >= ps->lim) {
        fail_end(ps);
        return -1;
    }
    if (*ps->p != '(') {
        fail_invalid(ps, "bad room_size argument in");
        return -1;
    }
    ps->p++;
    p_ws(ps);
    if (ps->p >= ps->lim) {
        fail_end(ps);
        return -1;
    }
    if (*ps->p == '\'') {
        /* A backslash takes the next character as it is (\' and \\). */
        ps->p++;
        pe->has_name = true;
        for (;;) {
            if (ps->p >= ps->lim) {
                fail_end(ps);
                return -1;
            }
            char ch = *ps->p++;
            if (ch == '\'')
                break;
            if (ch == '\\') {
                if (ps->p >= ps->lim) {
                    fail_end(ps);
                    return -1;
                }
                ch = *ps->p++;
            }
            /* lim bounds the literal to TMPL_EXPR_MAX characters */
            pe->name[pe->name_len++] = ch;
        }
        if (pe->name_len == 0) {
            fail_invalid(ps, "bad room_size argument (empty room name) in");
            return -1;
        }
    } else {
        pe->room = parse_source(ps, true);
        if (!pe->room)
            return -1;
        if (pe->room->src == SRC_NSP_SIZE || pe->room->src == SRC_ROOM_SIZE) {
            fail_invalid(ps, "bad room_size argument in");
            return -1;
        }
    }
    p_ws(ps);
    if (ps->p >= ps->lim) {
        fail_end(ps);
        return -1;
    }
    if (*ps->p != ')') {
        fail_invalid(ps, "bad room_size argument in");
        return -1;
    }
    ps->p++;
    return 0;
}

/* A source word and what follows it (path or room_size argument). In
 * room_size's parentheses, ')' ends a key and a bad word is a bad argument. */
static struct expr *parse_source(struct parser *ps, bool in_paren)
{
    struct pexpr pe;
    pe.n = 0;
    pe.name_len = 0;
    pe.has_name = false;
    pe.room = NULL;

    const char *w = ps->p;
    while (ps->p < ps->lim && (isalnum((unsigned char)*ps->p) || *ps->p == '_'))
        ps->p++;
    size_t wlen = (size_t)(ps->p - w);
    if (wlen == 0 && ps->p >= ps->lim) {
        fail_end(ps);
        return NULL;
    }
    bool found = false;
    for (size_t i = 0; i < sizeof(sources) / sizeof(sources[0]); i++) {
        if (strlen(sources[i].word) == wlen && memcmp(sources[i].word, w, wlen) == 0) {
            pe.src = sources[i].src;
            found = true;
            break;
        }
    }
    if (!found) {
        if (in_paren)
            fail_invalid(ps, "bad room_size argument in");
        else if (wlen == 0 && ps->p + 1 < ps->lim && ps->p[0] == '}' && ps->p[1] == '}')
            fail(ps->c, "empty expression '{{}}'");
        else
            fail_invalid(ps, "unknown expression");
        return NULL;
    }
    if (pe.src == SRC_ROOM_SIZE) {
        if (in_paren) {
            fail_invalid(ps, "bad room_size argument in");
            return NULL;
        }
        if (parse_room_arg(ps, &pe) < 0) {
            expr_free(pe.room);
            return NULL;
        }
        struct expr *e = expr_pack(&pe, ps->c);
        if (!e)
            expr_free(pe.room);
        return e;
    }

    /* path: ( ws '.' ws key )* */
    for (;;) {
        const char *save = ps->p;
        p_ws(ps);
        if (ps->p >= ps->lim || *ps->p != '.') {
            ps->p = save;
            break;
        }
        ps->p++;
        p_ws(ps);
        const char *k = ps->p;
        while (ps->p < ps->lim && key_char(*ps->p, in_paren))
            ps->p++;
        if (ps->p == k) {
            if (ps->p >= ps->lim)
                fail_end(ps);
            else
                fail_invalid(ps, "empty key in");
            return NULL;
        }
        if (pe.n == TMPL_PATH_MAX) {
            char what[64];
            snprintf(what, sizeof(what), "path too deep (max %d keys) in", TMPL_PATH_MAX);
            fail_invalid(ps, what);
            return NULL;
        }
        pe.segs[pe.n].key = k;
        pe.segs[pe.n].len = (size_t)(ps->p - k);
        pe.n++;
    }

    switch (pe.src) {
    case SRC_ARGS:
    case SRC_REST:
    case SRC_ACK:
        if (pe.n > 0 && !all_digits(pe.segs[0].key, pe.segs[0].len)) {
            fail_invalid(ps, "expected an argument index (args.N) in");
            return NULL;
        }
        break;
    case SRC_QUERY:
    case SRC_HEADER:
        if (pe.n != 1) {
            fail_invalid(ps, pe.src == SRC_QUERY ? "expected query.NAME in"
                                                 : "expected header.NAME in");
            return NULL;
        }
        /* The name moves from the path to `name`. Handshake header names
         * are stored lower case; lowering once here keeps header.X-Foo
         * working without relying on the lookup to fold case per event. */
        memcpy(pe.name, pe.segs[0].key, pe.segs[0].len);
        pe.name_len = pe.segs[0].len;
        if (pe.src == SRC_HEADER)
            for (size_t i = 0; i < pe.name_len; i++)
                pe.name[i] = (char)tolower((unsigned char)pe.name[i]);
        pe.has_name = true;
        pe.n = 0;
        break;
    case SRC_AUTH:
    case SRC_DATA:
        break;
    default:
        if (pe.n > 0) {
            fail_invalid(ps, "a value without keys cannot take a path:");
            return NULL;
        }
        break;
    }
    return expr_pack(&pe, ps->c);
}

/* Parses the expression after "{{" at ps->p, through its "}}". */
static struct expr *parse_expr(struct parser *ps)
{
    ps->start = ps->p;
    ps->lim = ps->end - ps->p > TMPL_EXPR_MAX + 2 ? ps->p + TMPL_EXPR_MAX + 2 : ps->end;
    p_ws(ps);
    struct expr *e = parse_source(ps, false);
    if (!e)
        return NULL;
    p_ws(ps);
    if (ps->p + 2 > ps->lim) {
        /* no room left for "}}": the text ended or the length limit hit */
        fail_end(ps);
        expr_free(e);
        return NULL;
    }
    if (ps->p[0] != '}' || ps->p[1] != '}') {
        fail_invalid(ps, "invalid expression");
        expr_free(e);
        return NULL;
    }
    ps->p += 2;
    return e;
}

static struct tmpl *node_new(enum node_kind kind)
{
    struct tmpl *t = calloc(1, sizeof(*t));
    if (t) {
        t->kind = kind;
        t->constant = true;
    }
    return t;
}

static void node_free(struct tmpl *t)
{
    if (!t)
        return;
    switch (t->kind) {
    case T_STRING:
        free(t->u.text);
        break;
    case T_EXPR:
        expr_free(t->u.expr);
        break;
    case T_INTERP:
        for (size_t i = 0; i < t->u.interp.n; i++)
            expr_free(t->u.interp.parts[i].expr);
        free(t->u.interp.parts);
        free(t->u.interp.text);
        break;
    case T_OBJECT:
    case T_ARRAY:
        for (size_t i = 0; i < t->u.kids.n; i++) {
            node_free(t->u.kids.items[i]);
            if (t->u.kids.keys)
                free(t->u.kids.keys[i]);
        }
        free(t->u.kids.items);
        free(t->u.kids.keys);
        break;
    default:
        break;
    }
    free(t);
}

static int add_part(struct tmpl *t, size_t *cap, struct expr *e, size_t off, size_t len)
{
    if (t->u.interp.n == *cap) {
        size_t ncap = *cap ? *cap * 2 : 4;
        struct part *np = realloc(t->u.interp.parts, ncap * sizeof(*np));
        if (!np)
            return -1;
        t->u.interp.parts = np;
        *cap = ncap;
    }
    struct part *p = &t->u.interp.parts[t->u.interp.n++];
    p->expr = e;
    p->off = off;
    p->len = len;
    return 0;
}

static struct tmpl *compile_text(const char *s, struct cc *c)
{
    size_t n = strlen(s);
    struct tmpl *t = node_new(T_INTERP);
    /* Literal text never grows when escapes are resolved. */
    char *text = malloc(n + 1);
    if (!t || !text) {
        free(text);
        node_free(t);
        fail(c, "out of memory");
        return NULL;
    }
    t->u.interp.text = text;
    size_t cap = 0, tlen = 0, run = 0; /* run: start of the pending literal */
    struct parser ps = {.p = s, .end = s + n, .c = c};
    while (ps.p < ps.end) {
        const char *q = ps.p;
        if (q[0] == '\\' && q + 2 < ps.end && q[1] == '{' && q[2] == '{') {
            text[tlen++] = '{';
            text[tlen++] = '{';
            ps.p += 3;
        } else if (q[0] == '{' && q + 1 < ps.end && q[1] == '{') {
            ps.p += 2;
            struct expr *e = parse_expr(&ps);
            if (!e)
                goto fail;
            if ((tlen > run && add_part(t, &cap, NULL, run, tlen - run) < 0) ||
                add_part(t, &cap, e, 0, 0) < 0) {
                expr_free(e);
                fail(c, "out of memory");
                goto fail;
            }
            run = tlen;
            t->constant = false;
            if (reads_client_input(e))
                t->client_input = true;
        } else {
            text[tlen++] = *ps.p++;
        }
    }
    text[tlen] = '\0';
    if (t->u.interp.n == 0) {
        /* No expression: plain text. */
        t->kind = T_STRING;
        t->u.text = text;
        return t;
    }
    if (t->u.interp.n == 1 && tlen == 0) {
        struct expr *e = t->u.interp.parts[0].expr;
        free(t->u.interp.parts);
        free(text);
        t->kind = T_EXPR;
        t->u.expr = e;
        return t;
    }
    if (tlen > run && add_part(t, &cap, NULL, run, tlen - run) < 0) {
        fail(c, "out of memory");
        goto fail;
    }
    return t;
fail:
    node_free(t);
    return NULL;
}

static struct tmpl *compile_setting(const config_setting_t *s, unsigned depth, struct cc *c);

static struct tmpl *compile_group(const config_setting_t *s, unsigned depth, struct cc *c)
{
    bool object = config_setting_type(s) == CONFIG_TYPE_GROUP;
    struct tmpl *t = node_new(object ? T_OBJECT : T_ARRAY);
    if (!t) {
        fail(c, "out of memory");
        return NULL;
    }
    if (depth >= TMPL_DEPTH_MAX) {
        fail(c, "nested too deeply (max %d levels)", TMPL_DEPTH_MAX);
        node_free(t);
        return NULL;
    }
    int len = config_setting_length(s);
    size_t n = len > 0 ? (size_t)len : 0;
    if (n) {
        t->u.kids.items = calloc(n, sizeof(*t->u.kids.items));
        if (object)
            t->u.kids.keys = calloc(n, sizeof(*t->u.kids.keys));
        if (!t->u.kids.items || (object && !t->u.kids.keys)) {
            fail(c, "out of memory");
            node_free(t);
            return NULL;
        }
        /* The arrays start zeroed, so node_free can free a partly compiled
         * node: NULL members and keys are skipped. */
        t->u.kids.n = n;
    }
    size_t plen = c->plen;
    for (size_t i = 0; i < n; i++) {
        const config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
        if (object) {
            const char *name = config_setting_name(m) ? config_setting_name(m) : "";
            t->u.kids.keys[i] = strdup(name);
            if (!t->u.kids.keys[i]) {
                fail(c, "out of memory");
                node_free(t);
                return NULL;
            }
            snprintf(c->path + plen, sizeof(c->path) - plen, plen ? ".%s" : "%s", name);
        } else {
            snprintf(c->path + plen, sizeof(c->path) - plen, "[%zu]", i);
        }
        c->plen = strlen(c->path);
        struct tmpl *k = compile_setting(m, depth + 1, c);
        c->plen = plen;
        c->path[plen] = '\0';
        if (!k) {
            node_free(t);
            return NULL;
        }
        t->u.kids.items[i] = k;
        t->constant = t->constant && k->constant;
        t->client_input = t->client_input || k->client_input;
    }
    return t;
}

static struct tmpl *compile_setting(const config_setting_t *s, unsigned depth, struct cc *c)
{
    struct tmpl *t;
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_STRING:
        return compile_text(config_setting_get_string(s), c);
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
    case CONFIG_TYPE_FLOAT:
        t = node_new(T_NUMBER);
        if (t)
            t->u.number =
                config_setting_type(s) == CONFIG_TYPE_INT     ? (double)config_setting_get_int(s)
                : config_setting_type(s) == CONFIG_TYPE_INT64 ? (double)config_setting_get_int64(s)
                                                              : config_setting_get_float(s);
        break;
    case CONFIG_TYPE_BOOL:
        t = node_new(T_BOOL);
        if (t)
            t->u.boolean = config_setting_get_bool(s) != 0;
        break;
    case CONFIG_TYPE_GROUP:
    case CONFIG_TYPE_LIST:
    case CONFIG_TYPE_ARRAY:
        return compile_group(s, depth, c);
    default:
        fail(c, "unsupported value type");
        return NULL;
    }
    if (!t)
        fail(c, "out of memory");
    return t;
}

struct tmpl *tmpl_compile(const config_setting_t *s, char *err, size_t errlen)
{
    struct cc c = {.err = err, .errlen = errlen};
    if (!s) {
        fail(&c, "no template");
        return NULL;
    }
    return compile_setting(s, 0, &c);
}

struct tmpl *tmpl_compile_string(const char *text, char *err, size_t errlen)
{
    struct cc c = {.err = err, .errlen = errlen};
    if (!text) {
        fail(&c, "no template");
        return NULL;
    }
    return compile_text(text, &c);
}

void tmpl_free(struct tmpl *t)
{
    node_free(t);
}

bool tmpl_uses_client_input(const struct tmpl *t)
{
    return t && t->client_input;
}

bool tmpl_is_constant(const struct tmpl *t)
{
    return !t || t->constant;
}

/* ---- evaluation ------------------------------------------------------------ */

/* A borrowed value: valid while the context's trees and socket are. */
struct val {
    enum { V_NONE, V_STR, V_NUM, V_JSON } kind;
    const char *s;
    double n;
    const cJSON *j; /* never a string or number (those become V_STR/V_NUM) */
    cJSON view;     /* `rest`: an array sharing args' members after the first */
};

static void val_json(struct val *v, const cJSON *j)
{
    if (!j) {
        v->kind = V_NONE;
    } else if (cJSON_IsString(j)) {
        v->kind = j->valuestring ? V_STR : V_NONE;
        v->s = j->valuestring;
    } else if (cJSON_IsNumber(j)) {
        v->kind = V_NUM;
        v->n = j->valuedouble;
    } else {
        v->kind = V_JSON;
        v->j = j;
    }
}

static void val_str(struct val *v, const char *s)
{
    v->kind = s ? V_STR : V_NONE;
    v->s = s;
}

static const cJSON *walk(const cJSON *j, const struct expr *e)
{
    for (unsigned i = 0; j && i < e->n_segs; i++) {
        const struct seg *sg = &e->segs[i];
        if (cJSON_IsArray(j))
            j = sg->index >= 0 && sg->index <= INT32_MAX ? cJSON_GetArrayItem(j, (int)sg->index)
                                                         : NULL;
        else if (cJSON_IsObject(j))
            j = cJSON_GetObjectItemCaseSensitive(j, sg->key);
        else
            j = NULL;
    }
    return j;
}

/* Numbers read as JSON.stringify writes them (protocol/json.h). */
static void render_number(struct sbuf *b, double d)
{
    char tmp[JSON_NUMBER_MAX];
    sb_add(b, tmp, json_number(d, tmp));
}

/* Compact JSON of j, as JSON.stringify writes it; binary nodes are written
 * as "[binary]". */
static void render_json(struct sbuf *b, const cJSON *j)
{
    if (sio_is_binary(j)) {
        sb_str(b, "[binary]");
        return;
    }
    struct buf out;
    buf_init(&out);
    if (json_print(j, &out, "[binary]") < 0)
        b->failed = true;
    else
        sb_add(b, (const char *)out.data, out.len);
    buf_cleanup(&out);
}

static void render_val(struct sbuf *b, const struct val *v)
{
    switch (v->kind) {
    case V_NONE:
        break;
    case V_STR:
        sb_str(b, v->s);
        break;
    case V_NUM:
        render_number(b, v->n);
        break;
    case V_JSON:
        if (cJSON_IsTrue(v->j))
            sb_str(b, "true");
        else if (cJSON_IsFalse(v->j))
            sb_str(b, "false");
        else if (cJSON_IsNull(v->j) && !sio_is_binary(v->j))
            sb_str(b, "null");
        else
            render_json(b, v->j);
        break;
    }
}

static void resolve(const struct expr *e, const struct tmpl_ctx *ctx, struct val *v);

static void resolve_room_size(const struct expr *e, const struct tmpl_ctx *ctx,
                              struct sio_socket *sock, struct val *v)
{
    v->kind = V_NONE;
    if (!sock)
        return;
    const struct sio_namespace *nsp = sio_socket_namespace(sock);
    if (!nsp)
        return;
    if (e->name) {
        v->kind = V_NUM;
        v->n = (double)sio_room_size(nsp, e->name);
        return;
    }
    /* The room name is the argument's text, as join actions see it
     * (tmpl_eval_string): numbers name the room of their JSON text. */
    struct val r;
    resolve(e->room, ctx, &r);
    v->kind = V_NUM;
    v->n = 0;
    if (r.kind == V_NONE)
        return;
    if (r.kind == V_STR) {
        v->n = (double)sio_room_size(nsp, r.s);
        return;
    }
    struct sbuf b;
    sb_init(&b);
    render_val(&b, &r);
    if (!b.failed)
        v->n = (double)sio_room_size(nsp, b.p);
    sb_cleanup(&b);
}

static void resolve(const struct expr *e, const struct tmpl_ctx *ctx, struct val *v)
{
    struct sio_socket *sock = ctx->sock;
    const struct sio_handshake *hs = NULL;
    v->kind = V_NONE;
    switch (e->src) {
    case SRC_ARGS:
        val_json(v, walk(ctx->args, e));
        break;
    case SRC_REST:
        /* A view, not a copy: an array node whose members are args' from the
         * second on (cJSON arrays are linked lists; only `next` is used). */
        if (ctx->args) {
            memset(&v->view, 0, sizeof(v->view));
            v->view.type = cJSON_Array | cJSON_IsReference;
            v->view.child = ctx->args->child ? ctx->args->child->next : NULL;
            val_json(v, walk(&v->view, e));
        }
        break;
    case SRC_ACK:
        val_json(v, walk(ctx->ack, e));
        break;
    case SRC_AUTH:
        if (sock)
            val_json(v, walk(sio_socket_auth(sock), e));
        break;
    case SRC_DATA:
        if (sock)
            val_json(v, walk(sio_socket_data(sock), e));
        break;
    case SRC_QUERY:
    case SRC_HEADER:
    case SRC_ADDRESS:
        hs = sock ? sio_socket_handshake(sock) : NULL;
        if (!hs)
            break;
        if (e->src == SRC_QUERY)
            val_str(v, sio_handshake_query(hs, e->name));
        else if (e->src == SRC_HEADER)
            val_str(v, sio_handshake_header(hs, e->name));
        else
            val_str(v, sio_handshake_address(hs));
        break;
    case SRC_ID:
        if (sock)
            val_str(v, sio_socket_id(sock));
        break;
    case SRC_NSP:
        if (sock && sio_socket_namespace(sock))
            val_str(v, sio_namespace_name(sio_socket_namespace(sock)));
        break;
    case SRC_EVENT:
        val_str(v, ctx->event);
        break;
    case SRC_NSP_SIZE:
        if (sock && sio_socket_namespace(sock)) {
            v->kind = V_NUM;
            v->n = (double)sio_namespace_size(sio_socket_namespace(sock));
        }
        break;
    case SRC_ROOM_SIZE:
        resolve_room_size(e, ctx, sock, v);
        break;
    }
}

/* A new cJSON value for v (whole-value rules). */
static cJSON *val_to_json(const struct val *v)
{
    switch (v->kind) {
    case V_STR:
        return cJSON_CreateString(v->s);
    case V_NUM:
        return cJSON_CreateNumber(v->n);
    case V_JSON: {
        cJSON *copy = sio_json_copy(v->j);
        /* A value taken from inside an object keeps its key in the copy;
         * drop it so the result is a plain value wherever it is put. */
        if (copy && copy->string) {
            if (!(copy->type & cJSON_StringIsConst))
                cJSON_free(copy->string);
            copy->string = NULL;
            copy->type &= ~cJSON_StringIsConst;
        }
        return copy;
    }
    default:
        return cJSON_CreateNull();
    }
}

static void render_interp(struct sbuf *b, const struct tmpl *t, const struct tmpl_ctx *ctx)
{
    for (size_t i = 0; i < t->u.interp.n; i++) {
        const struct part *p = &t->u.interp.parts[i];
        if (p->expr) {
            struct val v;
            resolve(p->expr, ctx, &v);
            render_val(b, &v);
        } else {
            sb_add(b, t->u.interp.text + p->off, p->len);
        }
    }
}

static cJSON *eval_node(const struct tmpl *t, const struct tmpl_ctx *ctx)
{
    switch (t->kind) {
    case T_STRING:
        return cJSON_CreateString(t->u.text);
    case T_NUMBER:
        return cJSON_CreateNumber(t->u.number);
    case T_BOOL:
        return cJSON_CreateBool(t->u.boolean);
    case T_EXPR: {
        struct val v;
        resolve(t->u.expr, ctx, &v);
        return val_to_json(&v);
    }
    case T_INTERP: {
        struct sbuf b;
        sb_init(&b);
        render_interp(&b, t, ctx);
        cJSON *s = b.failed ? NULL : cJSON_CreateString(b.p);
        sb_cleanup(&b);
        return s;
    }
    case T_OBJECT:
    case T_ARRAY: {
        cJSON *out = t->kind == T_OBJECT ? cJSON_CreateObject() : cJSON_CreateArray();
        if (!out)
            return NULL;
        for (size_t i = 0; i < t->u.kids.n; i++) {
            cJSON *k = eval_node(t->u.kids.items[i], ctx);
            /* Keys are copied: results may outlive the template (room
             * history keeps events across a reload). */
            bool ok = k && (t->kind == T_OBJECT ? cJSON_AddItemToObject(out, t->u.kids.keys[i], k)
                                                : cJSON_AddItemToArray(out, k));
            if (!ok) {
                cJSON_Delete(k);
                cJSON_Delete(out);
                return NULL;
            }
        }
        return out;
    }
    }
    return NULL;
}

cJSON *tmpl_eval(const struct tmpl *t, const struct tmpl_ctx *ctx)
{
    const struct tmpl_ctx none = {0};
    if (!t)
        return cJSON_CreateNull();
    return eval_node(t, ctx ? ctx : &none);
}

char *tmpl_eval_string(const struct tmpl *t, const struct tmpl_ctx *ctx)
{
    const struct tmpl_ctx none = {0};
    if (!ctx)
        ctx = &none;
    struct sbuf b;
    sb_init(&b);
    if (!t) {
        sb_str(&b, "null");
        return sb_steal(&b);
    }
    switch (t->kind) {
    case T_STRING:
        sb_str(&b, t->u.text);
        break;
    case T_NUMBER:
        render_number(&b, t->u.number);
        break;
    case T_BOOL:
        sb_str(&b, t->u.boolean ? "true" : "false");
        break;
    case T_EXPR: {
        struct val v;
        resolve(t->u.expr, ctx, &v);
        render_val(&b, &v);
        break;
    }
    case T_INTERP:
        render_interp(&b, t, ctx);
        break;
    case T_OBJECT:
    case T_ARRAY: {
        cJSON *j = eval_node(t, ctx);
        if (!j)
            b.failed = true;
        else
            render_json(&b, j);
        cJSON_Delete(j);
        break;
    }
    }
    return sb_steal(&b);
}
