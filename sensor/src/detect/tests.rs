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
