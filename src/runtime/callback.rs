//! A callback slot that runs app code with none of our locks held, yet lets whoever
//! replaces or removes the callback wait until a call of the old one, running on another
//! thread, has finished. The frame sinks and the peer event handler are built on it.
//!
//! Why not a lock held across the call: two peers whose callbacks (on two worker threads)
//! replace each other's callbacks would each wait for the other's lock for ever. Here the
//! callback is taken out of the slot while it runs and the slot records which thread runs
//! it; `set` swaps the slot at once and then waits for that thread, unless
//! - the caller is that thread (a callback replacing or removing itself: applies at once,
//!   the running call finishes), or
//! - waiting would close a cycle: the running thread is itself waiting, directly or through
//!   others, for the caller. Then the caller does not wait (logged); the other call is
//!   blocked on the caller and finishes after it. This is the one case in which a call of
//!   an old callback is still in progress when `set` returns.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::{self, ThreadId};

use parking_lot::{Condvar, Mutex, MutexGuard};
use tracing::warn;

/// Which thread waits for which: the edges of the wait-for graph between threads that
/// wait in [`CallbackSlot::set`]. A handful of entries at most (one per waiting thread).
static WAITING: Mutex<Vec<(ThreadId, ThreadId)>> = Mutex::new(Vec::new());

struct State<F> {
    cb: Option<F>,
    /// Bumped by every `set`.
    generation: u64,
    /// The thread running a call, and the generation of the callback it runs.
    running: Option<(ThreadId, u64)>,
}

pub(crate) struct CallbackSlot<F> {
    state: Mutex<State<F>>,
    /// Signalled when a call finishes.
    idle: Condvar,
    /// Whether a callback is installed (also while it is out of the slot, running).
    active: AtomicBool,
}

impl<F> CallbackSlot<F> {
    pub fn new(cb: Option<F>) -> Self {
        CallbackSlot {
            active: AtomicBool::new(cb.is_some()),
            state: Mutex::new(State {
                cb,
                generation: 0,
                running: None,
            }),
            idle: Condvar::new(),
        }
    }

    /// Whether a callback is installed. Cheap: no lock.
    pub fn is_set(&self) -> bool {
        self.active.load(Ordering::Acquire)
    }

    /// Runs `f` with the callback, with no lock held; false if none is installed (or a
    /// call is already running on another thread: callers serialise their calls). A panic
    /// in `f` is caught and logged; the callback stays installed.
    pub fn call(&self, f: impl FnOnce(&mut F)) -> bool {
        let me = thread::current().id();
        let (mut cb, generation) = {
            let mut s = self.state.lock();
            let Some(cb) = s.cb.take() else {
                return false;
            };
            s.running = Some((me, s.generation));
            (cb, s.generation)
        };
        if catch_unwind(AssertUnwindSafe(|| f(&mut cb))).is_err() {
            warn!("an app callback panicked; its input is dropped");
        }
        let mut s = self.state.lock();
        s.running = None;
        let stale = if s.generation == generation {
            s.cb = Some(cb);
            None
        } else {
            Some(cb)
        };
        drop(s);
        self.idle.notify_all();
        // Replaced or removed while it ran: dropped here, outside the lock (its captures
        // may do anything).
        drop(stale);
        true
    }

    /// Installs, replaces or (with `None`) removes the callback. When it returns, no call
    /// of an earlier callback runs, except from the calling thread itself (a callback
    /// changing its own slot) and in a wait cycle (see the module docs).
    pub fn set(&self, cb: Option<F>) {
        let me = thread::current().id();
        let mut s = self.state.lock();
        s.generation += 1;
        let generation = s.generation;
        self.active.store(cb.is_some(), Ordering::Release);
        let old = std::mem::replace(&mut s.cb, cb);
        self.wait_for_older(&mut s, me, generation);
        drop(s);
        drop(old);
    }

    fn wait_for_older(&self, s: &mut MutexGuard<'_, State<F>>, me: ThreadId, generation: u64) {
        loop {
            let Some((thread, running_gen)) = s.running else {
                return;
            };
            if thread == me || running_gen >= generation {
                return;
            }
            {
                let mut waiting = WAITING.lock();
                if reaches(&waiting, thread, me) {
                    warn!("two callbacks changed each other's slots at once; not waiting");
                    return;
                }
                waiting.push((me, thread));
            }
            self.idle.wait(s);
            WAITING.lock().retain(|&(waiter, _)| waiter != me);
        }
    }
}

/// Whether `from` waits, directly or through other threads, for `to`.
fn reaches(edges: &[(ThreadId, ThreadId)], from: ThreadId, to: ThreadId) -> bool {
    let mut at = from;
    // Each thread waits for at most one other, so the path is a chain; its length is
    // bounded by the number of edges.
    for _ in 0..=edges.len() {
        if at == to {
            return true;
        }
        match edges.iter().find(|(waiter, _)| *waiter == at) {
            Some(&(_, next)) => at = next,
            None => return false,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::AtomicUsize;
    use std::sync::{Arc, Barrier};
    use std::time::Duration;

    type Cb = Box<dyn FnMut() + Send>;

    #[test]
    fn removing_waits_for_a_call_on_another_thread() {
        let slot = Arc::new(CallbackSlot::<Cb>::new(None));
        let done = Arc::new(AtomicBool::new(false));
        let started = Arc::new(Barrier::new(2));
        let (d, b) = (done.clone(), started.clone());
        slot.set(Some(Box::new(move || {
            b.wait();
            std::thread::sleep(Duration::from_millis(50));
            d.store(true, Ordering::SeqCst);
        })));
        let s2 = slot.clone();
        let t = std::thread::spawn(move || s2.call(|cb| cb()));
        started.wait();
        slot.set(None);
        assert!(done.load(Ordering::SeqCst), "set returned during the call");
        assert!(t.join().unwrap());
        assert!(!slot.is_set());
        assert!(!slot.call(|cb| cb()));
    }

    #[test]
    fn a_callback_removing_itself_applies_at_once() {
        let slot = Arc::new(CallbackSlot::<Cb>::new(None));
        let calls = Arc::new(AtomicUsize::new(0));
        let (s2, c2) = (slot.clone(), calls.clone());
        slot.set(Some(Box::new(move || {
            c2.fetch_add(1, Ordering::SeqCst);
            s2.set(None);
        })));
        assert!(slot.call(|cb| cb()));
        assert!(!slot.call(|cb| cb()));
        assert_eq!(calls.load(Ordering::SeqCst), 1);
    }

    #[test]
    fn two_callbacks_replacing_each_other_at_once_complete() {
        // A's callback (thread 1) replaces B's while B's (thread 2) replaces A's: with a
        // lock held across calls this deadlocks.
        for _ in 0..20 {
            let a = Arc::new(CallbackSlot::<Cb>::new(None));
            let b = Arc::new(CallbackSlot::<Cb>::new(None));
            let both_in = Arc::new(Barrier::new(2));
            let (b_of_a, bar) = (b.clone(), both_in.clone());
            a.set(Some(Box::new(move || {
                bar.wait();
                b_of_a.set(Some(Box::new(|| {})));
            })));
            let (a_of_b, bar) = (a.clone(), both_in.clone());
            b.set(Some(Box::new(move || {
                bar.wait();
                a_of_b.set(Some(Box::new(|| {})));
            })));
            let (a2, b2) = (a.clone(), b.clone());
            let t1 = std::thread::spawn(move || a2.call(|cb| cb()));
            let t2 = std::thread::spawn(move || b2.call(|cb| cb()));
            let ids = [t1.thread().id(), t2.thread().id()];
            assert!(t1.join().unwrap() && t2.join().unwrap());
            assert!(a.is_set() && b.is_set());
            // Their wait-for edges are gone (other tests may have theirs meanwhile).
            assert!(!WAITING.lock().iter().any(|(w, _)| ids.contains(w)));
        }
    }

    #[test]
    fn a_panicking_callback_is_contained() {
        let slot = CallbackSlot::<Cb>::new(Some(Box::new(|| panic!("boom"))));
        assert!(slot.call(|cb| cb()));
        assert!(slot.is_set(), "still installed after a panic");
    }

    #[test]
    fn cycle_detection_follows_chains() {
        let ids: Vec<ThreadId> = (0..3)
            .map(|_| {
                std::thread::spawn(|| thread::current().id())
                    .join()
                    .unwrap()
            })
            .collect();
        let edges = vec![(ids[0], ids[1]), (ids[1], ids[2])];
        assert!(reaches(&edges, ids[0], ids[2]));
        assert!(!reaches(&edges, ids[2], ids[0]));
        assert!(reaches(&edges, ids[1], ids[1]));
    }
}
