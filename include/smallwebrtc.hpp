// smallwebrtc.hpp: a header-only C++17 wrapper over the C ABI of smallwebrtc.h.
//
// Move-only RAII handles (Runtime, Server, Peer), std::string_view / Span inputs (Span
// takes a pointer and a size, or any contiguous container: std::vector, std::array, C
// arrays, and std::span in C++20), std::function callbacks, and errors as exceptions
// (swrtc::Error) carrying the SwrtcResult code and the swrtc_last_error() message. The C
// functions stay available: every handle has raw().
//
// Threading: the C rules hold unchanged (see smallwebrtc.h and the README):
//  - Every method may be called from any thread, also from inside a callback, except the
//    ones that replace or remove callbacks (set_callbacks, on_audio, on_video) and
//    destruction or move-assignment of a handle: those mutate the C++ object, so one
//    thread at a time per object, like any C++ object.
//  - Peer callbacks (PeerCallbacks) run on the runtime's callback thread, one at a time,
//    events of a peer in order. Frame callbacks (on_audio, on_video) run on a worker
//    thread, frames of a peer in order, and must not block (write_audio with timeout 0).
//    A server's on_peer runs on one of its HTTP threads, before the answer is sent: keep
//    it short.
//  - Once a Peer (or Server) is destroyed, or set_callbacks / on_audio / on_video has
//    replaced or removed a callback, the old std::function never runs again and is
//    destroyed; when that happens from inside the very callback being replaced, it is
//    destroyed when that call returns.
//  - A callback must not let an exception out (C cannot unwind): one that escapes is
//    caught at the boundary, reported on stderr and dropped.
#ifndef SMALLWEBRTC_HPP
#define SMALLWEBRTC_HPP

#include <cstddef>
#include <cstdint>
#include <cstdio>
#include <functional>
#include <optional>
#include <stdexcept>
#include <string>
#include <string_view>
#include <type_traits>
#include <utility>

#include "smallwebrtc.h"

namespace swrtc {

/// A failed call: code() is the C result, what() the message of swrtc_last_error().
class Error : public std::runtime_error {
  public:
    Error(SwrtcResult code, const std::string &message)
        : std::runtime_error(message.empty() ? std::string("smallwebrtc error ") +
                                                   std::to_string(static_cast<int>(code))
                                             : message),
          code_(code) {}
    SwrtcResult code() const noexcept { return code_; }

  private:
    SwrtcResult code_;
};

/// A view of `size()` contiguous T: from a pointer and a size, or from any container with
/// data() and size() (std::vector, std::array, std::span, C arrays).
template <class T> class Span {
  public:
    constexpr Span() noexcept = default;
    constexpr Span(T *data, std::size_t size) noexcept : data_(data), size_(size) {}
    template <std::size_t N> constexpr Span(T (&array)[N]) noexcept : data_(array), size_(N) {}
    template <class C,
              class = std::enable_if_t<
                  !std::is_same_v<std::decay_t<C>, Span> &&
                  std::is_convertible_v<decltype(std::declval<C &>().data()), T *>>>
    constexpr Span(C &&container) noexcept : data_(container.data()), size_(container.size()) {}
    constexpr T *data() const noexcept { return data_; }
    constexpr std::size_t size() const noexcept { return size_; }
    constexpr bool empty() const noexcept { return size_ == 0; }
    constexpr T *begin() const noexcept { return data_; }
    constexpr T *end() const noexcept { return data_ + size_; }
    constexpr T &operator[](std::size_t i) const noexcept { return data_[i]; }

  private:
    T *data_ = nullptr;
    std::size_t size_ = 0;
};

namespace detail {

inline void check(SwrtcResult r) {
    if (r != SWRTC_OK)
        throw Error(r, swrtc_last_error());
}

/// True for the results a pull or a non-blocking call uses for "nothing now".
inline bool check_or_nothing(SwrtcResult r) {
    if (r == SWRTC_ERR_WOULD_BLOCK || r == SWRTC_ERR_TIMEOUT)
        return false;
    check(r);
    return true;
}

/// Owns one std::function that C calls through a user_data pointer. A box replaced or
/// freed from inside its own call is only marked, and deleted when that call returns.
struct BoxBase {
    virtual ~BoxBase() = default;
    bool doomed = false;
};

inline BoxBase *&running_box() {
    thread_local BoxBase *running = nullptr;
    return running;
}

/// Deletes `box` now, or after its running call when called from inside it.
inline void retire(BoxBase *box) {
    if (!box)
        return;
    if (running_box() == box)
        box->doomed = true;
    else
        delete box;
}

template <class F> struct Box : BoxBase {
    explicit Box(F f) : fn(std::move(f)) {}
    F fn;
};

/// Runs a box's function from a C callback: no exception crosses into C.
template <class B, class Call> void invoke(void *user_data, Call &&call) noexcept {
    auto *box = static_cast<B *>(user_data);
    BoxBase *outer = running_box();
    running_box() = box;
    try {
        call(*box);
    } catch (const std::exception &e) {
        std::fprintf(stderr, "smallwebrtc.hpp: exception in a callback: %s\n", e.what());
    } catch (...) {
        std::fputs("smallwebrtc.hpp: exception in a callback\n", stderr);
    }
    running_box() = outer;
    if (box->doomed)
        delete box;
}

inline std::string take_string(char *s) {
    std::string out = s ? std::string(s) : std::string();
    swrtc_string_free(s);
    return out;
}

} // namespace detail

/// Defaults of each configuration struct: change fields after, never start from zeros.
inline SwrtcPeerConfig peer_config() {
    SwrtcPeerConfig c;
    detail::check(swrtc_peer_config_default(&c));
    return c;
}
inline SwrtcServerConfig server_config() {
    SwrtcServerConfig c;
    detail::check(swrtc_server_config_default(&c));
    return c;
}
inline SwrtcRuntimeConfig runtime_config() {
    SwrtcRuntimeConfig c;
    detail::check(swrtc_runtime_config_default(&c));
    return c;
}

/// The library version, e.g. "0.1.0".
inline std::string_view version() { return swrtc_version(); }

/// A runtime (I/O and worker threads). Peers and servers made with a null Runtime use the
/// process-wide one. Peers keep their runtime alive until they are freed.
class Runtime {
  public:
    explicit Runtime(const SwrtcRuntimeConfig &cfg = runtime_config()) {
        detail::check(swrtc_runtime_new(&cfg, &rt_));
    }
    Runtime(Runtime &&o) noexcept : rt_(std::exchange(o.rt_, nullptr)) {}
    Runtime &operator=(Runtime &&o) noexcept {
        if (this != &o) {
            swrtc_runtime_free(rt_);
            rt_ = std::exchange(o.rt_, nullptr);
        }
        return *this;
    }
    Runtime(const Runtime &) = delete;
    Runtime &operator=(const Runtime &) = delete;
    /// Not from a callback of a peer on this runtime (as swrtc_runtime_free).
    ~Runtime() { swrtc_runtime_free(rt_); }
    const SwrtcRuntime *raw() const noexcept { return rt_; }

  private:
    SwrtcRuntime *rt_ = nullptr;
};

/// An event pulled with Peer::poll_event; owns its message bytes.
class Event {
  public:
    Event() noexcept : ev_{} {}
    Event(Event &&o) noexcept : ev_(std::exchange(o.ev_, SwrtcEvent{})) {}
    Event &operator=(Event &&o) noexcept {
        if (this != &o) {
            swrtc_event_clear(&ev_);
            ev_ = std::exchange(o.ev_, SwrtcEvent{});
        }
        return *this;
    }
    Event(const Event &) = delete;
    Event &operator=(const Event &) = delete;
    ~Event() { swrtc_event_clear(&ev_); }

    SwrtcEventKind kind() const noexcept { return ev_.kind; }
    SwrtcPeerState state() const noexcept { return ev_.state; }
    bool binary() const noexcept { return ev_.binary; }
    /// A message's bytes (valid while the event lives).
    Span<const std::uint8_t> bytes() const noexcept { return {ev_.data, ev_.len}; }
    std::string_view text() const noexcept {
        return {reinterpret_cast<const char *>(ev_.data), ev_.len};
    }
    std::uint32_t receiver_index() const noexcept { return ev_.receiver_index; }
    bool enabled() const noexcept { return ev_.enabled; }
    SwrtcEvent *raw() noexcept { return &ev_; }

  private:
    SwrtcEvent ev_;
};

/// A decoded RGB24 frame; its buffer is reused by the next read into it.
class VideoFrame {
  public:
    VideoFrame() noexcept : f_{} {}
    VideoFrame(VideoFrame &&o) noexcept : f_(std::exchange(o.f_, SwrtcVideoFrame{})) {}
    VideoFrame &operator=(VideoFrame &&o) noexcept {
        if (this != &o) {
            swrtc_video_frame_clear(&f_);
            f_ = std::exchange(o.f_, SwrtcVideoFrame{});
        }
        return *this;
    }
    VideoFrame(const VideoFrame &) = delete;
    VideoFrame &operator=(const VideoFrame &) = delete;
    ~VideoFrame() { swrtc_video_frame_clear(&f_); }

    Span<const std::uint8_t> rgb() const noexcept { return {f_.rgb, f_.len}; }
    std::uint32_t width() const noexcept { return f_.width; }
    std::uint32_t height() const noexcept { return f_.height; }
    std::size_t stride() const noexcept { return f_.stride; }
    std::uint64_t pts() const noexcept { return f_.pts; }
    SwrtcVideoSource source() const noexcept { return f_.source; }
    SwrtcVideoFrame *raw() noexcept { return &f_; }

  private:
    SwrtcVideoFrame f_;
};

/// Event callbacks of a peer; any may be empty. They run on the runtime's callback thread.
struct PeerCallbacks {
    std::function<void(SwrtcPeerState)> on_state;
    /// `data` is valid only during the call; text messages are also NUL-terminated.
    std::function<void(std::string_view data, bool binary)> on_message;
    std::function<void(std::uint32_t receiver_index, bool enabled)> on_track_status;
};

/// Mic frames: interleaved samples, rate, channels, pts in samples per channel.
using AudioCallback = std::function<void(Span<const std::int16_t> samples, std::uint32_t rate,
                                         std::uint16_t channels, std::uint64_t pts)>;
/// Decoded video: RGB24, `height` rows of `stride` bytes, pts on the 90 kHz clock.
using VideoCallback = std::function<void(SwrtcVideoSource source, Span<const std::uint8_t> rgb,
                                         std::uint32_t width, std::uint32_t height,
                                         std::size_t stride, std::uint64_t pts)>;

/// One client connection. Destroying it closes the peer (peerLeft), frees its ports, and
/// waits for a running callback: afterwards none of its callbacks runs.
class Peer {
  public:
    /// An empty handle (what a moved-from Peer is); calls on it throw.
    Peer() noexcept = default;
    /// A new peer (bound to its UDP ports) on `rt`, null: the process-wide runtime.
    explicit Peer(const SwrtcPeerConfig &cfg, PeerCallbacks callbacks = {},
                  const Runtime *rt = nullptr) {
        detail::check(swrtc_peer_new(rt ? rt->raw() : nullptr, &cfg, nullptr, &peer_));
        if (callbacks.on_state || callbacks.on_message || callbacks.on_track_status)
            set_callbacks(std::move(callbacks));
    }
    /// Takes ownership of a C handle (such as the one swrtc_server_accept returns).
    static Peer adopt(SwrtcPeer *peer) noexcept { return Peer(peer); }

    Peer(Peer &&o) noexcept
        : peer_(std::exchange(o.peer_, nullptr)), events_(std::exchange(o.events_, nullptr)),
          audio_(std::exchange(o.audio_, nullptr)), camera_(std::exchange(o.camera_, nullptr)),
          screen_(std::exchange(o.screen_, nullptr)) {}
    Peer &operator=(Peer &&o) noexcept {
        if (this != &o) {
            reset();
            peer_ = std::exchange(o.peer_, nullptr);
            events_ = std::exchange(o.events_, nullptr);
            audio_ = std::exchange(o.audio_, nullptr);
            camera_ = std::exchange(o.camera_, nullptr);
            screen_ = std::exchange(o.screen_, nullptr);
        }
        return *this;
    }
    Peer(const Peer &) = delete;
    Peer &operator=(const Peer &) = delete;
    ~Peer() { reset(); }

    /// Frees the peer now (as the destructor); the handle is then empty.
    void reset() noexcept {
        swrtc_peer_free(std::exchange(peer_, nullptr));
        detail::retire(std::exchange(events_, nullptr));
        detail::retire(std::exchange(audio_, nullptr));
        detail::retire(std::exchange(camera_, nullptr));
        detail::retire(std::exchange(screen_, nullptr));
    }
    explicit operator bool() const noexcept { return peer_ != nullptr; }
    const SwrtcPeer *raw() const noexcept { return peer_; }

    /// The SDP answer to an offer (first or renegotiation).
    std::string handle_offer(std::string_view offer) const {
        char *answer = nullptr;
        detail::check(swrtc_peer_handle_offer(peer_, offer.data(), offer.size(), &answer, nullptr));
        return detail::take_string(answer);
    }
    /// A trickled candidate; an empty one ends them.
    void add_ice_candidate(std::string_view candidate) const {
        detail::check(swrtc_peer_add_ice_candidate(peer_, candidate.empty() ? nullptr
                                                                            : candidate.data(),
                                                   candidate.size()));
    }
    void connect() const { detail::check(swrtc_peer_connect(peer_)); }
    void disconnect() const { detail::check(swrtc_peer_disconnect(peer_)); }
    SwrtcPeerState state() const {
        SwrtcPeerState s;
        detail::check(swrtc_peer_state(peer_, &s));
        return s;
    }

    /// Sends a text message; false if it was dropped because 50 are already queued.
    bool send_text(std::string_view text) const {
        return detail::check_or_nothing(swrtc_peer_send_message(
            peer_, reinterpret_cast<const std::uint8_t *>(text.data()), text.size(), false));
    }
    /// Sends a binary message; false if dropped (queue full).
    bool send_binary(Span<const std::uint8_t> data) const {
        return detail::check_or_nothing(
            swrtc_peer_send_message(peer_, data.data(), data.size(), true));
    }

    /// The next event (peers without PeerCallbacks), waiting up to `timeout_ms`; nullopt if
    /// none came in time.
    std::optional<Event> poll_event(std::uint32_t timeout_ms = 0) const {
        Event ev;
        if (!detail::check_or_nothing(swrtc_peer_poll_event(peer_, timeout_ms, ev.raw())))
            return std::nullopt;
        return ev;
    }

    /// Reads one 20 ms mic frame into `buf`, waiting up to `timeout_ms`; returns the samples
    /// written, 0 if none came in time. `pts` (optional) receives its position.
    std::size_t read_audio(Span<std::int16_t> buf, std::uint32_t timeout_ms = 0,
                           std::uint64_t *pts = nullptr) const {
        std::size_t n = 0;
        if (!detail::check_or_nothing(
                swrtc_peer_read_audio(peer_, buf.data(), buf.size(), &n, pts, timeout_ms)))
            return 0;
        return n;
    }
    /// Queues whole 10 ms of audio; with `timeout_ms` > 0 waits until sent. False when the
    /// queue is full (10 s) or the wait timed out.
    bool write_audio(Span<const std::int16_t> pcm, std::uint32_t timeout_ms = 0) const {
        return detail::check_or_nothing(
            swrtc_peer_write_audio(peer_, pcm.data(), pcm.size(), timeout_ms));
    }
    void clear_audio() const { detail::check(swrtc_peer_clear_audio(peer_)); }

    /// The newest unread frame of `source` into `frame`; false if none came in time.
    bool read_video(SwrtcVideoSource source, VideoFrame &frame,
                    std::uint32_t timeout_ms = 0) const {
        return detail::check_or_nothing(
            swrtc_peer_read_video(peer_, source, timeout_ms, frame.raw()));
    }
    /// Sends one RGB24 frame of the configured size (`stride` 0: width * 3).
    void write_video(Span<const std::uint8_t> rgb, std::uint32_t width, std::uint32_t height,
                     std::size_t stride = 0) const {
        detail::check(
            swrtc_peer_write_video(peer_, rgb.data(), rgb.size(), width, height, stride));
    }

    SwrtcPeerStats stats() const {
        SwrtcPeerStats s;
        detail::check(swrtc_peer_get_stats(peer_, &s));
        return s;
    }
    SwrtcAudioStats audio_stats() const {
        SwrtcAudioStats s;
        detail::check(swrtc_peer_get_audio_stats(peer_, &s));
        return s;
    }
    SwrtcVideoStats video_stats() const {
        SwrtcVideoStats s;
        detail::check(swrtc_peer_get_video_stats(peer_, &s));
        return s;
    }

    /// Installs or replaces the event callbacks (all empty: removes them, back to
    /// poll_event). Not concurrently with another set_* or destruction of this object.
    void set_callbacks(PeerCallbacks callbacks) {
        using B = detail::Box<PeerCallbacks>;
        B *box = nullptr;
        SwrtcPeerCallbacks c{};
        if (callbacks.on_state || callbacks.on_message || callbacks.on_track_status) {
            box = new B(std::move(callbacks));
            c.user_data = box;
            if (box->fn.on_state)
                c.on_state = [](void *ud, SwrtcPeerState s) {
                    detail::invoke<B>(ud, [&](B &b) { b.fn.on_state(s); });
                };
            if (box->fn.on_message)
                c.on_message = [](void *ud, const std::uint8_t *data, std::size_t len, bool bin) {
                    detail::invoke<B>(ud, [&](B &b) {
                        b.fn.on_message({reinterpret_cast<const char *>(data), len}, bin);
                    });
                };
            if (box->fn.on_track_status)
                c.on_track_status = [](void *ud, std::uint32_t index, bool enabled) {
                    detail::invoke<B>(ud, [&](B &b) { b.fn.on_track_status(index, enabled); });
                };
        }
        SwrtcResult r = swrtc_peer_set_callbacks(peer_, box ? &c : nullptr);
        if (r != SWRTC_OK) {
            delete box;
            detail::check(r);
        }
        // The C call returned: the old box's functions never run again (unless this is one).
        detail::retire(std::exchange(events_, box));
    }

    /// Push delivery of the mic on a worker thread (empty: back to read_audio).
    void on_audio(AudioCallback cb) {
        using B = detail::Box<AudioCallback>;
        B *box = cb ? new B(std::move(cb)) : nullptr;
        auto trampoline = [](void *ud, const std::int16_t *pcm, std::size_t n, std::uint32_t rate,
                             std::uint16_t channels, std::uint64_t pts) {
            detail::invoke<B>(ud, [&](B &b) { b.fn({pcm, n}, rate, channels, pts); });
        };
        SwrtcResult r = swrtc_peer_set_audio_callback(peer_, box ? +trampoline : nullptr, box);
        if (r != SWRTC_OK) {
            delete box;
            detail::check(r);
        }
        detail::retire(std::exchange(audio_, box));
    }

    /// Push delivery of one video source on a worker thread (empty: back to read_video).
    void on_video(SwrtcVideoSource source, VideoCallback cb) {
        using B = detail::Box<VideoCallback>;
        B *box = cb ? new B(std::move(cb)) : nullptr;
        auto trampoline = [](void *ud, SwrtcVideoSource src, const std::uint8_t *rgb,
                             std::uint32_t w, std::uint32_t h, std::size_t stride,
                             std::uint64_t pts) {
            detail::invoke<B>(ud, [&](B &b) { b.fn(src, {rgb, h * stride}, w, h, stride, pts); });
        };
        SwrtcResult r =
            swrtc_peer_set_video_callback(peer_, source, box ? +trampoline : nullptr, box);
        if (r != SWRTC_OK) {
            delete box;
            detail::check(r);
        }
        detail::BoxBase *&slot = source == SWRTC_VIDEO_SCREEN ? screen_ : camera_;
        detail::retire(std::exchange(slot, box));
    }

  private:
    explicit Peer(SwrtcPeer *peer) noexcept : peer_(peer) {}

    SwrtcPeer *peer_ = nullptr;
    detail::BoxBase *events_ = nullptr;
    detail::BoxBase *audio_ = nullptr;
    detail::BoxBase *camera_ = nullptr;
    detail::BoxBase *screen_ = nullptr;
};

/// A peer the server answered, with its pc_id and the client's request_data (JSON).
struct NewPeer {
    Peer peer;
    std::string pc_id;
    std::string request_data;
};

/// Called on a server HTTP thread for each new client, before the answer is sent: keep it
/// short (move the Peer to where it lives and return). The Peer starts without callbacks.
using OnPeer = std::function<void(Peer peer, std::string_view pc_id,
                                  std::string_view request_data)>;

/// The HTTP signalling server. Destroying it stops listening and waits for requests in
/// progress; peers already handed over live on.
class Server {
  public:
    /// An empty handle (what a moved-from Server is).
    Server() noexcept = default;
    /// Starts listening on `cfg.addr`. With an empty `on_peer`, new peers wait for accept().
    explicit Server(const SwrtcServerConfig &cfg, OnPeer on_peer = {},
                    const Runtime *rt = nullptr) {
        using B = detail::Box<OnPeer>;
        B *box = on_peer ? new B(std::move(on_peer)) : nullptr;
        SwrtcServerCallbacks c{};
        if (box) {
            c.user_data = box;
            c.on_peer = [](void *ud, SwrtcPeer *peer, const char *pc_id, const char *data) {
                // Owned at once, so the peer is freed even if the callback throws.
                Peer owned = Peer::adopt(peer);
                detail::invoke<B>(ud, [&](B &b) { b.fn(std::move(owned), pc_id, data); });
            };
        }
        SwrtcResult r = swrtc_server_new(rt ? rt->raw() : nullptr, &cfg, box ? &c : nullptr,
                                         &server_);
        if (r != SWRTC_OK) {
            delete box;
            detail::check(r);
        }
        on_peer_ = box;
    }
    Server(Server &&o) noexcept
        : server_(std::exchange(o.server_, nullptr)), on_peer_(std::exchange(o.on_peer_, nullptr)) {}
    Server &operator=(Server &&o) noexcept {
        if (this != &o) {
            reset();
            server_ = std::exchange(o.server_, nullptr);
            on_peer_ = std::exchange(o.on_peer_, nullptr);
        }
        return *this;
    }
    Server(const Server &) = delete;
    Server &operator=(const Server &) = delete;
    ~Server() { reset(); }

    void reset() noexcept {
        swrtc_server_free(std::exchange(server_, nullptr));
        detail::retire(std::exchange(on_peer_, nullptr));
    }
    const SwrtcServer *raw() const noexcept { return server_; }

    /// The TCP port it listens on.
    std::uint16_t port() const {
        std::uint16_t p = 0;
        detail::check(swrtc_server_local_port(server_, &p));
        return p;
    }
    /// The next new peer (servers without on_peer), waiting up to `timeout_ms`.
    std::optional<NewPeer> accept(std::uint32_t timeout_ms = 0) const {
        SwrtcPeer *peer = nullptr;
        char *pc_id = nullptr;
        char *data = nullptr;
        if (!detail::check_or_nothing(swrtc_server_accept(server_, timeout_ms, &peer, &pc_id,
                                                          &data)))
            return std::nullopt;
        return NewPeer{Peer::adopt(peer), detail::take_string(pc_id), detail::take_string(data)};
    }

  private:
    SwrtcServer *server_ = nullptr;
    detail::BoxBase *on_peer_ = nullptr;
};

} // namespace swrtc

#endif // SMALLWEBRTC_HPP
