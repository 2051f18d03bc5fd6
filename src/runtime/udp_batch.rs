//! Batched syscalls on the runtime's shared UDP sockets: one `recvmmsg` (quinn-udp)
//! reads up to `MAX_SLOTS` datagrams into a preallocated arena, and the datagrams every
//! peer flushes in a loop turn are queued and sent together: consecutive ones of equal
//! size to the same address as one UDP GSO `sendmsg` (quinn-udp) where the kernel has it,
//! the rest (nearly all: peers send few datagrams each, of differing sizes) in one
//! `sendmmsg` per 64 on Linux (nix; quinn-udp has no sendmmsg), one `sendmsg` each
//! elsewhere.
//!
//! Per-peer sockets do not come here: one peer's socket rarely holds more than one
//! datagram per wakeup, so batching would buy nothing there.

use std::io::{ErrorKind as IoKind, IoSliceMut};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use mio::net::UdpSocket;
use quinn_udp::{RecvMeta, Transmit, UdpSocketState};
use tracing::{debug, warn};

use super::demux::DemuxCounters;
use crate::limits;

/// Most datagrams one receive call reads (quinn-udp's own batch bound on Linux).
const MAX_SLOTS: usize = 32;
/// Receive arena per I/O thread when the kernel may coalesce datagrams (UDP GRO): a
/// coalesced read can hold up to 64 KiB, so fewer, larger slots.
const GRO_ARENA: usize = 512 * 1024;
/// Largest coalesced read the kernel hands out with GRO on (its 64 KiB GSO bound).
const GRO_SLOT: usize = 64 * 1024;
/// Queued outgoing bytes that force a send before the end of the loop turn (bounds the
/// queue; a GSO batch is limited to 64 KiB anyway).
const OUT_BYTES_MAX: usize = 64 * 1024;
/// Queued outgoing datagrams that force a send before the end of the loop turn.
const OUT_MAX: usize = 256;

/// Syscall and error counters of the shared sockets, readable from any thread.
#[derive(Debug, Default)]
pub(crate) struct BatchCounters {
    pub recv_calls: AtomicU64,
    pub datagrams_in: AtomicU64,
    pub send_calls: AtomicU64,
    pub datagrams_out: AtomicU64,
    /// Receive calls that failed other than with WouldBlock (ICMP errors, mostly).
    pub recv_errors: AtomicU64,
    /// Datagrams not sent: full socket buffer (WouldBlock) or a send error.
    pub send_dropped: AtomicU64,
}

/// One queued outgoing datagram: `out_bytes[start..end]` to `dest` from shared socket
/// `sock`.
struct Out {
    sock: usize,
    dest: SocketAddr,
    start: usize,
    end: usize,
}

/// The batching state of one I/O thread's shared sockets.
pub(crate) struct UdpBatch {
    /// quinn-udp's per-socket state, by shared socket index.
    states: Vec<UdpSocketState>,
    arena: Vec<u8>,
    slot_len: usize,
    slots: usize,
    metas: [RecvMeta; MAX_SLOTS],
    out: Vec<Out>,
    out_bytes: Vec<u8>,
    /// Indexes into `out` of single datagrams waiting for one `sendmmsg`, all on the
    /// socket of the first.
    #[cfg(target_os = "linux")]
    singles: Vec<usize>,
    #[cfg(target_os = "linux")]
    mmsg: mmsg::Mmsg,
    counters: Arc<DemuxCounters>,
}

impl UdpBatch {
    /// Sets up every shared socket for batching; fails if quinn-udp cannot configure one
    /// (the runtime then fails to start, as with a bind error).
    pub fn new(
        socks: &[(UdpSocket, SocketAddr)],
        counters: Arc<DemuxCounters>,
    ) -> std::io::Result<UdpBatch> {
        let mut states = Vec::with_capacity(socks.len());
        let mut gro = 1;
        for (sock, _) in socks {
            let st = UdpSocketState::new(sock.into())?;
            gro = gro.max(st.gro_segments());
            states.push(st);
        }
        // Without GRO one slot holds one datagram, and one byte past the limit is enough
        // to count an oversized datagram as one (as the single-datagram path did).
        let (slot_len, slots) = if gro > 1 {
            (GRO_SLOT, (GRO_ARENA / GRO_SLOT).min(MAX_SLOTS))
        } else {
            (limits::MAX_DATAGRAM + 1, MAX_SLOTS)
        };
        let arena = if socks.is_empty() {
            Vec::new()
        } else {
            vec![0; slot_len * slots]
        };
        Ok(UdpBatch {
            states,
            arena,
            slot_len,
            slots,
            metas: [RecvMeta::default(); MAX_SLOTS],
            out: Vec::new(),
            out_bytes: Vec::new(),
            #[cfg(target_os = "linux")]
            singles: Vec::new(),
            #[cfg(target_os = "linux")]
            mmsg: mmsg::Mmsg::default(),
            counters,
        })
    }

    /// Reads up to one batch from shared socket `idx`; returns how many reads landed
    /// (see `datagram`). WouldBlock is returned as is (the socket is drained); other
    /// errors are counted and logged here.
    pub fn recv(&mut self, idx: usize, sock: &UdpSocket) -> std::io::Result<usize> {
        let Some(state) = self.states.get(idx) else {
            return Err(IoKind::NotFound.into());
        };
        let mut chunks = self.arena.chunks_mut(self.slot_len);
        let mut bufs: [IoSliceMut<'_>; MAX_SLOTS] =
            std::array::from_fn(|_| IoSliceMut::new(chunks.next().unwrap_or(&mut [])));
        let res = state.recv(sock.into(), &mut bufs[..self.slots], &mut self.metas);
        self.counters
            .batch
            .recv_calls
            .fetch_add(1, Ordering::Relaxed);
        match res {
            Ok(n) => Ok(n.min(self.slots)),
            Err(e) => {
                if !matches!(e.kind(), IoKind::WouldBlock | IoKind::Interrupted) {
                    self.counters
                        .batch
                        .recv_errors
                        .fetch_add(1, Ordering::Relaxed);
                    // ICMP errors (port unreachable) surface here on Linux; not fatal.
                    debug!("recvmmsg on a shared socket failed: {e}");
                }
                Err(e)
            }
        }
    }

    /// The datagrams of read `i` of the last `recv`: its source and the datagrams it
    /// holds (several when the kernel coalesced equal-size datagrams of one source).
    pub fn datagrams(&self, i: usize) -> (SocketAddr, std::slice::Chunks<'_, u8>) {
        let meta = &self.metas[i];
        let start = i * self.slot_len;
        let len = meta.len.min(self.slot_len);
        let data = self.arena.get(start..start + len).unwrap_or_default();
        let stride = if meta.stride == 0 { len } else { meta.stride };
        self.counters
            .batch
            .datagrams_in
            .fetch_add(len.div_ceil(stride.max(1)) as u64, Ordering::Relaxed);
        (meta.addr, data.chunks(stride.max(1)))
    }

    /// Queues a datagram for shared socket `sock`; returns true when the queue is full
    /// enough that the caller should `send_all` now.
    pub fn queue(&mut self, sock: usize, dest: SocketAddr, data: &[u8]) -> bool {
        let start = self.out_bytes.len();
        self.out_bytes.extend_from_slice(data);
        self.out.push(Out {
            sock,
            dest,
            start,
            end: self.out_bytes.len(),
        });
        self.out.len() >= OUT_MAX || self.out_bytes.len() >= OUT_BYTES_MAX
    }

    /// Sends every queued datagram, in order, in as few calls as the kernel allows.
    pub fn send_all(&mut self, socks: &[(UdpSocket, SocketAddr)]) {
        let mut i = 0;
        while i < self.out.len() {
            let first = &self.out[i];
            let seg = first.end - first.start;
            let gso = self
                .states
                .get(first.sock)
                .map_or(1, UdpSocketState::max_gso_segments);
            // GSO sends one buffer as equal-size datagrams to one address; only the last
            // may be shorter. Queued datagrams are contiguous, so a run is one slice.
            let mut j = i + 1;
            while j < self.out.len()
                && j - i < gso
                && self.out[j].sock == first.sock
                && self.out[j].dest == first.dest
                && self.out[j - 1].end - self.out[j - 1].start == seg
                && self.out[j].end - self.out[j].start <= seg
                && self.out[j].end - first.start <= GRO_SLOT
            {
                j += 1;
            }
            #[cfg(target_os = "linux")]
            {
                if j - i == 1 {
                    if self
                        .singles
                        .first()
                        .is_some_and(|&s| self.out[s].sock != first.sock)
                    {
                        self.send_singles(socks);
                    }
                    self.singles.push(i);
                    i = j;
                    continue;
                }
                // Keep the order: what was queued before this run leaves before it.
                self.send_singles(socks);
            }
            if !self.send_run(socks, i, j) && j - i > 1 {
                // quinn-udp turns GSO off after the kernel refuses it; send them singly.
                for k in i..j {
                    self.send_run(socks, k, k + 1);
                }
            }
            i = j;
        }
        #[cfg(target_os = "linux")]
        self.send_singles(socks);
        self.out.clear();
        self.out_bytes.clear();
    }

    /// Sends the pending single datagrams in as few `sendmmsg` calls as it takes.
    #[cfg(target_os = "linux")]
    fn send_singles(&mut self, socks: &[(UdpSocket, SocketAddr)]) {
        let Some(&first) = self.singles.first() else {
            return;
        };
        let c = &self.counters.batch;
        match socks.get(self.out[first].sock) {
            Some((sock, _)) => {
                use std::os::fd::AsRawFd;
                let r = self
                    .mmsg
                    .send(sock.as_raw_fd(), &self.out_bytes, &self.out, &self.singles);
                c.send_calls.fetch_add(r.calls, Ordering::Relaxed);
                c.datagrams_out.fetch_add(r.sent, Ordering::Relaxed);
                c.send_dropped.fetch_add(r.dropped, Ordering::Relaxed);
            }
            None => {
                c.send_dropped
                    .fetch_add(self.singles.len() as u64, Ordering::Relaxed);
            }
        }
        self.singles.clear();
    }

    /// Sends `out[i..j]` (a GSO run when longer than one); false if it failed.
    fn send_run(&self, socks: &[(UdpSocket, SocketAddr)], i: usize, j: usize) -> bool {
        let (first, last) = (&self.out[i], &self.out[j - 1]);
        let n = (j - i) as u64;
        let (Some(state), Some((sock, local))) =
            (self.states.get(first.sock), socks.get(first.sock))
        else {
            self.counters
                .batch
                .send_dropped
                .fetch_add(n, Ordering::Relaxed);
            return true;
        };
        let t = Transmit {
            destination: first.dest,
            ecn: None,
            contents: &self.out_bytes[first.start..last.end],
            segment_size: (n > 1).then_some(first.end - first.start),
            src_ip: None,
        };
        self.counters
            .batch
            .send_calls
            .fetch_add(1, Ordering::Relaxed);
        match state.try_send(sock.into(), &t) {
            Ok(()) => {
                self.counters
                    .batch
                    .datagrams_out
                    .fetch_add(n, Ordering::Relaxed);
                true
            }
            Err(e) if n > 1 && e.kind() != IoKind::WouldBlock => {
                warn!("GSO send of {n} datagrams to {} failed: {e}", first.dest);
                false
            }
            Err(e) => {
                self.counters
                    .batch
                    .send_dropped
                    .fetch_add(n, Ordering::Relaxed);
                debug!("send to {} from {local} failed: {e}", first.dest);
                true
            }
        }
    }
}

/// `sendmmsg` through nix's safe wrapper.
#[cfg(target_os = "linux")]
mod mmsg {
    use std::io::IoSlice;
    use std::os::fd::RawFd;

    use nix::errno::Errno;
    use nix::sys::socket::{sendmmsg, ControlMessage, MsgFlags, MultiHeaders, SockaddrStorage};
    use tracing::debug;

    use super::Out;

    /// Datagrams per call (the kernel takes up to 1024).
    const MAX: usize = 64;

    /// The destinations of one call, kept between calls. (nix's headers hold raw
    /// pointers, so they are not `Send` and cannot live in the I/O thread's state, which
    /// is built before the thread starts: they are allocated per call, a few KiB.)
    #[derive(Default)]
    pub(super) struct Mmsg {
        addrs: Vec<Option<SockaddrStorage>>,
    }

    #[derive(Default)]
    pub(super) struct Sent {
        pub calls: u64,
        pub sent: u64,
        pub dropped: u64,
    }

    impl Mmsg {
        /// Sends `out[i]` for each `i` of `which`, in order, on `fd`. A full socket buffer
        /// drops the rest; another error drops the datagram it names and goes on.
        pub fn send(&mut self, fd: RawFd, bytes: &[u8], out: &[Out], which: &[usize]) -> Sent {
            let mut r = Sent::default();
            let mut k = 0;
            while k < which.len() {
                let chunk = &which[k..(k + MAX).min(which.len())];
                self.addrs.clear();
                self.addrs.extend(
                    chunk
                        .iter()
                        .map(|&o| Some(SockaddrStorage::from(out[o].dest))),
                );
                // One small vector per call (not per datagram): the slices borrow `bytes`.
                let slices: Vec<[IoSlice<'_>; 1]> = chunk
                    .iter()
                    .map(|&o| [IoSlice::new(&bytes[out[o].start..out[o].end])])
                    .collect();
                let no_cmsgs: [ControlMessage<'_>; 0] = [];
                let mut headers = MultiHeaders::<SockaddrStorage>::preallocate(chunk.len(), None);
                r.calls += 1;
                let res = sendmmsg(
                    fd,
                    &mut headers,
                    &slices,
                    &self.addrs,
                    no_cmsgs,
                    MsgFlags::empty(),
                )
                .map(Iterator::count);
                match res {
                    Ok(n) => {
                        r.sent += n as u64;
                        k += n.max(1);
                        r.dropped += u64::from(n == 0);
                    }
                    Err(Errno::EINTR) => {}
                    Err(Errno::EAGAIN) => {
                        r.dropped += (which.len() - k) as u64;
                        debug!("shared socket full: {} datagrams dropped", which.len() - k);
                        break;
                    }
                    Err(e) => {
                        debug!("sendmmsg to {} failed: {e}", out[chunk[0]].dest);
                        r.dropped += 1;
                        k += 1;
                    }
                }
            }
            r
        }
    }
}

#[cfg(test)]
#[path = "udp_batch_tests.rs"]
mod tests;
