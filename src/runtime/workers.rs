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
    pub fn submit(&self, job: Job) -> bool {
        let tx = match job {
            Job::VideoIn(_) | Job::VideoOut(_) => &self.video,
            _ => &self.audio,
        };
        match tx.try_send(job) {
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
            Job::AudioIn(p) => p.run(),
            Job::AudioOut(p) => p.run(),
            Job::VideoIn(p) => p.run(),
            Job::VideoOut(p) => p.run(),
            Job::Stop => return,
        }
    }
}
