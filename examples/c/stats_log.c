/*
 * Logs and stats from C: forwards the library's log messages to a callback, answers an
 * SDP offer read from a file, and once connected prints the peer's network stats and its
 * stats JSON.
 *
 *   stats_log OFFER_FILE
 *
 * stdout: the answer, a line "--END--", then "key value" lines (rtt_ms, jitter_in_ms,
 * local_type, remote_type, transport, remote_address, bytes_in, bytes_out, json, logs,
 * log_threads, ...). Log messages are counted, not printed (the callback must not block).
 */
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "smallwebrtc.h"

static atomic_int logs;            /* messages received */
static atomic_int logs_elsewhere;  /* ... on a thread other than main's */
static atomic_int bad_strings;     /* a length that does not match the NUL */
static atomic_int reentry_refused; /* swrtc_set_log_callback from inside was refused */
static pthread_t main_thread;

static void on_log(void *user_data, SwrtcLogLevel level, const char *target, size_t target_len,
                   const char *message, size_t message_len) {
    (void)user_data;
    if (level < SWRTC_LOG_ERROR || level > SWRTC_LOG_DEBUG) atomic_fetch_add(&bad_strings, 1);
    if (strlen(target) != target_len || strlen(message) != message_len || target_len == 0)
        atomic_fetch_add(&bad_strings, 1);
    if (!pthread_equal(pthread_self(), main_thread)) atomic_fetch_add(&logs_elsewhere, 1);
    if (atomic_fetch_add(&logs, 1) == 0 &&
        swrtc_set_log_callback(SWRTC_LOG_DEBUG, on_log, NULL) == SWRTC_ERR_INVALID_ARGUMENT)
        atomic_store(&reentry_refused, 1);
}

static char *read_file(const char *path, size_t *len) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    size_t cap = 1 << 16;
    char *buf = malloc(cap);
    *len = buf ? fread(buf, 1, cap, f) : 0;
    fclose(f);
    return buf;
}

static void sleep_ms(long ms) {
    struct timespec t = {ms / 1000, (ms % 1000) * 1000000L};
    nanosleep(&t, NULL);
}

int main(int argc, char **argv) {
    if (argc < 2) return 2;
    main_thread = pthread_self();
    if (swrtc_set_log_callback(42, on_log, NULL) != SWRTC_ERR_INVALID_ARGUMENT) return 3;
    if (swrtc_set_log_callback(SWRTC_LOG_DEBUG, on_log, NULL) != SWRTC_OK) {
        fprintf(stderr, "set_log_callback: %s\n", swrtc_last_error());
        return 1;
    }
    size_t offer_len = 0;
    char *offer = read_file(argv[1], &offer_len);
    if (!offer) return 2;

    SwrtcPeerConfig cfg;
    swrtc_peer_config_default(&cfg);
    cfg.bind_ip = "127.0.0.1";
    SwrtcPeer *peer = NULL;
    if (swrtc_peer_new(NULL, &cfg, NULL, &peer) != SWRTC_OK) return 1;
    char *answer = NULL;
    size_t answer_len = 0;
    if (swrtc_peer_handle_offer(peer, offer, offer_len, &answer, &answer_len) != SWRTC_OK) {
        fprintf(stderr, "handle_offer: %s\n", swrtc_last_error());
        return 1;
    }
    free(offer);
    fwrite(answer, 1, answer_len, stdout);
    printf("\n--END--\n");
    fflush(stdout);
    swrtc_string_free(answer);
    swrtc_peer_connect(peer);

    /* Up to 20 s for two stats reports with an RTT and a selected pair. */
    SwrtcNetworkStats s;
    memset(&s, 0, sizeof s);
    for (int i = 0; i < 200; i++) {
        if (swrtc_peer_get_network_stats(peer, &s) != SWRTC_OK) return 1;
        if (s.reports >= 2 && s.rtt_ms > 0 && s.remote_candidate_type != SWRTC_CANDIDATE_UNKNOWN &&
            s.packets_in > 0)
            break;
        sleep_ms(100);
    }
    printf("reports %llu\n", (unsigned long long)s.reports);
    printf("rtt_ms %f\n", s.rtt_ms);
    printf("jitter_in_ms %f\n", s.jitter_in_ms);
    printf("loss_in %f\n", s.loss_in);
    printf("bitrate_in_bps %llu\n", (unsigned long long)s.bitrate_in_bps);
    printf("bitrate_out_bps %llu\n", (unsigned long long)s.bitrate_out_bps);
    printf("bytes_in %llu\n", (unsigned long long)s.bytes_in);
    printf("bytes_out %llu\n", (unsigned long long)s.bytes_out);
    printf("packets_in %llu\n", (unsigned long long)s.packets_in);
    printf("local_type %d\n", (int)s.local_candidate_type);
    printf("remote_type %d\n", (int)s.remote_candidate_type);
    printf("transport %d\n", (int)s.transport);
    printf("local_address %s\n", s.local_address);
    printf("remote_address %s\n", s.remote_address);

    /* JSON: ask for the size, refuse a short buffer, then fill one with room to spare. */
    size_t need = 0;
    if (swrtc_peer_get_stats_json(peer, NULL, 0, &need) != SWRTC_OK || need == 0) return 4;
    char tiny[8];
    size_t len = 0;
    if (swrtc_peer_get_stats_json(peer, tiny, sizeof tiny, &len) != SWRTC_ERR_BUFFER_TOO_SMALL ||
        len < sizeof tiny)
        return 5;
    size_t cap = need + 512;
    char *json = malloc(cap);
    if (!json || swrtc_peer_get_stats_json(peer, json, cap, &len) != SWRTC_OK) return 6;
    if (strlen(json) != len) return 7;
    printf("json %s\n", json);
    free(json);

    /* Logging off: once the call returns no callback runs. */
    if (swrtc_set_log_callback(SWRTC_LOG_OFF, NULL, NULL) != SWRTC_OK) return 8;
    int before = atomic_load(&logs);
    swrtc_peer_free(peer);
    sleep_ms(200);
    printf("logs %d\n", before);
    printf("logs_after_off %d\n", atomic_load(&logs) - before);
    printf("log_threads_elsewhere %d\n", atomic_load(&logs_elsewhere));
    printf("log_bad_strings %d\n", atomic_load(&bad_strings));
    printf("log_reentry_refused %d\n", atomic_load(&reentry_refused));
    fflush(stdout);
    return 0;
}
