//! The signalling server's HTTP request parser on arbitrary bytes, fed in pieces (the first
//! byte sets their size) as a socket would: no panic, bodies and held bytes bounded.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    smallwebrtc::fuzz::http_request(data);
});
