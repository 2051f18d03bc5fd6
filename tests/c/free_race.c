/* The C deletion rule under fire: every peer the server hands over gets event and audio
 * callbacks whose user_data is a heap block, and is freed (then the block is freed at
 * once) at a random moment while its client keeps sending messages, audio, PATCHes of
 * candidates and renegotiation offers. A callback after swrtc_peer_free returned would
 * read freed memory (AddressSanitizer aborts) and is also counted by a flag kept outside
 * the block. Built by tests/c_free_race.rs with -fsanitize=address,undefined.
 *
 *   ./free_race IP:PORT PEERS     prints "listening on http://IP:PORT/", then "freed N"
 *                                 for each peer, then "done callbacks=C after_free=A".
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smallwebrtc.h"

#define MAX_PEERS 256
#define MAGIC 0x5eedf00du

struct ctx {
    uint32_t magic;
    int index;
    atomic_long calls;
};

static atomic_int freed_flag[MAX_PEERS]; /* outside the blocks: survives their free */
static atomic_long after_free;
static atomic_long total_calls;

static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;
static pthread_cond_t arrived = PTHREAD_COND_INITIALIZER;
static SwrtcPeer *queue[MAX_PEERS];
static struct ctx *ctxs[MAX_PEERS];
static int queued, taken;

static void touch(void *user_data) {
    struct ctx *c = user_data;
    /* Reading the block after it was freed is what AddressSanitizer reports. */
    if (c->magic != MAGIC)
        abort();
    if (atomic_load(&freed_flag[c->index]))
        atomic_fetch_add(&after_free, 1);
    atomic_fetch_add(&c->calls, 1);
    atomic_fetch_add(&total_calls, 1);
}

static void on_state(void *u, SwrtcPeerState s) {
    (void)s;
    touch(u);
}

static void on_message(void *u, const uint8_t *d, size_t n, bool b) {
    (void)d, (void)n, (void)b;
    touch(u);
}

static void on_track(void *u, uint32_t i, bool e) {
    (void)i, (void)e;
    touch(u);
}

static void on_audio(void *u, const int16_t *s, size_t n, uint32_t rate, uint16_t ch,
                     uint64_t pts) {
    (void)s, (void)n, (void)rate, (void)ch, (void)pts;
    touch(u);
}

static void on_peer(void *user_data, SwrtcPeer *peer, const char *pc_id, const char *req) {
    (void)user_data, (void)pc_id, (void)req;
    pthread_mutex_lock(&lock);
    int i = queued;
    if (i >= MAX_PEERS) {
        pthread_mutex_unlock(&lock);
        swrtc_peer_free(peer);
        return;
    }
    struct ctx *c = calloc(1, sizeof *c);
    c->magic = MAGIC;
    c->index = i;
    SwrtcPeerCallbacks cb = {0};
    cb.user_data = c;
    cb.on_state = on_state;
    cb.on_message = on_message;
    cb.on_track_status = on_track;
    swrtc_peer_set_callbacks(peer, &cb);
    swrtc_peer_set_audio_callback(peer, on_audio, c);
    swrtc_peer_connect(peer);
    queue[i] = peer;
    ctxs[i] = c;
    queued++;
    pthread_cond_signal(&arrived);
    pthread_mutex_unlock(&lock);
}

static void sleep_ms(long ms) {
    struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&ts, NULL);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: free_race IP:PORT PEERS\n");
        return 2;
    }
    int peers = atoi(argv[2]);
    if (peers < 1 || peers > MAX_PEERS)
        return 2;
    srand(12345);
    SwrtcServerConfig cfg;
    swrtc_server_config_default(&cfg);
    cfg.addr = argv[1];
    cfg.peer.audio_in_sample_rate = 48000;
    SwrtcServerCallbacks cb = {0};
    cb.on_peer = on_peer;
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

    for (int n = 0; n < peers; n++) {
        pthread_mutex_lock(&lock);
        while (taken == queued)
            pthread_cond_wait(&arrived, &lock);
        int i = taken++;
        SwrtcPeer *peer = queue[i];
        struct ctx *c = ctxs[i];
        pthread_mutex_unlock(&lock);
        /* Let the client connect and its traffic (and requests) get going first. */
        sleep_ms(150 + rand() % 500);
        long before = atomic_load(&c->calls);
        swrtc_peer_free(peer);
        atomic_store(&freed_flag[i], 1);
        /* Poison, then free: any later callback reads freed memory. */
        c->magic = 0;
        free(c);
        printf("freed %d calls=%ld\n", i, before);
        fflush(stdout);
    }
    swrtc_server_free(server);
    printf("done callbacks=%ld after_free=%ld\n", atomic_load(&total_calls),
           atomic_load(&after_free));
    fflush(stdout);
    return atomic_load(&after_free) == 0 ? 0 : 3;
}
