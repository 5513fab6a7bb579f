//! handler (next)
