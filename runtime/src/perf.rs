//! Entry points for the criterion benches in `runtime/benches/` (template rendering, response
//! mapping). Not a stable API: hidden from the docs, may change with the internals it exposes.

use std::collections::HashMap;

use mca_compiler::ir::{self, Template, UrlPart};
use serde_json::{Map, Value};

use crate::mapping::Mapping;
use crate::prepare::prepare_output;
use crate::render::Scope;
use crate::response::{CallContext, Outputs};

/// An action's outputs with their JSONPaths parsed, as the runtime prepares them at start-up.
pub struct Mapper {
    mapping: Mapping,
}

impl Mapper {
    pub fn new(outputs: &[ir::Output]) -> Result<Mapper, String> {
        Ok(Mapper {
            mapping: Mapping::new(
                outputs
                    .iter()
                    .filter_map(prepare_output)
                    .collect::<Result<_, _>>()?,
            ),
        })
    }

    /// What a successful upstream response goes through: the body parsed into what the outputs
    /// read, then mapped.
    pub fn map_body(&self, body: &[u8]) -> Result<Map<String, Value>, String> {
        let json = self.mapping.parse(body).map_err(|e| e.to_string())?;
        self.mapping.map(&json)
    }

    /// The mapping alone, on a parsed body.
    pub fn map(&self, json: &Value) -> Result<Map<String, Value>, String> {
        self.mapping.map(json)
    }
}

/// Values a template can read.
#[derive(Default)]
pub struct Values {
    pub inputs: Map<String, Value>,
    pub outputs: Outputs,
    pub env: HashMap<String, String>,
    pub call: CallContext,
}

impl Values {
    fn scope(&self) -> Scope<'_> {
        Scope {
            inputs: &self.inputs,
            call: &self.call,
            env: &self.env,
            secrets: &self.env,
            outputs: Some(&self.outputs),
            steps: None,
        }
    }

    /// A `say` template (`None` when a value it reads is null).
    pub fn say(&self, t: &Template) -> Option<String> {
        self.scope().template_strict(t)
    }

    /// A request URL with its query parameters.
    pub fn url(&self, parts: &[UrlPart], query: &[(String, String)]) -> Result<String, String> {
        crate::render::url(&self.scope(), parts, query).map_err(|e| e.0)
    }
}
