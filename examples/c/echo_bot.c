/* Echo bot in C: starts the signalling server and echoes every caller. Each new peer gets
 * its own thread that sends the caller's audio back, answers each app message m with
 * {"echo": m}, and RTVI client-ready with a bot-ready.
 *
 *   cc -std=c11 -D_POSIX_C_SOURCE=200809L -Iinclude examples/c/echo_bot.c \
 *      -Ltarget/debug -lsmallwebrtc -lpthread -o echo_bot
 *   ./echo_bot [IP:PORT] [seconds]     (default 127.0.0.1:7860, run until SIGINT/SIGTERM)
 *
 * At the end (the time is up, or a signal) it stops the server, lets each peer thread free
 * its peer, and waits for them, so nothing is left running or allocated.
 *
 * Prints "listening on http://IP:PORT/" once ready, then one line per peer event.
 */
#include <pthread.h>
#include <signal.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <time.h>

#include "smallwebrtc.h"

#define RATE 48000
#define FRAME (RATE / 50) /* 20 ms mono */

/* The bot-ready reply for an RTVI client-ready (a small, deliberate JSON scan: the Rust
 * API has smallwebrtc::rtvi for this; C apps bring their own JSON parser). */
static int rtvi_bot_ready(const char *msg, char *out, size_t cap) {
    if (!strstr(msg, "\"rtvi-ai\"") || !strstr(msg, "\"client-ready\""))
        return 0;
    char id[64] = "0";
    const char *p = strstr(msg, "\"id\"");
    if (p && (p = strchr(p + 4, '"'))) {
        size_t n = strcspn(p + 1, "\"");
        if (n < sizeof id) {
            memcpy(id, p + 1, n);
            id[n] = 0;
        }
    }
    snprintf(out, cap,
             "{\"label\":\"rtvi-ai\",\"type\":\"bot-ready\",\"id\":\"%s\","
             "\"data\":{\"version\":\"1.0.0\",\"about\":{\"library\":\"smallwebrtc-c\"}}}",
             id);
    return 1;
}

static void reply(SwrtcPeer *peer, const SwrtcEvent *ev) {
    if (ev->binary) { /* binary comes back as it is */
        swrtc_peer_send_message(peer, ev->data, ev->len, true);
        return;
    }
    const char *text = (const char *)ev->data; /* NUL-terminated by the library */
    char ready[256];
    if (rtvi_bot_ready(text, ready, sizeof ready))
        swrtc_peer_send_message(peer, (const uint8_t *)ready, strlen(ready), false);
    /* {"echo": m}: m as is when it looks like JSON, else as a (naively quoted) string. */
    size_t cap = ev->len * 2 + 16;
    char *out = malloc(cap);
    if (!out)
        return;
    char first = ev->len ? text[0] : 0;
    int json = first == '{' || first == '[' || first == '"';
    int n = json ? snprintf(out, cap, "{\"echo\":%s}", text) : snprintf(out, cap, "{\"echo\":\"%s\"}", text);
    if (n > 0 && (size_t)n < cap)
        swrtc_peer_send_message(peer, (const uint8_t *)out, (size_t)n, false);
    free(out);
}

struct bot {
    SwrtcPeer *peer;
    char pc_id[96];
};

static atomic_int stop;             /* set by a signal (lock-free atomics are signal-safe) */
static atomic_int live_peers; /* peer threads still running, so main can wait for them */

static void *run_peer(void *arg) {
    struct bot *b = arg;
    int16_t frame[FRAME];
    swrtc_peer_connect(b->peer);
    for (;;) {
        size_t n = 0;
        SwrtcResult r = swrtc_peer_read_audio(b->peer, frame, FRAME, &n, NULL, 20);
        if (r == SWRTC_OK)
            swrtc_peer_write_audio(b->peer, frame, n, 0); /* queue and go on */
        SwrtcEvent ev;
        int closed = 0;
        while (swrtc_peer_poll_event(b->peer, 0, &ev) == SWRTC_OK) {
            if (ev.kind == SWRTC_EVENT_MESSAGE)
                reply(b->peer, &ev);
            else if (ev.kind == SWRTC_EVENT_STATE) {
                printf("%s state %d\n", b->pc_id, (int)ev.state);
                fflush(stdout);
                closed |= ev.state == SWRTC_PEER_CLOSED;
            }
            swrtc_event_clear(&ev);
        }
        if (closed || r == SWRTC_ERR_CLOSED || atomic_load(&stop))
            break;
    }
    swrtc_peer_free(b->peer);
    free(b);
    atomic_fetch_sub(&live_peers, 1);
    return NULL;
}

static const char *PROTOCOL_NAMES[] = {"app", "pipecat", "whip", "whep"};

/* Access control: with a token set (SWRTC_TOKEN), offers must carry
 * "Authorization: Bearer <token>". Runs on a server thread, possibly several at once. */
static int on_access(void *user_data, const SwrtcAccessRequest *req) {
    const char *token = user_data;
    if (!token)
        return 0;
    for (size_t i = 0; i < req->headers_len; i++) {
        const SwrtcHeader *h = &req->headers[i];
        if (strcasecmp(h->name, "Authorization") == 0) {
            if (strncasecmp(h->value, "Bearer ", 7) == 0 && strcmp(h->value + 7, token) == 0)
                return 0;
            return 403;
        }
    }
    return 401;
}

/* Runs on a server thread: hand the peer to its own thread and return at once. */
static void on_peer(void *user_data, SwrtcPeer *peer, const char *pc_id, const char *request_data) {
    (void)user_data;
    SwrtcProtocol protocol = SWRTC_PROTOCOL_APP;
    swrtc_peer_protocol(peer, &protocol);
    struct bot *b = calloc(1, sizeof *b);
    pthread_t t;
    if (!b) {
        swrtc_peer_free(peer);
        return;
    }
    b->peer = peer;
    snprintf(b->pc_id, sizeof b->pc_id, "%s", pc_id);
    printf("new peer %s request_data %s protocol %s\n", pc_id, request_data,
           PROTOCOL_NAMES[protocol]);
    fflush(stdout);
    atomic_fetch_add(&live_peers, 1);
    if (pthread_create(&t, NULL, run_peer, b) != 0) {
        atomic_fetch_sub(&live_peers, 1);
        swrtc_peer_free(peer);
        free(b);
        return;
    }
    pthread_detach(t);
}

static void on_signal(int sig) {
    (void)sig;
    atomic_store(&stop, 1);
}

int main(int argc, char **argv) {
    struct sigaction sa = {0};
    sa.sa_handler = on_signal; /* Ctrl-C or SIGTERM: free the server and exit cleanly */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    SwrtcServerConfig cfg;
    swrtc_server_config_default(&cfg);
    cfg.addr = argc > 1 ? argv[1] : "127.0.0.1:7860";
    cfg.peer.audio_in_sample_rate = RATE; /* same rate both ways: frames go back unchanged */
    cfg.peer.audio_out_sample_rate = RATE;
    int seconds = argc > 2 ? atoi(argv[2]) : 0;

    SwrtcServerCallbacks cb = {0};
    cb.on_peer = on_peer;
    cb.on_access = on_access;
    cb.user_data = getenv("SWRTC_TOKEN");
    SwrtcServer *server = NULL;
    if (swrtc_server_new(NULL, &cfg, &cb, &server) != SWRTC_OK) {
        fprintf(stderr, "cannot start the server: %s\n", swrtc_last_error());
        return 1;
    }
    uint16_t port = 0;
    swrtc_server_local_port(server, &port);
    char host[64];
    snprintf(host, sizeof host, "%s", cfg.addr);
    char *colon = strrchr(host, ':');
    if (colon)
        *colon = 0;
    printf("listening on http://%s:%u/\n", host, (unsigned)port);
    fflush(stdout);
    for (int i = 0; !atomic_load(&stop) && (seconds == 0 || i < seconds * 10); i++) {
        struct timespec ts = {0, 100 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    atomic_store(&stop, 1);
    swrtc_server_free(server); /* no on_peer runs after this */
    /* The peer threads see `stop` within a read (20 ms) and free their peers (peerLeft). */
    while (atomic_load(&live_peers) > 0) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
    }
    return 0;
}
