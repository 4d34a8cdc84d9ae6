//! The Natter server. (Being written.)
