//! A per-pipe frame callback: push delivery of decoded frames on the worker that decoded
//! them, instead of the pull queue. One callback at a time per pipe, frames in order.
//!
//! The callback lives in a [`CallbackSlot`]: it runs with none of our locks held, and
//! replacing or clearing it from another thread waits for a running call to finish (after
//! `set` returns, the old callback never runs again), while doing it from inside the
//! callback itself takes effect at once.

use parking_lot::{Mutex, MutexGuard};

use super::callback::CallbackSlot;

/// A frame callback. It runs on a worker thread and must not block.
pub type FrameCallback<T> = Box<dyn FnMut(&T) + Send + 'static>;

pub(crate) struct Sink<T> {
    slot: CallbackSlot<FrameCallback<T>>,
    /// Taken by a worker for a whole batch of one pipe, so two runs of the same pipe on
    /// two workers cannot interleave frames. `set` never takes it.
    turn: Mutex<()>,
}

impl<T> Default for Sink<T> {
    fn default() -> Self {
        Sink {
            slot: CallbackSlot::new(None),
            turn: Mutex::new(()),
        }
    }
}

impl<T> Sink<T> {
    /// Installs or (with `None`) removes the callback. Waits for a call running on another
    /// thread; from inside the callback it applies at once.
    pub fn set(&self, cb: Option<FrameCallback<T>>) {
        self.slot.set(cb);
    }

    /// The delivery turn when a callback is installed; `None` otherwise. Hold it across
    /// a whole batch so a concurrent run of the same pipe cannot interleave frames.
    pub fn open(&self) -> Option<SinkGuard<'_, T>> {
        if !self.slot.is_set() {
            return None;
        }
        let turn = self.turn.lock();
        self.slot.is_set().then_some(SinkGuard {
            sink: self,
            _turn: turn,
        })
    }
}

pub(crate) struct SinkGuard<'a, T> {
    sink: &'a Sink<T>,
    _turn: MutexGuard<'a, ()>,
}

impl<T> SinkGuard<'_, T> {
    /// Calls the callback with one frame: true if it ran (the frame is consumed, even if
    /// the callback removed itself meanwhile), false if none is installed any more.
    pub fn deliver(&self, frame: &T) -> bool {
        self.sink.slot.call(|cb| cb(frame))
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
