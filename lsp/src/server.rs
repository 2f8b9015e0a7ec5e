//! The protocol: documents, the project they belong to, and the requests. Everything here speaks
//! LSP (UTF-16 positions, URIs); the features in `ide` speak byte offsets.

use std::collections::{BTreeMap, HashMap};
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::PathBuf;
use std::str::FromStr;

use lsp_server::{Connection, ErrorCode, Message, Notification, Request, RequestId, Response};
use lsp_types as lsp;
use lsp_types::notification::Notification as _;
use lsp_types::request::Request as _;
use mca_compiler::ast::Span;
use mca_compiler::{LineIndex, Severity, Source};
use serde_json::Value;

use crate::ide::{self, FileView};
use crate::incremental;
use crate::paths::{self, DocKey};
use crate::scan::{self, Analysis};
use crate::Error;

/// One document: open in the editor (its text from the client) or read from disk.
struct Doc {
    uri: String,
    text: String,
    lines: LineIndex,
    analysis: Option<Analysis>,
    open: bool,
    version: Option<i32>,
}

impl Doc {
    fn new(uri: String, text: String) -> Doc {
        Doc {
            uri,
            lines: LineIndex::new(&text),
            text,
            analysis: None,
            open: false,
            version: None,
        }
    }

    fn set_text(&mut self, text: String) {
        self.lines = LineIndex::new(&text);
        self.text = text;
        self.analysis = None;
    }

    fn analysis(&mut self) -> &Analysis {
        self.analysis
            .get_or_insert_with(|| scan::analyze(&self.text))
    }

    fn position(&self, offset: usize) -> lsp::Position {
        let (line, character) = self.lines.utf16_position(&self.text, offset);
        lsp::Position { line, character }
    }

    fn range(&self, span: Span) -> lsp::Range {
        lsp::Range {
            start: self.position(span.start),
            end: self.position(span.end),
        }
    }

    fn offset(&self, p: lsp::Position) -> usize {
        self.lines.offset_of_utf16(&self.text, p.line, p.character)
    }
}

/// The files compiled together: those of one workspace folder, or one loose document.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
enum Group {
    Folder(PathBuf),
    Alone(DocKey),
}

pub struct Server {
    sender: outbox::Sender,
    folders: Vec<PathBuf>,
    docs: BTreeMap<DocKey, Doc>,
    caches: HashMap<Group, incremental::Diagnostics>,
    published: HashMap<String, Vec<lsp::Diagnostic>>,
    dirty: bool,
    next_request: i32,
    /// `shutdown` was answered: only `exit` matters now.
    shutting_down: bool,
}

/// The sending half of the connection, wrapped so that a closed client is not a panic.
mod outbox {
    use lsp_server::Message;

    pub struct Sender(pub Box<dyn Fn(Message) -> bool + Send>);

    impl Sender {
        pub fn send(&self, m: Message) {
            let _ = (self.0)(m);
        }
    }
}

/// The server's capabilities.
pub fn capabilities() -> lsp::ServerCapabilities {
    lsp::ServerCapabilities {
        position_encoding: Some(lsp::PositionEncodingKind::UTF16),
        text_document_sync: Some(lsp::TextDocumentSyncCapability::Options(
            lsp::TextDocumentSyncOptions {
                open_close: Some(true),
                change: Some(lsp::TextDocumentSyncKind::INCREMENTAL),
                save: Some(lsp::TextDocumentSyncSaveOptions::SaveOptions(
                    lsp::SaveOptions {
                        include_text: Some(false),
                    },
                )),
                ..Default::default()
            },
        )),
        completion_provider: Some(lsp::CompletionOptions {
            trigger_characters: Some(vec![".".into(), "{".into(), ":".into()]),
            ..Default::default()
        }),
        hover_provider: Some(lsp::HoverProviderCapability::Simple(true)),
        definition_provider: Some(lsp::OneOf::Left(true)),
        references_provider: Some(lsp::OneOf::Left(true)),
        rename_provider: Some(lsp::OneOf::Right(lsp::RenameOptions {
            prepare_provider: Some(true),
            work_done_progress_options: Default::default(),
        })),
        document_symbol_provider: Some(lsp::OneOf::Left(true)),
        document_formatting_provider: Some(lsp::OneOf::Left(true)),
        semantic_tokens_provider: Some(
            lsp::SemanticTokensServerCapabilities::SemanticTokensOptions(
                lsp::SemanticTokensOptions {
                    legend: lsp::SemanticTokensLegend {
                        token_types: ide::TOKEN_TYPES
                            .iter()
                            .map(|t| lsp::SemanticTokenType::new(t))
                            .collect(),
                        token_modifiers: ide::TOKEN_MODIFIERS
                            .iter()
                            .map(|t| lsp::SemanticTokenModifier::new(t))
                            .collect(),
                    },
                    full: Some(lsp::SemanticTokensFullOptions::Bool(true)),
                    range: Some(false),
                    ..Default::default()
                },
            ),
        ),
        workspace: Some(lsp::WorkspaceServerCapabilities {
            workspace_folders: Some(lsp::WorkspaceFoldersServerCapabilities {
                supported: Some(true),
                change_notifications: Some(lsp::OneOf::Left(true)),
            }),
            file_operations: None,
        }),
        ..Default::default()
    }
}

/// Serves one connection: the handshake, then messages until `exit`.
pub fn serve(connection: Connection) -> Result<(), Error> {
    let (id, params) = connection.initialize_start()?;
    let params: lsp::InitializeParams = serde_json::from_value(params).unwrap_or_default();
    let result = lsp::InitializeResult {
        capabilities: capabilities(),
        server_info: Some(lsp::ServerInfo {
            name: "mca-lsp".into(),
            version: Some(env!("CARGO_PKG_VERSION").into()),
        }),
    };
    connection.initialize_finish(id, serde_json::to_value(result)?)?;

    let sender = connection.sender.clone();
    let mut server = Server {
        sender: outbox::Sender(Box::new(move |m| sender.send(m).is_ok())),
        folders: Vec::new(),
        docs: BTreeMap::new(),
        caches: HashMap::new(),
        published: HashMap::new(),
        dirty: true,
        next_request: 0,
        shutting_down: false,
    };
    let watch = params
        .capabilities
        .workspace
        .as_ref()
        .and_then(|w| w.did_change_watched_files.as_ref())
        .and_then(|w| w.dynamic_registration)
        .unwrap_or(false);
    #[allow(deprecated)]
    let folders: Vec<PathBuf> = match (&params.workspace_folders, &params.root_uri) {
        (Some(fs), _) if !fs.is_empty() => fs
            .iter()
            .filter_map(|f| paths::uri_to_path(f.uri.as_str()))
            .collect(),
        (_, Some(root)) => paths::uri_to_path(root.as_str()).into_iter().collect(),
        _ => Vec::new(),
    };
    for f in folders {
        server.add_folder(f);
    }
    if watch {
        server.register_watcher();
    }

    loop {
        let Ok(msg) = connection.receiver.recv() else {
            return Ok(());
        };
        if server.handle(msg)? {
            return Ok(());
        }
        // Take everything already queued before publishing, so a burst of edits is checked once.
        while let Ok(msg) = connection.receiver.try_recv() {
            if server.handle(msg)? {
                return Ok(());
            }
        }
        if server.dirty && !server.shutting_down {
            server.publish();
        }
    }
}

fn error_response(id: RequestId, code: ErrorCode, message: String) -> Response {
    Response::new_err(id, code as i32, message)
}

impl Server {
    /// Handles one message; `true` when the server must stop.
    fn handle(&mut self, msg: Message) -> Result<bool, Error> {
        match msg {
            Message::Request(req) => {
                if req.method == lsp::request::Shutdown::METHOD {
                    self.shutting_down = true;
                    self.sender.send(Response::new_ok(req.id, ()).into());
                    return Ok(false);
                }
                if self.shutting_down {
                    let r = error_response(
                        req.id,
                        ErrorCode::InvalidRequest,
                        "the server is shutting down".into(),
                    );
                    self.sender.send(r.into());
                    return Ok(false);
                }
                let id = req.id.clone();
                let method = req.method.clone();
                let response = match catch_unwind(AssertUnwindSafe(|| self.request(req))) {
                    Ok(r) => r,
                    Err(_) => error_response(
                        id,
                        ErrorCode::InternalError,
                        format!("internal error while answering {method}"),
                    ),
                };
                self.sender.send(response.into());
            }
            Message::Notification(n) => {
                if n.method == lsp::notification::Exit::METHOD {
                    return Ok(true);
                }
                if self.shutting_down {
                    return Ok(false);
                }
                // A bug in one notification must not take the server down.
                let _ = catch_unwind(AssertUnwindSafe(|| self.notification(n)));
            }
            Message::Response(_) => {}
        }
        Ok(false)
    }

    fn notify(&self, method: &str, params: impl serde::Serialize) {
        self.sender
            .send(Notification::new(method.to_string(), params).into());
    }

    // ---- documents -------------------------------------------------------------------------------

    fn add_folder(&mut self, folder: PathBuf) {
        let folder = paths::normalize(&folder);
        for path in paths::mca_files(&folder) {
            let key = DocKey::Path(path.clone());
            if self.docs.contains_key(&key) {
                continue;
            }
            if let Ok(text) = std::fs::read_to_string(&path) {
                self.docs
                    .insert(key, Doc::new(paths::path_to_uri(&path), text));
            }
        }
        if !self.folders.contains(&folder) {
            self.folders.push(folder);
        }
        self.dirty = true;
    }

    fn remove_folder(&mut self, folder: &std::path::Path) {
        let folder = paths::normalize(folder);
        self.folders.retain(|f| *f != folder);
        let gone: Vec<DocKey> = self
            .docs
            .iter()
            .filter(|(k, d)| !d.open && self.group_of(k) == Group::Alone((*k).clone()))
            .map(|(k, _)| k.clone())
            .collect();
        for k in gone {
            self.docs.remove(&k);
        }
        self.dirty = true;
    }

    fn register_watcher(&mut self) {
        let options = lsp::DidChangeWatchedFilesRegistrationOptions {
            watchers: vec![lsp::FileSystemWatcher {
                glob_pattern: lsp::GlobPattern::String("**/*.mca".into()),
                kind: None,
            }],
        };
        let params = lsp::RegistrationParams {
            registrations: vec![lsp::Registration {
                id: "mca-watch".into(),
                method: lsp::notification::DidChangeWatchedFiles::METHOD.into(),
                register_options: serde_json::to_value(options).ok(),
            }],
        };
        self.next_request += 1;
        let req = Request::new(
            RequestId::from(format!("mca-{}", self.next_request)),
            lsp::request::RegisterCapability::METHOD.into(),
            params,
        );
        self.sender.send(req.into());
    }

    fn group_of(&self, key: &DocKey) -> Group {
        if let DocKey::Path(p) = key {
            if let Some(f) = self
                .folders
                .iter()
                .filter(|f| p.starts_with(f))
                .max_by_key(|f| f.components().count())
            {
                return Group::Folder(f.clone());
            }
        }
        Group::Alone(key.clone())
    }

    fn notification(&mut self, n: Notification) {
        use lsp::notification::*;
        match n.method.as_str() {
            DidOpenTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<lsp::DidOpenTextDocumentParams>(n.params)
                else {
                    return;
                };
                let uri = p.text_document.uri.as_str().to_string();
                let key = paths::key_of(&uri);
                let doc = self
                    .docs
                    .entry(key)
                    .or_insert_with(|| Doc::new(uri.clone(), String::new()));
                // Publish under the client's spelling of the URI from now on.
                if doc.uri != uri {
                    let old = std::mem::replace(&mut doc.uri, uri);
                    self.published.remove(&old);
                    self.notify(
                        PublishDiagnostics::METHOD,
                        lsp::PublishDiagnosticsParams {
                            uri: parse_uri(&old),
                            diagnostics: Vec::new(),
                            version: None,
                        },
                    );
                }
                let Some(doc) = self
                    .docs
                    .get_mut(&paths::key_of(p.text_document.uri.as_str()))
                else {
                    return;
                };
                doc.open = true;
                doc.version = Some(p.text_document.version);
                doc.set_text(p.text_document.text);
                self.dirty = true;
            }
            DidChangeTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<lsp::DidChangeTextDocumentParams>(n.params)
                else {
                    return;
                };
                let key = paths::key_of(p.text_document.uri.as_str());
                let Some(doc) = self.docs.get_mut(&key) else {
                    return;
                };
                for change in p.content_changes {
                    match change.range {
                        Some(range) => {
                            let a = doc.offset(range.start);
                            let b = doc.offset(range.end);
                            let (a, b) = (a.min(b), a.max(b));
                            let mut text = std::mem::take(&mut doc.text);
                            if text.is_char_boundary(a) && text.is_char_boundary(b) {
                                text.replace_range(a..b, &change.text);
                            }
                            doc.set_text(text);
                        }
                        None => doc.set_text(change.text),
                    }
                }
                doc.version = Some(p.text_document.version);
                self.dirty = true;
            }
            DidSaveTextDocument::METHOD => {
                // The text is already known; saving may matter to files read from disk.
                self.dirty = true;
            }
            DidCloseTextDocument::METHOD => {
                let Ok(p) = serde_json::from_value::<lsp::DidCloseTextDocumentParams>(n.params)
                else {
                    return;
                };
                let key = paths::key_of(p.text_document.uri.as_str());
                self.close(&key);
            }
            DidChangeWatchedFiles::METHOD => {
                let Ok(p) = serde_json::from_value::<lsp::DidChangeWatchedFilesParams>(n.params)
                else {
                    return;
                };
                for change in p.changes {
                    let uri = change.uri.as_str().to_string();
                    let key = paths::key_of(&uri);
                    let DocKey::Path(path) = &key else {
                        continue;
                    };
                    if self.docs.get(&key).is_some_and(|d| d.open) {
                        continue;
                    }
                    if change.typ == lsp::FileChangeType::DELETED {
                        self.docs.remove(&key);
                    } else if matches!(self.group_of(&key), Group::Folder(_)) {
                        if let Ok(text) = std::fs::read_to_string(path) {
                            self.docs
                                .entry(key)
                                .or_insert_with(|| Doc::new(uri, String::new()))
                                .set_text(text);
                        }
                    }
                }
                self.dirty = true;
            }
            DidChangeWorkspaceFolders::METHOD => {
                let Ok(p) =
                    serde_json::from_value::<lsp::DidChangeWorkspaceFoldersParams>(n.params)
                else {
                    return;
                };
                for f in p.event.removed {
                    if let Some(path) = paths::uri_to_path(f.uri.as_str()) {
                        self.remove_folder(&path);
                    }
                }
                for f in p.event.added {
                    if let Some(path) = paths::uri_to_path(f.uri.as_str()) {
                        self.add_folder(path);
                    }
                }
            }
            _ => {}
        }
    }

    /// A closed document goes back to its disk state (when it belongs to a folder).
    fn close(&mut self, key: &DocKey) {
        let on_disk = match key {
            DocKey::Path(p) if matches!(self.group_of(key), Group::Folder(_)) => {
                std::fs::read_to_string(p).ok()
            }
            _ => None,
        };
        match on_disk {
            Some(text) => {
                if let Some(doc) = self.docs.get_mut(key) {
                    doc.open = false;
                    doc.version = None;
                    doc.set_text(text);
                }
            }
            None => {
                self.docs.remove(key);
            }
        }
        self.dirty = true;
    }

    // ---- diagnostics ---------------------------------------------------------------------------

    /// Compiles every group and sends the diagnostics that changed.
    fn publish(&mut self) {
        self.dirty = false;
        let mut groups: BTreeMap<Group, Vec<DocKey>> = BTreeMap::new();
        for key in self.docs.keys() {
            groups
                .entry(self.group_of(key))
                .or_default()
                .push(key.clone());
        }
        let mut now: HashMap<String, (Vec<lsp::Diagnostic>, Option<i32>)> = HashMap::new();
        let mut used = HashMap::new();
        for (group, keys) in groups {
            let sources: Vec<Source> = keys
                .iter()
                .filter_map(|k| self.docs.get(k))
                .map(|d| Source::new(d.uri.clone(), d.text.clone()))
                .collect();
            let mut cache = self.caches.remove(&group).unwrap_or_default();
            let diagnostics = cache.compute(&sources);
            used.insert(group, cache);
            let docs: Vec<&Doc> = keys.iter().filter_map(|k| self.docs.get(k)).collect();
            for d in &docs {
                now.insert(d.uri.clone(), (Vec::new(), d.version));
            }
            for d in &diagnostics {
                let Some(doc) = docs.get(d.primary.file) else {
                    continue;
                };
                if let Some((list, _)) = now.get_mut(&doc.uri) {
                    list.push(convert_diagnostic(d, &docs));
                }
            }
        }
        self.caches = used;
        // Files gone since the last time get an empty list.
        let gone: Vec<String> = self
            .published
            .keys()
            .filter(|u| !now.contains_key(*u))
            .cloned()
            .collect();
        for uri in gone {
            self.published.remove(&uri);
            self.notify(
                lsp::notification::PublishDiagnostics::METHOD,
                lsp::PublishDiagnosticsParams {
                    uri: parse_uri(&uri),
                    diagnostics: Vec::new(),
                    version: None,
                },
            );
        }
        let mut uris: Vec<&String> = now.keys().collect();
        uris.sort();
        for uri in uris {
            let (list, version) = &now[uri];
            let before = self.published.get(uri);
            // Unchanged lists are not sent again; a file never published with nothing in it
            // needs no message either.
            if before == Some(list) || (before.is_none() && list.is_empty()) {
                continue;
            }
            self.published.insert(uri.clone(), list.clone());
            self.notify(
                lsp::notification::PublishDiagnostics::METHOD,
                lsp::PublishDiagnosticsParams {
                    uri: parse_uri(uri),
                    diagnostics: list.clone(),
                    version: *version,
                },
            );
        }
    }

    // ---- requests ------------------------------------------------------------------------------

    fn request(&mut self, req: Request) -> Response {
        let id = req.id.clone();
        match self.dispatch(req) {
            Ok(v) => Response::new_ok(id, v),
            Err((code, message)) => error_response(id, code, message),
        }
    }

    fn dispatch(&mut self, req: Request) -> Result<Value, (ErrorCode, String)> {
        use lsp::request::*;
        fn params<P: serde::de::DeserializeOwned>(v: Value) -> Result<P, (ErrorCode, String)> {
            serde_json::from_value(v).map_err(|e| (ErrorCode::InvalidParams, e.to_string()))
        }
        fn json(v: impl serde::Serialize) -> Result<Value, (ErrorCode, String)> {
            serde_json::to_value(v).map_err(|e| (ErrorCode::InternalError, e.to_string()))
        }
        match req.method.as_str() {
            Completion::METHOD => {
                let p: lsp::CompletionParams = params(req.params)?;
                let pos = p.text_document_position;
                let (files, i, offset) = self.view(pos.text_document.uri.as_str(), pos.position)?;
                let items = ide::completion(&files.views(), i, offset);
                let doc = files.doc(i);
                let items: Vec<lsp::CompletionItem> =
                    items.into_iter().map(|c| completion_item(c, doc)).collect();
                json(lsp::CompletionResponse::Array(items))
            }
            HoverRequest::METHOD => {
                let p: lsp::HoverParams = params(req.params)?;
                let pos = p.text_document_position_params;
                let (files, i, offset) = self.view(pos.text_document.uri.as_str(), pos.position)?;
                let hover = ide::hover(&files.views(), i, offset).map(|(text, span)| lsp::Hover {
                    contents: lsp::HoverContents::Markup(lsp::MarkupContent {
                        kind: lsp::MarkupKind::Markdown,
                        value: text,
                    }),
                    range: Some(files.doc(i).range(span)),
                });
                json(hover)
            }
            GotoDefinition::METHOD => {
                let p: lsp::GotoDefinitionParams = params(req.params)?;
                let pos = p.text_document_position_params;
                let (files, i, offset) = self.view(pos.text_document.uri.as_str(), pos.position)?;
                let places = ide::definition(&files.views(), i, offset);
                let locations = files.locations(&places);
                json(match locations.len() {
                    0 => None,
                    1 => Some(lsp::GotoDefinitionResponse::Scalar(locations[0].clone())),
                    _ => Some(lsp::GotoDefinitionResponse::Array(locations)),
                })
            }
            References::METHOD => {
                let p: lsp::ReferenceParams = params(req.params)?;
                let pos = p.text_document_position;
                let (files, i, offset) = self.view(pos.text_document.uri.as_str(), pos.position)?;
                let places =
                    ide::references(&files.views(), i, offset, p.context.include_declaration);
                json(files.locations(&places))
            }
            PrepareRenameRequest::METHOD => {
                let p: lsp::TextDocumentPositionParams = params(req.params)?;
                let (files, i, offset) = self.view(p.text_document.uri.as_str(), p.position)?;
                match ide::prepare_rename(&files.views(), i, offset) {
                    Ok(span) => json(lsp::PrepareRenameResponse::Range(files.doc(i).range(span))),
                    Err(message) => Err((ErrorCode::RequestFailed, message)),
                }
            }
            Rename::METHOD => {
                let p: lsp::RenameParams = params(req.params)?;
                let pos = p.text_document_position;
                let (files, i, offset) = self.view(pos.text_document.uri.as_str(), pos.position)?;
                let edits = ide::rename(&files.views(), i, offset, &p.new_name)
                    .map_err(|m| (ErrorCode::RequestFailed, m))?;
                // `Uri` caches parts of itself inside; it is never mutated as a key here.
                #[allow(clippy::mutable_key_type)]
                let mut changes: HashMap<lsp::Uri, Vec<lsp::TextEdit>> = HashMap::new();
                for (f, span, new_text) in edits {
                    let doc = files.doc(f);
                    changes
                        .entry(parse_uri(&doc.uri))
                        .or_default()
                        .push(lsp::TextEdit {
                            range: doc.range(span),
                            new_text,
                        });
                }
                json(lsp::WorkspaceEdit {
                    changes: Some(changes),
                    ..Default::default()
                })
            }
            DocumentSymbolRequest::METHOD => {
                let p: lsp::DocumentSymbolParams = params(req.params)?;
                let (files, i, _) =
                    self.view(p.text_document.uri.as_str(), lsp::Position::default())?;
                let doc = files.doc(i);
                let symbols = ide::symbols(&files.views()[i]);
                json(lsp::DocumentSymbolResponse::Nested(
                    symbols
                        .into_iter()
                        .map(|s| document_symbol(s, doc))
                        .collect(),
                ))
            }
            SemanticTokensFullRequest::METHOD => {
                let p: lsp::SemanticTokensParams = params(req.params)?;
                let (files, i, _) =
                    self.view(p.text_document.uri.as_str(), lsp::Position::default())?;
                let doc = files.doc(i);
                let tokens = ide::semantic_tokens(&files.views()[i]);
                json(lsp::SemanticTokensResult::Tokens(lsp::SemanticTokens {
                    result_id: None,
                    data: encode_tokens(doc, &tokens),
                }))
            }
            Formatting::METHOD => {
                let p: lsp::DocumentFormattingParams = params(req.params)?;
                let key = self.known(p.text_document.uri.as_str())?;
                let Some(doc) = self.docs.get(&key) else {
                    return Err(unknown(p.text_document.uri.as_str()));
                };
                let edits = match mca_compiler::format::format(&doc.text) {
                    Some(formatted) if formatted != doc.text => Some(vec![lsp::TextEdit {
                        range: doc.range(Span::new(0, doc.text.len())),
                        new_text: formatted,
                    }]),
                    Some(_) => Some(Vec::new()),
                    // Syntax errors: nothing to do (the diagnostics say why).
                    None => None,
                };
                json(edits)
            }
            _ => Err((
                ErrorCode::MethodNotFound,
                format!("unsupported request {}", req.method),
            )),
        }
    }

    fn known(&self, uri: &str) -> Result<DocKey, (ErrorCode, String)> {
        let key = paths::key_of(uri);
        if self.docs.contains_key(&key) {
            Ok(key)
        } else {
            Err(unknown(uri))
        }
    }

    /// The files of the document's group (analysed), the document's index among them, and the
    /// byte offset of a position in it.
    fn view(
        &mut self,
        uri: &str,
        position: lsp::Position,
    ) -> Result<(Files<'_>, usize, usize), (ErrorCode, String)> {
        let key = self.known(uri)?;
        let group = self.group_of(&key);
        let keys: Vec<DocKey> = self
            .docs
            .keys()
            .filter(|k| self.group_of(k) == group)
            .cloned()
            .collect();
        for k in &keys {
            if let Some(d) = self.docs.get_mut(k) {
                d.analysis();
            }
        }
        let index = keys.iter().position(|k| *k == key).unwrap_or(0);
        let docs: Vec<&Doc> = keys.iter().filter_map(|k| self.docs.get(k)).collect();
        let offset = docs.get(index).map_or(0, |d| d.offset(position));
        Ok((Files { docs }, index, offset))
    }
}

fn unknown(uri: &str) -> (ErrorCode, String) {
    (
        ErrorCode::InvalidParams,
        format!("unknown document {uri}: open it first"),
    )
}

fn parse_uri(s: &str) -> lsp::Uri {
    lsp::Uri::from_str(s)
        .or_else(|_| lsp::Uri::from_str("file:///"))
        .unwrap_or_else(|_| unreachable_uri())
}

#[allow(clippy::unwrap_used)]
fn unreachable_uri() -> lsp::Uri {
    // `file:///` always parses.
    lsp::Uri::from_str("file:///").unwrap()
}

/// The documents of one group, with their analyses.
struct Files<'a> {
    docs: Vec<&'a Doc>,
}

impl Files<'_> {
    fn views(&self) -> Vec<FileView<'_>> {
        self.docs
            .iter()
            .filter_map(|d| {
                d.analysis.as_ref().map(|a| FileView {
                    name: d.uri.rsplit('/').next().unwrap_or(&d.uri),
                    text: &d.text,
                    analysis: a,
                })
            })
            .collect()
    }

    fn doc(&self, i: usize) -> &Doc {
        self.docs[i.min(self.docs.len().saturating_sub(1))]
    }

    fn locations(&self, places: &[ide::Place]) -> Vec<lsp::Location> {
        places
            .iter()
            .map(|(f, span)| {
                let doc = self.doc(*f);
                lsp::Location {
                    uri: parse_uri(&doc.uri),
                    range: doc.range(*span),
                }
            })
            .collect()
    }
}

fn convert_diagnostic(d: &mca_compiler::Diagnostic, docs: &[&Doc]) -> lsp::Diagnostic {
    let Some(doc) = docs.get(d.primary.file) else {
        return lsp::Diagnostic::default();
    };
    let mut message = d.message.clone();
    if let Some(hint) = &d.hint {
        message.push_str("\nhint: ");
        message.push_str(hint);
    }
    let related: Vec<lsp::DiagnosticRelatedInformation> = d
        .secondary
        .iter()
        .filter_map(|l| {
            let other = docs.get(l.file)?;
            Some(lsp::DiagnosticRelatedInformation {
                location: lsp::Location {
                    uri: parse_uri(&other.uri),
                    range: other.range(l.span),
                },
                message: l.message.clone(),
            })
        })
        .collect();
    lsp::Diagnostic {
        range: doc.range(d.primary.span),
        severity: Some(match d.severity {
            Severity::Error => lsp::DiagnosticSeverity::ERROR,
            Severity::Warning => lsp::DiagnosticSeverity::WARNING,
        }),
        code: Some(lsp::NumberOrString::String(d.code.as_str().to_string())),
        code_description: None,
        source: Some("mca".into()),
        message,
        related_information: (!related.is_empty()).then_some(related),
        tags: (d.code == mca_compiler::Code::UnusedInput)
            .then(|| vec![lsp::DiagnosticTag::UNNECESSARY]),
        data: None,
    }
}

fn completion_item(c: ide::Completion, doc: &Doc) -> lsp::CompletionItem {
    use ide::ItemKind as K;
    let kind = match c.kind {
        K::Keyword => lsp::CompletionItemKind::KEYWORD,
        K::Namespace => lsp::CompletionItemKind::MODULE,
        K::Input => lsp::CompletionItemKind::VARIABLE,
        K::Output => lsp::CompletionItemKind::FIELD,
        K::Variable => lsp::CompletionItemKind::CONSTANT,
        K::Type => lsp::CompletionItemKind::TYPE_PARAMETER,
        K::Value => lsp::CompletionItemKind::ENUM_MEMBER,
        K::Method => lsp::CompletionItemKind::METHOD,
        K::Function => lsp::CompletionItemKind::FUNCTION,
        K::Action => lsp::CompletionItemKind::FUNCTION,
        K::Step => lsp::CompletionItemKind::METHOD,
    };
    lsp::CompletionItem {
        label: c.label.clone(),
        kind: Some(kind),
        detail: c.detail,
        documentation: c.doc.map(|d| {
            lsp::Documentation::MarkupContent(lsp::MarkupContent {
                kind: lsp::MarkupKind::Markdown,
                value: d,
            })
        }),
        text_edit: Some(lsp::CompletionTextEdit::Edit(lsp::TextEdit {
            range: doc.range(c.replace),
            new_text: c.label,
        })),
        ..Default::default()
    }
}

fn document_symbol(s: ide::Symbol, doc: &Doc) -> lsp::DocumentSymbol {
    use ide::SymbolKind as K;
    let kind = match s.kind {
        K::Action => lsp::SymbolKind::FUNCTION,
        K::Input => lsp::SymbolKind::VARIABLE,
        K::Output => lsp::SymbolKind::FIELD,
        K::Block => lsp::SymbolKind::STRUCT,
        K::Request => lsp::SymbolKind::METHOD,
        K::Step => lsp::SymbolKind::OBJECT,
        K::Test => lsp::SymbolKind::EVENT,
        K::Text => lsp::SymbolKind::STRING,
        K::Other => lsp::SymbolKind::KEY,
    };
    let range = doc.range(s.span);
    let mut selection = doc.range(s.selection);
    // The selection must lie inside the range.
    if selection.start < range.start || selection.end > range.end {
        selection = range;
    }
    #[allow(deprecated)]
    lsp::DocumentSymbol {
        name: if s.name.is_empty() {
            "?".into()
        } else {
            s.name
        },
        detail: s.detail,
        kind,
        tags: None,
        deprecated: None,
        range,
        selection_range: selection,
        children: Some(
            s.children
                .into_iter()
                .map(|c| document_symbol(c, doc))
                .collect(),
        ),
    }
}

/// Semantic tokens in the protocol's relative encoding, one token per line of a multi-line mark.
fn encode_tokens(doc: &Doc, tokens: &[(Span, u32, u32)]) -> Vec<lsp::SemanticToken> {
    let mut out = Vec::with_capacity(tokens.len());
    let (mut prev_line, mut prev_start) = (0u32, 0u32);
    for &(span, ty, mods) in tokens {
        let mut start = span.start;
        while start < span.end {
            let line_end = doc.text[start..span.end]
                .find('\n')
                .map_or(span.end, |i| start + i);
            let piece = Span::new(start, line_end);
            let s = doc.position(piece.start);
            let length: u32 = doc.text[piece.start..piece.end]
                .trim_end_matches('\r')
                .chars()
                .map(|c| c.len_utf16() as u32)
                .sum();
            if length > 0 {
                let delta_line = s.line - prev_line;
                let delta_start = if delta_line == 0 {
                    s.character - prev_start
                } else {
                    s.character
                };
                out.push(lsp::SemanticToken {
                    delta_line,
                    delta_start,
                    length,
                    token_type: ty,
                    token_modifiers_bitset: mods,
                });
                prev_line = s.line;
                prev_start = s.character;
            }
            start = line_end + 1;
        }
    }
    out
}
