//! The file sink (being written).
