//! Input validation: the body must be a JSON object, every declared input is checked against its
//! type and format (the compiler's [`Ty::check`](mca_compiler::ir::Ty::check), so compiler and
//! runtime agree), defaults fill omitted inputs. Undeclared members are ignored.

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
    let mut inputs = Map::with_capacity(action.inputs.len());
    for input in &action.inputs {
        // Taken, not copied: input names are unique, and `given` is not read again.
        let value = match given.swap_remove(&input.name) {
            None | Some(Value::Null) if input.default.is_some() => {
                input.default.clone().unwrap_or(Value::Null)
            }
            None if input.ty.is_optional() => Value::Null,
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
            Some(v) => v,
        };
        if let Err(mismatch) = input.ty.check(&value) {
            return Err(invalid(
                &input.name,
                format!("input `{}`: {mismatch}", input.name),
            ));
        }
        inputs.insert(input.name.clone(), normalize(&input.ty, value));
    }
    Ok(inputs)
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
