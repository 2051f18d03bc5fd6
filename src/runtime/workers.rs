//! The codec worker pool: a few threads shared by all peers of a runtime. Jobs name a
//! per-peer pipe (no boxing, no allocation per job); a pipe's own flag keeps it queued at
//! most once, and its lock keeps its work in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use super::audio::{AudioIn, AudioOut};
use super::video::{VideoIn, VideoOut};
use crate::error::Result;

/// Jobs waiting for a worker, across all peers. A job is a peer with work pending, so this
/// bounds peers with pending work, not packets.
const JOB_QUEUE: usize = 16_384;

pub(crate) enum Job {
    AudioIn(Arc<AudioIn>),
    AudioOut(Arc<AudioOut>),
    VideoIn(Arc<VideoIn>),
    VideoOut(Arc<VideoOut>),
    Stop,
}

#[derive(Clone)]
pub(crate) struct Workers {
    tx: Sender<Job>,
    threads: usize,
    pub dropped: Arc<AtomicU64>,
}

impl Workers {
    pub fn start(n: usize) -> Result<(Workers, Vec<JoinHandle<()>>)> {
        let n = if n == 0 {
            std::thread::available_parallelism().map_or(2, |n| n.get())
        } else {
            n
        };
        let (tx, rx) = bounded(JOB_QUEUE);
        let mut handles = Vec::new();
        for i in 0..n {
            let rx: Receiver<Job> = rx.clone();
            handles.push(
                std::thread::Builder::new()
                    .name(format!("swrtc-worker-{i}"))
                    .spawn(move || run(rx))?,
            );
        }
        Ok((
            Workers {
                tx,
                threads: n,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            handles,
        ))
    }

    /// Queues a job without blocking; false (counted) when the queue is full.
    pub fn submit(&self, job: Job) -> bool {
        match self.tx.try_send(job) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    pub fn shutdown(&self) {
        for _ in 0..self.threads {
            let _ = self.tx.send(Job::Stop);
        }
    }
}

fn run(rx: Receiver<Job>) {
    while let Ok(job) = rx.recv() {
        match job {
            Job::AudioIn(p) => p.run(),
            Job::AudioOut(p) => p.run(),
            Job::VideoIn(p) => p.run(),
            Job::VideoOut(p) => p.run(),
            Job::Stop => return,
        }
    }
}
