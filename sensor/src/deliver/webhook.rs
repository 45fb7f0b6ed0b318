//! The webhook sink (being written).
