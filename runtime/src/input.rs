//! Input validation: the body must be a JSON object, every declared input is checked against its
//! type and format (the compiler's [`Ty::check`](mca_compiler::ir::Ty::check), so compiler and
//! runtime agree), defaults fill omitted inputs. Undeclared members are dropped.

use mca_compiler::ir::{Action, Reason, Ty};
use serde_json::{Map, Value};

use crate::response::ErrorBody;

/// Validates the caller's inputs; the result has exactly the declared inputs, with defaults
/// applied and omitted optional inputs set to null.
pub(crate) fn validate(action: &Action, body: Value) -> Result<Map<String, Value>, ErrorBody> {
    let Value::Object(mut given) = body else {
        return Err(ErrorBody::new(
            400,
            "invalid_body",
            format!(
                "the body must be a JSON object of the inputs of `{}`, found {}",
                action.name,
                mca_compiler::ir::describe_value(&body)
            ),
        ));
    };
    // The caller's object becomes the inputs (no copies): undeclared members are dropped,
    // omitted inputs added.
    let declared = |name: &str| action.inputs.iter().any(|i| i.name == name);
    if given.keys().any(|k| !declared(k)) {
        given.retain(|k, _| declared(k));
    }
    for input in &action.inputs {
        let fill = match given.get(&input.name) {
            None | Some(Value::Null) if input.default.is_some() => input.default.clone(),
            None if input.ty.is_optional() => Some(Value::Null),
            None => {
                return Err(invalid(
                    &input.name,
                    format!(
                        "input `{}` is required ({})",
                        input.name,
                        input.ty.display()
                    ),
                ))
            }
            Some(_) => None,
        };
        if let Some(value) = fill {
            given.insert(input.name.clone(), value);
        }
        let Some(value) = given.get_mut(&input.name) else {
            continue;
        };
        if let Err(mismatch) = input.ty.check(value) {
            return Err(invalid(
                &input.name,
                format!("input `{}`: {mismatch}", input.name),
            ));
        }
        *value = normalize(&input.ty, std::mem::take(value));
    }
    Ok(given)
}

/// An integral number given for an `int` (`3.0`) becomes an integer (`3`), so it renders as
/// one in URLs, headers and bodies.
fn normalize(ty: &Ty, value: Value) -> Value {
    match (ty.base(), value) {
        (Ty::Int, Value::Number(n)) if !(n.is_i64() || n.is_u64()) => match n.as_f64() {
            Some(f) => Value::from(f as i64),
            None => Value::Number(n),
        },
        (Ty::List { item }, Value::Array(items)) => {
            Value::Array(items.into_iter().map(|v| normalize(item, v)).collect())
        }
        (_, v) => v,
    }
}

fn invalid(field: &str, message: String) -> ErrorBody {
    let mut e = ErrorBody::new(422, Reason::InvalidInput.as_str(), message).with_field(field);
    e.reason = Some(Reason::InvalidInput);
    e
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn integral_numbers_for_ints_become_integers() {
        assert_eq!(normalize(&Ty::Int, json!(3.0)), json!(3));
        assert_eq!(normalize(&Ty::Number, json!(3.0)), json!(3.0));
        let list = Ty::List {
            item: Box::new(Ty::Int),
        };
        assert_eq!(normalize(&list, json!([1.0, 2])), json!([1, 2]));
        let opt = Ty::Optional {
            inner: Box::new(Ty::Int),
        };
        assert_eq!(normalize(&opt, json!(null)), json!(null));
    }
}
