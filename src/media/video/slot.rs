//! The hand-off of decoded video from a worker to the app: `LatestFrame`, one per source.
//! Holds only the newest frame (a newer one replaces an unread one, counted, never queued),
//! lets readers wait for it, and serves snapshot requests (the next decoded frame). Frame
//! buffers are swapped, not allocated, in steady state. Must not decode; locks are held only
//! to swap buffers (or, for a snapshot, to copy one frame).

use std::fmt;
use std::mem;
use std::time::{Duration, Instant};

use parking_lot::{Condvar, Mutex, MutexGuard};

use super::frame::{VideoFrame, VideoSource};
use crate::error::{Error, ErrorKind};

/// Why [`LatestFrame::take`] or [`LatestFrame::snapshot`] returned no frame.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TakeError {
    /// The timeout passed with no frame.
    Timeout,
    /// A non-blocking call found no frame.
    WouldBlock,
    /// The slot is closed; no more frames will come.
    Closed,
}

impl fmt::Display for TakeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            TakeError::Timeout => "timed out waiting for a video frame",
            TakeError::WouldBlock => "no video frame ready",
            TakeError::Closed => "the video stream is closed",
        })
    }
}

impl std::error::Error for TakeError {}

impl From<TakeError> for Error {
    fn from(e: TakeError) -> Self {
        let kind = match e {
            TakeError::Timeout => ErrorKind::Timeout,
            TakeError::WouldBlock => ErrorKind::WouldBlock,
            TakeError::Closed => ErrorKind::Closed,
        };
        Error::new(kind, e.to_string())
    }
}

struct State {
    /// The newest frame when `fresh`; otherwise a buffer kept for the next swap.
    latest: VideoFrame,
    fresh: bool,
    published: u64,
    overwritten: u64,
    /// Readers waiting in `snapshot`; while there are any, `publish` copies into `snapshot`.
    snapshot_waiters: usize,
    snapshot: VideoFrame,
    snapshot_seq: u64,
    closed: bool,
}

/// The latest decoded frame of one source. Share it with `Arc`; every method takes `&self`.
pub struct LatestFrame {
    source: VideoSource,
    state: Mutex<State>,
    ready: Condvar,
}

impl LatestFrame {
    /// An empty slot for `source`.
    pub fn new(source: VideoSource) -> Self {
        LatestFrame {
            source,
            state: Mutex::new(State {
                latest: VideoFrame::new(source),
                fresh: false,
                published: 0,
                overwritten: 0,
                snapshot_waiters: 0,
                snapshot: VideoFrame::new(source),
                snapshot_seq: 0,
                closed: false,
            }),
            ready: Condvar::new(),
        }
    }

    /// The source this slot carries.
    pub fn source(&self) -> VideoSource {
        self.source
    }

    /// Frames published so far.
    pub fn published(&self) -> u64 {
        self.state.lock().published
    }

    /// Frames replaced before anyone read them.
    pub fn overwritten(&self) -> u64 {
        self.state.lock().overwritten
    }

    /// Whether an unread frame is waiting.
    pub fn has_frame(&self) -> bool {
        self.state.lock().fresh
    }

    /// Whether [`LatestFrame::close`] was called.
    pub fn is_closed(&self) -> bool {
        self.state.lock().closed
    }

    /// Makes `frame` the latest frame (its `source` set to the slot's) and hands back, in
    /// `frame`, a buffer to decode the next frame into. Returns false when the slot is closed
    /// (`frame` is then left as it was).
    pub fn publish(&self, frame: &mut VideoFrame) -> bool {
        frame.source = self.source;
        let mut st = self.state.lock();
        if st.closed {
            return false;
        }
        if st.fresh {
            st.overwritten += 1;
        }
        mem::swap(&mut st.latest, frame);
        st.fresh = true;
        st.published += 1;
        if st.snapshot_waiters > 0 {
            let State {
                latest, snapshot, ..
            } = &mut *st;
            snapshot.clone_from(latest);
            st.snapshot_seq = st.published;
        }
        drop(st);
        self.ready.notify_all();
        true
    }

    /// Takes the latest unread frame into `out`; `out`'s old buffer goes back to the slot for
    /// reuse. `None` returns at once ([`TakeError::WouldBlock`] when there is none); `Some(t)`
    /// waits up to `t` ([`TakeError::Timeout`]). A closed slot returns [`TakeError::Closed`].
    pub fn take(&self, out: &mut VideoFrame, timeout: Option<Duration>) -> Result<(), TakeError> {
        let mut st = self.state.lock();
        self.wait(&mut st, timeout, |st| st.fresh)?;
        mem::swap(&mut st.latest, out);
        st.fresh = false;
        Ok(())
    }

    /// Copies the next frame published after this call into `out` (Pipecat's
    /// UserImageRequest), without consuming it for [`LatestFrame::take`]. Timeouts as in
    /// [`LatestFrame::take`]; `None` can only fail.
    pub fn snapshot(
        &self,
        out: &mut VideoFrame,
        timeout: Option<Duration>,
    ) -> Result<(), TakeError> {
        let mut st = self.state.lock();
        let after = st.published;
        st.snapshot_waiters += 1;
        let result = self.wait(&mut st, timeout, |st| st.snapshot_seq > after);
        st.snapshot_waiters -= 1;
        result?;
        out.clone_from(&st.snapshot);
        Ok(())
    }

    /// Drops an unread frame (for example when the track is disabled), keeping its buffer.
    pub fn clear(&self) {
        self.state.lock().fresh = false;
    }

    /// Closes the slot: the unread frame is dropped and every waiting reader wakes with
    /// [`TakeError::Closed`].
    pub fn close(&self) {
        let mut st = self.state.lock();
        st.closed = true;
        st.fresh = false;
        drop(st);
        self.ready.notify_all();
    }

    fn wait(
        &self,
        st: &mut MutexGuard<'_, State>,
        timeout: Option<Duration>,
        ready: impl Fn(&State) -> bool,
    ) -> Result<(), TakeError> {
        let deadline = timeout.map(|t| Instant::now().checked_add(t));
        loop {
            if st.closed {
                return Err(TakeError::Closed);
            }
            if ready(st) {
                return Ok(());
            }
            match deadline {
                None => return Err(TakeError::WouldBlock),
                // A timeout too large to represent waits until a frame or close arrives.
                Some(None) => self.ready.wait(st),
                Some(Some(deadline)) => {
                    if self.ready.wait_until(st, deadline).timed_out() && !ready(st) && !st.closed {
                        return Err(TakeError::Timeout);
                    }
                }
            }
        }
    }
}

impl fmt::Debug for LatestFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let st = self.state.lock();
        f.debug_struct("LatestFrame")
            .field("source", &self.source)
            .field("fresh", &st.fresh)
            .field("published", &st.published)
            .field("overwritten", &st.overwritten)
            .field("closed", &st.closed)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashSet;
    use std::sync::Arc;
    use std::thread;

    fn fill(frame: &mut VideoFrame, pts: u64) {
        frame.width = 64;
        frame.height = 48;
        frame.pts = pts;
        frame.rgb.resize(64 * 48 * 3, 0);
        frame.rgb[0] = pts as u8;
    }

    #[test]
    fn latest_wins_and_overwrites_are_counted() {
        let slot = LatestFrame::new(VideoSource::Screen);
        let mut out = VideoFrame::default();
        assert_eq!(slot.take(&mut out, None), Err(TakeError::WouldBlock));
        let mut work = VideoFrame::default();
        for pts in 1..=5 {
            fill(&mut work, pts);
            assert!(slot.publish(&mut work));
        }
        slot.take(&mut out, None).unwrap();
        assert_eq!((out.pts, out.source), (5, VideoSource::Screen));
        assert_eq!((slot.published(), slot.overwritten()), (5, 4));
        assert_eq!(
            slot.take(&mut out, Some(Duration::from_millis(5))),
            Err(TakeError::Timeout)
        );
    }

    #[test]
    fn never_grows_and_reuses_buffers() {
        let slot = LatestFrame::new(VideoSource::Camera);
        let mut work = VideoFrame::default();
        let mut out = VideoFrame::default();
        let mut buffers = HashSet::new();
        let mut expected_overwrites = 0;
        for pts in 0..10_000 {
            fill(&mut work, pts);
            buffers.insert(work.rgb.as_ptr() as usize);
            expected_overwrites += u64::from(slot.has_frame());
            slot.publish(&mut work);
            if pts % 7 == 0 {
                slot.take(&mut out, None).unwrap();
                assert_eq!(out.pts, pts);
            }
        }
        // Three buffers circulate (worker, slot, reader); nothing accumulates.
        assert!(buffers.len() <= 3, "{} buffers", buffers.len());
        assert_eq!(slot.overwritten(), expected_overwrites);
        assert!(expected_overwrites > 8_000);
    }

    #[test]
    fn blocking_take_wakes_on_publish_and_on_close() {
        let slot = Arc::new(LatestFrame::new(VideoSource::Camera));
        let reader = {
            let slot = slot.clone();
            thread::spawn(move || {
                let mut out = VideoFrame::default();
                slot.take(&mut out, Some(Duration::from_secs(10)))
                    .map(|()| out.pts)
            })
        };
        let mut work = VideoFrame::default();
        fill(&mut work, 42);
        slot.publish(&mut work);
        assert_eq!(reader.join().unwrap(), Ok(42));

        let waiter = {
            let slot = slot.clone();
            thread::spawn(move || {
                slot.take(&mut VideoFrame::default(), Some(Duration::from_secs(10)))
            })
        };
        slot.close();
        assert_eq!(waiter.join().unwrap(), Err(TakeError::Closed));
        assert!(!slot.publish(&mut work));
        let err: Error = TakeError::Closed.into();
        assert_eq!(err.kind(), ErrorKind::Closed);
    }

    #[test]
    fn snapshot_returns_the_next_frame_and_leaves_it_for_take() {
        let slot = Arc::new(LatestFrame::new(VideoSource::Camera));
        let mut work = VideoFrame::default();
        fill(&mut work, 1);
        slot.publish(&mut work); // already there: a snapshot must not return it
        let snap = {
            let slot = slot.clone();
            thread::spawn(move || {
                let mut out = VideoFrame::default();
                slot.snapshot(&mut out, Some(Duration::from_secs(10)))
                    .map(|()| out.pts)
            })
        };
        // Publish until the snapshot thread has seen a frame published after it started.
        let mut pts = 2;
        while !snap.is_finished() {
            fill(&mut work, pts);
            slot.publish(&mut work);
            pts += 1;
            thread::yield_now();
        }
        let got = snap.join().unwrap().unwrap();
        assert!(got >= 2 && got < pts, "snapshot pts {got}");
        let mut out = VideoFrame::default();
        slot.take(&mut out, None).unwrap();
        assert_eq!(out.pts, pts - 1);
        assert_eq!(slot.snapshot(&mut out, None), Err(TakeError::WouldBlock));
    }

    #[test]
    fn clear_drops_the_unread_frame() {
        let slot = LatestFrame::new(VideoSource::Camera);
        let mut work = VideoFrame::default();
        fill(&mut work, 1);
        slot.publish(&mut work);
        slot.clear();
        assert!(!slot.has_frame());
        assert_eq!(
            slot.take(&mut VideoFrame::default(), None),
            Err(TakeError::WouldBlock)
        );
    }
}
