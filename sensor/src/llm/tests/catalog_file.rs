//! Operator catalogue files: merging, precedence and error positions.

use crate::llm::{Api, Catalog, CatalogError};

fn operator(text: &str) -> Catalog {
    Catalog::from_toml(text, "operator.toml").unwrap_or_else(|e| panic!("{e}"))
}

fn error(text: &str) -> CatalogError {
    match Catalog::from_toml(text, "operator.toml") {
        Ok(_) => panic!("accepted:\n{text}"),
        Err(e) => e,
    }
}

fn provider_of(catalog: &Catalog, authority: &str, path: &str) -> Option<String> {
    catalog
        .recognise("POST", Some(authority), path)
        .map(|e| e.provider)
}

#[test]
fn embedded_file_is_valid() {
    let text = include_str!("../providers.toml");
    assert!(Catalog::from_toml(text, "providers.toml").is_ok());
    assert!(
        Catalog::embedded()
            .recognise("POST", Some("api.anthropic.com"), "/v1/messages")
            .is_some()
    );
}

#[test]
fn operator_providers_add_to_the_embedded_ones() {
    let ours = operator(
        r#"
[[provider]]
id = "corp-gateway"
name = "Corp LLM gateway"
hosts = ["llm.corp.example", "*.llm.corp.example"]
endpoints = [
  { api = "openai_chat", path = "/openai/chat" },
  { api = "anthropic_messages", path = "/claude/{model}/messages", methods = ["post", "PUT"] },
]
"#,
    );
    let merged = Catalog::embedded().with_overrides(ours);
    let found = merged
        .recognise("PUT", Some("eu.llm.corp.example"), "/claude/opus/messages")
        .unwrap();
    assert_eq!(
        (
            found.provider.as_str(),
            found.provider_name.as_str(),
            found.api
        ),
        ("corp-gateway", "Corp LLM gateway", Api::AnthropicMessages)
    );
    assert_eq!(found.model_from_path.as_deref(), Some("opus"));
    assert_eq!(
        provider_of(&merged, "llm.corp.example", "/openai/chat").as_deref(),
        Some("corp-gateway")
    );
    assert_eq!(
        provider_of(&merged, "api.openai.com", "/v1/chat/completions").as_deref(),
        Some("openai")
    );
}

#[test]
fn an_operator_provider_replaces_the_one_with_its_id() {
    // No endpoints: OpenAI's entry is switched off, so its traffic falls back
    // to the path-shape entries.
    let ours = operator(
        "[[provider]]\nid = \"openai\"\nname = \"OpenAI\"\nhosts = [\"api.openai.com\"]\n",
    );
    let merged = Catalog::embedded().with_overrides(ours);
    assert_eq!(
        provider_of(&merged, "api.openai.com", "/v1/chat/completions").as_deref(),
        Some("openai-compatible")
    );
    assert_eq!(
        provider_of(&merged, "api.openai.com", "/v1/embeddings").as_deref(),
        Some("openai-compatible")
    );
}

#[test]
fn operator_entries_come_first_within_a_precedence_level() {
    let ours = operator(
        r#"
[[provider]]
id = "vllm-farm"
name = "vLLM farm"
endpoints = [{ api = "openai_chat", path = "/v1/chat/completions" }]
"#,
    );
    let merged = Catalog::embedded().with_overrides(ours);
    // Path-only level: the operator's entry beats the embedded path-only one…
    assert_eq!(
        provider_of(&merged, "gpu-7:8000", "/v1/chat/completions").as_deref(),
        Some("vllm-farm")
    );
    // …but not a port-restricted or a host entry, which are more specific.
    assert_eq!(
        provider_of(&merged, "localhost:11434", "/v1/chat/completions").as_deref(),
        Some("ollama")
    );
    assert_eq!(
        provider_of(&merged, "api.openai.com", "/v1/chat/completions").as_deref(),
        Some("openai")
    );
}

#[test]
fn an_empty_file_is_an_empty_catalogue() {
    let empty = operator("# nothing yet\n");
    assert!(
        empty
            .recognise("POST", Some("api.openai.com"), "/v1/chat/completions")
            .is_none()
    );
}

/// Each invalid file is reported at the offending value, with a reason.
#[test]
fn errors_name_origin_line_column_and_reason() {
    let head = "[[provider]]\nid = \"p\"\nname = \"P\"\n";
    let cases: &[(String, usize, &str)] = &[
        (format!("{head}hosts = [\"a.example\"\n"), 4, "array"),
        (
            format!("{head}endpoints = [{{ api = \"opnai_chat\", path = \"/x\" }}]\n"),
            4,
            "opnai_chat",
        ),
        (format!("{head}host = [\"a.example\"]\n"), 4, "host"),
        (
            format!("{head}hosts = [\"ok.example\",\n  \"bad..example\"]\n"),
            5,
            "bad..example",
        ),
        (format!("{head}hosts = [\"localhost:11434\"]\n"), 4, "port"),
        (
            format!(
                "{head}endpoints = [\n  {{ api = \"openai_chat\", path = \"/m/{{modle}}\" }},\n]\n"
            ),
            5,
            "{model}",
        ),
        (
            format!("{head}endpoints = [{{ api = \"openai_chat\", path = \"v1/x\" }}]\n"),
            4,
            "start with `/`",
        ),
        (
            format!(
                "{head}endpoints = [{{ api = \"openai_chat\", path = \"/x\", methods = [\"GET /\"] }}]\n"
            ),
            4,
            "method",
        ),
        (
            format!(
                "{head}endpoints = [{{ api = \"openai_chat\", path = \"/x\", ports = [0] }}]\n"
            ),
            4,
            "port 0",
        ),
        (
            format!(
                "{head}endpoints = [{{ api = \"openai_chat\", path = \"/x\", ports = [70000] }}]\n"
            ),
            4,
            "",
        ),
        (
            format!("{head}\n[[provider]]\nid = \"p\"\nname = \"Again\"\n"),
            6,
            "used twice",
        ),
        (
            "[[provider]]\nid = \"Big Name\"\nname = \"x\"\n".to_owned(),
            2,
            "lower-case",
        ),
        ("[[provider]]\nid = \"p\"\n".to_owned(), 1, "name"),
        ("providers = []\n".to_owned(), 1, "providers"),
    ];
    for (text, line, reason) in cases {
        let e = error(text);
        assert_eq!(e.origin, "operator.toml");
        assert_eq!(e.line, Some(*line), "{e}\n{text}");
        assert!(e.reason.contains(reason), "{e}\n{text}");
        let shown = e.to_string();
        assert!(
            shown.starts_with(&format!("operator.toml:{line}:")),
            "{shown}"
        );
        assert!(!shown.contains('\n'), "one line: {shown}");
    }
}

#[test]
fn error_columns_point_at_the_value() {
    let e = error("[[provider]]\nid = \"p\"\nname = \"P\"\nhosts = [\"ok\", \"b@d\"]\n");
    assert_eq!((e.line, e.column), (Some(4), Some(16)));
}
