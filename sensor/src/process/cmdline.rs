//! Command lines made fit to report: bounded in size, with secrets redacted.
//!
//! Command lines carry API keys and passwords often enough (`curl -H
//! "Authorization: Bearer …"`, `--api-key sk-…`, `env OPENAI_API_KEY=… tool`) that
//! an event must never repeat them. Two catalogues decide what is secret: option
//! names ([`SECRET_NAME_SEGMENTS`]) and the shapes of well-known credentials
//! ([`SECRET_PATTERNS`]). Both are data, so adding a rule is adding a line.

/// What a secret is replaced with.
pub const REDACTED: &str = "[REDACTED]";

/// Marks a cut: ends a shortened argument, or stands in for dropped arguments.
const ELLIPSIS: &str = "…";

/// At most this many arguments are kept (the last one is [`ELLIPSIS`] when more
/// were dropped).
pub const MAX_ARGS: usize = 64;
/// Longest argument kept, in bytes, including the [`ELLIPSIS`] that marks a cut.
pub const MAX_ARG_BYTES: usize = 256;
/// Longest command line kept, in bytes: the sum of the kept arguments' lengths.
pub const MAX_TOTAL_BYTES: usize = 4096;

/// Words that make an option or variable secret when they are one of its name's
/// segments. Names are split at `-`, `_`, `.` and camelCase humps, then compared
/// in lower case: `--openai-api-key`, `--apiKey`, `API_TOKEN` and
/// `-Ddb.password` match, `--keyboard-layout` and `--max-tokens` do not.
const SECRET_NAME_SEGMENTS: &[&str] = &[
    "token",
    "key",
    "apikey",
    "secret",
    "password",
    "passwd",
    "passphrase",
    "pass",
    "pwd",
    "auth",
    "authorization",
    "credential",
    "credentials",
    "cookie",
    "session",
    "bearer",
];

/// Characters a secret's body may consist of.
#[derive(Debug, Clone, Copy)]
enum Charset {
    /// `[A-Za-z0-9_-]`: API keys and tokens.
    Token,
    /// `[A-Z0-9]`: AWS access key ids.
    UpperAlnum,
    /// Anything but white space: bearer tokens (JWTs, base64).
    NonSpace,
}

impl Charset {
    fn admits(self, c: char) -> bool {
        match self {
            Charset::Token => c.is_ascii_alphanumeric() || c == '_' || c == '-',
            Charset::UpperAlnum => c.is_ascii_uppercase() || c.is_ascii_digit(),
            Charset::NonSpace => !c.is_whitespace(),
        }
    }
}

/// The shape of a well-known credential, found anywhere inside an argument.
#[derive(Debug)]
struct SecretPattern {
    /// How it starts; it must start the argument or follow a character that is
    /// not ASCII alphanumeric.
    prefix: &'static str,
    /// Whether `prefix` matches in any case.
    ignore_case: bool,
    /// Whether `prefix` stays visible (`Bearer [REDACTED]`) or goes too.
    keep_prefix: bool,
    /// What follows the prefix.
    body: Charset,
    /// Fewest body characters: shorter look-alikes are left alone.
    min_body: usize,
    /// Exact body length, when the credential has one; the body must then end there.
    exact_body: Option<usize>,
}

/// Well-known credentials, redacted wherever they appear.
const SECRET_PATTERNS: &[SecretPattern] = &[
    SecretPattern {
        // OpenAI / Anthropic style API key (sk-…, sk-ant-…, sk-proj-…)
        prefix: "sk-",
        ignore_case: false,
        keep_prefix: false,
        body: Charset::Token,
        min_body: 16,
        exact_body: None,
    },
    SecretPattern {
        // GitHub personal access token (classic)
        prefix: "ghp_",
        ignore_case: false,
        keep_prefix: false,
        body: Charset::Token,
        min_body: 20,
        exact_body: None,
    },
    SecretPattern {
        // GitHub fine-grained personal access token
        prefix: "github_pat_",
        ignore_case: false,
        keep_prefix: false,
        body: Charset::Token,
        min_body: 20,
        exact_body: None,
    },
    SecretPattern {
        // Slack bot token
        prefix: "xoxb-",
        ignore_case: false,
        keep_prefix: false,
        body: Charset::Token,
        min_body: 10,
        exact_body: None,
    },
    SecretPattern {
        // Slack app token
        prefix: "xoxa-",
        ignore_case: false,
        keep_prefix: false,
        body: Charset::Token,
        min_body: 10,
        exact_body: None,
    },
    SecretPattern {
        // Slack user token
        prefix: "xoxp-",
        ignore_case: false,
        keep_prefix: false,
        body: Charset::Token,
        min_body: 10,
        exact_body: None,
    },
    SecretPattern {
        // AWS access key id
        prefix: "AKIA",
        ignore_case: false,
        keep_prefix: false,
        body: Charset::UpperAlnum,
        min_body: 16,
        exact_body: Some(16),
    },
    SecretPattern {
        // Google API key
        prefix: "AIza",
        ignore_case: false,
        keep_prefix: false,
        body: Charset::Token,
        min_body: 30,
        exact_body: None,
    },
    SecretPattern {
        // HTTP bearer token
        prefix: "Bearer ",
        ignore_case: true,
        keep_prefix: true,
        body: Charset::NonSpace,
        min_body: 1,
        exact_body: None,
    },
];

/// The command line as an event may carry it: secret values replaced with
/// [`REDACTED`], then bounded to [`MAX_ARGS`] arguments of at most
/// [`MAX_ARG_BYTES`] bytes and [`MAX_TOTAL_BYTES`] in all. A cut argument ends
/// with `…`; dropped arguments are stood in for by a last `…` argument.
///
/// Redacted are: the value of an option whose name is secret
/// ([`SECRET_NAME_SEGMENTS`]) in `--name=value`, `--name value`, `NAME=value` and
/// `Name: value` (HTTP header) forms and as a URL query parameter; and every
/// well-known credential ([`SECRET_PATTERNS`]) wherever it appears.
pub fn redact_cmdline(args: &[String]) -> Vec<String> {
    // One argument past the bound tells that more follow; the rest is never looked at.
    let considered = &args[..args.len().min(MAX_ARGS + 1)];
    let mut redacted = Vec::with_capacity(considered.len());
    let mut value_is_secret = false;
    for arg in considered {
        // `--token --verbose`: the option had no value (or a value we cannot tell
        // from an option), so the next option is an option.
        if value_is_secret && !arg.starts_with('-') {
            redacted.push(REDACTED.to_owned());
            value_is_secret = false;
            continue;
        }
        let (arg, next_is_secret) = redact_arg(arg);
        value_is_secret = next_is_secret;
        redacted.push(arg);
    }
    bound(&redacted)
}

/// Redacts one argument; also says whether the next argument is a secret value.
fn redact_arg(arg: &str) -> (String, bool) {
    // `--name=value`, `NAME=value`, `-Dname=value`.
    if let Some((name, value)) = arg.split_once('=')
        && is_option_name(name)
        && is_secret_name(name)
    {
        if value.is_empty() {
            return (arg.to_owned(), false);
        }
        return (format!("{name}={REDACTED}"), false);
    }
    // `--name value`.
    if arg.len() > 1 && arg.starts_with('-') && !arg.contains('=') && is_option_name(arg) {
        return (arg.to_owned(), is_secret_name(arg));
    }
    // `Name: value`, an HTTP header given to curl, httpie, wget …
    if let Some((name, value)) = arg.split_once(':')
        && !name.starts_with('-')
        && is_option_name(name)
        && !value.trim().is_empty()
        && is_secret_name(name)
    {
        return (format!("{name}: {REDACTED}"), false);
    }
    (redact_patterns(&redact_query(arg)), false)
}

/// Whether `s` is shaped like an option or variable name (after its dashes).
fn is_option_name(s: &str) -> bool {
    let name = s.trim_start_matches('-');
    !name.is_empty()
        && name
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
}

/// Whether a name (leading dashes allowed) has a secret segment.
fn is_secret_name(name: &str) -> bool {
    name_segments(name.trim_start_matches('-'))
        .iter()
        .any(|segment| SECRET_NAME_SEGMENTS.contains(&segment.as_str()))
}

/// A name's lower-case segments, split at `-`, `_`, `.` and camelCase humps
/// (`apiKey` → `api`, `key`; `XAPIToken` → `xapi`, `token`).
fn name_segments(name: &str) -> Vec<String> {
    let chars: Vec<char> = name.chars().collect();
    let mut segments = Vec::new();
    let mut current = String::new();
    for (i, &c) in chars.iter().enumerate() {
        if matches!(c, '-' | '_' | '.') {
            if !current.is_empty() {
                segments.push(std::mem::take(&mut current));
            }
            continue;
        }
        let prev = i.checked_sub(1).and_then(|j| chars.get(j)).copied();
        let next = chars.get(i + 1).copied();
        let hump = c.is_ascii_uppercase()
            && prev.is_some_and(|p| {
                p.is_ascii_lowercase()
                    || p.is_ascii_digit()
                    || (p.is_ascii_uppercase() && next.is_some_and(|n| n.is_ascii_lowercase()))
            });
        if hump && !current.is_empty() {
            segments.push(std::mem::take(&mut current));
        }
        current.push(c.to_ascii_lowercase());
    }
    if !current.is_empty() {
        segments.push(current);
    }
    segments
}

/// Redacts secret parameters of URL queries and fragments:
/// `https://h/p?key=…&alt=json`, `…#access_token=…` (OAuth's implicit flow).
fn redact_query(arg: &str) -> String {
    if !arg.contains(['?', '#']) {
        return arg.to_owned();
    }
    let mut out = String::with_capacity(arg.len());
    let mut rest = arg;
    let mut in_params = false;
    while let Some(i) = rest.find(['?', '&', '#']) {
        let (before, after) = rest.split_at(i);
        out.push_str(before);
        let sep = &after[..1];
        out.push_str(sep);
        rest = &after[1..];
        in_params |= sep != "&";
        if !in_params {
            continue;
        }
        let param_end = rest.find(['&', '#']).unwrap_or(rest.len());
        if let Some((name, value)) = rest[..param_end].split_once('=')
            && !value.is_empty()
            && is_secret_name(name)
        {
            out.push_str(name);
            out.push('=');
            out.push_str(REDACTED);
            rest = &rest[param_end..];
        }
    }
    out.push_str(rest);
    out
}

/// Redacts every [`SECRET_PATTERNS`] match in `arg`.
fn redact_patterns(arg: &str) -> String {
    let mut out = String::with_capacity(arg.len());
    let mut copied = 0;
    let mut pos = 0;
    while pos < arg.len() {
        let at_boundary = arg[..pos]
            .chars()
            .next_back()
            .is_none_or(|c| !c.is_ascii_alphanumeric());
        let found = if at_boundary {
            SECRET_PATTERNS
                .iter()
                .find_map(|p| match_pattern(p, &arg[pos..]).map(|len| (p, len)))
        } else {
            None
        };
        match found {
            Some((pattern, len)) => {
                out.push_str(&arg[copied..pos]);
                if pattern.keep_prefix {
                    out.push_str(&arg[pos..pos + pattern.prefix.len()]);
                }
                out.push_str(REDACTED);
                pos += len;
                copied = pos;
            }
            None => {
                pos += arg[pos..].chars().next().map_or(1, char::len_utf8);
            }
        }
    }
    out.push_str(&arg[copied..]);
    out
}

/// The byte length of the secret `pattern` finds at the start of `s`, if any.
fn match_pattern(pattern: &SecretPattern, s: &str) -> Option<usize> {
    let head = s.get(..pattern.prefix.len())?;
    let prefix_matches = if pattern.ignore_case {
        head.eq_ignore_ascii_case(pattern.prefix)
    } else {
        head == pattern.prefix
    };
    if !prefix_matches {
        return None;
    }
    let body = &s[pattern.prefix.len()..];
    let body_len: usize = body
        .chars()
        .take_while(|&c| pattern.body.admits(c))
        .map(char::len_utf8)
        .sum();
    let body_chars = body[..body_len].chars().count();
    if body_chars < pattern.min_body {
        return None;
    }
    if let Some(exact) = pattern.exact_body {
        let ends_there = body[body_len..]
            .chars()
            .next()
            .is_none_or(|c| !c.is_ascii_alphanumeric());
        if body_chars != exact || !ends_there {
            return None;
        }
    }
    Some(pattern.prefix.len() + body_len)
}

/// Applies [`MAX_ARGS`], [`MAX_ARG_BYTES`] and [`MAX_TOTAL_BYTES`].
fn bound(args: &[String]) -> Vec<String> {
    let mut out = Vec::with_capacity(args.len().min(MAX_ARGS));
    let mut total = 0;
    for (i, arg) in args.iter().enumerate() {
        let more_follow = i + 1 < args.len();
        // Invariant: while more arguments follow, room for an ellipsis is left.
        let room = MAX_TOTAL_BYTES - total;
        if more_follow && out.len() + 1 == MAX_ARGS {
            out.push(ELLIPSIS.to_owned());
            break;
        }
        let reserve = if more_follow { ELLIPSIS.len() } else { 0 };
        let limit = MAX_ARG_BYTES.min(room - reserve);
        if arg.len() <= limit || (limit == MAX_ARG_BYTES && arg.len() > MAX_ARG_BYTES) {
            let kept = truncate(arg, MAX_ARG_BYTES);
            total += kept.len();
            out.push(kept);
            continue;
        }
        // The command line's budget runs out inside this argument: keep what fits.
        out.push(truncate(arg, MAX_ARG_BYTES.min(room)));
        break;
    }
    out
}

/// `s` if it has at most `max` bytes, else its longest prefix (on a character
/// boundary) that fits with an ellipsis after it. `max` must leave room for the
/// ellipsis.
fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_owned();
    }
    let mut end = max.saturating_sub(ELLIPSIS.len());
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}{ELLIPSIS}", &s[..end])
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn args(list: &[&str]) -> Vec<String> {
        list.iter().map(|s| (*s).to_owned()).collect()
    }

    fn redact(list: &[&str]) -> Vec<String> {
        redact_cmdline(&args(list))
    }

    #[test]
    fn option_values_are_redacted_in_both_forms() {
        for name in [
            "--token",
            "--api-key",
            "--apikey",
            "--openai-api-key",
            "--auth-token",
            "--password",
            "--passwd",
            "--pwd",
            "--client-secret",
            "--credential",
            "--aws-credentials",
            "--cookie",
            "--session-id",
            "--bearer",
            "--authorization",
            "-token",
            "--API-KEY",
            "--apiKey",
            "--accessToken",
            "--X-API-Token",
        ] {
            assert_eq!(
                redact(&["tool", name, "hunter2", "file"]),
                args(&["tool", name, REDACTED, "file"]),
                "{name} value"
            );
            let joined = format!("{name}=hunter2");
            let expected = format!("{name}={REDACTED}");
            assert_eq!(
                redact(&["tool", &joined]),
                args(&["tool", &expected]),
                "{name}="
            );
        }
    }

    #[test]
    fn look_alike_option_names_are_kept() {
        for list in [
            &["setxkbmap", "--keyboard-layout", "us"][..],
            &["llm", "--max-tokens", "100"],
            &["zoo", "--monkey", "3"],
            &["ssh", "-p", "2222", "host"],
            &["tool", "--keys-only", "x"],
            &["tool", "--tokenizer", "cl100k"],
            &["tool", "--passthrough", "x"],
        ] {
            assert_eq!(redact(list), args(list), "{list:?}");
        }
    }

    #[test]
    fn a_flag_without_value_does_not_swallow_the_next_option() {
        assert_eq!(
            redact(&["tool", "--token", "--verbose", "x"]),
            args(&["tool", "--token", "--verbose", "x"])
        );
        assert_eq!(
            redact(&["tool", "--auth", "--password", "pw"]),
            args(&["tool", "--auth", "--password", REDACTED])
        );
    }

    #[test]
    fn empty_values_stay_empty() {
        assert_eq!(redact(&["tool", "--token="]), args(&["tool", "--token="]));
    }

    #[test]
    fn assignments_and_properties_are_redacted() {
        assert_eq!(
            redact(&["env", "API_TOKEN=abc", "LANG=C", "tool"]),
            args(&["env", &format!("API_TOKEN={REDACTED}"), "LANG=C", "tool"])
        );
        assert_eq!(
            redact(&["java", "-Ddb.password=pw", "-Dfile.encoding=UTF-8"]),
            args(&[
                "java",
                &format!("-Ddb.password={REDACTED}"),
                "-Dfile.encoding=UTF-8"
            ])
        );
    }

    #[test]
    fn secret_headers_are_redacted_and_others_kept() {
        assert_eq!(
            redact(&[
                "curl",
                "-H",
                "Authorization: Bearer abc.def.ghi",
                "-H",
                "X-Api-Key: abc",
                "-H",
                "Cookie: sid=1",
                "-H",
                "Content-Type: application/json",
                "https://api.example.test/v1"
            ]),
            args(&[
                "curl",
                "-H",
                &format!("Authorization: {REDACTED}"),
                "-H",
                &format!("X-Api-Key: {REDACTED}"),
                "-H",
                &format!("Cookie: {REDACTED}"),
                "-H",
                "Content-Type: application/json",
                "https://api.example.test/v1"
            ])
        );
    }

    #[test]
    fn secret_query_parameters_are_redacted() {
        assert_eq!(
            redact(&["curl", "https://h.test/v1/models?key=abc123&alt=json"]),
            args(&[
                "curl",
                &format!("https://h.test/v1/models?key={REDACTED}&alt=json")
            ])
        );
        assert_eq!(
            redact(&["open", "https://h.test/cb#access_token=x&expires_in=3600"]),
            args(&[
                "open",
                &format!("https://h.test/cb#access_token={REDACTED}&expires_in=3600")
            ])
        );
        assert_eq!(
            redact(&["curl", "https://h.test/?a=1&api_key=zzz"]),
            args(&["curl", &format!("https://h.test/?a=1&api_key={REDACTED}")])
        );
    }

    /// One example per catalogued credential, embedded in text around it.
    #[test]
    fn every_secret_pattern_is_redacted() {
        let examples = [
            ("sk-", "sk-ant-api03-AbCdEfGhIjKlMnOpQrStUv_wxyz-0123456789"),
            ("sk-", "sk-proj-abcdefghijklmnopqrstuvwxyz012345"),
            ("sk-", "sk-abcdefghijklmnopqrstuvwxyz0123456789ABCDEFGH"),
            ("ghp_", "ghp_abcdefghijklmnopqrstuvwxyz0123456789"),
            (
                "github_pat_",
                "github_pat_11ABCDEFG0abcdefghijkl_mnopqrstuvwxyz0123",
            ),
            ("xoxb-", "xoxb-1234567890-0987654321-AbCdEfGhIj"),
            ("xoxa-", "xoxa-2-1234567890-abcdefghij"),
            ("xoxp-", "xoxp-1234567890-0987654321-abcdef"),
            ("AKIA", "AKIAIOSFODNN7EXAMPLE"),
            ("AIza", "AIzaSyA-abcdefghijklmnopqrstuvwxyz01234"),
        ];
        for pattern in SECRET_PATTERNS {
            if pattern.keep_prefix {
                continue;
            }
            assert!(
                examples.iter().any(|(p, _)| *p == pattern.prefix),
                "no example for {}",
                pattern.prefix
            );
        }
        for (_, secret) in examples {
            assert_eq!(redact(&[secret]), args(&[REDACTED]), "{secret}");
            let embedded = format!("--header=x-api-key: {secret}");
            assert_eq!(
                redact(&[&embedded]),
                args(&[&format!("--header=x-api-key: {REDACTED}")]),
                "{secret} embedded"
            );
            let quoted = format!("{{\"k\":\"{secret}\"}}");
            assert_eq!(
                redact(&[&quoted]),
                args(&[&format!("{{\"k\":\"{REDACTED}\"}}")]),
                "{secret} quoted"
            );
        }
    }

    #[test]
    fn bearer_tokens_keep_their_prefix() {
        assert_eq!(
            redact(&["--header=Authorization: Bearer eyJhbGciOi.eyJzdWIi.sig+/="]),
            args(&[&format!("--header=Authorization: Bearer {REDACTED}")])
        );
        assert_eq!(
            redact(&["-HAuthorization: bearer abc"]),
            args(&[&format!("-HAuthorization: bearer {REDACTED}")])
        );
        assert_eq!(redact(&["Bearer"]), args(&["Bearer"]));
        assert_eq!(
            redact(&["wget", "--header", "x: Bearer t1 Bearer t2"]),
            args(&[
                "wget",
                "--header",
                &format!("x: Bearer {REDACTED} Bearer {REDACTED}")
            ])
        );
    }

    #[test]
    fn secret_look_alikes_are_kept() {
        for arg in [
            "disk-usage-report-for-all-volumes",
            "task-abcdefghijklmnopqrstuvwxyz",
            "sk-short",
            "ghp_short",
            "xoxo-gossip-girl",
            "xoxb-short",
            "AKIAIOSFODNN7EXAMPL",   // 15 characters after AKIA
            "AKIAIOSFODNN7EXAMPLEX", // 17
            "AKIAIOSFODNN7exampl",
            "AIzawesome",
            "MAKIAIOSFODNN7EXAMPLE",
            "Bearer",
            "/usr/lib/node_modules/task-runner/index.js",
        ] {
            assert_eq!(redact(&[arg]), args(&[arg]), "{arg}");
        }
    }

    #[test]
    fn name_segments_split_at_separators_and_humps() {
        assert_eq!(name_segments("openai-api_key"), ["openai", "api", "key"]);
        assert_eq!(name_segments("apiKey"), ["api", "key"]);
        assert_eq!(name_segments("XAPIToken"), ["xapi", "token"]);
        assert_eq!(name_segments("db.password"), ["db", "password"]);
        assert_eq!(name_segments("v2Token"), ["v2", "token"]);
        assert_eq!(name_segments("keyboard-layout"), ["keyboard", "layout"]);
    }

    #[test]
    fn long_arguments_are_cut_with_an_ellipsis() {
        let long = "a".repeat(1000);
        let out = redact_cmdline(&[long]);
        assert_eq!(out.len(), 1);
        assert_eq!(out[0].len(), MAX_ARG_BYTES);
        assert!(out[0].ends_with(ELLIPSIS));

        // A cut never splits a character.
        let wide = "é".repeat(300);
        let out = redact_cmdline(&[wide]);
        assert!(out[0].len() <= MAX_ARG_BYTES);
        assert!(out[0].ends_with(ELLIPSIS));
        assert!(out[0].trim_end_matches(ELLIPSIS).chars().all(|c| c == 'é'));
    }

    #[test]
    fn many_arguments_end_with_an_ellipsis() {
        let many: Vec<String> = (0..100).map(|i| i.to_string()).collect();
        let out = redact_cmdline(&many);
        assert_eq!(out.len(), MAX_ARGS);
        assert_eq!(&out[..MAX_ARGS - 1], &many[..MAX_ARGS - 1]);
        assert_eq!(out[MAX_ARGS - 1], ELLIPSIS);

        let exactly: Vec<String> = (0..MAX_ARGS).map(|i| i.to_string()).collect();
        assert_eq!(redact_cmdline(&exactly), exactly);
    }

    #[test]
    fn the_total_is_bounded() {
        let many: Vec<String> = (0..30).map(|i| format!("{i:0200}")).collect();
        let out = redact_cmdline(&many);
        let total: usize = out.iter().map(String::len).sum();
        assert!(total <= MAX_TOTAL_BYTES, "{total}");
        assert!(out.last().is_some_and(|a| a.ends_with(ELLIPSIS)));
        assert_eq!(&out[..out.len() - 1], &many[..out.len() - 1]);
        // 20 whole arguments of 200 bytes fit, with room left to mark the cut.
        assert_eq!(out.len(), 21);
    }

    #[test]
    fn an_argument_cut_by_the_total_respects_the_argument_bound() {
        // 258 bytes left, more arguments to come: the cut must still stop at 256.
        let mut list: Vec<String> = (0..15).map(|_| "a".repeat(255)).collect();
        list.push("b".repeat(13));
        list.push("c".repeat(1000));
        list.push("d".to_owned());
        let out = redact_cmdline(&list);
        assert_eq!(out.len(), 17);
        assert!(out[16].len() <= MAX_ARG_BYTES && out[16].ends_with(ELLIPSIS));
        assert!(out.iter().map(String::len).sum::<usize>() <= MAX_TOTAL_BYTES);
    }

    #[test]
    fn short_command_lines_are_unchanged() {
        let list = ["curl", "-sS", "https://example.org/"];
        assert_eq!(redact(&list), args(&list));
        assert!(redact_cmdline(&[]).is_empty());
    }

    proptest! {
        #[test]
        fn bounds_always_hold(input in proptest::collection::vec(".{0,400}", 0..120)) {
            let out = redact_cmdline(&input);
            prop_assert!(out.len() <= MAX_ARGS);
            prop_assert!(out.iter().all(|a| a.len() <= MAX_ARG_BYTES));
            prop_assert!(out.iter().map(String::len).sum::<usize>() <= MAX_TOTAL_BYTES);
        }

        #[test]
        fn embedded_keys_never_survive(
            before in "([ a-z=:/]{0,20}[ =:/])?",
            key in "[A-Za-z0-9_-]{40}",
            after in "[ &\"]{0,1}[a-z]{0,10}",
        ) {
            let secret = format!("sk-{key}");
            let arg = format!("{before}{secret}{after}");
            let out = redact_cmdline(&[arg]);
            prop_assert!(!out.concat().contains(&secret), "{out:?}");
        }
    }
}
