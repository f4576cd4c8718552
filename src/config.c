/* config: sockeye.conf -> struct sockeye_conf (contract in config.h).
 *
 * The libconfig tree is walked against static schema tables: one struct
 * field per key, naming the libconfig types it accepts, the parser that
 * validates and stores it, and where in the C struct it goes. That keeps
 * the rejection of unknown keys and wrong types uniform at every level,
 * lets --set find the type a key should have from its path alone, and keeps
 * each rule of validation next to the key it is about (cross-key rules live
 * in the schema's post hook).
 *
 * Everything the result owns (strings, arrays, compiled templates) is
 * recorded in one arena (conf->priv), so a config that failed half-way is
 * freed exactly like a complete one.
 */
#include "config.h"

#include "sio.h"

#include <arpa/inet.h>
#include <ctype.h>
#include <errno.h>
#include <fcntl.h>
#include <fnmatch.h>
#include <limits.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/stat.h>
#include <unistd.h>

#include <libconfig.h>

/* --- arena ---------------------------------------------------------------- */

struct arena {
    void **ptrs;
    size_t n, cap;
    struct tmpl **tmpls;
    size_t nt, capt;
};

static int grow(void *vec, size_t *cap, size_t n, size_t elem)
{
    if (n < *cap)
        return 0;
    size_t ncap = *cap ? *cap * 2 : 16;
    void *p = realloc(*(void **)vec, ncap * elem);
    if (!p)
        return -1;
    *(void **)vec = p;
    *cap = ncap;
    return 0;
}

static void *arena_keep(struct arena *a, void *p)
{
    if (!p)
        return NULL;
    if (grow(&a->ptrs, &a->cap, a->n, sizeof(*a->ptrs)) < 0) {
        free(p);
        return NULL;
    }
    a->ptrs[a->n++] = p;
    return p;
}

static void arena_free(struct arena *a)
{
    if (!a)
        return;
    for (size_t i = 0; i < a->n; i++)
        free(a->ptrs[i]);
    for (size_t i = 0; i < a->nt; i++)
        tmpl_free(a->tmpls[i]);
    free(a->ptrs);
    free(a->tmpls);
    free(a);
}

/* --- loader state and errors -------------------------------------------- */

struct srcfile {
    char *name;
    char *text; /* NULL when unreadable */
};

struct loader {
    struct arena *arena;
    const char *file; /* as given */
    char *dir;        /* the file's directory, for relative paths */
    char *err;
    size_t errlen;
    bool failed;
    const char *rule_on;   /* `on` of the rule being walked (actions check it) */
    bool recovery_enabled; /* engine.recovery.enabled, applied in its post hook */
    struct srcfile *srcs;  /* source texts, for the 32-bit literal check */
    size_t nsrcs;
};

/* A bounded string builder: n counts what would have been written, so
 * truncation never moves a pointer past the buffer. */
struct sbuf {
    char *p;
    size_t len, n;
};

__attribute__((format(printf, 2, 0))) static void sb_vprintf(struct sbuf *b, const char *fmt,
                                                             va_list ap)
{
    size_t room = b->n < b->len ? b->len - b->n : 0;
    int w = vsnprintf(room ? b->p + b->n : NULL, room, fmt, ap);
    if (w > 0)
        b->n += (size_t)w;
}

__attribute__((format(printf, 2, 3))) static void sb_printf(struct sbuf *b, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(b, fmt, ap);
    va_end(ap);
}

/* The setting's path in libconfig's own syntax ("listeners.[1].tls.cert"),
 * which is also what --set accepts. */
static void sb_path(struct sbuf *b, const config_setting_t *s)
{
    const config_setting_t *parent = config_setting_parent(s);
    if (!parent)
        return;
    sb_path(b, parent);
    const char *dot = config_setting_parent(parent) ? "." : "";
    const char *name = config_setting_name(s);
    if (name && config_setting_type(parent) == CONFIG_TYPE_GROUP)
        sb_printf(b, "%s%s", dot, name);
    else
        sb_printf(b, "%s[%d]", dot, config_setting_index(s));
}

static void path_of(const config_setting_t *s, char *buf, size_t len)
{
    struct sbuf b = {buf, len, 0};
    buf[0] = '\0';
    sb_path(&b, s);
}

/* The file a setting was read from, as a path usable from here: libconfig
 * 1.5 names an @include'd file as written in the directive, relative to
 * the include directory (the config file's). */
static void sb_source(struct sbuf *b, const struct loader *ld, const char *file)
{
    if (!file || file[0] == '/' || !strcmp(file, ld->file) || access(file, F_OK) == 0)
        sb_printf(b, "%s", file ? file : ld->file);
    else if (!strcmp(ld->dir, "."))
        sb_printf(b, "%s", file);
    else
        sb_printf(b, "%s/%s", ld->dir, file);
}

/* Where a setting came from: "file:line", or "--set PATH=VALUE" for
 * settings created or changed by an override (the hook holds its text). */
static void sb_where(struct sbuf *b, const struct loader *ld, const config_setting_t *s)
{
    if (s && config_setting_get_hook(s)) {
        sb_printf(b, "--set %s", (const char *)config_setting_get_hook(s));
        return;
    }
    unsigned line = s ? (unsigned)config_setting_source_line(s) : 0;
    sb_source(b, ld, s ? config_setting_source_file(s) : NULL);
    if (line)
        sb_printf(b, ":%u", line);
}

/* Records the first error only: later ones are consequences. with_key
 * prefixes the setting's path. Returns -1 for `return fail(...)`. */
__attribute__((format(printf, 5, 0))) static int vfail(struct loader *ld, const config_setting_t *s,
                                                       bool with_key, const char *sub,
                                                       const char *fmt, va_list ap)
{
    if (ld->failed)
        return -1;
    ld->failed = true;
    struct sbuf b = {ld->err, ld->errlen, 0};
    if (ld->errlen)
        ld->err[0] = '\0';
    sb_where(&b, ld, s);
    sb_printf(&b, ": ");
    if (with_key && s && config_setting_parent(s)) {
        sb_path(&b, s);
        sb_printf(&b, "%s: ", sub ? sub : "");
    }
    sb_vprintf(&b, fmt, ap);
    return -1;
}

/* "file:line: message" */
__attribute__((format(printf, 3, 4))) static int
fail_at(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(ld, s, false, NULL, fmt, ap);
    va_end(ap);
    return -1;
}

/* "file:line: path.of.key: message" */
__attribute__((format(printf, 3, 4))) static int
fail_key(struct loader *ld, const config_setting_t *s, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(ld, s, true, NULL, fmt, ap);
    va_end(ap);
    return -1;
}

/* "file:line: path.of.key<sub>: message" */
__attribute__((format(printf, 4, 5))) static int
fail_sub(struct loader *ld, const config_setting_t *s, const char *sub, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    vfail(ld, s, true, sub, fmt, ap);
    va_end(ap);
    return -1;
}

/* "--set PATH=VALUE: message" */
__attribute__((format(printf, 3, 4))) static int fail_set(struct loader *ld, const char *text,
                                                          const char *fmt, ...)
{
    if (ld->failed)
        return -1;
    ld->failed = true;
    struct sbuf b = {ld->err, ld->errlen, 0};
    if (ld->errlen)
        ld->err[0] = '\0';
    sb_printf(&b, "--set %s: ", text);
    va_list ap;
    va_start(ap, fmt);
    sb_vprintf(&b, fmt, ap);
    va_end(ap);
    return -1;
}

static int oom(struct loader *ld)
{
    return fail_at(ld, NULL, "out of memory");
}

static void *ld_calloc(struct loader *ld, size_t n, size_t size)
{
    void *p = arena_keep(ld->arena, calloc(n ? n : 1, size));
    if (!p)
        oom(ld);
    return p;
}

static char *ld_strdup(struct loader *ld, const char *s)
{
    char *p = arena_keep(ld->arena, strdup(s));
    if (!p)
        oom(ld);
    return p;
}

static int ld_keep_tmpl(struct loader *ld, struct tmpl *t)
{
    struct arena *a = ld->arena;
    if (grow(&a->tmpls, &a->capt, a->nt, sizeof(*a->tmpls)) < 0) {
        tmpl_free(t);
        return oom(ld);
    }
    a->tmpls[a->nt++] = t;
    return 0;
}

/* --- the 32-bit literal check --------------------------------------------
 * libconfig before 1.7 reads an integer literal without the L suffix into
 * 32 bits and silently wraps it (5000000000 becomes 705032704). The tree
 * cannot tell, so integer settings are checked against their source line:
 * a literal for this key that does not fit 32 bits is an error. */

static const char *source_text(struct loader *ld, const char *file)
{
    for (size_t i = 0; i < ld->nsrcs; i++)
        if (!strcmp(ld->srcs[i].name, file))
            return ld->srcs[i].text;
    struct srcfile *v = realloc(ld->srcs, (ld->nsrcs + 1) * sizeof(*v));
    if (!v)
        return NULL;
    ld->srcs = v;
    struct srcfile *sf = &v[ld->nsrcs];
    sf->name = strdup(file);
    sf->text = NULL;
    if (!sf->name)
        return NULL;
    ld->nsrcs++;
    FILE *fp = fopen(file, "r");
    if (!fp)
        return NULL;
    size_t cap = 0, n = 0;
    char *text = NULL;
    for (;;) {
        if (n + 4096 + 1 > cap) {
            cap = cap ? cap * 2 : 8192;
            char *t = realloc(text, cap);
            if (!t) {
                free(text);
                fclose(fp);
                return NULL;
            }
            text = t;
        }
        size_t r = fread(text + n, 1, cap - n - 1, fp);
        n += r;
        if (r == 0)
            break;
    }
    fclose(fp);
    text[n] = '\0';
    sf->text = text;
    return text;
}

static bool is_ident(char c)
{
    return isalnum((unsigned char)c) || c == '_' || c == '-' || c == '*';
}

static int check_int_literal(struct loader *ld, const config_setting_t *s)
{
    const char *name = config_setting_name(s);
    const char *file = config_setting_source_file(s);
    unsigned line = (unsigned)config_setting_source_line(s);
    if (config_setting_type(s) != CONFIG_TYPE_INT || config_setting_get_hook(s) || !name || !file ||
        !line)
        return 0;
    char path[PATH_MAX];
    struct sbuf pb = {path, sizeof(path), 0};
    sb_source(&pb, ld, file);
    const char *p = pb.n < sizeof(path) ? source_text(ld, path) : NULL;
    if (!p)
        return 0;
    for (unsigned l = 1; l < line && p; l++) {
        p = strchr(p, '\n');
        if (p)
            p++;
    }
    if (!p)
        return 0;
    size_t nlen = strlen(name);
    const char *start = p;
    for (; *p && *p != '\n' && *p != '#' && !(p[0] == '/' && (p[1] == '/' || p[1] == '*')); p++) {
        if (*p == '"') { /* skip strings: a key name inside one is no key */
            for (p++; *p && *p != '"' && *p != '\n'; p++)
                if (*p == '\\' && p[1])
                    p++;
            if (*p != '"')
                break;
            continue;
        }
        if ((p > start && is_ident(p[-1])) || strncmp(p, name, nlen) != 0 || is_ident(p[nlen]))
            continue;
        const char *q = p + nlen;
        while (*q == ' ' || *q == '\t')
            q++;
        if (*q != '=' && *q != ':')
            continue;
        q++;
        while (*q == ' ' || *q == '\t')
            q++;
        const char *lit = q;
        bool neg = *q == '-';
        if (*q == '-' || *q == '+')
            q++;
        if (!isdigit((unsigned char)*q))
            continue;
        bool hex = q[0] == '0' && (q[1] == 'x' || q[1] == 'X');
        errno = 0;
        char *end;
        unsigned long long v = strtoull(q, &end, hex ? 16 : 10);
        if (*end == 'L' || *end == 'l' || *end == '.' || *end == 'e' || *end == 'E')
            continue;
        unsigned long long lim = neg ? (unsigned long long)INT32_MAX + 1 : INT32_MAX;
        if (hex && !neg)
            lim = UINT32_MAX; /* libconfig takes 0xFFFFFFFF as a bit pattern */
        if (errno == ERANGE || v > lim)
            return fail_key(ld, s, "%.*s does not fit in 32 bits: write it as %.*sL",
                            (int)(end - lit), lit, (int)(end - lit), lit);
    }
    return 0;
}

/* --- schema ----------------------------------------------------------------- */

enum {
    T_INT = 1 << 0, /* CONFIG_TYPE_INT and CONFIG_TYPE_INT64 */
    T_FLOAT = 1 << 1,
    T_BOOL = 1 << 2,
    T_STRING = 1 << 3,
    T_ARRAY = 1 << 4,
    T_LIST = 1 << 5,
    T_GROUP = 1 << 6,
    T_ANY = (1 << 7) - 1,
};

static unsigned type_bit(const config_setting_t *s)
{
    switch (config_setting_type(s)) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64:
        return T_INT;
    case CONFIG_TYPE_FLOAT:
        return T_FLOAT;
    case CONFIG_TYPE_BOOL:
        return T_BOOL;
    case CONFIG_TYPE_STRING:
        return T_STRING;
    case CONFIG_TYPE_ARRAY:
        return T_ARRAY;
    case CONFIG_TYPE_LIST:
        return T_LIST;
    case CONFIG_TYPE_GROUP:
        return T_GROUP;
    default:
        return 0;
    }
}

static void sb_types(struct sbuf *b, unsigned types)
{
    static const char *const names[] = {"an integer", "a number", "a boolean", "a string",
                                        "an array",   "a list",   "a group"};
    unsigned n = 0, total = (unsigned)__builtin_popcount(types);
    for (unsigned i = 0; i < 7; i++) {
        if (!(types & (1u << i)))
            continue;
        n++;
        sb_printf(b, "%s%s", n == 1 ? "" : n == total ? " or " : ", ", names[i]);
    }
}

struct field;
struct schema;
typedef int (*parse_fn)(struct loader *ld, config_setting_t *s, const struct field *f, void *obj);

struct field {
    const char *key;
    unsigned types;                      /* accepted libconfig types (T_*) */
    parse_fn parse;                      /* validates s and stores it into obj */
    size_t off, size;                    /* destination inside the group's object */
    long long min, max;                  /* integer range */
    const char *const *names;            /* enum values (NULL-terminated); value = index */
    const struct schema *sub;            /* members of a group, elements of a list */
    size_t elem_size;                    /* lists: sizeof one element */
    size_t count_off;                    /* lists: where the size_t count goes */
    int tag;                             /* parser-specific (condition kind) */
    unsigned verbs;                      /* actions: verbs this key may go with (0 = any) */
    const char *(*check)(const char *v); /* strings: NULL or why v is bad */
};

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

struct schema {
    const struct field *fields;
    size_t n;
    /* before the members are parsed (defaults, context) */
    int (*pre)(struct loader *ld, config_setting_t *g, void *obj);
    /* after (required keys, rules that involve several keys) */
    int (*post)(struct loader *ld, config_setting_t *g, void *obj);
    /* may this key appear, given what the pre hook learned? */
    int (*allow)(struct loader *ld, config_setting_t *s, const struct field *f, void *obj);
};

static const struct field *find_field(const struct schema *sc, const char *key)
{
    for (size_t i = 0; i < sc->n; i++)
        if (!strcmp(sc->fields[i].key, key))
            return &sc->fields[i];
    return NULL;
}

/* The field for member s of group g, or an error naming the key. */
static const struct field *member_field(struct loader *ld, config_setting_t *s,
                                        const struct schema *sc)
{
    const char *name = config_setting_name(s);
    const struct field *f = name ? find_field(sc, name) : NULL;
    if (!f) {
        char where[256];
        const config_setting_t *g = config_setting_parent(s);
        path_of(g, where, sizeof(where));
        if (where[0])
            fail_at(ld, s, "unknown key '%s' in %s", name ? name : "?", where);
        else
            fail_at(ld, s, "unknown key '%s' at top level", name ? name : "?");
        return NULL;
    }
    if (!(type_bit(s) & f->types)) {
        char types[96];
        struct sbuf b = {types, sizeof(types), 0};
        sb_types(&b, f->types);
        fail_key(ld, s, "expected %s", types);
        return NULL;
    }
    return f;
}

static int walk(struct loader *ld, config_setting_t *g, const struct schema *sc, void *obj)
{
    if (sc->pre && sc->pre(ld, g, obj) < 0)
        return -1;
    int n = config_setting_length(g);
    for (int i = 0; i < n; i++) {
        config_setting_t *m = config_setting_get_elem(g, (unsigned)i);
        const struct field *f = member_field(ld, m, sc);
        if (!f)
            return -1;
        if (sc->allow && sc->allow(ld, m, f, obj) < 0)
            return -1;
        if (f->parse(ld, m, f, obj) < 0)
            return -1;
    }
    if (sc->post && sc->post(ld, g, obj) < 0)
        return -1;
    return 0;
}

static void *dst(const struct field *f, void *obj)
{
    return (char *)obj + f->off;
}

/* Stores v into an unsigned integer, bool or enum of f->size bytes. */
static void store_uint(const struct field *f, void *obj, unsigned long long v)
{
    void *d = dst(f, obj);
    switch (f->size) {
    case 1: { /* bool */
        bool b = v != 0;
        memcpy(d, &b, sizeof(b));
        break;
    }
    case 2: {
        uint16_t x = (uint16_t)v;
        memcpy(d, &x, sizeof(x));
        break;
    }
    case 4: { /* unsigned, enums, and size_t on 32-bit systems */
        uint32_t x = (uint32_t)v;
        memcpy(d, &x, sizeof(x));
        break;
    }
    default: {
        uint64_t x = v;
        memcpy(d, &x, sizeof(x));
        break;
    }
    }
}

static void store_ptr(const struct field *f, void *obj, const void *p)
{
    memcpy(dst(f, obj), &p, sizeof(p));
}

static const config_setting_t *member(const config_setting_t *g, const char *name)
{
    return config_setting_get_member(g, name);
}

/* Of two conflicting keys, the one an override set (the user's latest
 * word), else the second. */
static const config_setting_t *blame(const config_setting_t *g, const char *a, const char *b)
{
    const config_setting_t *sa = member(g, a);
    return sa && config_setting_get_hook(sa) ? sa : member(g, b);
}

/* --- generic parsers ---------------------------------------------------- */

static int p_uint(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    if (check_int_literal(ld, s) < 0)
        return -1;
    long long v = config_setting_get_int64(s);
    if (v < f->min || v > f->max) {
        if (f->min == 0 && v < 0)
            return fail_key(ld, s, "must not be negative");
        if (f->max >= UINT32_MAX)
            return fail_key(ld, s, "must be at least %lld", f->min);
        return fail_key(ld, s, "must be between %lld and %lld", f->min, f->max);
    }
    store_uint(f, obj, (unsigned long long)v);
    return 0;
}

static int p_bool(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    store_uint(f, obj, config_setting_get_bool(s) ? 1 : 0);
    return 0;
}

static int p_string(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    const char *v = config_setting_get_string(s);
    const char *why = f->check ? f->check(v) : NULL;
    if (why)
        return fail_key(ld, s, "%s", why);
    char *copy = ld_strdup(ld, v);
    if (!copy)
        return -1;
    store_ptr(f, obj, copy);
    return 0;
}

static int p_enum(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    const char *v = config_setting_get_string(s);
    for (size_t i = 0; f->names[i]; i++) {
        if (!strcmp(v, f->names[i])) {
            store_uint(f, obj, i);
            return 0;
        }
    }
    char list[160];
    struct sbuf b = {list, sizeof(list), 0};
    list[0] = '\0';
    for (size_t i = 0; f->names[i]; i++)
        sb_printf(&b, "%s%s", i ? ", " : "", f->names[i]);
    return fail_key(ld, s, "'%s' is not one of %s", v, list);
}

static int p_group(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    return walk(ld, s, f->sub, obj);
}

/* A list of groups into an array of elem_size structs + a size_t count. */
static int p_list(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    size_t n = (size_t)config_setting_length(s);
    char *elems = NULL;
    if (n) {
        elems = ld_calloc(ld, n, f->elem_size);
        if (!elems)
            return -1;
    }
    store_ptr(f, obj, elems);
    memcpy((char *)obj + f->count_off, &n, sizeof(n));
    for (size_t i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        if (config_setting_type(e) != CONFIG_TYPE_GROUP)
            return fail_key(ld, e, "expected a group");
        if (walk(ld, e, f->sub, elems + i * f->elem_size) < 0)
            return -1;
    }
    return 0;
}

/* tmpl_compile prefixes its reason with where inside the value the error
 * is ("[0].numUsers: unknown expression 'x'"); that becomes part of the
 * key's path, in libconfig's syntax ("args.[0].numUsers: ..."). */
static int fail_template(struct loader *ld, const config_setting_t *s, const char *why)
{
    const char *colon = strstr(why, ": ");
    size_t n = colon ? (size_t)(colon - why) : 0;
    static const char path_chars[] = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
                                     "0123456789_-*.[]";
    bool is_path = n > 0 && strspn(why, path_chars) >= n;
    if (is_path && why[0] != '[') { /* a group member: it must be one */
        char first[128];
        size_t k = strcspn(why, ".[:");
        is_path = k < sizeof(first) && config_setting_type(s) == CONFIG_TYPE_GROUP;
        if (is_path) {
            memcpy(first, why, k);
            first[k] = '\0';
            is_path = config_setting_get_member(s, first) != NULL;
        }
    } else if (is_path) {
        is_path = config_setting_type(s) == CONFIG_TYPE_LIST ||
                  config_setting_type(s) == CONFIG_TYPE_ARRAY;
    }
    if (!is_path)
        return fail_key(ld, s, "%s", why[0] ? why : "invalid template");
    char sub[256];
    struct sbuf b = {sub, sizeof(sub), 0};
    sub[0] = '\0';
    for (size_t i = 0; i < n; i++) {
        if (why[i] == '[' || (i == 0 && why[i] != '.'))
            sb_printf(&b, ".");
        sb_printf(&b, "%c", why[i]);
    }
    return fail_sub(ld, s, sub, "%s", colon + 2);
}

static int p_template(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    char why[256] = "";
    struct tmpl *t = tmpl_compile(s, why, sizeof(why));
    if (!t)
        return fail_template(ld, s, why);
    if (ld_keep_tmpl(ld, t) < 0)
        return -1;
    store_ptr(f, obj, t);
    return 0;
}

/* --- paths -------------------------------------------------------------- */

/* path as written, made absolute against the config file's directory. */
static char *join_dir(const struct loader *ld, const char *path)
{
    if (path[0] == '/')
        return strdup(path);
    size_t n = strlen(ld->dir) + 1 + strlen(path) + 1;
    char *p = malloc(n);
    if (p)
        snprintf(p, n, "%s/%s", ld->dir, path);
    return p;
}

/* An existing directory (static_root, client_bundle), stored resolved. */
static int p_dir(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    const char *v = config_setting_get_string(s);
    if (!*v)
        return fail_key(ld, s, "must not be empty");
    char *joined = join_dir(ld, v);
    if (!joined)
        return oom(ld);
    char *real = realpath(joined, NULL);
    int e = errno;
    free(joined);
    if (!real)
        return fail_key(ld, s, "'%s' must be an existing directory: %s", v, strerror(e));
    struct stat st;
    if (stat(real, &st) < 0 || !S_ISDIR(st.st_mode)) {
        free(real);
        return fail_key(ld, s, "'%s' must be an existing directory: %s", v, strerror(ENOTDIR));
    }
    if (!arena_keep(ld->arena, real))
        return oom(ld);
    store_ptr(f, obj, real);
    return 0;
}

/* A TLS certificate or key: must be readable now, so that a typo fails at
 * load (and at SIGHUP) instead of at the first handshake. */
static int p_tls_file(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    const char *v = config_setting_get_string(s);
    if (!*v)
        return fail_key(ld, s, "must not be empty");
    char *joined = join_dir(ld, v);
    if (!joined)
        return oom(ld);
    int fd = open(joined, O_RDONLY | O_CLOEXEC);
    int e = errno;
    struct stat st;
    if (fd >= 0 && fstat(fd, &st) == 0 && S_ISDIR(st.st_mode))
        e = EISDIR;
    else if (fd >= 0)
        e = 0;
    if (fd >= 0)
        close(fd);
    char *real = e ? NULL : realpath(joined, NULL);
    if (!e && !real)
        e = errno;
    free(joined);
    if (e)
        return fail_key(ld, s, "cannot read '%s': %s", v, strerror(e));
    if (!arena_keep(ld->arena, real))
        return oom(ld);
    store_ptr(f, obj, real);
    return 0;
}

/* --- string checks ------------------------------------------------------ */

static const char *check_nonempty(const char *v)
{
    return *v ? NULL : "must not be empty";
}

/* fnmatch(3) patterns (no flags): a bracket expression must be closed, or
 * fnmatch would quietly take '[' literally. */
static const char *glob_error(const char *v)
{
    if (!*v)
        return "invalid pattern: must not be empty";
    for (const char *p = v; *p; p++) {
        if (*p == '\\') {
            if (!p[1])
                return "invalid pattern: ends with a lone '\\'";
            p++;
            continue;
        }
        if (*p != '[')
            continue;
        const char *q = p + 1;
        if (*q == '!' || *q == '^')
            q++;
        if (*q == ']')
            q++;
        while (*q && *q != ']') {
            if (q[0] == '[' && (q[1] == ':' || q[1] == '.' || q[1] == '=')) {
                char c = q[1];
                const char *r = q + 2;
                while (*r && !(r[0] == c && r[1] == ']'))
                    r++;
                if (!*r)
                    return "invalid pattern: unterminated '[:' class";
                q = r + 2;
                continue;
            }
            if (*q == '\\' && q[1])
                q++;
            q++;
        }
        if (!*q)
            return "invalid pattern: unbalanced '['";
        p = q;
    }
    return NULL;
}

static const char *check_ns_name(const char *v)
{
    if (v[0] != '/')
        return "a namespace must start with '/'";
    if (strchr(v, ','))
        return "a namespace cannot contain ','";
    return NULL;
}

static const char *check_ns_pattern(const char *v)
{
    const char *why = check_ns_name(v);
    return why ? why : glob_error(v);
}

static const char *check_engine_path(const char *v)
{
    if (v[0] != '/')
        return "must start with '/'";
    if (strpbrk(v, "?# \t\r\n"))
        return "must not contain '?', '#' or spaces";
    return NULL;
}

static const char *check_cookie(const char *v)
{
    if (!*v)
        return "must not be empty";
    if (strlen(v) > 64)
        return "must be at most 64 characters";
    for (const char *p = v; *p; p++)
        if ((unsigned char)*p <= ' ' || (unsigned char)*p >= 0x7f || strchr("=;,\"\\", *p))
            return "is not a valid cookie name";
    return NULL;
}

static const char *check_address(const char *v)
{
    unsigned char buf[sizeof(struct in6_addr)];
    if (!strcmp(v, "localhost") || inet_pton(AF_INET, v, buf) == 1 ||
        inet_pton(AF_INET6, v, buf) == 1)
        return NULL;
    return "expected a numeric IPv4 or IPv6 address or \"localhost\"";
}

/* Event names Socket.IO reserves: clients cannot send them and the server
 * cannot emit them. */
static bool reserved_event(const char *v)
{
    return sio_event_name_reserved(v, strlen(v));
}

static const char *check_emit_event(const char *v)
{
    if (!*v)
        return "must not be empty";
    if (strstr(v, "{{"))
        return NULL; /* a template: checked when it is evaluated */
    return reserved_event(v) ? "is a reserved event name" : NULL;
}

static const char *check_on(const char *v)
{
    if (!*v)
        return "must not be empty";
    if (!strcmp(v, "connect") || !strcmp(v, "disconnect"))
        return NULL;
    return reserved_event(v) ? "is a reserved event name" : NULL;
}

static const char *check_data_field(const char *v)
{
    if (!*v)
        return "must not be empty";
    return strchr(v, '.') ? "a data field name cannot contain '.'" : NULL;
}

/* One key of a group whose object is a T, stored in member m. */
#define FIELD(T, k, t, p, m, ...)                                                                  \
    {                                                                                              \
        .key = (k), .types = (t), .parse = (p), .off = offsetof(T, m),                             \
        .size = sizeof(((T *)0)->m), __VA_ARGS__                                                   \
    }
#define UINT_FIELD(k, T, m, lo, hi) FIELD(T, k, T_INT, p_uint, m, .min = (lo), .max = (hi))
#define BOOL_FIELD(k, T, m)         FIELD(T, k, T_BOOL, p_bool, m)
#define ENUM_FIELD(k, T, m, list)   FIELD(T, k, T_STRING, p_enum, m, .names = (list))
#define STRING_FIELD(k, T, m, chk)  FIELD(T, k, T_STRING, p_string, m, .check = (chk))
#define LIST_FIELD(k, T, m, n, sch, ET)                                                            \
    FIELD(T, k, T_LIST, p_list, m, .sub = &(sch), .elem_size = sizeof(ET),                         \
          .count_off = offsetof(T, n))
/* A group of keys stored into the same object as its parent's. */
#define GROUP_FIELD(k, sch)                                                                        \
    {                                                                                              \
        .key = (k), .types = T_GROUP, .parse = p_group, .sub = &(sch)                              \
    }

/* --- listeners -------------------------------------------------------------- */

static int listener_pre(struct loader *ld, config_setting_t *g, void *obj)
{
    struct conf_listener *l = obj;
    l->address = ld_strdup(ld, "0.0.0.0");
    l->port = 3000;
    return l->address ? 0 : -1;
}

static int tls_post(struct loader *ld, config_setting_t *g, void *obj)
{
    struct conf_listener *l = obj;
    if (!l->tls_cert || !l->tls_key)
        return fail_key(ld, g, "missing key '%s'", l->tls_cert ? "key" : "cert");
    return 0;
}

static const struct field tls_fields[] = {
    FIELD(struct conf_listener, "cert", T_STRING, p_tls_file, tls_cert),
    FIELD(struct conf_listener, "key", T_STRING, p_tls_file, tls_key),
};
static const struct schema tls_schema = {tls_fields, ARRAY_LEN(tls_fields), NULL, tls_post, NULL};

#define MAX_MS   ((long long)UINT32_MAX)
#define MAX_SIZE ((long long)((uint64_t)SIZE_MAX > (uint64_t)INT64_MAX ? INT64_MAX : SIZE_MAX))

static const struct field listener_fields[] = {
    STRING_FIELD("address", struct conf_listener, address, check_address),
    UINT_FIELD("port", struct conf_listener, port, 0, 65535),
    GROUP_FIELD("tls", tls_schema),
};
static const struct schema listener_schema = {listener_fields, ARRAY_LEN(listener_fields),
                                              listener_pre, NULL, NULL};

/* --- log, engine, http (their object is the whole struct sockeye_conf) --- */

static const char *const log_levels[] = {"debug", "info", "warn", "error", "off", NULL};

static const struct field log_fields[] = {
    ENUM_FIELD("level", struct sockeye_conf, server.log_level, log_levels),
    BOOL_FIELD("json", struct sockeye_conf, server.log_json),
};
static const struct schema log_schema = {log_fields, ARRAY_LEN(log_fields), NULL, NULL, NULL};

/* The length of a non-empty array of strings, or -1. */
static int array_strings(struct loader *ld, config_setting_t *s, const char *what)
{
    int n = config_setting_length(s);
    if (n == 0)
        return fail_key(ld, s, "must list at least one %s", what);
    for (int i = 0; i < n; i++)
        if (config_setting_type(config_setting_get_elem(s, (unsigned)i)) != CONFIG_TYPE_STRING)
            return fail_key(ld, s, "expected an array of strings");
    return n;
}

static int p_transports(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    struct sockeye_conf *c = obj;
    int n = array_strings(ld, s, "transport");
    if (n < 0)
        return -1;
    c->server.polling = c->server.websocket = false;
    for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *v = config_setting_get_string(e);
        bool *t = !strcmp(v, "polling")     ? &c->server.polling
                  : !strcmp(v, "websocket") ? &c->server.websocket
                                            : NULL;
        if (!t)
            return fail_key(ld, e, "'%s' is not one of polling, websocket", v);
        if (*t)
            return fail_key(ld, e, "'%s' is listed twice", v);
        *t = true;
    }
    return 0;
}

static int p_cors_origins(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    struct sockeye_conf *c = obj;
    int n = array_strings(ld, s, "origin");
    if (n < 0)
        return -1;
    size_t len = 1;
    for (int i = 0; i < n; i++) {
        config_setting_t *e = config_setting_get_elem(s, (unsigned)i);
        const char *v = config_setting_get_string(e);
        if (!*v || strpbrk(v, ", \t\r\n"))
            return fail_key(ld, e, "'%s' is not an origin (scheme://host[:port] or \"*\")", v);
        if (!strcmp(v, "*") && n > 1)
            return fail_key(ld, e, "\"*\" must be the only origin");
        len += strlen(v) + 2;
    }
    /* sio_config takes one string: "*" or "https://a, https://b". */
    char *joined = ld_calloc(ld, 1, len);
    if (!joined)
        return -1;
    for (int i = 0; i < n; i++) {
        if (i)
            strcat(joined, ", ");
        strcat(joined, config_setting_get_string(config_setting_get_elem(s, (unsigned)i)));
    }
    c->server.cors_origin = joined;
    return 0;
}

static int cors_post(struct loader *ld, config_setting_t *g, void *obj)
{
    if (!member(g, "origins"))
        return fail_key(ld, g, "missing key 'origins'");
    return 0;
}

static const struct field cors_fields[] = {
    {.key = "origins", .types = T_ARRAY, .parse = p_cors_origins},
    BOOL_FIELD("credentials", struct sockeye_conf, server.cors_credentials),
};
static const struct schema cors_schema = {cors_fields, ARRAY_LEN(cors_fields), NULL, cors_post,
                                          NULL};

static int output_post(struct loader *ld, config_setting_t *g, void *obj)
{
    const struct sockeye_conf *c = obj;
    if (c->server.output_hard_limit && c->server.output_soft_limit > c->server.output_hard_limit)
        return fail_key(ld, blame(g, "soft_limit", "hard_limit") ?: g,
                        "soft_limit (%zu) must not exceed hard_limit (%zu)",
                        c->server.output_soft_limit, c->server.output_hard_limit);
    return 0;
}

static const struct field output_fields[] = {
    UINT_FIELD("soft_limit", struct sockeye_conf, server.output_soft_limit, 0, MAX_SIZE),
    UINT_FIELD("hard_limit", struct sockeye_conf, server.output_hard_limit, 0, MAX_SIZE),
};
static const struct schema output_schema = {output_fields, ARRAY_LEN(output_fields), NULL,
                                            output_post, NULL};

/* sio_config has no "enabled": recovery is off when the duration is 0. */
static int recovery_pre(struct loader *ld, config_setting_t *g, void *obj)
{
    struct sockeye_conf *c = obj;
    ld->recovery_enabled = false;
    c->server.recovery_max_disconnection_ms = 120000;
    return 0;
}

static int recovery_post(struct loader *ld, config_setting_t *g, void *obj)
{
    struct sockeye_conf *c = obj;
    if (!ld->recovery_enabled)
        c->server.recovery_max_disconnection_ms = 0;
    return 0;
}

static int p_recovery_enabled(struct loader *ld, config_setting_t *s, const struct field *f,
                              void *obj)
{
    ld->recovery_enabled = config_setting_get_bool(s);
    return 0;
}

static const struct field recovery_fields[] = {
    {.key = "enabled", .types = T_BOOL, .parse = p_recovery_enabled},
    UINT_FIELD("max_disconnection", struct sockeye_conf, server.recovery_max_disconnection_ms, 1,
               MAX_MS),
    BOOL_FIELD("skip_middlewares", struct sockeye_conf, server.recovery_skip_middlewares),
};
static const struct schema recovery_schema = {recovery_fields, ARRAY_LEN(recovery_fields),
                                              recovery_pre, recovery_post, NULL};

static const struct field engine_fields[] = {
    STRING_FIELD("path", struct sockeye_conf, server.path, check_engine_path),
    {.key = "transports", .types = T_ARRAY, .parse = p_transports},
    BOOL_FIELD("allow_upgrades", struct sockeye_conf, server.allow_upgrades),
    UINT_FIELD("ping_interval", struct sockeye_conf, server.ping_interval_ms, 1, MAX_MS),
    UINT_FIELD("ping_timeout", struct sockeye_conf, server.ping_timeout_ms, 1, MAX_MS),
    UINT_FIELD("upgrade_timeout", struct sockeye_conf, server.upgrade_timeout_ms, 1, MAX_MS),
    UINT_FIELD("connect_timeout", struct sockeye_conf, server.connect_timeout_ms, 1, MAX_MS),
    UINT_FIELD("max_payload", struct sockeye_conf, server.max_payload, 1, MAX_SIZE),
    /* 0 would mean "the default" to socketio.c: not a value to write */
    UINT_FIELD("max_attachments", struct sockeye_conf, server.max_attachments, 1, MAX_SIZE),
    UINT_FIELD("max_rooms_per_socket", struct sockeye_conf, server.max_rooms_per_socket, 0,
               UINT32_MAX),
    BOOL_FIELD("per_message_deflate", struct sockeye_conf, server.per_message_deflate),
    BOOL_FIELD("http_compression", struct sockeye_conf, server.http_compression),
    STRING_FIELD("cookie", struct sockeye_conf, server.cookie, check_cookie),
    GROUP_FIELD("cors", cors_schema),
    GROUP_FIELD("output", output_schema),
    GROUP_FIELD("recovery", recovery_schema),
};
static const struct schema engine_schema = {engine_fields, ARRAY_LEN(engine_fields), NULL, NULL,
                                            NULL};

static const struct field http_fields[] = {
    FIELD(struct sockeye_conf, "static_root", T_STRING, p_dir, static_root),
    FIELD(struct sockeye_conf, "client_bundle", T_STRING, p_dir, client_bundle),
    UINT_FIELD("max_header_bytes", struct sockeye_conf, server.max_http_header_bytes, 1024,
               64 << 20),
    UINT_FIELD("header_timeout", struct sockeye_conf, server.http_header_timeout_ms, 1, MAX_MS),
    UINT_FIELD("idle_timeout", struct sockeye_conf, server.http_idle_timeout_ms, 1, MAX_MS),
    UINT_FIELD("max_connections", struct sockeye_conf, server.max_connections, 0, MAX_MS),
};
static const struct schema http_schema = {http_fields, ARRAY_LEN(http_fields), NULL, NULL, NULL};

/* --- rooms ------------------------------------------------------------------ */

static const char *const join_policies[] = {"client", "rules", NULL};

static int room_pre(struct loader *ld, config_setting_t *g, void *obj)
{
    struct conf_room *r = obj;
    r->join = JOIN_CLIENT;
    r->presence_event = ld_strdup(ld, "presence");
    return r->presence_event ? 0 : -1;
}

static int room_post(struct loader *ld, config_setting_t *g, void *obj)
{
    struct conf_room *r = obj;
    if (r->name && r->pattern)
        return fail_key(ld, blame(g, "name", "pattern"), "only one of name and pattern may be set");
    if (!r->name && !r->pattern)
        return fail_key(ld, g, "missing key 'name' or 'pattern'");
    return 0;
}

static const struct field room_fields[] = {
    STRING_FIELD("name", struct conf_room, name, check_nonempty),
    STRING_FIELD("pattern", struct conf_room, pattern, glob_error),
    ENUM_FIELD("join", struct conf_room, join, join_policies),
    UINT_FIELD("max_members", struct conf_room, max_members, 0, MAX_MS),
    BOOL_FIELD("presence", struct conf_room, presence),
    STRING_FIELD("presence_event", struct conf_room, presence_event, check_emit_event),
    UINT_FIELD("history", struct conf_room, history, 0, 10000),
};
static const struct schema room_schema = {room_fields, ARRAY_LEN(room_fields), room_pre, room_post,
                                          NULL};

/* --- conditions ------------------------------------------------------------- */

static int p_cond_room(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    struct conf_cond *c = obj;
    c->kind = (enum conf_cond_kind)f->tag;
    return p_template(ld, s, f, obj);
}

static int p_cond_field(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    struct conf_cond *c = obj;
    c->kind = (enum conf_cond_kind)f->tag;
    return p_string(ld, s, f, obj);
}

static int p_cond_n(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    struct conf_cond *c = obj;
    c->kind = (enum conf_cond_kind)f->tag;
    return p_uint(ld, s, f, obj);
}

#define COND(k, p, m, kind, ...)                                                                   \
    FIELD(struct conf_cond, k, T_STRING, p, m, .tag = (kind), __VA_ARGS__)

static const struct field cond_fields[] = {
    COND("in_room", p_cond_room, room, COND_IN_ROOM),
    COND("not_in_room", p_cond_room, room, COND_NOT_IN_ROOM),
    COND("data_set", p_cond_field, field, COND_DATA_SET, .check = check_data_field),
    COND("data_unset", p_cond_field, field, COND_DATA_UNSET, .check = check_data_field),
    FIELD(struct conf_cond, "min_args", T_INT, p_cond_n, n, .min = 0, .max = 65535,
          .tag = COND_MIN_ARGS),
};
static const struct schema cond_schema = {cond_fields, ARRAY_LEN(cond_fields), NULL, NULL, NULL};

/* `if` is a group; each of its keys becomes one condition, in file order. */
static int p_conds(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    struct conf_rule *r = obj;
    size_t n = (size_t)config_setting_length(s);
    r->n_conds = 0;
    if (!n)
        return 0;
    r->conds = ld_calloc(ld, n, sizeof(*r->conds));
    if (!r->conds)
        return -1;
    r->n_conds = n;
    for (size_t i = 0; i < n; i++) {
        config_setting_t *m = config_setting_get_elem(s, (unsigned)i);
        const struct field *cf = member_field(ld, m, &cond_schema);
        if (!cf || cf->parse(ld, m, cf, &r->conds[i]) < 0)
            return -1;
    }
    return 0;
}

/* --- actions ---------------------------------------------------------------- */

static const char *const verb_names[] = {"join", "leave", "emit",       "ack",
                                         "set",  "unset", "disconnect", "drop"};
#define N_VERBS (sizeof(verb_names) / sizeof(verb_names[0]))
#define VERB(k) (1u << (k))

static const char *const targets[] = {"sender", "room", "room_others", "namespace", "others", NULL};

static const struct schema action_schema;

static int action_pre(struct loader *ld, config_setting_t *g, void *obj)
{
    struct conf_action *a = obj;
    a->line = (int)config_setting_source_line(g);
    a->to = TO_SENDER;
    const char *first = NULL;
    for (size_t k = 0; k < N_VERBS; k++) {
        if (!member(g, verb_names[k]))
            continue;
        if (first)
            return fail_key(ld, g,
                            "more than one verb ('%s' and '%s'); each action has exactly one",
                            first, verb_names[k]);
        first = verb_names[k];
        a->kind = (enum conf_action_kind)k;
    }
    if (!first)
        return fail_key(ld, g,
                        "no verb: expected one of join, leave, emit, ack, set, unset, disconnect, "
                        "drop");
    return 0;
}

static int action_allow(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    const struct conf_action *a = obj;
    if (!f->verbs || (f->verbs & VERB(a->kind)))
        return 0;
    char list[64];
    struct sbuf b = {list, sizeof(list), 0};
    list[0] = '\0';
    for (size_t k = 0, n = 0; k < N_VERBS; k++)
        if (f->verbs & VERB(k))
            sb_printf(&b, "%s%s", n++ ? " or " : "", verb_names[k]);
    return fail_key(ld, s, "only allowed with %s", list);
}

static int action_post(struct loader *ld, config_setting_t *g, void *obj)
{
    struct conf_action *a = obj;
    const char *on = ld->rule_on ? ld->rule_on : "";
    bool lifecycle = !strcmp(on, "connect") || !strcmp(on, "disconnect");
    bool gone = !strcmp(on, "disconnect");
    const char *verb = verb_names[a->kind];
    if (a->kind == ACT_EMIT && strstr(a->event, "{{")) {
        char why[256] = "";
        config_setting_t *ev = (config_setting_t *)member(g, "emit");
        a->event_tmpl = tmpl_compile(ev, why, sizeof(why));
        if (!a->event_tmpl)
            return fail_template(ld, ev, why);
        if (ld_keep_tmpl(ld, a->event_tmpl) < 0)
            return -1;
    }
    if (a->kind == ACT_EMIT) {
        bool room_target = a->to == TO_ROOM || a->to == TO_ROOM_OTHERS;
        if (room_target && !member(g, "room"))
            return fail_key(ld, g, "to = \"%s\" requires room", targets[a->to]);
        if (!room_target && member(g, "room"))
            return fail_key(ld, member(g, "room"),
                            "only allowed with to = \"room\" or "
                            "\"room_others\"");
        if (member(g, "ack_timeout") && a->to != TO_SENDER)
            return fail_key(ld, member(g, "ack_timeout"), "only allowed with to = \"sender\"");
        if (!member(g, "ack_timeout") && (member(g, "then") || member(g, "timeout")))
            return fail_key(ld, member(g, "then") ? member(g, "then") : member(g, "timeout"),
                            "only allowed with ack_timeout");
        if (gone && (a->to == TO_SENDER || a->ack_timeout))
            return fail_key(ld, g, "cannot emit to the sender in a \"disconnect\" rule");
    }
    if (a->kind == ACT_SET && !member(g, "value"))
        return fail_key(ld, g, "set requires value");
    if (a->kind == ACT_ACK && lifecycle)
        return fail_key(ld, member(g, verb), "there is no ack to answer in a \"%s\" rule", on);
    /* then/timeout run when the client answered us: the event's own ack
     * was due when the rule ran */
    const char *list = config_setting_name(config_setting_parent(g));
    if (a->kind == ACT_ACK && list && (!strcmp(list, "then") || !strcmp(list, "timeout")))
        return fail_key(ld, member(g, verb), "there is no ack to answer in %s actions", list);
    if (gone && (a->kind == ACT_JOIN || a->kind == ACT_LEAVE || a->kind == ACT_DISCONNECT))
        return fail_key(ld, member(g, verb), "not possible in a \"disconnect\" rule");
    return 0;
}

/* disconnect = true / drop = true: the value is only there for the syntax. */
static int p_verb_true(struct loader *ld, config_setting_t *s, const struct field *f, void *obj)
{
    if (!config_setting_get_bool(s))
        return fail_key(ld, s, "must be true (leave the action out instead)");
    return 0;
}

/* An action key, allowed only with the verbs v. */
#define ACTION(k, t, p, m, v, ...) FIELD(struct conf_action, k, t, p, m, .verbs = (v), __VA_ARGS__)
#define T_ARGS                     (T_LIST | T_ARRAY | T_STRING)
#define ACTIONS(n)                                                                                 \
    .sub = &action_schema, .elem_size = sizeof(struct conf_action),                                \
    .count_off = offsetof(struct conf_action, n)

static const struct field action_fields[] = {
    ACTION("join", T_STRING, p_template, room, VERB(ACT_JOIN)),
    ACTION("leave", T_STRING, p_template, room, VERB(ACT_LEAVE)),
    ACTION("emit", T_STRING, p_string, event, VERB(ACT_EMIT), .check = check_emit_event),
    ACTION("ack", T_ARGS, p_template, args, VERB(ACT_ACK)),
    ACTION("set", T_STRING, p_string, field, VERB(ACT_SET), .check = check_data_field),
    ACTION("unset", T_STRING, p_string, field, VERB(ACT_UNSET), .check = check_data_field),
    ACTION("disconnect", T_BOOL, p_verb_true, kind, VERB(ACT_DISCONNECT)),
    ACTION("drop", T_BOOL, p_verb_true, kind, VERB(ACT_DROP)),
    ACTION("to", T_STRING, p_enum, to, VERB(ACT_EMIT), .names = targets),
    ACTION("room", T_STRING, p_template, room, VERB(ACT_EMIT)),
    ACTION("args", T_ARGS, p_template, args, VERB(ACT_EMIT)),
    ACTION("volatile", T_BOOL, p_bool, is_volatile, VERB(ACT_EMIT)),
    ACTION("ack_timeout", T_INT, p_uint, ack_timeout, VERB(ACT_EMIT), .min = 1, .max = MAX_MS),
    ACTION("then", T_LIST, p_list, then, VERB(ACT_EMIT), ACTIONS(n_then)),
    ACTION("timeout", T_LIST, p_list, on_timeout, VERB(ACT_EMIT), ACTIONS(n_on_timeout)),
    ACTION("value", T_ANY, p_template, value, VERB(ACT_SET)),
};
static const struct schema action_schema = {action_fields, ARRAY_LEN(action_fields), action_pre,
                                            action_post, action_allow};

/* --- rules ------------------------------------------------------------------ */

static int rule_pre(struct loader *ld, config_setting_t *g, void *obj)
{
    struct conf_rule *r = obj;
    r->line = (int)config_setting_source_line(g);
    const config_setting_t *on = member(g, "on");
    if (!on)
        return fail_key(ld, g, "missing key 'on'");
    /* Actions are checked against the rule's event (no ack on "connect"),
     * which may come after them in the group. A wrong type is reported by
     * the walk. */
    ld->rule_on =
        config_setting_type(on) == CONFIG_TYPE_STRING ? config_setting_get_string(on) : NULL;
    return 0;
}

static int rule_post(struct loader *ld, config_setting_t *g, void *obj)
{
    ld->rule_on = NULL;
    if (!member(g, "actions"))
        return fail_key(ld, g, "missing key 'actions'");
    return 0;
}

static const struct field rule_fields[] = {
    STRING_FIELD("on", struct conf_rule, on, check_on),
    {.key = "if", .types = T_GROUP, .parse = p_conds, .sub = &cond_schema},
    LIST_FIELD("actions", struct conf_rule, actions, n_actions, action_schema, struct conf_action),
};
static const struct schema rule_schema = {rule_fields, ARRAY_LEN(rule_fields), rule_pre, rule_post,
                                          NULL};

/* --- namespaces ------------------------------------------------------------- */

static const char *const unmatched_policies[] = {"drop", "disconnect", NULL};

static int namespace_pre(struct loader *ld, config_setting_t *g, void *obj)
{
    struct conf_namespace *ns = obj;
    ns->cleanup = true;
    ns->other_rooms = JOIN_CLIENT;
    return 0;
}

static int namespace_post(struct loader *ld, config_setting_t *g, void *obj)
{
    struct conf_namespace *ns = obj;
    if (ns->name && ns->pattern)
        return fail_key(ld, blame(g, "name", "pattern"), "only one of name and pattern may be set");
    if (member(g, "cleanup") && !ns->pattern)
        return fail_key(ld, member(g, "cleanup"), "only allowed with pattern");
    if (!ns->name && !ns->pattern && !(ns->name = ld_strdup(ld, "/")))
        return -1;
    const config_setting_t *rooms = member(g, "rooms");
    for (size_t i = 0; i < ns->n_rooms; i++) {
        for (size_t j = 0; j < i; j++) {
            const struct conf_room *a = &ns->rooms[j], *b = &ns->rooms[i];
            if ((a->name && b->name && !strcmp(a->name, b->name)) ||
                (a->pattern && b->pattern && !strcmp(a->pattern, b->pattern)))
                return fail_key(ld, config_setting_get_elem(rooms, (unsigned)i),
                                "room '%s' is already configured (rooms.[%zu])",
                                b->name ? b->name : b->pattern, j);
        }
    }
    return 0;
}

static const struct field namespace_fields[] = {
    STRING_FIELD("name", struct conf_namespace, name, check_ns_name),
    STRING_FIELD("pattern", struct conf_namespace, pattern, check_ns_pattern),
    BOOL_FIELD("cleanup", struct conf_namespace, cleanup),
    ENUM_FIELD("unmatched", struct conf_namespace, unmatched_disconnect, unmatched_policies),
    ENUM_FIELD("other_rooms", struct conf_namespace, other_rooms, join_policies),
    LIST_FIELD("rooms", struct conf_namespace, rooms, n_rooms, room_schema, struct conf_room),
    LIST_FIELD("rules", struct conf_namespace, rules, n_rules, rule_schema, struct conf_rule),
};
static const struct schema namespace_schema = {namespace_fields, ARRAY_LEN(namespace_fields),
                                               namespace_pre, namespace_post, NULL};

/* --- top level ---------------------------------------------------------------- */

static int top_post(struct loader *ld, config_setting_t *g, void *obj)
{
    struct sockeye_conf *c = obj;
    const config_setting_t *ls = member(g, "listeners");
    if (ls && c->n_listeners == 0)
        return fail_key(ld, ls, "must list at least one listener");
    if (!ls) {
        c->listeners = ld_calloc(ld, 1, sizeof(*c->listeners));
        if (!c->listeners || listener_pre(ld, NULL, c->listeners) < 0)
            return -1;
        c->n_listeners = 1;
    }
    for (size_t i = 0; i < c->n_listeners; i++) {
        for (size_t j = 0; j < i; j++) {
            const struct conf_listener *a = &c->listeners[j], *b = &c->listeners[i];
            if (b->port && a->port == b->port && !strcmp(a->address, b->address))
                return fail_key(ld, config_setting_get_elem(ls, (unsigned)i),
                                "%s port %u is already used by listeners.[%zu]", b->address,
                                (unsigned)b->port, j);
        }
    }
    const config_setting_t *nss = member(g, "namespaces");
    for (size_t i = 0; i < c->n_namespaces; i++) {
        for (size_t j = 0; j < i; j++) {
            const struct conf_namespace *a = &c->namespaces[j], *b = &c->namespaces[i];
            if ((a->name && b->name && !strcmp(a->name, b->name)) ||
                (a->pattern && b->pattern && !strcmp(a->pattern, b->pattern)))
                return fail_key(ld, config_setting_get_elem(nss, (unsigned)i),
                                "namespace '%s' is already configured (namespaces.[%zu])",
                                b->name ? b->name : b->pattern, j);
        }
    }
    return 0;
}

static const struct field top_fields[] = {
    LIST_FIELD("listeners", struct sockeye_conf, listeners, n_listeners, listener_schema,
               struct conf_listener),
    GROUP_FIELD("log", log_schema),
    UINT_FIELD("shutdown_grace", struct sockeye_conf, shutdown_grace, 0, MAX_MS),
    GROUP_FIELD("engine", engine_schema),
    GROUP_FIELD("http", http_schema),
    LIST_FIELD("namespaces", struct sockeye_conf, namespaces, n_namespaces, namespace_schema,
               struct conf_namespace),
};
static const struct schema top_schema = {top_fields, ARRAY_LEN(top_fields), NULL, top_post, NULL};

/* --- --set overrides ---------------------------------------------------------
 * The override path is walked in the schema and in the libconfig tree side
 * by side: the schema says what each step must be (group member, list
 * element) and, for a missing leaf, which type to create. */

enum step_kind { ST_GROUP, ST_LIST, ST_ARRAY, ST_SCALAR, ST_OPAQUE };

static int set_convert(struct loader *ld, const char *text, config_setting_t *parent,
                       config_setting_t *s, const char *name, int type, const char *value);

/* The libconfig type a new or retyped setting gets. 0: keep the setting's
 * own (template values, array elements). */
static int schema_type(const struct field *f, enum step_kind k)
{
    if (k != ST_SCALAR || !f)
        return 0;
    if (f->types == T_INT)
        return CONFIG_TYPE_INT;
    if (f->types == T_BOOL)
        return CONFIG_TYPE_BOOL;
    if (f->types == T_STRING)
        return CONFIG_TYPE_STRING;
    return 0;
}

static int apply_override(struct loader *ld, config_t *cfg, const char *text)
{
    const char *eq = strchr(text, '=');
    if (!eq || eq == text)
        return fail_set(ld, text, "expected PATH=VALUE");
    const char *value = eq + 1;
    config_setting_t *cur = config_root_setting(cfg), *parent = NULL;
    const struct schema *sc = &top_schema;
    const struct field *f = NULL;
    enum step_kind kind = ST_GROUP;
    char prefix[256] = "";
    struct sbuf pb = {prefix, sizeof(prefix), 0};
    const char *leaf_name = NULL;
    char name[128];
    const char *p = text;
    while (p < eq) {
        /* one step: "name" or "[N]", separated by '.' */
        bool is_index = *p == '[';
        long idx = -1;
        size_t len;
        if (is_index) {
            char *end;
            errno = 0;
            idx = strtol(p + 1, &end, 10);
            if (end == p + 1 || *end != ']' || idx < 0 || errno)
                return fail_set(ld, text, "bad path: expected [N] after '%s'", prefix);
            len = (size_t)(end + 1 - p);
        } else {
            len = strcspn(p, ".[=");
            if (len == 0 || len >= sizeof(name))
                return fail_set(ld, text, "bad path");
        }
        const char *next = p + len;
        if (*next == '.')
            next++;
        bool last = next >= eq;
        const char *here = prefix[0] ? prefix : "the top level";

        config_setting_t *child = NULL;
        if (!is_index) {
            memcpy(name, p, len);
            name[len] = '\0';
        }
        switch (kind) {
        case ST_GROUP:
            if (is_index)
                return fail_set(ld, text, "%s is a group, not a list", here);
            f = find_field(sc, name);
            if (!f) {
                if (prefix[0])
                    return fail_set(ld, text, "unknown key '%s' in %s", name, prefix);
                return fail_set(ld, text, "unknown key '%s' at top level", name);
            }
            if (f->sub && (f->types & T_LIST)) {
                kind = ST_LIST;
                sc = f->sub;
            } else if (f->sub) {
                kind = ST_GROUP;
                sc = f->sub;
            } else if (f->types == T_ARRAY) {
                kind = ST_ARRAY;
            } else if (f->parse == p_template) {
                kind = ST_OPAQUE;
            } else {
                kind = ST_SCALAR;
            }
            child = config_setting_get_member(cur, name);
            break;
        case ST_LIST:
        case ST_ARRAY:
            if (!is_index)
                return fail_set(ld, text, "%s is a list: address its elements as %s.[N]", here,
                                here);
            child = config_setting_get_elem(cur, (unsigned)idx);
            if (!child)
                return fail_set(ld, text, "%s.[%ld] does not exist", prefix, idx);
            kind = kind == ST_LIST ? ST_GROUP : ST_SCALAR;
            if (kind == ST_SCALAR)
                f = NULL; /* an array element: keeps its type */
            break;
        case ST_OPAQUE:
            child = is_index ? config_setting_get_elem(cur, (unsigned)idx)
                             : config_setting_get_member(cur, name);
            if (!child)
                return fail_set(ld, text, "%s.%.*s does not exist", prefix, (int)len, p);
            break;
        case ST_SCALAR:
            return fail_set(ld, text, "%s is not a group", here);
        }
        sb_printf(&pb, "%s%.*s", prefix[0] ? "." : "", (int)len, p);
        if (!child) {
            /* missing group member: create the groups along the path and
             * the leaf with the type the schema gives it */
            if (config_setting_type(cur) != CONFIG_TYPE_GROUP)
                return fail_set(ld, text, "%s is not a group", here);
            if (kind == ST_LIST || kind == ST_ARRAY)
                return fail_set(ld, text, "%s is a list; only scalar settings can be overridden",
                                prefix);
            if (kind == ST_OPAQUE && !last)
                return fail_set(ld, text, "%s does not exist", prefix);
            if (kind == ST_GROUP) {
                child = config_setting_add(cur, name, CONFIG_TYPE_GROUP);
                if (!child)
                    return fail_set(ld, text, "cannot create %s", prefix);
                config_setting_set_hook(child, (void *)text);
            } else {
                int type = kind == ST_OPAQUE ? CONFIG_TYPE_STRING : schema_type(f, kind);
                if (!last)
                    return fail_set(ld, text, "%s is not a group", prefix);
                return set_convert(ld, text, cur, NULL, name, type, value);
            }
        }
        parent = cur;
        cur = child;
        leaf_name = is_index ? NULL : config_setting_name(cur);
        p = next;
    }
    if (cur == config_root_setting(cfg))
        return fail_set(ld, text, "bad path");
    switch (config_setting_type(cur)) {
    case CONFIG_TYPE_GROUP:
        return fail_set(ld, text, "%s is a group; only scalar settings can be overridden", prefix);
    case CONFIG_TYPE_LIST:
    case CONFIG_TYPE_ARRAY:
        return fail_set(ld, text, "%s is a list; only scalar settings can be overridden", prefix);
    default:
        break;
    }
    if (kind == ST_GROUP || kind == ST_LIST || kind == ST_ARRAY)
        return fail_set(ld, text, "%s is a %s; only scalar settings can be overridden", prefix,
                        kind == ST_GROUP ? "group" : "list");
    int type = schema_type(f, kind);
    return set_convert(ld, text, parent, cur, leaf_name, type ? type : config_setting_type(cur),
                       value);
}

/* Sets (or creates, when s is NULL) the setting to value converted to
 * type. A setting whose type changes is replaced, which only group members
 * can be. */
static int set_convert(struct loader *ld, const char *text, config_setting_t *parent,
                       config_setting_t *s, const char *name, int type, const char *value)
{
    long long iv = 0;
    double fv = 0;
    bool bv = false;
    char *end;
    switch (type) {
    case CONFIG_TYPE_INT:
    case CONFIG_TYPE_INT64: {
        const char *v = value;
        bool hex = (v[0] == '0' && (v[1] == 'x' || v[1] == 'X'));
        errno = 0;
        iv = strtoll(v, &end, hex ? 16 : 10);
        if (!*v || *end || errno || isspace((unsigned char)*v))
            return fail_set(ld, text, "expected an integer");
        if (iv > INT32_MAX || iv < INT32_MIN || type == CONFIG_TYPE_INT64)
            type = CONFIG_TYPE_INT64;
        break;
    }
    case CONFIG_TYPE_FLOAT:
        errno = 0;
        fv = strtod(value, &end);
        if (!*value || *end || errno)
            return fail_set(ld, text, "expected a number");
        break;
    case CONFIG_TYPE_BOOL:
        if (!strcasecmp(value, "true"))
            bv = true;
        else if (!strcasecmp(value, "false"))
            bv = false;
        else
            return fail_set(ld, text, "expected a boolean (true or false)");
        break;
    case CONFIG_TYPE_STRING:
        break;
    default:
        return fail_set(ld, text, "only scalar settings can be overridden");
    }
    char copy[128]; /* removing s frees its name */
    if (s && config_setting_type(s) != type) {
        if (!name || config_setting_type(parent) != CONFIG_TYPE_GROUP ||
            strlen(name) >= sizeof(copy))
            return fail_set(ld, text, "expected a value of the element's type");
        name = strcpy(copy, name);
        if (!config_setting_remove(parent, name))
            return fail_set(ld, text, "cannot replace the setting");
        s = NULL;
    }
    if (!s && !(s = config_setting_add(parent, name, type)))
        return fail_set(ld, text, "cannot create the setting");
    config_setting_set_hook(s, (void *)text);
    int ok;
    switch (type) {
    case CONFIG_TYPE_INT:
        ok = config_setting_set_int(s, (int)iv);
        break;
    case CONFIG_TYPE_INT64:
        ok = config_setting_set_int64(s, iv);
        break;
    case CONFIG_TYPE_FLOAT:
        ok = config_setting_set_float(s, fv);
        break;
    case CONFIG_TYPE_BOOL:
        ok = config_setting_set_bool(s, bv);
        break;
    default:
        ok = config_setting_set_string(s, value);
        break;
    }
    return ok ? 0 : oom(ld);
}

/* --- load / free ------------------------------------------------------------ */

static char *dir_of(const char *file)
{
    const char *slash = strrchr(file, '/');
    if (!slash)
        return strdup(".");
    if (slash == file)
        return strdup("/");
    return strndup(file, (size_t)(slash - file));
}

int conf_load(const char *file, const char *const *overrides, size_t n_overrides,
              struct sockeye_conf **out, char *err, size_t errlen)
{
    *out = NULL;
    if (errlen)
        err[0] = '\0';
    struct sockeye_conf *c = calloc(1, sizeof(*c));
    struct arena *a = calloc(1, sizeof(*a));
    struct loader ld = {.arena = a, .file = file, .err = err, .errlen = errlen};
    if (!c || !a) {
        free(c);
        free(a);
        snprintf(err, errlen, "%s: out of memory", file);
        return -1;
    }
    c->priv = a;
    config_t cfg;
    config_init(&cfg);
    ld.dir = dir_of(file);
    if (!ld.dir || !(c->file = ld_strdup(&ld, file))) {
        oom(&ld);
        goto out;
    }
    sio_config_init(&c->server);
    c->shutdown_grace = 10000;
    if (!(c->server.path = ld_strdup(&ld, c->server.path)))
        goto out;

    /* libconfig reports a missing file as a bare "file I/O error". */
    FILE *fp = fopen(file, "r");
    if (!fp) {
        fail_at(&ld, NULL, "cannot read: %s", strerror(errno));
        goto out;
    }
    fclose(fp);
    config_set_include_dir(&cfg, ld.dir);
    if (!config_read_file(&cfg, file)) {
        const char *ef = config_error_file(&cfg) ? config_error_file(&cfg) : file;
        ld.failed = true;
        if (config_error_line(&cfg) > 0)
            snprintf(err, errlen, "%s:%d: %s", ef, config_error_line(&cfg),
                     config_error_text(&cfg));
        else
            snprintf(err, errlen, "%s: %s", ef, config_error_text(&cfg));
        goto out;
    }
    for (size_t i = 0; i < n_overrides; i++)
        if (apply_override(&ld, &cfg, overrides[i]) < 0)
            goto out;
    walk(&ld, config_root_setting(&cfg), &top_schema, c);

out:
    config_destroy(&cfg);
    free(ld.dir);
    for (size_t i = 0; i < ld.nsrcs; i++) {
        free(ld.srcs[i].name);
        free(ld.srcs[i].text);
    }
    free(ld.srcs);
    if (ld.failed) {
        conf_free(c);
        return -1;
    }
    *out = c;
    return 0;
}

void conf_free(struct sockeye_conf *c)
{
    if (!c)
        return;
    arena_free(c->priv);
    free(c);
}

const struct conf_room *conf_room_for(const struct conf_namespace *ns, const char *room)
{
    for (size_t i = 0; i < ns->n_rooms; i++)
        if (ns->rooms[i].name && !strcmp(ns->rooms[i].name, room))
            return &ns->rooms[i];
    for (size_t i = 0; i < ns->n_rooms; i++)
        if (ns->rooms[i].pattern && fnmatch(ns->rooms[i].pattern, room, 0) == 0)
            return &ns->rooms[i];
    return NULL;
}
