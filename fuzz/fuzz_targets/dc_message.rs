//! `smallwebrtc::fuzz::dc_message` on arbitrary bytes (see that function for what it drives).
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    smallwebrtc::fuzz::dc_message(data);
});
