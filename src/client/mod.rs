//! The Natter client core. (Being written.)
