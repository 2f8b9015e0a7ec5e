//! `mca schema` and `mca mcp`, and the platform credentials every serving command reads from the
//! environment.
//!
//! | variable | what |
//! |---|---|
//! | `MCA_VAPI_SECRET` | the secret Vapi sends in `X-Vapi-Secret` |
//! | `MCA_VAPI_HMAC_SECRET` | the secret key of a Vapi HMAC credential (SHA-256, payload `{timestamp}.{body}`) |
//! | `MCA_VAPI_HMAC_SIGNATURE_HEADER` | its signature header (default `x-signature`) |
//! | `MCA_VAPI_HMAC_TIMESTAMP_HEADER` | its timestamp header (default `x-timestamp`) |
//! | `MCA_RETELL_API_KEY` | the Retell API key that signs requests (`X-Retell-Signature`) |

use std::process::ExitCode;
use std::sync::Arc;

use clap::ValueEnum;
use mca_compiler::Source;
use mca_runtime::platforms::{tool_definitions, HmacScheme, InboundAuth, ToolFormat};
use mca_runtime::Runtime;

use crate::{compile_or_report, EXIT_ERRORS, EXIT_USAGE};

/// Where tool URLs point when `--base-url` is not given.
const DEFAULT_BASE_URL: &str = "http://127.0.0.1:8080";

/// `--format` of `mca schema`.
#[derive(Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum SchemaFormat {
    /// OpenAI Responses API function tools (strict).
    Openai,
    /// OpenAI Chat Completions function tools (strict).
    OpenaiChat,
    /// OpenAI Realtime session function tools.
    OpenaiRealtime,
    /// MCP tools/list result (inputSchema, outputSchema).
    Mcp,
    /// Vapi function tools with server URL and messages.
    Vapi,
    /// Retell custom functions.
    Retell,
    /// ElevenLabs server (webhook) tools.
    Elevenlabs,
}

impl SchemaFormat {
    fn tool_format(self) -> ToolFormat {
        match self {
            SchemaFormat::Openai => ToolFormat::OpenAi,
            SchemaFormat::OpenaiChat => ToolFormat::OpenAiChat,
            SchemaFormat::OpenaiRealtime => ToolFormat::OpenAiRealtime,
            SchemaFormat::Mcp => ToolFormat::Mcp,
            SchemaFormat::Vapi => ToolFormat::Vapi,
            SchemaFormat::Retell => ToolFormat::Retell,
            SchemaFormat::Elevenlabs => ToolFormat::ElevenLabs,
        }
    }
}

fn var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The platform credentials from the environment (see the module documentation).
pub fn inbound_from_env() -> InboundAuth {
    InboundAuth {
        vapi_secret: var("MCA_VAPI_SECRET"),
        vapi_hmac: var("MCA_VAPI_HMAC_SECRET").map(|secret| {
            let mut scheme = HmacScheme::new(secret);
            if let Some(h) = var("MCA_VAPI_HMAC_SIGNATURE_HEADER") {
                scheme.signature_header = h.trim().to_ascii_lowercase();
            }
            if let Some(h) = var("MCA_VAPI_HMAC_TIMESTAMP_HEADER") {
                scheme.timestamp_header = h.trim().to_ascii_lowercase();
            }
            scheme
        }),
        retell_api_key: var("MCA_RETELL_API_KEY"),
    }
}

/// `mca schema`: prints the tool definitions as JSON on stdout.
pub fn schema(sources: &[Source], format: SchemaFormat, base_url: Option<&str>) -> ExitCode {
    let format = format.tool_format();
    let base_url = match base_url {
        Some(u) => match url_ok(u) {
            Ok(()) => u.trim_end_matches('/'),
            Err(e) => {
                eprintln!("error: --base-url `{u}` {e}");
                return ExitCode::from(EXIT_USAGE);
            }
        },
        None => {
            if format.needs_base_url() {
                eprintln!(
                    "note: tool URLs point at {DEFAULT_BASE_URL}; pass --base-url with the \
                     address where {} reaches `mca serve`",
                    format.name()
                );
            }
            DEFAULT_BASE_URL
        }
    };
    let Some(project) = compile_or_report(sources) else {
        return ExitCode::from(EXIT_ERRORS);
    };
    let tools = tool_definitions(project.actions.iter(), format, base_url);
    match serde_json::to_string_pretty(&tools) {
        Ok(text) => {
            println!("{text}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("error: cannot serialise the tools: {e}");
            ExitCode::from(EXIT_ERRORS)
        }
    }
}

fn url_ok(u: &str) -> Result<(), &'static str> {
    let rest = u
        .strip_prefix("https://")
        .or_else(|| u.strip_prefix("http://"))
        .ok_or("must start with https:// or http://")?;
    if rest.trim_matches('/').is_empty() || rest.contains(char::is_whitespace) {
        return Err("has no host");
    }
    if rest.contains(['?', '#']) {
        return Err("must not have a query or fragment");
    }
    Ok(())
}

pub struct McpArgs {
    pub demo: bool,
    pub allow_private: bool,
}

/// `mca mcp`: an MCP server over stdio until stdin closes. Logs go to stderr.
pub fn mcp(sources: &[Source], args: McpArgs) -> ExitCode {
    let Some(project) = compile_or_report(sources) else {
        return ExitCode::from(EXIT_ERRORS);
    };
    crate::serve::init_logging("warn");
    let result = mca_runtime::block_on(async move {
        let mut config = mca_runtime::Config {
            allow_private: args.allow_private,
            token: var("MCA_TOKEN"),
            inbound: inbound_from_env(),
            ..mca_runtime::Config::default()
        };
        let _demo = if args.demo {
            let any = std::net::SocketAddr::from(([127, 0, 0, 1], 0));
            match mca_runtime::demo::start(any).await {
                Ok((addr, handle)) => {
                    mca_runtime::demo::configure_project(&mut config, addr, &project);
                    eprintln!("demo upstream answering the examples' APIs on http://{addr}");
                    Some(handle)
                }
                Err(e) => {
                    eprintln!("error: cannot start the demo upstream: {e}");
                    return ExitCode::from(EXIT_ERRORS);
                }
            }
        } else {
            None
        };
        let runtime = match Runtime::new(project, config) {
            Ok(r) => Arc::new(r),
            Err(e) => {
                eprintln!("error: {e}");
                return ExitCode::from(EXIT_ERRORS);
            }
        };
        match mca_runtime::platforms::mcp::serve_stdio(runtime).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("error: stdio: {e}");
                ExitCode::from(EXIT_ERRORS)
            }
        }
    });
    result.unwrap_or_else(|e| {
        eprintln!("error: cannot start the async runtime: {e}");
        ExitCode::from(EXIT_ERRORS)
    })
}

#[cfg(test)]
mod tests {
    use super::url_ok;

    #[test]
    fn base_urls() {
        assert!(url_ok("https://mca.example.com").is_ok());
        assert!(url_ok("http://127.0.0.1:8080/").is_ok());
        assert!(url_ok("mca.example.com").is_err());
        assert!(url_ok("https://").is_err());
        assert!(url_ok("https://x?y=1").is_err());
    }
}
