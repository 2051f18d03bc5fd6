//! Audio: Opus decode/encode, resampling, the input frame ring and the output pacer.
