//! Server-Sent Events (`text/event-stream`, WHATWG HTML §9.2): a streaming LLM
//! response is a sequence of events whose `data` fields carry JSON deltas.

use serde::Serialize;

/// One dispatched event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SseEvent {
    /// `event:` field (absent means `message`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub event: Option<String>,
    /// `data:` lines joined with `\n`.
    pub data: String,
    /// `id:` field.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub id: Option<String>,
}

/// Events of a body, at most `max_events`; `true` when more were dropped.
/// Invalid UTF-8 is replaced, as the specification's decoder does.
pub fn parse(body: &[u8], max_events: usize) -> (Vec<SseEvent>, bool) {
    let text = String::from_utf8_lossy(body);
    let text = text.strip_prefix('\u{feff}').unwrap_or(&text);
    let mut events = Vec::new();
    let mut event: Option<String> = None;
    let mut data = String::new();
    let mut has_data = false;
    let mut id: Option<String> = None;
    let mut dropped = false;
    for line in lines(text) {
        if line.is_empty() {
            if has_data {
                if events.len() < max_events {
                    events.push(SseEvent {
                        event: event.take(),
                        data: std::mem::take(&mut data),
                        id: id.clone(),
                    });
                } else {
                    dropped = true;
                }
            }
            event = None;
            data.clear();
            has_data = false;
            continue;
        }
        let (field, value) = match line.split_once(':') {
            Some((f, v)) => (f, v.strip_prefix(' ').unwrap_or(v)),
            None => (line, ""),
        };
        match field {
            "event" => event = Some(value.to_owned()),
            "data" => {
                if has_data {
                    data.push('\n');
                }
                data.push_str(value);
                has_data = true;
            }
            "id" if !value.contains('\0') => id = Some(value.to_owned()),
            // Comments (empty field), `retry` and unknown fields carry no content.
            _ => {}
        }
    }
    // An event without its terminating blank line is not dispatched (the stream
    // was cut), per the specification.
    (events, dropped)
}

/// Lines ended by CRLF, LF or CR.
fn lines(text: &str) -> impl Iterator<Item = &str> {
    let mut rest = text;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match rest.find(['\r', '\n']) {
            Some(i) => {
                let line = &rest[..i];
                let skip = if rest[i..].starts_with("\r\n") { 2 } else { 1 };
                rest = &rest[i + skip..];
                Some(line)
            }
            // The last line has no terminator: it cannot end an event.
            None => {
                rest = "";
                None
            }
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_an_anthropic_stream() {
        let body = b"event: message_start\ndata: {\"type\":\"message_start\"}\n\n\
            event: content_block_delta\r\ndata: {\"delta\":\r\ndata: \"hi\"}\r\n\r\n\
            : keep-alive comment\n\n\
            data: [DONE]\n\nevent: cut\ndata: partial";
        let (events, dropped) = parse(body, 10);
        assert!(!dropped);
        assert_eq!(
            events,
            vec![
                SseEvent {
                    event: Some("message_start".into()),
                    data: "{\"type\":\"message_start\"}".into(),
                    id: None
                },
                SseEvent {
                    event: Some("content_block_delta".into()),
                    data: "{\"delta\":\n\"hi\"}".into(),
                    id: None
                },
                SseEvent {
                    event: None,
                    data: "[DONE]".into(),
                    id: None
                },
            ]
        );
    }

    #[test]
    fn bounds_the_event_count() {
        let body = "data: x\n\n".repeat(10);
        let (events, dropped) = parse(body.as_bytes(), 3);
        assert_eq!((events.len(), dropped), (3, true));
    }

    #[test]
    fn ids_persist_and_cr_only_lines_work() {
        let (events, _) = parse(b"id: 7\rdata: a\r\rdata: b\r\r", 10);
        assert_eq!(events[1].id.as_deref(), Some("7"));
        assert_eq!(events[1].data, "b");
    }
}
