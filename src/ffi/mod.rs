//! The C ABI. No logic: each export is panic boundary → null and size checks → conversion →
//! one call into the Rust API → result mapping. The header `include/smallwebrtc.h` is
//! generated from this module by cbindgen and committed.

#![allow(non_camel_case_types)]

mod audio;
mod log;
mod peer;
mod runtime;
#[cfg(feature = "signalling")]
mod server;
mod stats;
mod video;

use std::cell::RefCell;
use std::ffi::{c_char, CString};
use std::panic::{catch_unwind, AssertUnwindSafe};

use crate::error::{Error, ErrorKind};

pub use audio::*;
pub use log::*;
pub use peer::*;
pub use runtime::*;
#[cfg(feature = "signalling")]
pub use server::*;
pub use stats::*;
pub use video::*;

/// Result of every `swrtc_*` call. On failure, `swrtc_last_error()` on the same thread
/// returns a message.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SwrtcResult {
    /// Success.
    SWRTC_OK = 0,
    /// A parameter was NULL, out of range, empty or of the wrong size.
    SWRTC_ERR_INVALID_ARGUMENT = 1,
    /// The SDP offer could not be parsed or accepted.
    SWRTC_ERR_INVALID_SDP = 2,
    /// The ICE candidate string could not be parsed.
    SWRTC_ERR_INVALID_CANDIDATE = 3,
    /// The peer is not connected (for example: no data channel 10 s after connecting).
    SWRTC_ERR_NOT_CONNECTED = 4,
    /// The peer or runtime is closed.
    SWRTC_ERR_CLOSED = 5,
    /// A blocking call reached its timeout.
    SWRTC_ERR_TIMEOUT = 6,
    /// A non-blocking call found nothing to do, or a queue is full.
    SWRTC_ERR_WOULD_BLOCK = 7,
    /// The caller's buffer is too small; the needed size was written.
    SWRTC_ERR_BUFFER_TOO_SMALL = 8,
    /// A payload is over a documented size limit.
    SWRTC_ERR_TOO_LARGE = 9,
    /// A socket or OS call failed.
    SWRTC_ERR_IO = 10,
    /// A bug inside the library (a caught panic ends up here).
    SWRTC_ERR_INTERNAL = 11,
}

pub use SwrtcResult::*;

impl From<ErrorKind> for SwrtcResult {
    fn from(k: ErrorKind) -> Self {
        match k {
            ErrorKind::InvalidArgument => SWRTC_ERR_INVALID_ARGUMENT,
            ErrorKind::InvalidSdp => SWRTC_ERR_INVALID_SDP,
            ErrorKind::InvalidCandidate => SWRTC_ERR_INVALID_CANDIDATE,
            ErrorKind::NotConnected => SWRTC_ERR_NOT_CONNECTED,
            ErrorKind::Closed => SWRTC_ERR_CLOSED,
            ErrorKind::Timeout => SWRTC_ERR_TIMEOUT,
            ErrorKind::WouldBlock => SWRTC_ERR_WOULD_BLOCK,
            ErrorKind::BufferTooSmall => SWRTC_ERR_BUFFER_TOO_SMALL,
            ErrorKind::TooLarge => SWRTC_ERR_TOO_LARGE,
            ErrorKind::Io => SWRTC_ERR_IO,
            ErrorKind::Internal => SWRTC_ERR_INTERNAL,
        }
    }
}

thread_local! {
    static LAST_ERROR: RefCell<CString> = RefCell::new(CString::default());
}

fn set_last_error(msg: &str) {
    let c = CString::new(msg.replace('\0', " ")).unwrap_or_default();
    LAST_ERROR.with(|e| *e.borrow_mut() = c);
}

/// Records `e` as this thread's last error and returns its code.
fn fail(e: Error) -> SwrtcResult {
    set_last_error(e.message());
    e.kind().into()
}

fn invalid(msg: &str) -> SwrtcResult {
    fail(Error::invalid(msg))
}

/// The panic boundary every export runs its body in.
/// An app's `user_data` pointer carried into a callback that runs on another thread.
struct UserData(*mut std::ffi::c_void);
// SAFETY: the header documents on which thread each callback runs with its user_data; the
// library never dereferences it.
unsafe impl Send for UserData {}

fn guard(f: impl FnOnce() -> Result<(), Error>) -> SwrtcResult {
    match catch_unwind(AssertUnwindSafe(f)) {
        Ok(Ok(())) => SWRTC_OK,
        Ok(Err(e)) => fail(e),
        Err(p) => {
            let what = p
                .downcast_ref::<&str>()
                .map(|s| s.to_string())
                .or_else(|| p.downcast_ref::<String>().cloned())
                .unwrap_or_else(|| "unknown panic".into());
            set_last_error(&format!("internal error (panic): {what}"));
            SWRTC_ERR_INTERNAL
        }
    }
}

/// The message of the last failed `swrtc_*` call on this thread ("" if none).
///
/// The pointer stays valid until the next `swrtc_*` call on this thread. Never NULL.
/// Thread-safety: any thread; each thread has its own last error.
#[no_mangle]
pub extern "C" fn swrtc_last_error() -> *const c_char {
    catch_unwind(|| LAST_ERROR.with(|e| e.borrow().as_ptr())).unwrap_or(c"panic".as_ptr())
}

/// The library version, e.g. "0.1.0". Static; never NULL. Any thread.
#[no_mangle]
pub extern "C" fn swrtc_version() -> *const c_char {
    catch_unwind(|| {
        static V: &str = concat!(env!("CARGO_PKG_VERSION"), "\0");
        V.as_ptr() as *const c_char
    })
    .unwrap_or(c"unknown".as_ptr())
}

/// Frees a string the library returned (such as an SDP answer). NULL does nothing.
///
/// Thread-safety: any thread, once per string.
///
/// # Safety
/// `s` is NULL or a string returned by this library and not yet freed.
#[no_mangle]
pub unsafe extern "C" fn swrtc_string_free(s: *mut c_char) {
    let _ = guard(|| {
        if !s.is_null() {
            // SAFETY: the caller passes a pointer from CString::into_raw, freed once.
            drop(unsafe { CString::from_raw(s) });
        }
        Ok(())
    });
}

/// Reads a (pointer, length) UTF-8 string from C. NULL with length 0 is "".
///
/// # Safety
/// `p` points to `len` readable bytes, or is NULL.
unsafe fn str_arg<'a>(p: *const c_char, len: usize, what: &str) -> Result<&'a str, Error> {
    if p.is_null() {
        return if len == 0 {
            Ok("")
        } else {
            Err(Error::invalid(format!("{what} is NULL")))
        };
    }
    // SAFETY: the caller guarantees `len` readable bytes at `p`.
    let bytes = unsafe { std::slice::from_raw_parts(p as *const u8, len) };
    std::str::from_utf8(bytes).map_err(|e| Error::invalid(format!("{what} is not UTF-8: {e}")))
}

/// Reads an optional NUL-terminated C string.
///
/// # Safety
/// `p` is NULL or a valid NUL-terminated string.
unsafe fn cstr_opt<'a>(p: *const c_char, what: &str) -> Result<Option<&'a str>, Error> {
    if p.is_null() {
        return Ok(None);
    }
    // SAFETY: the caller guarantees a NUL-terminated string.
    let s = unsafe { std::ffi::CStr::from_ptr(p) };
    s.to_str()
        .map(Some)
        .map_err(|e| Error::invalid(format!("{what} is not UTF-8: {e}")))
}
