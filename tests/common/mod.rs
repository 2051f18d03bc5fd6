#![allow(dead_code)]
pub mod aiortc;
pub mod str0m_client;
