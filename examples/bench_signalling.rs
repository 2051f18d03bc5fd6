//! Placeholder while the signalling server lands.
fn main() {}
