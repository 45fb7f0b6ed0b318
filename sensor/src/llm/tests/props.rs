//! Property tests: no input makes the model panic.

use proptest::prelude::*;
use serde_json::Value;

use crate::llm::{Api, Catalog, Endpoint, parse_request};

fn endpoint() -> Endpoint {
    Endpoint {
        provider: "p".into(),
        provider_name: "P".into(),
        api: Api::OpenAiChat,
        model_from_path: Some("m".into()),
        self_hosted: false,
        streaming: false,
    }
}

/// Keys the walker gives meaning to, so generated bodies exercise its rules.
const KEYS: &[&str] = &[
    "messages",
    "content",
    "role",
    "type",
    "text",
    "tools",
    "input",
    "parts",
    "system",
    "contents",
    "tool_calls",
    "function",
    "arguments",
    "toolUse",
    "toolResult",
    "functionCall",
    "functionResponse",
    "metadata",
    "parameters",
    "prompt",
    "history",
    "data",
    "images",
    "output",
    "cache_control",
    "model",
    "stream",
    "user",
    "assistant",
    "tool_result",
    "tool_use",
    "function_call",
    "function_call_output",
    "systemInstruction",
    "toolConfig",
    "summary",
    "it's",
    "",
];

fn json_value() -> impl Strategy<Value = Value> {
    let word = prop::sample::select(KEYS).prop_map(str::to_owned);
    let text = prop_oneof![
        word.clone(),
        any::<String>(),
        "data:image/png;base64,[A-Za-z0-9+/]{0,80}"
    ];
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        text.prop_map(Value::String),
    ];
    leaf.prop_recursive(6, 64, 6, move |inner| {
        prop_oneof![
            // A JSON document inside a string, as tool arguments and
            // metadata carry them.
            inner
                .clone()
                .prop_map(|value| Value::String(value.to_string())),
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec((prop::sample::select(KEYS), inner), 0..6).prop_map(|members| {
                Value::Object(
                    members
                        .into_iter()
                        .map(|(k, v)| (k.to_owned(), v))
                        .collect(),
                )
            }),
        ]
    })
}

/// Number of non-empty string leaves, counting those of JSON arrays and
/// objects inside strings (a string holding one yields its leaves, or itself
/// when it has none).
fn strings(value: &Value) -> usize {
    match value {
        Value::String(s) => match serde_json::from_str::<Value>(s) {
            Ok(inner @ (Value::Array(_) | Value::Object(_))) => strings(&inner).max(1),
            _ => usize::from(!s.is_empty()),
        },
        Value::Array(items) => items.iter().map(strings).sum(),
        Value::Object(members) => members.values().map(strings).sum(),
        _ => 0,
    }
}

proptest! {
    #[test]
    fn arbitrary_bytes_never_panic(body in prop::collection::vec(any::<u8>(), 0..512)) {
        let _ = parse_request(&endpoint(), &body);
    }

    #[test]
    fn arbitrary_json_objects_parse(members in prop::collection::vec((prop::sample::select(KEYS), json_value()), 0..6)) {
        let body = Value::Object(members.into_iter().map(|(k, v)| (k.to_owned(), v)).collect());
        let request = parse_request(&endpoint(), body.to_string().as_bytes()).unwrap();
        // At most one part per string leaf; every path is rooted.
        prop_assert!(request.parts.len() <= strings(&body));
        prop_assert!(request.parts.iter().all(|p| p.path.starts_with('$') && !p.text.is_empty()));
    }

    #[test]
    fn arbitrary_request_lines_never_panic(method in "[A-Za-z]{0,8}", authority in proptest::option::of(".{0,40}"), target in ".{0,80}") {
        let _ = Catalog::embedded().recognise(&method, authority.as_deref(), &target);
    }

    #[test]
    fn arbitrary_catalogue_text_never_panics(text in ".{0,200}") {
        let _ = Catalog::from_toml(&text, "fuzz.toml");
        let head = format!("[[provider]]\nid = \"p\"\nname = \"P\"\nhosts = [\"{}\"]\nendpoints = [{{ api = \"openai_chat\", path = \"{}\" }}]\n",
            text.replace(['"', '\\', '\n'], ""), text.replace(['"', '\\', '\n'], ""));
        let _ = Catalog::from_toml(&head, "fuzz.toml");
    }
}
