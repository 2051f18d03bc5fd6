//! Media processing: codecs, resampling, pacing. Pure code with no sockets or I/O threads.

pub mod audio;
pub mod video;
