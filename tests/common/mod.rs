#![allow(dead_code)]
pub mod aiortc;
pub mod c_build;
pub mod str0m_client;
