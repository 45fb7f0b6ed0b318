//! The kafka sink (being written).
