//! The codec worker pool: a few threads shared by all peers of a runtime. A job is a
//! per-peer pipe with work pending, as a [`Work`] trait object (an `Arc` the pipe already
//! is: no allocation per job); the pool names no pipe type. A pipe's own flag keeps it
//! queued at most once, and its lock keeps its work in order.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver, Sender, TrySendError};

use crate::error::Result;

/// Jobs waiting for a worker, across all peers. A job is a peer with work pending, so this
/// bounds peers with pending work, not packets.
const JOB_QUEUE: usize = 16_384;

/// A pipe with work pending: a worker calls `run` until the pipe's queue is drained.
pub(crate) trait Work: Send + Sync {
    fn run(&self);
}

/// Which queue a job waits in.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Lane {
    /// Audio in and out: served first.
    Audio,
    /// Video decode and encode.
    Video,
}

enum Job {
    Run(Arc<dyn Work>),
    Stop,
}

/// Two queues: audio first. A 720p video encode takes milliseconds; audio waiting behind
/// it would turn into latency and concealment.
#[derive(Clone)]
pub(crate) struct Workers {
    audio: Sender<Job>,
    video: Sender<Job>,
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
        let (audio, audio_rx) = bounded(JOB_QUEUE);
        let (video, video_rx) = bounded(JOB_QUEUE);
        let mut handles = Vec::new();
        for i in 0..n {
            let (a, v): (Receiver<Job>, Receiver<Job>) = (audio_rx.clone(), video_rx.clone());
            handles.push(
                std::thread::Builder::new()
                    .name(format!("swrtc-worker-{i}"))
                    // With two or more workers, the first never takes video: audio always
                    // has a worker free within one job's time.
                    .spawn(move || run(a, v, i == 0 && n > 1))?,
            );
        }
        Ok((
            Workers {
                audio,
                video,
                threads: n,
                dropped: Arc::new(AtomicU64::new(0)),
            },
            handles,
        ))
    }

    /// Queues a job without blocking; false (counted) when the queue is full.
    pub fn submit(&self, lane: Lane, work: Arc<dyn Work>) -> bool {
        let tx = match lane {
            Lane::Video => &self.video,
            Lane::Audio => &self.audio,
        };
        match tx.try_send(Job::Run(work)) {
            Ok(()) => true,
            Err(TrySendError::Full(_)) | Err(TrySendError::Disconnected(_)) => {
                self.dropped.fetch_add(1, Ordering::Relaxed);
                false
            }
        }
    }

    pub fn shutdown(&self) {
        for _ in 0..self.threads {
            let _ = self.audio.send(Job::Stop);
        }
    }
}

fn run(audio: Receiver<Job>, video: Receiver<Job>, audio_only: bool) {
    loop {
        // Audio first whenever both have work.
        let job = match audio.try_recv() {
            Ok(job) => job,
            Err(_) if audio_only => match audio.recv() {
                Ok(j) => j,
                Err(_) => return,
            },
            Err(_) => crossbeam_channel::select_biased! {
                recv(audio) -> j => match j { Ok(j) => j, Err(_) => return },
                recv(video) -> j => match j { Ok(j) => j, Err(_) => return },
            },
        };
        match job {
            Job::Run(work) => work.run(),
            Job::Stop => return,
        }
    }
}
