// Echo bot in C++ over include/smallwebrtc.hpp: starts the signalling server and echoes
// every caller with callbacks only, no thread per peer. The mic comes to a frame callback
// on a worker thread that writes it straight back; each app message m is answered with
// {"echo": m}; a peer is destroyed on the main thread once it reports closed.
//
//   g++ -std=c++17 -Wall -Wextra -Werror $(pkg-config --cflags smallwebrtc)
//       examples/cpp/echo_bot.cpp $(pkg-config --libs smallwebrtc) -o echo_bot_cpp
//   ./echo_bot_cpp [IP:PORT] [seconds]     (default 127.0.0.1:7860, run until killed)
//
// Prints "listening on http://IP:PORT/" once ready, then one line per peer event.
#include <atomic>
#include <chrono>
#include <csignal>
#include <cstdio>
#include <cstdlib>
#include <list>
#include <memory>
#include <mutex>
#include <string>
#include <thread>

#include "smallwebrtc.hpp"

namespace {

constexpr std::uint32_t kRate = 48000;

std::atomic<bool> stop{false};

struct Session {
    swrtc::Peer peer;
    std::string pc_id;
    std::atomic<bool> closed{false};
};

std::string echo_of(std::string_view m) {
    // m as is when it looks like JSON (a real bot would parse it), else as a string.
    bool json = !m.empty() && (m[0] == '{' || m[0] == '[' || m[0] == '"');
    std::string out = "{\"echo\":";
    if (json) {
        out += m;
    } else {
        out += '"';
        out += m;
        out += '"';
    }
    return out + "}";
}

// Runs on a server HTTP thread: install the callbacks, connect, hand over, return.
void start_session(std::mutex &lock, std::list<std::unique_ptr<Session>> &sessions,
                   swrtc::Peer peer, std::string_view pc_id) {
    auto s = std::make_unique<Session>();
    s->peer = std::move(peer);
    s->pc_id = std::string(pc_id);
    Session *session = s.get(); // lives until the main thread destroys it after closed
    session->peer.on_audio([session](swrtc::Span<const std::int16_t> pcm, std::uint32_t,
                                     std::uint16_t, std::uint64_t) {
        session->peer.write_audio(pcm, 0); // a worker thread: never block
    });
    swrtc::PeerCallbacks cb;
    cb.on_state = [session](SwrtcPeerState state) {
        std::printf("%s state %d\n", session->pc_id.c_str(), static_cast<int>(state));
        std::fflush(stdout);
        if (state == SWRTC_PEER_CLOSED)
            session->closed = true;
    };
    cb.on_message = [session](std::string_view data, bool binary) {
        if (binary)
            session->peer.send_binary({reinterpret_cast<const std::uint8_t *>(data.data()),
                                       data.size()});
        else
            session->peer.send_text(echo_of(data));
    };
    session->peer.set_callbacks(std::move(cb));
    session->peer.connect();
    std::printf("new peer %s\n", session->pc_id.c_str());
    std::fflush(stdout);
    std::lock_guard<std::mutex> g(lock);
    sessions.push_back(std::move(s));
}

} // namespace

int main(int argc, char **argv) {
    std::signal(SIGINT, [](int) { stop = true; });
    std::signal(SIGTERM, [](int) { stop = true; });
    SwrtcServerConfig cfg = swrtc::server_config();
    cfg.addr = argc > 1 ? argv[1] : "127.0.0.1:7860";
    cfg.peer.audio_in_sample_rate = kRate; // same rate both ways: frames go back unchanged
    cfg.peer.audio_out_sample_rate = kRate;
    int seconds = argc > 2 ? std::atoi(argv[2]) : 0;

    std::mutex lock;
    std::list<std::unique_ptr<Session>> sessions;
    try {
        swrtc::Server server(cfg, [&](swrtc::Peer peer, std::string_view pc_id, std::string_view) {
            start_session(lock, sessions, std::move(peer), pc_id);
        });
        std::string host = cfg.addr;
        host = host.substr(0, host.rfind(':'));
        std::printf("listening on http://%s:%u/\n", host.c_str(), unsigned(server.port()));
        std::fflush(stdout);
        auto end = std::chrono::steady_clock::now() + std::chrono::seconds(seconds);
        while (!stop && (seconds == 0 || std::chrono::steady_clock::now() < end)) {
            std::this_thread::sleep_for(std::chrono::milliseconds(100));
            // Closed sessions are destroyed here, outside their own callbacks.
            std::lock_guard<std::mutex> g(lock);
            sessions.remove_if([](const std::unique_ptr<Session> &s) { return s->closed.load(); });
        }
    } catch (const swrtc::Error &e) {
        std::fprintf(stderr, "error %d: %s\n", static_cast<int>(e.code()), e.what());
        return 1;
    }
    // The server is gone (no on_peer runs any more): free the peers still open.
    sessions.clear();
    return 0;
}
