/*
 * A minimal C app: creates a peer, answers an SDP offer read from a file (or stdin),
 * prints the answer, then echoes every app message as {"echo": <message>} until the
 * client leaves or a number of messages has been echoed.
 *
 *   answer_offer OFFER_FILE [MAX_ECHOES]
 *
 * The answer is printed on stdout, terminated by a line "--END--". Events go to stderr.
 * Uses callbacks for events; see poll-style use in the README.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smallwebrtc.h"

struct app {
    SwrtcPeer *peer;
    volatile int echoed;
    volatile int closed;
    volatile int connected;
};

static void on_state(void *user_data, SwrtcPeerState state) {
    struct app *app = user_data;
    fprintf(stderr, "state %d\n", (int)state);
    if (state == SWRTC_PEER_CONNECTED) app->connected = 1;
    if (state == SWRTC_PEER_CLOSED) app->closed = 1;
}

static void on_message(void *user_data, const uint8_t *data, size_t len, bool binary) {
    struct app *app = user_data;
    if (binary) return;
    /* data is NUL-terminated for convenience; len excludes the NUL. */
    size_t cap = len + 16;
    char *reply = malloc(cap);
    if (!reply) return;
    int n = snprintf(reply, cap, "{\"echo\": %s}", (const char *)data);
    if (swrtc_peer_send_message(app->peer, (const uint8_t *)reply, (size_t)n, false) != SWRTC_OK)
        fprintf(stderr, "send failed: %s\n", swrtc_last_error());
    free(reply);
    app->echoed++;
}

static char *read_all(FILE *f, size_t *len) {
    size_t cap = 4096, n = 0;
    char *buf = malloc(cap);
    size_t got;
    while (buf && (got = fread(buf + n, 1, cap - n, f)) > 0) {
        n += got;
        if (n == cap) {
            char *bigger = realloc(buf, cap *= 2);
            if (!bigger) { free(buf); return NULL; }
            buf = bigger;
        }
    }
    *len = n;
    return buf;
}

int main(int argc, char **argv) {
    FILE *in = argc > 1 ? fopen(argv[1], "rb") : stdin;
    int max_echoes = argc > 2 ? atoi(argv[2]) : 1;
    if (!in) { perror("open offer"); return 2; }
    size_t offer_len = 0;
    char *offer = read_all(in, &offer_len);
    if (in != stdin) fclose(in);
    if (!offer) return 2;

    struct app app = {0};
    SwrtcPeerConfig cfg;
    swrtc_peer_config_default(&cfg);
    cfg.bind_ip = "127.0.0.1";
    SwrtcPeerCallbacks cb = {0};
    cb.user_data = &app;
    cb.on_state = on_state;
    cb.on_message = on_message;

    /* A runtime of our own, so the goodbyes can be waited for before the process exits. */
    SwrtcRuntime *rt = NULL;
    if (swrtc_runtime_new(NULL, &rt) != SWRTC_OK) {
        fprintf(stderr, "runtime_new: %s\n", swrtc_last_error());
        return 1;
    }
    if (swrtc_peer_new(rt, &cfg, &cb, &app.peer) != SWRTC_OK) {
        fprintf(stderr, "peer_new: %s\n", swrtc_last_error());
        swrtc_runtime_free(rt);
        return 1;
    }
    char *answer = NULL;
    size_t answer_len = 0;
    SwrtcResult r = swrtc_peer_handle_offer(app.peer, offer, offer_len, &answer, &answer_len);
    free(offer);
    if (r != SWRTC_OK) {
        fprintf(stderr, "handle_offer: %d %s\n", (int)r, swrtc_last_error());
        swrtc_peer_free(app.peer);
        swrtc_runtime_free(rt);
        return 1;
    }
    fwrite(answer, 1, answer_len, stdout);
    printf("\n--END--\n");
    fflush(stdout);
    swrtc_string_free(answer);
    swrtc_peer_connect(app.peer);

    /* Wait up to 20 s for the echoes; a real app would run its own loop here. */
    struct timespec tick = {0, 10 * 1000 * 1000};
    for (int i = 0; i < 2000 && app.echoed < max_echoes && !app.closed; i++) nanosleep(&tick, NULL);
    /* Let the last echo leave before closing. */
    for (int i = 0; i < 20; i++) nanosleep(&tick, NULL);

    SwrtcPeerStats stats;
    if (swrtc_peer_get_stats(app.peer, &stats) == SWRTC_OK)
        fprintf(stderr, "messages in %llu out %llu\n", (unsigned long long)stats.messages_in,
                (unsigned long long)stats.messages_out);
    int ok = app.connected && app.echoed >= max_echoes;
    /* peerLeft, SCTP shutdown and DTLS close_notify leave before we exit (freeing alone
     * would race the process exit against the network thread). */
    swrtc_runtime_shutdown(rt, 1000, NULL);
    swrtc_peer_free(app.peer);
    swrtc_runtime_free(rt);
    fprintf(stderr, ok ? "done\n" : "incomplete\n");
    return ok ? 0 : 1;
}
