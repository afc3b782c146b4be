//! Tera's `{% if x %}` is false when `x` does not exist, so a misspelt field (`machine.has_bcm`)
//! would silently drop a block. Here every bare variable in a condition is wrapped in a function
//! call whose argument tera evaluates strictly: rendering then fails, naming the variable.

use std::collections::HashMap;

use tera::ast::{Expr, ExprVal, FunctionCall, LogicOperator, Node};

/// The function a condition's variable is wrapped in: its truthiness, as tera's `if` has it.
const TRUTHY: &str = "__flakesmith_truthy";

pub(super) fn make_conditions_strict(tera: &mut tera::Tera) {
    tera.register_function(TRUTHY, truthy);
    for template in tera.templates.values_mut() {
        walk(&mut template.ast);
        for definition in template.macros.values_mut() {
            walk(&mut definition.body);
        }
    }
}

fn truthy(args: &HashMap<String, tera::Value>) -> tera::Result<tera::Value> {
    use tera::Value;
    let value = args.get("value").unwrap_or(&Value::Null);
    Ok(Value::Bool(match value {
        Value::Null => false,
        Value::Bool(b) => *b,
        Value::Number(n) => n.as_f64().is_some_and(|f| f != 0.0),
        Value::String(s) => !s.is_empty(),
        Value::Array(a) => !a.is_empty(),
        Value::Object(o) => !o.is_empty(),
    }))
}

fn walk(nodes: &mut [Node]) {
    for node in nodes {
        match node {
            Node::If(branches, _) => {
                for (_, condition, body) in &mut branches.conditions {
                    strict_condition(condition);
                    walk(body);
                }
                if let Some((_, body)) = &mut branches.otherwise {
                    walk(body);
                }
            }
            // `{% set a = b or c %}`: only a logic value is a condition (`set a = b` copies b).
            Node::Set(_, set) if matches!(set.value.val, ExprVal::Logic(_)) => {
                strict_condition(&mut set.value)
            }
            Node::Forloop(_, forloop, _) => {
                walk(&mut forloop.body);
                if let Some(body) = &mut forloop.empty_body {
                    walk(body);
                }
            }
            Node::Block(_, block, _) => walk(&mut block.body),
            Node::FilterSection(_, section, _) => walk(&mut section.body),
            Node::MacroDefinition(_, definition, _) => walk(&mut definition.body),
            _ => {}
        }
    }
}

/// Wraps the bare variables of a condition (also under `and`, `or`, `not`: the wrapped
/// expression keeps its `not`).
fn strict_condition(expr: &mut Expr) {
    match &mut expr.val {
        ExprVal::Ident(_) => {
            let inner = Expr {
                val: std::mem::replace(&mut expr.val, ExprVal::Bool(false)),
                negated: false,
                filters: std::mem::take(&mut expr.filters),
            };
            expr.val = ExprVal::FunctionCall(FunctionCall {
                name: TRUTHY.to_owned(),
                args: HashMap::from([("value".to_owned(), inner)]),
            });
        }
        // Comparisons evaluate their sides strictly already; `and` and `or` test them as conditions.
        ExprVal::Logic(logic)
            if matches!(logic.operator, LogicOperator::And | LogicOperator::Or) =>
        {
            strict_condition(&mut logic.lhs);
            strict_condition(&mut logic.rhs);
        }
        _ => {}
    }
}
