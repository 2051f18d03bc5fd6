//! A per-pipe frame callback: push delivery of decoded frames on the worker that decoded
//! them, instead of the pull queue. One callback at a time per pipe, frames in order.
//!
//! The slot sits behind a re-entrant gate held while the callback runs, so replacing or
//! clearing the callback from another thread waits for a running call to finish (after
//! `set` returns, the old callback never runs again), while doing it from inside the
//! callback itself takes effect at once without deadlock.

use std::cell::RefCell;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};

use parking_lot::{ReentrantMutex, ReentrantMutexGuard};
use tracing::warn;

/// A frame callback. It runs on a worker thread and must not block.
pub type FrameCallback<T> = Box<dyn FnMut(&T) + Send + 'static>;

struct Slot<T> {
    cb: Option<FrameCallback<T>>,
    /// Bumped by every `set`, so a delivery knows whether the callback it took out was
    /// replaced while it ran.
    generation: u64,
}

pub(crate) struct Sink<T> {
    slot: ReentrantMutex<RefCell<Slot<T>>>,
    /// Cheap check for the common case of no callback.
    active: AtomicBool,
}

impl<T> Default for Sink<T> {
    fn default() -> Self {
        Sink {
            slot: ReentrantMutex::new(RefCell::new(Slot {
                cb: None,
                generation: 0,
            })),
            active: AtomicBool::new(false),
        }
    }
}

impl<T> Sink<T> {
    /// Installs or (with `None`) removes the callback. Waits for a call running on another
    /// thread; from inside the callback it applies at once.
    pub fn set(&self, cb: Option<FrameCallback<T>>) {
        let g = self.slot.lock();
        let old = {
            let mut s = g.borrow_mut();
            s.generation += 1;
            self.active.store(cb.is_some(), Ordering::Release);
            std::mem::replace(&mut s.cb, cb)
        };
        drop(g);
        // The old closure is dropped outside the gate: its captures may do anything.
        drop(old);
    }

    /// The delivery gate when a callback is installed; `None` otherwise. Hold it across
    /// a whole batch so a concurrent run of the same pipe cannot interleave frames.
    pub fn open(&self) -> Option<SinkGuard<'_, T>> {
        if !self.active.load(Ordering::Acquire) {
            return None;
        }
        let g = self.slot.lock();
        let installed = g.borrow().cb.is_some();
        installed.then_some(SinkGuard { g })
    }
}

pub(crate) struct SinkGuard<'a, T> {
    g: ReentrantMutexGuard<'a, RefCell<Slot<T>>>,
}

impl<T> SinkGuard<'_, T> {
    /// Calls the callback with one frame: true if it ran (the frame is consumed, even if
    /// the callback removed itself meanwhile), false if none is installed any more.
    pub fn deliver(&self, frame: &T) -> bool {
        let (cb, generation) = {
            let mut s = self.g.borrow_mut();
            (s.cb.take(), s.generation)
        };
        let Some(mut cb) = cb else {
            return false;
        };
        // The borrow is released: the callback may call `set` on this very sink.
        if catch_unwind(AssertUnwindSafe(|| cb(frame))).is_err() {
            warn!("a frame callback panicked; the frame is dropped");
        }
        let mut s = self.g.borrow_mut();
        if s.generation == generation {
            s.cb = Some(cb);
        } else {
            drop(s);
            // Replaced or removed while it ran: this closure is done.
            drop(cb);
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    #[test]
    fn delivers_in_order_and_stops_when_cleared() {
        let sink = Arc::new(Sink::<u32>::default());
        assert!(sink.open().is_none());
        let got = Arc::new(Mutex::new(Vec::new()));
        let g2 = got.clone();
        sink.set(Some(Box::new(move |v: &u32| g2.lock().unwrap().push(*v))));
        {
            let gate = sink.open().expect("installed");
            for v in 0..3 {
                assert!(gate.deliver(&v));
            }
        }
        sink.set(None);
        assert!(sink.open().is_none());
        assert_eq!(*got.lock().unwrap(), vec![0, 1, 2]);
    }

    #[test]
    fn clearing_from_inside_the_callback_applies_at_once() {
        let sink = Arc::new(Sink::<u32>::default());
        let calls = Arc::new(Mutex::new(0));
        let (s2, c2) = (sink.clone(), calls.clone());
        sink.set(Some(Box::new(move |_: &u32| {
            *c2.lock().unwrap() += 1;
            s2.set(None);
        })));
        let gate = sink.open().expect("installed");
        assert!(gate.deliver(&1), "ran, and removed itself");
        assert!(!gate.deliver(&2), "no callback any more");
        drop(gate);
        assert_eq!(*calls.lock().unwrap(), 1);
        // Break the cycle the test closure made (it is already dropped).
        assert!(sink.open().is_none());
    }

    #[test]
    fn a_panicking_callback_is_contained() {
        let sink = Sink::<u32>::default();
        sink.set(Some(Box::new(|v: &u32| assert!(*v != 1, "boom"))));
        let gate = sink.open().expect("installed");
        assert!(gate.deliver(&1));
        assert!(gate.deliver(&2), "still installed after a panic");
    }
}
