/*
 * Access control from C: a server whose `on_access` callback lets in only requests that
 * carry "Authorization: Bearer <TOKEN>" (401 without credentials, 403 with a wrong
 * token), on WHIP, WHEP and Pipecat's /api/offer alike.
 *
 *   bearer_access TOKEN [ADDR]        (ADDR default 127.0.0.1:0: any port)
 *
 * Prints "listening on http://IP:PORT/", then one line per access decision
 * ("access POST /whip whip 401") and per accepted peer ("peer <pc_id> whip"). Peers are
 * freed at once: this program only shows who gets in. Stops on SIGINT or SIGTERM.
 */
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <strings.h>

#include "smallwebrtc.h"

static const char *PROTOCOL_NAMES[] = {"app", "pipecat", "whip", "whep"};

static const char *protocol_name(SwrtcProtocol p) {
    return (unsigned)p < sizeof PROTOCOL_NAMES / sizeof *PROTOCOL_NAMES ? PROTOCOL_NAMES[p] : "?";
}

/* Runs on the server's HTTP threads, possibly several at once: it only reads its
 * arguments and the token, which no one writes while the server runs. */
static int32_t on_access(void *user_data, const SwrtcAccessRequest *req) {
    const char *token = user_data;
    int32_t verdict = 401; /* no Authorization header at all */
    for (size_t i = 0; i < req->headers_len; i++) {
        const SwrtcHeader *h = &req->headers[i];
        if (strcasecmp(h->name, "Authorization") != 0)
            continue;
        if (strncasecmp(h->value, "Bearer ", 7) == 0 && strcmp(h->value + 7, token) == 0)
            verdict = 0;
        else
            verdict = 403;
        break;
    }
    /* One printf per line: stdio locks the stream, so lines from threads do not mix. */
    printf("access %s %s %s %d\n", req->method, req->path, protocol_name(req->protocol),
           verdict ? verdict : 200);
    fflush(stdout);
    return verdict;
}

static volatile sig_atomic_t stop;

static void on_signal(int sig) {
    (void)sig;
    stop = 1;
}

int main(int argc, char **argv) {
    if (argc < 2 || !argv[1][0]) {
        fprintf(stderr, "usage: %s TOKEN [ADDR]\n", argv[0]);
        return 2;
    }
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_signal;
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);

    SwrtcServerConfig cfg;
    swrtc_server_config_default(&cfg);
    cfg.addr = argc > 2 ? argv[2] : "127.0.0.1:0";
    SwrtcServerCallbacks cb = {0};
    cb.user_data = argv[1];
    cb.on_access = on_access;
    SwrtcServer *server = NULL;
    if (swrtc_server_new(NULL, &cfg, &cb, &server) != SWRTC_OK) {
        fprintf(stderr, "cannot start the server: %s\n", swrtc_last_error());
        return 1;
    }
    uint16_t port = 0;
    swrtc_server_local_port(server, &port);
    const char *host = argc > 2 ? argv[2] : "127.0.0.1";
    int host_len = (int)(strrchr(host, ':') ? (size_t)(strrchr(host, ':') - host) : strlen(host));
    printf("listening on http://%.*s:%u/\n", host_len, host, (unsigned)port);
    fflush(stdout);

    while (!stop) {
        SwrtcPeer *peer = NULL;
        char *pc_id = NULL;
        if (swrtc_server_accept(server, 200, &peer, &pc_id, NULL) != SWRTC_OK)
            continue;
        SwrtcProtocol protocol = SWRTC_PROTOCOL_APP;
        swrtc_peer_protocol(peer, &protocol);
        printf("peer %s %s\n", pc_id, protocol_name(protocol));
        fflush(stdout);
        swrtc_string_free(pc_id);
        swrtc_peer_free(peer);
    }
    swrtc_server_free(server);
    return 0;
}
