/* Game loop in C: how a game engine embeds smallwebrtc. One thread runs a fixed 100 Hz
 * tick and only pulls: new peers with swrtc_server_accept, events with
 * swrtc_peer_poll_event, the caller's audio with swrtc_peer_read_audio and camera frames
 * with swrtc_peer_read_video, all with a timeout of 0, so a tick never waits on the
 * network. No callback, no thread of ours. Each tick it echoes the caller's audio back
 * (swrtc_peer_write_audio, timeout 0), answers each app message m with {"echo": m} and
 * the text "stats" with {"ticks":N,"late_ticks":L,"audio_frames":A,"video_frames":V}.
 *
 *   cc -std=c11 -D_POSIX_C_SOURCE=200809L $(pkg-config --cflags smallwebrtc) \
 *      examples/c/game_loop.c $(pkg-config --libs smallwebrtc) -o game_loop
 *   ./game_loop [IP:PORT] [seconds]     (default 127.0.0.1:7860, run until SIGINT/SIGTERM)
 *
 * Prints "listening on http://IP:PORT/" once ready, then one line per peer event.
 */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smallwebrtc.h"

#define TICK_HZ 100
#define TICK_NS (1000000000L / TICK_HZ)
#define MAX_PEERS 8
#define RATE 48000
#define FRAME (RATE / 50) /* 20 ms mono: one read_audio frame */

struct player {
    SwrtcPeer *peer;
    unsigned long audio_frames;
    unsigned long video_frames;
};

static struct player players[MAX_PEERS];
static unsigned long ticks, late_ticks;
static volatile sig_atomic_t quit;

static void on_signal(int sig) {
    (void)sig;
    quit = 1;
}

static void send_text(SwrtcPeer *peer, const char *text) {
    swrtc_peer_send_message(peer, (const uint8_t *)text, strlen(text), false);
}

static void answer(struct player *p, const SwrtcEvent *ev) {
    if (ev->binary) {
        swrtc_peer_send_message(p->peer, ev->data, ev->len, true);
        return;
    }
    const char *text = (const char *)ev->data; /* NUL-terminated by the library */
    char out[512];
    if (strcmp(text, "stats") == 0) {
        snprintf(out, sizeof out,
                 "{\"ticks\":%lu,\"late_ticks\":%lu,\"audio_frames\":%lu,\"video_frames\":%lu}",
                 ticks, late_ticks, p->audio_frames, p->video_frames);
        send_text(p->peer, out);
        return;
    }
    /* {"echo": m}: m as is when it looks like JSON (a game would parse it properly); a
     * message too long for `out` gets no echo. */
    char first = ev->len ? text[0] : 0;
    int json = first == '{' || first == '[' || first == '"';
    int n = snprintf(out, sizeof out, json ? "{\"echo\":%s}" : "{\"echo\":\"%s\"}", text);
    if (n > 0 && (size_t)n < sizeof out)
        send_text(p->peer, out);
}

/* One tick of one player; returns 0 once the peer is closed (the slot is then freed). */
static int tick_player(struct player *p, SwrtcVideoFrame *frame) {
    SwrtcEvent ev;
    int open = 1;
    while (swrtc_peer_poll_event(p->peer, 0, &ev) == SWRTC_OK) {
        if (ev.kind == SWRTC_EVENT_MESSAGE)
            answer(p, &ev);
        else if (ev.kind == SWRTC_EVENT_STATE) {
            printf("peer %d state %d\n", (int)(p - players), (int)ev.state);
            fflush(stdout);
            open &= ev.state != SWRTC_PEER_CLOSED;
        }
        swrtc_event_clear(&ev);
    }
    /* Everything that arrived since the last tick (a 20 ms frame every other tick). */
    int16_t pcm[FRAME];
    size_t n = 0;
    SwrtcResult r;
    while ((r = swrtc_peer_read_audio(p->peer, pcm, FRAME, &n, NULL, 0)) == SWRTC_OK) {
        p->audio_frames++;
        swrtc_peer_write_audio(p->peer, pcm, n, 0); /* queued, sent in real time */
    }
    if (r == SWRTC_ERR_CLOSED)
        open = 0;
    /* Latest camera frame, if a new one came: a game would upload it as a texture. */
    if (swrtc_peer_read_video(p->peer, SWRTC_VIDEO_CAMERA, 0, frame) == SWRTC_OK)
        p->video_frames++;
    return open;
}

static void accept_players(SwrtcServer *server) {
    SwrtcPeer *peer = NULL;
    while (swrtc_server_accept(server, 0, &peer, NULL, NULL) == SWRTC_OK) {
        int slot = -1;
        for (int i = 0; i < MAX_PEERS && slot < 0; i++)
            if (!players[i].peer)
                slot = i;
        if (slot < 0) { /* full: the caller gets peerLeft */
            swrtc_peer_free(peer);
            continue;
        }
        players[slot] = (struct player){.peer = peer};
        swrtc_peer_connect(peer);
        printf("peer %d joined\n", slot);
        fflush(stdout);
    }
}

static void add_ns(struct timespec *t, long ns) {
    t->tv_nsec += ns;
    while (t->tv_nsec >= 1000000000L) {
        t->tv_nsec -= 1000000000L;
        t->tv_sec++;
    }
}

static int before(const struct timespec *a, const struct timespec *b) {
    return a->tv_sec < b->tv_sec || (a->tv_sec == b->tv_sec && a->tv_nsec < b->tv_nsec);
}

int main(int argc, char **argv) {
    struct sigaction sa = {0};
    sa.sa_handler = on_signal; /* the loop checks the flag each tick and shuts down cleanly */
    sigaction(SIGINT, &sa, NULL);
    sigaction(SIGTERM, &sa, NULL);
    SwrtcServerConfig cfg;
    swrtc_server_config_default(&cfg);
    cfg.addr = argc > 1 ? argv[1] : "127.0.0.1:7860";
    cfg.peer.audio_in_sample_rate = RATE; /* same rate both ways: frames go back unchanged */
    cfg.peer.audio_out_sample_rate = RATE;
    cfg.peer.video_in_enabled = true;
    long seconds = argc > 2 ? atol(argv[2]) : 0;

    SwrtcServer *server = NULL; /* no on_peer: new peers wait for swrtc_server_accept */
    if (swrtc_server_new(NULL, &cfg, NULL, &server) != SWRTC_OK) {
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

    SwrtcVideoFrame frame = {0}; /* one buffer, reused by every read */
    struct timespec next;
    clock_gettime(CLOCK_MONOTONIC, &next);
    for (; !quit && (seconds == 0 || ticks < (unsigned long)(seconds * TICK_HZ)); ticks++) {
        accept_players(server);
        for (int i = 0; i < MAX_PEERS; i++) {
            if (players[i].peer && !tick_player(&players[i], &frame)) {
                swrtc_peer_free(players[i].peer);
                players[i].peer = NULL;
                printf("peer %d left\n", i);
                fflush(stdout);
            }
        }
        /* Fixed rate: sleep to the next tick; a late tick runs at once (and is counted). */
        add_ns(&next, TICK_NS);
        struct timespec now;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (before(&now, &next))
            clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME, &next, NULL);
        else { /* behind: count it and restart the schedule from now, no burst of ticks */
            late_ticks++;
            next = now;
        }
    }
    swrtc_video_frame_clear(&frame);
    for (int i = 0; i < MAX_PEERS; i++)
        swrtc_peer_free(players[i].peer);
    swrtc_server_free(server);
    return 0;
}
