//! Detector tests: each default rule on the example host, encodings, word
//! boundaries, weak facts, scopes, exceptions, thresholds, evidence, and the
//! identifier memory.

use std::collections::BTreeSet;

use super::*;
use crate::facts::FactKind;
use crate::llm::{Role, TextPart};

fn part(path: &str, role: Role, text: &str) -> TextPart {
    TextPart {
        path: path.into(),
        role,
        text: text.into(),
    }
}

fn request<'a>(parts: &'a [TextPart]) -> Request<'a> {
    Request {
        provider: Some("anthropic"),
        api: Some(crate::llm::Api::AnthropicMessages),
        authority: Some("api.anthropic.com"),
        method: "POST",
        path: "/v1/messages",
        exe: Some("/usr/bin/node"),
        comm: "claude",
        parts,
    }
}

fn detector() -> Detector {
    Detector::new(&RuleSet::embedded().unwrap(), &example_facts(), [7u8; 32]).unwrap()
}

fn ids(f: &[Finding]) -> Vec<&str> {
    f.iter().map(|f| f.rule.id.as_str()).collect()
}

#[test]
fn every_default_example_passes() {
    let results = test_examples(&RuleSet::embedded().unwrap());
    assert!(results.len() >= 12);
    let failed: Vec<_> = results.iter().filter(|r| !r.passed).collect();
    assert!(failed.is_empty(), "{failed:#?}");
}

#[test]
fn a_coding_assistant_environment_block_names_every_fact() {
    let d = detector();
    let parts = [part(
        "$.system[1].text",
        Role::System,
        "<env>\nWorking directory: /home/alice/project\nPlatform: linux\nOS Version: Linux 6.1.0-18-amd64\n\
         Host: build-host-7\nHTTPS_PROXY=http://proxy.corp.example:3128\nTZ=Europe/Berlin\n</env>",
    )];
    let found = d.inspect(&request(&parts), None);
    let got = ids(&found);
    for want in [
        "TT-FP-002",
        "TT-FP-003",
        "TT-FP-004",
        "TT-FP-005",
        "TT-FP-010",
    ] {
        assert!(got.contains(&want), "{want} missing from {got:?}");
    }
    let bundle = found.iter().find(|f| f.rule.id == "TT-FP-010").unwrap();
    let kinds: BTreeSet<_> = bundle.facts.iter().map(|f| f.kind).collect();
    for k in [
        FactKind::Home,
        FactKind::User,
        FactKind::KernelRelease,
        FactKind::Hostname,
        FactKind::Proxy,
        FactKind::Timezone,
    ] {
        assert!(kinds.contains(&k), "{k:?} in {kinds:?}");
    }
    let h = &bundle.hits[0];
    assert_eq!(h.path, "$.system[1].text");
    assert_eq!(h.role, Role::System);
    assert!(h.evidence.hash.starts_with("hmac-sha256:") && h.evidence.hash.len() == 12 + 32);
    // Evidence never carries the value.
    for h in &bundle.hits {
        assert!(!h.evidence.excerpt.contains("alice") || h.evidence.excerpt.len() < 5);
        assert!(!h.evidence.excerpt.contains("build-host-7"));
    }
}

#[test]
fn facts_are_found_in_every_encoding() {
    use base64::Engine as _;
    let d = detector();
    let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
    let hex = |s: &str| s.bytes().map(|b| format!("{b:02X}")).collect::<String>();
    let cases = [
        ("HOST=BUILD-HOST-7", Encoding::CaseFolded),
        (
            "{\\\"dir\\\":\\\"\\/home\\/alice\\/x\\\"}",
            Encoding::JsonEscaped,
        ),
        (
            "u=http%3A%2F%2Fproxy.corp.example%3A3128",
            Encoding::UrlEncoded,
        ),
        (
            &b64("proxy: http://proxy.corp.example:3128 ok") as &str,
            Encoding::Base64,
        ),
        (
            &b64("xhttp://proxy.corp.example:3128") as &str,
            Encoding::Base64,
        ),
        (
            &b64("xxhttp://proxy.corp.example:3128!") as &str,
            Encoding::Base64,
        ),
        (&hex("id=proxy.corp.example:3128") as &str, Encoding::Hex),
    ];
    for (text, enc) in cases {
        let parts = [part("$.metadata.x", Role::Metadata, text)];
        let found = d.inspect(&request(&parts), None);
        let encs: Vec<_> = found
            .iter()
            .flat_map(|f| f.hits.iter().filter_map(|h| h.encoding))
            .collect();
        assert!(encs.contains(&enc), "{text}: {encs:?}");
    }
}

#[test]
fn the_utc_offset_counts_only_as_a_weak_fact() {
    let d = detector();
    let alone = [part("$.system", Role::System, "local time 10:00 UTC+01:00")];
    assert!(ids(&d.inspect(&request(&alone), None)).is_empty());
    let with = [part(
        "$.system",
        Role::System,
        "tz offset UTC+1, arch x86_64, Debian GNU/Linux 12 (bookworm)",
    )];
    let found = d.inspect(&request(&with), None);
    let bundle = found
        .iter()
        .find(|f| f.rule.id == "TT-FP-010")
        .expect("bundle");
    assert!(bundle.facts.iter().any(|f| f.kind == FactKind::UtcOffset));
    assert!(
        bundle
            .hits
            .iter()
            .any(|h| h.encoding == Some(Encoding::UtcOffset))
    );
}

#[test]
fn word_boundaries_and_weak_facts_keep_ordinary_text_quiet() {
    let d = detector();
    for text in [
        "the malice of build-host-70 on /home/alicex",
        "CFLAGS for x86_64 builds; run as root",
        "set LANG=de_DE.UTF-8 in your shell profile",
    ] {
        let parts = [part("$.system", Role::System, text)];
        assert_eq!(
            ids(&d.inspect(&request(&parts), None)),
            Vec::<&str>::new(),
            "{text}"
        );
    }
}

#[test]
fn scopes_restrict_roles_and_exceptions_drop_hits() {
    let d = detector();
    // Identifier rules look at client-filled fields only, not conversation turns.
    let user_turn = [part(
        "$.messages[0].content",
        Role::User,
        "my order id is 0f8fad5b-d9cb-469f-a165-70867728950e",
    )];
    assert!(ids(&d.inspect(&request(&user_turn), None)).is_empty());
    let header = [part(
        "header:x-request-id",
        Role::Header,
        "0f8fad5b-d9cb-469f-a165-70867728950e",
    )];
    assert!(
        ids(&d.inspect(&request(&header), None)).is_empty(),
        "x-request-id is excepted"
    );
    let meta = [part(
        "$.metadata.user_id",
        Role::Metadata,
        "0f8fad5b-d9cb-469f-a165-70867728950e",
    )];
    assert_eq!(ids(&d.inspect(&request(&meta), None)), ["TT-ID-001"]);
}

#[test]
fn operator_rules_with_literals_regexes_and_request_scopes() {
    let mut set = RuleSet::default();
    set.add_text(
        r#"
rules:
  - id: OPS-1
    version: 2
    title: internal project names
    severity: high
    attack: [T1567]
    scope:
      hosts: ["*.anthropic.com"]
      processes: ["/usr/bin/*"]
    detect:
      literals: [project-falcon]
      regexes: ['ticket-[0-9]{5}']
      case_insensitive: true
    threshold:
      min_hits: 2
"#,
        "ops.yaml",
    )
    .unwrap();
    let d = Detector::new(&set, &[], [1u8; 32]).unwrap();
    let one = [part("$.system", Role::System, "Project-Falcon")];
    assert!(
        d.inspect(&request(&one), None).is_empty(),
        "below the hit threshold"
    );
    let two = [part(
        "$.system",
        Role::System,
        "Project-Falcon and TICKET-12345",
    )];
    let found = d.inspect(&request(&two), None);
    assert_eq!(ids(&found), ["OPS-1"]);
    assert_eq!(found[0].rule.version, 2);
    let mut elsewhere = request(&two);
    elsewhere.authority = Some("api.openai.com");
    assert!(d.inspect(&elsewhere, None).is_empty(), "host scope");
}

#[test]
fn persistent_identifiers_and_new_fields_need_the_memory() {
    let d = detector();
    let mut store = ident::IdentStore::in_memory(1000);
    let id = "9f2c4e6a-8b0d-4f3e-a5a7-c9e1b3d5f7a9";
    let parts = [part("$.metadata.user_id", Role::Metadata, id)];
    let seen = |instance: &str, session: &str, build: &str, store: &mut ident::IdentStore| {
        let mut t = Tracking {
            store,
            client: ident::ClientKey {
                exe: "/usr/bin/node".into(),
                build: build.into(),
            },
            instance: instance.into(),
            session: session.into(),
            now_unix: 1_700_000_000,
        };
        ids(&d.inspect(&request(&parts), Some(&mut t)))
            .into_iter()
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let first = seen("1@1", "s1", "b1", &mut store);
    assert!(!first.contains(&"TT-ID-002".to_owned()), "{first:?}");
    let again = seen("2@5", "s1", "b1", &mut store);
    assert!(
        again.contains(&"TT-ID-002".to_owned()),
        "another process: {again:?}"
    );
    let new_build = seen("3@9", "s2", "b2", &mut store);
    assert!(
        !new_build.contains(&"TT-ID-003".to_owned()),
        "same fields: {new_build:?}"
    );
}

#[test]
fn findings_have_stable_signatures_for_aggregation() {
    let d = detector();
    let parts = [part(
        "$.system",
        Role::System,
        "HTTPS_PROXY=http://proxy.corp.example:3128",
    )];
    let a = d.inspect(&request(&parts), None);
    let b = d.inspect(&request(&parts), None);
    assert_eq!(a[0].signature(), b[0].signature());
    assert!(a[0].signature().starts_with("TT-FP-003@1|"));
}

/// Parses an Anthropic Messages body as the sensor does.
fn anthropic_parts(body: &str) -> Vec<TextPart> {
    let endpoint = crate::llm::Endpoint {
        provider: "anthropic".into(),
        provider_name: "Anthropic".into(),
        api: crate::llm::Api::AnthropicMessages,
        model_from_path: None,
        self_hosted: false,
        streaming: false,
    };
    crate::llm::parse_request(&endpoint, body.as_bytes())
        .expect("a valid body")
        .parts
}

#[test]
fn a_device_id_inside_the_user_id_document_is_persistent_and_its_session_id_is_not() {
    // A coding CLI's `metadata.user_id`: a JSON document in a string, with a
    // device id kept on disk, the account, and an id new in every session.
    const DEVICE: &str = "8c3f5a1e9b7d2046f1e3a5c7b9d0e2f4a6c8e0b2d4f6a8c1e3b5d7f9a0c2e4b6";
    const ACCOUNT: &str = "2da9fd40-d5f9-46aa-ba24-c2486989d611";
    let body = |session: &str| {
        format!(
            r#"{{"model":"claude-sonnet-4-5","max_tokens":8,
                "messages":[{{"role":"user","content":"hi"}}],
                "metadata":{{"user_id":"{{\"device_id\":\"{DEVICE}\",\"account_uuid\":\"{ACCOUNT}\",\"session_id\":\"{session}\"}}"}}}}"#
        )
    };
    let d = detector();
    let mut store = ident::IdentStore::in_memory(1000);
    let mut send = |session_id: &str, instance: &str, session: &str| {
        let parts = anthropic_parts(&body(session_id));
        let mut t = Tracking {
            store: &mut store,
            client: ident::ClientKey {
                exe: "/usr/bin/node".into(),
                build: "b1".into(),
            },
            instance: instance.into(),
            session: session.into(),
            now_unix: 1_700_000_000,
        };
        d.inspect(&request(&parts), Some(&mut t))
    };
    let paths = |found: &[Finding], rule: &str| -> Vec<String> {
        found
            .iter()
            .filter(|f| f.rule.id == rule)
            .flat_map(|f| f.hits.iter().map(|h| h.path.clone()))
            .collect()
    };
    let device = "$.metadata.user_id{json}.device_id";
    let account = "$.metadata.user_id{json}.account_uuid";
    let session = "$.metadata.user_id{json}.session_id";

    // First session: every identifier is a candidate, none has recurred.
    let first = send("a9943af7-8ccf-48f2-b586-d90e8b2725f8", "100@1", "s1");
    assert_eq!(paths(&first, "TT-ID-001"), [device, account, session]);
    assert!(paths(&first, "TT-ID-002").is_empty(), "{first:#?}");
    let hit = &first[0].hits[0];
    assert_eq!(hit.role, Role::Metadata);
    assert_eq!(
        hit.offset, 0,
        "offsets are within the device id's own string"
    );

    // A later request of the same process and session re-sends the same ids:
    // a conversation, not persistence.
    let again = send("a9943af7-8ccf-48f2-b586-d90e8b2725f8", "100@1", "s1");
    assert!(paths(&again, "TT-ID-002").is_empty(), "{again:#?}");

    // Another process in a later session: the device and account ids recur,
    // the new session id does not.
    let next = send("0c6d1f3b-7e2a-4b8c-9d5e-1f3a5b7c9d2e", "200@9", "s2");
    assert_eq!(paths(&next, "TT-ID-002"), [device, account]);
    let persistent = next.iter().find(|f| f.rule.id == "TT-ID-002").unwrap();
    assert!(persistent.hits.iter().all(|h| {
        matches!(
            &h.source,
            HitSource::Identifier {
                recurrence: Some(r),
                ..
            } if r.other_instances == 1 && r.other_sessions == 1
        )
    }));
}

#[test]
fn new_fields_inside_documents_count_in_metadata_not_in_the_conversation() {
    let d = detector();
    let mut store = ident::IdentStore::in_memory(1000);
    let mut send = |build: &str, user_id: &str, tool_output: &str| {
        let body = format!(
            r#"{{"model":"m","max_tokens":8,"messages":[
                {{"role":"user","content":"list the pods"}},
                {{"role":"assistant","content":[{{"type":"tool_use","id":"t1","name":"kubectl","input":{{"args":"get pods -o json"}}}}]}},
                {{"role":"user","content":[{{"type":"tool_result","tool_use_id":"t1","content":{}}}]}}],
                "metadata":{{"user_id":{}}}}}"#,
            serde_json::Value::from(tool_output),
            serde_json::Value::from(user_id),
        );
        let parts = anthropic_parts(&body);
        let mut t = Tracking {
            store: &mut store,
            client: ident::ClientKey {
                exe: "/usr/bin/node".into(),
                build: build.into(),
            },
            instance: format!("{build}@1"),
            session: "s1".into(),
            now_unix: 1_700_000_000,
        };
        d.inspect(&request(&parts), Some(&mut t))
            .into_iter()
            .filter(|f| f.rule.id == "TT-ID-003")
            .flat_map(|f| f.hits.into_iter().map(|h| h.path))
            .collect::<Vec<_>>()
    };
    assert!(
        send(
            "b1",
            r#"{"session_id":"s"}"#,
            r#"{"items":[{"name":"web"}]}"#
        )
        .is_empty(),
        "the first build has nothing to be compared with"
    );
    // The new build adds a device id to the user id document; the tool's
    // output is another document, with other members, but that is data.
    let new = send(
        "b2",
        r#"{"session_id":"s","device_id":"d"}"#,
        r#"{"kind":"List","metadata":{"resourceVersion":"7"}}"#,
    );
    assert_eq!(new, ["$.metadata.user_id{json}.device_id"]);
}

/// Parses a body of `api` as the sensor does.
fn parts_of(api: crate::llm::Api, body: &str) -> Vec<TextPart> {
    let endpoint = crate::llm::Endpoint::example(api);
    crate::llm::parse_request(&endpoint, body.as_bytes())
        .expect("a valid body")
        .parts
}

/// The hits of the `git status` rule: path, role and regex index.
fn git_status_hits(parts: &[TextPart]) -> Vec<(String, Role, usize)> {
    detector()
        .inspect(&request(parts), None)
        .into_iter()
        .filter(|f| f.rule.id == "TT-FP-007")
        .flat_map(|f| f.hits)
        .map(|h| match h.source {
            HitSource::Regex { index } => (h.path, h.role, index),
            other => panic!("unexpected hit source {other:?}"),
        })
        .collect()
}

/// `git status` in a working tree with staged, unstaged and untracked changes.
const LONG_STATUS: &str = "On branch feature/payments\n\
Your branch is ahead of 'origin/feature/payments' by 2 commits.\n  (use \"git push\" to publish your local commits)\n\n\
Changes to be committed:\n  (use \"git restore --staged <file>...\" to unstage)\n\tnew file:   src/ledger/reconcile.rs\n\trenamed:    src/old.rs -> src/new.rs\n\n\
Changes not staged for commit:\n  (use \"git add <file>...\" to update what will be committed)\n  (use \"git restore <file>...\" to discard changes in working directory)\n\tmodified:   Cargo.toml\n\tdeleted:    docs/internal/roadmap.md\n\n\
Untracked files:\n  (use \"git add <file>...\" to include in what will be committed)\n\tnotes/customer-acme.txt\n\n";

#[test]
fn git_status_long_format_in_an_anthropic_tool_result() {
    let body = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 32000,
        "messages": [
            {"role": "assistant", "content": [
                {"type": "text", "text": "Let me check the working tree."},
                {"type": "tool_use", "id": "toolu_01", "name": "Bash",
                 "input": {"command": "git status", "description": "Show working tree status"}},
            ]},
            {"role": "user", "content": [
                {"type": "tool_result", "tool_use_id": "toolu_01",
                 "content": [{"type": "text", "text": LONG_STATUS}]},
            ]},
        ],
    })
    .to_string();
    let parts = parts_of(crate::llm::Api::AnthropicMessages, &body);
    let path = "$.messages[1].content[0].content[0].text";
    // The branch line with the next header, both changes sections with their
    // first entry, and the untracked files with theirs.
    assert_eq!(
        git_status_hits(&parts),
        [
            (path.to_owned(), Role::ToolResult, 0),
            (path.to_owned(), Role::ToolResult, 1),
            (path.to_owned(), Role::ToolResult, 1),
            (path.to_owned(), Role::ToolResult, 2),
        ]
    );
    let found = detector().inspect(&request(&parts), None);
    let rule = &found
        .iter()
        .find(|f| f.rule.id == "TT-FP-007")
        .unwrap()
        .rule;
    assert_eq!(rule.attack, ["T1083", "T1567"]);
    assert_eq!(rule.severity, rules::Severity::Medium);
}

#[test]
fn git_status_in_anthropic_user_turns() {
    // Short format pasted with a question; a clean tree's long format.
    let body = serde_json::json!({
        "model": "claude-sonnet-4-5",
        "max_tokens": 1024,
        "messages": [
            {"role": "user", "content": [
                {"type": "text", "text": "I ran git status -s:\n\n M src/main.rs\nMM src/lib.rs\nA  src/new_module.rs\n?? \"design notes.md\"\n\nwhich should I commit first?"},
            ]},
            {"role": "assistant", "content": "Commit src/lib.rs first."},
            {"role": "user", "content": "done, now it says:\nOn branch main\nYour branch is up to date with 'origin/main'.\n\nnothing to commit, working tree clean\n"},
        ],
    })
    .to_string();
    let parts = parts_of(crate::llm::Api::AnthropicMessages, &body);
    assert_eq!(
        git_status_hits(&parts),
        [
            ("$.messages[0].content[0].text".to_owned(), Role::User, 3),
            ("$.messages[2].content".to_owned(), Role::User, 0),
        ]
    );
}

#[test]
fn git_status_in_openai_chat_tool_messages_and_user_turns() {
    let body = serde_json::json!({
        "model": "gpt-4o",
        "messages": [
            {"role": "system", "content": "You are a coding agent."},
            {"role": "user", "content": "what changed?"},
            {"role": "assistant", "content": null, "tool_calls": [
                {"id": "call_1", "type": "function",
                 "function": {"name": "shell", "arguments": "{\"command\":[\"git\",\"status\",\"--porcelain\"]}"}},
            ]},
            {"role": "tool", "tool_call_id": "call_1",
             "content": "R  src/old.rs -> src/new.rs\n M README.md\n D build.sh\n?? scratch/\n"},
            {"role": "user", "content": [
                {"type": "text", "text": "and this one from my other checkout:"},
                {"type": "text", "text": "HEAD detached at 4f2a9c1\nChanges not staged for commit:\n        modified:   config/prod.yaml\n"},
            ]},
        ],
    })
    .to_string();
    let parts = parts_of(crate::llm::Api::OpenAiChat, &body);
    assert_eq!(
        git_status_hits(&parts),
        [
            ("$.messages[3].content".to_owned(), Role::ToolResult, 3),
            ("$.messages[4].content[1].text".to_owned(), Role::User, 0),
        ]
    );
}

#[test]
fn git_status_inside_a_json_tool_output() {
    // Codex returns a shell call's output as a JSON document in a string; its
    // `output` member is read with real line breaks.
    let output = serde_json::json!({
        "output": LONG_STATUS,
        "metadata": {"exit_code": 0, "duration_seconds": 0.1},
    })
    .to_string();
    let body = serde_json::json!({
        "model": "gpt-5-codex",
        "input": [
            {"type": "function_call", "call_id": "call_1", "name": "shell",
             "arguments": "{\"command\":[\"git\",\"status\"]}"},
            {"type": "function_call_output", "call_id": "call_1", "output": output},
        ],
    })
    .to_string();
    let parts = parts_of(crate::llm::Api::OpenAiResponses, &body);
    let hits = git_status_hits(&parts);
    assert!(!hits.is_empty());
    assert!(
        hits.iter()
            .all(|(path, role, _)| path == "$.input[1].output{json}.output"
                && *role == Role::ToolResult),
        "{hits:?}"
    );
}

#[test]
fn talking_about_git_status_is_not_its_output() {
    let texts = [
        "what does `git status` do?",
        "git status prints On branch main and then Your branch is up to date with 'origin/main'.",
        "What is the difference between \"Changes to be committed:\" and \"Changes not staged for commit:\"?",
        "The sections are:\nChanges to be committed:\n  new file: a file you added\nChanges not staged for commit:\n  modified: a file you changed\nUntracked files:\n  files git does not know yet\n",
        "On branch main\n",
        "Untracked files:\n",
        "?? notes.txt\n M src/main.rs\n",
        // Other tools' status output: Mercurial, Subversion.
        "M src/main.rs\nA src/lib.rs\n? notes.txt\n",
        "M       src/main.c\nA       src/util.c\n?       notes.txt\n",
        // A diff and a log.
        "diff --git a/src/main.rs b/src/main.rs\n--- a/src/main.rs\n+++ b/src/main.rs\n@@ -1 +1 @@\n-fn main() {}\n+fn main() { run() }\n",
        "commit 4f2a9c1\nAuthor: A <a@example.org>\n\n    On branch work\n",
    ];
    for text in texts {
        let parts = [part("$.messages[0].content", Role::User, text)];
        assert_eq!(git_status_hits(&parts), [], "{text}");
    }
}
