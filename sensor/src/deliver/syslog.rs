//! The syslog sink (being written).
