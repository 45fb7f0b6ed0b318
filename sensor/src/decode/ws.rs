//! WebSocket frames (RFC 6455) after an HTTP/1.1 upgrade (placeholder, being written).
