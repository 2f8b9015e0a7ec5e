//! Voice platforms call the actions directly: tool definitions in each platform's format, the
//! platforms' webhook envelopes, their request signatures, and MCP.
//!
//! | module | what |
//! |---|---|
//! | [`tools`] | tool definitions for OpenAI, MCP, Vapi, Retell and ElevenLabs (`mca schema`, `GET /tools`) |
//! | [`voice`] | the one text handed to a platform: `say`, else the outputs in one bounded line |
//! | [`auth`] | bearer token, Vapi secret and HMAC credential, Retell signature; checked on the raw body |
//! | [`mcp`] | the MCP server (both protocol eras), over stdio (`mca mcp`) and HTTP (`POST /mcp`) |
//! | `vapi` | `POST /vapi`: Vapi's `tool-calls` messages, calls run concurrently, answered in order |
//! | `retell` | `POST /retell/{action}`: Retell custom functions, enveloped or with the arguments at the root |
//! | `http` | the routes above, as [`crate::server`] dispatches them |
//!
//! ElevenLabs server tools and OpenAI-style callers need no envelope: they post the inputs to
//! `POST /actions/{name}` (the contract's route), with the bearer token in `Authorization`.
//! Every envelope runs the action through [`Runtime::execute`](crate::Runtime::execute), the one
//! execution path.

pub mod auth;
pub mod mcp;
pub mod tools;
pub mod voice;

pub(crate) mod http;
mod retell;
mod vapi;

pub use auth::{HmacScheme, InboundAuth};
pub use tools::{tool_definitions, ToolFormat};
pub use voice::voice_text;
