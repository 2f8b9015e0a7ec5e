//! Parsing: split a file into top-level actions, parse each with the pest grammar, turn pest
//! errors into diagnostics in the user's words, and lower pest pairs into the typed AST.
//!
//! This is the only module that knows pest. Each action is parsed on its own, so one syntax error
//! never hides the diagnostics of the other actions in the file.

use pest::iterators::Pair;
use pest::Parser as _;

use crate::ast::*;
use crate::diagnostic::{Code, Diagnostic, FileId};

#[derive(pest_derive::Parser)]
#[grammar = "../../grammar/mca.pest"]
struct Grammar;

/// Deepest nesting of `{`, `[` and `(` accepted; deeper input is refused before parsing, so no
/// input can exhaust the stack.
pub const MAX_NESTING: usize = 64;

/// Parses one file. Always returns a tree (holding the actions that parsed) and every syntax
/// diagnostic.
pub fn parse(file: FileId, text: &str) -> (File, Vec<Diagnostic>) {
    let mut diags = Vec::new();
    let mut actions = Vec::new();
    for chunk in split_actions(text) {
        match chunk {
            Chunk::Junk(span) => diags.push(
                Diagnostic::new(Code::Syntax, file, span, "expected `action`")
                    .label("this is outside any action")
                    .hint("every declaration of a file stands inside `action NAME { ... }`"),
            ),
            Chunk::Action {
                deep_at: Some(at), ..
            } => diags.push(
                Diagnostic::new(
                    Code::TooDeep,
                    file,
                    Span::new(at, at + 1),
                    format!("this action nests more than {MAX_NESTING} levels deep"),
                )
                .label(format!("level {} opens here", MAX_NESTING + 1))
                .hint("real actions nest a few levels; is a closing bracket missing?"),
            ),
            Chunk::Action { span, .. } => {
                let src = &text[span.start..span.end];
                match Grammar::parse(Rule::action_unit, src) {
                    Ok(mut pairs) => {
                        if let Some(pair) = pairs.find(|p| p.as_rule() == Rule::action) {
                            let mut lower = Lower {
                                file,
                                offset: span.start,
                                diags: &mut diags,
                            };
                            actions.push(lower.action(pair));
                        }
                    }
                    Err(fast) => {
                        // Parse again, collecting the tokens pest tried, for a richer "expected"
                        // list. Only failing actions pay for it. The switch is process-wide; a
                        // concurrent parse seeing it merely collects detail it does not need.
                        pest::set_error_detail(true);
                        let detailed = Grammar::parse(Rule::action_unit, src).err();
                        pest::set_error_detail(false);
                        let err = detailed.unwrap_or(fast);
                        diags.push(syntax_error(file, span.start, src, text.len(), &err));
                    }
                }
            }
        }
    }
    (File { actions }, diags)
}

/// Byte offsets where the top-level actions of a file start, as the parser splits it: each is
/// parsed on its own. Tools that recompile one action at a time (the language server) cut files
/// at the same places.
pub fn action_starts(text: &str) -> Vec<usize> {
    split_actions(text)
        .into_iter()
        .filter_map(|c| match c {
            Chunk::Action { span, .. } => Some(span.start),
            Chunk::Junk(_) => None,
        })
        .collect()
}

enum Chunk {
    /// Text outside any action that is not blank or a comment.
    Junk(Span),
    Action {
        span: Span,
        /// Where the nesting first went deeper than [`MAX_NESTING`].
        deep_at: Option<usize>,
    },
}

/// Splits a file into top-level actions by a light scan that knows strings and comments.
///
/// A chunk starts at each `action` keyword at brace depth 0, and also at an `action` keyword in
/// the first column of a line whatever the depth, so that an action missing its closing `}` does
/// not swallow the ones after it.
fn split_actions(text: &str) -> Vec<Chunk> {
    let bytes = text.as_bytes();
    let mut chunks = Vec::new();
    let mut starts: Vec<(usize, Option<usize>)> = Vec::new(); // (start, too deep at)
    let mut junk_start: Option<usize> = None;
    let mut depth = 0usize;
    let mut deep_at: Option<usize> = None;
    let mut i = 0;
    let mut in_action = false;
    // Inside an action only these bytes matter (comments, strings, brackets, `action`); the
    // others are skipped in a tight loop. (`starts.last().1 == deep_at` already holds there.)
    let matters = |b: u8| {
        matches!(
            b,
            b'/' | b'"' | b'{' | b'[' | b'(' | b'}' | b']' | b')' | b'a'
        )
    };
    while i < bytes.len() {
        let b = bytes[i];
        if in_action && !matters(b) {
            i += 1;
            while i < bytes.len() && !matters(bytes[i]) {
                i += 1;
            }
            continue;
        }
        match b {
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i = (i + 2).min(bytes.len());
                continue;
            }
            b'"' if in_action => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    if bytes[i] == b'\\' {
                        i += 1;
                    }
                    i += 1;
                }
                i = (i + 1).min(bytes.len());
                continue;
            }
            b'{' | b'[' | b'(' if in_action => {
                depth += 1;
                if depth > MAX_NESTING && deep_at.is_none() {
                    deep_at = Some(i);
                }
            }
            b'}' | b']' | b')' if in_action => {
                depth = depth.saturating_sub(1);
                if depth == 0 && b == b'}' {
                    // The action is closed: what follows, up to the next `action`, is outside.
                    if let Some((start, _)) = starts.pop() {
                        chunks.push(Chunk::Action {
                            span: Span::new(start, i + 1),
                            deep_at,
                        });
                    }
                    in_action = false;
                    i += 1;
                    continue;
                }
            }
            _ => {}
        }
        let is_word_start = i == 0 || !is_ident_byte(bytes[i - 1]);
        let first_column = i == 0 || bytes[i - 1] == b'\n';
        if b == b'a'
            && is_word_start
            && text[i..].starts_with("action")
            && !bytes.get(i + 6).is_some_and(|&c| is_ident_byte(c))
            && (depth == 0 || first_column || !in_action)
        {
            if let Some(j) = junk_start.take() {
                chunks.push(Chunk::Junk(Span::new(j, trim_end(text, j, i))));
            }
            if let Some(&(start, d)) = starts.last() {
                chunks.push(Chunk::Action {
                    span: Span::new(start, i),
                    deep_at: d,
                });
                starts.pop();
            }
            starts.push((i, None));
            in_action = true;
            depth = 0;
            deep_at = None;
            i += 6;
            // `action action { ... }`: the second word is the name, not a new action.
            let after = text[i..].trim_start();
            if after.starts_with("action")
                && !after.as_bytes().get(6).is_some_and(|&c| is_ident_byte(c))
            {
                i = text.len() - after.len() + 6;
            }
            continue;
        }
        if !in_action && !b.is_ascii_whitespace() && junk_start.is_none() {
            junk_start = Some(i);
        }
        if let Some(last) = starts.last_mut() {
            last.1 = deep_at;
        }
        i += 1;
    }
    if let Some(j) = junk_start {
        chunks.push(Chunk::Junk(Span::new(j, trim_end(text, j, text.len()))));
    }
    if let Some(&(start, d)) = starts.last() {
        chunks.push(Chunk::Action {
            span: Span::new(start, text.len()),
            deep_at: d,
        });
    }
    chunks
}

fn trim_end(text: &str, start: usize, end: usize) -> usize {
    start + text[start..end].trim_end().len()
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

fn is_keyword(rule: Rule) -> bool {
    use Rule::*;
    matches!(
        rule,
        kw_action
            | kw_messages
            | kw_start
            | kw_delayed
            | kw_failed
            | kw_description
            | kw_input
            | kw_request
            | kw_query
            | kw_header
            | kw_headers
            | kw_auth
            | kw_bearer
            | kw_basic
            | kw_oauth2
            | kw_token_url
            | kw_client_id
            | kw_client_secret
            | kw_scope
            | kw_body
            | kw_form
            | kw_idempotency_key
            | kw_timeout
            | kw_per_try
            | kw_retry
            | kw_backoff
            | kw_max_response
            | kw_read_only
            | kw_output
            | kw_say
            | kw_on
            | kw_fallback
            | kw_cache
            | kw_ttl
            | kw_key
            | kw_stale_if_error
            | kw_invalidates
            | kw_test
            | kw_upstream
            | kw_reset
            | kw_env
            | kw_secret
            | kw_call
            | kw_expect
            | kw_error
            | kw_step
            | kw_deferred
            | kw_within
            | kw_when
            | kw_and
            | kw_or
            | kw_not
            | kw_follow_up
    )
}

/// What a grammar rule is called in the user's words.
fn describe(rule: Rule) -> &'static str {
    use Rule::*;
    match rule {
        EOI => "end of file",
        action | kw_action => "`action`",
        description | kw_description => "`description`",
        input_decl | test_input | kw_input => "`input`",
        input_default => "`=`",
        request | kw_request => "`request`",
        query_param | auth_query | kw_query => "`query`",
        header_param | auth_header | kw_header => "`header`",
        upstream_headers | kw_headers => "`headers`",
        auth | kw_auth => "`auth`",
        auth_bearer | kw_bearer => "`bearer`",
        auth_basic | kw_basic => "`basic`",
        auth_oauth2 | kw_oauth2 => "`oauth2`",
        oauth2_item | oauth2_key => "`token_url`, `client_id`, `client_secret` or `scope`",
        kw_token_url => "`token_url`",
        kw_client_id => "`client_id`",
        kw_client_secret => "`client_secret`",
        kw_scope | cache_scope => "`scope`",
        body | kw_body => "`body`",
        form | kw_form => "`form`",
        idempotency_key | kw_idempotency_key => "`idempotency_key`",
        timeout | kw_timeout => "`timeout`",
        per_try | kw_per_try => "`per_try`",
        retry | kw_retry => "`retry`",
        kw_backoff => "`backoff`",
        max_response | kw_max_response => "`max_response`",
        read_only | kw_read_only => "`read_only`",
        outputs | kw_output => "`output`",
        output_field => "an output like `name: string = $.path`",
        mapping => {
            "a mapping (a JSONPath like `$.data.id`, or `exists(...)`, `count(...)`, `first(...)`)"
        }
        mapping_call => "a mapping function",
        jsonpath => "a JSONPath starting with `$`",
        say | expect_say | kw_say => "`say`",
        on_status | kw_on => "`on`",
        status => "an HTTP status like `404` or `5xx`",
        fallback | expect_fallback | kw_fallback => "`fallback`",
        assignment => "an assignment like `name = value`",
        cache | kw_cache => "`cache`",
        cache_ttl | kw_ttl => "`ttl`",
        cache_key | kw_key => "`key`",
        cache_stale | kw_stale_if_error => "`stale_if_error`",
        invalidates | kw_invalidates => "`invalidates`",
        messages | kw_messages => "`messages`",
        message_start | kw_start => "`start`",
        message_delayed | kw_delayed => "`delayed`",
        message_failed | kw_failed => "`failed`",
        test | kw_test => "`test`",
        test_upstream | kw_upstream => "`upstream`",
        kw_reset => "`reset`",
        test_env | kw_env => "`env`",
        test_secret | kw_secret => "`secret`",
        test_call | kw_call => "`call`",
        expect_request | expect_error | expect_outputs | kw_expect => "`expect`",
        kw_error => "`error`",
        step | kw_step => "`step`",
        step_deferred | kw_deferred => "`deferred`",
        kw_within => "`within`",
        when_clause | kw_when => "`when`",
        action_timeout => "`timeout`",
        follow_up | kw_follow_up => "`follow_up`",
        condition | cond_and | cond_not | comparison => {
            "a condition like `input.x == \"a\"` or `step.contact.id != null`"
        }
        compare_op => "a comparison (`==`, `!=`, `<`, `<=`, `>`, `>=`)",
        kw_and => "`and`",
        kw_or => "`or`",
        kw_not => "`not`",
        step_name => "a step name",
        type_expr | type_name => {
            "a type (`string`, `int`, `number`, `bool`, `enum(...)`, `list<...>`)"
        }
        type_args => "`(`",
        type_item => "`<`",
        optional_mark => "`?`",
        method => "an HTTP method like `GET` or `POST`",
        object | member => "an object `{ ... }`",
        array => "a list `[ ... ]`",
        reference => "a reference like `input.name`",
        string | string_inner => "a string in double quotes",
        ident => "a name",
        error_code => "an error code like `invalid_input` or `timeout`",
        integer => "a whole number",
        number => "a number",
        duration => "a duration like `5s` or `200ms`",
        size => "a size like `512KB` or `1MB`",
        kw_true => "`true`",
        kw_false => "`false`",
        kw_null => "`null`",
        _ => "something else",
    }
}

/// The words for a literal token the grammar expected (`{`, `=`, ...).
fn describe_token(token: &str) -> String {
    format!("`{token}`")
}

/// The keywords that start an item of an action (also what editors complete there).
pub const ACTION_ITEMS: [&str; 14] = [
    "description",
    "input",
    "request",
    "step",
    "output",
    "say",
    "on",
    "fallback",
    "cache",
    "invalidates",
    "messages",
    "timeout",
    "follow_up",
    "test",
];

fn syntax_error(
    file: FileId,
    offset: usize,
    src: &str,
    full_len: usize,
    err: &pest::error::Error<Rule>,
) -> Diagnostic {
    use pest::error::{ErrorVariant, InputLocation};
    let rule_pos = match err.location {
        InputLocation::Pos(p) => p,
        InputLocation::Span((s, _)) => s,
    };
    let mut expected: Vec<String> = Vec::new();
    fn push(expected: &mut Vec<String>, s: String) {
        if !expected.contains(&s) {
            expected.push(s);
        }
    }
    let attempts = err.parse_attempts();
    let structural: Vec<String> = attempts
        .as_ref()
        .map(|a| {
            a.expected_tokens()
                .into_iter()
                .map(|t| t.to_string())
                .filter(|t| STRUCTURAL.contains(&t.as_str()))
                .collect()
        })
        .unwrap_or_default();
    // pest locates an error at the furthest *rule* it tried, but a missing `=`, `:` or `{` is a
    // literal inside a rule that got further. When punctuation was expected further on, at a
    // visible character, the mistake is there and only that punctuation was expected.
    let further = attempts.as_ref().map_or(rule_pos, |a| a.max_position);
    let visible = src
        .get(further..)
        .and_then(|r| r.chars().next())
        .is_some_and(|c| !c.is_whitespace());
    let pos = if further > rule_pos && visible && !structural.is_empty() {
        for t in &structural {
            push(&mut expected, describe_token(t));
        }
        further
    } else {
        if let ErrorVariant::ParsingError { positives, .. } = &err.variant {
            for r in positives {
                push(&mut expected, describe(*r).to_string());
            }
        }
        if further == rule_pos {
            for t in &structural {
                push(&mut expected, describe_token(t));
            }
        }
        rule_pos
    };
    expected.retain(|e| e != "something else");
    // At the end of the chunk, point just after the last thing written (not at trailing blank
    // lines or comments).
    let at_end = pos >= src.len() || src[pos..].trim().is_empty() || end_of_content(src) <= pos;
    let pos = if at_end {
        end_of_content(src).min(pos)
    } else {
        pos
    };
    let found_len = if at_end { 0 } else { token_len(&src[pos..]) };
    let found = &src[pos.min(src.len())..(pos + found_len).min(src.len())];
    let span = Span::new(offset + pos, offset + pos + found_len);
    let found_words = if !found.is_empty() {
        format!("`{found}`")
    } else if offset + src.len() < full_len {
        "the next `action`".to_string()
    } else {
        "the end of the file".to_string()
    };
    // The ten action items read better as one phrase.
    let items: Vec<String> = ACTION_ITEMS.iter().map(|i| format!("`{i}`")).collect();
    if items.iter().all(|i| expected.contains(i)) {
        expected.retain(|e| !items.contains(e));
        expected.push(format!("an action item ({})", items.join(", ")));
    }
    let before = &src[..pos.min(src.len())];
    let line_before = before.rsplit('\n').next().unwrap_or("");
    if (found == "[" || found == "(") && line_before.contains('$') {
        return Diagnostic::new(
            Code::Syntax,
            file,
            span,
            format!("unclosed `{found}` in a JSONPath"),
        )
        .label("opened here and not closed on this line")
        .hint(if found == "[" {
            "close it with `]`"
        } else {
            "close it with `)`"
        });
    }
    let message = match expected.len() {
        0 => format!("unexpected {found_words}"),
        _ => format!("expected {}, found {found_words}", join_or(&expected)),
    };
    let mut d = Diagnostic::new(Code::Syntax, file, span, message).label(match expected.len() {
        0 => "not expected here".to_string(),
        1 => format!("expected {}", expected[0]),
        _ => "unexpected here".to_string(),
    });
    let keywords: Vec<&str> = expected
        .iter()
        .filter_map(|e| e.strip_prefix('`').and_then(|e| e.strip_suffix('`')))
        .chain(
            expected
                .iter()
                .any(|e| e.starts_with("an action item"))
                .then_some(ACTION_ITEMS)
                .into_iter()
                .flatten(),
        )
        .collect();
    let word_found = found.chars().next().is_some_and(|c| c.is_alphabetic());
    if let Some(hint) = word_found
        .then(|| crate::suggest::did_you_mean(found, keywords.into_iter()))
        .flatten()
    {
        d = d.hint(hint);
    } else if expected.iter().any(|e| e.starts_with("a size"))
        && found.chars().any(|c| c.is_ascii_lowercase())
    {
        d = d.hint(format!(
            "units are written in capitals: `{}`",
            found.to_ascii_uppercase()
        ));
    } else if expected
        .iter()
        .any(|e| e.starts_with("a mapping") || e.starts_with("a JSONPath"))
        && found.starts_with('"')
    {
        d = d.hint("write the JSONPath without quotes, for example `$.data[0].name`");
    } else if expected
        .iter()
        .any(|e| e.starts_with("a mapping") || e.starts_with("a JSONPath"))
        && word_found
    {
        d = d.hint("a JSONPath starts with `$`, for example `$.data[0].name`");
    } else if expected.iter().any(|e| e.starts_with("a string"))
        && word_found
        && !expected
            .iter()
            .any(|e| e.starts_with("a name") || e.starts_with("a reference"))
    {
        d = d.hint("text is written in double quotes: \"...\"");
    } else if expected == ["`(`"] && (found == "[" || found == ".") {
        d = d.hint("a JSONPath starts with `$`, for example `$.data[0].name`");
    } else if found == "}" && expected.iter().any(|e| e.contains("a type")) {
        d = d.hint("an input needs a type, for example `input phone: string(phone)`");
    } else if found.starts_with('\'') {
        d = d.hint("strings use double quotes: \"...\"");
    } else if found.is_empty() {
        d = d
            .secondary(file, Span::new(offset, offset + 6), "in this action")
            .hint("is a closing `}` missing?");
    }
    d
}

const STRUCTURAL: &[&str] = &[
    "{", "}", "[", "]", "(", ")", ":", "=", ",", "<", ">", "?", "??",
];

/// Offset just after the last character that is neither blank nor in a trailing line comment.
fn end_of_content(src: &str) -> usize {
    let mut end = src.trim_end().len();
    loop {
        let line_start = src[..end].rfind('\n').map_or(0, |i| i + 1);
        if src[line_start..end].trim_start().starts_with("//") {
            end = src[..line_start].trim_end().len();
        } else {
            return end;
        }
    }
}

fn join_or(items: &[String]) -> String {
    match items {
        [] => String::new(),
        [one] => one.clone(),
        [init @ .., last] => format!("{} or {}", init.join(", "), last),
    }
}

/// Length in bytes of the token starting at the beginning of `s`: a word, a quoted string on one
/// line, or one character.
fn token_len(s: &str) -> usize {
    let mut chars = s.char_indices();
    let Some((_, first)) = chars.next() else {
        return 0;
    };
    if first.is_alphanumeric() || first == '_' {
        s.char_indices()
            .find(|&(_, c)| !(c.is_alphanumeric() || c == '_'))
            .map_or(s.len(), |(i, _)| i)
    } else if first == '"' {
        s[1..]
            .find(['"', '\n'])
            .map_or(s.len(), |i| i + 2)
            .min(s.len())
    } else {
        first.len_utf8()
    }
}

/// Lowers pest pairs of one action into the AST.
struct Lower<'d> {
    file: FileId,
    offset: usize,
    diags: &'d mut Vec<Diagnostic>,
}

type P<'i> = Pair<'i, Rule>;

impl Lower<'_> {
    /// The pair's span without trailing blanks (pest includes the whitespace it skipped before
    /// an optional part that was then absent).
    fn span(&self, p: &P) -> Span {
        let s = p.as_span();
        let text = p.as_str();
        let trimmed = text.trim_end_matches(|c: char| c.is_whitespace() || c == '\u{feff}');
        let end = s.start() + trimmed.len();
        Span::new(self.offset + s.start(), self.offset + end)
    }

    fn ident(&self, p: P) -> Ident {
        Ident {
            name: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    fn strlit(&self, p: P) -> StrLit {
        let span = self.span(&p);
        let raw = p
            .into_inner()
            .next()
            .map(|i| i.as_str().to_string())
            .unwrap_or_default();
        StrLit { raw, span }
    }

    fn action(&mut self, p: P) -> Action {
        let span = self.span(&p);
        let mut inner = p.into_inner();
        let mut keyword = span;
        let mut name = Ident {
            name: String::new(),
            span,
        };
        let mut items = Vec::new();
        for c in inner.by_ref() {
            match c.as_rule() {
                Rule::kw_action => keyword = self.span(&c),
                Rule::ident => name = self.ident(c),
                _ => {
                    if let Some(item) = self.item(c) {
                        items.push(item);
                    }
                }
            }
        }
        Action {
            name,
            keyword,
            items,
            span,
        }
    }

    /// Children of `p` without keyword tokens.
    fn parts<'i>(p: P<'i>) -> Vec<P<'i>> {
        p.into_inner()
            .filter(|c| !is_keyword(c.as_rule()))
            .collect()
    }

    fn item(&mut self, p: P) -> Option<Item> {
        let span = self.span(&p);
        Some(match p.as_rule() {
            Rule::description => {
                let text = self.strlit(Self::parts(p).into_iter().next()?);
                Item::Description(Description { text, span })
            }
            Rule::input_decl => {
                let mut parts = Self::parts(p).into_iter();
                let name = self.ident(parts.next()?);
                let ty = self.type_expr(parts.next()?);
                let mut default = None;
                let mut doc = None;
                for c in parts {
                    if c.as_rule() == Rule::input_default {
                        default = c.into_inner().next().map(|v| self.value(v));
                    } else {
                        doc = Some(self.strlit(c));
                    }
                }
                Item::Input(InputDecl {
                    name,
                    ty,
                    default,
                    doc,
                    span,
                })
            }
            Rule::request => {
                let mut parts = Self::parts(p).into_iter();
                let method = self.ident(parts.next()?);
                let url = self.strlit(parts.next()?);
                let items = parts.filter_map(|c| self.request_item(c)).collect();
                Item::Request(Request {
                    method,
                    url,
                    items,
                    span,
                })
            }
            Rule::outputs => {
                let fields = Self::parts(p)
                    .into_iter()
                    .filter_map(|f| self.output_field(f))
                    .collect();
                Item::Outputs(Outputs { fields, span })
            }
            Rule::say => Item::Say(self.say(p)?),
            Rule::on_status => {
                let mut statuses = Vec::new();
                let mut items = Vec::new();
                for c in Self::parts(p) {
                    if c.as_rule() == Rule::status {
                        statuses.push(StatusLit {
                            text: c.as_str().to_string(),
                            span: self.span(&c),
                        });
                    } else if let Some(i) = self.outcome_item(c) {
                        items.push(i);
                    }
                }
                Item::OnStatus(OnStatus {
                    statuses,
                    items,
                    span,
                })
            }
            Rule::fallback => {
                let items = Self::parts(p)
                    .into_iter()
                    .filter_map(|c| self.outcome_item(c))
                    .collect();
                Item::Fallback(Fallback { items, span })
            }
            Rule::cache => {
                let mut items = Vec::new();
                for c in Self::parts(p) {
                    let cspan = self.span(&c);
                    let rule = c.as_rule();
                    let mut parts = Self::parts(c).into_iter();
                    items.push(match rule {
                        Rule::cache_ttl => CacheItem::Ttl(self.duration(parts.next()?), cspan),
                        Rule::cache_stale => {
                            CacheItem::StaleIfError(self.duration(parts.next()?), cspan)
                        }
                        Rule::cache_scope => CacheItem::Scope(self.ident(parts.next()?), cspan),
                        Rule::cache_key => {
                            CacheItem::Key(parts.map(|e| self.expr(e)).collect(), cspan)
                        }
                        _ => continue,
                    });
                }
                Item::Cache(Cache { items, span })
            }
            Rule::invalidates => {
                let targets = Self::parts(p).into_iter().map(|c| self.ident(c)).collect();
                Item::Invalidates(Invalidates { targets, span })
            }
            Rule::messages => {
                let mut items = Vec::new();
                for c in Self::parts(p) {
                    let cspan = self.span(&c);
                    let rule = c.as_rule();
                    let mut parts = Self::parts(c).into_iter();
                    items.push(match rule {
                        Rule::message_start => Message::Start(self.strlit(parts.next()?), cspan),
                        Rule::message_failed => Message::Failed(self.strlit(parts.next()?), cspan),
                        Rule::message_delayed => {
                            let d = self.duration(parts.next()?);
                            Message::Delayed(d, self.strlit(parts.next()?), cspan)
                        }
                        _ => continue,
                    });
                }
                Item::Messages(Messages { items, span })
            }
            Rule::test => {
                let mut parts = Self::parts(p).into_iter();
                let name = self.strlit(parts.next()?);
                let items = parts.filter_map(|c| self.test_item(c)).collect();
                Item::Test(Test { name, items, span })
            }
            Rule::step => {
                let mut keyword = span;
                let mut name = None;
                let mut deferred = None;
                let mut when = None;
                let mut items = Vec::new();
                for c in p.into_inner() {
                    match c.as_rule() {
                        Rule::kw_step => keyword = self.span(&c),
                        Rule::ident => name = Some(self.ident(c)),
                        Rule::step_deferred => {
                            let dspan = self.span(&c);
                            let within =
                                Self::parts(c).into_iter().next().map(|d| self.duration(d));
                            deferred = Some(Deferred {
                                within,
                                span: dspan,
                            });
                        }
                        Rule::when_clause => when = self.when(c),
                        _ => items.extend(self.item(c)),
                    }
                }
                Item::Step(Step {
                    keyword,
                    name: name?,
                    deferred,
                    when,
                    items,
                    span,
                })
            }
            Rule::action_timeout => {
                Item::Timeout(self.duration(Self::parts(p).into_iter().next()?), span)
            }
            Rule::follow_up => {
                let when = Self::parts(p).into_iter().next().and_then(|c| self.when(c));
                Item::FollowUp(FollowUp { when, span })
            }
            _ => return None,
        })
    }

    fn say(&mut self, p: P) -> Option<Say> {
        let span = self.span(&p);
        let mut parts = Self::parts(p).into_iter();
        let text = self.strlit(parts.next()?);
        let when = parts.next().and_then(|c| self.when(c));
        Some(Say { text, when, span })
    }

    fn when(&mut self, p: P) -> Option<When> {
        let span = self.span(&p);
        let cond = self.cond(Self::parts(p).into_iter().next()?)?;
        Some(When { cond, span })
    }

    /// Lowers `condition`, `cond_and`, `cond_not`, `comparison` and operands.
    fn cond(&mut self, p: P) -> Option<Cond> {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::condition | Rule::cond_and => {
                let is_or = p.as_rule() == Rule::condition;
                let mut parts: Vec<Cond> = Self::parts(p)
                    .into_iter()
                    .filter_map(|c| self.cond(c))
                    .collect();
                if parts.len() == 1 {
                    return parts.pop();
                }
                Some(if is_or {
                    Cond::Or(parts, span)
                } else {
                    Cond::And(parts, span)
                })
            }
            Rule::cond_not => {
                let negated = p.clone().into_inner().any(|c| c.as_rule() == Rule::kw_not);
                let inner = self.cond(Self::parts(p).into_iter().next()?)?;
                Some(if negated {
                    Cond::Not(Box::new(inner), span)
                } else {
                    inner
                })
            }
            Rule::comparison => {
                let mut parts = p.into_inner();
                let left = self.cond(parts.next()?)?;
                let Some(op) = parts.next() else {
                    return Some(left);
                };
                let op_span = self.span(&op);
                let op_kind = match op.as_str() {
                    "==" => CmpOp::Eq,
                    "!=" => CmpOp::Ne,
                    "<" => CmpOp::Lt,
                    "<=" => CmpOp::Le,
                    ">" => CmpOp::Gt,
                    _ => CmpOp::Ge,
                };
                let right = self.cond(parts.next()?)?;
                Some(Cond::Compare {
                    op: op_kind,
                    op_span,
                    left: Box::new(left),
                    right: Box::new(right),
                    span,
                })
            }
            _ => Some(Cond::Operand(self.expr(p))),
        }
    }

    fn outcome_item(&mut self, p: P) -> Option<OutcomeItem> {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::say => Some(OutcomeItem::Say(self.say(p)?)),
            Rule::assignment => {
                let mut parts = Self::parts(p).into_iter();
                let name = self.ident(parts.next()?);
                let value = self.value(parts.next()?);
                Some(OutcomeItem::Assign(Assign { name, value, span }))
            }
            _ => None,
        }
    }

    fn type_expr(&mut self, p: P) -> TypeExpr {
        let span = self.span(&p);
        let mut name = Ident {
            name: String::new(),
            span,
        };
        let mut args = None;
        let mut args_span = None;
        let mut item = None;
        let mut optional = false;
        for c in p.into_inner() {
            match c.as_rule() {
                Rule::type_name => name = self.ident(c),
                Rule::type_args => {
                    args_span = Some(self.span(&c));
                    args = Some(
                        c.into_inner()
                            .map(|a| match a.as_rule() {
                                Rule::string => TypeArg::Str(self.strlit(a)),
                                _ => TypeArg::Ident(self.ident(a)),
                            })
                            .collect(),
                    );
                }
                Rule::type_item => {
                    if let Some(t) = c.into_inner().next() {
                        item = Some(Box::new(self.type_expr(t)));
                    }
                }
                Rule::optional_mark => optional = true,
                _ => {}
            }
        }
        TypeExpr {
            name,
            args,
            args_span,
            item,
            optional,
            span,
        }
    }

    fn request_item(&mut self, p: P) -> Option<RequestItem> {
        let span = self.span(&p);
        let rule = p.as_rule();
        let mut parts = Self::parts(p).into_iter();
        Some(match rule {
            Rule::query_param | Rule::header_param => {
                let param = self.param(parts, span)?;
                if rule == Rule::query_param {
                    RequestItem::Query(param)
                } else {
                    RequestItem::Header(param)
                }
            }
            Rule::auth => {
                let a = parts.next()?;
                let arule = a.as_rule();
                let mut ap = Self::parts(a).into_iter();
                let kind = match arule {
                    Rule::auth_bearer => AuthKind::Bearer(self.expr(ap.next()?)),
                    Rule::auth_basic => {
                        let u = self.expr(ap.next()?);
                        AuthKind::Basic(u, self.expr(ap.next()?))
                    }
                    Rule::auth_header => {
                        let n = self.strlit(ap.next()?);
                        AuthKind::Header(n, self.expr(ap.next()?))
                    }
                    Rule::auth_query => {
                        let n = self.strlit(ap.next()?);
                        AuthKind::Query(n, self.expr(ap.next()?))
                    }
                    Rule::auth_oauth2 => {
                        let mut items = Vec::new();
                        for item in ap {
                            let mut ip = item.into_inner();
                            let key = ip.next()?;
                            let key = Ident {
                                name: key.as_str().to_string(),
                                span: self.span(&key),
                            };
                            items.push((key, self.expr(ip.next()?)));
                        }
                        AuthKind::OAuth2(items)
                    }
                    _ => return None,
                };
                RequestItem::Auth(Auth { kind, span })
            }
            Rule::body => RequestItem::Body(self.value(parts.next()?), span),
            Rule::form => RequestItem::Form(self.value(parts.next()?), span),
            Rule::idempotency_key => RequestItem::IdempotencyKey(self.expr(parts.next()?), span),
            Rule::timeout => RequestItem::Timeout(self.duration(parts.next()?), span),
            Rule::per_try => RequestItem::PerTry(self.duration(parts.next()?), span),
            Rule::retry => {
                let count = self.integer(parts.next()?);
                let backoff = parts.next().map(|d| self.duration(d));
                RequestItem::Retry {
                    count,
                    backoff,
                    span,
                }
            }
            Rule::max_response => RequestItem::MaxResponse(self.size(parts.next()?), span),
            Rule::read_only => RequestItem::ReadOnly(span),
            _ => return None,
        })
    }

    fn param<'i>(&mut self, mut parts: impl Iterator<Item = P<'i>>, span: Span) -> Option<Param> {
        let name = self.strlit(parts.next()?);
        let value = self.expr(parts.next()?);
        Some(Param { name, value, span })
    }

    fn output_field(&mut self, p: P) -> Option<OutputField> {
        let span = self.span(&p);
        let mut parts = p.into_inner();
        let name = self.ident(parts.next()?);
        let ty = self.type_expr(parts.next()?);
        let m = parts.next()?;
        let mspan = self.span(&m);
        let when = parts.next().and_then(|c| self.when(c));
        let mut source = Source::Path {
            func: None,
            path: PathLit {
                text: String::new(),
                span: mspan,
            },
        };
        let mut default = None;
        for c in m.into_inner() {
            match c.as_rule() {
                Rule::jsonpath => {
                    source = Source::Path {
                        func: None,
                        path: self.path(c),
                    }
                }
                Rule::mapping_call => {
                    let mut func = None;
                    let mut path = PathLit {
                        text: String::new(),
                        span: mspan,
                    };
                    for cc in c.into_inner() {
                        match cc.as_rule() {
                            Rule::ident => func = Some(self.ident(cc)),
                            Rule::jsonpath => path = self.path(cc),
                            _ => {}
                        }
                    }
                    source = Source::Path { func, path };
                }
                Rule::condition => {
                    if let Some(c) = self.cond(c) {
                        source = Source::Expr(c);
                    }
                }
                _ => default = Some(self.value(c)),
            }
        }
        Some(OutputField {
            name,
            ty,
            mapping: Mapping {
                source,
                default,
                span: mspan,
            },
            when,
            span,
        })
    }

    fn path(&self, p: P) -> PathLit {
        PathLit {
            text: p.as_str().to_string(),
            span: self.span(&p),
        }
    }

    fn test_item(&mut self, p: P) -> Option<TestItem> {
        let span = self.span(&p);
        let rule = p.as_rule();
        let all: Vec<P> = p.into_inner().collect();
        let keywords: Vec<Rule> = all
            .iter()
            .map(|c| c.as_rule())
            .filter(|r| is_keyword(*r))
            .collect();
        let mut parts = all.into_iter().filter(|c| !is_keyword(c.as_rule()));
        Some(match rule {
            Rule::test_input => TestItem::Input(self.value(parts.next()?), span),
            Rule::test_call => TestItem::Call(self.value(parts.next()?), span),
            Rule::test_env => {
                let name = self.ident(parts.next()?);
                TestItem::Env(name, self.strlit(parts.next()?), span)
            }
            Rule::test_secret => {
                let name = self.ident(parts.next()?);
                TestItem::Secret(name, self.strlit(parts.next()?), span)
            }
            Rule::test_upstream => {
                let mut parts = parts.peekable();
                let step = self.step_name(&mut parts);
                let up = if keywords.contains(&Rule::kw_timeout) {
                    Upstream::Timeout
                } else if keywords.contains(&Rule::kw_reset) {
                    Upstream::Reset
                } else {
                    let s = parts.next()?;
                    let status = StatusLit {
                        text: s.as_str().to_string(),
                        span: self.span(&s),
                    };
                    let mut headers = None;
                    let mut body = None;
                    for c in parts {
                        if c.as_rule() == Rule::upstream_headers {
                            headers = c
                                .into_inner()
                                .find(|x| x.as_rule() == Rule::object)
                                .map(|o| self.value(o));
                        } else {
                            body = Some(self.value(c));
                        }
                    }
                    Upstream::Respond {
                        status,
                        headers,
                        body,
                    }
                };
                TestItem::Upstream(step, up, span)
            }
            Rule::expect_request => {
                let mut parts = parts.peekable();
                let step = self.step_name(&mut parts);
                let method = self.ident(parts.next()?);
                let path = self.strlit(parts.next()?);
                let mut headers = Vec::new();
                let mut body = None;
                for c in parts {
                    let cspan = self.span(&c);
                    let crule = c.as_rule();
                    let mut cp = Self::parts(c).into_iter();
                    match crule {
                        Rule::header_param => headers.extend(self.param(cp, cspan)),
                        Rule::body => body = cp.next().map(|v| self.value(v)),
                        _ => {}
                    }
                }
                TestItem::ExpectRequest {
                    step,
                    method,
                    path,
                    headers,
                    body,
                    span,
                }
            }
            Rule::expect_fallback => {
                TestItem::ExpectFallback(parts.next().map(|v| self.value(v)), span)
            }
            Rule::expect_error => TestItem::ExpectError(self.ident(parts.next()?), span),
            Rule::expect_say => TestItem::ExpectSay(self.strlit(parts.next()?), span),
            Rule::expect_outputs => TestItem::ExpectOutputs(self.value(parts.next()?), span),
            _ => return None,
        })
    }

    /// The `STEP` of `upstream STEP ...` and `expect request STEP ...`, if written.
    fn step_name<'i>(
        &self,
        parts: &mut std::iter::Peekable<impl Iterator<Item = P<'i>>>,
    ) -> Option<Ident> {
        if parts.peek().is_none_or(|c| c.as_rule() != Rule::step_name) {
            return None;
        }
        parts
            .next()
            .and_then(|c| c.into_inner().next())
            .map(|i| self.ident(i))
    }

    fn duration(&mut self, p: P) -> Duration {
        let span = self.span(&p);
        let s = p.as_str();
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let n: Option<u64> = s[..digits_end].parse().ok();
        let factor = match &s[digits_end..] {
            "ms" => 1,
            "s" => 1_000,
            "m" => 60_000,
            _ => 3_600_000,
        };
        let ms = n.and_then(|n| n.checked_mul(factor));
        if ms.is_none() {
            self.out_of_range(span, "duration");
        }
        Duration { ms, span }
    }

    fn size(&mut self, p: P) -> Size {
        let span = self.span(&p);
        let s = p.as_str();
        let digits_end = s.find(|c: char| !c.is_ascii_digit()).unwrap_or(s.len());
        let n: Option<u64> = s[..digits_end].parse().ok();
        let factor = match &s[digits_end..] {
            "B" => 1,
            "KB" => 1024,
            _ => 1024 * 1024,
        };
        let bytes = n.and_then(|n| n.checked_mul(factor));
        if bytes.is_none() {
            self.out_of_range(span, "size");
        }
        Size { bytes, span }
    }

    fn integer(&mut self, p: P) -> IntLit {
        let span = self.span(&p);
        let value = p.as_str().parse().ok();
        if value.is_none() {
            self.out_of_range(span, "number");
        }
        IntLit { value, span }
    }

    fn out_of_range(&mut self, span: Span, what: &str) {
        self.diags.push(
            Diagnostic::new(
                Code::NumberOutOfRange,
                self.file,
                span,
                format!("this {what} is too large"),
            )
            .label("out of range"),
        );
    }

    fn expr(&mut self, p: P) -> Expr {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::reference => Expr::Ref(RefExpr {
                segments: p.into_inner().map(|i| self.ident(i)).collect(),
                span,
            }),
            Rule::string => Expr::Str(self.strlit(p)),
            Rule::number => {
                let text = p.as_str();
                match serde_json::from_str::<serde_json::Number>(text) {
                    Ok(n) => Expr::Number(n, span),
                    Err(_) => {
                        self.out_of_range(span, "number");
                        Expr::Null(span)
                    }
                }
            }
            Rule::kw_true => Expr::Bool(true, span),
            Rule::kw_false => Expr::Bool(false, span),
            _ => Expr::Null(span),
        }
    }

    fn value(&mut self, p: P) -> Value {
        let span = self.span(&p);
        match p.as_rule() {
            Rule::object => {
                let members = p
                    .into_inner()
                    .filter_map(|m| {
                        let mspan = self.span(&m);
                        let mut mp = m.into_inner();
                        let k = mp.next()?;
                        let key = match k.as_rule() {
                            Rule::string => Key::Str(self.strlit(k)),
                            _ => Key::Ident(self.ident(k)),
                        };
                        let value = self.value(mp.next()?);
                        Some(Member {
                            key,
                            value,
                            span: mspan,
                        })
                    })
                    .collect();
                Value::Object(members, span)
            }
            Rule::array => Value::Array(p.into_inner().map(|v| self.value(v)).collect(), span),
            _ => Value::Scalar(self.expr(p)),
        }
    }
}
