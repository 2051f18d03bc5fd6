//! The commands an I/O thread runs for the app side and the media pipes (see `Command`).

use std::time::Instant;

use crossbeam_channel::Sender;

use super::{Entry, IoLoop};
use crate::error::{Error, Result};
use crate::runtime::command::Command;
use crate::session::Session;

impl IoLoop {
    /// Returns false on shutdown.
    pub(super) fn handle_commands(&mut self, now: Instant) -> bool {
        while let Ok(cmd) = self.rx.try_recv() {
            match cmd {
                Command::Shutdown => return false,
                Command::AddPeer(p) => self.add_peer(*p),
                Command::Offer { id, sdp, reply } => self.offer(id, sdp, reply, now),
                Command::Candidate {
                    id,
                    candidate,
                    reply,
                } => {
                    let r = self.with(id, |s| s.add_remote_candidate(&candidate, now));
                    let _ = reply.send(r);
                }
                Command::Connect { id, reply } => {
                    let r = self.with(id, |s| s.connect(now));
                    let _ = reply.send(r);
                }
                Command::Disconnect { id } => {
                    let _ = self.with(id, |s| {
                        s.disconnect(now);
                        Ok(())
                    });
                }
                Command::Close { id, quiet } => {
                    let _ = self.with(id, |s| {
                        if quiet {
                            s.close_quietly(now);
                        } else {
                            s.close(now);
                        }
                        Ok(())
                    });
                }
                Command::Send {
                    id,
                    data,
                    binary,
                    reply,
                } => {
                    let r = self.with(id, |s| s.send_message(&data, binary, now));
                    let _ = reply.send(r);
                }
                Command::Stats { id, reply } => {
                    let r = self.with(id, |s| Ok(s.stats().clone()));
                    let _ = reply.send(r);
                }
                Command::NetworkStats { id, reply } => {
                    let r = self.with(id, |s| Ok((s.stats().clone(), s.network_stats().clone())));
                    let _ = reply.send(r);
                }
                Command::AudioOut { id, rtp_time, data } => {
                    let _ = self.with(id, |s| {
                        s.write_audio(rtp_time, now, data);
                        Ok(())
                    });
                }
                Command::VideoOut {
                    id,
                    codec,
                    rtp_time,
                    data,
                } => {
                    let _ = self.with(id, |s| {
                        s.write_video(codec, rtp_time, now, data);
                        Ok(())
                    });
                }
                Command::RequestKeyframe { id, receiver_index } => {
                    let _ = self.with(id, |s| {
                        s.request_keyframe(receiver_index, now);
                        Ok(())
                    });
                }
                Command::CloseAll { reply } => {
                    let n = self.close_all(now);
                    let _ = reply.send(n);
                }
                Command::Barrier { reply } => {
                    // Everything queued before the barrier is sent before it returns.
                    self.batch.send_all(&self.shared);
                    let _ = reply.send(());
                }
                Command::IceServers { stun, turn } => self.ice_servers_known(stun, turn, now),
            }
        }
        true
    }

    /// Runs `f` on a live session, then flushes its output.
    /// Answers an offer (a first one once `srflx` lets it through).
    pub(super) fn answer_offer(
        &mut self,
        id: u64,
        sdp: &str,
        reply: Sender<Result<String>>,
        now: Instant,
    ) {
        let r = self.with_entry(id, |e| {
            let answer = e.session.accept_offer(sdp, now)?;
            if let Some(hook) = e.sinks.codec.as_mut() {
                hook(e.session.video_out_codec());
            }
            Ok(answer)
        });
        if let Some(&slot) = self.by_id.get(&id) {
            self.register_ufrag(slot);
        }
        let _ = reply.send(r);
    }

    fn with<T>(&mut self, id: u64, f: impl FnOnce(&mut Session) -> Result<T>) -> Result<T> {
        self.with_entry(id, |e| f(&mut e.session))
    }

    fn with_entry<T>(&mut self, id: u64, f: impl FnOnce(&mut Entry) -> Result<T>) -> Result<T> {
        let Some(&slot) = self.by_id.get(&id) else {
            return Err(Error::closed());
        };
        let Some(entry) = self.entries[slot].as_mut() else {
            return Err(Error::closed());
        };
        let r = f(entry);
        self.flush(slot);
        r
    }
}
