//! The bounded hand-off of decoded input audio from a worker to the app: `FrameRing`.
//! Owns the frame queue, its drop counter and a pool of spare buffers; must not decode or
//! spawn threads. Locks are held only to move a frame in or out.

use std::collections::VecDeque;
use std::fmt;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex};

/// One block of decoded audio.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct AudioFrame {
    /// Interleaved signed 16-bit samples.
    pub samples: Vec<i16>,
    /// Samples per second per channel.
    pub sample_rate: u32,
    /// Channel count (1 or 2).
    pub channels: u16,
    /// Position of the first sample, in samples per channel at `sample_rate` since the stream
    /// started.
    pub pts: u64,
}

impl AudioFrame {
    /// Samples per channel.
    pub fn frames(&self) -> usize {
        self.samples.len() / self.channels.max(1) as usize
    }

    /// The duration this frame covers.
    pub fn duration(&self) -> Duration {
        if self.sample_rate == 0 {
            return Duration::ZERO;
        }
        Duration::from_nanos(self.frames() as u64 * 1_000_000_000 / self.sample_rate as u64)
    }
}

/// Why [`FrameRing::pop`] returned no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PopError {
    /// The timeout passed with no frame.
    Timeout,
    /// Non-blocking pop found the ring empty.
    WouldBlock,
    /// The ring is closed; no more frames will come.
    Closed,
}

impl fmt::Display for PopError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            PopError::Timeout => "timed out waiting for audio",
            PopError::WouldBlock => "no audio frame ready",
            PopError::Closed => "the audio stream is closed",
        })
    }
}

impl std::error::Error for PopError {}

struct State {
    frames: VecDeque<AudioFrame>,
    spare: Vec<Vec<i16>>,
    dropped: u64,
    closed: bool,
}

/// A bounded FIFO of [`AudioFrame`]s that drops the oldest frame when full.
///
/// Share it with `Arc`; every method takes `&self`.
pub struct FrameRing {
    capacity: usize,
    state: Mutex<State>,
    ready: Condvar,
}

impl FrameRing {
    /// A ring holding at most `capacity` frames (at least 1).
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            state: Mutex::new(State {
                frames: VecDeque::with_capacity(capacity),
                spare: Vec::with_capacity(capacity),
                dropped: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// The most frames held at once.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Frames waiting to be read.
    pub fn len(&self) -> usize {
        self.state.lock().frames.len()
    }

    /// Whether no frame is waiting.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Frames dropped so far because the reader fell behind.
    pub fn dropped(&self) -> u64 {
        self.state.lock().dropped
    }

    /// Whether [`FrameRing::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Queues `frame`, dropping the oldest one if the ring is full. Returns false (and recycles
    /// the frame) when the ring is closed.
    pub fn push(&self, frame: AudioFrame) -> bool {
        let mut st = self.state.lock();
        if st.closed {
            Self::keep_spare(&mut st, self.capacity, frame.samples);
            return false;
        }
        if st.frames.len() >= self.capacity {
            if let Some(old) = st.frames.pop_front() {
                st.dropped += 1;
                Self::keep_spare(&mut st, self.capacity, old.samples);
            }
        }
        st.frames.push_back(frame);
        drop(st);
        self.ready.notify_one();
        true
    }

    /// Takes the oldest frame. `None` returns at once ([`PopError::WouldBlock`] when empty);
    /// `Some(t)` waits up to `t` ([`PopError::Timeout`]). A closed ring returns
    /// [`PopError::Closed`] at once, even to a waiting reader.
    pub fn pop(&self, timeout: Option<Duration>) -> Result<AudioFrame, PopError> {
        let mut st = self.state.lock();
        let deadline = timeout.map(|t| Instant::now().checked_add(t));
        loop {
            if st.closed {
                return Err(PopError::Closed);
            }
            if let Some(frame) = st.frames.pop_front() {
                return Ok(frame);
            }
            match deadline {
                None => return Err(PopError::WouldBlock),
                // A timeout too large to represent waits until a frame or close arrives.
                Some(None) => self.ready.wait(&mut st),
                Some(Some(deadline)) => {
                    if self.ready.wait_until(&mut st, deadline).timed_out()
                        && st.frames.is_empty()
                        && !st.closed
                    {
                        return Err(PopError::Timeout);
                    }
                }
            }
        }
    }

    /// Closes the ring: queued frames are discarded and every reader wakes with
    /// [`PopError::Closed`].
    pub fn close(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        st.frames.clear();
        drop(st);
        self.ready.notify_all();
    }

    /// Drops every queued frame (not counted as dropped), keeping their buffers for reuse.
    pub fn clear(&self) {
        let mut st = self.state.lock();
        while let Some(f) = st.frames.pop_front() {
            Self::keep_spare(&mut st, self.capacity, f.samples);
        }
    }

    /// Returns a consumed frame's buffer so the producer can reuse it.
    pub fn recycle(&self, samples: Vec<i16>) {
        let mut st = self.state.lock();
        Self::keep_spare(&mut st, self.capacity, samples);
    }

    /// An empty buffer for the next frame, reused when one is available.
    pub fn take_buffer(&self) -> Vec<i16> {
        self.state.lock().spare.pop().unwrap_or_default()
    }

    fn keep_spare(st: &mut State, capacity: usize, mut samples: Vec<i16>) {
        if st.spare.len() < capacity && samples.capacity() > 0 {
            samples.clear();
            st.spare.push(samples);
        }
    }
}

impl fmt::Debug for FrameRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state.lock();
        f.debug_struct("FrameRing")
            .field("capacity", &self.capacity)
            .field("len", &st.frames.len())
            .field("dropped", &st.dropped)
            .field("closed", &st.closed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;

    fn frame(pts: u64) -> AudioFrame {
        AudioFrame {
            samples: vec![pts as i16; 320],
            sample_rate: 16000,
            channels: 1,
            pts,
        }
    }

    #[test]
    fn fifo_order_and_nonblocking_empty() {
        let ring = FrameRing::new(4);
        assert_eq!(ring.pop(None), Err(PopError::WouldBlock));
        ring.push(frame(0));
        ring.push(frame(320));
        assert_eq!(ring.pop(None).unwrap().pts, 0);
        assert_eq!(ring.pop(None).unwrap().pts, 320);
        assert!(ring.is_empty());
    }

    #[test]
    fn never_grows_past_capacity_and_counts_drops() {
        let ring = FrameRing::new(50);
        for i in 0..100_000u64 {
            let mut buf = ring.take_buffer();
            buf.resize(320, 0);
            ring.push(AudioFrame {
                samples: buf,
                sample_rate: 16000,
                channels: 1,
                pts: i * 320,
            });
            assert!(ring.len() <= 50);
        }
        assert_eq!(ring.len(), 50);
        assert_eq!(ring.dropped(), 100_000 - 50);
        // The survivors are the newest frames, in order.
        assert_eq!(ring.pop(None).unwrap().pts, (100_000 - 50) * 320);
    }

    #[test]
    fn buffers_are_recycled() {
        let ring = FrameRing::new(2);
        let f = frame(0);
        let ptr = f.samples.as_ptr();
        ring.push(f);
        let got = ring.pop(None).unwrap();
        ring.recycle(got.samples);
        let buf = ring.take_buffer();
        assert_eq!(buf.as_ptr(), ptr);
        assert!(buf.is_empty() && buf.capacity() >= 320);
        assert_eq!(ring.take_buffer().capacity(), 0);
    }

    #[test]
    fn timeout_then_frame_from_another_thread() {
        let ring = Arc::new(FrameRing::new(4));
        let start = Instant::now();
        assert_eq!(
            ring.pop(Some(Duration::from_millis(20))),
            Err(PopError::Timeout)
        );
        assert!(start.elapsed() >= Duration::from_millis(20));
        let r2 = ring.clone();
        let t = std::thread::spawn(move || {
            std::thread::sleep(Duration::from_millis(10));
            r2.push(frame(7));
        });
        assert_eq!(ring.pop(Some(Duration::from_secs(10))).unwrap().pts, 7);
        t.join().unwrap();
    }

    #[test]
    fn close_wakes_blocked_reader() {
        let ring = Arc::new(FrameRing::new(4));
        let r2 = ring.clone();
        let t = std::thread::spawn(move || r2.pop(Some(Duration::from_secs(30))));
        std::thread::sleep(Duration::from_millis(10));
        let start = Instant::now();
        ring.close();
        assert_eq!(t.join().unwrap(), Err(PopError::Closed));
        assert!(start.elapsed() < Duration::from_secs(5));
        assert!(!ring.push(frame(1)));
        assert_eq!(ring.pop(None), Err(PopError::Closed));
        assert_eq!(
            ring.pop(Some(Duration::from_secs(1))),
            Err(PopError::Closed)
        );
    }

    #[test]
    fn frame_helpers() {
        let f = AudioFrame {
            samples: vec![0; 1920],
            sample_rate: 48000,
            channels: 2,
            pts: 0,
        };
        assert_eq!(f.frames(), 960);
        assert_eq!(f.duration(), Duration::from_millis(20));
        assert_eq!(AudioFrame::default().duration(), Duration::ZERO);
    }
}
