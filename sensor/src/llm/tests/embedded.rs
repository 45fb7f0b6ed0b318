//! JSON documents inside JSON strings: read as structure, with `{json}` in the
//! path, the role of the string that holds them, and the walker's bounds.

use serde_json::json;

use crate::llm::{Catalog, Endpoint, LlmRequest, Role, parse_request};

use Role::{Metadata, Other, ToolCall, ToolResult, User};

fn endpoint(authority: &str, target: &str) -> Endpoint {
    Catalog::embedded()
        .recognise("POST", Some(authority), target)
        .unwrap_or_else(|| panic!("{authority} {target} not recognised"))
}

fn anthropic(body: &str) -> LlmRequest {
    parse_request(
        &endpoint("api.anthropic.com", "/v1/messages"),
        body.as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn openai(body: &str) -> LlmRequest {
    parse_request(
        &endpoint("api.openai.com", "/v1/chat/completions"),
        body.as_bytes(),
    )
    .unwrap_or_else(|e| panic!("{e}"))
}

fn parts(request: &LlmRequest) -> Vec<(&str, Role, &str)> {
    request
        .parts
        .iter()
        .map(|p| (p.path.as_str(), p.role, p.text.as_str()))
        .collect()
}

const DEVICE_ID: &str = "3f9a1c7e5b2d8046e1a9c3b7d5f20e4a6c8b1d3f5a7e9c2b4d6f8a0c1e3b5d79";

#[test]
fn anthropic_metadata_user_id_is_read_as_its_members() {
    // As a coding CLI sends it: the user id is a JSON document in a string.
    let body = r#"{
      "model": "claude-sonnet-4-5",
      "max_tokens": 32000,
      "messages": [{"role": "user", "content": [
        {"type": "text", "text": "read the hosts file"},
        {"type": "tool_use", "id": "toolu_01", "name": "Read",
         "input": "{\"path\": \"/etc/hosts\", \"limit\": 20}"}
      ]}],
      "metadata": {"user_id": "{\"device_id\":\"<DEVICE>\",\"account_uuid\":\"2da9fd40-d5f9-46aa-ba24-c2486989d611\",\"session_id\":\"a9943af7-8ccf-48f2-b586-d90e8b2725f8\"}"}
    }"#
    .replace("<DEVICE>", DEVICE_ID);
    let request = anthropic(&body);
    assert_eq!(
        parts(&request),
        [
            ("$.messages[0].content[0].text", User, "read the hosts file"),
            ("$.messages[0].content[1].id", Other, "toolu_01"),
            ("$.messages[0].content[1].name", ToolCall, "Read"),
            (
                "$.messages[0].content[1].input{json}.path",
                ToolCall,
                "/etc/hosts"
            ),
            ("$.metadata.user_id{json}.device_id", Metadata, DEVICE_ID),
            (
                "$.metadata.user_id{json}.account_uuid",
                Metadata,
                "2da9fd40-d5f9-46aa-ba24-c2486989d611"
            ),
            (
                "$.metadata.user_id{json}.session_id",
                Metadata,
                "a9943af7-8ccf-48f2-b586-d90e8b2725f8"
            ),
        ]
    );
    assert!(!request.truncated);
}

#[test]
fn openai_tool_call_arguments_and_json_tool_results() {
    let body = r#"{
      "model": "gpt-4o",
      "messages": [
        {"role": "user", "content": "what is in my project?"},
        {"role": "assistant", "content": null, "tool_calls": [
          {"id": "call_1", "type": "function", "function": {"name": "list_dir",
           "arguments": "{\"path\":\"/home/alice/src/app\",\"options\":{\"recursive\":true,\"exclude\":[\"target\",\".git\"],\"depth\":3}}"}}
        ]},
        {"role": "tool", "tool_call_id": "call_1",
         "content": "{\"stdout\": \"Cargo.toml\\nsrc\\n\", \"exit_code\": 0}"}
      ]
    }"#;
    let request = openai(body);
    assert_eq!(
        parts(&request),
        [
            ("$.messages[0].content", User, "what is in my project?"),
            ("$.messages[1].tool_calls[0].id", Other, "call_1"),
            (
                "$.messages[1].tool_calls[0].function.name",
                ToolCall,
                "list_dir"
            ),
            (
                "$.messages[1].tool_calls[0].function.arguments{json}.path",
                ToolCall,
                "/home/alice/src/app"
            ),
            (
                "$.messages[1].tool_calls[0].function.arguments{json}.options.exclude[0]",
                ToolCall,
                "target"
            ),
            (
                "$.messages[1].tool_calls[0].function.arguments{json}.options.exclude[1]",
                ToolCall,
                ".git"
            ),
            ("$.messages[2].tool_call_id", Other, "call_1"),
            (
                "$.messages[2].content{json}.stdout",
                ToolResult,
                "Cargo.toml\nsrc\n"
            ),
        ]
    );
}

#[test]
fn strings_that_only_look_like_json_stay_text() {
    let texts = [
        "{not json}",
        "[1, 2",
        "{\"a\": 1} and more",
        "[link](https://example.org) [x]",
        "{\"a\": tru}",
        "{",
        "[",
        "}{",
        "{\"a\": \"b\"]",
    ];
    for text in texts {
        let body = json!({"metadata": {"user_id": text}}).to_string();
        assert_eq!(
            parts(&anthropic(&body)),
            [("$.metadata.user_id", Metadata, text)],
            "{text}"
        );
    }
    // Documents without any text stay the string they came in.
    for text in [
        "[1, 2]",
        "{}",
        "[]",
        "{\"n\": null, \"b\": true, \"s\": \"\"}",
    ] {
        let body = json!({"metadata": {"user_id": text}}).to_string();
        assert_eq!(
            parts(&anthropic(&body)),
            [("$.metadata.user_id", Metadata, text)],
            "{text}"
        );
    }
    // JSON whitespace around a document is not part of it.
    let body = json!({"metadata": {"user_id": " \n{\"a\": \"b\"}\r\n\t"}}).to_string();
    assert_eq!(
        parts(&anthropic(&body)),
        [("$.metadata.user_id{json}.a", Metadata, "b")]
    );
}

#[test]
fn documents_nest_within_bounds() {
    // Five documents, each inside a string of the one around it: four are read
    // as structure, the innermost stays text.
    let mut value = json!({"y": "leaf"});
    for _ in 0..4 {
        value = json!({"x": value.to_string()});
    }
    let body = json!({"metadata": {"user_id": value.to_string()}}).to_string();
    assert_eq!(
        parts(&anthropic(&body)),
        [(
            "$.metadata.user_id{json}.x{json}.x{json}.x{json}.x",
            Metadata,
            r#"{"y":"leaf"}"#
        )]
    );
    // Four levels: all read.
    let mut value = json!({"y": "leaf"});
    for _ in 0..3 {
        value = json!({"x": value.to_string()});
    }
    let body = json!({"metadata": {"user_id": value.to_string()}}).to_string();
    assert_eq!(
        parts(&anthropic(&body)),
        [(
            "$.metadata.user_id{json}.x{json}.x{json}.x{json}.y",
            Metadata,
            "leaf"
        )]
    );
}

#[test]
fn embedded_nesting_counts_toward_the_depth_limit() {
    // `$.metadata.user_id` sits in two objects; a document in it may nest
    // 125 more levels (127 in all), not 126.
    let nested = |levels: usize| format!("{}\"x\"{}", "[".repeat(levels), "]".repeat(levels));
    let fits = nested(125);
    let body = json!({"metadata": {"user_id": fits}}).to_string();
    let request = anthropic(&body);
    assert_eq!(request.parts.len(), 1);
    assert_eq!(
        request.parts[0].path,
        format!("$.metadata.user_id{{json}}{}", "[0]".repeat(125))
    );
    assert_eq!(request.parts[0].text, "x");
    let too_deep = nested(126);
    let body = json!({"metadata": {"user_id": too_deep}}).to_string();
    assert_eq!(
        parts(&anthropic(&body)),
        [("$.metadata.user_id", Metadata, too_deep.as_str())]
    );
}

#[test]
fn long_strings_stay_text() {
    let long = json!({"a": "x".repeat(64 << 10)}).to_string();
    assert!(long.len() > 64 << 10);
    let body = json!({"metadata": {"user_id": long}}).to_string();
    assert_eq!(
        parts(&anthropic(&body)),
        [("$.metadata.user_id", Metadata, long.as_str())]
    );
    let fits = json!({"a": "x".repeat((64 << 10) - 8)}).to_string();
    assert_eq!(fits.len(), 64 << 10);
    let body = json!({"metadata": {"user_id": fits}}).to_string();
    assert_eq!(anthropic(&body).parts[0].path, "$.metadata.user_id{json}.a");
}

#[test]
fn lone_surrogates_and_odd_keys_inside_documents() {
    // The string holds the six characters `\ud800`, an escape of a lone
    // surrogate in the embedded document.
    let body = json!({"metadata": {"user_id": r#"{"a": "x\ud800y", "{json}": "k", "it's": "q"}"#}})
        .to_string();
    assert_eq!(
        parts(&anthropic(&body)),
        [
            ("$.metadata.user_id{json}.a", Metadata, "x\u{fffd}y"),
            ("$.metadata.user_id{json}['{json}']", Metadata, "k"),
            (r"$.metadata.user_id{json}['it\'s']", Metadata, "q"),
        ]
    );
}

#[test]
fn binary_payloads_in_documents_become_markers() {
    let b64 = "iVBORw0KGgo".repeat(10);
    let body = r#"{"messages": [{"role": "user", "content": [
        {"type": "tool_result", "tool_use_id": "t", "content": "{\"data\": \"<B64>\"}"}
    ]}]}"#
        .replace("<B64>", &b64);
    assert_eq!(
        parts(&anthropic(&body)),
        [
            ("$.messages[0].content[0].tool_use_id", Other, "t"),
            (
                "$.messages[0].content[0].content{json}.data",
                ToolResult,
                "[binary data: base64, 110 bytes]"
            ),
        ]
    );
}

#[test]
fn part_count_and_text_size_count_embedded_leaves() {
    let ep = endpoint("api.openai.com", "/v1/embeddings");
    // 11 strings of 10 000 strings each: more parts than the bound.
    let document = json!(vec!["x"; 10_000]).to_string();
    let body = json!({"input": vec![document; 11]}).to_string();
    let request = parse_request(&ep, body.as_bytes()).unwrap();
    assert_eq!(request.parts.len(), 100_000);
    assert!(request.truncated);
    assert_eq!(request.parts[99_999].path, "$.input[9]{json}[9999]");
    // 280 documents of 60 000 bytes of text each: more text than the bound.
    let document = json!(["y".repeat(60_000)]).to_string();
    let body = json!({"input": vec![document; 280]}).to_string();
    let request = parse_request(&ep, body.as_bytes()).unwrap();
    assert!(request.truncated);
    let total: usize = request.parts.iter().map(|p| p.text.len()).sum();
    assert_eq!(total, 16 << 20);
    assert!(request.parts.iter().all(|p| p.path.ends_with("{json}[0]")));
}
