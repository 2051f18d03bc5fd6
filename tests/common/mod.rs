#![allow(dead_code)]
pub mod aiortc;
pub mod c_build;
pub mod faults;
pub mod impair;
pub mod nat;
pub mod natnet;
pub mod offer;
pub mod peers;
pub mod str0m_client;
pub mod tone;
