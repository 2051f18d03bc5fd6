pub mod aiortc;
