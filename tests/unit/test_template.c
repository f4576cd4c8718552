/* Unit tests for src/template: compiling JSON templates from strings and
 * libconfig settings, and evaluating them, also against a real socket of an
 * in-process server reached by a polling client on 127.0.0.1. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <cmocka.h>

#include <event2/buffer.h>
#include <event2/event.h>
#include <event2/http.h>

#include "sockeye.h"
#include "template.h"

#define ARRAY_LEN(a) (sizeof(a) / sizeof((a)[0]))

/* ---- helpers ---- */

static cJSON *parse(const char *text)
{
    cJSON *j = cJSON_Parse(text);
    assert_non_null(j);
    return j;
}

static struct tmpl *compile(const char *text)
{
    char err[256] = "";
    struct tmpl *t = tmpl_compile_string(text, err, sizeof(err));
    if (!t)
        fail_msg("'%s' did not compile: %s", text, err);
    return t;
}

static void assert_json(const cJSON *j, const char *expected)
{
    assert_non_null(j);
    char *s = cJSON_PrintUnformatted(j);
    assert_non_null(s);
    if (strcmp(s, expected) != 0)
        fail_msg("got %s, want %s", s, expected);
    cJSON_free(s);
}

/* Compiles text, evaluates it in ctx and compares the compact JSON. */
static void check_eval(const char *text, const struct tmpl_ctx *ctx, const char *expected)
{
    struct tmpl *t = compile(text);
    cJSON *j = tmpl_eval(t, ctx);
    assert_json(j, expected);
    cJSON_Delete(j);
    tmpl_free(t);
}

static void check_string(const char *text, const struct tmpl_ctx *ctx, const char *expected)
{
    struct tmpl *t = compile(text);
    char *s = tmpl_eval_string(t, ctx);
    assert_non_null(s);
    if (strcmp(s, expected) != 0)
        fail_msg("'%s' gave '%s', want '%s'", text, s, expected);
    free(s);
    tmpl_free(t);
}

/* ---- whole-value expressions ---- */

static void test_whole_value_kinds(void **state)
{
    cJSON *args = parse("[\"room1\",{\"user\":{\"name\":\"Ann\",\"tags\":[\"a\",\"b\"]},"
                        "\"n\":1.5,\"ok\":true,\"nil\":null},[10,20]]");
    struct tmpl_ctx ctx = {.event = "message", .args = args};
    check_eval("{{args}}", &ctx,
               "[\"room1\",{\"user\":{\"name\":\"Ann\",\"tags\":[\"a\",\"b\"]},"
               "\"n\":1.5,\"ok\":true,\"nil\":null},[10,20]]");
    check_eval("{{args.0}}", &ctx, "\"room1\"");
    check_eval("{{args.1.user}}", &ctx, "{\"name\":\"Ann\",\"tags\":[\"a\",\"b\"]}");
    check_eval("{{args.1.user.name}}", &ctx, "\"Ann\"");
    check_eval("{{args.1.user.tags.1}}", &ctx, "\"b\"");
    check_eval("{{args.1.n}}", &ctx, "1.5");
    check_eval("{{args.1.ok}}", &ctx, "true");
    check_eval("{{args.1.nil}}", &ctx, "null");
    check_eval("{{args.2.0}}", &ctx, "10");
    check_eval("{{ args . 2 . 1 }}", &ctx, "20"); /* whitespace is ignored */
    check_eval("{{event}}", &ctx, "\"message\"");
    /* missing paths: no value, JSON null as a whole value */
    check_eval("{{args.7}}", &ctx, "null");
    check_eval("{{args.1.user.age}}", &ctx, "null");
    check_eval("{{args.1.user.tags.9}}", &ctx, "null");
    check_eval("{{args.0.x}}", &ctx, "null"); /* a string has no keys */
    check_eval("{{args.1.user.name.0}}", &ctx, "null");
    check_eval("{{ack}}", &ctx, "null");
    /* no socket: socket expressions have no value */
    check_eval("{{auth}}", &ctx, "null");
    check_eval("{{data.x}}", &ctx, "null");
    check_eval("{{id}}", &ctx, "null");
    check_eval("{{nsp}}", &ctx, "null");
    check_eval("{{nsp_size}}", &ctx, "null");
    check_eval("{{room_size('x')}}", &ctx, "null");
    check_eval("{{query.a}}", &ctx, "null");
    check_eval("{{header.host}}", &ctx, "null");
    check_eval("{{address}}", &ctx, "null");

    /* a value copied out of an object does not keep its key */
    struct tmpl *t = compile("{{args.1.user}}");
    cJSON *j = tmpl_eval(t, &ctx);
    assert_non_null(j);
    assert_null(j->string);
    cJSON_Delete(j);
    tmpl_free(t);

    /* NULL context and NULL fields */
    struct tmpl_ctx empty = {0};
    check_eval("{{args}}", &empty, "null");
    check_eval("{{event}}", &empty, "null");
    t = compile("{{args.0}}");
    j = tmpl_eval(t, NULL);
    assert_json(j, "null");
    cJSON_Delete(j);
    tmpl_free(t);
    cJSON_Delete(args);
}

static void test_object_keys_and_indexes(void **state)
{
    /* numbers index arrays but are plain keys in objects; keys may hold any
     * character except '.', '}' and whitespace */
    cJSON *args = parse("[{\"0\":\"zero\",\"a-b:c\":{\"x'y\":1},\"{k\":2,\"\":3}]");
    struct tmpl_ctx ctx = {.args = args};
    check_eval("{{args.0.0}}", &ctx, "\"zero\"");
    check_eval("{{args.0.a-b:c.x'y}}", &ctx, "1");
    check_eval("{{args.0.{k}}", &ctx, "2");
    check_eval("{{args.00}}", &ctx, "{\"0\":\"zero\",\"a-b:c\":{\"x'y\":1},\"{k\":2,\"\":3}");
    check_eval("{{args.9999999999}}", &ctx, "null"); /* too many digits: never an index */
    cJSON_Delete(args);
}

static void test_ack_values(void **state)
{
    cJSON *args = parse("[1]");
    cJSON *ack = parse("[\"yes\",{\"n\":2}]");
    struct tmpl_ctx ctx = {.args = args, .ack = ack};
    check_eval("{{ack}}", &ctx, "[\"yes\",{\"n\":2}]");
    check_eval("{{ack.0}}", &ctx, "\"yes\"");
    check_eval("{{ack.1.n}}", &ctx, "2");
    check_string("{{ack.0}} after {{args.0}}", &ctx, "yes after 1");
    cJSON_Delete(ack);
    cJSON_Delete(args);
}

/* ---- interpolation ---- */

static void test_interpolation(void **state)
{
    cJSON *args = parse("[\"Ann\",42,2.5,true,null,{\"a\":[1,\"x\\\"y\"]},[1,2],\"\",-0.0,1e300,"
                        "0.1,123456789012345678]");
    struct tmpl_ctx ctx = {.event = "hello", .args = args};
    check_eval("hi {{args.0}}!", &ctx, "\"hi Ann!\"");
    check_eval("{{args.0}} is {{args.1}}", &ctx, "\"Ann is 42\"");
    check_eval("{{args.2}}/{{args.3}}/{{args.4}}", &ctx, "\"2.5/true/null\"");
    check_eval("o={{args.5}}", &ctx, "\"o={\\\"a\\\":[1,\\\"x\\\\\\\"y\\\"]}\"");
    check_string("o={{args.5}} a={{args.6}}", &ctx, "o={\"a\":[1,\"x\\\"y\"]} a=[1,2]");
    check_string("[{{args.7}}]", &ctx, "[]");
    check_string("[{{args.99}}][{{args.0.x}}]", &ctx, "[][]"); /* missing: "" */
    check_string("{{event}}:{{args.0}}", &ctx, "hello:Ann");
    check_string("{{args.0}}{{args.1}}", &ctx, "Ann42"); /* two expressions: a string */
    check_eval("{{args.0}}{{args.1}}", &ctx, "\"Ann42\"");
    check_eval("{{args.1}} ", &ctx, "\"42 \"");

    /* numbers read as JSON.stringify writes them */
    check_string("{{args.8}}", &ctx, "0");
    check_string("{{args.9}}", &ctx, "1e+300");
    check_string("{{args.10}}", &ctx, "0.1");
    check_string("{{args.11}}", &ctx, "123456789012345680");

    /* escapes: \{{ is a literal "{{"; other backslashes and braces stay */
    check_eval("\\{{args.0}}", &ctx, "\"{{args.0}}\"");
    check_eval("a \\{{ b }} {{args.0}}", &ctx, "\"a {{ b }} Ann\"");
    check_eval("back\\slash } { }}", &ctx, "\"back\\\\slash } { }}\"");
    check_eval("{x}", &ctx, "\"{x}\"");
    check_eval("", &ctx, "\"\"");
    check_eval("\\{{", &ctx, "\"{{\"");
    check_eval("{ {{args.1}} }", &ctx, "\"{ 42 }\"");

    /* binary values: whole values keep them; text shows [binary] */
    cJSON *bargs = cJSON_CreateArray();
    cJSON_AddItemToArray(bargs, sio_binary("\x01\x02\x03", 3));
    cJSON *obj = cJSON_CreateObject();
    cJSON_AddItemToObject(obj, "b", sio_binary("\xff", 1));
    cJSON_AddNumberToObject(obj, "n", 1);
    cJSON_AddItemToArray(bargs, obj);
    struct tmpl_ctx bctx = {.args = bargs};
    struct tmpl *t = compile("{{args.0}}");
    cJSON *j = tmpl_eval(t, &bctx);
    assert_true(sio_is_binary(j));
    size_t len;
    const uint8_t *bytes = sio_binary_data(j, &len);
    assert_int_equal(len, 3);
    assert_memory_equal(bytes, "\x01\x02\x03", 3);
    assert_ptr_not_equal(j, cJSON_GetArrayItem(bargs, 0));
    cJSON_Delete(j);
    tmpl_free(t);
    t = compile("{{args}}");
    j = tmpl_eval(t, &bctx);
    assert_true(sio_is_binary(cJSON_GetArrayItem(j, 0)));
    assert_true(sio_is_binary(cJSON_GetObjectItem(cJSON_GetArrayItem(j, 1), "b")));
    cJSON_Delete(j);
    tmpl_free(t);
    check_string("x{{args.0}}", &bctx, "x[binary]");
    check_string("{{args.0}}", &bctx, "[binary]");
    check_string("{{args.1}}", &bctx, "{\"b\":\"[binary]\",\"n\":1}");
    check_string("{{args}}", &bctx, "[\"[binary]\",{\"b\":\"[binary]\",\"n\":1}]");
    /* the source tree is untouched */
    assert_true(sio_is_binary(cJSON_GetObjectItem(obj, "b")));
    cJSON_Delete(bargs);

    /* long results leave the inline buffer */
    char big[2000];
    memset(big, 'z', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    cJSON *largs = cJSON_CreateArray();
    cJSON_AddItemToArray(largs, cJSON_CreateString(big));
    struct tmpl_ctx lctx = {.args = largs};
    t = compile("<{{args.0}}|{{args.0}}>");
    char *s = tmpl_eval_string(t, &lctx);
    assert_non_null(s);
    assert_int_equal(strlen(s), 2 * strlen(big) + 3);
    assert_int_equal(s[0], '<');
    assert_int_equal(s[strlen(big) + 1], '|');
    free(s);
    tmpl_free(t);
    cJSON_Delete(largs);
    cJSON_Delete(args);
}

static void test_eval_string_of_values(void **state)
{
    cJSON *args = parse("[\"r\",{\"a\":1},7]");
    struct tmpl_ctx ctx = {.args = args};
    check_string("{{args.0}}", &ctx, "r");
    check_string("{{args.1}}", &ctx, "{\"a\":1}");
    check_string("{{args.2}}", &ctx, "7");
    check_string("{{args.5}}", &ctx, "");
    check_string("plain", &ctx, "plain");
    cJSON_Delete(args);
}

/* ---- libconfig settings ---- */

static const char conf_text[] =
    "plain = \"hello\";\n"
    "whole = \"{{args.0}}\";\n"
    "num = 42;\n"
    "big = 5000000000L;\n"
    "flt = 2.5;\n"
    "yes = true;\n"
    "no = false;\n"
    "esc = \"\\\\{{args.0}}\";\n"
    "obj = { username = \"{{data.username}}\"; numUsers = \"{{room_size('users')}}\";\n"
    "        who = \"user {{args.0}}\"; n = 1; nested = { list = ( \"{{args.1}}\", 2, [1, 2] ); }; "
    "};\n"
    "lst = ( \"{{args.0}}\", { x = \"{{args.1.x}}\"; }, ( true, \"c\" ), [ \"a\", \"b\" ] );\n"
    "arr = [ 1, 2, 3 ];\n"
    "empty_list = ( );\n"
    "empty_group = { };\n"
    "bad = { ok = \"{{args}}\"; inner = ( 1, { deep = \"{{nope}}\"; } ); };\n"
    "bad2 = \"{{args\";\n";

static int conf_setup(void **state)
{
    config_t *conf = malloc(sizeof(*conf));
    if (!conf)
        return -1;
    config_init(conf);
    *state = conf;
    if (config_read_string(conf, conf_text) != CONFIG_TRUE) {
        fprintf(stderr, "config line %d: %s\n", config_error_line(conf), config_error_text(conf));
        return -1;
    }
    return 0;
}

static int conf_teardown(void **state)
{
    config_destroy(*state);
    free(*state);
    return 0;
}

static struct tmpl *compile_conf(const config_t *conf, const char *path)
{
    const config_setting_t *s = config_lookup(conf, path);
    assert_non_null(s);
    char err[256] = "";
    struct tmpl *t = tmpl_compile(s, err, sizeof(err));
    if (!t)
        fail_msg("%s did not compile: %s", path, err);
    return t;
}

static void check_conf(const config_t *conf, const char *path, const struct tmpl_ctx *ctx,
                       const char *expected)
{
    struct tmpl *t = compile_conf(conf, path);
    cJSON *j = tmpl_eval(t, ctx);
    assert_json(j, expected);
    cJSON_Delete(j);
    tmpl_free(t);
}

static void test_config_settings(void **state)
{
    const config_t *conf = *state;
    cJSON *args = parse("[\"Ann\",{\"x\":[1]}]");
    struct tmpl_ctx ctx = {.args = args};
    check_conf(conf, "plain", &ctx, "\"hello\"");
    check_conf(conf, "whole", &ctx, "\"Ann\"");
    check_conf(conf, "num", &ctx, "42");
    check_conf(conf, "big", &ctx, "5000000000");
    check_conf(conf, "flt", &ctx, "2.5");
    check_conf(conf, "yes", &ctx, "true");
    check_conf(conf, "no", &ctx, "false");
    check_conf(conf, "esc", &ctx, "\"{{args.0}}\"");
    /* no socket: data and room_size have no value */
    check_conf(conf, "obj", &ctx,
               "{\"username\":null,\"numUsers\":null,\"who\":\"user Ann\",\"n\":1,"
               "\"nested\":{\"list\":[{\"x\":[1]},2,[1,2]]}}");
    check_conf(conf, "lst", &ctx, "[\"Ann\",{\"x\":[1]},[true,\"c\"],[\"a\",\"b\"]]");
    check_conf(conf, "arr", &ctx, "[1,2,3]");
    check_conf(conf, "empty_list", &ctx, "[]");
    check_conf(conf, "empty_group", &ctx, "{}");

    struct tmpl *t = compile_conf(conf, "obj");
    char *s = tmpl_eval_string(t, &ctx);
    assert_string_equal(s, "{\"username\":null,\"numUsers\":null,\"who\":\"user Ann\",\"n\":1,"
                           "\"nested\":{\"list\":[{\"x\":[1]},2,[1,2]]}}");
    free(s);
    tmpl_free(t);
    t = compile_conf(conf, "num");
    s = tmpl_eval_string(t, &ctx);
    assert_string_equal(s, "42");
    free(s);
    tmpl_free(t);
    t = compile_conf(conf, "yes");
    s = tmpl_eval_string(t, &ctx);
    assert_string_equal(s, "true");
    free(s);
    tmpl_free(t);

    /* evaluating twice gives equal, independent results */
    t = compile_conf(conf, "lst");
    cJSON *a = tmpl_eval(t, &ctx), *b = tmpl_eval(t, &ctx);
    assert_true(cJSON_Compare(a, b, true));
    assert_ptr_not_equal(a, b);
    cJSON_Delete(a);
    cJSON_Delete(b);
    tmpl_free(t);

    /* errors inside nested settings name where they are */
    char err[256] = "";
    assert_null(tmpl_compile(config_lookup(conf, "bad"), err, sizeof(err)));
    assert_string_equal(err, "inner[1].deep: unknown expression 'nope'");
    assert_null(tmpl_compile(config_lookup(conf, "bad2"), err, sizeof(err)));
    assert_string_equal(err, "unterminated '{{'");
    assert_null(tmpl_compile(NULL, err, sizeof(err)));
    assert_null(tmpl_compile_string(NULL, err, sizeof(err)));
    cJSON_Delete(args);
}

/* ---- flags ---- */

static void test_flags(void **state)
{
    static const struct {
        const char *text;
        bool client, constant;
    } cases[] = {
        {"hello", false, true},
        {"\\{{args}}", false, true},
        {"", false, true},
        {"{{args}}", true, false},
        {"x {{args.0.a}}", true, false},
        {"{{ack.0}}", true, false},
        {"{{auth.token}}", true, false},
        {"{{query.room}}", true, false},
        {"{{header.x-room}}", true, false},
        {"{{data.room}}", false, false},
        {"{{id}}", false, false},
        {"{{nsp}}-{{event}}-{{address}}", false, false},
        {"{{nsp_size}}", false, false},
        {"{{room_size('users')}}", false, false},
        {"{{room_size(data.room)}}", false, false},
        {"{{room_size(args.0)}}", true, false},
        {"users-{{id}}-{{room_size(query.r)}}", true, false},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        struct tmpl *t = compile(cases[i].text);
        if (tmpl_uses_client_input(t) != cases[i].client ||
            tmpl_is_constant(t) != cases[i].constant)
            fail_msg("'%s': client %d constant %d", cases[i].text, tmpl_uses_client_input(t),
                     tmpl_is_constant(t));
        tmpl_free(t);
    }

    /* groups and lists: any member counts */
    const char *text = "a = { x = 1; y = ( \"k\", { z = \"{{args.0}}\"; } ); };\n"
                       "b = { x = 1; y = ( \"k\", { z = \"{{data.z}}\"; } ); };\n"
                       "c = ( 1, \"two\", { three = 3; } );\n";
    config_t cfg;
    config_init(&cfg);
    assert_int_equal(config_read_string(&cfg, text), CONFIG_TRUE);
    char err[128];
    struct tmpl *t = tmpl_compile(config_lookup(&cfg, "a"), err, sizeof(err));
    assert_true(tmpl_uses_client_input(t));
    assert_false(tmpl_is_constant(t));
    tmpl_free(t);
    t = tmpl_compile(config_lookup(&cfg, "b"), err, sizeof(err));
    assert_false(tmpl_uses_client_input(t));
    assert_false(tmpl_is_constant(t));
    tmpl_free(t);
    t = tmpl_compile(config_lookup(&cfg, "c"), err, sizeof(err));
    assert_false(tmpl_uses_client_input(t));
    assert_true(tmpl_is_constant(t));
    tmpl_free(t);
    config_destroy(&cfg);
}

/* ---- compile errors ---- */

static void test_compile_errors(void **state)
{
    char deep[200] = "{{data";
    for (int i = 0; i < 17; i++)
        strcat(deep, ".k");
    strcat(deep, "}}");
    char ok_deep[200] = "{{data";
    for (int i = 0; i < 16; i++)
        strcat(ok_deep, ".k");
    strcat(ok_deep, "}}");
    char longest[300] = "{{data.", too_long[300] = "{{data.", long_open[400] = "x {{data.";
    memset(longest + 7, 'a', 256 - 5); /* "data." + 251 = 256 characters */
    longest[7 + 251] = '\0';
    strcat(longest, "}}");
    memset(too_long + 7, 'a', 252);
    too_long[7 + 252] = '\0';
    strcat(too_long, "}}");
    memset(long_open + 9, 'a', 300);
    long_open[9 + 300] = '\0';

    const struct {
        const char *text, *err;
    } cases[] = {
        {"{{args", "unterminated '{{'"},
        {"x {{ args.0 ", "unterminated '{{'"},
        {"{{args.0}", "unterminated '{{'"},
        {"{{", "unterminated '{{'"},
        {"ok {{args}} then {{", "unterminated '{{'"},
        {"{{room_size('a}}", "unterminated '{{'"},
        {"{{room_size(args.0", "unterminated '{{'"},
        {"{{foo}}", "unknown expression 'foo'"},
        {"{{ foo.bar }}", "unknown expression 'foo.bar'"},
        {"a {{ARGS}}", "unknown expression 'ARGS'"},
        {"{{args0}}", "unknown expression 'args0'"},
        {"{{-}}", "unknown expression '-'"},
        {"{{}}", "empty expression '{{}}'"},
        {"{{args.x}}", "expected an argument index (args.N) in 'args.x'"},
        {"{{ack.x.0}}", "expected an argument index (args.N) in 'ack.x.0'"},
        {"{{args..0}}", "empty key in 'args..0'"},
        {"{{args.}}", "empty key in 'args.'"},
        {"{{args.0 x}}", "invalid expression 'args.0 x'"},
        {"{{args[0]}}", "invalid expression 'args[0]'"},
        {"{{args}x}}", "invalid expression 'args}x'"},
        {"{{room_size}}", "bad room_size argument in 'room_size'"},
        {"{{room_size()}}", "bad room_size argument in 'room_size()'"},
        {"{{room_size(foo)}}", "bad room_size argument in 'room_size(foo)'"},
        {"{{room_size(nsp_size)}}", "bad room_size argument in 'room_size(nsp_size)'"},
        {"{{room_size(room_size('a'))}}", "bad room_size argument in"},
        {"{{room_size('')}}", "bad room_size argument (empty room name)"},
        {"{{room_size('a' 'b')}}", "bad room_size argument in"},
        {"{{room_size(\"a\")}}", "bad room_size argument in"},
        {"{{room_size('a'}}", "bad room_size argument in"},
        {"{{room_size('a').x}}", "invalid expression"},
        {"{{query}}", "expected query.NAME in 'query'"},
        {"{{query.a.b}}", "expected query.NAME in 'query.a.b'"},
        {"{{header}}", "expected header.NAME in 'header'"},
        {"{{id.x}}", "a value without keys cannot take a path: 'id.x'"},
        {"{{nsp_size.0}}", "a value without keys cannot take a path"},
        {"{{event.name}}", "a value without keys cannot take a path"},
        {deep, "path too deep (max 16 keys)"},
        {too_long, "expression too long (max 256 characters)"},
        {long_open, "expression too long (max 256 characters)"},
    };
    for (size_t i = 0; i < ARRAY_LEN(cases); i++) {
        char err[256] = "";
        struct tmpl *t = tmpl_compile_string(cases[i].text, err, sizeof(err));
        if (t)
            fail_msg("'%s' compiled", cases[i].text);
        if (!strstr(err, cases[i].err))
            fail_msg("'%s': got '%s', want '%s'", cases[i].text, err, cases[i].err);
    }
    /* the limits themselves are fine */
    tmpl_free(compile(ok_deep));
    tmpl_free(compile(longest));
    /* a tiny or absent error buffer is respected */
    char small[8];
    assert_null(tmpl_compile_string("{{foo}}", small, sizeof(small)));
    assert_int_equal(strlen(small), sizeof(small) - 1);
    assert_null(tmpl_compile_string("{{foo}}", NULL, 0));
    /* long unknown expressions are shortened in messages */
    char err[256];
    char unknown[200] = "{{";
    memset(unknown + 2, 'q', 150);
    unknown[152] = '\0';
    strcat(unknown, "}}");
    assert_null(tmpl_compile_string(unknown, err, sizeof(err)));
    assert_non_null(strstr(err, "...'"));
    assert_true(strlen(err) < 100);
}

/* ---- against a real socket ---- */

struct live {
    struct event_base *base;
    struct sio_server *srv;
    struct evhttp_connection *conn;
    struct event *timer;
    int port;
    char sid[64];
    struct sio_socket *sock;
    bool posted;
    bool failed;
};

static void live_timeout(evutil_socket_t fd, short what, void *ud)
{
    struct live *l = ud;
    l->failed = true;
    event_base_loopbreak(l->base);
}

static void on_connection(struct sio_socket *sock, void *ud)
{
    struct live *l = ud;
    l->sock = sock;
    if (l->posted)
        event_base_loopbreak(l->base);
}

static void posted(struct evhttp_request *req, void *ud)
{
    struct live *l = ud;
    l->posted = true;
    if (!req || evhttp_request_get_response_code(req) != 200)
        l->failed = true;
    if (l->sock || l->failed)
        event_base_loopbreak(l->base);
}

static void add_headers(struct evhttp_request *req)
{
    struct evkeyvalq *h = evhttp_request_get_output_headers(req);
    evhttp_add_header(h, "Host", "127.0.0.1");
    evhttp_add_header(h, "X-Test", "Hello there");
}

/* After the Engine.IO handshake: joins namespace /chat with an auth
 * payload in a POST. */
static void handshaken(struct evhttp_request *req, void *ud)
{
    struct live *l = ud;
    if (!req || evhttp_request_get_response_code(req) != 200) {
        l->failed = true;
        event_base_loopbreak(l->base);
        return;
    }
    struct evbuffer *in = evhttp_request_get_input_buffer(req);
    size_t n = evbuffer_get_length(in);
    char *body = calloc(1, n + 1);
    evbuffer_remove(in, body, n);
    cJSON *open = body[0] == '0' ? cJSON_Parse(body + 1) : NULL;
    const cJSON *sid = cJSON_GetObjectItem(open, "sid");
    if (cJSON_IsString(sid))
        snprintf(l->sid, sizeof(l->sid), "%s", sid->valuestring);
    cJSON_Delete(open);
    free(body);
    if (!l->sid[0]) {
        l->failed = true;
        event_base_loopbreak(l->base);
        return;
    }
    struct evhttp_request *post = evhttp_request_new(posted, l);
    add_headers(post);
    evhttp_add_header(evhttp_request_get_output_headers(post), "Content-Type",
                      "text/plain;charset=UTF-8");
    static const char connect[] = "40/chat,{\"token\":\"t\",\"user\":{\"id\":7}}";
    evbuffer_add(evhttp_request_get_output_buffer(post), connect, strlen(connect));
    char uri[128];
    snprintf(uri, sizeof(uri), "/socket.io/?EIO=4&transport=polling&sid=%s", l->sid);
    if (evhttp_make_request(l->conn, post, EVHTTP_REQ_POST, uri) != 0) {
        l->failed = true;
        event_base_loopbreak(l->base);
    }
}

static int live_setup(void **state)
{
    struct live *l = calloc(1, sizeof(*l));
    *state = l;
    l->base = event_base_new();
    if (!l->base)
        return -1;
    struct sio_config cfg;
    sio_config_init(&cfg);
    cfg.log_level = SIO_LOG_OFF;
    char err[256];
    l->srv = sio_server_new(l->base, &cfg, err, sizeof(err));
    if (!l->srv)
        return -1;
    sio_on_connection(sio_of(l->srv, "/chat"), on_connection, l);
    l->port = sio_server_listen(l->srv, "127.0.0.1", 0, NULL, NULL, err, sizeof(err));
    if (l->port <= 0)
        return -1;
    l->conn = evhttp_connection_base_new(l->base, NULL, "127.0.0.1", (unsigned short)l->port);
    struct evhttp_request *req = evhttp_request_new(handshaken, l);
    add_headers(req);
    if (evhttp_make_request(l->conn, req, EVHTTP_REQ_GET,
                            "/socket.io/?EIO=4&transport=polling&room=r%201&n=5") != 0)
        return -1;
    /* bounded: the whole exchange must finish within 3 s */
    l->timer = evtimer_new(l->base, live_timeout, l);
    struct timeval tv = {3, 0};
    evtimer_add(l->timer, &tv);
    event_base_dispatch(l->base);
    evtimer_del(l->timer);
    if (l->failed || !l->sock)
        return -1;
    return 0;
}

static int live_teardown(void **state)
{
    struct live *l = *state;
    if (!l)
        return 0;
    if (l->conn)
        evhttp_connection_free(l->conn);
    if (l->timer)
        event_free(l->timer);
    sio_server_free(l->srv);
    if (l->base)
        event_base_free(l->base);
    free(l);
    return 0;
}

static void test_socket_expressions(void **state)
{
    struct live *l = *state;
    struct sio_socket *sock = l->sock;
    cJSON *data = sio_socket_data(sock);
    cJSON_AddStringToObject(data, "username", "Ann");
    cJSON_AddItemToObject(data, "profile", parse("{\"tags\":[\"x\",\"y\"],\"age\":30}"));
    cJSON *args = parse("[\"r 1\",5,\"nobody\",{\"room\":\"r 1\"}]");
    struct tmpl_ctx ctx = {.sock = sock, .event = "add user", .args = args};

    /* id, nsp, event, address */
    char want[128];
    snprintf(want, sizeof(want), "\"%s\"", sio_socket_id(sock));
    check_eval("{{id}}", &ctx, want);
    snprintf(want, sizeof(want), "%s@%s", sio_socket_id(sock), "/chat");
    check_string("{{id}}@{{nsp}}", &ctx, want);
    check_eval("{{nsp}}", &ctx, "\"/chat\"");
    check_eval("{{event}}", &ctx, "\"add user\"");
    check_eval("{{address}}", &ctx, "\"127.0.0.1\"");

    /* auth: the CONNECT payload */
    check_eval("{{auth}}", &ctx, "{\"token\":\"t\",\"user\":{\"id\":7}}");
    check_eval("{{auth.token}}", &ctx, "\"t\"");
    check_eval("{{auth.user.id}}", &ctx, "7");
    check_eval("{{auth.none}}", &ctx, "null");
    check_string("token {{auth.token}} user {{auth.user}}", &ctx, "token t user {\"id\":7}");

    /* data: the socket's data object */
    check_eval("{{data.username}}", &ctx, "\"Ann\"");
    check_eval("{{data.profile.tags.1}}", &ctx, "\"y\"");
    check_eval("{{data}}", &ctx,
               "{\"username\":\"Ann\",\"profile\":{\"tags\":[\"x\",\"y\"],\"age\":30}}");
    check_eval("{{data.missing}}", &ctx, "null");
    check_string("{{data.username}} ({{data.profile.age}}){{data.missing}}", &ctx, "Ann (30)");

    /* handshake query and headers (header names in any case) */
    check_eval("{{query.room}}", &ctx, "\"r 1\"");
    check_eval("{{query.n}}", &ctx, "\"5\"");
    check_eval("{{query.nope}}", &ctx, "null");
    check_eval("{{header.x-test}}", &ctx, "\"Hello there\"");
    check_eval("{{header.X-Test}}", &ctx, "\"Hello there\"");
    check_string("[{{header.x-none}}]", &ctx, "[]");

    /* sizes */
    check_eval("{{nsp_size}}", &ctx, "1");
    check_eval("{{room_size('r 1')}}", &ctx, "0");
    assert_int_equal(sio_join(sock, "r 1"), 0);
    assert_int_equal(sio_join(sock, "5"), 0);
    check_eval("{{room_size('r 1')}}", &ctx, "1");
    check_eval("{{ room_size( 'r 1' ) }}", &ctx, "1");
    check_eval("{{room_size('nobody')}}", &ctx, "0");
    check_eval("{{room_size(args.0)}}", &ctx, "1");
    check_eval("{{room_size(args.1)}}", &ctx, "1"); /* 5 names the room "5" */
    check_eval("{{room_size(args.2)}}", &ctx, "0");
    check_eval("{{room_size(args.3.room)}}", &ctx, "1");
    check_eval("{{room_size(args.9)}}", &ctx, "0"); /* no value: no room */
    check_eval("{{room_size(query.room)}}", &ctx, "1");
    check_eval("{{room_size(id)}}", &ctx, "1"); /* every socket is in its own room */
    check_eval("{{room_size(data.username)}}", &ctx, "0");
    check_string("{{room_size('r 1')}} of {{nsp_size}}", &ctx, "1 of 1");
    /* literal room names may hold spaces, braces and escaped quotes */
    assert_int_equal(sio_join(sock, "it's {{ a }} room\\"), 0);
    check_eval("{{room_size('it\\'s {{ a }} room\\\\')}}", &ctx, "1");

    /* a whole config-style payload */
    config_t cfg;
    config_init(&cfg);
    assert_int_equal(config_read_string(&cfg, "p = ( { username = \"{{data.username}}\"; "
                                              "numUsers = \"{{room_size('r 1')}}\"; "
                                              "from = \"{{nsp}}/{{args.0}}\"; } );"),
                     CONFIG_TRUE);
    char err[128];
    struct tmpl *t = tmpl_compile(config_lookup(&cfg, "p"), err, sizeof(err));
    assert_non_null(t);
    cJSON *j = tmpl_eval(t, &ctx);
    assert_json(j, "[{\"username\":\"Ann\",\"numUsers\":1,\"from\":\"/chat/r 1\"}]");
    cJSON_Delete(j);
    tmpl_free(t);
    config_destroy(&cfg);

    /* values are copies: changing the socket's data later leaves them */
    t = compile("{{data.profile}}");
    j = tmpl_eval(t, &ctx);
    cJSON_DeleteItemFromObject(data, "profile");
    assert_json(j, "{\"tags\":[\"x\",\"y\"],\"age\":30}");
    cJSON_Delete(j);
    tmpl_free(t);

    assert_int_equal(sio_leave(sock, "r 1"), 0);
    check_eval("{{room_size(query.room)}}", &ctx, "0");
    cJSON_Delete(args);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_whole_value_kinds),
        cmocka_unit_test(test_object_keys_and_indexes),
        cmocka_unit_test(test_ack_values),
        cmocka_unit_test(test_interpolation),
        cmocka_unit_test(test_eval_string_of_values),
        cmocka_unit_test_setup_teardown(test_config_settings, conf_setup, conf_teardown),
        cmocka_unit_test(test_flags),
        cmocka_unit_test(test_compile_errors),
        cmocka_unit_test_setup_teardown(test_socket_expressions, live_setup, live_teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
