//! Short documentation shown by hover and completion (Markdown), in the words of
//! docs/language.md.

use crate::scan::Frame;

/// Syntax line and explanation of a keyword, by the block it stands in (`scope` differs in
/// `cache` and `oauth2`; `input` in an action and in a test; ...).
pub fn keyword(word: &str, frame: Frame) -> Option<&'static str> {
    Some(match (word, frame) {
        ("action", _) => "```mca\naction NAME { ... }\n```\nOne mid-call action: a tool the voice assistant can call during a phone call. Its name is the tool name platforms call; names are unique across the project.",
        ("description", _) => "```mca\ndescription \"TEXT\"\n```\nWhat the action does, for the language model that decides when to call it. Missing description: `W0603`.",
        ("input", Frame::Test) => "```mca\ninput { NAME: VALUE, ... }\n```\nThe inputs of this test, as the assistant would send them. Every required input must be given.",
        ("input", _) => "```mca\ninput NAME: TYPE [= DEFAULT] [\"DESCRIPTION\"]\n```\nA value the assistant must supply (or may, with a default or an optional type `T?`). Used as `input.NAME`.",
        ("request", Frame::Test) => "```mca\nexpect request [STEP] METHOD \"PATH?QUERY\" [{ header \"NAME\" = \"VALUE\"  body JSON }]\n```\nThe first request the action sent (or step `STEP` sent) had this method, path and query string, exactly as sent (encoded).",
        ("request", Frame::Step) => "```mca\nrequest METHOD \"URL\" { ... }\n```\nThe one HTTP request of this step, written as an action's request. It may read `input.X`, `env.X`, `call.X` and other steps' values (`step.NAME.VALUE`); a deferred step may also read `output.X`.",
        ("request", _) => "```mca\nrequest METHOD \"URL\" { ... }\n```\nThe one HTTP request of the action. The URL is a template: `{input.x}` in the path is encoded, never spliced; the scheme, host and port may only come from `env.` values.",
        ("query", Frame::Request) => "```mca\nquery \"NAME\" = VALUE\n```\nA query parameter (encoded). The value is a template, a reference or a literal.",
        ("header", Frame::ExpectRequest) => "```mca\nheader \"NAME\" = \"VALUE\"\n```\nThe request carried this header value.",
        ("header", _) => "```mca\nheader \"NAME\" = VALUE\n```\nA request header. Secrets may be used in headers and `auth` only.",
        ("headers", _) => "```mca\nupstream STATUS headers { \"NAME\": \"VALUE\" } [JSON]\n```\nResponse headers of the stubbed answer.",
        ("auth", _) => "```mca\nauth bearer VALUE\nauth basic USER PASSWORD\nauth header \"NAME\" VALUE\nauth query \"NAME\" VALUE\nauth oauth2 { token_url URL client_id ID client_secret SECRET [scope SCOPE] }\n```\nHow the request authenticates. Secrets belong here (or in `header`).",
        ("bearer", _) => "```mca\nauth bearer VALUE\n```\nSends `Authorization: Bearer VALUE`.",
        ("basic", _) => "```mca\nauth basic USER PASSWORD\n```\nHTTP basic authentication.",
        ("oauth2", _) => "```mca\nauth oauth2 { token_url URL client_id ID client_secret SECRET [scope SCOPE] }\n```\nOAuth2 client credentials: `mca` fetches an access token from `token_url`, caches it, and sends `Authorization: Bearer <token>`.",
        ("token_url", _) => "```mca\ntoken_url \"URL\"\n```\nWhere the OAuth2 access token is requested.",
        ("client_id", _) => "```mca\nclient_id VALUE\n```\nThe OAuth2 client id.",
        ("client_secret", _) => "```mca\nclient_secret secret.NAME\n```\nThe OAuth2 client secret.",
        ("scope", Frame::OAuth2) => "```mca\nscope \"SCOPE\"\n```\nThe OAuth2 scope asked for (optional).",
        ("scope", _) => "```mca\nscope call | global\n```\n`call` (the default): entries belong to one phone call. `global`: entries are shared by all calls; use it only for answers that are the same for every caller.",
        ("body", Frame::ExpectRequest) => "```mca\nbody JSON\n```\nThe request carried this JSON body.",
        ("body", _) => "```mca\nbody JSON\n```\nA JSON request body; strings are templates and values may be references.",
        ("form", _) => "```mca\nform { \"NAME\": VALUE, ... }\n```\nA form-encoded request body.",
        ("idempotency_key", _) => "```mca\nidempotency_key \"{call.id}-...\"\n```\nSent as `Idempotency-Key`; lets a `POST` or `PATCH` be retried safely.",
        ("timeout", Frame::Action) => "```mca\ntimeout DURATION\n```\nThe deadline of an action with live steps: whatever the steps do, the caller has an answer by then (default `5s`; over `5s` a warning, over `10s` an error). Each step's own `timeout` (in its `request`) bounds that step within it.",
        ("timeout", Frame::Test) => "```mca\nupstream timeout\n```\nThe API never answers.",
        ("timeout", _) => "```mca\ntimeout DURATION\n```\nThe whole time the caller waits for the action, retries included (default `5s`). Over `5s` is a warning (`W0502`), over `10s` an error (`E0501`).",
        ("per_try", _) => "```mca\nper_try DURATION\n```\nBounds a single attempt (default: none). Longer than `timeout` is an error (`E0505`).",
        ("retry", _) => "```mca\nretry N [backoff DURATION]\n```\nUp to `N` more attempts after the first (0 to 10, default 0), only for requests safe to send twice: idempotent methods, `read_only`, or an `idempotency_key`. Retried: connection errors, `per_try` overruns, `429`, `502`, `503`, `504`.",
        ("backoff", _) => "```mca\nretry N backoff DURATION\n```\nBase pause between attempts (default `100ms`): a random time between half and all of `D × 2^(n-1)`, at most 2 s; `Retry-After` wins.",
        ("max_response", _) => "```mca\nmax_response SIZE\n```\nCaps the size of a successful response body (default `2MB`). Over `2MB` is a warning, over `5MB` an error.",
        ("read_only", _) => "```mca\nread_only\n```\nThis `POST` or `PATCH` only reads (a search endpoint, a GraphQL query): it may be retried without an idempotency key, and cached.",
        ("output", Frame::Step) => "```mca\noutput {\n  NAME: TYPE = $.json.path [?? DEFAULT]\n}\n```\nThe step's values, mapped from its JSON answer by JSONPath. Read elsewhere in the action as `step.NAME.VALUE`.",
        ("output", _) => "```mca\noutput {\n  NAME: TYPE = $.json.path [?? DEFAULT]\n  NAME: TYPE = exists($.path) | count($.path) | first($.path)\n}\n```\nTyped fields taken from the JSON answer with RFC 9535 JSONPaths. Used as `output.NAME` in `say`.",
        ("say", Frame::Test) => "```mca\nexpect say \"TEXT\"\n```\nThe answer's spoken text is exactly this.",
        ("say", _) => "```mca\nsay \"TEMPLATE\"\n```\nWhat the assistant may say. A template with `input.X`, `output.X`, `call.X` and `env.X` (never secrets).",
        ("on", Frame::Step) => "```mca\non STATUS[, STATUS...] { NAME = VALUE ... }\n```\nThe step's values for specific HTTP statuses (values it does not assign are null). Only the action speaks: no `say` in a step.",
        ("fallback", Frame::Step) => "```mca\nfallback { NAME = VALUE ... }\n```\nThe step's values when it fails; the action then carries on. Without a fallback, a failed step fails the action.",
        ("on", _) => "```mca\non STATUS[, STATUS...] { NAME = VALUE ... say \"...\" }\n```\nAn answer for specific HTTP statuses (`404`, `4xx`): sets outputs to literal values and what to say, instead of the fallback.",
        ("fallback", Frame::Test) => "```mca\nexpect fallback [{ OUTPUT: VALUE, ... }]\n```\nThe answer is the fallback (or comes from an `on` block); optionally with these outputs.",
        ("fallback", _) => "```mca\nfallback { NAME = VALUE ... say \"...\" }\n```\nThe answer when the call fails (timeout, error status, bad JSON, ...): literal outputs and what to say. Every required output must be set.",
        ("cache", _) => "```mca\ncache {\n  ttl DURATION\n  key VALUE[, VALUE...]\n  scope call | global\n  stale_if_error DURATION\n}\n```\nCaches successful answers of an idempotent request.",
        ("ttl", _) => "```mca\nttl DURATION\n```\nHow long an answer stays fresh (required).",
        ("key", _) => "```mca\nkey input.NAME[, ...]\n```\nThe inputs the cached answer depends on (default: all inputs).",
        ("stale_if_error", _) => "```mca\nstale_if_error DURATION\n```\nWhen the API fails, an answer up to this long past its `ttl` is used before the fallback.",
        ("invalidates", _) => "```mca\ninvalidates ACTION[, ACTION...]\n```\nA successful run of this action drops the cached answers of these actions (in any file of the project).",
        ("messages", _) => "```mca\nmessages {\n  start \"TEXT\"\n  delayed DURATION \"TEXT\"\n  failed \"TEXT\"\n}\n```\nWhat the voice platform says while the caller waits: fixed sentences (no references), spoken by the platform itself.",
        ("start", _) => "```mca\nstart \"TEXT\"\n```\nSaid when the action starts.",
        ("delayed", _) => "```mca\ndelayed DURATION \"TEXT\"\n```\nSaid when the action has not answered after DURATION (shorter than the request's `timeout`).",
        ("failed", _) => "```mca\nfailed \"TEXT\"\n```\nSaid when the platform cannot reach the action at all.",
        ("test", _) => "```mca\ntest \"NAME\" { input {...} upstream ... expect ... }\n```\nAn offline test run by `mca test`: the request is answered by the `upstream` lines, nothing reaches the network.",
        ("upstream", _) => "```mca\nupstream [STEP] STATUS [headers { ... }] [JSON]\nupstream [STEP] timeout\nupstream [STEP] reset\n```\nHow the stubbed API answers (one line per attempt, in order). In an action with steps, `STEP` says which step's request the line answers.",
        ("step", _) => "```mca\nstep NAME [deferred [within DURATION]] [when CONDITION] {\n  request METHOD \"URL\" { ... }\n  output { NAME: TYPE = MAPPING ... }\n  on STATUS { NAME = VALUE ... }\n  fallback { NAME = VALUE ... }\n}\n```\nA named request inside the action. A live step runs before the answer; its values are read as `step.NAME.VALUE`. Steps that read each other's values run in order, the others at the same time.",
        ("deferred", _) => "```mca\nstep NAME deferred [within DURATION] { request ... }\n```\nA write recorded durably before the answer and delivered after it, retried until the API accepts it or its time is up. It has no values; it may read `output.X`.",
        ("within", _) => "```mca\nstep NAME deferred within DURATION { ... }\n```\nHow long delivery of a deferred step is tried.",
        ("when", _) => "```mca\nstep NAME when CONDITION { ... }\nNAME: TYPE = EXPRESSION when CONDITION\nsay \"TEXT\" when CONDITION\nfollow_up when CONDITION\n```\nA condition: skips a step (its values are then null), nulls an output, chooses a `say`, or a follow-up. Conditions use `==`, `!=`, `<`, `<=`, `>`, `>=`, `and`, `or`, `not` and parentheses over references and literals.",
        ("and", _) => "```mca\nCONDITION and CONDITION\n```\nBoth conditions hold (binds tighter than `or`).",
        ("or", _) => "```mca\nCONDITION or CONDITION\n```\nAt least one of the conditions holds.",
        ("not", _) => "```mca\nnot CONDITION\n```\nThe condition does not hold.",
        ("follow_up", _) => "```mca\nfollow_up [when CONDITION]\n```\nThe action runs when the call has ended (not a tool of the assistant), if the condition holds.",
        ("reset", _) => "```mca\nupstream reset\n```\nThe API resets the connection (reason `connect`).",
        ("env", Frame::Test) => "```mca\nenv NAME = \"VALUE\"\n```\nThe value of `env.NAME` in this test.",
        ("secret", Frame::Test) => "```mca\nsecret NAME = \"VALUE\"\n```\nThe value of `secret.NAME` in this test.",
        ("call", Frame::Test) => "```mca\ncall { id: \"...\", from: \"...\" }\n```\n`call.id` and `call.from` in this test.",
        ("expect", _) => "```mca\nexpect { OUTPUT: VALUE, ... }\nexpect request METHOD \"PATH?QUERY\" [{ ... }]\nexpect fallback [{ ... }]\nexpect error REASON\nexpect say \"TEXT\"\n```\nWhat the test checks.",
        ("error", _) => "```mca\nexpect error REASON\n```\nThe action failed for this reason (`invalid_input`, `timeout`, `upstream_status`, ...).",
        _ => return None,
    })
}

/// A namespace of references.
pub fn namespace(ns: &str) -> Option<&'static str> {
    Some(match ns {
        "input" => "`input.NAME`: an input of this action, as the assistant sent it (checked against its type).",
        "output" => "`output.NAME`: an output of this action, mapped from the response. Only in `say` texts.",
        "env" => "`env.NAME`: a deployment setting, read from the environment of `mca serve` (`MCA_ENV_NAME`). The only values allowed in a URL's scheme, host and port.",
        "secret" => "`secret.NAME`: a secret, read from the environment of `mca serve`. Only in `auth` and `header`: never logged, cached or spoken.",
        "call" => "`call.id`, `call.from`: the phone call the action runs in.",
        "step" => "`step.NAME.VALUE`: a value of the live step `NAME` of this action (a field of its `output { }`). Null when it is optional, or the step has a `when` that did not hold.",
        _ => return None,
    })
}

pub fn call_member(name: &str) -> Option<&'static str> {
    Some(match name {
        "id" => "`call.id`: the platform's id of the current phone call.",
        "from" => "`call.from`: the caller's phone number, as the platform reports it.",
        _ => return None,
    })
}

pub fn type_name(name: &str) -> Option<&'static str> {
    Some(match name {
        "string" => "`string`, `string(FORMAT)`: text; a format (`email`, `phone`, `date`, `datetime`, `uuid`, `url`) is checked on inputs, defaults and test values.",
        "int" => "`int`: a whole number.",
        "number" => "`number`: any JSON number.",
        "bool" => "`bool`: `true` or `false`.",
        "enum" => "`enum(\"a\", \"b\", ...)`: one of these strings.",
        "list" => "`list<T>`: a JSON array of `T`.",
        _ => return None,
    })
}

pub const TYPES: &[&str] = &["string", "int", "number", "bool", "enum", "list"];

pub fn mapping_fn(name: &str) -> Option<&'static str> {
    Some(match name {
        "exists" => "```mca\nNAME: bool = exists($.path)\n```\n`true` when the path selects at least one node.",
        "count" => "```mca\nNAME: int = count($.path)\n```\nThe number of nodes the path selects.",
        "first" => "```mca\nNAME: T = first($.path)\n```\nThe first node the path selects (for paths that can select several).",
        _ => return None,
    })
}

pub const MAPPING_FNS: &[&str] = &["exists", "count", "first"];

pub fn method(name: &str) -> Option<&'static str> {
    Some(match name {
        "GET" | "HEAD" | "OPTIONS" => "Idempotent and read-only: may be retried and cached.",
        "PUT" | "DELETE" => "Idempotent: may be retried.",
        "POST" | "PATCH" => "Not idempotent: retried only with an `idempotency_key` or when marked `read_only`; cached only when `read_only`.",
        _ => return None,
    })
}

pub fn reason(name: &str) -> Option<&'static str> {
    Some(match name {
        "invalid_input" => "The inputs failed their declared types; no request was sent.",
        "timeout" => "The action's `timeout` ran out.",
        "connect" => "The API could not be reached (refused, reset, closed early).",
        "upstream_status" => "The API answered an error status that no `on` block handles.",
        "too_large" => "The response was larger than `max_response`.",
        "invalid_response" => "The API answered something that is not JSON.",
        "mapping" => "A required output could not be mapped from the response.",
        "circuit_open" => "Too many recent failures: the API is not called for a while.",
        "blocked" => "The SSRF guard or the scheme policy refused the upstream address.",
        "invalid_request" => {
            "A rendered value could not be placed (for example a header with a line break)."
        }
        _ => return None,
    })
}
