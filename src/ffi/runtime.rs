//! C ABI of runtimes: optional, for apps that want their own threads instead of the
//! process-wide default.

use crate::config::RuntimeConfig;
use crate::runtime::Runtime;

use super::{guard, invalid, SwrtcResult};

/// A set of library threads (I/O threads, a callback thread). Opaque.
pub struct SwrtcRuntime {
    pub(crate) rt: Runtime,
}

/// Settings of a runtime. Fill with `swrtc_runtime_config_default` first.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct SwrtcRuntimeConfig {
    /// I/O threads (1..=64). Default 1; one thread serves hundreds of peers.
    pub io_threads: u32,
    /// Codec worker threads; 0 means one per core. Default 0.
    pub worker_threads: u32,
}

/// Fills `cfg` with the defaults.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` if `cfg` is NULL. Any thread.
///
/// # Safety
/// `cfg` is NULL or points to writable memory for one `SwrtcRuntimeConfig`.
#[no_mangle]
pub unsafe extern "C" fn swrtc_runtime_config_default(cfg: *mut SwrtcRuntimeConfig) -> SwrtcResult {
    if cfg.is_null() {
        return invalid("cfg is NULL");
    }
    guard(|| {
        let d = RuntimeConfig::default();
        // SAFETY: checked non-NULL; the caller guarantees it is writable.
        unsafe {
            cfg.write(SwrtcRuntimeConfig {
                io_threads: d.io_threads as u32,
                worker_threads: d.worker_threads as u32,
            })
        };
        Ok(())
    })
}

/// Starts a runtime. `cfg` NULL means defaults. On success `*out` owns it: free it with
/// `swrtc_runtime_free` (peers created on it keep it alive until they are freed too).
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (NULL `out`, bad thread counts), `SWRTC_ERR_IO`.
/// Any thread.
///
/// # Safety
/// `cfg` is NULL or valid; `out` is valid for one pointer write.
#[no_mangle]
pub unsafe extern "C" fn swrtc_runtime_new(
    cfg: *const SwrtcRuntimeConfig,
    out: *mut *mut SwrtcRuntime,
) -> SwrtcResult {
    if out.is_null() {
        return invalid("out is NULL");
    }
    guard(|| {
        let mut rc = RuntimeConfig::default();
        // SAFETY: NULL was checked; the caller guarantees validity otherwise.
        if let Some(c) = unsafe { cfg.as_ref() } {
            rc.io_threads = c.io_threads as usize;
            rc.worker_threads = c.worker_threads as usize;
        }
        let rt = Runtime::new(rc)?;
        // SAFETY: checked non-NULL above.
        unsafe { out.write(Box::into_raw(Box::new(SwrtcRuntime { rt }))) };
        Ok(())
    })
}

/// Graceful shutdown of every peer on the runtime: each live one gets `peerLeft`, then
/// SCTP shutdown and DTLS close_notify, so its client notices at once. Returns once every
/// I/O thread has sent them, or after `timeout_ms` at the latest. `closed_out` (may be
/// NULL) gets how many peers were closed. Peers stay valid (state `SWRTC_PEER_CLOSED`;
/// their `on_state` gets it) and the runtime stays usable; free both as usual.
///
/// Errors: `SWRTC_ERR_INVALID_ARGUMENT` (NULL runtime). Any thread except inside a
/// callback of a peer on this runtime.
///
/// # Safety
/// `rt` is NULL or a live runtime from `swrtc_runtime_new`; `closed_out` is NULL or
/// writable.
#[no_mangle]
pub unsafe extern "C" fn swrtc_runtime_shutdown(
    rt: *const SwrtcRuntime,
    timeout_ms: u32,
    closed_out: *mut u32,
) -> SwrtcResult {
    guard(|| {
        // SAFETY: NULL or live per the contract.
        let r = unsafe { rt.as_ref() }.ok_or_else(|| crate::Error::invalid("rt is NULL"))?;
        let n =
            r.rt.shutdown(std::time::Duration::from_millis(u64::from(timeout_ms)));
        if !closed_out.is_null() {
            // SAFETY: checked non-NULL; writable per the contract.
            unsafe { closed_out.write(n as u32) };
        }
        Ok(())
    })
}

/// Releases the app's reference to a runtime. NULL does nothing. Its threads stop once
/// no peer uses it any more. Do not call from a callback of a peer on this runtime.
///
/// # Safety
/// `rt` is NULL or a runtime from `swrtc_runtime_new`, not yet freed.
#[no_mangle]
pub unsafe extern "C" fn swrtc_runtime_free(rt: *mut SwrtcRuntime) {
    let _ = guard(|| {
        if !rt.is_null() {
            // SAFETY: the caller passes a pointer from Box::into_raw, freed once.
            drop(unsafe { Box::from_raw(rt) });
        }
        Ok(())
    });
}
