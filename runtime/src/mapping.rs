//! Mapping a response body to outputs.
//!
//! Per output, with its JSONPath parsed at start-up:
//! - `path`: a list-typed output with a non-singular path collects every selected node (nothing
//!   selected is an empty list); otherwise the one selected node, null when nothing is
//!   selected, and a failure when several are (use `first(...)`);
//! - `exists`: whether anything is selected; `count`: how many nodes are;
//! - `first`: the first selected node, null when none is.
//!
//! A null result takes the `?? default` if there is one. Every value is then checked against
//! the output's declared type, so a required output that matches nothing, or a value of the
//! wrong type, fails the mapping (reason `mapping`).
//!
//! The body is parsed into only what the outputs' paths read ([`Need`], derived from the paths
//! at start-up), the way a typed struct is deserialized: the rest is checked for JSON syntax
//! but never allocated.

use std::borrow::Cow;
use std::fmt;

use jsonpath_rust::parser::model::{
    Comparable, Comparison, Filter, FilterAtom, JpQuery, Literal, Segment, Selector, SingularQuery,
    SingularQuerySegment, Test,
};
use jsonpath_rust::query::js_path_process;
use mca_compiler::ir::{CmpOp, MappingKind};
use serde::de::{DeserializeSeed, Deserializer, IgnoredAny, MapAccess, SeqAccess, Visitor};
use serde::Deserialize;
use serde_json::{Map, Number, Value};

use crate::prepare::PreparedOutput;

/// The outputs of one response (a single-request action's, or a step's), and what of the body
/// they read.
pub(crate) struct Mapping {
    pub outputs: Vec<PreparedOutput>,
    reads: Need,
}

impl Mapping {
    pub(crate) fn new(outputs: Vec<PreparedOutput>) -> Mapping {
        let mut reads = Need::default();
        for o in &outputs {
            reads.merge(&o.reads);
        }
        reads.finish();
        Mapping { outputs, reads }
    }

    /// Parses a response body (blank: null) into what the outputs read.
    /// Strings without escapes are borrowed from `body`.
    pub(crate) fn parse<'a>(&'a self, body: &'a [u8]) -> serde_json::Result<Node<'a>> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(Node::Null);
        }
        let mut de = serde_json::Deserializer::from_slice(body);
        let node = Pruned(&self.reads).deserialize(&mut de)?;
        de.end()?;
        Ok(node)
    }

    /// The outputs of a parsed body.
    pub(crate) fn map<'a>(&self, body: impl Into<At<'a>>) -> Result<Map<String, Value>, String> {
        map_outputs(&self.outputs, body.into())
    }

    /// The values of the outputs of a parsed body, in the outputs' order.
    pub(crate) fn values<'a>(&self, body: impl Into<At<'a>>) -> Result<Vec<Value>, String> {
        output_values(&self.outputs, body.into())
    }
}

/// What a path (or several) reads of a JSON value.
#[derive(Debug, Default, Clone, PartialEq)]
pub(crate) struct Need {
    /// The whole value.
    all: bool,
    /// Members of an object, by name.
    members: Vec<(String, Need)>,
    /// Every element of an array.
    items: Option<Box<Need>>,
    /// Every member of an object (after [`Need::finish`], merged into `members` too).
    values: Option<Box<Need>>,
}

impl Need {
    /// What an output's path reads: the whole of every selected node for `path` and `first`,
    /// only their presence for `exists` and `count`.
    pub(crate) fn of_path(query: &JpQuery, kind: MappingKind) -> Need {
        let mut need = Need::default();
        // A filter that reads the root (`$.limit`) may read anything.
        if query.to_string()[1..].contains('$') {
            need.all = true;
            return need;
        }
        let whole = match kind {
            MappingKind::Path | MappingKind::First => true,
            MappingKind::Exists | MappingKind::Count => false,
        };
        need.mark(&query.segments, whole);
        need
    }

    fn member(&mut self, name: &str) -> &mut Need {
        let at = match self.members.iter().position(|(n, _)| n == name) {
            Some(at) => at,
            None => {
                self.members.push((name.to_string(), Need::default()));
                self.members.len() - 1
            }
        };
        &mut self.members[at].1
    }

    fn items(&mut self) -> &mut Need {
        self.items.get_or_insert_with(Box::default)
    }

    fn values(&mut self) -> &mut Need {
        self.values.get_or_insert_with(Box::default)
    }

    /// Marks what `segments`, applied to this value, read; `whole`: the selected nodes whole.
    fn mark(&mut self, segments: &[Segment], whole: bool) {
        let Some((first, rest)) = segments.split_first() else {
            self.all |= whole;
            return;
        };
        match first {
            Segment::Selector(s) => self.mark_selector(s, rest, whole),
            Segment::Selectors(list) => {
                for s in list {
                    self.mark_selector(s, rest, whole);
                }
            }
            // Descendants: every node below.
            Segment::Descendant(_) => self.all = true,
        }
    }

    fn mark_selector(&mut self, selector: &Selector, rest: &[Segment], whole: bool) {
        match selector {
            Selector::Name(name) => self.member(name).mark(rest, whole),
            Selector::Index(_) | Selector::Slice(..) => self.items().mark(rest, whole),
            Selector::Wildcard => {
                self.items().mark(rest, whole);
                self.values().mark(rest, whole);
            }
            Selector::Filter(filter) => {
                let mut child = Need::default();
                if !child.mark_filter(filter) {
                    self.all = true;
                    return;
                }
                child.mark(rest, whole);
                self.items().merge(&child);
                self.values().merge(&child);
            }
        }
    }

    /// Marks what a filter reads of the node it tests; `false` when it is not understood here
    /// (functions), and the filtered value must be kept whole.
    fn mark_filter(&mut self, filter: &Filter) -> bool {
        match filter {
            Filter::Or(list) | Filter::And(list) => list.iter().all(|f| self.mark_filter(f)),
            Filter::Atom(FilterAtom::Filter { expr, .. }) => self.mark_filter(expr),
            Filter::Atom(FilterAtom::Test { expr, .. }) => match &**expr {
                Test::RelQuery(segments) => {
                    self.mark(segments, true);
                    true
                }
                Test::AbsQuery(_) | Test::Function(_) => false,
            },
            Filter::Atom(FilterAtom::Comparison(c)) => {
                let (left, right) = match &**c {
                    Comparison::Eq(l, r)
                    | Comparison::Ne(l, r)
                    | Comparison::Gt(l, r)
                    | Comparison::Gte(l, r)
                    | Comparison::Lt(l, r)
                    | Comparison::Lte(l, r) => (l, r),
                };
                [left, right].into_iter().all(|side| match side {
                    Comparable::Literal(_) => true,
                    Comparable::SingularQuery(SingularQuery::Current(segments)) => {
                        let mut at = &mut *self;
                        for s in segments {
                            at = match s {
                                SingularQuerySegment::Name(n) => at.member(n),
                                SingularQuerySegment::Index(_) => at.items(),
                            };
                        }
                        at.all = true;
                        true
                    }
                    Comparable::SingularQuery(SingularQuery::Root(_)) | Comparable::Function(_) => {
                        false
                    }
                })
            }
        }
    }

    pub(crate) fn merge(&mut self, other: &Need) {
        self.all |= other.all;
        for (name, need) in &other.members {
            self.member(name).merge(need);
        }
        if let Some(items) = &other.items {
            self.items().merge(items);
        }
        if let Some(values) = &other.values {
            self.values().merge(values);
        }
    }

    /// Prepares for parsing: a member named and reached by a wildcard reads both; nothing more
    /// is needed below a whole value.
    fn finish(&mut self) {
        if self.all {
            *self = Need {
                all: true,
                ..Need::default()
            };
            return;
        }
        if let Some(values) = &mut self.values {
            values.finish();
            for (_, need) in &mut self.members {
                need.merge(values);
            }
        }
        for (_, need) in &mut self.members {
            need.finish();
        }
        if let Some(items) = &mut self.items {
            items.finish();
        }
    }
}

/// A response body parsed into what the outputs read ([`Mapping::parse`]), the way a typed
/// struct is deserialized: an object keeps only the members read by name, named by the
/// [`Need`]'s own strings (no key allocated, none hashed). A value read whole, and an object
/// whose every member is read (a wildcard or a filter over members), is a
/// [`serde_json::Value`] (pruned the same way below a wildcard).
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Node<'n> {
    Null,
    Bool(bool),
    Number(Number),
    String(Cow<'n, str>),
    Array(Vec<Node<'n>>),
    /// The members read by name, in the body's order; a repeated name keeps its first place
    /// and its last value, as `serde_json::Map` does.
    Object(Vec<(&'n str, Node<'n>)>),
    Value(Value),
}

impl Node<'_> {
    /// The node as a `serde_json::Value` (objects with the members kept).
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Node::Null => Value::Null,
            Node::Bool(b) => Value::Bool(*b),
            Node::Number(n) => Value::Number(n.clone()),
            Node::String(s) => Value::String(s.to_string()),
            Node::Array(items) => Value::Array(items.iter().map(Node::to_value).collect()),
            Node::Object(members) => Value::Object(
                members
                    .iter()
                    .map(|(k, v)| ((*k).to_owned(), v.to_value()))
                    .collect(),
            ),
            Node::Value(v) => v.clone(),
        }
    }
}

/// A node of a parsed body: of the [`Node`] tree, or of a `serde_json::Value` (inside one, or
/// a body given as a `Value`).
#[derive(Debug, Clone, Copy)]
pub(crate) enum At<'a> {
    Node(&'a Node<'a>),
    Value(&'a Value),
}

impl<'a> From<&'a Node<'a>> for At<'a> {
    fn from(n: &'a Node<'a>) -> At<'a> {
        match n {
            Node::Value(v) => At::Value(v),
            n => At::Node(n),
        }
    }
}

impl<'a> From<&'a Value> for At<'a> {
    fn from(v: &'a Value) -> At<'a> {
        At::Value(v)
    }
}

impl<'a> At<'a> {
    pub(crate) fn to_value(self) -> Value {
        match self {
            At::Node(n) => n.to_value(),
            At::Value(v) => v.clone(),
        }
    }

    fn as_f64(self) -> Option<f64> {
        match self {
            At::Node(Node::Number(n)) | At::Value(Value::Number(n)) => n.as_f64(),
            _ => None,
        }
    }

    fn as_str(self) -> Option<&'a str> {
        match self {
            At::Node(Node::String(s)) => Some(s),
            At::Value(Value::String(s)) => Some(s),
            _ => None,
        }
    }

    /// Structural equality (`==` of `serde_json::Value`).
    fn same(self, other: At<'_>) -> bool {
        match (self, other) {
            (At::Value(a), At::Value(b)) => a == b,
            (a, b) => match (a.scalar(), b.scalar()) {
                (Some(a), Some(b)) => a == b,
                (None, None) => a.to_value() == b.to_value(),
                _ => false,
            },
        }
    }

    /// A null, bool, number or string, without copying it.
    fn scalar(self) -> Option<Scalar<'a>> {
        Some(match self {
            At::Node(Node::Null) | At::Value(Value::Null) => Scalar::Null,
            At::Node(Node::Bool(b)) | At::Value(Value::Bool(b)) => Scalar::Bool(*b),
            At::Node(Node::Number(n)) | At::Value(Value::Number(n)) => Scalar::Number(n),
            At::Node(Node::String(s)) => Scalar::String(s),
            At::Value(Value::String(s)) => Scalar::String(s),
            _ => return None,
        })
    }

    /// The member named `name` of an object.
    fn member(self, name: &str) -> Option<At<'a>> {
        match self {
            At::Node(Node::Object(members)) => members
                .iter()
                .find_map(|(k, v)| (*k == name).then(|| At::from(v))),
            // A small object is searched in order: cheaper than hashing the name with SipHash
            // (the hasher of `serde_json::Map`); names are unique, so the same member is found.
            At::Value(Value::Object(members)) if members.len() <= 8 => members
                .iter()
                .find_map(|(k, v)| (k == name).then_some(At::Value(v))),
            At::Value(Value::Object(members)) => members.get(name).map(At::Value),
            _ => None,
        }
    }

    /// The element at `i` of an array (RFC 9535: a negative index counts from the end).
    fn index(self, i: i64) -> Option<At<'a>> {
        let at = |len: usize| {
            if i < 0 {
                len.checked_sub(i.unsigned_abs() as usize)
            } else {
                Some(i as usize)
            }
        };
        match self {
            At::Node(Node::Array(items)) => items.get(at(items.len())?).map(At::from),
            At::Value(Value::Array(items)) => items.get(at(items.len())?).map(At::Value),
            _ => None,
        }
    }

    /// The elements of an array or the member values of an object (a wildcard's selection)
    /// that `keep` accepts, appended to `out`.
    fn children(self, out: &mut Vec<At<'a>>, keep: impl Fn(At<'a>) -> bool) {
        match self {
            At::Node(Node::Array(items)) => {
                out.extend(items.iter().map(At::from).filter(|a| keep(*a)))
            }
            At::Node(Node::Object(members)) => {
                out.extend(
                    members
                        .iter()
                        .map(|(_, v)| At::from(v))
                        .filter(|a| keep(*a)),
                );
            }
            At::Value(Value::Array(items)) => {
                out.extend(items.iter().map(At::Value).filter(|a| keep(*a)))
            }
            At::Value(Value::Object(members)) => {
                out.extend(members.values().map(At::Value).filter(|a| keep(*a)));
            }
            _ => {}
        }
    }
}

#[derive(PartialEq)]
enum Scalar<'a> {
    Null,
    Bool(bool),
    Number(&'a Number),
    String(&'a str),
}

/// What a path selected: a node of the body, or a value jsonpath-rust selected in a copy of a
/// [`Node`].
#[derive(Debug, Clone)]
pub(crate) enum Found<'a> {
    At(At<'a>),
    Owned(Value),
}

impl Found<'_> {
    pub(crate) fn to_value(&self) -> Value {
        match self {
            Found::At(a) => a.to_value(),
            Found::Owned(v) => v.clone(),
        }
    }
}

/// Deserializes a JSON value into what a [`Need`] reads of it.
struct Pruned<'n>(&'n Need);

impl<'de: 'n, 'n> DeserializeSeed<'de> for Pruned<'n> {
    type Value = Node<'n>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Node<'n>, D::Error> {
        if self.0.all {
            Value::deserialize(d).map(Node::Value)
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de: 'n, 'n> Visitor<'de> for Pruned<'n> {
    type Value = Node<'n>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Node<'n>, E> {
        Ok(Node::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Node<'n>, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Node<'n>, E> {
        Ok(Node::Number(v.into()))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Node<'n>, E> {
        Ok(Number::from_f64(v).map_or(Node::Null, Node::Number))
    }

    fn visit_borrowed_str<E>(self, v: &'de str) -> Result<Node<'n>, E> {
        Ok(Node::String(Cow::Borrowed(v)))
    }

    fn visit_str<E>(self, v: &str) -> Result<Node<'n>, E> {
        Ok(Node::String(Cow::Owned(v.to_owned())))
    }

    fn visit_string<E>(self, v: String) -> Result<Node<'n>, E> {
        Ok(Node::String(Cow::Owned(v)))
    }

    fn visit_unit<E>(self) -> Result<Node<'n>, E> {
        Ok(Node::Null)
    }

    fn visit_none<E>(self) -> Result<Node<'n>, E> {
        Ok(Node::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Node<'n>, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Node<'n>, A::Error> {
        elements(
            seq,
            self.0.items.as_deref().map(|need| move || Pruned(need)),
        )
        .map(Node::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Node<'n>, A::Error> {
        if self.0.values.is_some() {
            // Every member is read: a `Value`, with the members' names.
            return PrunedValue(self.0).visit_map(map).map(Node::Value);
        }
        let mut members: Vec<(&'n str, Node<'n>)> = Vec::with_capacity(self.0.members.len());
        while let Some(read) = map.next_key_seed(Named(self.0))? {
            match read {
                Some((name, need)) => {
                    let value = map.next_value_seed(Pruned(need))?;
                    match members.iter_mut().find(|(n, _)| *n == name) {
                        Some((_, slot)) => *slot = value,
                        None => members.push((name, value)),
                    }
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Node::Object(members))
    }
}

/// The elements of an array, each parsed with a seed from `seed`; all skipped (checked for
/// JSON syntax only) when nothing reads them.
fn elements<'de, A, S>(mut seq: A, seed: Option<impl Fn() -> S>) -> Result<Vec<S::Value>, A::Error>
where
    A: SeqAccess<'de>,
    S: DeserializeSeed<'de>,
{
    let mut items = Vec::new();
    match seed {
        Some(seed) => {
            while let Some(item) = seq.next_element_seed(seed())? {
                items.push(item);
            }
        }
        None => while seq.next_element::<IgnoredAny>()?.is_some() {},
    }
    Ok(items)
}

/// An object member's name among those a [`Need`] reads by name (`None`: skip the member).
struct Named<'n>(&'n Need);

impl<'de, 'n> DeserializeSeed<'de> for Named<'n> {
    type Value = Option<(&'n str, &'n Need)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'n> Visitor<'de> for Named<'n> {
    type Value = Option<(&'n str, &'n Need)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
        Ok(self
            .0
            .members
            .iter()
            .find(|(n, _)| n == name)
            .map(|(n, need)| (n.as_str(), need)))
    }
}

/// Deserializes a JSON value into what a [`Need`] reads of it, as a `serde_json::Value`: for
/// objects whose every member is read, and below them.
struct PrunedValue<'n>(&'n Need);

impl<'de> DeserializeSeed<'de> for PrunedValue<'_> {
    type Value = Value;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        if self.0.all {
            Value::deserialize(d)
        } else {
            d.deserialize_any(self)
        }
    }
}

impl<'de> Visitor<'de> for PrunedValue<'_> {
    type Value = Value;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("any JSON value")
    }

    fn visit_bool<E>(self, v: bool) -> Result<Value, E> {
        Ok(Value::Bool(v))
    }

    fn visit_i64<E>(self, v: i64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_u64<E>(self, v: u64) -> Result<Value, E> {
        Ok(Value::from(v))
    }

    fn visit_f64<E>(self, v: f64) -> Result<Value, E> {
        Ok(Number::from_f64(v).map_or(Value::Null, Value::Number))
    }

    fn visit_str<E>(self, v: &str) -> Result<Value, E> {
        Ok(Value::String(v.to_owned()))
    }

    fn visit_string<E>(self, v: String) -> Result<Value, E> {
        Ok(Value::String(v))
    }

    fn visit_unit<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_none<E>(self) -> Result<Value, E> {
        Ok(Value::Null)
    }

    fn visit_some<D: Deserializer<'de>>(self, d: D) -> Result<Value, D::Error> {
        self.deserialize(d)
    }

    fn visit_seq<A: SeqAccess<'de>>(self, seq: A) -> Result<Value, A::Error> {
        elements(
            seq,
            self.0
                .items
                .as_deref()
                .map(|need| move || PrunedValue(need)),
        )
        .map(Value::Array)
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        // At most the members read by name are kept (unless every member is read).
        let mut members = match self.0.values {
            None => Map::with_capacity(self.0.members.len()),
            Some(_) => Map::new(),
        };
        while let Some(read) = map.next_key_seed(Member(self.0))? {
            match read {
                Some((name, need)) => {
                    let value = map.next_value_seed(PrunedValue(need))?;
                    members.insert(name, value);
                }
                None => {
                    map.next_value::<IgnoredAny>()?;
                }
            }
        }
        Ok(Value::Object(members))
    }
}

/// An object member's name, and what is read of its value (`None`: nothing, skip it).
struct Member<'n>(&'n Need);

impl<'de, 'n> DeserializeSeed<'de> for Member<'n> {
    type Value = Option<(String, &'n Need)>;

    fn deserialize<D: Deserializer<'de>>(self, d: D) -> Result<Self::Value, D::Error> {
        d.deserialize_str(self)
    }
}

impl<'de, 'n> Visitor<'de> for Member<'n> {
    type Value = Option<(String, &'n Need)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a member name")
    }

    fn visit_str<E>(self, name: &str) -> Result<Self::Value, E> {
        let need = self
            .0
            .members
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, need)| need)
            .or(self.0.values.as_deref());
        Ok(need.map(|need| (name.to_owned(), need)))
    }
}

/// How a parsed JSONPath is evaluated. Its leading name, index and wildcard selectors, and
/// filters that compare values of the tested node with literals or with each other (or test
/// that they exist), walk the body directly (no allocation for a singular path); from the first
/// other segment on (slices, unions, descendants, filters with functions or reading the root)
/// jsonpath-rust evaluates the rest on every node reached, which selects the same nodes in the
/// same order (RFC 9535 applies each segment to each node of the list in turn). A rest that
/// reads the root (`$` inside a filter) cannot be evaluated from an inner node, and
/// jsonpath-rust orders a union after several nodes its own way, so such paths are evaluated
/// whole by jsonpath-rust. Filters are evaluated as jsonpath-rust evaluates them.
pub(crate) struct Plan {
    steps: Vec<Step>,
    /// How many leading steps select at most one node each (names and indexes).
    single: usize,
    rest: Option<JpQuery>,
}

enum Step {
    Name(String),
    Index(i64),
    Wildcard,
    /// `[?...]`: the elements of an array, the member values of an object, that pass.
    Filter(Cond),
}

/// A filter's condition on the tested node.
enum Cond {
    Or(Vec<Cond>),
    And(Vec<Cond>),
    Not(Box<Cond>),
    /// `@.a[0]`: the value exists (even if null).
    Exists(Vec<Step>),
    Compare(CmpOp, Operand, Operand),
}

enum Operand {
    Literal(Value),
    /// A singular query from the tested node (names and indexes only).
    Relative(Vec<Step>),
}

impl Cond {
    /// The condition of a filter, or `None` for what is left to jsonpath-rust (functions,
    /// queries from the root, non-singular tests).
    fn new(filter: &Filter) -> Option<Cond> {
        Some(match filter {
            Filter::Or(list) => Cond::Or(list.iter().map(Cond::new).collect::<Option<_>>()?),
            Filter::And(list) => Cond::And(list.iter().map(Cond::new).collect::<Option<_>>()?),
            Filter::Atom(FilterAtom::Filter { expr, not }) => {
                let c = Cond::new(expr)?;
                if *not {
                    Cond::Not(Box::new(c))
                } else {
                    c
                }
            }
            Filter::Atom(FilterAtom::Test { expr, not }) => {
                let Test::RelQuery(segments) = &**expr else {
                    return None;
                };
                let steps = segments
                    .iter()
                    .map(|s| match s {
                        Segment::Selector(Selector::Name(n)) => Some(Step::Name(n.clone())),
                        Segment::Selector(Selector::Index(i)) => Some(Step::Index(*i)),
                        _ => None,
                    })
                    .collect::<Option<_>>()?;
                let c = Cond::Exists(steps);
                if *not {
                    Cond::Not(Box::new(c))
                } else {
                    c
                }
            }
            Filter::Atom(FilterAtom::Comparison(c)) => {
                let (op, l, r) = match &**c {
                    Comparison::Eq(l, r) => (CmpOp::Eq, l, r),
                    Comparison::Ne(l, r) => (CmpOp::Ne, l, r),
                    Comparison::Lt(l, r) => (CmpOp::Lt, l, r),
                    Comparison::Lte(l, r) => (CmpOp::Le, l, r),
                    Comparison::Gt(l, r) => (CmpOp::Gt, l, r),
                    Comparison::Gte(l, r) => (CmpOp::Ge, l, r),
                };
                Cond::Compare(op, Operand::new(l)?, Operand::new(r)?)
            }
        })
    }

    fn holds(&self, node: At<'_>) -> bool {
        match self {
            Cond::Or(list) => list.iter().any(|c| c.holds(node)),
            Cond::And(list) => list.iter().all(|c| c.holds(node)),
            Cond::Not(c) => !c.holds(node),
            Cond::Exists(steps) => walk(node, steps).is_some(),
            Cond::Compare(op, l, r) => {
                let (l, r) = (l.of(node), r.of(node));
                match op {
                    CmpOp::Eq => equal(l, r),
                    CmpOp::Ne => !equal(l, r),
                    CmpOp::Lt => less(l, r),
                    CmpOp::Le => less(l, r) || equal(l, r),
                    CmpOp::Gt => less(r, l),
                    CmpOp::Ge => less(r, l) || equal(l, r),
                }
            }
        }
    }
}

impl Operand {
    fn new(c: &Comparable) -> Option<Operand> {
        Some(match c {
            Comparable::Literal(l) => Operand::Literal(match l {
                Literal::Int(i) => Value::from(*i),
                Literal::Float(f) => Value::from(*f),
                Literal::String(s) => Value::from(s.as_str()),
                Literal::Bool(b) => Value::Bool(*b),
                Literal::Null => Value::Null,
            }),
            Comparable::SingularQuery(SingularQuery::Current(segments)) => Operand::Relative(
                segments
                    .iter()
                    .map(|s| match s {
                        SingularQuerySegment::Name(n) => Step::Name(n.clone()),
                        SingularQuerySegment::Index(i) => Step::Index(*i),
                    })
                    .collect(),
            ),
            Comparable::SingularQuery(SingularQuery::Root(_)) | Comparable::Function(_) => {
                return None
            }
        })
    }

    /// The operand's value for a tested node (`None`: nothing there).
    fn of<'a>(&'a self, node: At<'a>) -> Option<At<'a>> {
        match self {
            Operand::Literal(v) => Some(At::Value(v)),
            Operand::Relative(steps) => walk(node, steps),
        }
    }
}

/// The node a singular path (names and indexes) selects.
fn walk<'a>(node: At<'a>, steps: &[Step]) -> Option<At<'a>> {
    steps.iter().try_fold(node, |n, step| child(n, step))
}

/// `==` as jsonpath-rust compares: numbers by value (as f64), anything else structurally;
/// nothing equals only nothing.
fn equal(l: Option<At<'_>>, r: Option<At<'_>>) -> bool {
    match (l, r) {
        (Some(l), Some(r)) => match (l.as_f64(), r.as_f64()) {
            (Some(a), Some(b)) => (a - b).abs() < f64::EPSILON,
            _ => l.same(r),
        },
        (None, None) => true,
        _ => false,
    }
}

/// `<` as jsonpath-rust orders: numbers by value, strings by code points, nothing else.
fn less(l: Option<At<'_>>, r: Option<At<'_>>) -> bool {
    match (l, r) {
        (Some(l), Some(r)) => match (l.as_f64(), r.as_f64(), l.as_str(), r.as_str()) {
            (Some(a), Some(b), _, _) => a < b,
            (_, _, Some(a), Some(b)) => a < b,
            _ => false,
        },
        _ => false,
    }
}

impl Plan {
    pub(crate) fn new(query: &JpQuery) -> Plan {
        let mut steps = Vec::new();
        for (i, segment) in query.segments.iter().enumerate() {
            let step = match segment {
                Segment::Selector(Selector::Name(n)) => Some(Step::Name(n.clone())),
                Segment::Selector(Selector::Index(k)) => Some(Step::Index(*k)),
                Segment::Selector(Selector::Wildcard) => Some(Step::Wildcard),
                Segment::Selector(Selector::Filter(f)) => Cond::new(f).map(Step::Filter),
                _ => None,
            };
            let step = match step {
                Some(step) => step,
                None => {
                    let rest = JpQuery::new(query.segments[i..].to_vec());
                    // jsonpath-rust applies a union (`['a','b']`) selector by selector to the
                    // whole node list, not node by node: keep its order by not splitting after
                    // a wildcard.
                    let union = |s: &Segment| match s {
                        Segment::Selectors(_) => true,
                        Segment::Descendant(inner) => matches!(**inner, Segment::Selectors(_)),
                        Segment::Selector(_) => false,
                    };
                    let several = steps
                        .iter()
                        .any(|s| matches!(s, Step::Wildcard | Step::Filter(_)));
                    // A rest that may read the root, or a union after several nodes: evaluate
                    // the whole path.
                    if rest.to_string()[1..].contains('$')
                        || (several && rest.segments.iter().any(union))
                    {
                        return Plan {
                            steps: Vec::new(),
                            single: 0,
                            rest: Some(query.clone()),
                        };
                    }
                    return Plan::with(steps, Some(rest));
                }
            };
            steps.push(step);
        }
        Plan::with(steps, None)
    }

    fn with(steps: Vec<Step>, rest: Option<JpQuery>) -> Plan {
        let single = steps
            .iter()
            .position(|s| matches!(s, Step::Wildcard | Step::Filter(_)))
            .unwrap_or(steps.len());
        Plan {
            steps,
            single,
            rest,
        }
    }

    /// The nodes the path selects, in order.
    #[cfg(test)]
    pub(crate) fn select<'a>(&self, body: impl Into<At<'a>>) -> Result<Vec<Found<'a>>, String> {
        let mut found = Vec::new();
        self.select_into(body.into(), &mut found)?;
        Ok(found)
    }

    /// Appends the nodes the path selects, in order, to `found`.
    pub(crate) fn select_into<'a>(
        &self,
        body: At<'a>,
        found: &mut Vec<Found<'a>>,
    ) -> Result<(), String> {
        let (single, branching) = self.steps.split_at(self.single);
        let Some(node) = single.iter().try_fold(body, |n, step| child(n, step)) else {
            return Ok(());
        };
        if branching.is_empty() && self.rest.is_none() {
            found.push(Found::At(node));
            return Ok(());
        }
        let mut nodes = vec![node];
        for step in branching {
            let mut next = Vec::with_capacity(nodes.len());
            for n in nodes {
                match step {
                    Step::Wildcard => n.children(&mut next, |_| true),
                    Step::Filter(c) => n.children(&mut next, |v| c.holds(v)),
                    step => next.extend(child(n, step)),
                }
            }
            nodes = next;
        }
        let Some(rest) = &self.rest else {
            found.extend(nodes.into_iter().map(Found::At));
            return Ok(());
        };
        for n in nodes {
            match n {
                At::Value(v) => {
                    let selected = js_path_process(rest, v).map_err(|e| e.to_string())?;
                    found.extend(selected.into_iter().map(|q| Found::At(At::Value(q.val))));
                }
                // jsonpath-rust evaluates a `Value`: a copy of the node, and of what it selects.
                At::Node(n) => {
                    let v = n.to_value();
                    let selected = js_path_process(rest, &v).map_err(|e| e.to_string())?;
                    found.extend(selected.into_iter().map(|q| Found::Owned(q.val.clone())));
                }
            }
        }
        Ok(())
    }
}

/// The node a name or index selector selects from `node` (RFC 9535: negative indexes count
/// from the end; other types select nothing).
fn child<'a>(node: At<'a>, step: &Step) -> Option<At<'a>> {
    match step {
        Step::Name(name) => node.member(name),
        Step::Index(i) => node.index(*i),
        Step::Wildcard | Step::Filter(_) => None,
    }
}

fn map_outputs(outputs: &[PreparedOutput], body: At<'_>) -> Result<Map<String, Value>, String> {
    let values = output_values(outputs, body)?;
    Ok(outputs.iter().map(|o| o.name.clone()).zip(values).collect())
}

fn output_values(outputs: &[PreparedOutput], body: At<'_>) -> Result<Vec<Value>, String> {
    let mut out = Vec::with_capacity(outputs.len());
    let mut nodes = Vec::new();
    for o in outputs {
        nodes.clear();
        o.plan
            .select_into(body, &mut nodes)
            .map_err(|e| format!("output `{}`: {e}", o.name))?;
        let value = match o.kind {
            MappingKind::Exists => Value::Bool(!nodes.is_empty()),
            MappingKind::Count => Value::from(nodes.len()),
            MappingKind::First => nodes.first().map_or(Value::Null, Found::to_value),
            MappingKind::Path if o.ty.is_list() && !o.singular => {
                Value::Array(nodes.iter().map(Found::to_value).collect())
            }
            MappingKind::Path => match nodes.as_slice() {
                [] => Value::Null,
                [one] => one.to_value(),
                many => {
                    return Err(format!(
                        "output `{}`: the path selects {} values where one is expected",
                        o.name,
                        many.len()
                    ))
                }
            },
        };
        let value = match (value, &o.default) {
            (Value::Null, Some(d)) => d.clone(),
            (v, _) => v,
        };
        if let Err(m) = o.ty.check(&value) {
            return Err(if value.is_null() {
                format!("required output `{}` matched nothing", o.name)
            } else {
                format!("output `{}`: {m}", o.name)
            });
        }
        out.push(value);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use jsonpath_rust::parser::parse_json_path;
    use mca_compiler::ir::Ty;
    use serde_json::json;

    fn out(name: &str, ty: Ty, kind: MappingKind, path: &str, singular: bool) -> PreparedOutput {
        PreparedOutput {
            name: name.into(),
            ty,
            kind,
            plan: Plan::new(&parse_json_path(path).unwrap()),
            reads: Need::of_path(&parse_json_path(path).unwrap(), kind),
            singular,
            default: None,
        }
    }

    /// A body with every shape the paths below meet.
    fn body() -> Value {
        json!({
            "data": [
                {"id": "a", "n": 1, "tags": ["x", "y"], "o": {"k": 1, "j": 2},
                 "tickets": [{"status": "open"}, {"status": "closed"}, {"status": "open"}]},
                {"id": "b", "n": 5, "tags": [], "o": {}, "tickets": []},
                {"id": "c", "n": 3, "tags": ["z"], "tickets": [{"status": "open"}]}
            ],
            "limit": 3, "m": {"a": {"v": 1}, "b": {"v": 2}}, "s": "text"
        })
    }

    /// Paths with every kind of segment, filter and edge case.
    const PATHS: &[&str] = &[
        "$",
        "$.data",
        "$.data[0].id",
        "$.data[-1].id",
        "$.data[-3].id",
        "$.data[-4].id",
        "$.data[3].id",
        "$.data[0].tags[1]",
        "$.s.x",
        "$.s[0]",
        "$.data.id",
        "$['data'][1]['n']",
        "$.data[*].id",
        "$.data[*].tags[*]",
        "$.m.*.v",
        "$.*",
        "$.data[*].o.*",
        "$.s.*",
        "$.data[?@.n > 2].id",
        "$.data[0].tickets[?@.status == 'open']",
        "$.data[*].tickets[?@.status == 'open']",
        "$.data[?@.n == $.limit].id",
        "$.data[0:2].id",
        "$.data[*].tags[0:1]",
        "$..id",
        "$.data[0,2].id",
        "$.data[?length(@.tags) > 0].id",
        "$.data[*]['id','n']",
        "$.m[?@.v == 2].v",
        "$.data[0]['id','n']",
        "$.data[*]..['id','n']",
        "$.data[*]..id",
        "$.data[1:][?@.n > 1].id",
    ];

    /// Paths only the pruned-parse test uses (jsonpath-rust and the plan may differ on them in
    /// ways that test does not care about).
    const MORE_PATHS: &[&str] = &[
        "$.data[?@.o].id",
        "$.data[?@.o.k == 1 && !@.x].n",
        "$.data[?@.tickets[0].status == 'open' || @.n < 2].id",
        "$.data[?(@.n > 1)].tags",
        "$.m[?@.v > 1]",
        "$.data[*].o",
        "$.m.a",
        "$.data[0].tickets[*].status",
        "$.data[?@.o == @.tags].id",
        "$.data[?@.o != @.m].n",
        "$.m.a.x",
        "$.data[0].o.k",
    ];

    fn values(found: Vec<Found<'_>>) -> Vec<Value> {
        found.iter().map(Found::to_value).collect()
    }

    fn output_of(path: &str, kind: MappingKind) -> PreparedOutput {
        let query = parse_json_path(path).unwrap();
        PreparedOutput {
            name: path.into(),
            ty: Ty::Bool, // not checked: the tests select only
            kind,
            plan: Plan::new(&query),
            reads: Need::of_path(&query, kind),
            singular: false,
            default: None,
        }
    }

    /// Every path, with what each output kind reads of it, selects on the body parsed into what
    /// it reads what it selects on the whole body (the same whole nodes for `path`, as many
    /// nodes for `exists` and `count`); so do all of them reading one body together.
    fn assert_pruned_parse_selects_the_same(text: &str) {
        let full: Value = serde_json::from_str(text).unwrap();
        let check = |mapping: &Mapping| {
            let pruned = mapping.parse(text.as_bytes()).unwrap();
            for o in &mapping.outputs {
                let want = values(o.plan.select(&full).unwrap());
                let got = values(o.plan.select(&pruned).unwrap());
                if o.kind == MappingKind::Path {
                    assert_eq!(got, want, "{} in {text}", o.name);
                } else {
                    assert_eq!(got.len(), want.len(), "{:?} {} in {text}", o.kind, o.name);
                }
            }
        };
        let kinds = [MappingKind::Path, MappingKind::Exists, MappingKind::Count];
        let paths: Vec<&str> = PATHS.iter().chain(MORE_PATHS).copied().collect();
        for path in &paths {
            for kind in kinds {
                check(&Mapping::new(vec![output_of(path, kind)]));
            }
        }
        // Several outputs on one body: what each reads must be kept for the others too.
        let mut rng = fastrand::Rng::with_seed(text.len() as u64);
        for _ in 0..40 {
            check(&Mapping::new(
                (0..rng.usize(2..5))
                    .map(|_| output_of(paths[rng.usize(0..paths.len())], kinds[rng.usize(0..3)]))
                    .collect(),
            ));
        }
    }

    #[test]
    fn bodies_parsed_into_what_the_paths_read_select_what_the_whole_body_selects() {
        assert_pruned_parse_selects_the_same(&body().to_string());
        for text in [
            "null",
            "[]",
            r#"[1, {"id": 2}]"#,
            r#""text""#,
            r#"{"data": {"id": 1, "0": 2}, "m": [1, 2]}"#,
            r#"{"data": [{"id": "a"}, {"id": "a", "id": "b"}], "data": [7]}"#,
            r#"{"m": {"a": {"v": 2.5e0}, "b": null}, "s": "\u00e9\n"}"#,
            r#"{"data": [{"id": 1, "n": 2, "o": {"k": 1}, "m": {"k": 2}, "tags": {"k": 1}}]}"#,
        ] {
            assert_pruned_parse_selects_the_same(text);
        }
        // Generated bodies: nested objects and arrays over the names the paths use.
        let mut rng = fastrand::Rng::with_seed(7);
        for _ in 0..150 {
            assert_pruned_parse_selects_the_same(&generated(&mut rng, 4).to_string());
        }
    }

    fn generated(rng: &mut fastrand::Rng, depth: u32) -> Value {
        const NAMES: &[&str] = &[
            "data", "id", "n", "tags", "o", "k", "tickets", "status", "m", "v", "a", "s", "x",
        ];
        match rng.u32(0..if depth == 0 { 4 } else { 7 }) {
            0 => Value::Null,
            1 => json!(rng.i64(-3..6)),
            2 => json!(["open", "closed", "x"][rng.usize(0..3)]),
            3 => json!(rng.bool()),
            // Up to 12 members: objects past 8 are searched by hash, smaller ones in order.
            4 | 5 => Value::Object(
                (0..rng.usize(0..13))
                    .map(|_| {
                        let name = NAMES[rng.usize(0..NAMES.len())].to_string();
                        (name, generated(rng, depth - 1))
                    })
                    .collect(),
            ),
            _ => Value::Array(
                (0..rng.usize(0..4))
                    .map(|_| generated(rng, depth - 1))
                    .collect(),
            ),
        }
    }

    #[test]
    fn what_no_path_reads_is_not_kept_but_is_still_checked_for_json_syntax() {
        let path = "$.data[0].tickets[?@.status == 'open']";
        let mapping = Mapping::new(vec![output_of(path, MappingKind::Count)]);
        let body = br#"{"data": [{"id": "c", "email": "x@example.com",
            "tickets": [{"id": 1, "status": "open"}, {"status": "closed", "subject": "s"}]}],
            "total": 1}"#;
        assert_eq!(
            mapping.parse(body).unwrap().to_value(),
            json!({"data": [{"tickets": [{"status": "open"}, {"status": "closed"}]}]})
        );
        for bad in [
            &br#"{"data": [], "total": 1,}"#[..],
            br#"{"data": [], "skipped": [1, 2}"#,
            br#"{"data": [], "skipped": tru}"#,
            br#"{"data": []} trailing"#,
            br#"{"data": [], "skipped": "\x"}"#,
        ] {
            assert!(
                mapping.parse(bad).is_err(),
                "{}",
                String::from_utf8_lossy(bad)
            );
        }
        assert_eq!(mapping.parse(b" \n").unwrap(), Node::Null);
    }

    /// The plan selects exactly what jsonpath-rust selects on the whole path, on the body above
    /// and on generated ones.
    #[test]
    fn plans_select_what_the_whole_path_selects() {
        let mut bodies = vec![body()];
        let mut rng = fastrand::Rng::with_seed(11);
        bodies.extend((0..150).map(|_| generated(&mut rng, 4)));
        let filters = [
            "$.data[?@.n == 1.0].id",
            "$.data[?@.n != 'x'].id",
            "$.data[?@.id >= 'b'].id",
            "$.data[?@.id < @.n].id",
            "$.data[?@.o == null].id",
            "$.data[?@.tags[0] <= 'y'].id",
            "$.data[?@.tags[-1]].id",
            "$.data[?!@.o && @.n > 0 || @.id == 'c'].n",
            "$.data[?@ == 1]",
            "$.m[?@.v].v",
            "$[?@.k > 0]",
            "$.*[?@.status == 'open'].status",
        ];
        for body in &bodies {
            for path in PATHS.iter().chain(MORE_PATHS).chain(&filters) {
                let query = parse_json_path(path).unwrap();
                let expected: Vec<Value> = js_path_process(&query, body)
                    .unwrap()
                    .into_iter()
                    .map(|q| q.val.clone())
                    .collect();
                assert_eq!(
                    values(Plan::new(&query).select(body).unwrap()),
                    expected,
                    "{path} in {body}"
                );
            }
        }
    }

    fn string() -> Ty {
        Ty::String { format: None }
    }

    fn optional(t: Ty) -> Ty {
        Ty::Optional { inner: Box::new(t) }
    }

    fn customer_outputs() -> Vec<PreparedOutput> {
        vec![
            out("found", Ty::Bool, MappingKind::Exists, "$.data[0]", true),
            out(
                "customer_id",
                optional(string()),
                MappingKind::Path,
                "$.data[0].id",
                true,
            ),
            out(
                "name",
                optional(string()),
                MappingKind::Path,
                "$.data[0].name",
                true,
            ),
            out(
                "open_tickets",
                Ty::Int,
                MappingKind::Count,
                "$.data[0].tickets[?@.status == 'open']",
                false,
            ),
        ]
    }

    #[test]
    fn maps_the_known_caller() {
        let body = json!({"data": [{"id": "c-1042", "name": "Max",
            "tickets": [{"status": "open"}, {"status": "closed"}]}], "total": 1});
        let m = map_outputs(&customer_outputs(), At::from(&body)).unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"found": true, "customer_id": "c-1042", "name": "Max", "open_tickets": 1})
        );
    }

    #[test]
    fn optional_outputs_that_match_nothing_are_null() {
        let m = map_outputs(
            &customer_outputs(),
            At::from(&json!({"data": [], "total": 0})),
        )
        .unwrap();
        assert_eq!(
            Value::Object(m),
            json!({"found": false, "customer_id": null, "name": null, "open_tickets": 0})
        );
    }

    #[test]
    fn lists_collect_and_required_outputs_must_match() {
        let outs = vec![
            out(
                "status",
                string(),
                MappingKind::Path,
                "$.order.status",
                true,
            ),
            out(
                "items",
                Ty::List {
                    item: Box::new(string()),
                },
                MappingKind::Path,
                "$.order.items[*].name",
                false,
            ),
        ];
        let body = json!({"order": {"status": "shipped", "items": [{"name": "A"}, {"name": "B"}]}});
        let m = map_outputs(&outs, At::from(&body)).unwrap();
        assert_eq!(m["items"], json!(["A", "B"]));
        let err = map_outputs(&outs, At::from(&json!({"order": {}}))).unwrap_err();
        assert!(err.contains("status"), "{err}");
        let err = map_outputs(&outs, At::from(&json!({"order": {"status": 7}}))).unwrap_err();
        assert!(err.contains("expected a string"), "{err}");
    }

    #[test]
    fn defaults_fill_nulls() {
        let mut o = out("n", Ty::Int, MappingKind::Path, "$.n", true);
        o.default = Some(json!(0));
        assert_eq!(
            map_outputs(&[o], At::from(&json!({"n": null}))).unwrap()["n"],
            json!(0)
        );
    }
}
