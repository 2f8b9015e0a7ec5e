//! The canonical layout of `.mca` files (`mca fmt`, LSP formatting), and the comment-keeping lexer
//! it works on (shared with the language server, which needs tokens on half-typed text).
//!
//! The formatter is token based: the tree has no comments, so the file is lexed with its comments
//! and reprinted token by token. The syntax tree of the (valid) file only says where the structure
//! is: which `{` opens a block of items (`action`, `request`, `output`, `on`, `fallback`, `cache`,
//! `test`, `oauth2`, `expect request`) and where each item starts.
//!
//! The layout:
//! - two spaces of indentation per block; every item on its own line; one item never spans lines;
//! - single spaces between words, `name: type`, `a = b`, `a ?? b`, `a, b`; no spaces in
//!   `string(phone)`, `list<T>`, `T?`, `input.x`, `exists($.x)`, `[1, 2]`; `{ a: 1 }` inline;
//! - an object or list is laid out one member per line when the source has a line break directly
//!   inside it (between its brackets and members), and on one line otherwise, so the author picks
//!   `{ a: 1 }` or the broken form; nested ones decide for themselves (`[{` ... `}]` hugs);
//! - blank lines between items and members are kept, at most one, never after `{` or before `}`;
//!   top-level actions are separated by one blank line;
//! - trailing commas are dropped; comments stay where they were: a comment on the line of a token
//!   stays after it, a comment on its own line stays on its own line, indented with the items;
//! - no trailing spaces, one final newline, CRLF kept when the file uses it.
//!
//! The result is idempotent: `format(format(x)) == format(x)`.

use std::collections::HashSet;

use crate::ast::{self, Span};
use crate::diagnostic::Code;

/// What a token is, as far as a lexer without grammar context can tell.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenKind {
    /// A name or keyword: `[A-Za-z_][A-Za-z0-9_]*`.
    Word,
    /// Starts with a digit (or `-` and a digit): numbers, durations (`5s`), sizes (`1MB`),
    /// statuses (`404`, `5xx`).
    Number,
    /// A string in double quotes, quotes included; ends at the line end when unterminated.
    Str,
    /// A JSONPath starting with `$`, lexed as one token as the grammar does.
    Path,
    /// `// ...` up to (not including) the line end.
    LineComment,
    /// `/* ... */` (to the end of the text when unterminated).
    BlockComment,
    /// A comparison operator: `==`, `!=`, `<=`, `>=`, and `<` / `>` where the syntax tree
    /// says they compare (elsewhere they bracket a list's item type).
    Op,
    /// One of `{ } [ ] ( ) < > : = , ? ?? .`
    Punct,
    /// Any other character.
    Unknown,
}

/// One token: its kind and its byte span in the text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Token {
    pub kind: TokenKind,
    pub span: Span,
}

impl Token {
    /// The token's text.
    pub fn text<'t>(&self, text: &'t str) -> &'t str {
        text.get(self.span.start..self.span.end).unwrap_or("")
    }

    pub fn is_comment(&self) -> bool {
        matches!(self.kind, TokenKind::LineComment | TokenKind::BlockComment)
    }

    /// Whether this is the punctuation `p`.
    pub fn is_punct(&self, text: &str, p: &str) -> bool {
        self.kind == TokenKind::Punct && self.text(text) == p
    }
}

fn is_ident_start(b: u8) -> bool {
    b.is_ascii_alphabetic() || b == b'_'
}

fn is_ident_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_'
}

/// Splits any text (valid or not) into tokens, comments included, whitespace excluded. Never
/// fails: characters the language does not use become [`TokenKind::Unknown`] tokens.
pub fn lex(text: &str) -> Vec<Token> {
    let bytes = text.as_bytes();
    let mut tokens = Vec::new();
    let mut i = 0;
    while i < bytes.len() {
        let b = bytes[i];
        let start = i;
        let kind = match b {
            b' ' | b'\t' | b'\r' | b'\n' => {
                i += 1;
                continue;
            }
            b'/' if bytes.get(i + 1) == Some(&b'/') => {
                while i < bytes.len() && bytes[i] != b'\n' {
                    i += 1;
                }
                // A `\r` of a CRLF line end is not part of the comment.
                if i > start && bytes[i - 1] == b'\r' {
                    i -= 1;
                }
                TokenKind::LineComment
            }
            b'/' if bytes.get(i + 1) == Some(&b'*') => {
                i += 2;
                while i < bytes.len() && !(bytes[i] == b'*' && bytes.get(i + 1) == Some(&b'/')) {
                    i += 1;
                }
                i = (i + 2).min(bytes.len());
                TokenKind::BlockComment
            }
            b'"' => {
                i += 1;
                while i < bytes.len() && bytes[i] != b'"' && bytes[i] != b'\n' {
                    if bytes[i] == b'\\' && bytes.get(i + 1).is_some_and(|&c| c != b'\n') {
                        i += 1;
                    }
                    i += 1;
                }
                if i < bytes.len() && bytes[i] == b'"' {
                    i += 1;
                }
                TokenKind::Str
            }
            b'$' => {
                i = path_end(bytes, i + 1);
                TokenKind::Path
            }
            b'-' if bytes.get(i + 1).is_some_and(u8::is_ascii_digit) => {
                i = number_end(bytes, i + 1);
                TokenKind::Number
            }
            b'0'..=b'9' => {
                i = number_end(bytes, i);
                TokenKind::Number
            }
            b if is_ident_start(b) => {
                while i < bytes.len() && is_ident_byte(bytes[i]) {
                    i += 1;
                }
                TokenKind::Word
            }
            b'?' => {
                i += if bytes.get(i + 1) == Some(&b'?') {
                    2
                } else {
                    1
                };
                TokenKind::Punct
            }
            b'=' | b'!' | b'<' | b'>' if bytes.get(i + 1) == Some(&b'=') => {
                i += 2;
                TokenKind::Op
            }
            b'{' | b'}' | b'[' | b']' | b'(' | b')' | b'<' | b'>' | b':' | b'=' | b',' | b'.' => {
                i += 1;
                TokenKind::Punct
            }
            _ => {
                let len = text[i..].chars().next().map_or(1, char::len_utf8);
                i += len;
                TokenKind::Unknown
            }
        };
        // Every end above is on a character boundary, but never trust that blindly.
        while i < bytes.len() && !text.is_char_boundary(i) {
            i += 1;
        }
        tokens.push(Token {
            kind,
            span: Span::new(start, i),
        });
    }
    tokens
}

/// End of a number-like token starting at `i` (digits, fraction, exponent, unit letters).
fn number_end(bytes: &[u8], mut i: usize) -> usize {
    while i < bytes.len() && bytes[i].is_ascii_digit() {
        i += 1;
    }
    if bytes.get(i) == Some(&b'.') && bytes.get(i + 1).is_some_and(u8::is_ascii_digit) {
        i += 1;
        while i < bytes.len() && bytes[i].is_ascii_digit() {
            i += 1;
        }
    }
    if matches!(bytes.get(i), Some(b'e' | b'E')) {
        let mut j = i + 1;
        if matches!(bytes.get(j), Some(b'+' | b'-')) {
            j += 1;
        }
        if bytes.get(j).is_some_and(u8::is_ascii_digit) {
            i = j;
            while i < bytes.len() && bytes[i].is_ascii_digit() {
                i += 1;
            }
        }
    }
    while i < bytes.len() && is_ident_byte(bytes[i]) {
        i += 1;
    }
    i
}

/// End of a JSONPath whose `$` ends just before `i`, following the grammar's `jsonpath` rule.
fn path_end(bytes: &[u8], mut i: usize) -> usize {
    loop {
        match bytes.get(i) {
            Some(b'.') => {
                i += 1;
                if bytes.get(i) == Some(&b'.') {
                    i += 1;
                }
                if bytes.get(i) == Some(&b'*') {
                    i += 1;
                } else {
                    while i < bytes.len() && (is_ident_byte(bytes[i]) || bytes[i] >= 0x80) {
                        i += 1;
                    }
                }
            }
            Some(b'[') => i = bracket_end(bytes, i),
            _ => return i,
        }
    }
}

/// End of a `[...]` or `(...)` group inside a JSONPath starting at `i`, nested groups and quoted
/// names included; stops at a line end when unclosed.
fn bracket_end(bytes: &[u8], mut i: usize) -> usize {
    let mut depth = 0usize;
    while i < bytes.len() {
        match bytes[i] {
            b'\n' => return i,
            b'[' | b'(' => depth += 1,
            b']' | b')' => {
                depth = depth.saturating_sub(1);
                if depth == 0 {
                    return i + 1;
                }
            }
            q @ (b'\'' | b'"') => {
                i += 1;
                while i < bytes.len() && bytes[i] != q && bytes[i] != b'\n' {
                    if bytes[i] == b'\\' && bytes.get(i + 1).is_some_and(|&c| c != b'\n') {
                        i += 1;
                    }
                    i += 1;
                }
                if bytes.get(i) != Some(&q) {
                    return i;
                }
            }
            _ => {}
        }
        i += 1;
    }
    i
}

/// Formats a file in the canonical layout. `None` when the file has syntax errors (nothing is
/// formatted then: the structure is unknown).
pub fn format(text: &str) -> Option<String> {
    let (file, diags) = crate::syntax::parse(0, text);
    if diags
        .iter()
        .any(|d| matches!(d.code, Code::Syntax | Code::TooDeep))
    {
        return None;
    }
    let mut tokens = lex(text);
    if tokens.iter().any(|t| t.kind == TokenKind::Unknown) {
        return None;
    }
    let ops = comparison_ops(&file);
    for t in &mut tokens {
        if ops.contains(&t.span.start) {
            t.kind = TokenKind::Op;
        }
    }
    let plan = Plan::new(&file, &tokens, text);
    let out = Printer::new(text, &tokens, &plan).print()?;
    let crlf = text
        .find('\n')
        .is_some_and(|i| i > 0 && text.as_bytes()[i - 1] == b'\r');
    Some(if crlf { out.replace('\n', "\r\n") } else { out })
}

/// What the syntax tree says about the layout: where items start and which `{` open blocks.
struct Plan {
    /// Start offsets of tokens that begin an item (and so a line).
    item_starts: HashSet<usize>,
    /// Offsets of `{` tokens that open a block of items.
    blocks: HashSet<usize>,
    /// Offsets of `{` tokens that open an action.
    action_blocks: HashSet<usize>,
}

impl Plan {
    fn new(file: &ast::File, tokens: &[Token], text: &str) -> Plan {
        let mut plan = Plan {
            item_starts: HashSet::new(),
            blocks: HashSet::new(),
            action_blocks: HashSet::new(),
        };
        let brace_after = |offset: usize, limit: usize| -> Option<usize> {
            let first = tokens.partition_point(|t| t.span.start < offset);
            tokens[first..]
                .iter()
                .take_while(|t| t.span.start < limit)
                .find(|t| t.is_punct(text, "{"))
                .map(|t| t.span.start)
        };
        // The keyword token just before a value (for `body` in `expect request`).
        let token_before = |offset: usize| -> Option<usize> {
            let first = tokens.partition_point(|t| t.span.start < offset);
            tokens[..first]
                .iter()
                .rev()
                .find(|t| !t.is_comment())
                .map(|t| t.span.start)
        };
        for action in &file.actions {
            plan.item_starts.insert(action.span.start);
            if let Some(b) = brace_after(action.name.span.end, action.span.end) {
                plan.blocks.insert(b);
                plan.action_blocks.insert(b);
            }
            for item in &action.items {
                plan.item(item, &brace_after, &token_before);
            }
        }
        plan
    }

    /// Records where an item and the items inside it start, and which `{` open blocks.
    fn item(
        &mut self,
        item: &ast::Item,
        brace_after: &dyn Fn(usize, usize) -> Option<usize>,
        token_before: &dyn Fn(usize) -> Option<usize>,
    ) {
        let span = item.span();
        self.item_starts.insert(span.start);
        let block = |plan: &mut Plan, after: usize| {
            if let Some(b) = brace_after(after, span.end) {
                plan.blocks.insert(b);
            }
        };
        match item {
            ast::Item::Request(r) => {
                block(self, r.url.span.end);
                for ri in &r.items {
                    self.item_starts.insert(ri.span().start);
                    if let ast::RequestItem::Auth(a) = ri {
                        if let ast::AuthKind::OAuth2(items) = &a.kind {
                            block(self, a.span.start);
                            for (key, _) in items {
                                self.item_starts.insert(key.span.start);
                            }
                        }
                    }
                }
            }
            ast::Item::Outputs(o) => {
                block(self, span.start);
                for f in &o.fields {
                    self.item_starts.insert(f.span.start);
                }
            }
            ast::Item::OnStatus(o) => {
                let after = o.statuses.last().map_or(span.start, |s| s.span.end);
                block(self, after);
                for i in &o.items {
                    self.item_starts.insert(outcome_span(i).start);
                }
            }
            ast::Item::Fallback(f) => {
                block(self, span.start);
                for i in &f.items {
                    self.item_starts.insert(outcome_span(i).start);
                }
            }
            ast::Item::Cache(c) => {
                block(self, span.start);
                for i in &c.items {
                    self.item_starts.insert(cache_item_span(i).start);
                }
            }
            ast::Item::Messages(m) => {
                block(self, span.start);
                for i in &m.items {
                    self.item_starts.insert(i.span().start);
                }
            }
            ast::Item::Test(t) => {
                block(self, t.name.span.end);
                for ti in &t.items {
                    self.item_starts.insert(ti.span().start);
                    if let ast::TestItem::ExpectRequest {
                        path,
                        headers,
                        body,
                        span,
                        ..
                    } = ti
                    {
                        if let Some(b) = brace_after(path.span.end, span.end) {
                            self.blocks.insert(b);
                        }
                        for h in headers {
                            self.item_starts.insert(h.span.start);
                        }
                        if let Some(keyword) =
                            body.as_ref().and_then(|b| token_before(b.span().start))
                        {
                            self.item_starts.insert(keyword);
                        }
                    }
                }
            }
            ast::Item::Step(st) => {
                let after = st
                    .when
                    .as_ref()
                    .map(|w| w.span.end)
                    .or(st.deferred.as_ref().map(|d| d.span.end))
                    .unwrap_or(st.name.span.end);
                block(self, after);
                for i in &st.items {
                    self.item(i, brace_after, token_before);
                }
            }
            ast::Item::Description(_)
            | ast::Item::Input(_)
            | ast::Item::Say(_)
            | ast::Item::Timeout(..)
            | ast::Item::FollowUp(_)
            | ast::Item::Invalidates(_) => {}
        }
    }
}

/// Offsets of the `<` and `>` tokens that compare (in conditions).
fn comparison_ops(file: &ast::File) -> HashSet<usize> {
    fn cond(c: &ast::Cond, out: &mut HashSet<usize>) {
        match c {
            ast::Cond::Or(cs, _) | ast::Cond::And(cs, _) => cs.iter().for_each(|c| cond(c, out)),
            ast::Cond::Not(c, _) => cond(c, out),
            ast::Cond::Compare {
                op_span,
                left,
                right,
                ..
            } => {
                out.insert(op_span.start);
                cond(left, out);
                cond(right, out);
            }
            ast::Cond::Operand(_) => {}
        }
    }
    fn when(w: &Option<ast::When>, out: &mut HashSet<usize>) {
        if let Some(w) = w {
            cond(&w.cond, out);
        }
    }
    fn items(list: &[ast::Item], out: &mut HashSet<usize>) {
        for item in list {
            match item {
                ast::Item::Step(s) => {
                    when(&s.when, out);
                    items(&s.items, out);
                }
                ast::Item::Say(s) => when(&s.when, out),
                ast::Item::FollowUp(f) => when(&f.when, out),
                ast::Item::Outputs(o) => {
                    for f in &o.fields {
                        when(&f.when, out);
                        if let ast::Source::Expr(c) = &f.mapping.source {
                            cond(c, out);
                        }
                    }
                }
                _ => {}
            }
        }
    }
    let mut out = HashSet::new();
    for a in &file.actions {
        items(&a.items, &mut out);
    }
    out
}

fn outcome_span(i: &ast::OutcomeItem) -> Span {
    match i {
        ast::OutcomeItem::Say(s) => s.span,
        ast::OutcomeItem::Assign(a) => a.span,
    }
}

fn cache_item_span(i: &ast::CacheItem) -> Span {
    match i {
        ast::CacheItem::Ttl(_, s)
        | ast::CacheItem::Key(_, s)
        | ast::CacheItem::Scope(_, s)
        | ast::CacheItem::StaleIfError(_, s) => *s,
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Style {
    /// A block of items, or an object or list laid out one member per line.
    Broken,
    /// On one line with spaces inside: `{ a: 1 }`.
    Braces,
    /// On one line, no spaces inside: `[1, 2]`, `(...)`, `<...>`, and empty groups.
    Tight,
}

struct Frame {
    style: Style,
    /// Token index of the closing bracket.
    close: usize,
    /// A block of items (its commas are inside items, like `on 404, 500`), not a value.
    block: bool,
    is_action: bool,
}

struct Printer<'a> {
    text: &'a str,
    tokens: &'a [Token],
    plan: &'a Plan,
    /// Closing partner of every opening bracket, by token index.
    partner: Vec<Option<usize>>,
    /// Groups that have a line break directly inside, by opening token index.
    broken: Vec<bool>,
    out: String,
    stack: Vec<Frame>,
}

impl<'a> Printer<'a> {
    fn new(text: &'a str, tokens: &'a [Token], plan: &'a Plan) -> Printer<'a> {
        let mut partner = vec![None; tokens.len()];
        let mut broken = vec![false; tokens.len()];
        let mut open: Vec<usize> = Vec::new();
        for (i, t) in tokens.iter().enumerate() {
            let newline_before = i > 0 && {
                let gap = text.get(tokens[i - 1].span.end..t.span.start).unwrap_or("");
                gap.contains('\n')
            };
            if newline_before {
                if let Some(&g) = open.last() {
                    broken[g] = true;
                }
            }
            if t.kind != TokenKind::Punct {
                continue;
            }
            match t.text(text) {
                "{" | "[" | "(" | "<" => open.push(i),
                "}" | "]" | ")" | ">" => {
                    if let Some(g) = open.pop() {
                        partner[g] = Some(i);
                    }
                }
                _ => {}
            }
        }
        Printer {
            text,
            tokens,
            plan,
            partner,
            broken,
            out: String::new(),
            stack: Vec::new(),
        }
    }

    fn level(&self) -> usize {
        self.stack
            .iter()
            .filter(|f| f.style == Style::Broken)
            .count()
    }

    fn gap_newlines(&self, i: usize) -> usize {
        if i == 0 {
            return 0;
        }
        let gap = self
            .text
            .get(self.tokens[i - 1].span.end..self.tokens[i].span.start)
            .unwrap_or("");
        gap.matches('\n').count()
    }

    fn newline(&mut self, blank: bool, level: usize) {
        let trimmed = self.out.trim_end_matches([' ', '\t']).len();
        self.out.truncate(trimmed);
        if self.out.is_empty() {
            return;
        }
        self.out.push('\n');
        if blank {
            self.out.push('\n');
        }
        for _ in 0..level {
            self.out.push_str("  ");
        }
    }

    /// The next token that is not a comment, after index `i`.
    fn next_code(&self, i: usize) -> Option<usize> {
        (i + 1..self.tokens.len()).find(|&j| !self.tokens[j].is_comment())
    }

    fn is_closer_of_top(&self, i: usize) -> bool {
        self.stack.last().is_some_and(|f| f.close == i)
    }

    fn print(mut self) -> Option<String> {
        // `prev`: last printed token; `prev_code`: last printed non-comment token.
        let mut prev: Option<usize> = None;
        let mut prev_code: Option<usize> = None;
        // Set when an action's block closes: the next line starts after a blank line.
        let mut after_action = false;
        for i in 0..self.tokens.len() {
            let t = self.tokens[i];
            let text = t.text(self.text);
            // Trailing commas go.
            if t.is_punct(self.text, ",")
                && self.next_code(i).is_some_and(|j| self.is_closer_of_top(j))
            {
                continue;
            }
            let newlines = self.gap_newlines(i);
            if t.is_comment() {
                if prev.is_some() {
                    if newlines > 0 {
                        let after_open =
                            prev_code.is_some_and(|p| self.opens_broken(p)) && prev == prev_code;
                        let blank = after_action || (newlines > 1 && !after_open);
                        after_action = false;
                        let level = self.level();
                        self.newline(blank, level);
                    } else {
                        self.out.push(' ');
                    }
                }
                if t.kind == TokenKind::LineComment {
                    self.out.push_str(text.trim_end());
                } else {
                    self.out.push_str(&text.replace("\r\n", "\n"));
                }
                prev = Some(i);
                continue;
            }
            let closes = self.is_closer_of_top(i);
            let closing_style = if closes {
                self.stack.last().map(|f| f.style)
            } else {
                None
            };
            let closing_action = closes && self.stack.last().is_some_and(|f| f.is_action);
            if closes {
                self.stack.pop();
            }
            if let Some(p) = prev {
                let p_tok = self.tokens[p];
                let structural = closing_style == Some(Style::Broken)
                    || prev_code.is_some_and(|pc| self.opens_broken(pc))
                    || prev_code.is_some_and(|pc| {
                        self.tokens[pc].is_punct(self.text, ",")
                            && self
                                .stack
                                .last()
                                .is_some_and(|f| f.style == Style::Broken && !f.block)
                    })
                    || self.plan.item_starts.contains(&t.span.start);
                if structural || p_tok.kind == TokenKind::LineComment {
                    let after_open = prev_code.is_some_and(|pc| self.opens_broken(pc));
                    let blank = after_action
                        || (newlines > 1 && !after_open && closing_style != Some(Style::Broken));
                    after_action = false;
                    let level = if structural {
                        self.level()
                    } else {
                        self.level() + 1
                    };
                    self.newline(blank, level);
                } else if self.space_between(p, i, closing_style) {
                    self.out.push(' ');
                }
            }
            self.out.push_str(text);
            if closing_action {
                after_action = true;
            }
            if t.kind == TokenKind::Punct && matches!(text, "{" | "[" | "(" | "<") {
                let close = self.partner[i]?;
                let empty = close == i + 1;
                let style = if empty || matches!(text, "(" | "<") {
                    Style::Tight
                } else if self.plan.blocks.contains(&t.span.start) || self.broken[i] {
                    Style::Broken
                } else if text == "{" {
                    Style::Braces
                } else {
                    Style::Tight
                };
                self.stack.push(Frame {
                    style,
                    close,
                    block: self.plan.blocks.contains(&t.span.start),
                    is_action: self.plan.action_blocks.contains(&t.span.start),
                });
            }
            prev = Some(i);
            prev_code = Some(i);
        }
        let mut out = self.out;
        let trimmed = out.trim_end().len();
        out.truncate(trimmed);
        if !out.is_empty() {
            out.push('\n');
        }
        Some(out)
    }

    /// Whether token `i` opens a group laid out one member per line.
    fn opens_broken(&self, i: usize) -> bool {
        self.stack
            .last()
            .is_some_and(|f| f.style == Style::Broken && self.partner[i] == Some(f.close))
    }

    fn space_between(&self, p: usize, t: usize, closing: Option<Style>) -> bool {
        let pt = self.tokens[p];
        let tt = self.tokens[t];
        if pt.is_comment() {
            return true;
        }
        let ps = if pt.kind == TokenKind::Punct {
            pt.text(self.text)
        } else {
            ""
        };
        let ts = if tt.kind == TokenKind::Punct {
            tt.text(self.text)
        } else {
            ""
        };
        // `and (`, `or (`, `not (`, `when (`: a condition's group, not a call.
        if ts == "("
            && pt.kind == TokenKind::Word
            && matches!(pt.text(self.text), "and" | "or" | "not" | "when")
        {
            return true;
        }
        if matches!(ts, "," | ":" | ")" | "]" | ">" | "?" | "(" | "<" | ".") {
            return false;
        }
        if matches!(ps, "(" | "[" | "<" | ".") {
            return false;
        }
        if ts == "}" {
            // `{}` stays tight; `{ a }` gets its spaces.
            return closing == Some(Style::Braces);
        }
        true
    }
}

#[cfg(test)]
#[allow(clippy::panic)]
mod tests {
    use super::*;
    use std::path::{Path, PathBuf};

    fn root() -> PathBuf {
        Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
    }

    fn mca_files(dir: &Path, out: &mut Vec<PathBuf>) {
        let Ok(entries) = std::fs::read_dir(dir) else {
            return;
        };
        let mut entries: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
        entries.sort();
        for e in entries {
            if e.is_dir() {
                mca_files(&e, out);
            } else if e.extension().is_some_and(|x| x == "mca") {
                out.push(e);
            }
        }
    }

    fn examples() -> Vec<(PathBuf, String)> {
        let mut files = Vec::new();
        mca_files(&root().join("examples"), &mut files);
        assert!(!files.is_empty(), "no examples found");
        files
            .into_iter()
            .map(|f| {
                let t = std::fs::read_to_string(&f).unwrap_or_default();
                (f, t)
            })
            .collect()
    }

    fn ui_files() -> Vec<(PathBuf, String)> {
        let mut files = Vec::new();
        mca_files(&root().join("tests/ui"), &mut files);
        files
            .into_iter()
            .map(|f| {
                let t = std::fs::read_to_string(&f).unwrap_or_default();
                (f, t)
            })
            .collect()
    }

    fn fmt(text: &str) -> String {
        match format(text) {
            Some(t) => t,
            None => panic!("format refused valid text:\n{text}"),
        }
    }

    /// The non-comment tokens, without the commas the formatter may drop.
    fn code_tokens(text: &str) -> Vec<String> {
        lex(text)
            .iter()
            .filter(|t| !t.is_comment() && !t.is_punct(text, ","))
            .map(|t| t.text(text).to_string())
            .collect()
    }

    fn comments(text: &str) -> Vec<String> {
        lex(text)
            .iter()
            .filter(|t| t.is_comment())
            .map(|t| t.text(text).trim_end().to_string())
            .collect()
    }

    #[test]
    fn examples_are_in_canonical_form() {
        for (path, text) in examples() {
            let out = fmt(&text);
            if out != text {
                let diff: Vec<String> = text
                    .lines()
                    .zip(out.lines())
                    .enumerate()
                    .filter(|(_, (a, b))| a != b)
                    .take(5)
                    .map(|(n, (a, b))| format!("line {}:\n  was: {a}\n  now: {b}", n + 1))
                    .collect();
                panic!("{} is not canonical:\n{}", path.display(), diff.join("\n"));
            }
        }
    }

    #[test]
    fn formatting_is_idempotent_and_keeps_tokens_and_comments() {
        let mut formatted = 0;
        for (path, text) in examples().into_iter().chain(ui_files()) {
            let Some(once) = format(&text) else {
                // Files with syntax errors are left alone.
                assert!(crate::syntax::parse(0, &text)
                    .1
                    .iter()
                    .any(|d| d.code == Code::Syntax || d.code == Code::TooDeep));
                continue;
            };
            formatted += 1;
            let twice = fmt(&once);
            assert_eq!(once, twice, "not idempotent on {}", path.display());
            assert_eq!(code_tokens(&text), code_tokens(&once), "{}", path.display());
            assert_eq!(comments(&text), comments(&once), "{}", path.display());
            // The same program: same diagnostics (codes) and the same IR.
            let a = crate::compile_one("a.mca", &text);
            let b = crate::compile_one("a.mca", &once);
            let codes =
                |c: &crate::Compilation| c.diagnostics.iter().map(|d| d.code).collect::<Vec<_>>();
            assert_eq!(codes(&a), codes(&b), "{}", path.display());
            if let (Some(x), Some(y)) = (&a.ir, &b.ir) {
                let strip = |p: &crate::ir::Project| {
                    let mut v = serde_json::to_value(p).unwrap_or_default();
                    strip_locations(&mut v);
                    v
                };
                assert_eq!(strip(x), strip(y), "{}", path.display());
            }
        }
        assert!(formatted > 10, "only {formatted} files formatted");
    }

    /// Source locations legitimately move when formatting.
    fn strip_locations(v: &mut serde_json::Value) {
        match v {
            serde_json::Value::Object(m) => {
                m.retain(|k, _| k != "location" && k != "line" && k != "column" && k != "span");
                m.values_mut().for_each(strip_locations);
            }
            serde_json::Value::Array(a) => a.iter_mut().for_each(strip_locations),
            _ => {}
        }
    }

    #[test]
    fn messy_layout_becomes_canonical() {
        let messy = "// leading comment\n\n\n   action  demo{description \"Demo.\"\n\
            input  a :string(phone)\"doc\"   input b: enum( \"x\" ,\"y\", ) = \"x\"\n\
            request GET \"https://x.example/{input.a}\"{timeout 3s retry 1 backoff 100ms\n\
            \t query \"b\"=input.b\n\
            header \"A\" = \"b\" // trailing\n\
            body {\"k\": [1,2 ,3], \"o\":{ }, \"p\" : { \"q\" : null , }}}\n\n\n\n\
            output{ x:list<string>? = $.items[*].name  ?? [] n: int=count($.a[?@.b == 'c'])}\n\
            on 404,500{x=[] n = 0 say \"no\"}\n\
            say \"Hi {output.x}.\" }\naction other {\n  invalidates demo ,demo\n  /* block */ }\n";
        let expected = "// leading comment\n\n\
            action demo {\n\
            \x20 description \"Demo.\"\n\
            \x20 input a: string(phone) \"doc\"\n\
            \x20 input b: enum(\"x\", \"y\") = \"x\"\n\
            \x20 request GET \"https://x.example/{input.a}\" {\n\
            \x20   timeout 3s\n\
            \x20   retry 1 backoff 100ms\n\
            \x20   query \"b\" = input.b\n\
            \x20   header \"A\" = \"b\" // trailing\n\
            \x20   body { \"k\": [1, 2, 3], \"o\": {}, \"p\": { \"q\": null } }\n\
            \x20 }\n\
            \n\
            \x20 output {\n\
            \x20   x: list<string>? = $.items[*].name ?? []\n\
            \x20   n: int = count($.a[?@.b == 'c'])\n\
            \x20 }\n\
            \x20 on 404, 500 {\n\
            \x20   x = []\n\
            \x20   n = 0\n\
            \x20   say \"no\"\n\
            \x20 }\n\
            \x20 say \"Hi {output.x}.\"\n\
            }\n\
            \n\
            action other {\n\
            \x20 invalidates demo, demo\n\
            \x20 /* block */\n\
            }\n";
        let out = fmt(messy);
        assert_eq!(out, expected, "got:\n{out}");
        assert_eq!(fmt(&out), out);
    }

    #[test]
    fn objects_keep_the_authors_choice_of_one_line_or_one_member_per_line() {
        let src = "action a {\n  test \"t\" {\n    input { x: \"1\",\n      y: 2 }\n    upstream 200 {\"data\": [{\n\"id\": 1, \"tags\": [\"a\", \"b\"]\n}]}\n    expect { x: 1 }\n  }\n}\n";
        let expected = "action a {\n  test \"t\" {\n    input {\n      x: \"1\",\n      y: 2\n    }\n    upstream 200 { \"data\": [{\n      \"id\": 1,\n      \"tags\": [\"a\", \"b\"]\n    }] }\n    expect { x: 1 }\n  }\n}\n";
        let out = fmt(src);
        assert_eq!(out, expected, "got:\n{out}");
        assert_eq!(fmt(&out), out);
    }

    #[test]
    fn comments_are_kept_in_place() {
        let src = "/* header\n   spans lines */\naction a { // after the brace\n  // own line\n\n  // after a blank\n  input x: // mid item\n    string\n  request GET \"u\" { /* inline */ timeout 1s }\n  test \"t\" {\n    input {\n      x: \"1\", // trailing comma comment\n    }\n  }\n  // last\n}\n// end\n";
        let out = fmt(src);
        assert_eq!(comments(src), comments(&out));
        assert_eq!(fmt(&out), out, "not idempotent:\n{out}");
        let expected = "/* header\n   spans lines */\naction a { // after the brace\n  // own line\n\n  // after a blank\n  input x: // mid item\n    string\n  request GET \"u\" { /* inline */\n    timeout 1s\n  }\n  test \"t\" {\n    input {\n      x: \"1\" // trailing comma comment\n    }\n  }\n  // last\n}\n\n// end\n";
        assert_eq!(out, expected, "got:\n{out}");
    }

    #[test]
    fn any_whitespace_between_tokens_formats_idempotently() {
        // Rejoin the tokens of every example with random blanks, line breaks and blank lines
        // (a line comment always gets its line break): still the same program, and formatting
        // the result is stable.
        let mut seed: u64 = 0x9e37_79b9_7f4a_7c15;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 7;
            seed ^= seed << 17;
            seed
        };
        for (path, text) in examples() {
            let tokens = lex(&text);
            for _ in 0..40 {
                let mut src = String::new();
                for (i, t) in tokens.iter().enumerate() {
                    // References (`input.x`) take no blanks around their dots.
                    let dot = |t: &Token| t.is_punct(&text, ".");
                    if i > 0 && !dot(t) && !dot(&tokens[i - 1]) {
                        let r = next() % 10;
                        let after_line_comment = tokens[i - 1].kind == TokenKind::LineComment;
                        src.push_str(match r {
                            _ if after_line_comment && r < 5 => "\n",
                            _ if after_line_comment => "\n\n  ",
                            0..=5 => " ",
                            6 | 7 => "\n    ",
                            8 => "\n\n\n",
                            _ => "\t",
                        });
                    }
                    src.push_str(t.text(&text));
                }
                let once = fmt(&src);
                assert_eq!(
                    fmt(&once),
                    once,
                    "not idempotent on a variant of {}:\n{src}",
                    path.display()
                );
                assert_eq!(code_tokens(&src), code_tokens(&once));
                assert_eq!(comments(&src), comments(&once));
                assert!(
                    once.lines().all(|l| l == l.trim_end()),
                    "trailing blanks:\n{once}"
                );
            }
        }
    }

    #[test]
    fn syntax_errors_are_not_formatted() {
        assert_eq!(format("action a {\n  input x string\n}\n"), None);
        assert_eq!(format("hello"), None);
        assert_eq!(format(""), Some(String::new()));
        assert_eq!(
            format("  // only a comment  \n\n"),
            Some("// only a comment\n".into())
        );
    }

    #[test]
    fn crlf_is_kept() {
        let src = "action a {\r\n  description \"x\" // c\r\n}\r\n";
        assert_eq!(fmt(src), src);
    }

    #[test]
    fn lexer_covers_every_byte_and_never_panics() {
        let samples = [
            "action a { input x: string(phone)? = \"a\\\"b\" }",
            "$.a[?@.b == 'c'].d[*]..e $['x'] $[",
            "-1.5e-3 5xx 200ms 1MB ?? ? é 😀 \"unterminated\n/* open",
            "\"\\",
            "//",
        ];
        for s in samples {
            let tokens = lex(s);
            let mut last = 0;
            for t in &tokens {
                assert!(
                    t.span.start >= last && t.span.end > t.span.start,
                    "{s:?}: {t:?}"
                );
                assert!(
                    s[last..t.span.start].trim().is_empty(),
                    "{s:?}: gap before {t:?}"
                );
                last = t.span.end;
            }
            assert!(s[last..].trim().is_empty());
        }
        let t = lex("count($.data[0].tickets[?@.status == 'open'])");
        let kinds: Vec<TokenKind> = t.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            [
                TokenKind::Word,
                TokenKind::Punct,
                TokenKind::Path,
                TokenKind::Punct
            ]
        );
    }
}
