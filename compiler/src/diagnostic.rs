//! The one diagnostic type. The CLI renders it with codespan-reporting, the language server
//! converts the same value. Codes are stable: never renumber, only add (docs/errors.md).

use crate::ast::Span;

/// Index of a source in the slice given to [`crate::compile`].
pub type FileId = usize;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    Error,
    Warning,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Error => "error",
            Severity::Warning => "warning",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Label {
    pub file: FileId,
    pub span: Span,
    pub message: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Diagnostic {
    pub code: Code,
    pub severity: Severity,
    pub message: String,
    pub primary: Label,
    pub secondary: Vec<Label>,
    pub hint: Option<String>,
}

impl Diagnostic {
    /// A diagnostic with the code's default severity.
    pub fn new(code: Code, file: FileId, span: Span, message: impl Into<String>) -> Diagnostic {
        Diagnostic {
            code,
            severity: code.severity(),
            message: message.into(),
            primary: Label {
                file,
                span,
                message: String::new(),
            },
            secondary: Vec::new(),
            hint: None,
        }
    }

    pub fn label(mut self, message: impl Into<String>) -> Diagnostic {
        self.primary.message = message.into();
        self
    }

    pub fn secondary(mut self, file: FileId, span: Span, message: impl Into<String>) -> Diagnostic {
        self.secondary.push(Label {
            file,
            span,
            message: message.into(),
        });
        self
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Diagnostic {
        self.hint = Some(hint.into());
        self
    }

    pub fn hint_opt(mut self, hint: Option<String>) -> Diagnostic {
        if hint.is_some() {
            self.hint = hint;
        }
        self
    }

    pub fn is_error(&self) -> bool {
        self.severity == Severity::Error
    }
}

macro_rules! codes {
    ($($variant:ident = $code:literal, $sev:ident, $title:literal;)*) => {
        /// Every diagnostic code with its default severity and a one-line title.
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
        pub enum Code { $($variant,)* }

        impl Code {
            pub const ALL: &'static [Code] = &[$(Code::$variant,)*];

            pub fn as_str(self) -> &'static str {
                match self { $(Code::$variant => $code,)* }
            }

            pub fn severity(self) -> Severity {
                match self { $(Code::$variant => Severity::$sev,)* }
            }

            pub fn title(self) -> &'static str {
                match self { $(Code::$variant => $title,)* }
            }
        }
    };
}

codes! {
    Syntax = "E0001", Error, "syntax error";
    InvalidString = "E0002", Error, "invalid string literal or template";
    NumberOutOfRange = "E0003", Error, "number out of range";
    TooDeep = "E0004", Error, "nesting too deep";

    DuplicateAction = "E0101", Error, "duplicate action name";
    UnknownInput = "E0102", Error, "unknown input";
    UnknownOutput = "E0103", Error, "unknown output";
    UnknownAction = "E0104", Error, "unknown action";
    DuplicateInput = "E0105", Error, "duplicate input";
    DuplicateOutput = "E0106", Error, "duplicate output";
    DuplicateItem = "E0107", Error, "item given twice";
    MissingItem = "E0108", Error, "required item missing";
    UnknownReference = "E0109", Error, "unknown reference";
    UnknownMethod = "E0110", Error, "unknown HTTP method";
    UnknownName = "E0111", Error, "unknown keyword value";

    TypeMismatch = "E0201", Error, "value of the wrong type";
    UnassignedOutput = "E0202", Error, "required output left unassigned";
    MappingType = "E0203", Error, "mapping result does not fit the output type";
    UnknownType = "E0204", Error, "unknown type";
    UnknownFormat = "E0205", Error, "unknown string format";
    InvalidEnum = "E0206", Error, "invalid enum";
    ReferenceNotAllowed = "E0207", Error, "reference not allowed here";

    InvalidJsonPath = "E0301", Error, "invalid JSONPath";
    NonSingularPath = "E0302", Error, "path can select several nodes";
    JsonPathFunction = "E0303", Error, "JSONPath function used in a way RFC 9535 forbids";
    UnknownMappingFunction = "E0304", Error, "unknown mapping function";

    ValueInOrigin = "E0401", Error, "value could change the URL's scheme, host or port";
    SecretMisplaced = "E0402", Error, "secret outside auth and header";
    RetryWithoutIdempotencyKey = "E0403", Error, "write retried without an idempotency key";
    CacheOnWrite = "E0404", Error, "cache on a non-idempotent request";
    InvalidUrl = "E0405", Error, "invalid URL";
    InvalidHeader = "E0406", Error, "invalid header";
    BodyOnRead = "E0407", Error, "body on a GET or HEAD request";

    TimeoutTooLong = "E0501", Error, "timeout over the 10 s live-call limit";
    TimeoutLong = "W0502", Warning, "timeout over the recommended 5 s";
    ResponseTooLarge = "E0503", Error, "max_response over 5MB";
    ResponseLarge = "W0504", Warning, "max_response over 2MB";
    PerTryOverTimeout = "E0505", Error, "per_try longer than timeout";
    ZeroDuration = "E0506", Error, "duration of zero";
    RetryNeverRuns = "W0507", Warning, "retry can never run within the timeout";
    MessageNeverSpoken = "W0508", Warning, "waiting message never spoken";

    PlainHttp = "W0601", Warning, "plain http:// URL";
    UnusedInput = "W0602", Warning, "unused input";
    MissingDescription = "W0603", Warning, "missing description";

    TestMissingInput = "E0701", Error, "test omits a required input";
    TestNoExpectation = "E0702", Error, "test expects nothing";
    TestNoUpstream = "E0703", Error, "test needs an upstream answer";
    UnknownErrorCode = "E0704", Error, "unknown error code";
    DuplicateTest = "E0705", Error, "duplicate test name";

    UnknownStep = "E0801", Error, "unknown step";
    UnknownStepValue = "E0802", Error, "unknown step value";
    StepCycle = "E0803", Error, "steps wait for each other";
    ConditionType = "E0804", Error, "condition or expression of the wrong type";
    DeferredWithoutKey = "E0805", Error, "deferred write without an idempotency key";
    DeferredRead = "E0806", Error, "deferred step read before the answer";
    StepForm = "E0807", Error, "item does not fit the action's form";
    NeverNull = "W0808", Warning, "null check of a value that is never null";
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_are_unique_and_match_their_severity_letter() {
        let mut seen = std::collections::HashSet::new();
        for code in Code::ALL {
            assert!(seen.insert(code.as_str()), "duplicate {}", code.as_str());
            let letter = match code.severity() {
                Severity::Error => 'E',
                Severity::Warning => 'W',
            };
            assert!(code.as_str().starts_with(letter), "{}", code.as_str());
        }
    }
}
