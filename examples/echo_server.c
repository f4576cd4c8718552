/* echo_server: the Socket.IO echo behaviour used by the end-to-end tests and
 * a compact tour of the C API.
 *
 * Namespace "/":
 *   on connect          emit auth(<handshake auth object>)
 *   message(...)        emit message-back(...) to the sender
 *   message-with-ack(...)  ack with all arguments
 *   join(room)          join, ack with room       leave(room)  leave, ack with room
 *   msg(room, data)     emit msg(data) to the room except the sender
 *   echo(d)             ack with d
 *   ask(event, ...)     emit event(...) to the sender with an ack (2 s timeout), then
 *                       emit asked(<ack arguments>) or asked-timeout()
 *   poll(room, q)       emit question(q) to the room except the sender, collecting acks
 *                       for 1 s, then emit poll-results(<responses>, <timed out>)
 * Namespace "/custom": on connect emit auth(<auth>). Other namespaces are unknown.
 *
 *   echo_server [--port N] [--ping-interval MS] [--ping-timeout MS]
 *               [--connect-timeout MS] [--max-payload BYTES] [--recovery MS]
 */
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>
#include <sockeye.h>

#include "example_main.h"

static cJSON *copy(const cJSON *item)
{
    return sio_json_copy(item);
}

/* A new array holding a copy of one value. */
static cJSON *array_of(const cJSON *item)
{
    cJSON *arr = cJSON_CreateArray();
    if (arr)
        cJSON_AddItemToArray(arr, item ? copy(item) : cJSON_CreateNull());
    return arr;
}

/* A new array holding args[i] itself, detached from args (which sockeye
 * frees after the handler): no copy. */
static cJSON *array_taking(cJSON *args, int i)
{
    cJSON *arr = cJSON_CreateArray();
    if (arr) {
        cJSON *item = cJSON_DetachItemFromArray(args, i);
        cJSON_AddItemToArray(arr, item ? item : cJSON_CreateNull());
    }
    return arr;
}

static void on_connection(struct sio_socket *sock, void *ud)
{
    sio_emit(sock, "auth", array_of(sio_socket_auth(sock)));
}

static void on_message(struct sio_socket *sock, const char *ev, cJSON *args, int64_t ack, void *ud)
{
    sio_emit(sock, "message-back", copy(args));
}

static void on_message_with_ack(struct sio_socket *sock, const char *ev, cJSON *args, int64_t ack,
                                void *ud)
{
    sio_ack(sock, ack, copy(args));
}

static const char *room_arg(const cJSON *args)
{
    const cJSON *room = cJSON_GetArrayItem(args, 0);
    return cJSON_IsString(room) ? room->valuestring : NULL;
}

static void on_join(struct sio_socket *sock, const char *ev, cJSON *args, int64_t ack, void *ud)
{
    const char *room = room_arg(args);
    if (!room)
        return;
    sio_join(sock, room);
    sio_ack(sock, ack, array_of(cJSON_GetArrayItem(args, 0)));
}

static void on_leave(struct sio_socket *sock, const char *ev, cJSON *args, int64_t ack, void *ud)
{
    const char *room = room_arg(args);
    if (!room)
        return;
    sio_leave(sock, room);
    sio_ack(sock, ack, array_of(cJSON_GetArrayItem(args, 0)));
}

static void on_msg(struct sio_socket *sock, const char *ev, cJSON *args, int64_t ack, void *ud)
{
    const char *room = room_arg(args);
    if (!room)
        return;
    const char *rooms[] = {room};
    struct sio_target t = {.rooms = rooms, .n_rooms = 1, .except_socket = sock};
    sio_broadcast(sio_socket_namespace(sock), &t, "msg", array_of(cJSON_GetArrayItem(args, 1)));
}

static void on_echo(struct sio_socket *sock, const char *ev, cJSON *args, int64_t ack, void *ud)
{
    sio_ack(sock, ack, array_taking(args, 0));
}

static void on_asked(struct sio_socket *sock, cJSON *args, bool timed_out, void *ud)
{
    if (!sio_socket_connected(sock))
        return;
    if (timed_out)
        sio_emit(sock, "asked-timeout", NULL);
    else
        sio_emit(sock, "asked", copy(args));
}

static void on_ask(struct sio_socket *sock, const char *ev, cJSON *args, int64_t ack, void *ud)
{
    cJSON *rest = copy(args);
    cJSON *event = cJSON_DetachItemFromArray(rest, 0);
    if (cJSON_IsString(event))
        sio_emit_with_ack(sock, event->valuestring, rest, 2000, on_asked, NULL);
    else
        cJSON_Delete(rest);
    cJSON_Delete(event);
}

static void on_poll_done(struct sio_namespace *nsp, cJSON *responses, bool timed_out, void *ud)
{
    /* The sender may have gone meanwhile: look it up by id. */
    char *id = ud;
    cJSON *args = cJSON_CreateArray();
    if (args) {
        cJSON_AddItemToArray(args, copy(responses));
        cJSON_AddItemToArray(args, cJSON_CreateBool(timed_out));
        const char *rooms[] = {id};
        struct sio_target t = {.rooms = rooms, .n_rooms = 1};
        sio_broadcast(nsp, &t, "poll-results", args);
    }
    free(id);
}

static void on_poll(struct sio_socket *sock, const char *ev, cJSON *args, int64_t ack, void *ud)
{
    const char *room = room_arg(args);
    char *id = room ? strdup(sio_socket_id(sock)) : NULL;
    if (!id)
        return;
    const char *rooms[] = {room};
    struct sio_target t = {.rooms = rooms, .n_rooms = 1, .except_socket = sock};
    if (sio_broadcast_with_ack(sio_socket_namespace(sock), &t, "question",
                               array_of(cJSON_GetArrayItem(args, 1)), 1000, on_poll_done, id) < 0)
        free(id);
}

static void setup(struct sio_server *srv)
{
    struct sio_namespace *root = sio_of(srv, "/");
    sio_on_connection(root, on_connection, NULL);
    sio_on(root, "message", on_message, NULL);
    sio_on(root, "message-with-ack", on_message_with_ack, NULL);
    sio_on(root, "join", on_join, NULL);
    sio_on(root, "leave", on_leave, NULL);
    sio_on(root, "msg", on_msg, NULL);
    sio_on(root, "echo", on_echo, NULL);
    sio_on(root, "ask", on_ask, NULL);
    sio_on(root, "poll", on_poll, NULL);
    sio_on_connection(sio_of(srv, "/custom"), on_connection, NULL);
}

int main(int argc, char **argv)
{
    struct sio_config cfg;
    sio_config_init(&cfg);
    cfg.cors_origin = "*";
    struct example_options opt = {0};
    if (example_parse("echo_server", argc, argv, &cfg, &opt) < 0)
        return 2;
    return example_run("echo_server", &cfg, &opt, setup);
}
